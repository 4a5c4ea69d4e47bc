"""What the evaluation command-line tools share: a model loaded with its tokenizer, tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jaxdistil.config import ModelConfig


def load_model_with_tokenizer(source: str, tokenizer: Any = None) -> tuple[tuple[ModelConfig, Any], Any]:
    """`((config, params), tokenizer)` from any `checkpoint.load_model` source.

    `tokenizer` is a loaded tokenizer, a tokenizer directory, or None for the model's own
    files. A tokenizer that does not fit the model raises ValueError naming the model, since
    ids from another vocabulary silently produce garbage.
    """
    from jaxdistil.checkpoint import has_tokenizer, load_model
    from jaxdistil.convert import check_tokenizer
    from jaxdistil.tokenizer import load_tokenizer

    if tokenizer is None:
        if not has_tokenizer(source):
            raise ValueError(f"{source} holds no tokenizer files: pass --tokenizer")
        tokenizer = source
    if isinstance(tokenizer, str):
        tokenizer = load_tokenizer(tokenizer)
    config, params = load_model(source)
    try:
        check_tokenizer(tokenizer, config)
    except ValueError as error:
        raise ValueError(f"model {source}: {error}") from None
    return (config, params), tokenizer


def format_value(value: Any, digits: int = 4) -> str:
    """Floats to `digits` decimals, None as '-', everything else as str."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], digits: int = 4) -> str:
    """Left-aligned first column, right-aligned others; missing cells show '-'."""
    cells = [list(columns)] + [[format_value(row.get(c), digits) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]

    def render(line: list[str]) -> str:
        first, *rest = line
        aligned = [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        return "  ".join([first.ljust(widths[0]), *aligned])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(cells[0]), rule] + [render(line) for line in cells[1:]])
