"""Student initialisation from the teacher (DistilBERT's layer extraction)."""

import jax
import numpy as np
import pytest

from jaxdistil.config import ModelConfig
from jaxdistil.convert import params_to_state_dict
from jaxdistil.modeling import MaskedLM, init_params, param_shapes
from jaxdistil.student import check_layer_map, default_layer_map, init_from_teacher, student_config


def test_default_layer_map_matches_distilbert_extraction():
    assert default_layer_map(12, 6) == (0, 2, 4, 7, 9, 11)  # DistilBERT's extract_distilbert.py
    assert default_layer_map(6, 3) == (0, 2, 5)
    assert default_layer_map(4, 4) == (0, 1, 2, 3)


def test_student_copies_exactly_the_mapped_tensors():
    teacher_cfg = ModelConfig(vocab_size=120, hidden_size=32, num_hidden_layers=6, num_attention_heads=4,
                              intermediate_size=48, max_position_embeddings=20)
    teacher = init_params(MaskedLM(teacher_cfg), jax.random.key(0))
    layer_map = (0, 3, 5)
    student = init_from_teacher(teacher, layer_map)
    cfg = student_config(teacher_cfg, 3)
    shapes = jax.tree.map(lambda s: s.shape, param_shapes(MaskedLM(cfg)))
    assert jax.tree.map(np.shape, student) == shapes  # exactly a 3-layer model's tree
    t_state, s_state = params_to_state_dict(teacher), params_to_state_dict(student)
    for key, value in s_state.items():
        source = key
        for i, t in enumerate(layer_map):
            if f".layer.{i}." in key:
                source = key.replace(f".layer.{i}.", f".layer.{t}.")
        np.testing.assert_array_equal(value, t_state[source], err_msg=key)
    # a copy, not a view: training the student never touches the frozen teacher
    student["lm_head"]["bias"][0] += 1.0
    assert teacher["lm_head"]["bias"][0] != student["lm_head"]["bias"][0]


def test_bad_layer_map():
    cfg = ModelConfig(num_hidden_layers=4)
    with pytest.raises(ValueError, match="names layers \\[7\\]"):
        check_layer_map((0, 7), cfg, 2)
    with pytest.raises(ValueError, match="has 3 entries for a 2-layer student"):
        check_layer_map((0, 1, 2), cfg, 2)
