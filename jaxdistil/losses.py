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

import functools

import jax
import jax.numpy as jnp

IGNORE_INDEX = -100  # label of a position no loss looks at (torch's `ignore_index` default)
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

    cosine = _cosine_part(student_hidden, teacher_hidden, non_pad, alpha_cosine)
    mlm = masked_mean(per_token_cross_entropy(student_logits, labels), labels != IGNORE_INDEX)

    total = alpha_distil * distil + alpha_cosine * cosine + alpha_mlm * mlm
    return total, {"distil": distil, "cosine": cosine, "mlm": mlm}


def _cosine_part(student_hidden: jax.Array | None, teacher_hidden: jax.Array | None, non_pad: jax.Array,
                 alpha_cosine: float) -> jax.Array:
    """Mean cosine distance over non-pad positions; 0 without hidden states (then its weight must be 0)."""
    if teacher_hidden is None or student_hidden is None:
        _require_zero_weight(alpha_cosine, "alpha_cosine", "student_hidden and teacher_hidden")
        return jnp.zeros((), jnp.float32)
    return masked_mean(per_token_cosine_distance(student_hidden, teacher_hidden), non_pad)


def _require_zero_weight(alpha: float, alpha_name: str, input_name: str) -> None:
    """Fail at trace time rather than silently drop a weighted term."""
    if alpha != 0:
        raise ValueError(f"{alpha_name}={alpha} needs {input_name}; pass them or set it to 0.")


# --- the same loss with the LM head's decoder fused in --------------------------------------------
#
# With a 32k vocabulary the (B, L, V) logits are the largest arrays of the step: the plain path
# writes the student's and the teacher's, then reads them again for two softmaxes, the KL, the CE
# and the backward pass. `fused_distillation_loss` applies the tied decoder inside the loss, a
# chunk of positions at a time, and forms d(loss)/d(student logits) in the same pass (the weights of
# every position are known up front), so no (B, L, V) array ever exists and the backward pass
# re-reads nothing of size V. Same matmuls, same FLOPs; measured in docs/performance.md.

Decoder = tuple[jax.Array, jax.Array]  # tied word embeddings (V, H) and decoder bias (V,)


