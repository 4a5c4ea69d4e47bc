"""Held-out masked-LM metrics, teacher–student agreement, and fill-mask.

Metrics are computed on packed `<s> ... </s>` blocks (as the model was trained) masked with
a fixed seed: batch i is masked with `fold_in(key(seed), i)`, so every model sees exactly
the same masked inputs and rows of a comparison table are comparable. Per batch the jitted
step returns sums (masked-token count, summed cross-entropy, correct predictions, and with a
teacher: agreements and summed KL); the host adds them up and divides once, so the padded
last batch (all-pad rows, nothing masked) weighs nothing.

- loss: mean cross-entropy over masked tokens; perplexity = exp(loss);
- accuracy: fraction of masked tokens whose argmax is the original token;
- agreement: fraction of masked tokens where student and teacher argmax coincide;
- kl: mean KL(teacher ‖ student) at temperature 1 over masked tokens (nats).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxdistil.config import ModelConfig
from jaxdistil.data import corpus, pipeline, tokenize
from jaxdistil.data.masking import mask_tokens
from jaxdistil.losses import IGNORE_INDEX, per_token_cross_entropy, per_token_kl
from jaxdistil.modeling import MaskedLM, count_params

Params = dict[str, Any]
Model = tuple[ModelConfig, Params]

BATCH_SIZE = 16  # held-out blocks per evaluation step
MASKING_SEED = 0
FILL_MASK_TOP_K = 5  # HF pipeline("fill-mask")'s default


@dataclasses.dataclass(frozen=True)
class EvalMasking:
    """How held-out blocks are masked (BERT's 80/10/10 at `mlm_probability`)."""

    mask_token_id: int
    special_token_ids: tuple[int, ...]
    mlm_probability: float

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, mlm_probability: float) -> EvalMasking:
        if tokenizer.mask_token_id is None:
            raise ValueError("the tokenizer has no mask token: it cannot be used for masked-LM evaluation")
        specials = tuple(sorted(set(int(i) for i in tokenizer.all_special_ids)))
        return cls(int(tokenizer.mask_token_id), specials, mlm_probability)


def batch_key(seed: int, batch_index: int) -> jax.Array:
    """The masking key of eval batch `batch_index`: the same masks for every model."""
    return jax.random.fold_in(jax.random.key(seed), batch_index)


def mask_batch(
    batch: Mapping[str, jax.Array], rng: jax.Array, masking: EvalMasking, vocab_size: int
) -> tuple[jax.Array, jax.Array]:
    """(masked input ids, labels with IGNORE_INDEX off the chosen positions)."""
    return mask_tokens(
        rng,
        batch["input_ids"],
        batch["attention_mask"],
        mask_token_id=masking.mask_token_id,
        special_token_ids=masking.special_token_ids,
        vocab_size=vocab_size,
        mlm_probability=masking.mlm_probability,
    )


def mlm_eval_step(
    params: Params,
    teacher_params: Params | None,
    batch: Mapping[str, jax.Array],
    rng: jax.Array,
    *,
    module: Any,
    teacher_module: Any,
    masking: EvalMasking,
) -> dict[str, jax.Array]:
    """Sums over the masked tokens of one batch (see the module docstring)."""
    input_ids, labels = mask_batch(batch, rng, masking, module.config.vocab_size)
    selected = labels != IGNORE_INDEX
    logits = module.apply({"params": params}, input_ids, batch["attention_mask"]).logits
    predicted = jnp.argmax(logits, axis=-1)
    sums = {
        "masked": jnp.sum(selected, dtype=jnp.int32),
        "ce": jnp.sum(per_token_cross_entropy(logits, labels)),
        "correct": jnp.sum(selected & (predicted == labels), dtype=jnp.int32),
    }
    if teacher_params is not None:
        teacher_logits = teacher_module.apply({"params": teacher_params}, input_ids, batch["attention_mask"]).logits
        agree = selected & (predicted == jnp.argmax(teacher_logits, axis=-1))
        sums["agree"] = jnp.sum(agree, dtype=jnp.int32)
        sums["kl"] = jnp.sum(jnp.where(selected, per_token_kl(logits, teacher_logits, 1.0), 0.0))
    return sums


