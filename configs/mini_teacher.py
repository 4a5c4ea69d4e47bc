"""Miniature reproduction, teacher run: the 4 × 256 teacher, pre-trained with plain MLM.

    python scripts/train.py --config configs/mini_teacher.py:RUN[,STEPS] --workdir RUN/teacher

The recipe of all three runs lives in configs/mini.py (one place, so the three stay comparable);
this file only names the role, as issue #6 and scripts/reproduce_mini.sh call it.
"""

import pathlib
import runpy

_MINI = runpy.run_path(str(pathlib.Path(__file__).with_name("mini.py")))


def get_config(arg: str):
    return _MINI["get_config"](f"teacher,{arg}")
