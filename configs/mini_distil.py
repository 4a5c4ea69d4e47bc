"""Miniature reproduction, distil run: the 2-layer student distilled from RUN/teacher (0.5/0.3/0.2 loss).

    python scripts/train.py --config configs/mini_distil.py:RUN[,STEPS] --workdir RUN/distil

Only names the role; the recipe is configs/mini.py's, shared by all three runs.
"""

import pathlib
import runpy

get_config = runpy.run_path(str(pathlib.Path(__file__).with_name("mini.py")))["role_config"]("distil")
