"""The distillation trainer: a pure, jitted train step and the loop around it.

The step is one module-level pure function, `train_step(state, teacher_params, batch,
token_weights)`, jitted once with explicit shardings and the state donated. Masking and
dropout randomness are folded from the step number, so a resumed run replays exactly the
same randomness. The teacher is a frozen argument: never differentiated, never in the
optimizer state, never checkpointed with the student. Plain MLM pre-training is the same
step with no teacher and `alpha_mlm = 1`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import pathlib
import signal
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdistil import sharding as shd
from jaxdistil.config import ModelConfig
from jaxdistil.data.masking import mask_tokens
from jaxdistil.losses import distillation_loss, fused_distillation_loss
from jaxdistil.modeling import MaskedLM, decoder_params

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
STUDENT_CONFIG = "student_config.json"
RUN_CONFIG = "run_config.json"
TOKENIZER_DIR = "tokenizer"


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any  # the student's fp32 parameters
    opt_state: Any
    rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step)

    def as_dict(self) -> dict:
        return {"step": self.step, "params": self.params, "opt_state": self.opt_state, "rng": self.rng}


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything static the step needs: hashable, so it is baked into the compiled step."""

    temperature: float = 2.0
    alpha_distil: float = 0.5
    alpha_cosine: float = 0.3
    alpha_mlm: float = 0.2
    restrict_to_mask: bool = False
    mlm_probability: float = 0.15
    mask_ratio: float = 0.8
    random_ratio: float = 0.1
    mask_token_id: int = 4
    special_token_ids: tuple[int, ...] = (0, 1, 2, 3)
    vocab_size: int = 32005
    grad_accum: int = 1
    use_teacher: bool = True
    # Positions per device per chunk of the fused LM head + loss (`losses.fused_distillation_loss`):
    # no (B, L, V) logits are materialised. 0 computes the full logits and `distillation_loss`.
    # Needs decoders tied to the word embeddings (CamemBERT's).
    fused_head_chunk: int = 256
    batch_shards: int = 1  # devices the batch axis is split over (sizes the fused head's chunks)


# --- optimizer -------------------------------------------------------------------------------


