"""The train state and the optimizer: AdamW with clipping and a warm-up/linear-decay schedule.

Built once, from explicit arguments, for the distillation trainer (`optimizer_for_run`, which
reads a run config's `train` fields) and for fine-tuning (`evaluate.finetune`, HF Trainer's
betas): the schedule comes back beside the optimizer, so whoever logs the learning rate reads
the very schedule the optimizer follows.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any  # fp32 parameters being trained
    opt_state: Any
    rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step)

    def as_dict(self) -> dict:
        """The checkpointed form (Orbax saves a plain dict, so old checkpoints stay readable)."""
        return {"step": self.step, "params": self.params, "opt_state": self.opt_state, "rng": self.rng}


def init_train_state(params: Any, tx: optax.GradientTransformation, seed: int) -> TrainState:
    params = jax.tree.map(jnp.asarray, params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      rng=jax.random.PRNGKey(seed))


class Optimizer(NamedTuple):
    tx: optax.GradientTransformation
    schedule: optax.Schedule  # the learning rate at each step, as `tx` applies it


def learning_rate_schedule(peak: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
    """Linear warm-up to `peak`, then linear decay to 0 (DistilBERT's `get_linear_schedule_with_warmup`)."""
    warmup_steps = max(0, min(warmup_steps, total_steps))
    return optax.join_schedules([
        optax.linear_schedule(0.0, peak, max(warmup_steps, 1)),
        optax.linear_schedule(peak, 0.0, max(total_steps - warmup_steps, 1)),
    ], [warmup_steps])


def decay_mask(params: Any) -> Any:
    """No weight decay on biases and LayerNorm scales (DistilBERT's `no_decay` list)."""
    def decays(path, _):
        names = [getattr(p, "key", str(p)) for p in path]
        return names[-1] not in ("bias", "scale")
    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(*, learning_rate: float, warmup_steps: int, total_steps: int, weight_decay: float,
                   b1: float, b2: float, eps: float, max_grad_norm: float) -> Optimizer:
    """Global-norm clipping, then AdamW (decay masked by `decay_mask`) on the warm-up/decay schedule."""
    schedule = learning_rate_schedule(learning_rate, warmup_steps, total_steps)
    tx = optax.chain(
        optax.clip_by_global_norm(max_grad_norm),
        optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask),
    )
    return Optimizer(tx, schedule)


def optimizer_for_run(train_cfg: Any) -> Optimizer:
    """The distillation trainer's optimizer, from a run config's `train` section (run_config.py)."""
    return make_optimizer(learning_rate=train_cfg.learning_rate, warmup_steps=train_cfg.warmup_steps,
                          total_steps=train_cfg.steps, weight_decay=train_cfg.weight_decay,
                          b1=train_cfg.adam_b1, b2=train_cfg.adam_b2, eps=train_cfg.adam_eps,
                          max_grad_norm=train_cfg.max_grad_norm)
