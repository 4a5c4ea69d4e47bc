"""Prototypes of faster distillation steps, measured against `jaxdistil.train`'s step.

Not used by training: each variant is a proposal for the trainer, kept here with the
measurement that justifies it. Variants (`--variants`):

  base    `jaxdistil.train.build_train_step` as is.
  fused   the LM-head decoder and the KL + CE terms fused into one pass over token chunks
          (`fused_head_loss`): no (B, L, V) array is ever materialised, and the gradient
          w.r.t. the student logits, (softmax(s/T) − p_t)·w_kl/T + (softmax(s) − onehot)·w_ce,
          is formed in the forward pass, so the backward pass re-reads nothing of size V.
          Same matmuls, same FLOPs; the elementwise work runs on cache-sized chunks.

A `+impl` suffix (`base+rbg`, `fused+unsafe_rbg`) builds and traces the variant under that
`jax_default_prng_impl`: XLA's RngBitGenerator instead of threefry for masking and dropout.

    python benchmarks/prototypes.py --check                 # fused loss == losses.py, grads too
    python benchmarks/prototypes.py --variants base fused   # alternating rounds, median speedup
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxdistil import perf
from jaxdistil import sharding as shd
from jaxdistil import train as T
from jaxdistil.config import ModelConfig
from jaxdistil.data.masking import IGNORE_INDEX, mask_tokens
from jaxdistil.losses import masked_mean, per_token_cosine_distance
from jaxdistil.modeling import RobertaModel, _dense, _layer_norm

# --- the fused LM head + KL + CE ------------------------------------------------------------------


def _chunk_grad(hs, ht, ws, bs, wt, bt, labels, w_kl, w_ce, temperature):
    """Per-token KL and CE of one chunk of tokens, and d(weighted loss)/d(student logits)."""
    s = jnp.dot(hs, ws.T, preferred_element_type=jnp.float32) + bs
    t = (jnp.dot(ht, wt.T, preferred_element_type=jnp.float32) + bt) / temperature
    s_t = s / temperature
    lse_t = jax.nn.logsumexp(t, axis=-1, keepdims=True)
    p_t = jnp.exp(t - lse_t)
    lse_st = jax.nn.logsumexp(s_t, axis=-1, keepdims=True)
    q_t = jnp.exp(s_t - lse_st)
    lse_s = jax.nn.logsumexp(s, axis=-1, keepdims=True)
    q_1 = jnp.exp(s - lse_s)
    kl = jnp.sum(p_t * (t - s_t), axis=-1) - (lse_t - lse_st)[:, 0]
    onehot = jnp.arange(s.shape[-1])[None, :] == labels[:, None]
    ce = lse_s[:, 0] - jnp.sum(jnp.where(onehot, s, 0.0), axis=-1)
    grad = (w_kl / temperature)[:, None] * (q_t - p_t) + w_ce[:, None] * (q_1 - onehot)
    return kl, ce, grad.astype(hs.dtype)


def _fused_forward(hs, ws, bs, ht, wt, bt, labels, w_kl, w_ce, temperature, chunk):
    n, h = hs.shape
    split = lambda x: x.reshape(n // chunk, chunk, *x.shape[1:])  # noqa: E731

    def body(carry, xs):
        dws, dbs = carry
        hs_c, ht_c, lab_c, wkl_c, wce_c = xs
        kl, ce, g = _chunk_grad(hs_c, ht_c, ws, bs, wt, bt, lab_c, wkl_c, wce_c, temperature)
        dhs = jnp.dot(g, ws.astype(g.dtype), preferred_element_type=jnp.float32)
        dws = dws + jnp.dot(g.T, hs_c, preferred_element_type=jnp.float32)
        dbs = dbs + jnp.sum(g, axis=0, dtype=jnp.float32)
        return (dws, dbs), (kl, ce, dhs)

    init = (jnp.zeros(ws.shape, jnp.float32), jnp.zeros(bs.shape, jnp.float32))
    (dws, dbs), (kl, ce, dhs) = jax.lax.scan(body, init, tuple(map(split, (hs, ht, labels, w_kl, w_ce))))
    distil = jnp.sum(kl.reshape(n) * w_kl)  # already weighted: alpha·T²/count
    mlm = jnp.sum(ce.reshape(n) * w_ce)
    return (distil + mlm, distil, mlm), (dhs.reshape(n, h).astype(hs.dtype), dws, dbs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(9, 10))
def fused_head_loss(hs, ws, bs, ht, wt, bt, labels, w_kl, w_ce, temperature, chunk):
    """(weighted KL + weighted CE, the KL part, the CE part) of the tied decoder's logits.

    Computed chunk by chunk. Only the first output is differentiable: the two parts are for
    logging (their cotangents are ignored, as `value_and_grad(..., has_aux=True)` gives).

    hs, ht: (N, H) student/teacher LM-head features (after dense → gelu → LayerNorm);
    ws, wt: (V, H) word embeddings; bs, bt: (V,) decoder biases; labels (N,) with -100
    ignored; w_kl, w_ce: (N,) per-token weights that already hold alpha, T² and 1/count.
    Only (hs, ws, bs) get gradients; the teacher's inputs are constants.
    """
    return _fused_forward(hs, ws, bs, ht, wt, bt, labels, w_kl, w_ce, temperature, chunk)[0]


def _fused_fwd(hs, ws, bs, ht, wt, bt, labels, w_kl, w_ce, temperature, chunk):
    return _fused_forward(hs, ws, bs, ht, wt, bt, labels, w_kl, w_ce, temperature, chunk)


def _fused_bwd(temperature, chunk, grads, cotangent):
    ct = cotangent[0]  # the parts' cotangents are ignored (logging only)
    dhs, dws, dbs = grads
    zero = None
    return (ct.astype(dhs.dtype) * dhs, ct * dws, ct * dbs, zero, zero, zero, zero, zero, zero)


fused_head_loss.defvjp(_fused_fwd, _fused_bwd)


class HeadFeatures(nn.Module):
    """`LMHead` up to the decoder (dense → gelu → LayerNorm), same parameter names."""

    config: ModelConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        h = _dense(self.config, self.config.hidden_size, self.dtype, "dense")(x)
        h = jax.nn.gelu(h, approximate=False)
        return _layer_norm(self.config, "layer_norm")(h).astype(self.dtype)


def _features(params, cfg, dtype, input_ids, attention_mask, deterministic, rng=None):
    """(last hidden state, LM-head features, word embeddings, decoder bias) of a MaskedLM's params."""
    rngs = None if deterministic else {"dropout": rng}
    out = RobertaModel(cfg, dtype).apply({"params": params["roberta"]}, input_ids, attention_mask,
                                         deterministic=deterministic, rngs=rngs)
    head = params["lm_head"]
    head_params = {"dense": head["dense"], "layer_norm": head["layer_norm"]}
    feats = HeadFeatures(cfg, dtype).apply({"params": head_params}, out.last_hidden_state)
    word_embeddings = params["roberta"]["embeddings"]["word_embeddings"]["embedding"]
    return out.last_hidden_state, feats, word_embeddings, head["bias"]