def learning_rate_schedule(peak: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
    """Linear warm-up to `peak`, then linear decay to 0 (DistilBERT's `get_linear_schedule_with_warmup`)."""
    warmup_steps = max(0, min(warmup_steps, total_steps))
    return optax.join_schedules([
        optax.linear_schedule(0.0, peak, max(warmup_steps, 1)),
        optax.linear_schedule(peak, 0.0, max(total_steps - warmup_steps, 1)),
    ], [warmup_steps])


def _decay_mask(params: Any) -> Any:
    """No weight decay on biases and LayerNorm scales (DistilBERT's `no_decay` list)."""
    def decays(path, _):
        names = [getattr(p, "key", str(p)) for p in path]
        return names[-1] not in ("bias", "scale")
    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(train_cfg: Any) -> optax.GradientTransformation:
    """AdamW + global-norm clipping + warm-up/linear-decay schedule, from the `train` config."""
    schedule = learning_rate_schedule(train_cfg.learning_rate, train_cfg.warmup_steps, train_cfg.steps)
    return optax.chain(
        optax.clip_by_global_norm(train_cfg.max_grad_norm),
        optax.adamw(schedule, b1=train_cfg.adam_b1, b2=train_cfg.adam_b2, eps=train_cfg.adam_eps,
                    weight_decay=train_cfg.weight_decay, mask=_decay_mask),
    )


def init_train_state(params: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
    params = jax.tree.map(jnp.asarray, params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=jax.random.PRNGKey(seed))


# --- the step --------------------------------------------------------------------------------


def _micro_batches(batch: dict[str, jax.Array], accum: int) -> dict[str, jax.Array]:
    """(B, L) → (accum, B/accum, L), interleaved so every micro-batch spans every device."""
    def split(x):
        b = x.shape[0]
        if b % accum:
            raise ValueError(f"batch size {b} is not divisible by grad_accum={accum}")
        return x.reshape(b // accum, accum, *x.shape[1:]).swapaxes(0, 1)
    return jax.tree.map(split, batch)


def _loss_and_metrics(params, teacher_params, batch, token_weights, rng, *, student: nn.Module,
                      teacher: nn.Module | None, spec: StepSpec):
    mask_rng, dropout_rng = jax.random.split(rng)
    attention_mask = batch["attention_mask"]
    input_ids, labels = mask_tokens(
        mask_rng, batch["input_ids"], attention_mask, mask_token_id=spec.mask_token_id,
        special_token_ids=spec.special_token_ids, vocab_size=spec.vocab_size,
        mlm_probability=spec.mlm_probability, mask_ratio=spec.mask_ratio, random_ratio=spec.random_ratio,
        token_weights=token_weights)
    loss_kw = dict(temperature=spec.temperature, alpha_distil=spec.alpha_distil if spec.use_teacher else 0.0,
                   alpha_cosine=spec.alpha_cosine if spec.use_teacher else 0.0, alpha_mlm=spec.alpha_mlm,
                   restrict_to_mask=spec.restrict_to_mask)
    fused = spec.fused_head_chunk > 0
    t_out = None
    if spec.use_teacher:
        t_out = jax.lax.stop_gradient(teacher.apply({"params": teacher_params}, input_ids, attention_mask,
                                                    deterministic=True, decode=not fused))
    teacher_hidden = t_out.hidden_states[-1] if t_out is not None else None

    def loss_fn(p):
        s_out = student.apply({"params": p}, input_ids, attention_mask, deterministic=False, decode=not fused,
                              rngs={"dropout": dropout_rng})
        if not fused:
            return distillation_loss(s_out.logits, t_out.logits if t_out is not None else None,
                                     s_out.hidden_states[-1], teacher_hidden, labels, attention_mask, **loss_kw)
        rows_per_shard = max(1, input_ids.shape[0] // spec.batch_shards)
        return fused_distillation_loss(
            s_out.head_features, decoder_params(p), t_out.head_features if t_out is not None else None,
            decoder_params(teacher_params) if t_out is not None else None, s_out.hidden_states[-1],
            teacher_hidden, labels, attention_mask, chunk_len=max(1, spec.fused_head_chunk // rows_per_shard),
            **loss_kw)

    (total, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    metrics = {"loss/total": total, **{f"loss/{k}": v for k, v in parts.items()},
               "data/masked_tokens": jnp.sum(labels != -100).astype(jnp.float32),
               "data/tokens": jnp.sum(attention_mask).astype(jnp.float32)}
    return grads, metrics


def train_step(state: TrainState, teacher_params: Any, batch: dict[str, jax.Array],
               token_weights: jax.Array | None, *, student: nn.Module, teacher: nn.Module | None,
               tx: optax.GradientTransformation, spec: StepSpec, schedule: optax.Schedule | None = None):
    """One optimizer step over `spec.grad_accum` micro-batches; returns (new state, metrics)."""
    rng = jax.random.fold_in(state.rng, state.step)
    grad_fn = functools.partial(_loss_and_metrics, student=student, teacher=teacher, spec=spec)
    if spec.grad_accum == 1:
        grads, metrics = grad_fn(state.params, teacher_params, batch, token_weights, rng)
    else:
        def body(carry, xs):
            micro, i = xs
            g, m = grad_fn(state.params, teacher_params, micro, token_weights, jax.random.fold_in(rng, i))
            return jax.tree.map(jnp.add, carry, (g, m)), None

        zeros = jax.eval_shape(lambda: grad_fn(state.params, teacher_params,
                                               jax.tree.map(lambda x: x[0], _micro_batches(batch, spec.grad_accum)),
                                               token_weights, rng))
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
        (grads, metrics), _ = jax.lax.scan(
            body, zeros, (_micro_batches(batch, spec.grad_accum), jnp.arange(spec.grad_accum)))
        grads = jax.tree.map(lambda g: g / spec.grad_accum, grads)
        metrics = {k: v if k.startswith("data/") else v / spec.grad_accum for k, v in metrics.items()}
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics.update({"opt/grad_norm": optax.tree.norm(grads), "opt/update_norm": optax.tree.norm(updates),
                    "opt/param_norm": optax.tree.norm(params)})
    if schedule is not None:
        metrics["opt/lr"] = schedule(state.step)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def build_train_step(*, student: nn.Module, teacher: nn.Module | None, tx: optax.GradientTransformation,
                     spec: StepSpec, mesh: jax.sharding.Mesh, state_sharding: Any, teacher_sharding: Any,
                     schedule: optax.Schedule | None = None):
    """`train_step` jitted with explicit in/out shardings and the state donated."""
    step = functools.partial(train_step, student=student, teacher=teacher, tx=tx, spec=spec, schedule=schedule)
    batch_sh = shd.batch_sharding(mesh)
    return jax.jit(step, in_shardings=(state_sharding, teacher_sharding, batch_sh, shd.replicated(mesh)),
                   out_shardings=(state_sharding, shd.replicated(mesh)), donate_argnums=(0,))


# --- checkpoints -----------------------------------------------------------------------------


def checkpoint_manager(workdir: pathlib.Path, keep: int, create: bool = True):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create, enable_async_checkpointing=False)
    return ocp.CheckpointManager(workdir.resolve() / CHECKPOINT_DIR, options=options)


def save_checkpoint(manager, state: TrainState, data_iter: Any) -> None:
    import grain
    import orbax.checkpoint as ocp

    step = int(jax.device_get(state.step))
    if manager.latest_step() == step:  # e.g. SIGTERM right after a periodic save: it is already on disk
        return
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state.as_dict()),
                                               data_iter=grain.checkpoint.CheckpointSave(data_iter)),
                 force=True)
    manager.wait_until_finished()


def restore_checkpoint(manager, abstract_state: TrainState, data_iter: Any) -> TrainState:
    import grain
    import orbax.checkpoint as ocp

    step = manager.latest_step()
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state.as_dict()),
        data_iter=grain.checkpoint.CheckpointRestore(data_iter)))
    return TrainState(**restored["state"])


