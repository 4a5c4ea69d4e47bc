"""CamemBERT/RoBERTa in Flax linen, computing exactly what HF's PyTorch modules compute.

Module and parameter names mirror HF's module tree (`roberta/embeddings/word_embeddings`,
`roberta/encoder/layer/3/attention/self/query`, `lm_head/dense`, ...), so converting a
checkpoint is a rename plus a transpose (see `jaxdistil.convert`). Parameters are always
fp32; `dtype` only chooses the compute dtype (bf16 on GPU), with LayerNorm statistics and
softmaxes kept in fp32.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from jaxdistil.config import ModelConfig

Array = jax.Array
Dtype = Any


@flax.struct.dataclass
class EncoderOutput:
    last_hidden_state: Array
    hidden_states: tuple[Array, ...]  # embeddings output first, then every layer (HF's order)


@flax.struct.dataclass
class MaskedLMOutput:
    logits: Array | None  # (B, L, V), or (B, K, V) when `logit_positions` picks K positions per row
    hidden_states: tuple[Array, ...]
    # The LM head's input to the decoder (after dense → gelu → LayerNorm), (B, L, H); set when
    # the model is called with `compute_logits=False`, which skips the (B, L, V) projection.
    head_features: Array | None = None


def activation(name: str):
    """HF's ACT2FN names: 'gelu' is the exact erf GELU, 'gelu_new' the tanh approximation."""
    return {
        "gelu": functools.partial(jax.nn.gelu, approximate=False),
        "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
        "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
        "relu": jax.nn.relu,
        "silu": jax.nn.silu,
        "swish": jax.nn.silu,
    }[name]


def roberta_position_ids(input_ids: Array, pad_token_id: int) -> Array:
    """fairseq's make_positions: non-pad tokens count from pad_token_id + 1, pads get pad_token_id."""
    not_pad = (input_ids != pad_token_id).astype(jnp.int32)
    return jnp.cumsum(not_pad, axis=1) * not_pad + pad_token_id


def _dense(config: ModelConfig, features: int, dtype: Dtype, name: str) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name,
                    kernel_init=nn.initializers.normal(config.initializer_range))


def _layer_norm(config: ModelConfig, name: str) -> nn.LayerNorm:
    # Statistics in fp32 whatever the compute dtype: bf16 variance is too coarse.
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=jnp.float32,
                        param_dtype=jnp.float32, name=name)


