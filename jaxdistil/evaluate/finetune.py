"""Fine-tune an encoder with a task head: NER / POS (token classification) and text(-pair)
classification, in JAX with optax, then score dev and test sets.

The body comes from any masked-LM parameters (their `roberta` subtree), the head is fresh,
so teacher and student are compared on the same footing. One code path serves every task:
examples are encoded to fixed-shape arrays {input_ids, attention_mask, labels} (labels are
per token or per example, IGNORE_INDEX where there is nothing to learn), the loss is a
masked mean cross-entropy over whatever labels there are, and each split carries its own
scoring function. Every batch has the same shape (the last one is padded with all-pad rows
whose labels are ignored), so the train and predict steps each compile once.

Recipe (HF Trainer's defaults for GLUE-style fine-tuning): AdamW without decay on biases and
LayerNorm scales, gradient clipping at 1, linear warm-up then linear decay to 0; evaluate on
dev after every epoch, keep the best parameters, stop after `patience` epochs without
improvement, and report the test sets with the best parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from jaxdistil.config import ModelConfig
from jaxdistil.evaluate import alignment, metrics, readers
from jaxdistil.evaluate.readers import TaggedSentence, TextExample
from jaxdistil.losses import IGNORE_INDEX, masked_mean, per_token_cross_entropy
from jaxdistil.train import TrainState, init_train_state
from jaxdistil.train import make_optimizer as trainer_optimizer

Example = TaggedSentence | TextExample
Params = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """What differs between tasks: the head, the metric that selects the best epoch."""

    head: str  # a `convert.HEAD_ARCHITECTURES` key
    primary_metric: str
    tagged: bool  # TaggedSentence examples (else TextExample)


TASKS: dict[str, TaskSpec] = {
    "ner": TaskSpec("token_classification", "f1", tagged=True),
    "pos": TaskSpec("token_classification", "accuracy", tagged=True),
    "cls": TaskSpec("sequence_classification", "accuracy", tagged=False),
}


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Optimisation and data-size knobs of one fine-tuning run."""

    learning_rate: float = 5e-5
    epochs: int = 3
    batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int = 128  # sub-tokens per example, specials included
    warmup_ratio: float = 0.1  # fraction of all planned steps spent warming up
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    patience: int = 2  # epochs without a dev improvement before stopping
    seed: int = 0
    max_train_examples: int | None = None  # the first N training examples (CI-sized runs)
    max_eval_examples: int | None = None  # the first N of dev and of each test set

    def __post_init__(self) -> None:
        problems = [
            f"{name}={getattr(self, name)} must be >= 1"
            for name in ("epochs", "batch_size", "eval_batch_size", "patience")
            if getattr(self, name) < 1
        ]
        if self.max_length < 3:
            problems.append(f"max_length={self.max_length} leaves no room between <s> and </s>")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate={self.learning_rate} must be positive")
        if problems:
            raise ValueError("invalid FinetuneConfig: " + "; ".join(problems))


class Split(NamedTuple):
    """Examples and where they came from (a file path), for error messages and reports."""

    name: str
    examples: Sequence[Example]


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    """Fixed-length arrays of one split, and the function scoring predictions on it."""

    name: str
    arrays: dict[str, np.ndarray]  # input_ids, attention_mask, labels
    score: Callable[[np.ndarray], dict[str, float]]  # argmax ids (as `labels`) -> metrics


@dataclasses.dataclass
class FinetuneResult:
    """Best parameters (host numpy) and everything needed to use and export them."""

    task: str
    config: ModelConfig
    params: Params
    id2label: dict[int, str]
    metrics: dict[str, Any]  # best_epoch, epochs_run, dev {...}, test {name: {...}}, history

    @property
    def module(self) -> nn.Module:
        return head_module(self.task, self.config, len(self.id2label))


# ------------------------------------------------------------------------------ reading


