"""Miniature reproduction, distil run: the 2-layer student distilled from RUN/teacher (0.5/0.3/0.2 loss).

    python scripts/train.py --config configs/mini_distil.py:RUN[,STEPS] --workdir RUN/distil

The recipe of all three runs lives in configs/mini.py (one place, so the three stay comparable);
this file only names the role, as issue #6 and scripts/reproduce_mini.sh call it.
"""

import pathlib
import runpy

_MINI = runpy.run_path(str(pathlib.Path(__file__).with_name("mini.py")))


def get_config(arg: str):
    return _MINI["get_config"](f"distil,{arg}")