class Dropout(nn.Module):
    """Inverted dropout drawing 16 random bits per element instead of `nn.Dropout`'s 32.

    Two elements share one 32-bit draw, which halves the random-bit work, a visible share of
    the step with JAX's default (partitionable threefry) PRNG (docs/performance.md). The drop
    probability is `round(rate · 2**16) / 2**16`, within 8e-6 of `rate`. Uses the "dropout" RNG
    stream, as `nn.Dropout`.
    """

    rate: float

    @nn.compact
    def __call__(self, x, deterministic: bool):
        if deterministic or self.rate == 0.0:
            return x
        if self.rate >= 1.0:
            return jnp.zeros_like(x)
        words = jax.random.bits(self.make_rng("dropout"), (-(-x.size // 2),), jnp.uint32)
        halves = jax.lax.bitcast_convert_type(words, jnp.uint16).reshape(-1)[: x.size].reshape(x.shape)
        keep = halves >= jnp.uint16(round(self.rate * 2**16))
        return jnp.where(keep, x / jnp.asarray(1.0 - self.rate, x.dtype), jnp.zeros((), x.dtype))


class Embeddings(nn.Module):
    config: ModelConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, input_ids, token_type_ids, deterministic: bool):
        cfg = self.config
        init = nn.initializers.normal(cfg.initializer_range)
        word = nn.Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=init,
                        param_dtype=jnp.float32, name="word_embeddings")
        position = nn.Embed(cfg.max_position_embeddings, cfg.hidden_size, embedding_init=init,
                            param_dtype=jnp.float32, name="position_embeddings")
        token_type = nn.Embed(cfg.type_vocab_size, cfg.hidden_size, embedding_init=init,
                              param_dtype=jnp.float32, name="token_type_embeddings")
        positions = roberta_position_ids(input_ids, cfg.pad_token_id)
        x = word(input_ids) + token_type(token_type_ids) + position(positions)
        x = _layer_norm(cfg, "LayerNorm")(x)
        x = Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)
        return x.astype(self.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention over non-pad keys (HF `CamembertSelfAttention`)."""

    config: ModelConfig
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None  # None: XLA picks; "cudnn" for flash attention on GPU

    @nn.compact
    def __call__(self, x, key_mask, deterministic: bool):
        cfg = self.config
        batch, length, _ = x.shape
        split = lambda t: t.reshape(batch, length, cfg.num_attention_heads, cfg.head_dim)  # noqa: E731
        q = split(_dense(cfg, cfg.hidden_size, self.dtype, "query")(x))
        k = split(_dense(cfg, cfg.hidden_size, self.dtype, "key")(x))
        v = split(_dense(cfg, cfg.hidden_size, self.dtype, "value")(x))
        mask = key_mask[:, None, None, :].astype(bool)  # (B, 1, 1, L): pads are never attended
        rate = cfg.attention_probs_dropout_prob
        if deterministic or rate == 0.0:
            if self.attention_impl == "cudnn":  # cuDNN takes a mask as a bias of full (Lq, Lk) shape
                mask = jnp.broadcast_to(mask, (batch, 1, length, length))
            out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=self.attention_impl)
        else:
            # Attention-probability dropout (HF trains with it) needs the explicit weights.
            scores = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) * cfg.head_dim**-0.5
            scores = jnp.where(mask, scores, jnp.finfo(jnp.float32).min)
            probs = jax.nn.softmax(scores, axis=-1)
            probs = Dropout(rate)(probs, deterministic=False).astype(self.dtype)
            out = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
        return out.reshape(batch, length, cfg.hidden_size)


class Attention(nn.Module):
    config: ModelConfig
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None

    @nn.compact
    def __call__(self, x, key_mask, deterministic: bool):
        cfg = self.config
        h = SelfAttention(cfg, self.dtype, self.attention_impl, name="self")(x, key_mask, deterministic)
        return _Residual(cfg, cfg.hidden_size, self.dtype, name="output")(h, x, deterministic)


class _Residual(nn.Module):
    """dense → dropout → LayerNorm(· + residual): HF's `SelfOutput` and `Output`."""

    config: ModelConfig
    features: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h, residual, deterministic: bool):
        h = _dense(self.config, self.features, self.dtype, "dense")(h)
        h = Dropout(self.config.hidden_dropout_prob)(h, deterministic=deterministic)
        return _layer_norm(self.config, "LayerNorm")(h + residual).astype(self.dtype)


class Intermediate(nn.Module):
    config: ModelConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = _dense(self.config, self.config.intermediate_size, self.dtype, "dense")(x)
        return activation(self.config.hidden_act)(h)


class Layer(nn.Module):
    """One post-LayerNorm transformer block (HF `CamembertLayer`)."""

    config: ModelConfig
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None

    @nn.compact
    def __call__(self, x, key_mask, deterministic: bool):
        cfg = self.config
        a = Attention(cfg, self.dtype, self.attention_impl, name="attention")(x, key_mask, deterministic)
        h = Intermediate(cfg, self.dtype, name="intermediate")(a)
        return _Residual(cfg, cfg.hidden_size, self.dtype, name="output")(h, a, deterministic)


class Encoder(nn.Module):
    config: ModelConfig
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None
    remat: bool = False  # recompute each layer's activations in the backward pass (memory)

    @nn.compact
    def __call__(self, x, key_mask, deterministic: bool):
        layer_cls = nn.remat(Layer, static_argnums=(3,)) if self.remat else Layer
        hidden_states = [x]
        for i in range(self.config.num_hidden_layers):
            x = layer_cls(self.config, self.dtype, self.attention_impl, name=f"layer_{i}")(
                x, key_mask, deterministic)
            hidden_states.append(x)
        return tuple(hidden_states)


