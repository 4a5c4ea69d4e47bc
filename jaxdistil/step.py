"""The distillation step: one pure function, jitted once with explicit shardings.

`train_step(state, teacher_params, batch, token_weights)` masks the batch, runs the frozen
teacher and the student, and applies one optimizer update over `grad_accum` micro-batches.
Masking and dropout randomness are folded from the step number, so a resumed run replays
exactly the same randomness. The teacher is a frozen argument: never differentiated, never
in the optimizer state, never checkpointed with the student. Plain MLM pre-training is the
same step with no teacher and `alpha_mlm = 1`.

`compile_step(config, ...)` builds everything the step needs from a run config (models in
the compute dtype, optimizer, mesh, shardings) for the trainer and the benchmarks alike.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxdistil import sharding
from jaxdistil.config import ModelConfig
from jaxdistil.data.masking import mask_tokens
from jaxdistil.losses import IGNORE_INDEX, distillation_loss, fused_distillation_loss
from jaxdistil.modeling import MaskedLM, decoder_params, param_shapes
from jaxdistil.optim import Optimizer, TrainState, init_train_state, optimizer_for_run

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything static the step needs: hashable, so it is baked into the compiled step.

    Built by `from_config`; the defaults live in `run_config.base()` only.
    """

    temperature: float
    alpha_distil: float
    alpha_cosine: float
    alpha_mlm: float
    restrict_to_mask: bool
    mlm_probability: float
    mask_ratio: float
    random_ratio: float
    mask_token_id: int
    special_token_ids: tuple[int, ...]
    vocab_size: int
    grad_accum: int
    use_teacher: bool
    # Positions of every sequence that one chunk of the fused LM head + loss decodes
    # (`losses.fused_distillation_loss`); 0 computes the full (B, L, V) logits instead.
    fused_head_chunk_len: int

    @classmethod
    def from_config(cls, config: Any, tokenizer: Any, *, vocab_size: int, tied_decoders: bool = True) -> StepSpec:
        """The step of a run config; `tokenizer` gives the mask and special ids (`mask_token_id`,
        `all_special_ids`). The fused head needs decoders tied to the word embeddings."""
        loss, masking = config.loss, config.masking
        distil = config.mode == "distil"
        return cls(
            temperature=loss.temperature, alpha_distil=loss.alpha_distil if distil else 0.0,
            alpha_cosine=loss.alpha_cosine if distil else 0.0, alpha_mlm=loss.alpha_mlm if distil else 1.0,
            restrict_to_mask=loss.restrict_to_mask, mlm_probability=masking.mlm_probability,
            mask_ratio=masking.mask_ratio, random_ratio=masking.random_ratio,
            mask_token_id=int(tokenizer.mask_token_id),
            special_token_ids=tuple(sorted(int(i) for i in tokenizer.all_special_ids)),
            vocab_size=vocab_size, grad_accum=config.train.grad_accum, use_teacher=distil,
            fused_head_chunk_len=config.train.fused_head_chunk_len if tied_decoders else 0)


