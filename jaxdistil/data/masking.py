"""MLM masking in JAX, so it runs inside the jitted train step with static shapes.

Masking on the device keeps the host pipeline a plain stream of token ids, and makes the
mask a pure function of the rng: pass `jax.random.fold_in(seed_key, step)` and a resumed run
masks every batch exactly as the original did, with no masking state to checkpoint.

Recipe (BERT / the DistilBERT distiller): choose ~`mlm_probability` of the eligible tokens
(real, non-special), replace 80 % of the chosen by `<mask>`, 10 % by a random token, keep
10 %; labels hold the original id at chosen positions and `IGNORE_INDEX` elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistil.losses import IGNORE_INDEX

# Fixed-point steps that rescale weighted selection probabilities after clipping at 1;
# each step only saturates more tokens, and a handful reaches the fixed point in practice.
_RESCALE_STEPS = 8


def token_weights_from_counts(
    counts: np.ndarray | Sequence[int],
    smoothing: float = 0.7,
    special_token_ids: Sequence[int] = (),
) -> np.ndarray:
    """Per-token selection weights counts**(-smoothing), 0 for special tokens, (V,) float32.

    The distiller's `mlm_smoothing` (its `train.py`): rare tokens are masked more often than
    their frequency alone would give, as they carry more information. Counts are clamped at 1
    so unseen tokens get the largest weight instead of infinity. A host-side NumPy array:
    compute it once from the corpus counts and pass it to the train step as an argument.
    """
    weights = np.maximum(np.asarray(counts, dtype=np.float64), 1.0) ** (-smoothing)
    special = [i for i in special_token_ids if 0 <= i < weights.shape[0]]
    weights[special] = 0.0
    return weights.astype(np.float32)


def mask_tokens(
    rng: jax.Array,
    input_ids: jax.Array,
    attention_mask: jax.Array,
    *,
    mask_token_id: int,
    special_token_ids: tuple[int, ...],
    vocab_size: int,
    mlm_probability: float = 0.15,
    mask_ratio: float = 0.8,
    random_ratio: float = 0.1,
    token_weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Mask a (B, L) batch for MLM; returns (masked_input_ids, labels), both input_ids' dtype.

    Without `token_weights` every eligible token is chosen independently with probability
    `mlm_probability` (as HF's `DataCollatorForLanguageModeling`).

    With `token_weights` (see `token_weights_from_counts`), a token's selection probability is
    proportional to its weight, scaled over the whole batch so the expected number chosen is
    `mlm_probability` x the number of eligible tokens; probabilities above 1 are clipped and
    the rest rescaled to keep that expectation. This is the Bernoulli counterpart of the
    distiller's `torch.multinomial(token_probs, n_tgt, replacement=False)`: the same
    preference for rare tokens, the same expected count, but a static shape and no
    sort. The count is a fraction of eligible tokens, whereas the distiller's n_tgt counts
    the special tokens of each sequence too.

    Random replacements are drawn uniformly from the non-special ids in [0, vocab_size), so a
    corrupted position never shows `<s>`, `</s>`, `<pad>` or `<mask>`.
    """
    if min(mask_ratio, random_ratio) < 0.0 or mask_ratio + random_ratio > 1.0:
        raise ValueError(f"need 0 <= mask_ratio, random_ratio and a sum <= 1: {mask_ratio}, {random_ratio}")
    select_key, action_key, random_key = jax.random.split(rng, 3)

    eligible = attention_mask.astype(bool) & ~_is_special(input_ids, special_token_ids)
    select_probs = _selection_probabilities(input_ids, eligible, mlm_probability, token_weights)
    chosen = jax.random.uniform(select_key, input_ids.shape) < select_probs

    action = jax.random.uniform(action_key, input_ids.shape)
    to_mask = chosen & (action < mask_ratio)
    to_random = chosen & (action >= mask_ratio) & (action < mask_ratio + random_ratio)

    random_ids = _random_non_special_ids(random_key, input_ids.shape, vocab_size, special_token_ids)
    masked_ids = jnp.where(to_mask, mask_token_id, input_ids)
    masked_ids = jnp.where(to_random, random_ids, masked_ids).astype(input_ids.dtype)
    labels = jnp.where(chosen, input_ids, IGNORE_INDEX).astype(input_ids.dtype)
    return masked_ids, labels


def _is_special(input_ids: jax.Array, special_token_ids: tuple[int, ...]) -> jax.Array:
    """True where the id is one of the (static) special ids."""
    is_special = jnp.zeros(input_ids.shape, bool)
    for special_id in special_token_ids:
        is_special |= input_ids == special_id
    return is_special


def _selection_probabilities(
    input_ids: jax.Array,
    eligible: jax.Array,
    mlm_probability: float,
    token_weights: jax.Array | None,
) -> jax.Array:
    """Per-position probability of being chosen: 0 where ineligible, mean p over eligible."""
    if token_weights is None:
        return jnp.where(eligible, jnp.float32(mlm_probability), 0.0)
    weights = jnp.where(eligible, jnp.asarray(token_weights, jnp.float32)[input_ids], 0.0)
    target_count = mlm_probability * jnp.sum(eligible, dtype=jnp.float32)
    return _clipped_proportional(weights, target_count)


def _clipped_proportional(weights: jax.Array, target_count: jax.Array) -> jax.Array:
    """min(1, c * weights) with c chosen so the probabilities sum to `target_count`.

    Start from plain proportional scaling; each step fixes the saturated positions at 1 and
    spreads the remaining count over the others. The scale only grows, so the saturated set
    only grows, and the iteration stops changing once that set is stable.
    """
    scale = target_count / jnp.maximum(jnp.sum(weights), 1e-30)
    for _ in range(_RESCALE_STEPS):
        saturated = weights * scale >= 1.0
        remaining_count = target_count - jnp.sum(saturated, dtype=jnp.float32)
        free_weight = jnp.sum(jnp.where(saturated, 0.0, weights))
        scale = jnp.where((free_weight > 0) & (remaining_count > 0), remaining_count / free_weight, scale)
    return jnp.clip(weights * scale, 0.0, 1.0)


def _random_non_special_ids(
    rng: jax.Array, shape: tuple[int, ...], vocab_size: int, special_token_ids: tuple[int, ...]
) -> jax.Array:
    """Uniform ids over [0, vocab_size) minus the special ids.

    Draw r in [0, vocab_size - n_special), then step over each special id in ascending order:
    r -> r + (r >= s) maps the range one-to-one onto the non-special ids.
    """
    specials = sorted({s for s in special_token_ids if 0 <= s < vocab_size})
    ids = jax.random.randint(rng, shape, 0, vocab_size - len(specials), dtype=jnp.int32)
    for special_id in specials:
        ids = ids + (ids >= special_id).astype(jnp.int32)
    return ids
