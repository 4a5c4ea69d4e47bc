"""Fine-tune an encoder with a task head, in JAX with optax, and score its dev and test sets.

The body comes from any masked-LM parameters (their `roberta` subtree), the head is fresh,
so teacher and student are compared on the same footing. The task's splits arrive encoded
(`evaluate.tasks`): one code path serves every task, with a masked mean cross-entropy over
whatever labels there are, and each split scores its own predictions. A batch is padded to
its longest row rounded up to one of a few bucket lengths (`bucket_lengths`), and always has
`batch_size` rows (the last one filled with all-pad rows whose labels are ignored), so the
train and predict steps compile once per bucket, not once per batch; training batches group
rows of similar length, evaluation sorts them by length.

Recipe (HF Trainer's defaults for GLUE-style fine-tuning): the trainer's AdamW (`optim`: no
decay on biases and LayerNorm scales, gradient clipping, linear warm-up then linear decay to
0) with HF Trainer's betas and epsilon; evaluate on dev after every epoch, keep the best
parameters, stop after `patience` epochs without improvement, and report the test sets with
the best parameters. The protocol around it (`finetune_protocol`): the learning rate chosen on
dev from a small grid, then several seeds at that rate, reported as mean ± spread.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import pathlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from tqdm import tqdm

from jaxdistil import modeling, optim
from jaxdistil.config import ModelConfig
from jaxdistil.convert import check_tokenizer, save_hf
from jaxdistil.data.tokenize import write_file
from jaxdistil.evaluate.alignment import DEFAULT_LABEL_PIECE, LABEL_PIECES, LabelPiece
from jaxdistil.evaluate.tasks import SUITE_TASKS, EncodedSplit, PreparedData, Split, prepare_data, task_kind
from jaxdistil.losses import IGNORE_INDEX, masked_mean, per_token_cross_entropy

Params = dict[str, Any]
logger = logging.getLogger(__name__)

# HF Trainer's AdamW betas and epsilon (the distillation trainer uses RoBERTa's, run_config.py).
ADAM_B1 = 0.9
ADAM_B2 = 0.999
ADAM_EPS = 1e-8


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Optimisation and data-size knobs of one fine-tuning run."""

    learning_rate: float = 5e-5
    epochs: int = 3
    batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int | None = None  # most sub-tokens per row, specials included (None: the model's positions)
    label_piece: LabelPiece = DEFAULT_LABEL_PIECE  # which sub-token of a word carries its label
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
        if self.label_piece not in LABEL_PIECES:
            problems.append(f"label_piece={self.label_piece!r} must be one of {LABEL_PIECES}")
        if self.max_length is not None and self.max_length < 3:
            problems.append(f"max_length={self.max_length} leaves no room between <s> and </s>")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio={self.warmup_ratio} must be in [0, 1)")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate={self.learning_rate} must be positive")
        if problems:
            raise ValueError("invalid FinetuneConfig: " + "; ".join(problems))


# The benchmark suite's protocol, FLUE's published one (getalp/Flaubert flue/examples/*.cfg:
# Adam, lr 5e-6, batch 8, dropout 0.1, epochs per task in `tasks.SUITE_TASKS`), with this
# module's AdamW, warm-up and early stopping on dev (`patience`).
SUITE_LEARNING_RATE = 5e-6
SUITE_BATCH_SIZE = 8


def suite_config(task: str, **overrides: Any) -> FinetuneConfig:
    """The suite's FinetuneConfig for a `tasks.SUITE_TASKS` task; `overrides` replace its fields."""
    protocol = {
        "learning_rate": SUITE_LEARNING_RATE, "batch_size": SUITE_BATCH_SIZE, "epochs": SUITE_TASKS[task].epochs
    }
    return FinetuneConfig(**{**protocol, **overrides})


@dataclasses.dataclass
class FinetuneResult:
    """Best parameters (host numpy) and everything needed to use and export them."""

    task: str
    config: ModelConfig
    params: Params | None  # None: a run read back from a `RunStore` that keeps no parameters
    id2label: dict[int, str]
    metrics: dict[str, Any]  # best_epoch, epochs_run, dev {...}, test {name: {...}}, history

    @property
    def module(self) -> nn.Module:
        return head_module(self.task, self.config, len(self.id2label))


# ------------------------------------------------------------------------- model, steps


def head_module(task: str, config: ModelConfig, num_labels: int) -> nn.Module:
    return modeling.model_with_head(config, task_kind(task).head, num_labels)