def _micro_batches(batch: dict[str, jax.Array], accum: int) -> dict[str, jax.Array]:
    """(B, L) → (accum, B/accum, L), interleaved so every micro-batch spans every device."""
    def split(x):
        b = x.shape[0]
        if b % accum:
            raise ValueError(f"batch size {b} is not divisible by grad_accum={accum}")
        return x.reshape(b // accum, accum, *x.shape[1:]).swapaxes(0, 1)
    return jax.tree.map(split, batch)


def _grads_and_metrics(params, teacher_params, batch, token_weights, rng, *, student: nn.Module,
                       teacher: nn.Module | None, spec: StepSpec):
    mask_rng, dropout_rng = jax.random.split(rng)
    attention_mask = batch["attention_mask"]
    input_ids, labels = mask_tokens(
        mask_rng, batch["input_ids"], attention_mask, mask_token_id=spec.mask_token_id,
        special_token_ids=spec.special_token_ids, vocab_size=spec.vocab_size,
        mlm_probability=spec.mlm_probability, mask_ratio=spec.mask_ratio, random_ratio=spec.random_ratio,
        token_weights=token_weights)
    loss_kw = dict(temperature=spec.temperature, alpha_distil=spec.alpha_distil, alpha_cosine=spec.alpha_cosine,
                   alpha_mlm=spec.alpha_mlm, restrict_to_mask=spec.restrict_to_mask)
    fused = spec.fused_head_chunk_len > 0
    t_out = None
    if spec.use_teacher:
        t_out = jax.lax.stop_gradient(teacher.apply({"params": teacher_params}, input_ids, attention_mask,
                                                    deterministic=True, compute_logits=not fused))
    teacher_hidden = t_out.hidden_states[-1] if t_out is not None else None

    def loss_fn(p):
        s_out = student.apply({"params": p}, input_ids, attention_mask, deterministic=False,
                              compute_logits=not fused, rngs={"dropout": dropout_rng})
        if not fused:
            return distillation_loss(s_out.logits, t_out.logits if t_out is not None else None,
                                     s_out.hidden_states[-1], teacher_hidden, labels, attention_mask, **loss_kw)
        return fused_distillation_loss(
            s_out.head_features, decoder_params(p), t_out.head_features if t_out is not None else None,
            decoder_params(teacher_params) if t_out is not None else None, s_out.hidden_states[-1],
            teacher_hidden, labels, attention_mask, chunk_len=spec.fused_head_chunk_len, **loss_kw)

    (total, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    metrics = {"loss/total": total, **{f"loss/{k}": v for k, v in parts.items()},
               "data/masked_tokens": jnp.sum(labels != IGNORE_INDEX).astype(jnp.float32),
               "data/tokens": jnp.sum(attention_mask).astype(jnp.float32)}
    return grads, metrics


def train_step(state: TrainState, teacher_params: Any, batch: dict[str, jax.Array],
               token_weights: jax.Array | None, *, student: nn.Module, teacher: nn.Module | None,
               tx: optax.GradientTransformation, spec: StepSpec, schedule: optax.Schedule | None = None):
    """One optimizer step over `spec.grad_accum` micro-batches; returns (new state, metrics)."""
    rng = jax.random.fold_in(state.rng, state.step)
    grad_fn = functools.partial(_grads_and_metrics, student=student, teacher=teacher, spec=spec)
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
    batch_sh = sharding.batch_sharding(mesh)
    return jax.jit(step, in_shardings=(state_sharding, teacher_sharding, batch_sh, sharding.replicated(mesh)),
                   out_shardings=(state_sharding, sharding.replicated(mesh)), donate_argnums=(0,))


@dataclasses.dataclass(frozen=True)
class CompiledStep:
    """The step of one run config with everything around it: models, optimizer, mesh, shardings."""

    mesh: jax.sharding.Mesh
    student: nn.Module
    teacher: nn.Module | None
    spec: StepSpec
    optimizer: Optimizer
    abstract_state: TrainState  # shapes only; with `state_sharding`, the layout a checkpoint restores to
    state_sharding: Any
    teacher_sharding: Any
    step_fn: Any  # jitted `train_step`
    init_state: Any  # jitted: initial student params -> sharded TrainState

    def place_teacher(self, teacher_params: Any) -> Any:
        return jax.device_put(teacher_params, self.teacher_sharding) if self.teacher is not None else None

    def sharded_abstract_state(self) -> TrainState:
        return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                            self.abstract_state, self.state_sharding)


def compile_step(config: Any, student_config: ModelConfig, teacher_config: ModelConfig | None,
                 tokenizer: Any) -> CompiledStep:
    """The jitted step of a run config (`config.mode`, `dtype`, `num_devices`, `train.*`, `loss.*`, `masking.*`)."""
    train_cfg = config.train
    dtype = COMPUTE_DTYPES[config.dtype]
    mesh = sharding.make_mesh(config.num_devices or None)
    student = MaskedLM(student_config, dtype=dtype, attention_impl=train_cfg.attention_impl, remat=train_cfg.remat)
    teacher = (MaskedLM(teacher_config, dtype=dtype, attention_impl=train_cfg.attention_impl)
               if teacher_config is not None else None)
    models = [student_config] + ([teacher_config] if teacher is not None else [])
    spec = StepSpec.from_config(config, tokenizer, vocab_size=student_config.vocab_size,
                                tied_decoders=all(m.tie_word_embeddings for m in models))
    optimizer = optimizer_for_run(train_cfg)
    init = functools.partial(init_train_state, tx=optimizer.tx, seed=config.seed)
    abstract = jax.eval_shape(init, param_shapes(MaskedLM(student_config)))
    state_sh = sharding.state_shardings(abstract, mesh, train_cfg.fsdp)
    teacher_sh = (sharding.state_shardings(param_shapes(MaskedLM(teacher_config)), mesh, train_cfg.fsdp)
                  if teacher is not None else None)
    step_fn = build_train_step(student=student, teacher=teacher, tx=optimizer.tx, spec=spec, mesh=mesh,
                               state_sharding=state_sh, teacher_sharding=teacher_sh, schedule=optimizer.schedule)
    return CompiledStep(mesh, student, teacher, spec, optimizer, abstract, state_sh, teacher_sh, step_fn,
                        jax.jit(init, out_shardings=state_sh))
