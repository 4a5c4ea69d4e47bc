"""Miniature reproduction, teacher run: the 4 × 256 teacher, pre-trained with plain MLM.

    python scripts/train.py --config configs/mini_teacher.py:RUN[,STEPS] --workdir RUN/teacher

Only names the role; the recipe is configs/mini.py's, shared by all three runs.
"""

import pathlib
import runpy

get_config = runpy.run_path(str(pathlib.Path(__file__).with_name("mini.py")))["role_config"]("teacher")