def init_finetune_params(module: nn.Module, body_params: Mapping[str, Any], rng: jax.Array) -> Params:
    """A fresh head on the `roberta` body of any pretrained params (masked LM or classifier)."""
    if "roberta" not in body_params:
        raise ValueError(
            f"the pretrained params have no 'roberta' body (top-level keys "
            f"{sorted(body_params)}); pass a masked-LM or classifier parameter tree"
        )
    fresh = modeling.init_params(module, rng)
    body = body_params["roberta"]
    expected = jax.tree.map(np.shape, fresh["roberta"])
    if jax.tree.structure(body) != jax.tree.structure(fresh["roberta"]) or jax.tree.map(np.shape, body) != expected:
        raise ValueError(
            "the pretrained 'roberta' params do not match the model config "
            "(names or shapes differ): pass the config that belongs to the checkpoint"
        )
    body = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), body)
    return {**fresh, "roberta": body}


def optimizer_for_finetuning(cfg: FinetuneConfig, num_steps: int) -> optim.Optimizer:
    """The trainer's AdamW over `num_steps`, warming up for `cfg.warmup_ratio` of them."""
    return optim.make_optimizer(
        learning_rate=cfg.learning_rate,
        warmup_steps=int(cfg.warmup_ratio * num_steps),
        total_steps=num_steps,
        weight_decay=cfg.weight_decay,
        b1=ADAM_B1,
        b2=ADAM_B2,
        eps=ADAM_EPS,
        max_grad_norm=cfg.max_grad_norm,
    )


def classification_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy over labelled positions: (B, L, C) vs (B, L) or (B, C) vs (B,)."""
    return masked_mean(per_token_cross_entropy(logits, labels), labels != IGNORE_INDEX)


def train_step(
    state: optim.TrainState,
    batch: Mapping[str, jax.Array],
    *,
    module: nn.Module,
    tx: optax.GradientTransformation,
) -> tuple[optim.TrainState, dict[str, jax.Array]]:
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
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, {"loss": loss, "grad_norm": optax.tree.norm(grads)}


def predict_step(params: Params, batch: Mapping[str, jax.Array], *, module: nn.Module) -> jax.Array:
    """Argmax label ids, shaped like `labels` (per token or per example)."""
    logits = module.apply({"params": params}, batch["input_ids"], batch["attention_mask"])
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


# ------------------------------------------------------------------------------ batching

BUCKET_MIN = 16  # the shortest bucket: no batch is padded to fewer sub-tokens
GROUP_BATCHES = 50  # training rows are sorted by length within groups of this many batches


def bucket_lengths(max_length: int) -> tuple[int, ...]:
    """The widths a batch is padded to: the powers of two from BUCKET_MIN below `max_length`, and `max_length`.

    A batch at most doubles its longest row, and jit compiles one shape per doubling of the
    length (each compile costs seconds on CPU, more than the padding of the next bucket saves).
    """
    widths = {max_length}
    width = BUCKET_MIN
    while width < max_length:
        widths.add(width)
        width *= 2
    return tuple(sorted(widths))


def bucket_for(length: int, buckets: Sequence[int]) -> int:
    """The shortest bucket that holds `length` sub-tokens."""
    return next(b for b in buckets if b >= length)


def row_lengths(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """Real (unpadded) sub-tokens of every row."""
    return np.asarray(arrays["attention_mask"]).sum(axis=1)


def padded_batch(
    arrays: Mapping[str, np.ndarray], indices: np.ndarray, batch_size: int, pad_id: int, buckets: Sequence[int]
) -> dict[str, np.ndarray]:
    """Rows `indices` of every array, cut or padded to the bucket of their longest row, filled up to
    `batch_size` with all-pad, unlabelled rows; per-example labels (1-D) keep their shape."""
    width = bucket_for(int(arrays["attention_mask"][indices].sum(axis=1).max()), buckets)
    fills = {"input_ids": pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
    out = {}
    for key, array in arrays.items():
        rows = array[indices]
        if array.ndim == 2:
            rows = rows[:, :width]
            batch = np.full((batch_size, width), fills[key], dtype=array.dtype)
            batch[: len(indices), : rows.shape[1]] = rows
        else:
            batch = np.full((batch_size, *array.shape[1:]), fills[key], dtype=array.dtype)
            batch[: len(indices)] = rows
        out[key] = batch
    return out


def training_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of one epoch's batches: shuffled, sorted by length within groups of GROUP_BATCHES
    batches (so a batch's rows have similar lengths), the batches in random order."""
    order = rng.permutation(len(lengths))
    group = GROUP_BATCHES * batch_size
    batches = []
    for start in range(0, len(order), group):
        members = order[start : start + group]
        members = members[np.argsort(-lengths[members], kind="stable")]
        batches += [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def evaluation_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Row indices sorted by length, in batches: each padded to about its own rows' length."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padding_fraction(arrays: Mapping[str, np.ndarray], batches: Sequence[np.ndarray], batch_size: int,
                     buckets: Sequence[int]) -> float:
    """Share of the sub-token slots in `batches` that are padding (filler rows included)."""
    lengths = row_lengths(arrays)
    slots = sum(batch_size * bucket_for(int(lengths[i].max()), buckets) for i in batches)
    return 1.0 - float(lengths.sum()) / slots


