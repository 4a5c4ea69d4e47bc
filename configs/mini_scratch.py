"""Miniature reproduction, scratch run: the 2-layer student from random init with MLM only (DistilBERT's ablation).

    python scripts/train.py --config configs/mini_scratch.py:RUN[,STEPS] --workdir RUN/scratch

Only names the role; the recipe is configs/mini.py's, shared by all three runs.
"""

import pathlib
import runpy

get_config = runpy.run_path(str(pathlib.Path(__file__).with_name("mini.py")))["role_config"]("scratch")