def read_split(
    path: str,
    task: str,
    fmt: str = "auto",
    *,
    text_column: str = "sentence",
    pair_column: str | None = None,
    label_column: str = "label",
) -> Split:
    """One file as a Split: tagged formats for ner/pos, .tsv/.jsonl for cls.

    POS from WikiNER reads its POS field; CoNLL-U gives UPOS; the other tagged formats
    hold NER tags. The readers name the file and line of malformed input.
    """
    spec = _task_spec(task)
    if spec.tagged:
        options = {}
        resolved = readers.guess_tagged_format(path) if fmt == "auto" else fmt
        if task == "pos" and resolved == "wikiner":
            options["tag_field"] = 1
        examples: Sequence[Example] = readers.read_tagged(path, resolved, **options)
    elif str(path).endswith(".jsonl"):
        examples = readers.read_jsonl_examples(path, text_column, label_column, pair_column)
    else:
        examples = readers.read_tsv_examples(path, text_column, label_column, pair_column)
    if not examples:
        raise ValueError(f"{path}: no examples")
    return Split(str(path), examples)


def hf_task_splits(task: str, dev_fraction: float = 0.1) -> tuple[Split, Split, Split]:
    """(train, dev, test) of a `readers.HF_TASKS` task from the Hub (online or cached).

    FLUE CLS has no validation split: a seeded `dev_fraction` of train is held out as dev
    (MultiFiT, which introduced CLS, also took 10 % of train as its dev set).
    """
    train = readers.load_hf_task(task, "train")
    test = Split(f"{task}:test", readers.load_hf_task(task, "test"))
    try:
        return (
            Split(f"{task}:train", train),
            Split(f"{task}:validation", readers.load_hf_task(task, "validation")),
            test,
        )
    except ValueError as error:
        if "split" not in str(error).lower():
            raise
    order = np.random.default_rng(0).permutation(len(train))
    cut = len(train) - max(1, int(dev_fraction * len(train)))
    train_part = [train[i] for i in sorted(order[:cut])]
    dev_part = [train[i] for i in sorted(order[cut:])]
    return Split(f"{task}:train", train_part), Split(f"{task}:train (held out)", dev_part), test


def tag_scheme(sentences: Sequence[TaggedSentence]) -> metrics.TagScheme:
    """'iob1' when entities mostly start with I- (WikiNER, raw Europeana), else 'iob2'.

    A majority, not a single occurrence: IOB2 corpora hold a few stray I- starts
    (WikiNEuRal's val: 61 against 22 577 B- tags), and IOB1 ones use B- only between
    adjacent same-type entities.
    """
    b_tags = i_starts = 0
    for sentence in sentences:
        previous = "O"
        for tag in sentence.tags:
            b_tags += tag.startswith("B-")
            i_starts += tag.startswith("I-") and previous[2:] != tag[2:]
            previous = tag
    return "iob1" if i_starts > b_tags else "iob2"


# ----------------------------------------------------------------------------- encoding


def _task_spec(task: str) -> TaskSpec:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    return TASKS[task]


def _score_tags(
    predictions: np.ndarray,
    *,
    encoding: alignment.TaggedEncoding,
    gold: list[list[str]],
    id2label: Mapping[int, str],
    task: str,
    scheme: metrics.TagScheme,
) -> dict[str, float]:
    """Word-level scores: token accuracy, plus seqeval entity P/R/F1 for NER."""
    predicted = alignment.decode_word_predictions(
        predictions, encoding.word_ids, encoding.num_words, id2label, fill_label="O"
    )
    scores = {"accuracy": metrics.token_accuracy(gold, predicted)}
    if task == "ner":
        scores.update(metrics.entity_scores(gold, predicted, scheme=scheme))
    scores["truncated_words"] = encoding.truncated_words
    return scores


def _score_labels(predictions: np.ndarray, *, gold: list[str], id2label: Mapping[int, str]) -> dict[str, float]:
    predicted = [id2label[int(i)] for i in predictions]
    return {"accuracy": metrics.accuracy(gold, predicted), "macro_f1": metrics.macro_f1(gold, predicted)}