def predict(
    predict_fn: Callable,
    params: Params,
    arrays: Mapping[str, np.ndarray],
    batch_size: int,
    pad_id: int,
    buckets: Sequence[int],
) -> np.ndarray:
    """Predictions for every row of `arrays`, in their order, as wide as their `labels`."""
    labels = arrays["labels"]
    out = np.zeros(labels.shape, dtype=np.int32)
    for indices in evaluation_batches(row_lengths(arrays), batch_size):
        predicted = np.asarray(predict_fn(params, padded_batch(arrays, indices, batch_size, pad_id, buckets)))
        predicted = predicted[: len(indices)]
        if labels.ndim == 2:
            out[indices, : predicted.shape[1]] = predicted[:, : labels.shape[1]]
        else:
            out[indices] = predicted
    return out


def _host_copy(tree: Params) -> Params:
    # A real copy: on CPU np.asarray can alias a device buffer that the next step donates.
    return jax.tree.map(lambda x: np.array(x, dtype=np.float32, copy=True), tree)


# ----------------------------------------------------------------------------- the loop


def _train_epoch(
    step_fn: Callable, state: optim.TrainState, batches: Iterator[dict[str, np.ndarray]], bar: tqdm
) -> tuple[optim.TrainState, float]:
    """One pass over `batches`; the state after it and the mean training loss."""
    losses = []
    for batch in batches:
        state, step_metrics = step_fn(state, batch)
        losses.append(step_metrics["loss"])
        bar.update()
    return state, float(np.mean(jax.device_get(losses)))


def prepare(
    model: tuple[ModelConfig, Params],
    tokenizer: Any,
    task: str,
    train: Split,
    dev: Split,
    tests: Sequence[Split],
    cfg: FinetuneConfig,
) -> PreparedData:
    """The splits encoded for `model` (its tokenizer checked) in rows of at most `cfg.max_length`."""
    config = model[0]
    check_tokenizer(tokenizer, config)
    max_length = resolved_max_length(cfg, config)
    return prepare_data(
        task,
        tokenizer,
        train,
        dev,
        tests,
        max_length=max_length,
        max_train_examples=cfg.max_train_examples,
        max_eval_examples=cfg.max_eval_examples,
        label_piece=cfg.label_piece,
    )


def resolved_max_length(cfg: FinetuneConfig, config: ModelConfig) -> int:
    """`cfg.max_length`, or the model's positions when it is None; longer than those is refused."""
    if cfg.max_length is None:
        return config.max_sequence_length
    if cfg.max_length > config.max_sequence_length:
        raise ValueError(f"max_length={cfg.max_length} exceeds the model's {config.max_sequence_length} positions")
    return cfg.max_length


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
    data = prepare(model, tokenizer, task, train, dev, tests, cfg)
    return fit(model, task, data, cfg, progress=progress)