def metrics_from_sums(sums: Mapping[str, float]) -> dict[str, float]:
    """Loss, perplexity, accuracy (and agreement/KL) from `mlm_eval_step` sums over batches."""
    count = sums["masked"]
    if count == 0:
        raise ValueError("no token was masked: the held-out data is empty or only special tokens")
    loss = sums["ce"] / count
    out = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "accuracy": sums["correct"] / count,
        "masked_tokens": int(count),
    }
    if "agree" in sums:
        out.update(agreement=sums["agree"] / count, kl=sums["kl"] / count)
    return out


def _check_pair(model: ModelConfig, teacher: ModelConfig) -> None:
    if model.vocab_size != teacher.vocab_size or model.pad_token_id != teacher.pad_token_id:
        raise ValueError(
            f"teacher and model vocabularies differ (vocab_size {teacher.vocab_size} vs "
            f"{model.vocab_size}, pad {teacher.pad_token_id} vs {model.pad_token_id}): "
            "agreement needs one tokenizer"
        )


def evaluate_mlm(
    model: Model,
    blocks: np.ndarray,
    masking: EvalMasking,
    *,
    batch_size: int = BATCH_SIZE,
    seed: int = MASKING_SEED,
    teacher: Model | None = None,
    progress: bool = False,
    desc: str = "mlm eval",
) -> dict[str, float]:
    """MLM metrics of `model` on (N, seq_len) blocks; agreement and KL when `teacher` is given."""
    config, params = model
    if blocks.ndim != 2 or len(blocks) == 0:
        raise ValueError(f"expected a non-empty (N, seq_len) array of blocks, got shape {blocks.shape}")
    if blocks.shape[1] > config.max_sequence_length:
        raise ValueError(f"seq_len {blocks.shape[1]} exceeds the model's {config.max_sequence_length} positions")
    if int(blocks.max()) >= config.vocab_size:
        raise ValueError(
            f"token id {int(blocks.max())} is outside the model's vocabulary "
            f"({config.vocab_size}): the blocks were made with another tokenizer"
        )
    teacher_module, teacher_params = None, None
    if teacher is not None:
        _check_pair(config, teacher[0])
        teacher_module, teacher_params = MaskedLM(teacher[0]), teacher[1]
    step = jax.jit(functools.partial(mlm_eval_step, module=MaskedLM(config), teacher_module=teacher_module,
                                     masking=masking))
    batches = pipeline.make_eval_batches(
        blocks, global_batch_size=batch_size, pad_id=config.pad_token_id, process_index=0, process_count=1
    )
    per_batch = [
        step(params, teacher_params, batch, batch_key(seed, i))
        for i, batch in enumerate(tqdm(batches, desc=desc, unit="batch", disable=not progress))
    ]
    per_batch = jax.device_get(per_batch)
    totals = {k: float(np.sum([b[k] for b in per_batch], dtype=np.float64)) for k in per_batch[0]}
    return metrics_from_sums(totals)