class RobertaModel(nn.Module):
    """Embeddings + encoder, no pooler: the body every head builds on (HF `roberta.*`)."""

    config: ModelConfig
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None
    remat: bool = False

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic: bool = True):
        if input_ids.shape[-1] > self.config.max_sequence_length:  # XLA would silently clamp positions
            raise ValueError(f"input of {input_ids.shape[-1]} tokens is longer than the model's "
                             f"{self.config.max_sequence_length} positions; truncate it")
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).astype(jnp.int32)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = Embeddings(self.config, self.dtype, name="embeddings")(input_ids, token_type_ids, deterministic)
        hidden_states = Encoder(self.config, self.dtype, self.attention_impl, self.remat, name="encoder")(
            x, attention_mask, deterministic)
        return EncoderOutput(last_hidden_state=hidden_states[-1], hidden_states=hidden_states)


class LMHead(nn.Module):
    """dense → gelu → LayerNorm → decoder tied to the word embeddings, plus its own bias."""

    config: ModelConfig
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, word_embeddings: Array, compute_logits: bool = True):
        """Logits (B, L, V) in fp32; with `compute_logits=False` the decoder's input features instead."""
        cfg = self.config
        h = _dense(cfg, cfg.hidden_size, self.dtype, "dense")(x)
        h = jax.nn.gelu(h, approximate=False)
        h = _layer_norm(cfg, "layer_norm")(h).astype(self.dtype)
        bias = self.param("bias", nn.initializers.zeros, (cfg.vocab_size,), jnp.float32)
        if not compute_logits:
            if not cfg.tie_word_embeddings:
                raise ValueError("compute_logits=False needs a decoder tied to the word embeddings "
                                 "(tie_word_embeddings=True, as CamemBERT)")
            return h
        if not cfg.tie_word_embeddings:
            # HF's untied decoder is a Linear with its own bias; `lm_head.bias` then goes unused
            # by HF too, but is kept so the checkpoint round-trips exactly.
            return nn.Dense(cfg.vocab_size, dtype=self.dtype, param_dtype=jnp.float32, name="decoder",
                            kernel_init=nn.initializers.normal(cfg.initializer_range))(h).astype(jnp.float32)
        logits = jnp.dot(h, word_embeddings.T.astype(self.dtype), preferred_element_type=jnp.float32)
        return logits + bias


class MaskedLM(nn.Module):
    """HF `CamembertForMaskedLM`: returns `.logits` and every hidden state.

    `logit_positions` (B, K) int, optional, computes the vocabulary projection only at those
    positions: with a 32k vocabulary the LM head dominates the FLOPs, and a distillation loss
    restricted to masked tokens needs it at ~15 % of them. `compute_logits=False` stops before the
    projection and returns `.head_features` instead of `.logits`, for a loss that applies the
    tied decoder itself, chunk by chunk (`losses.fused_distillation_loss`, `decoder_params`).
    """

    config: ModelConfig
    dtype: Dtype = jnp.float32
    attention_impl: str | None = None
    remat: bool = False

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic: bool = True,
                 logit_positions: Array | None = None, compute_logits: bool = True):
        body = RobertaModel(self.config, self.dtype, self.attention_impl, self.remat, name="roberta")
        out = body(input_ids, attention_mask, token_type_ids, deterministic)
        features = out.last_hidden_state
        if logit_positions is not None:
            features = jnp.take_along_axis(features, logit_positions[..., None], axis=1)
        word_embeddings = body.variables["params"]["embeddings"]["word_embeddings"]["embedding"]
        head = LMHead(self.config, self.dtype, name="lm_head")(features, word_embeddings, compute_logits)
        if not compute_logits:
            return MaskedLMOutput(logits=None, hidden_states=out.hidden_states, head_features=head)
        return MaskedLMOutput(logits=head, hidden_states=out.hidden_states)