def fit(
    model: tuple[ModelConfig, Params], task: str, data: PreparedData, cfg: FinetuneConfig, *, progress: bool = False
) -> FinetuneResult:
    """`finetune` on splits already encoded for `model` (`prepare`), so several runs share them."""
    primary = task_kind(task).primary_metric
    config, pretrained = model
    buckets = bucket_lengths(resolved_max_length(cfg, config))
    module = head_module(task, config, len(data.label_map))
    params = init_finetune_params(module, pretrained, jax.random.fold_in(jax.random.key(cfg.seed), 0))
    train_arrays = data.train.arrays
    train_lengths = row_lengths(train_arrays)
    num_train = len(train_lengths)
    steps_per_epoch = math.ceil(num_train / cfg.batch_size)
    tx = optimizer_for_finetuning(cfg, steps_per_epoch * cfg.epochs).tx
    state = optim.init_train_state(params, tx, cfg.seed)
    step_fn = jax.jit(functools.partial(train_step, module=module, tx=tx), donate_argnums=0)
    predict_fn = jax.jit(functools.partial(predict_step, module=module))

    def evaluate(params: Params, split: EncodedSplit) -> dict[str, float]:
        predictions = predict(predict_fn, params, split.arrays, cfg.eval_batch_size, config.pad_token_id, buckets)
        return split.score(predictions)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"score": -math.inf, "epoch": 0, "params": None, "dev": None}
    shuffle = np.random.default_rng(cfg.seed)
    bar = tqdm(total=steps_per_epoch * cfg.epochs, desc=f"{task} seed {cfg.seed}", unit="step", disable=not progress)
    padding = []
    for epoch in range(1, cfg.epochs + 1):
        order = training_batches(train_lengths, cfg.batch_size, shuffle)
        padding.append(padding_fraction(train_arrays, order, cfg.batch_size, buckets))
        batches = (padded_batch(train_arrays, i, cfg.batch_size, config.pad_token_id, buckets) for i in order)
        state, train_loss = _train_epoch(step_fn, state, batches, bar)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"non-finite training loss in epoch {epoch}: lower the learning rate")
        dev_scores = evaluate(state.params, data.dev)
        history.append({"epoch": epoch, "train_loss": train_loss, "dev": dev_scores})
        bar.set_postfix(epoch=epoch, loss=f"{train_loss:.3f}", dev=f"{dev_scores[primary]:.4f}")
        if dev_scores[primary] > best["score"]:
            best = {"score": dev_scores[primary], "epoch": epoch, "params": _host_copy(state.params), "dev": dev_scores}
        elif epoch - best["epoch"] >= cfg.patience:
            break
    bar.close()

    results = {
        "task": task,
        "seed": cfg.seed,
        "learning_rate": cfg.learning_rate,
        "primary_metric": primary,
        "train_examples": data.train.num_examples,
        "train_rows": num_train,
        "train_padding_fraction": float(np.mean(padding)),
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "dev": best["dev"],
        "test": {s.name: evaluate(best["params"], s) for s in data.tests},
        "history": history,
    }
    return FinetuneResult(task, config, best["params"], data.id2label, results)


@dataclasses.dataclass
class ProtocolResult:
    """A learning-rate search on dev (one seed per rate), then every seed at the chosen rate."""

    learning_rate: float
    search: list[FinetuneResult]  # one run per rate of the grid, with the first seed
    runs: list[FinetuneResult]  # one run per seed at `learning_rate` (the search's run reused)


def protocol_digest(model: tuple[ModelConfig, Params], task: str, data: PreparedData, cfg: FinetuneConfig) -> str:
    """What every run of a protocol depends on but its rate and seed: the model's config and weights,
    the encoded splits and labels, the other knobs. Equal digests: a finished run can stand in."""
    digest = hashlib.sha256()
    settings = dataclasses.asdict(dataclasses.replace(cfg, learning_rate=1.0, seed=0))
    digest.update(json.dumps([task, dataclasses.asdict(model[0]), settings, data.label_map], sort_keys=True).encode())
    for split in (data.train, data.dev, *data.tests):
        digest.update(split.name.encode())
        for key in sorted(split.arrays):
            digest.update(key.encode() + np.ascontiguousarray(split.arrays[key]).tobytes())
    for leaf in jax.tree.leaves(model[1]):
        digest.update(np.ascontiguousarray(np.asarray(leaf, dtype=np.float32)).tobytes())
    return digest.hexdigest()


