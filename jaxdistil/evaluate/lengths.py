"""Input lengths the evaluation tools take from the models they read.

A tool's length option (evaluate.py's --seq-len, finetune.py's --max-length) defaults to the
longest input every model it reads can encode, so it fits a 64-position tiny model as well as
camembert-base's 512; a longer value is refused in the option's own words.
"""

from __future__ import annotations

from collections.abc import Mapping

from jaxdistil.config import ModelConfig


def longest_input(models: Mapping[str, ModelConfig]) -> tuple[str, int]:
    """(name, length) of the model with the fewest positions: the longest input all of `models` encode."""
    if not models:
        raise ValueError("no model to take an input length from")
    name = min(models, key=lambda n: models[n].max_sequence_length)
    return name, models[name].max_sequence_length


def input_length(option: str, requested: int | None, models: Mapping[str, ModelConfig]) -> int:
    """`requested` (the value of `option`), or the longest input every one of `models` can encode when it
    is None; a value longer than that is refused with advice about `option`."""
    name, longest = longest_input(models)
    if requested is None:
        return longest
    if requested > longest:
        raise ValueError(
            f"{option} {requested} is longer than the {longest} positions model {name} can encode; lower {option}"
        )
    return requested