def compare_models(
    models: Mapping[str, Model],
    blocks: np.ndarray,
    masking: EvalMasking,
    *,
    teacher: tuple[str, Model] | None = None,
    batch_size: int = BATCH_SIZE,
    seed: int = MASKING_SEED,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One row per model (the teacher first): name, params, MLM metrics, agreement/KL vs teacher."""
    reference = teacher[1] if teacher else None
    entries = [(teacher[0], "teacher", teacher[1], None)] if teacher else []
    entries += [(name, "model", model, reference) for name, model in models.items()]
    rows = []
    for name, role, model, against in entries:
        scores = evaluate_mlm(
            model,
            blocks,
            masking,
            batch_size=batch_size,
            seed=seed,
            teacher=against,
            progress=progress,
            desc=name,
        )
        rows.append({"model": name, "role": role, "params": count_params(model[1]), **scores})
    return rows


# ------------------------------------------------------------------------- held-out data


def blocks_from_texts(texts: Iterable[str], tokenizer: Any, seq_len: int, max_blocks: int | None = None) -> np.ndarray:
    """Packs texts into at most `max_blocks` blocks, tokenising only what those need."""
    ids = tokenize.special_ids(tokenizer)
    stream = tokenize.iter_packed_blocks(
        tokenize.tokenize_texts(texts, tokenizer, batch_size=256),
        seq_len=seq_len,
        ids=ids,
        drop_remainder=False,
    )
    blocks = list(itertools.islice(stream, max_blocks))
    if not blocks:
        raise ValueError("the held-out text produced no token block")
    return np.stack(blocks)


def shard_meta(paths: Sequence[str]) -> tokenize.ShardMeta | None:
    """What `paths` hold when they are one token-shard directory (scripts/prepare_data.py); None for text files."""
    if len(paths) == 1 and (pathlib.Path(paths[0]) / tokenize.META_FILE).is_file():
        return tokenize.read_meta(paths[0])
    return None


def load_eval_blocks(paths: Sequence[str], tokenizer: Any, seq_len: int, max_blocks: int | None = None) -> np.ndarray:
    """Held-out blocks from one token-shard directory (scripts/prepare_data.py) or text files."""
    if shard_meta(paths) is not None:
        blocks, meta = tokenize.read_shards(paths[0], expected_seq_len=seq_len, expected_vocab_size=len(tokenizer))
        count = len(blocks) if max_blocks is None else min(max_blocks, len(blocks))
        return np.asarray(blocks[:count], dtype=np.int32)
    return blocks_from_texts(corpus.iter_local_texts(paths), tokenizer, seq_len, max_blocks)


# ------------------------------------------------------------------------------ fill-mask


@functools.partial(jax.jit, static_argnums=0)
def _mlm_logits(config: ModelConfig, params: Params, input_ids: jax.Array) -> jax.Array:
    return MaskedLM(config).apply({"params": params}, input_ids).logits


def fill_mask(
    model: Model, tokenizer: Any, text: str, top_k: int = FILL_MASK_TOP_K
) -> list[dict] | list[list[dict]]:
    """Top-k fillers of each `<mask>` in `text`, shaped as HF `pipeline("fill-mask")`'s answer.

    One mask: a list of {score, token, token_str, sequence}; several masks: one such list
    per mask, whose `sequence` keeps the special tokens (as HF does, so the other masks show).
    """
    config, params = model
    input_ids = np.asarray(tokenizer(text)["input_ids"], dtype=np.int32)
    positions = np.flatnonzero(input_ids == tokenizer.mask_token_id)
    if positions.size == 0:
        raise ValueError(f"no {tokenizer.mask_token} token in {text!r}: write it where a word should be guessed")
    if len(input_ids) > config.max_sequence_length:
        raise ValueError(f"the text has {len(input_ids)} tokens; the model reads at most {config.max_sequence_length}")
    logits = _mlm_logits(config, params, input_ids[None])[0, positions]
    probs = np.asarray(jax.nn.softmax(logits.astype(jnp.float32), axis=-1))
    single = positions.size == 1
    answers = []
    for position, row in zip(positions, probs, strict=True):
        best = np.argsort(-row, kind="stable")[:top_k]
        answers.append(
            [_proposal(tokenizer, input_ids, position, int(token), float(row[token]), single) for token in best]
        )
    return answers[0] if single else answers


def _proposal(
    tokenizer: Any, input_ids: np.ndarray, position: int, token: int, score: float, skip_special: bool
) -> dict[str, Any]:
    filled = input_ids.copy()
    filled[position] = token
    filled = filled[filled != tokenizer.pad_token_id]
    return {
        "score": score,
        "token": token,
        "token_str": tokenizer.decode([token]),
        "sequence": tokenizer.decode(filled, skip_special_tokens=skip_special),
    }