def encode_split(
    split: Split,
    task: str,
    tokenizer: Any,
    label_map: Mapping[str, int],
    max_length: int,
    scheme: metrics.TagScheme = "iob2",
) -> EncodedSplit:
    """Tokenise a split (labels checked against `label_map`) and bind its scorer."""
    readers.check_labels_known(split.examples, dict(label_map), split.name)
    id2label = {i: label for label, i in label_map.items()}
    if _task_spec(task).tagged:
        encoding = alignment.encode_tagged(split.examples, tokenizer, label_map, max_length)
        score = functools.partial(
            _score_tags,
            encoding=encoding,
            gold=[list(s.tags) for s in split.examples],
            id2label=id2label,
            task=task,
            scheme=scheme,
        )
        return EncodedSplit(split.name, encoding.batch(), score)
    arrays = alignment.encode_texts(split.examples, tokenizer, label_map, max_length)
    score = functools.partial(_score_labels, gold=[e.label for e in split.examples], id2label=id2label)
    return EncodedSplit(split.name, arrays, score)


def _check_example_types(task: str, splits: Sequence[Split]) -> None:
    """Tagged sentences for ner/pos, text examples for cls: a mix-up is a caller bug."""
    expected = TaggedSentence if _task_spec(task).tagged else TextExample
    for split in splits:
        if not split.examples:
            raise ValueError(f"{split.name}: no examples")
        if not isinstance(split.examples[0], expected):
            raise TypeError(
                f"{split.name}: task {task!r} needs {expected.__name__} examples, "
                f"got {type(split.examples[0]).__name__}"
            )


# ------------------------------------------------------------------------- model, steps


def head_module(task: str, config: ModelConfig, num_labels: int) -> nn.Module:
    from jaxdistil import modeling

    if _task_spec(task).head == "token_classification":
        return modeling.TokenClassifier(config, num_labels)
    return modeling.SequenceClassifier(config, num_labels)


def init_finetune_params(module: nn.Module, body_params: Mapping[str, Any], rng: jax.Array) -> Params:
    """A fresh head on the `roberta` body of any pretrained params (masked LM or classifier)."""
    from jaxdistil.modeling import init_params

    if "roberta" not in body_params:
        raise ValueError(
            f"the pretrained params have no 'roberta' body (top-level keys "
            f"{sorted(body_params)}); pass a masked-LM or classifier parameter tree"
        )
    fresh = init_params(module, rng)
    body = body_params["roberta"]
    expected = jax.tree.map(np.shape, fresh["roberta"])
    if jax.tree.structure(body) != jax.tree.structure(fresh["roberta"]) or jax.tree.map(np.shape, body) != expected:
        raise ValueError(
            "the pretrained 'roberta' params do not match the model config "
            "(names or shapes differ): pass the config that belongs to the checkpoint"
        )
    body = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), body)
    return {**fresh, "roberta": body}


def make_optimizer(cfg: FinetuneConfig, num_steps: int) -> optax.GradientTransformation:
    """The trainer's AdamW (clipping, no decay on biases/LayerNorm, linear warm-up then decay
    to 0) with HF Trainer's fine-tuning betas and epsilon."""
    return trainer_optimizer(
        types.SimpleNamespace(
            steps=num_steps,
            learning_rate=cfg.learning_rate,
            warmup_steps=int(cfg.warmup_ratio * num_steps),
            weight_decay=cfg.weight_decay,
            adam_b1=0.9,
            adam_b2=0.999,
            adam_eps=1e-8,
            max_grad_norm=cfg.max_grad_norm,
        )
    )


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy over labelled positions: (B, L, C) vs (B, L) or (B, C) vs (B,)."""
    return masked_mean(per_token_cross_entropy(logits, labels), labels != IGNORE_INDEX)


def train_step(
    state: TrainState,
    batch: Mapping[str, jax.Array],
    *,
    module: nn.Module,
    optimizer: optax.GradientTransformation,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One AdamW step on one batch; dropout is on, keyed by the step so runs replay exactly."""
    dropout_rng = jax.random.fold_in(state.rng, state.step)

    def loss_fn(params: Params) -> jax.Array:
        logits = module.apply(
            {"params": params},
            batch["input_ids"],
            batch["attention_mask"],
            deterministic=False,
            rngs={"dropout": dropout_rng},
        )
        return classification_loss(logits, batch["labels"])

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def predict_step(params: Params, batch: Mapping[str, jax.Array], *, module: nn.Module) -> jax.Array:
    """Argmax label ids, shaped like `labels` (per token or per example)."""
    logits = module.apply({"params": params}, batch["input_ids"], batch["attention_mask"])
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


