"""The one convention every command-line tool follows.

- `parser(__doc__)`: argparse with the module docstring as the description (examples kept
  as written) and every option's default shown in `--help`; flags are spelled with hyphens;
  an option without a default says in its help what happens when it is not given.
- `setup_logging()`: jaxdistil's INFO lines on stderr; absl, Orbax, JAX and grain at WARNING.
- `fail(error)`: one `error: ...` line on stderr, exit status 2, no traceback.
- `format_table(rows, columns)`: the plain-text tables the tools print.
- `use_compilation_cache(directory)`: JAX's persistent compilation cache for a tool that
  compiles a training or evaluation step (default `COMPILATION_CACHE`), so a resumed or repeated
  run loads its compiled steps instead of compiling them again.

`scripts/train.py` uses absl flags (for ml_collections' `--config.x.y=...` overrides) but
follows the same conventions.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from absl import logging as absl_logging

from jaxdistil.modeling import count_params
from jaxdistil.tables import format_value  # cli.format_value: the tools' cell format

# Libraries that log every file written or every compile at INFO.
QUIET_LOGGERS = ("absl", "orbax", "jax", "grain", "tensorstore", "etils", "datasets", "transformers")
ERROR_STATUS = 2
# JAX's persistent compilation cache: JAX's own variable when set, else a per-user cache directory.
COMPILATION_CACHE = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(
    pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "jaxdistil" / "xla")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Docstrings shown as written, and `(default: ...)` after every option's help.

    An option whose default is None (or that is required) says in its own help what happens
    without it, so "(default: None)" is not appended to it.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.required:
            return action.help or ""
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """Refuses to parse while an option has no help text, so no tool can ship one without."""

    def parse_known_args(self, args=None, namespace=None):
        missing = [a.option_strings[0] for a in self._actions if a.option_strings and not a.help]
        if missing:
            raise TypeError(f"{self.prog}: options without a help text: {missing}")
        return super().parse_known_args(args, namespace)


def parser(doc: str | None) -> argparse.ArgumentParser:
    return _Parser(description=doc, formatter_class=_HelpFormatter)


def setup_logging(level: int = logging.INFO) -> None:
    """jaxdistil's own logger gets its handler, so absl owning the root logger cannot hide it."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    library = logging.getLogger("jaxdistil")
    library.handlers[:] = [handler]
    library.setLevel(level)
    library.propagate = False
    absl_logging.set_verbosity(absl_logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # One warning per NaN scalar written to TensorBoard; the trainer reports a divergence itself.
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)


def use_compilation_cache(directory: str) -> None:
    """Compiled executables kept in `directory` ('' = none) and reused by any later process with the
    same program, jax version and devices: a preempted run re-launched skips most of its compilation.
    Compiles shorter than JAX's threshold (JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS) are not kept."""
    if directory:
        jax.config.update("jax_compilation_cache_dir", str(pathlib.Path(directory).expanduser()))


def fail(error: BaseException | str) -> int:
    """Prints a one-line error for a CLI user (no traceback) and returns the exit status."""
    print(f"error: {error}", file=sys.stderr)
    return ERROR_STATUS


def describe_model(config: Any, params: Any) -> str:
    """'camembert, 6 layers x 768, vocab 32005, 68,123,456 parameters': what a tool just read or wrote."""
    return (f"{config.model_type}, {config.num_hidden_layers} layers x {config.hidden_size}, "
            f"vocab {config.vocab_size}, {count_params(params):,} parameters")


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], digits: int = 4) -> str:
    """Numbers right-aligned, text left-aligned; missing cells show '-'."""
    cells = [list(columns)] + [[format_value(row.get(c), digits) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    numeric = [all(isinstance(row.get(c), (int, float, type(None))) for row in rows) for c in columns]

    def render(line: list[str]) -> str:
        aligned = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(line, widths, numeric, strict=True)]
        return "  ".join(aligned).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(cells[0]), rule] + [render(line) for line in cells[1:]])