def fused_loss_and_metrics(params, teacher_params, batch, rng, *, student_cfg, teacher_cfg, dtype, spec,
                           chunk):
    """`train._loss_and_metrics` with `fused_head_loss` instead of logits + `distillation_loss`."""
    mask_rng, dropout_rng = jax.random.split(rng)
    attention_mask = batch["attention_mask"]
    input_ids, labels = mask_tokens(
        mask_rng, batch["input_ids"], attention_mask, mask_token_id=spec.mask_token_id,
        special_token_ids=spec.special_token_ids, vocab_size=spec.vocab_size,
        mlm_probability=spec.mlm_probability, mask_ratio=spec.mask_ratio, random_ratio=spec.random_ratio)
    t_hidden, t_feats, t_w, t_b = jax.lax.stop_gradient(
        _features(teacher_params, teacher_cfg, dtype, input_ids, attention_mask, deterministic=True))
    n = input_ids.size
    non_pad = attention_mask.reshape(n).astype(bool)
    labels = labels.reshape(n)
    kl_sel = (labels != IGNORE_INDEX) if spec.restrict_to_mask else non_pad
    ce_sel = labels != IGNORE_INDEX
    w_kl = jnp.where(kl_sel, spec.alpha_distil * spec.temperature**2 / jnp.maximum(kl_sel.sum(), 1), 0.0)
    w_ce = jnp.where(ce_sel, spec.alpha_mlm / jnp.maximum(ce_sel.sum(), 1), 0.0)

    def loss_fn(p):
        s_hidden, s_feats, s_w, s_b = _features(p, student_cfg, dtype, input_ids, attention_mask,
                                                 deterministic=False, rng=dropout_rng)
        h = s_feats.shape[-1]
        head, distil, mlm = fused_head_loss(
            s_feats.reshape(n, h), s_w.astype(dtype), s_b, t_feats.reshape(n, h), t_w.astype(dtype), t_b,
            labels, w_kl, w_ce, spec.temperature, chunk)
        cosine = masked_mean(per_token_cosine_distance(s_hidden, t_hidden), attention_mask)
        total = head + spec.alpha_cosine * cosine
        return total, {"distil": distil / spec.alpha_distil, "cosine": cosine, "mlm": mlm / spec.alpha_mlm}

    (total, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return grads, {"loss/total": total, **{f"loss/{k}": v for k, v in parts.items()}}


def fused_train_step(state, teacher_params, batch, token_weights, *, tx, **loss_kw):
    """`train.train_step` (grad_accum = 1, no token weights) around `fused_loss_and_metrics`."""
    del token_weights
    rng = jax.random.fold_in(state.rng, state.step)
    grads, metrics = fused_loss_and_metrics(state.params, teacher_params, batch, rng, **loss_kw)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["opt/grad_norm"] = optax.global_norm(grads)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def make_fused_step(shape: perf.StepShape, hparams: Any, chunk: int = 256, seed: int = 0) -> perf.JaxStep:
    """Same set-up as `perf.make_jax_step` (same params, state, batch), fused step jitted alike."""
    base = perf.make_jax_step(shape, hparams, seed)
    dtype = jnp.bfloat16 if shape.dtype == "bfloat16" else jnp.float32
    specials, mask_id = perf.special_ids(shape.teacher)
    spec = T.StepSpec(mask_token_id=mask_id, special_token_ids=specials, vocab_size=shape.vocab)
    if shape.tokens % chunk:
        raise ValueError(f"batch × seq = {shape.tokens} is not a multiple of the chunk {chunk}")
    mesh = shd.make_mesh(1)
    step = functools.partial(fused_train_step, tx=T.make_optimizer(hparams), student_cfg=shape.student,
                             teacher_cfg=shape.teacher, dtype=dtype, spec=spec, chunk=chunk)
    state_sh = jax.tree.map(lambda x: x.sharding, base.state)
    teacher_sh = jax.tree.map(lambda x: x.sharding, base.teacher_params)
    in_shardings = (state_sh, teacher_sh, shd.batch_sharding(mesh), shd.replicated(mesh))
    step_fn = jax.jit(step, in_shardings=in_shardings, out_shardings=(state_sh, shd.replicated(mesh)),
                      donate_argnums=(0,))
    return perf.JaxStep(step_fn, base.state, base.teacher_params, base.batch)


# --- checks and measurement -----------------------------------------------------------------------


def check_fused_loss(seed: int = 0) -> None:
    """Fused (distil, mlm) and their gradients equal logits + `losses.distillation_loss`."""
    from jaxdistil.losses import distillation_loss

    n, h, v, temperature = 64, 32, 500, 2.0
    keys = jax.random.split(jax.random.key(seed), 8)
    hs, ht = (jax.random.normal(k, (n, h)) for k in keys[:2])
    ws, wt = (0.3 * jax.random.normal(k, (v, h)) for k in keys[2:4])
    bs, bt = (0.1 * jax.random.normal(k, (v,)) for k in keys[4:6])
    labels = jnp.where(jax.random.uniform(keys[6], (n,)) < 0.3, jax.random.randint(keys[7], (n,), 0, v), -100)
    mask = jnp.ones((n,), jnp.int32).at[-5:].set(0)
    labels = jnp.where(mask.astype(bool), labels, -100)

    def reference(hs, ws, bs):
        s, t = hs @ ws.T + bs, ht @ wt.T + bt
        _, parts = distillation_loss(s[None], t[None], None, None, labels[None], mask[None],
                                     temperature=temperature, alpha_distil=0.5, alpha_cosine=0.0,
                                     alpha_mlm=0.2)
        return 0.5 * parts["distil"] + 0.2 * parts["mlm"]

    def fused(hs, ws, bs):
        w_kl = jnp.where(mask.astype(bool), 0.5 * temperature**2 / mask.sum(), 0.0)
        ce_sel = labels != -100
        w_ce = jnp.where(ce_sel, 0.2 / ce_sel.sum(), 0.0)
        return fused_head_loss(hs, ws, bs, ht, wt, bt, labels, w_kl, w_ce, temperature, 16)[0]

    ref_val, ref_grads = jax.value_and_grad(reference, argnums=(0, 1, 2))(hs, ws, bs)
    val, grads = jax.value_and_grad(fused, argnums=(0, 1, 2))(hs, ws, bs)
    errors = [float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30))
              for a, b in zip(ref_grads, grads, strict=True)]
    print(f"fused loss {float(val):.6f} vs reference {float(ref_val):.6f}; "
          f"max relative grad error (hs, W, b) = {', '.join(f'{e:.1e}' for e in errors)}")
    assert abs(float(val) - float(ref_val)) < 1e-5 * abs(float(ref_val)) + 1e-6 and max(errors) < 1e-5


