"""Small helpers shared by the command-line tools."""

from __future__ import annotations

import sys
from typing import Any

import jax
import numpy as np


def count_params(params: Any) -> int:
    return int(sum(np.prod(np.shape(x)) for x in jax.tree.leaves(params)))


def fail(error: BaseException) -> int:
    """Prints a one-line error for a CLI user (no traceback) and returns the exit status."""
    print(f"error: {error}", file=sys.stderr)
    return 2
