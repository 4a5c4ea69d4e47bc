"""Parity of the Flax CamemBERT with HF's PyTorch `CamembertForMaskedLM` (the ground truth)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import CamembertConfig, CamembertForMaskedLM

from jaxdistil.config import ModelConfig
from jaxdistil.convert import load_hf
from jaxdistil.modeling import Dropout, MaskedLM, decoder_params, init_params, roberta_position_ids

TOLERANCE = 1e-5  # fp32, never raised

HF_CONFIGS = {
    "odd": dict(vocab_size=203, hidden_size=96, num_hidden_layers=5, num_attention_heads=3,
                intermediate_size=200, max_position_embeddings=40, pad_token_id=1),
    "camembert_like": dict(vocab_size=317, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=128, max_position_embeddings=34, pad_token_id=1,
                           type_vocab_size=1, layer_norm_eps=1e-5, bos_token_id=5, eos_token_id=6),
    "pad0_relu_untied": dict(vocab_size=150, hidden_size=40, num_hidden_layers=3, num_attention_heads=5,
                             intermediate_size=72, max_position_embeddings=30, pad_token_id=0,
                             hidden_act="relu", tie_word_embeddings=False),
}


def hf_model(name: str, seed: int = 0) -> CamembertForMaskedLM:
    torch.manual_seed(seed)
    model = CamembertForMaskedLM(CamembertConfig(**HF_CONFIGS[name])).eval()
    with torch.no_grad():  # HF inits LayerNorms to 1/0 and biases to 0: randomise every tensor
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def padded_batch(vocab_size: int, pad_id: int, lengths: list[int], seq_len: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    ids = rng.randint(0, vocab_size, size=(len(lengths), seq_len))
    ids[ids == pad_id] = pad_id + 1
    mask = (np.arange(seq_len)[None, :] < np.asarray(lengths)[:, None]).astype(np.int64)
    ids[mask == 0] = pad_id
    return ids, mask


@pytest.mark.parametrize("name", sorted(HF_CONFIGS))
@pytest.mark.parametrize("use_jit", [False, True])
def test_masked_lm_matches_hf(name, use_jit):
    model = hf_model(name)
    config, params = load_hf(model)
    cfg = HF_CONFIGS[name]
    ids, mask = padded_batch(cfg["vocab_size"], cfg["pad_token_id"], [17, 9, 1, 4], 17)
    with torch.no_grad():
        ref = model(torch.tensor(ids), attention_mask=torch.tensor(mask), output_hidden_states=True)
    apply = lambda p, i, m: MaskedLM(config).apply({"params": p}, i, m, deterministic=True)  # noqa: E731
    out = (jax.jit(apply) if use_jit else apply)(params, jnp.asarray(ids), jnp.asarray(mask))
    keep = mask.astype(bool)
    logit_err = np.abs(np.asarray(out.logits) - ref.logits.numpy())[keep].max()
    assert logit_err <= TOLERANCE, logit_err
    assert len(out.hidden_states) == config.num_hidden_layers + 1 == len(ref.hidden_states)
    for i, (ours, theirs) in enumerate(zip(out.hidden_states, ref.hidden_states, strict=True)):
        err = np.abs(np.asarray(ours) - theirs.numpy()).max()  # pad positions included
        assert err <= TOLERANCE, (i, err)


def test_position_ids_match_fairseq():
    ids = jnp.array([[0, 5, 6, 2, 1, 1], [0, 7, 1, 1, 1, 1]])
    expected = np.array([[2, 3, 4, 5, 1, 1], [2, 3, 1, 1, 1, 1]])
    np.testing.assert_array_equal(roberta_position_ids(ids, pad_token_id=1), expected)


def test_logit_positions_select_rows():
    config = ModelConfig(vocab_size=90, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=24)
    module = MaskedLM(config)
    params = init_params(module, jax.random.key(0))
    ids, mask = padded_batch(90, 1, [12, 7], 12, seed=3)
    full = module.apply({"params": params}, ids, mask).logits
    positions = jnp.array([[0, 5, 11], [2, 3, 6]])
    picked = module.apply({"params": params}, ids, mask, logit_positions=positions).logits
    np.testing.assert_allclose(picked, jnp.take_along_axis(full, positions[..., None], axis=1), atol=1e-6)


def test_bf16_compute_close_to_fp32():
    """bf16 compute (params fp32): measured max relative logit error 6.3e-3, top-1 agreement 1.0; bound 3e-2."""
    model = hf_model("camembert_like")
    config, params = load_hf(model)
    ids, mask = padded_batch(317, 1, [17, 12, 5], 17, seed=1)
    fp32 = MaskedLM(config).apply({"params": params}, ids, mask).logits
    bf16 = MaskedLM(config, dtype=jnp.bfloat16).apply({"params": params}, ids, mask).logits
    assert bf16.dtype == jnp.float32  # logits are accumulated in fp32
    keep = mask.astype(bool)
    rel = np.abs(np.asarray(bf16) - np.asarray(fp32))[keep].max() / np.abs(np.asarray(fp32))[keep].max()
    assert rel < 3e-2, rel
    agree = (np.argmax(bf16, -1) == np.argmax(fp32, -1))[keep].mean()
    assert agree > 0.9, agree


@pytest.mark.parametrize("bad, message", [
    (dict(hidden_size=100, num_attention_heads=3), "not divisible by num_attention_heads"),
    (dict(pad_token_id=500, vocab_size=100), "outside the vocabulary"),
    (dict(hidden_act="tanh"), "hidden_act"),
    (dict(max_position_embeddings=2, pad_token_id=1), "leaves no room"),
])
def test_config_refuses_inconsistent_values(bad, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**bad)


def test_config_round_trips_hf_json(tmp_path):
    config = ModelConfig(**{k: v for k, v in HF_CONFIGS["odd"].items()})
    config.to_hf_config().save_pretrained(tmp_path)
    assert ModelConfig.from_json_file(tmp_path / "config.json") == config
    hf = CamembertConfig.from_pretrained(tmp_path)
    assert (hf.hidden_size, hf.num_attention_heads, hf.intermediate_size) == (96, 3, 200)


def test_inputs_longer_than_the_position_table_are_refused():
    config = ModelConfig(vocab_size=90, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=12)  # 10 usable positions
    params = init_params(MaskedLM(config), jax.random.key(0))
    ids = jnp.full((1, 11), 5, jnp.int32)
    with pytest.raises(ValueError, match="11 tokens is longer than the model's 10 positions"):
        MaskedLM(config).apply({"params": params}, ids)


def test_decode_false_returns_the_decoder_input():
    """`compute_logits=False` features times the tied decoder are the model's own logits."""
    cfg = ModelConfig(vocab_size=90, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=20)
    model = MaskedLM(cfg)
    params = init_params(model, jax.random.key(0))
    ids = jax.random.randint(jax.random.key(1), (2, 9), 4, 90)
    logits = model.apply({"params": params}, ids).logits
    out = model.apply({"params": params}, ids, compute_logits=False)
    embeddings, bias = decoder_params(params)
    assert out.logits is None
    np.testing.assert_allclose(out.head_features @ embeddings.T + bias, logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_dropout_drops_at_its_rate_and_rescales(rate):
    x = jnp.ones((501, 999), jnp.float32)  # odd size: one 32-bit draw is split across a row boundary
    apply = jax.jit(lambda key: Dropout(rate).apply({}, x, deterministic=False, rngs={"dropout": key}))
    first, second = np.asarray(apply(jax.random.key(0))), np.asarray(apply(jax.random.key(1)))
    dropped = first == 0
    # 5 standard deviations of a binomial proportion over 500k draws.
    assert abs(dropped.mean() - rate) < 5 * np.sqrt(rate * (1 - rate) / x.size)
    np.testing.assert_allclose(first[~dropped], 1 / (1 - rate), rtol=1e-6)
    assert abs(first.mean() - 1.0) < 0.01  # inverted dropout keeps the expectation
    assert (dropped != (second == 0)).mean() > 0.5 * rate  # another key, another mask
    # Neighbouring elements (the two halves of one draw) are independent.
    pairs = dropped.reshape(-1)[: x.size // 2 * 2].reshape(-1, 2)
    both = (pairs[:, 0] & pairs[:, 1]).mean()
    assert abs(both - rate**2) < 5 * np.sqrt(rate**2 / (x.size // 2))
    np.testing.assert_array_equal(Dropout(rate).apply({}, x, deterministic=True), x)
