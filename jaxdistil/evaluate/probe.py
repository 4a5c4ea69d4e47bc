"""Frozen-encoder probes: a linear classifier over one layer's word features, for POS and NER.

Fine-tuning moves every weight, so its score mixes what the encoder knows with how well the
optimiser, the seed and the budget did; a softmax regression over frozen features measures the
representation alone (Tenney et al. 2019's edge probes; Hewitt & Liang 2019 on keeping the
probe simple). A word's feature is the hidden state of the sub-token that carries its label in
fine-tuning (`alignment.encode_tagged`'s `label_piece`), so probe and fine-tuning read the same
position, and every word gets one: a sentence longer than the model becomes overlapping windows,
each word read in the window where it has the most context. Features are computed once per
model and split for all probed layers, in length-sorted batches padded to a bucket of the
batch's longest row (few shapes, few compiles), and kept in memory.
The classifier is trained with seeded minibatch AdamW (cosine-decayed rate) on features
standardised with the training words' mean and spread; the weight decay and the step are
chosen on dev.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdistil.config import ModelConfig
from jaxdistil.evaluate import alignment, baselines, metrics, tasks
from jaxdistil.evaluate.readers import TaggedSentence
from jaxdistil.modeling import RobertaModel

LENGTH_BUCKET = 16  # batch lengths are rounded up to a multiple of this: one compile per bucket


def default_layers(config: ModelConfig) -> tuple[int, ...]:
    """A middle layer and the last one, as indices into `hidden_states` (0 = the embeddings)."""
    last = config.num_hidden_layers
    return tuple(sorted({max(1, last // 2), last}))


@dataclasses.dataclass(frozen=True)
class WordFeatures:
    """One row per word of every sentence, in reading order, for each probed layer."""

    features: dict[int, np.ndarray]  # layer -> [words, hidden] float32
    labels: np.ndarray  # [words] int32, gold label ids
    sentence_lengths: list[int]  # words per sentence, to cut predictions back into sentences
    piece_counts: list[list[int]]  # sub-tokens per word (the card's sub-word F1)
    windowed_sentences: int  # sentences encoded as several overlapping windows (longer than the model)
    featureless_words: int  # words without any sub-token (their rows stay zero before standardising)


@functools.lru_cache(maxsize=8)
def _layer_states_fn(config: ModelConfig, chosen: tuple[int, ...]) -> Callable:
    """jit(body params, input ids, mask) -> [len(chosen), batch, length, hidden] hidden states; one per
    model and layer set, so every split reuses its compiled shapes."""
    model = RobertaModel(config)

    @jax.jit
    def states(body_params, input_ids, attention_mask):
        hidden = model.apply({"params": body_params}, input_ids, attention_mask, deterministic=True).hidden_states
        return jnp.stack([hidden[layer] for layer in chosen]).astype(jnp.float32)

    return states


def extract_word_features(
    config: ModelConfig,
    params: Mapping[str, Any],
    tokenizer: Any,
    sentences: Sequence[TaggedSentence],
    label_map: Mapping[str, int],
    layers: Sequence[int],
    batch_size: int = 32,
    label_piece: alignment.LabelPiece = alignment.DEFAULT_LABEL_PIECE,
) -> WordFeatures:
    """Frozen features of every word of `sentences` at each of `layers` (masked-LM or body params)."""
    bad = [layer for layer in layers if not 0 <= layer <= config.num_hidden_layers]
    if bad:
        raise ValueError(f"layer(s) {bad} outside 0..{config.num_hidden_layers} (0: the embeddings)")
    body_params = params["roberta"] if "roberta" in params else params
    encoding = alignment.encode_tagged(sentences, tokenizer, label_map, config.max_sequence_length, label_piece)
    offsets = np.cumsum([0] + [len(s.tokens) for s in sentences])
    total = int(offsets[-1])
    states_fn = _layer_states_fn(config, tuple(layers))
    features = np.zeros((len(layers), total, config.hidden_size), np.float32)
    filled = np.zeros(total, bool)
    row_lengths = encoding.attention_mask.sum(axis=1)
    order = np.argsort(row_lengths, kind="stable")
    for first in range(0, len(order), batch_size):
        rows = order[first : first + batch_size]
        width = min(-(-int(row_lengths[rows].max()) // LENGTH_BUCKET) * LENGTH_BUCKET, encoding.input_ids.shape[1])
        ids = np.full((batch_size, width), config.pad_token_id, np.int32)
        mask = np.zeros((batch_size, width), np.int32)
        ids[: len(rows)] = encoding.input_ids[rows, :width]
        mask[: len(rows)] = encoding.attention_mask[rows, :width]
        states = np.asarray(states_fn(body_params, ids, mask))
        batch_rows, positions = np.nonzero(encoding.scored[rows, :width])
        sentence = encoding.sentence_ids[rows[batch_rows]]
        words = offsets[sentence] + encoding.word_ids[rows[batch_rows], positions]
        features[:, words] = states[:, batch_rows, positions]
        filled[words] = True
    if int((~filled).sum()) != encoding.unscored_words:
        raise ValueError(f"{int((~filled).sum())} of {total} words got no feature, "
                         f"{encoding.unscored_words} expected (words without any sub-token)")
    labels = np.array([label_map[tag] for s in sentences for tag in s.tags], np.int32)
    return WordFeatures(
        {layer: features[i] for i, layer in enumerate(layers)},
        labels,
        [len(s.tokens) for s in sentences],
        baselines.word_piece_counts(tokenizer, sentences),
        int(np.sum(np.bincount(encoding.sentence_ids) > 1)),
        encoding.unscored_words,
    )


# ------------------------------------------------------------------------- the classifier


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """How the softmax regression is fitted and chosen."""

    steps: int = 1000  # minibatch steps per weight decay
    eval_every: int = 50  # steps between dev scores (the step is chosen among these)
    batch_size: int = 1024  # words per minibatch
    learning_rate: float = 1e-2  # peak; cosine decay to 0 over `steps`
    weight_decays: tuple[float, ...] = (0.0, 1e-2, 1e-1)  # AdamW decoupled decay, chosen on dev
    seed: int = 0  # minibatch order


def standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Every array shifted and scaled by the training rows' mean and spread (a constant column stays 0)."""
    mean = train.mean(axis=0)
    spread = train.std(axis=0)
    spread = np.where(spread > 0, spread, 1.0)
    return [(x - mean) / spread for x in (train, *others)]