def decoder_params(params: dict) -> tuple[Array, Array]:
    """(word embeddings (V, H), decoder bias (V,)) of a tied `MaskedLM`'s parameter tree."""
    return params["roberta"]["embeddings"]["word_embeddings"]["embedding"], params["lm_head"]["bias"]


def classifier_dropout(config: ModelConfig) -> float:
    """HF heads use `classifier_dropout`, falling back to the hidden dropout."""
    return config.hidden_dropout_prob if config.classifier_dropout is None else config.classifier_dropout


class _ClassifierOnBody(nn.Module):
    """A classification head on the `roberta` body (HF's `Camembert*Classification` models)."""

    config: ModelConfig
    num_labels: int
    dtype: Dtype = jnp.float32

    def body_features(self, input_ids, attention_mask, token_type_ids, deterministic: bool) -> Array:
        """The body's last hidden state (called from the subclass's compact `__call__`)."""
        body = RobertaModel(self.config, self.dtype, name="roberta")
        return body(input_ids, attention_mask, token_type_ids, deterministic).last_hidden_state


class TokenClassifier(_ClassifierOnBody):
    """HF `CamembertForTokenClassification`: dropout → linear on every token."""

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic: bool = True):
        h = self.body_features(input_ids, attention_mask, token_type_ids, deterministic)
        h = Dropout(classifier_dropout(self.config))(h, deterministic=deterministic)
        return _dense(self.config, self.num_labels, jnp.float32, "classifier")(h)


class ClassificationHead(nn.Module):
    """HF `CamembertClassificationHead`: <s> token → dropout → dense → tanh → dropout → out_proj."""

    config: ModelConfig
    num_labels: int

    @nn.compact
    def __call__(self, features, deterministic: bool):
        rate = classifier_dropout(self.config)
        x = Dropout(rate)(features[:, 0, :], deterministic=deterministic)
        x = jnp.tanh(_dense(self.config, self.config.hidden_size, jnp.float32, "dense")(x))
        x = Dropout(rate)(x, deterministic=deterministic)
        return _dense(self.config, self.num_labels, jnp.float32, "out_proj")(x)


class SequenceClassifier(_ClassifierOnBody):
    """HF `CamembertForSequenceClassification` (single texts and text pairs)."""

    @nn.compact
    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, deterministic: bool = True):
        h = self.body_features(input_ids, attention_mask, token_type_ids, deterministic)
        return ClassificationHead(self.config, self.num_labels, name="classifier")(h.astype(jnp.float32), deterministic)


HEADS = ("masked_lm", "token_classification", "sequence_classification")


def model_with_head(config: ModelConfig, head: str, num_labels: int | None = None) -> nn.Module:
    """The module for one of `HEADS` (the keys of `convert.HEAD_ARCHITECTURES`)."""
    if head == "masked_lm":
        return MaskedLM(config)
    if head == "token_classification":
        return TokenClassifier(config, num_labels)
    if head == "sequence_classification":
        return SequenceClassifier(config, num_labels)
    raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")


def init_params(module: nn.Module, rng: Array, seq_len: int = 8) -> dict:
    """Random fp32 parameters for any of the modules above (HF-style normal(0.02) init)."""
    seq_len = min(seq_len, module.config.max_sequence_length)
    ids = jnp.full((1, seq_len), module.config.pad_token_id + 1, jnp.int32)
    # Jitted: op-by-op initialisation of a deep model costs seconds of dispatch on CPU.
    init = jax.jit(lambda r: module.init(r, ids, jnp.ones_like(ids), deterministic=True)["params"])
    return init(rng)


def param_shapes(module: nn.Module) -> dict:
    """The parameter tree as `ShapeDtypeStruct`s, computed without allocating anything."""
    return jax.eval_shape(lambda r: init_params(module, r), jax.random.key(0))


def count_params(params: Any) -> int:
    return int(sum(math.prod(jax.numpy.shape(x)) for x in jax.tree.leaves(params)))
