"""MLM masking: statistics over many tokens, invariants, determinism and smoothing."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdistil.data.masking import mask_tokens, token_weights_from_counts

# CamemBERT-like ids: <s>NOTUSED 0, <pad> 1, </s>NOTUSED 2, <unk> 3, <s> 5, </s> 6, <mask> last.
VOCAB = 211
PAD, BOS, EOS, MASK = 1, 5, 6, VOCAB - 1
SPECIALS = (0, 1, 2, 3, 5, 6, MASK)
NON_SPECIAL = np.setdiff1d(np.arange(VOCAB), SPECIALS)
BATCH, LENGTH, STEPS = 128, 128, 8
SEED_KEY = jax.random.key(1234)


def make_ids(seed: int, token_probs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A padded batch `<s> tokens </s> <pad>...` with random lengths, as the pipeline packs it."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, LENGTH + 1, size=BATCH)
    lengths[0] = LENGTH
    positions = np.arange(LENGTH)[None, :]
    if token_probs is None:
        tokens = rng.choice(NON_SPECIAL, size=(BATCH, LENGTH))
    else:
        tokens = rng.choice(VOCAB, size=(BATCH, LENGTH), p=token_probs)
    ids = np.where(positions < lengths[:, None] - 1, tokens, PAD)
    ids[:, 0] = BOS
    ids[np.arange(BATCH), lengths - 1] = EOS
    attention_mask = (positions < lengths[:, None]).astype(np.int32)
    return ids.astype(np.int32), attention_mask


@functools.partial(jax.jit, static_argnames=("mlm_probability", "mask_ratio", "random_ratio"))
def mask_at_step(
    step,
    input_ids,
    attention_mask,
    token_weights=None,
    *,
    mlm_probability=0.15,
    mask_ratio=0.8,
    random_ratio=0.1,
):
    return mask_tokens(
        jax.random.fold_in(SEED_KEY, step),
        input_ids,
        attention_mask,
        mask_token_id=MASK,
        special_token_ids=SPECIALS,
        vocab_size=VOCAB,
        mlm_probability=mlm_probability,
        mask_ratio=mask_ratio,
        random_ratio=random_ratio,
        token_weights=token_weights,
    )


def run_steps(token_probs=None, token_weights=None, **kwargs) -> dict[str, np.ndarray]:
    """Mask STEPS fresh batches, stacked: (STEPS * BATCH, LENGTH) arrays."""
    outputs = {"ids": [], "mask": [], "masked": [], "labels": []}
    for step in range(STEPS):
        ids, attention_mask = make_ids(step, token_probs)
        masked, labels = mask_at_step(step, ids, attention_mask, token_weights, **kwargs)
        for name, value in zip(outputs, (ids, attention_mask, masked, labels), strict=True):
            outputs[name].append(np.asarray(value))
    return {name: np.concatenate(values) for name, values in outputs.items()}


@pytest.fixture(scope="module")
def plain() -> dict[str, np.ndarray]:
    return run_steps()


def eligible_of(out: dict[str, np.ndarray]) -> np.ndarray:
    return (out["mask"] == 1) & ~np.isin(out["ids"], SPECIALS)


def test_selects_fifteen_percent_of_eligible_tokens(plain) -> None:
    chosen = plain["labels"] != -100
    eligible = eligible_of(plain)
    assert eligible.sum() > 50_000
    assert abs(chosen.sum() / eligible.sum() - 0.15) < 0.01


def test_never_selects_padding_or_special_tokens(plain) -> None:
    chosen = plain["labels"] != -100
    assert not (chosen & ~eligible_of(plain)).any()


def test_labels_and_untouched_positions(plain) -> None:
    chosen = plain["labels"] != -100
    np.testing.assert_array_equal(plain["labels"][chosen], plain["ids"][chosen])
    np.testing.assert_array_equal(plain["masked"][~chosen], plain["ids"][~chosen])
    assert plain["labels"].dtype == plain["masked"].dtype == np.int32


def test_eighty_ten_ten_split(plain) -> None:
    chosen = plain["labels"] != -100
    original, masked = plain["ids"][chosen], plain["masked"][chosen]
    n_chosen = chosen.sum()
    to_mask = (masked == MASK).sum() / n_chosen
    # A random draw equal to the original id (1 in len(NON_SPECIAL)) counts as kept.
    to_random = ((masked != MASK) & (masked != original)).sum() / n_chosen
    kept = (masked == original).sum() / n_chosen
    assert abs(to_mask - 0.8) < 0.02
    assert abs(to_random - 0.1) < 0.02
    assert abs(kept - 0.1) < 0.02


def test_random_replacements_are_uniform_over_non_special_ids() -> None:
    out = run_steps(mlm_probability=1.0, mask_ratio=0.0, random_ratio=1.0)
    eligible = eligible_of(out)
    assert ((out["labels"] != -100) == eligible).all()
    replacements = out["masked"][eligible]
    assert not np.isin(replacements, SPECIALS).any()
    assert replacements.min() >= 0 and replacements.max() < VOCAB
    counts = np.bincount(replacements, minlength=VOCAB)[NON_SPECIAL]
    expected = replacements.size / NON_SPECIAL.size
    assert (np.abs(counts - expected) < 0.25 * expected).all()


def test_same_rng_same_mask_new_step_new_mask() -> None:
    ids, attention_mask = make_ids(0)
    first = mask_at_step(7, ids, attention_mask)
    again = mask_at_step(7, ids, attention_mask)
    eager = mask_tokens(
        jax.random.fold_in(SEED_KEY, 7),
        jnp.asarray(ids),
        jnp.asarray(attention_mask),
        mask_token_id=MASK,
        special_token_ids=SPECIALS,
        vocab_size=VOCAB,
    )
    other = mask_at_step(8, ids, attention_mask)
    for a, b, c in zip(first, again, eager, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    assert (np.asarray(first[1]) != np.asarray(other[1])).any()


def test_token_weights_from_counts() -> None:
    counts = np.array([5, 0, 1, 100, 7])
    weights = token_weights_from_counts(counts, smoothing=0.7, special_token_ids=(1, 4, 99))
    expected = [5**-0.7, 0.0, 1.0, 100**-0.7, 0.0]
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert weights.dtype == np.float32


def test_smoothing_prefers_rare_tokens_and_keeps_fifteen_percent() -> None:
    # Zipf-distributed corpus over the non-special ids.
    counts = np.zeros(VOCAB)
    counts[NON_SPECIAL] = 1e6 / np.arange(1, NON_SPECIAL.size + 1) ** 1.1
    token_probs = counts / counts.sum()
    weights = token_weights_from_counts(counts, smoothing=0.7, special_token_ids=SPECIALS)

    out = run_steps(token_probs=token_probs, token_weights=jnp.asarray(weights))
    eligible = eligible_of(out)
    chosen = out["labels"] != -100
    assert not (chosen & ~eligible).any()
    assert abs(chosen.sum() / eligible.sum() - 0.15) < 0.01

    def selection_rate(token_ids: np.ndarray) -> float:
        at = np.isin(out["ids"], token_ids) & eligible
        return chosen[at].sum() / at.sum()

    frequent, rare = NON_SPECIAL[:5], NON_SPECIAL[-100:]
    assert selection_rate(frequent) < 0.08
    assert selection_rate(rare) > 0.3
    # Unclipped tokens are chosen in proportion to their weight.
    a, b = NON_SPECIAL[0], NON_SPECIAL[3]
    ratio = selection_rate(np.array([a])) / selection_rate(np.array([b]))
    assert abs(ratio / (weights[a] / weights[b]) - 1) < 0.1


def test_smoothing_rescales_when_rare_tokens_saturate() -> None:
    """With a steep Zipf law and smoothing 1, rare tokens hit probability 1; the others are
    scaled up so 15 % are still chosen (plain proportional clipping would give ~9 % here)."""
    counts = np.zeros(VOCAB)
    counts[NON_SPECIAL] = 1e6 / np.arange(1, NON_SPECIAL.size + 1) ** 1.5
    weights = token_weights_from_counts(counts, smoothing=1.0, special_token_ids=SPECIALS)

    out = run_steps(token_probs=counts / counts.sum(), token_weights=jnp.asarray(weights))
    eligible = eligible_of(out)
    chosen = out["labels"] != -100
    rare = np.isin(out["ids"], NON_SPECIAL[-100:]) & eligible
    assert rare.sum() > 500
    assert chosen[rare].all()
    assert abs(chosen.sum() / eligible.sum() - 0.15) < 0.01