def _softmax_and_lse(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """softmax and logsumexp over the last axis with a single exp pass (fp32)."""
    peak = jnp.max(logits, axis=-1, keepdims=True)
    unnormalised = jnp.exp(logits - peak)
    total = jnp.sum(unnormalised, axis=-1, keepdims=True)
    return unnormalised / total, (peak + jnp.log(total))[..., 0]


def _decode(features: jax.Array, decoder: Decoder) -> jax.Array:
    embeddings, bias = decoder
    return jnp.einsum("bch,vh->bcv", features, embeddings.astype(features.dtype),
                      preferred_element_type=jnp.float32) + bias


def _head_chunk(student_features, student_decoder, teacher_features, teacher_decoder, labels, kl_weights,
                ce_weights, temperature):
    """Per-position KL and CE of one chunk, and d(weighted loss)/d(student logits)."""
    student = _decode(student_features, student_decoder)
    probs, lse = _softmax_and_lse(student)
    valid = labels != IGNORE_INDEX
    onehot = jnp.arange(student.shape[-1]) == jnp.where(valid, labels, -1)[..., None]
    ce = jnp.where(valid, lse - jnp.sum(jnp.where(onehot, student, 0.0), axis=-1), 0.0)
    grad = ce_weights[..., None] * (probs - onehot)
    if teacher_features is None:
        return jnp.zeros_like(ce), ce, grad
    teacher = _decode(teacher_features, teacher_decoder) / temperature
    student = student / temperature
    teacher_probs, teacher_lse = _softmax_and_lse(teacher)
    student_probs, student_lse = _softmax_and_lse(student)
    # As per_token_kl: sum_v p_t (t - s) / T - (lse_t - lse_s) * sum_v p_t.
    kl = (jnp.sum(teacher_probs * (teacher - student), axis=-1)
          - (teacher_lse - student_lse) * jnp.sum(teacher_probs, axis=-1))
    grad = grad + (kl_weights / temperature)[..., None] * (student_probs - teacher_probs)
    return kl, ce, grad


def _chunks(x: jax.Array, chunk_len: int) -> jax.Array:
    """(B, L, ...) → (L / chunk_len, B, chunk_len, ...): chunks along the sequence, so every
    chunk keeps the batch axis, and with it the data-parallel sharding."""
    b, length = x.shape[:2]
    return x.reshape(b, length // chunk_len, chunk_len, *x.shape[2:]).swapaxes(0, 1)


def _unchunk(x: jax.Array) -> jax.Array:
    n, b, c = x.shape[:3]
    return x.swapaxes(0, 1).reshape(b, n * c, *x.shape[3:])


def _fused_head_forward(temperature, chunk_len, student_features, student_decoder, teacher, labels, kl_weights,
                        ce_weights):
    teacher_features, teacher_decoder = teacher if teacher is not None else (None, None)
    embeddings, bias = student_decoder

    def body(carry, xs):
        d_embeddings, d_bias = carry
        feats, t_feats, labs, w_kl, w_ce = xs
        kl, ce, grad = _head_chunk(feats, student_decoder, t_feats, teacher_decoder, labs, w_kl, w_ce,
                                   temperature)
        grad = grad.astype(feats.dtype)
        d_feats = jnp.einsum("bcv,vh->bch", grad, embeddings.astype(grad.dtype),
                             preferred_element_type=jnp.float32).astype(feats.dtype)
        d_embeddings = d_embeddings + jnp.einsum("bcv,bch->vh", grad, feats, preferred_element_type=jnp.float32)
        d_bias = d_bias + jnp.sum(grad, axis=(0, 1), dtype=jnp.float32)
        return (d_embeddings, d_bias), (kl, ce, d_feats)

    init = (jnp.zeros(embeddings.shape, jnp.float32), jnp.zeros(bias.shape, jnp.float32))
    xs = (student_features, teacher_features, labels, kl_weights, ce_weights)
    xs = jax.tree.map(lambda x: _chunks(x, chunk_len), xs)
    (d_embeddings, d_bias), (kl, ce, d_feats) = jax.lax.scan(body, init, xs)
    kl, ce = _unchunk(kl), _unchunk(ce)
    loss = jnp.sum(kl * kl_weights) + jnp.sum(ce * ce_weights)
    grads = (_unchunk(d_feats), (d_embeddings.astype(embeddings.dtype), d_bias.astype(bias.dtype)))
    return (loss, kl, ce), grads


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _fused_head(temperature, chunk_len, student_features, student_decoder, teacher, labels, kl_weights,
                ce_weights):
    return _fused_head_forward(temperature, chunk_len, student_features, student_decoder, teacher, labels,
                               kl_weights, ce_weights)[0]


def _fused_head_bwd(temperature, chunk_len, grads, cotangent):
    del temperature, chunk_len
    d_loss = cotangent[0]  # kl and ce leave `fused_distillation_loss` stop-gradiented: their cotangents are 0
    d_feats, (d_embeddings, d_bias) = grads
    scaled = (d_loss.astype(d_feats.dtype) * d_feats, (d_loss * d_embeddings, d_loss * d_bias))
    return (*scaled, None, None, None, None)


_fused_head.defvjp(_fused_head_forward, _fused_head_bwd)


def fused_distillation_loss(
    student_features: jax.Array,
    student_decoder: Decoder,
    teacher_features: jax.Array | None,
    teacher_decoder: Decoder | None,
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
    chunk_len: int = 16,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """`distillation_loss` of the logits `features @ embeddings.T + bias`, never materialised.

    Takes each model's LM-head features (B, L, H) (`MaskedLM(..., compute_logits=False).head_features`)
    and its tied decoder (`modeling.decoder_params`) instead of logits; everything else, the
    result and the gradients are `distillation_loss`'s. The decoder is applied to `chunk_len`
    positions of every row at a time (L is padded up to a multiple). Gradients flow to the
    student's features and decoder only; the teacher's inputs are constants.
    """
    zero = jnp.zeros((), jnp.float32)
    non_pad = attention_mask.astype(bool)
    masked = labels != IGNORE_INDEX
    use_teacher = teacher_features is not None
    if not use_teacher:
        _require_zero_weight(alpha_distil, "alpha_distil", "teacher_features")
    kl_positions = masked if restrict_to_mask else non_pad
    kl_scale = alpha_distil * temperature**2 / jnp.maximum(jnp.sum(kl_positions, dtype=jnp.float32), 1.0)
    ce_scale = alpha_mlm / jnp.maximum(jnp.sum(masked, dtype=jnp.float32), 1.0)
    kl_weights = jnp.where(kl_positions, kl_scale, 0.0) if use_teacher else jnp.zeros(labels.shape)
    ce_weights = jnp.where(masked, ce_scale, 0.0)

    length = labels.shape[1]
    chunk_len = max(1, min(chunk_len, length))
    pad = -length % chunk_len
    if pad:  # padded positions have label -100 and weight 0: they add nothing
        pad_rows = lambda x, value=0: jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2),  # noqa: E731
                                              constant_values=value)
        student_features, labels = pad_rows(student_features), pad_rows(labels, IGNORE_INDEX)
        kl_weights, ce_weights = pad_rows(kl_weights), pad_rows(ce_weights)
        teacher_features = pad_rows(teacher_features) if use_teacher else None
    teacher = (jax.lax.stop_gradient(teacher_features), jax.lax.stop_gradient(teacher_decoder)) if use_teacher \
        else None
    head, kl, ce = _fused_head(float(temperature), chunk_len, student_features, student_decoder, teacher, labels,
                               kl_weights.astype(jnp.float32), ce_weights.astype(jnp.float32))
    kl, ce = jax.lax.stop_gradient(kl[:, :length]), jax.lax.stop_gradient(ce[:, :length])

    distil = masked_mean(kl, kl_positions) * temperature**2 if use_teacher else zero
    cosine = _cosine_part(student_hidden, teacher_hidden, non_pad, alpha_cosine)
    mlm = masked_mean(ce, masked)
    total = head + alpha_cosine * cosine
    return total, {"distil": distil, "cosine": cosine, "mlm": mlm}