# ------------------------------------------------------------------------------ batching


def padded_batch(
    arrays: Mapping[str, np.ndarray], indices: np.ndarray, batch_size: int, pad_id: int
) -> dict[str, np.ndarray]:
    """Rows `indices` of every array, filled up to `batch_size` with all-pad, unlabelled rows."""
    fills = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    out = {}
    for key, array in arrays.items():
        batch = np.full((batch_size, *array.shape[1:]), fills[key], dtype=array.dtype)
        batch[: len(indices)] = array[indices]
        out[key] = batch
    return out


def iter_batches(
    arrays: Mapping[str, np.ndarray], batch_size: int, pad_id: int, order: np.ndarray | None = None
) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-shape batches over all rows (in `order`, default as stored), the last one padded."""
    count = len(arrays["input_ids"])
    order = np.arange(count) if order is None else order
    for start in range(0, count, batch_size):
        yield padded_batch(arrays, order[start : start + batch_size], batch_size, pad_id)


def predict(
    predict_fn: Callable, params: Params, arrays: Mapping[str, np.ndarray], batch_size: int, pad_id: int
) -> np.ndarray:
    """Predictions for every row of `arrays`, padding rows dropped."""
    count = len(arrays["input_ids"])
    outputs = [predict_fn(params, batch) for batch in iter_batches(arrays, batch_size, pad_id)]
    return np.concatenate([np.asarray(o) for o in outputs])[:count]


def _host_copy(tree: Params) -> Params:
    # A real copy: on CPU np.asarray can alias a device buffer that the next step donates.
    return jax.tree.map(lambda x: np.array(x, dtype=np.float32, copy=True), tree)


# ----------------------------------------------------------------------------- the loop


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """A task's splits encoded with one label map (from the whole training set)."""

    label_map: dict[str, int]
    train: EncodedSplit
    dev: EncodedSplit
    tests: list[EncodedSplit]


def prepare_data(
    task: str, tokenizer: Any, train: Split, dev: Split, tests: Sequence[Split], cfg: FinetuneConfig
) -> PreparedData:
    """Labels from all of `train` (before `max_train_examples` slicing), then every split
    encoded; a dev/test label unseen in training raises ValueError naming its split."""
    _check_example_types(task, [train, dev, *tests])
    label_map = readers.build_label_map(train.examples)
    scheme = tag_scheme(train.examples) if task == "ner" else "iob2"

    def encode(split: Split, limit: int | None) -> EncodedSplit:
        return encode_split(
            Split(split.name, split.examples[:limit]), task, tokenizer, label_map, cfg.max_length, scheme
        )

    return PreparedData(
        label_map,
        encode(train, cfg.max_train_examples),
        encode(dev, cfg.max_eval_examples),
        [encode(t, cfg.max_eval_examples) for t in tests],
    )


