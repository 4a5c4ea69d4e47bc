"""The analytic FLOP count of `jaxdistil.flops` against XLA's cost analysis, and the benchmark harness.

XLA counts every operation, the analytic formula only the matmuls, so XLA's number is the
analytic one plus the elementwise work (LayerNorm, erf GELU, softmaxes, loss, AdamW). On
the small shape below (hidden 128, FFN 512, vocabulary 1000, 2×64 tokens) we measured
XLA / analytic = 1.076 for the model forward and 1.095 for the whole distillation step
(1.033 on the 256-wide acceptance shape, where matmuls weigh more). Hence the bounds:
XLA never counts fewer FLOPs than the matmuls, and at most 12 % more. The step is compiled with
full logits (`fused_head_chunk_len=0`): XLA counts a loop body once, so for the fused LM head, a scan
over chunks, its count is short by the chunks after the first.
"""

import argparse
import pathlib

import jax
import pytest

from benchmarks import harness
from jaxdistil import flops
from jaxdistil.modeling import MaskedLM, init_params

SHAPE = harness.StepShape(teacher_layers=2, student_layers=1, hidden=128, heads=2, ffn=512, vocab=1000,
                       batch=2, seq=64)
MAX_ELEMENTWISE_EXCESS = 1.12


def test_layer_formula_is_the_textbook_one_when_ffn_is_4h():
    shape = harness.StepShape(hidden=256, ffn=1024, batch=4, seq=32)
    b, n, h = shape.batch, shape.seq, shape.hidden
    assert flops.layer_forward_flops(shape.teacher, b, n) == 24 * b * n * h * h + 4 * b * n * n * h


def test_step_is_teacher_forward_plus_three_student_forwards():
    s = SHAPE
    expected = (flops.model_forward_flops(s.teacher, s.batch, s.seq)
                + 3 * flops.model_forward_flops(s.student, s.batch, s.seq))
    assert s.step_flops == expected
    # The LM head at K selected positions instead of all L.
    fewer = flops.model_forward_flops(s.teacher, s.batch, s.seq, logit_positions=8)
    assert flops.model_forward_flops(s.teacher, s.batch, s.seq) - fewer == \
        flops.lm_head_forward_flops(s.teacher, s.batch, s.seq - 8)


def test_forward_count_matches_xla_cost_analysis():
    model = MaskedLM(SHAPE.teacher)
    params = init_params(model, jax.random.key(0))
    batch = harness.random_batch(SHAPE)
    forward = jax.jit(lambda p, ids, mask: model.apply({"params": p}, ids, mask).logits)
    xla = flops.xla_flops(forward.lower(params, batch["input_ids"], batch["attention_mask"]).compile())
    analytic = flops.model_forward_flops(SHAPE.teacher, SHAPE.batch, SHAPE.seq)
    assert analytic <= xla <= MAX_ELEMENTWISE_EXCESS * analytic


def test_train_step_count_matches_xla_cost_analysis():
    step = harness.make_jax_step(SHAPE, fused_head_chunk_len=0)
    xla = flops.xla_flops(step.lowered_and_compiled())
    analytic = SHAPE.step_flops
    assert analytic <= xla <= MAX_ELEMENTWISE_EXCESS * analytic


def test_matmul_peak_is_measured_and_positive():
    flops, size = harness.measure_peak_flops("float32", sizes=(64, 128))
    assert size in (64, 128)
    assert 1e6 < flops < 1e15
    _, matmul_flops = harness.matmul_runner(size, chain=3)
    assert matmul_flops == 2 * size**3 * 3


@pytest.mark.parametrize("flag, value", [("--teacher-layers", 4), ("--batch", 8)])
def test_flags_override_the_default_shape(flag, value):
    parser = argparse.ArgumentParser()
    harness.add_shape_args(parser)
    shape, config = harness.shape_and_config_from_args(parser.parse_args([flag, str(value)]))
    assert getattr(shape, flag.lstrip("-").replace("-", "_")) == value
    assert config.train.max_grad_norm == 5.0


def test_run_config_gives_the_shape_it_trains():
    configs = pathlib.Path(__file__).resolve().parents[1] / "configs"
    parser = argparse.ArgumentParser()
    harness.add_shape_args(parser)
    args = parser.parse_args(["--config", str(configs / "paper.py"), "--seq", "128"])
    shape, config = harness.shape_and_config_from_args(args)
    assert (shape.teacher_layers, shape.student_layers, shape.hidden, shape.vocab) == (12, 6, 768, 32005)
    assert shape.seq == 128 and shape.dtype == "bfloat16"
    assert config.train.warmup_steps == 5000