def _under_prng(run, prng: str):
    """`run` inside `jax.default_prng_impl(prng)`: the config is part of the jit cache key."""
    if not prng:
        return run

    def wrapped():
        with jax.default_prng_impl(prng):
            run()
    return wrapped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    perf.add_shape_args(parser)
    parser.add_argument("--variants", nargs="+", default=["base", "fused"],
                        help="base | fused[:CHUNK], optionally +PRNG (e.g. fused:512+rbg); "
                             "the first is the reference")
    parser.add_argument("--chunk", type=int, default=256, help="tokens per fused chunk")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--prng", default=None, help="jax_default_prng_impl, e.g. rbg / unsafe_rbg")
    parser.add_argument("--check", action="store_true", help="only check the fused loss against losses.py")
    args = parser.parse_args()
    if args.prng:
        jax.config.update("jax_default_prng_impl", args.prng)
    if args.check:
        check_fused_loss()
        return
    shape, hparams = perf.shape_and_hparams_from_args(args)
    print(f"shape: {shape.describe()}; prng {jax.config.jax_default_prng_impl}", flush=True)
    makers = {"base": perf.make_jax_step, "fused": functools.partial(make_fused_step, chunk=args.chunk)}
    steps = {}
    for name in args.variants:
        maker, _, prng = name.partition("+")  # e.g. "fused+rbg": built and run with that PRNG
        maker, _, chunk = maker.partition(":")  # e.g. "fused:512": tokens per chunk
        if chunk:
            makers[maker + ":" + chunk] = functools.partial(make_fused_step, chunk=int(chunk))
            maker = maker + ":" + chunk
        with jax.default_prng_impl(prng) if prng else contextlib.nullcontext():
            step = makers[maker](shape, hparams)
        steps[name] = _under_prng(step.run, prng)
        steps[name]()  # compiles
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(args.rounds):
        for name, step in steps.items():
            times[name].append(perf.median(perf.time_calls(step, args.steps, warmup=1)))
        line = ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in times.items())
        print(f"round {r + 1}: {line}", flush=True)
    base_name = args.variants[0]
    for name, ts in times.items():
        ratio = perf.median([b / t for b, t in zip(times[base_name], ts, strict=True)])
        mfu_flops = perf.step_flops(shape) / perf.median(ts)
        print(f"{name}: {perf.median(ts) * 1e3:.1f} ms/step, {mfu_flops / 1e9:.1f} GFLOP/s, "
              f"{ratio:.2f}x vs {base_name}")


if __name__ == "__main__":
    main()