def finetune(
    model: tuple[ModelConfig, Params],
    tokenizer: Any,
    task: str,
    train: Split,
    dev: Split,
    tests: Sequence[Split] = (),
    cfg: FinetuneConfig = FinetuneConfig(),
    *,
    progress: bool = False,
) -> FinetuneResult:
    """Fine-tune `model`'s body with a fresh `task` head; the best-on-dev params and metrics.

    `model` is `(config, params)` of any masked LM (e.g. `checkpoint.load_model`); the
    tokenizer must be the model's (checked). Deterministic given `cfg.seed`: it seeds the
    head, the shuffling and the dropout.
    """
    from jaxdistil.convert import check_tokenizer

    spec = _task_spec(task)
    config, pretrained = model
    check_tokenizer(tokenizer, config)
    if cfg.max_length > config.max_sequence_length:
        raise ValueError(f"max_length={cfg.max_length} exceeds the model's {config.max_sequence_length} positions")
    data = prepare_data(task, tokenizer, train, dev, tests, cfg)
    module = head_module(task, config, len(data.label_map))
    params = init_finetune_params(module, pretrained, jax.random.fold_in(jax.random.key(cfg.seed), 0))
    num_train = len(data.train.arrays["input_ids"])
    steps_per_epoch = math.ceil(num_train / cfg.batch_size)
    optimizer = make_optimizer(cfg, steps_per_epoch * cfg.epochs)
    state = init_train_state(params, optimizer, cfg.seed)
    step_fn = jax.jit(functools.partial(train_step, module=module, optimizer=optimizer), donate_argnums=0)
    predict_fn = jax.jit(functools.partial(predict_step, module=module))

    def evaluate(params: Params, split: EncodedSplit) -> dict[str, float]:
        return split.score(predict(predict_fn, params, split.arrays, cfg.eval_batch_size, config.pad_token_id))

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": -math.inf, "epoch": 0, "params": None, "dev": None}
    shuffle = np.random.default_rng(cfg.seed)
    bar = tqdm(total=steps_per_epoch * cfg.epochs, desc=f"{task} seed {cfg.seed}", unit="step", disable=not progress)
    for epoch in range(1, cfg.epochs + 1):
        losses = []
        for batch in iter_batches(
            data.train.arrays, cfg.batch_size, config.pad_token_id, shuffle.permutation(num_train)
        ):
            state, step_metrics = step_fn(state, batch)
            losses.append(step_metrics["loss"])
            bar.update()
        train_loss = float(np.mean(jax.device_get(losses)))
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"non-finite training loss in epoch {epoch}: lower the learning rate")
        dev_scores = evaluate(state.params, data.dev)
        history.append({"epoch": epoch, "train_loss": train_loss, "dev": dev_scores})
        bar.set_postfix(epoch=epoch, loss=f"{train_loss:.3f}", dev=f"{dev_scores[spec.primary_metric]:.4f}")
        if dev_scores[spec.primary_metric] > best["score"]:
            best = {
                "score": dev_scores[spec.primary_metric],
                "epoch": epoch,
                "params": _host_copy(state.params),
                "dev": dev_scores,
            }
        elif epoch - best["epoch"] >= cfg.patience:
            break
    bar.close()

    results = {
        "task": task,
        "seed": cfg.seed,
        "primary_metric": spec.primary_metric,
        "train_examples": num_train,
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "dev": best["dev"],
        "test": {s.name: evaluate(best["params"], s) for s in data.tests},
        "history": history,
    }
    id2label = {i: label for label, i in data.label_map.items()}
    return FinetuneResult(task, config, best["params"], id2label, results)


# -------------------------------------------------------------------------- export, report


def export_hf(result: FinetuneResult, out_dir: str, tokenizer: Any = None):
    """An HF directory `CamembertFor{Token,Sequence}Classification` with id2label/label2id."""
    from jaxdistil.convert import save_hf

    return save_hf(result.config, result.params, out_dir, tokenizer, id2label=result.id2label)


def summarize(results: Sequence[FinetuneResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and (sample) std over seeds of every dev and test metric: {split: {metric: {...}}}."""
    splits = {"dev": [r.metrics["dev"] for r in results]}
    for name in results[0].metrics["test"]:
        splits[name] = [r.metrics["test"][name] for r in results]
    summary = {}
    for split, rows in splits.items():
        summary[split] = {}
        for metric in rows[0]:
            values = np.array([row[metric] for row in rows], dtype=np.float64)
            std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            summary[split][metric] = {"mean": float(values.mean()), "std": std}
    return summary


def best_run(results: Sequence[FinetuneResult]) -> FinetuneResult:
    """The run with the best dev score (the one to export)."""
    return max(results, key=lambda r: r.metrics["dev"][r.metrics["primary_metric"]])