class RunStore:
    """The finished runs of one protocol on disk, so that an interrupted protocol resumes run by run.

    Each run (rate, seed) is one JSON file of its metrics, written when it ends; with `keep_params`
    its best parameters beside it (what an export of the best run needs). The directory belongs to
    one `protocol_digest`: runs of another model, data or settings are refused, never mixed in.
    """

    def __init__(self, directory: str | os.PathLike, digest: str, *, keep_params: bool = False):
        self.directory = pathlib.Path(directory)
        self.keep_params = keep_params
        stamp = self.directory / "protocol.sha256"
        if stamp.exists() and stamp.read_text(encoding="utf-8").strip() != digest:
            raise ValueError(
                f"{self.directory} holds fine-tuning runs of another model, data or settings; "
                "give another output directory or delete that one to start over"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        write_file(stamp, (digest + "\n").encode())

    def _files(self, learning_rate: float, seed: int) -> tuple[pathlib.Path, pathlib.Path]:
        """(metrics, params) of the run (rate, seed)."""
        stem = f"lr{learning_rate:g}_seed{seed}"
        return self.directory / f"{stem}.json", self.directory / f"{stem}.msgpack"

    def get(
        self, model: tuple[ModelConfig, Params], task: str, learning_rate: float, seed: int
    ) -> FinetuneResult | None:
        """The finished run (rate, seed), or None when it has not finished (or its params are needed and absent)."""
        metrics_file, params_file = self._files(learning_rate, seed)
        if not metrics_file.exists() or (self.keep_params and not params_file.exists()):
            return None
        record = json.loads(metrics_file.read_text(encoding="utf-8"))
        params = serialization.msgpack_restore(params_file.read_bytes()) if self.keep_params else None
        id2label = {int(i): label for i, label in record["labels"].items()}
        return FinetuneResult(task, model[0], params, id2label, record["metrics"])

    def put(self, result: FinetuneResult) -> None:
        metrics_file, params_file = self._files(result.metrics["learning_rate"], result.metrics["seed"])
        if self.keep_params:  # first, so that a run's JSON never exists without the params it promises
            write_file(params_file, serialization.msgpack_serialize(result.params))
        record = {"labels": {str(i): label for i, label in result.id2label.items()}, "metrics": result.metrics}
        write_file(metrics_file, json.dumps(record, ensure_ascii=False).encode())


def finetune_protocol(
    model: tuple[ModelConfig, Params],
    task: str,
    data: PreparedData,
    cfg: FinetuneConfig,
    learning_rates: Sequence[float],
    seeds: Sequence[int],
    *,
    progress: bool = False,
    store: RunStore | None = None,
    extend_grid: int = 0,
) -> ProtocolResult:
    """Each of `learning_rates` with `seeds[0]`, the best on dev kept, then the other `seeds` at it.

    While the best rate is the largest tried, up to `extend_grid` more are tried above it, each the
    last times the grid's mean ratio (1e-4, 3e-4, 1e-3 → 3.16e-3, 1e-2); a rate that diverges ends them.
    `data` is encoded once for all runs (`prepare`); `cfg`'s own learning rate and seed are replaced.
    With a `store`, each run is kept when it ends and a run already there is read instead of redone.
    """
    if not learning_rates or not seeds:
        raise ValueError("the protocol needs at least one learning rate and one seed")

    def run(learning_rate: float, seed: int) -> FinetuneResult:
        kept = store.get(model, task, learning_rate, seed) if store else None
        if kept is not None:
            logger.info("lr %g seed %d: finished earlier, read from %s", learning_rate, seed, store.directory)
            return kept
        result = fit(model, task, data, dataclasses.replace(cfg, learning_rate=learning_rate, seed=seed),
                     progress=progress)
        if store:
            store.put(result)
        return result

    search = [run(rate, seeds[0]) for rate in learning_rates]
    rates = sorted(set(learning_rates))
    factor = (rates[-1] / rates[0]) ** (1 / (len(rates) - 1)) if len(rates) > 1 else None  # the grid's mean step
    for k in range(1, extend_grid + 1 if factor else 1):  # the best rate is the largest: the optimum may lie beyond
        if best_run(search).metrics["learning_rate"] != max(r.metrics["learning_rate"] for r in search):
            break
        rate = float(f"{rates[-1] * factor**k:.3g}")
        try:
            search.append(run(rate, seeds[0]))
        except FloatingPointError as error:  # too large a rate diverges: the grid's end
            logger.info("lr %g diverged (%s): the grid ends below it", rate, error)
            break
    chosen = best_run(search)
    rate = chosen.metrics["learning_rate"]
    return ProtocolResult(rate, search, [chosen] + [run(rate, seed) for seed in seeds[1:]])


# -------------------------------------------------------------------------- export, report


def export_hf(result: FinetuneResult, out_dir: str, tokenizer: Any = None):
    """An HF directory `CamembertFor{Token,Sequence}Classification` with id2label/label2id."""
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
