"""The DistilBERT distillation loss, restated in JAX with static shapes.

Follows HF's research project `distillation/distiller.py` (`Distiller.step`), which is what
DistilCamemBERT trained with:

    total = alpha_distil * KLDiv(log_softmax(s / T), softmax(t / T), "batchmean") * T**2
          + alpha_cosine * CosineEmbeddingLoss(s_hidden, t_hidden, target=+1, "mean")
          + alpha_mlm    * CrossEntropy(s, labels, ignore_index=-100)

The distiller gathers the selected positions with `masked_select` (a dynamic shape); here
every term is computed per position, then reduced with a mask, so the whole loss jits once
for a fixed batch shape. Everything is computed in float32 whatever the input dtype, since
bf16 logits lose too much precision in `logsumexp` and in the small KL values.

The per-position helpers are public so a trainer can reuse them, e.g. to gather only the
masked positions before the vocabulary projection, or to log unweighted metrics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

IGNORE_INDEX = -100
# torch's `cosine_embedding_loss` adds this to both squared norms (ATen `Loss.cpp`).
COSINE_EMBEDDING_EPS = 1e-12


def per_token_kl(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float) -> jax.Array:
    """KL(p_t || p_s) at temperature T for every position, shape (..., V) -> (...), fp32.

    Uses KL = sum_v p_t (t - s) / T - (lse_t - lse_s) * sum_v p_t, which equals
    sum_v p_t (log p_t - log p_s) exactly for the computed p_t but never materialises the two
    log-softmax arrays: XLA fuses it into reductions over the vocabulary, and the backward
    pass produces a single (..., V) gradient, (softmax(s / T) - p_t) / T.
    """
    student = student_logits.astype(jnp.float32) / temperature
    teacher = teacher_logits.astype(jnp.float32) / temperature
    student_lse = jax.nn.logsumexp(student, axis=-1)
    teacher_lse = jax.nn.logsumexp(teacher, axis=-1)
    teacher_probs = jnp.exp(teacher - teacher_lse[..., None])
    cross = jnp.sum(teacher_probs * (teacher - student), axis=-1)
    total_prob = jnp.sum(teacher_probs, axis=-1)
    return cross - (teacher_lse - student_lse) * total_prob


def per_token_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Cross-entropy -log softmax(logits)[label] per position (0 where label is ignored), fp32."""
    logits = logits.astype(jnp.float32)
    valid = labels != IGNORE_INDEX
    safe_labels = jnp.where(valid, labels, 0)
    label_logits = jnp.take_along_axis(logits, safe_labels[..., None], axis=-1)[..., 0]
    loss = jax.nn.logsumexp(logits, axis=-1) - label_logits
    return jnp.where(valid, loss, 0.0)


def per_token_cosine_distance(student_hidden: jax.Array, teacher_hidden: jax.Array) -> jax.Array:
    """1 - cos(s, t) per position, shape (..., H) -> (...), fp32, with torch's eps.

    `nn.CosineEmbeddingLoss` (not `cosine_similarity`) is the reference: it computes
    dot / sqrt((|s|^2 + 1e-12) * (|t|^2 + 1e-12)), so zero vectors give cos = 0, not NaN.
    """
    student = student_hidden.astype(jnp.float32)
    teacher = teacher_hidden.astype(jnp.float32)
    dot = jnp.sum(student * teacher, axis=-1)
    student_sq = jnp.sum(student * student, axis=-1) + COSINE_EMBEDDING_EPS
    teacher_sq = jnp.sum(teacher * teacher, axis=-1) + COSINE_EMBEDDING_EPS
    return 1.0 - dot / jnp.sqrt(student_sq * teacher_sq)


def masked_mean(values: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean of `values` where `mask` is true; 0 (not NaN) when nothing is selected."""
    mask = mask.astype(bool)
    total = jnp.sum(jnp.where(mask, values, 0.0))
    count = jnp.sum(mask, dtype=jnp.float32)
    return total / jnp.maximum(count, 1.0)


def distillation_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array | None,
    student_hidden: jax.Array | None,
    teacher_hidden: jax.Array | None,
    labels: jax.Array,
    attention_mask: jax.Array,
    *,
    temperature: float,
    alpha_distil: float,
    alpha_cosine: float,
    alpha_mlm: float,
    restrict_to_mask: bool = False,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The distiller's weighted loss and its unweighted parts `distil`, `cosine`, `mlm`.

    Args:
      student_logits, teacher_logits: (B, L, V) MLM logits, any float dtype.
      student_hidden, teacher_hidden: (B, L, H) last hidden states.
      labels: (B, L) int, the original id at masked positions, -100 elsewhere.
      attention_mask: (B, L), 1 for real tokens, 0 for padding.
      temperature: softmax temperature of the distillation term (the KL is scaled by T**2).
      alpha_*: weights of the three parts, Python floats.
      restrict_to_mask: take the KL over masked positions only (`restrict_ce_to_mask`)
        instead of every non-pad position.

    A part whose teacher input is None is skipped and reported as 0, so plain MLM training
    passes `teacher_logits=None, teacher_hidden=None, alpha_distil=alpha_cosine=0`; a part
    is computed whenever its inputs are given, even with weight 0, so it can be logged.
    Every mean is over its selected positions ("batchmean" for the KL); an empty selection
    gives 0 rather than NaN.
    """
    zero = jnp.zeros((), jnp.float32)
    non_pad = attention_mask.astype(bool)

    if teacher_logits is None:
        _require_zero_weight(alpha_distil, "alpha_distil", "teacher_logits")
        distil = zero
    else:
        kl_positions = (labels != IGNORE_INDEX) if restrict_to_mask else non_pad
        kl = per_token_kl(student_logits, teacher_logits, temperature)
        distil = masked_mean(kl, kl_positions) * temperature**2

    if teacher_hidden is None or student_hidden is None:
        _require_zero_weight(alpha_cosine, "alpha_cosine", "student_hidden and teacher_hidden")
        cosine = zero
    else:
        cosine = masked_mean(per_token_cosine_distance(student_hidden, teacher_hidden), non_pad)

    mlm = masked_mean(per_token_cross_entropy(student_logits, labels), labels != IGNORE_INDEX)

    total = alpha_distil * distil + alpha_cosine * cosine + alpha_mlm * mlm
    return total, {"distil": distil, "cosine": cosine, "mlm": mlm}


def _require_zero_weight(alpha: float, alpha_name: str, input_name: str) -> None:
    """Fail at trace time rather than silently drop a weighted term."""
    if alpha != 0:
        raise ValueError(f"{alpha_name}={alpha} needs {input_name}; pass them or set it to 0.")
