"""A student with the teacher's width and fewer layers, initialised from the teacher.

DistilBERT (Sanh et al. 2019) initialises its student "by taking one layer out of two" of
the teacher, with the embeddings and the LM head copied; its extraction script for
bert-base takes layers 0, 2, 4, 7, 9, 11. `default_layer_map` spreads the kept layers the
same way (evenly, first and last included) for any depth.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxdistil.config import ModelConfig


def default_layer_map(teacher_layers: int, student_layers: int) -> tuple[int, ...]:
    """Evenly spread teacher layers, first and last kept: 12 → 6 gives (0, 2, 4, 7, 9, 11)."""
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(f"a student needs between 1 and {teacher_layers} layers (the teacher's), "
                         f"got {student_layers}")
    if student_layers == 1:
        return (teacher_layers - 1,)
    return tuple(int(i) for i in np.round(np.linspace(0, teacher_layers - 1, student_layers)))


def student_config(teacher: ModelConfig, num_layers: int) -> ModelConfig:
    return teacher.replace(num_hidden_layers=num_layers)


def check_layer_map(layer_map: Sequence[int], teacher: ModelConfig, num_layers: int) -> tuple[int, ...]:
    layer_map = tuple(int(i) for i in layer_map)
    if len(layer_map) != num_layers:
        raise ValueError(f"layer_map {layer_map} has {len(layer_map)} entries for a "
                         f"{num_layers}-layer student")
    bad = [i for i in layer_map if not 0 <= i < teacher.num_hidden_layers]
    if bad:
        raise ValueError(f"layer_map {layer_map} names layers {bad} that a "
                         f"{teacher.num_hidden_layers}-layer teacher does not have")
    return layer_map


def init_from_teacher(teacher_params: Mapping[str, Any], layer_map: Sequence[int]) -> dict:
    """Student params: teacher embeddings and LM head, encoder layer i ← teacher layer map[i].

    Arrays are copied (numpy), so the student never aliases the frozen teacher.
    """
    params = {k: v for k, v in teacher_params.items() if k != "roberta"}
    roberta = dict(teacher_params["roberta"])
    teacher_layers = roberta["encoder"]
    roberta["encoder"] = {f"layer_{i}": teacher_layers[f"layer_{t}"] for i, t in enumerate(layer_map)}
    params["roberta"] = roberta
    return copy.deepcopy(_to_numpy(params))


def _to_numpy(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _to_numpy(v) for k, v in tree.items()}
    return np.array(tree, dtype=np.float32, copy=True)
