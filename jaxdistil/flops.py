"""Analytic FLOPs of the models and of the distillation step, and XLA's own count.

FLOP convention: one multiply-add = 2 FLOPs; only matrix multiplications are counted.
LayerNorm, GELU, softmax, the loss and the optimizer are O(B·L·(F+V)) elementwise work,
which XLA's cost analysis counts too, so XLA's number sits a few per cent above ours
(tests/test_flops.py bounds the gap; docs/performance.md gives the measured ratios).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxdistil.config import ModelConfig


def layer_forward_flops(cfg: ModelConfig, batch: int, seq: int) -> int:
    """One encoder layer, forward: 8·B·L·H² (Q,K,V,O) + 4·B·L·H·F (FFN) + 4·B·L²·H (QKᵀ, PV).

    With F = 4H this is the familiar 24·B·L·H² + 4·B·L²·H.
    """
    h, f = cfg.hidden_size, cfg.intermediate_size
    tokens = batch * seq
    return 8 * tokens * h * h + 4 * tokens * h * f + 4 * batch * seq * seq * h


def lm_head_forward_flops(cfg: ModelConfig, batch: int, positions: int) -> int:
    """MLM head at `positions` per row: dense 2·B·K·H² + tied decoder 2·B·K·H·V."""
    h = cfg.hidden_size
    return 2 * batch * positions * h * (h + cfg.vocab_size)


def model_forward_flops(cfg: ModelConfig, batch: int, seq: int, logit_positions: int | None = None) -> int:
    """Encoder + MLM head forward; the head at every position unless `logit_positions` is given."""
    head_positions = seq if logit_positions is None else logit_positions
    return (cfg.num_hidden_layers * layer_forward_flops(cfg, batch, seq)
            + lm_head_forward_flops(cfg, batch, head_positions))


def distillation_step_flops(
    teacher: ModelConfig, student: ModelConfig, batch: int, seq: int, logit_positions: int | None = None
) -> int:
    """Teacher forward (no grad) + student forward and backward (backward = 2 × forward).

    The backward of every matmul computes two products of the forward's size (the input
    gradient and the weight gradient), hence 3 × forward for the student.
    """
    return (model_forward_flops(teacher, batch, seq, logit_positions)
            + 3 * model_forward_flops(student, batch, seq, logit_positions))


def xla_flops(compiled: Any) -> float | None:
    """FLOPs of a compiled JAX computation by XLA's cost analysis (None if unreported).

    XLA counts a loop body once, so a scanned computation (the fused LM head, gradient
    accumulation) comes out short by the iterations after the first.
    """
    analysis = compiled.cost_analysis()
    if isinstance(analysis, Sequence):  # older JAX: one dict per computation
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])