def load_student_from_workdir(workdir: str | os.PathLike, step: int | None = None
                              ) -> tuple[ModelConfig, dict, int]:
    """The student `(config, params, step)` of a training workdir (latest step by default)."""
    import orbax.checkpoint as ocp

    workdir = pathlib.Path(workdir)
    if not (workdir / STUDENT_CONFIG).is_file() or not (workdir / CHECKPOINT_DIR).is_dir():
        raise FileNotFoundError(f"{workdir} is not a jaxdistil training workdir "
                                f"(no {STUDENT_CONFIG} / {CHECKPOINT_DIR}/)")
    config = ModelConfig.from_json_file(workdir / STUDENT_CONFIG)
    manager = checkpoint_manager(workdir, keep=1_000_000, create=False)
    steps = manager.all_steps()
    if not steps:
        raise FileNotFoundError(f"{workdir / CHECKPOINT_DIR} holds no checkpoint yet")
    step = max(steps) if step is None else step
    if step not in steps:
        raise ValueError(f"no checkpoint for step {step} in {workdir}; available: {sorted(steps)}")
    from jaxdistil.modeling import param_shapes

    abstract = param_shapes(MaskedLM(config))
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item={"params": abstract},
            restore_args={"params": jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract)},
            partial_restore=True)))
    params = jax.tree.map(lambda x: np.asarray(x, np.float32), restored["state"]["params"])
    return config, params, step


# --- metrics sinks ---------------------------------------------------------------------------


class MetricWriter:
    """Scalars to TensorBoard event files and to a JSONL log (one line per logged step)."""

    def __init__(self, workdir: pathlib.Path, enabled: bool = True):
        self.enabled = enabled
        if enabled:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(workdir / "tensorboard"))
            self._jsonl = open(workdir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


class StopFlag:
    """Set by SIGTERM/SIGINT so the loop can checkpoint before exiting (preemption)."""

    def __init__(self):
        self.stop = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        log.warning("received signal %d: checkpointing and stopping", signum)
        self.stop = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def host_scalars(metrics: dict[str, jax.Array]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}


def iterate_eval(eval_batches: Any, max_batches: int) -> Iterator[dict[str, np.ndarray]]:
    for i, batch in enumerate(eval_batches):
        if i >= max_batches:
            return
        yield batch