def _loss(params, x, y):
    logits = x @ params["kernel"] + params["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def cosine_rate(peak: float, step: int, steps: int) -> float:
    """Cosine decay from `peak` to 0 over `steps`, held for each `eval_every` chunk: the late steps settle
    instead of bouncing around the optimum at the full rate."""
    return 0.5 * peak * (1 + math.cos(math.pi * step / steps))


def _adamw(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    """AdamW with its hyper-parameters in the optimiser state, so every weight decay shares one compile."""
    return optax.inject_hyperparams(optax.adamw)(learning_rate=learning_rate, weight_decay=weight_decay)


@functools.lru_cache(maxsize=1)
def _train_steps_fn() -> Callable:
    """jit(params, opt_state, x, y, batches [k, batch]) -> params and state after k AdamW steps."""
    optimizer = _adamw(0.0, 0.0)  # update() reads the rates from opt_state

    @jax.jit
    def train_steps(params, opt_state, x, y, batches):
        def step(carry, indices):
            params, opt_state = carry
            grads = jax.grad(_loss)(params, x[indices], y[indices])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), None

        (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state

    return train_steps


@jax.jit
def predict(params, x):
    """Argmax class of every row."""
    return jnp.argmax(x @ params["kernel"] + params["bias"], axis=-1)


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    dev_x: np.ndarray,
    dev_score: Callable[[np.ndarray], float],
    num_classes: int,
    config: ProbeConfig = ProbeConfig(),
) -> tuple[dict, dict[str, Any]]:
    """(best params, record): softmax regression per weight decay, scored on dev every `eval_every` steps.

    `dev_score(predicted ids)` returns the number to maximise; the record keeps every dev
    score, so the curve shows whether the probe had converged.
    """
    if config.eval_every < 1 or config.steps < config.eval_every:
        raise ValueError(f"need steps ({config.steps}) >= eval_every ({config.eval_every}) >= 1")
    x, y, dev = jnp.asarray(train_x), jnp.asarray(train_y), jnp.asarray(dev_x)
    batch = min(config.batch_size, len(train_y))
    best: tuple[float, dict] | None = None
    record: dict[str, Any] = {"curves": {}, "best": None}
    for weight_decay in config.weight_decays:
        optimizer = _adamw(config.learning_rate, weight_decay)
        train_steps = _train_steps_fn()
        params = {
            "kernel": jnp.zeros((train_x.shape[1], num_classes), jnp.float32),
            "bias": jnp.zeros((num_classes,), jnp.float32),
        }
        opt_state = optimizer.init(params)
        rng = np.random.default_rng(config.seed)
        needed = config.steps * batch
        order = np.concatenate([rng.permutation(len(train_y)) for _ in range(-(-needed // len(train_y)))])
        batches = order[:needed].reshape(config.steps, batch).astype(np.int32)
        curve = []
        for done in range(config.eval_every, config.steps + 1, config.eval_every):
            opt_state.hyperparams["learning_rate"] = jnp.asarray(
                cosine_rate(config.learning_rate, done - config.eval_every, config.steps), jnp.float32)
            params, opt_state = train_steps(params, opt_state, x, y, batches[done - config.eval_every : done])
            score = float(dev_score(np.asarray(predict(params, dev))))
            curve.append({"step": done, "dev": score})
            if best is None or score > best[0]:
                best = (score, params)
                record["best"] = {"weight_decay": weight_decay, "step": done, "dev": score}
        record["curves"][str(weight_decay)] = curve
    return best[1], record


# --------------------------------------------------------------------------- one task


def split_by_sentence(flat: Sequence[Any], lengths: Sequence[int]) -> list[list[Any]]:
    """A flat per-word list cut back into sentences of `lengths` words."""
    cuts = np.cumsum([0, *lengths])
    return [list(flat[a:b]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def word_scorer(
    task: str, words: WordFeatures, id2label: Mapping[int, str], scheme: metrics.TagScheme
) -> Callable[[np.ndarray], dict[str, float]]:
    """predicted ids (one per word) -> `baselines.score_words` of those tags against the gold ones."""
    gold = split_by_sentence([id2label[int(i)] for i in words.labels], words.sentence_lengths)

    def score(predicted: np.ndarray) -> dict[str, float]:
        tags = split_by_sentence([id2label[int(i)] for i in predicted], words.sentence_lengths)
        return baselines.score_words(task, gold, tags, scheme, words.piece_counts)

    return score


def probe_layer(
    task: str,
    layer: int,
    train: WordFeatures,
    dev: WordFeatures,
    tests: Mapping[str, WordFeatures],
    id2label: Mapping[int, str],
    scheme: metrics.TagScheme,
    config: ProbeConfig = ProbeConfig(),
) -> dict[str, Any]:
    """Fit on train's features of `layer`, choose on dev (accuracy for POS, entity F1 for NER), score tests."""
    primary = tasks.task_kind(task).primary_metric
    train_x, dev_x, *test_x = standardise(train.features[layer], dev.features[layer],
                                          *(t.features[layer] for t in tests.values()))
    dev_scores = word_scorer(task, dev, id2label, scheme)
    params, record = fit_probe(
        train_x, train.labels, dev_x, lambda p: dev_scores(p)[primary], len(id2label), config
    )
    results = {
        name: word_scorer(task, words, id2label, scheme)(np.asarray(predict(params, jnp.asarray(x))))
        for (name, words), x in zip(tests.items(), test_x, strict=True)
    }
    return {"layer": layer, "metric": primary, **record, "dev": dev_scores(np.asarray(predict(params, dev_x))),
            "tests": results}
