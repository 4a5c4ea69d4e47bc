"""What the evaluation command-line tools share: a model loaded with its tokenizer, parsers, tables."""

from __future__ import annotations

import argparse
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from jaxdistil.config import ModelConfig


def find_tokenizer(source: str) -> str | None:
    """Where a model's tokenizer files are: the directory itself (HF dir, params checkpoint)
    or its `tokenizer/` subdirectory (training workdir); None when neither has them."""
    from jaxdistil.checkpoint import has_tokenizer
    from jaxdistil.train import TOKENIZER_DIR

    for candidate in (pathlib.Path(source), pathlib.Path(source) / TOKENIZER_DIR):
        if has_tokenizer(candidate):
            return str(candidate)
    return None


def load_model_with_tokenizer(source: str, tokenizer: Any = None) -> tuple[tuple[ModelConfig, Any], Any]:
    """`((config, params), tokenizer)` from any `checkpoint.load_model` source.

    `tokenizer` is a loaded tokenizer, a tokenizer directory, or None for the model's own
    files. A tokenizer that does not fit the model raises ValueError naming the model, since
    ids from another vocabulary silently produce garbage.
    """
    from jaxdistil.checkpoint import load_model
    from jaxdistil.convert import check_tokenizer
    from jaxdistil.tokenizer import load_tokenizer

    if tokenizer is None:
        tokenizer = find_tokenizer(source)
        if tokenizer is None:
            raise ValueError(f"{source} holds no tokenizer files: pass --tokenizer")
    if isinstance(tokenizer, str):
        tokenizer = load_tokenizer(tokenizer)
    config, params = load_model(source)
    try:
        check_tokenizer(tokenizer, config)
    except ValueError as error:
        raise ValueError(f"model {source}: {error}") from None
    return (config, params), tokenizer


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose description is the docstring's first paragraph and whose epilog (after
    the options in --help) is the whole docstring, examples included."""
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0], epilog=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def format_value(value: Any, digits: int = 4) -> str:
    """Floats to `digits` decimals, None as '-', everything else as str."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


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
