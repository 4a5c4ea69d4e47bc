"""Tables as text: the cell format every table shares, and the markdown tables of model cards.

Low in the import order (it imports nothing of jaxdistil) so the trainer's export, which writes
a model card, and the command-line tools format cells the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def format_value(value: Any, digits: int = 4) -> str:
    """Floats to `digits` decimals, None as '-', everything else as str."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], digits: int = 4) -> str:
    """A GitHub/Hub markdown table; cells as `format_value` prints them."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(format_value(row.get(c), digits) for c in columns) + " |" for row in rows]
    return "\n".join(lines)
