"""Variants of the distillation step, timed against each other in alternating rounds.

Each variant is `jaxdistil.perf.make_jax_step` (the trainer's own jitted step) with one option
changed, so a proposal is measured on the real step, paired and interleaved (a shared machine
drifts; alternating rounds cancel most of it). Variants (`--variants`, the first is the
reference):

  plain         full (B, L, V) logits and `losses.distillation_loss` (`train.fused_head_chunk=0`)
  fused[:N]     the fused LM head + loss, N positions per chunk (default 256; the trainer's default)
  ...+PRNG      built and run under that `jax_default_prng_impl`, e.g. `fused+rbg`

    python benchmarks/prototypes.py --check                       # fused loss == plain loss, grads too
    python benchmarks/prototypes.py --variants plain fused --rounds 10 --steps 1
    python benchmarks/prototypes.py --variants fused:128 fused:256 fused:512
"""

from __future__ import annotations

import argparse
import contextlib

import jax
import jax.numpy as jnp

from jaxdistil import perf
from jaxdistil.losses import distillation_loss, fused_distillation_loss


def check_fused_loss(seed: int = 0) -> float:
    """Largest relative gap between the fused and the plain loss (value, parts and gradients)."""
    b, length, h, v = 3, 10, 16, 50
    keys = jax.random.split(jax.random.key(seed), 10)
    hs, ht, hidden_s, hidden_t = (jax.random.normal(k, (b, length, h)) for k in keys[:4])
    ws, wt = (0.3 * jax.random.normal(k, (v, h)) for k in keys[4:6])
    bs, bt = (0.1 * jax.random.normal(k, (v,)) for k in keys[6:8])
    labels = jnp.where(jax.random.uniform(keys[8], (b, length)) < 0.3,
                       jax.random.randint(keys[9], (b, length), 0, v), -100)
    mask = jnp.ones((b, length), jnp.int32).at[1, -4:].set(0)
    labels = jnp.where(mask.astype(bool), labels, -100)
    kw = dict(temperature=2.0, alpha_distil=0.5, alpha_cosine=0.3, alpha_mlm=0.2)

    def plain(hs, ws, bs, hidden_s):
        return distillation_loss(hs @ ws.T + bs, ht @ wt.T + bt, hidden_s, hidden_t, labels, mask, **kw)

    def fused(hs, ws, bs, hidden_s):
        return fused_distillation_loss(hs, (ws, bs), ht, (wt, bt), hidden_s, hidden_t, labels, mask,
                                       chunk_len=4, **kw)

    (ref, ref_parts), ref_grads = jax.value_and_grad(plain, argnums=(0, 1, 2, 3), has_aux=True)(hs, ws, bs, hidden_s)
    (val, parts), grads = jax.value_and_grad(fused, argnums=(0, 1, 2, 3), has_aux=True)(hs, ws, bs, hidden_s)
    gaps = [abs(float(val - ref)) / abs(float(ref))]
    gaps += [abs(float(parts[k] - ref_parts[k])) / max(abs(float(ref_parts[k])), 1e-12) for k in parts]
    gaps += [float(jnp.max(jnp.abs(a - g)) / jnp.max(jnp.abs(a))) for a, g in zip(ref_grads, grads, strict=True)]
    print(f"fused loss {float(val):.6f} vs plain {float(ref):.6f}; largest relative gap "
          f"(value, parts, grads of features/embeddings/bias/hidden) {max(gaps):.1e}")
    return max(gaps)


def make_variant(name: str, shape: perf.StepShape, hparams) -> tuple[perf.JaxStep, str]:
    """(the step, its PRNG implementation or '') of a variant name such as 'fused:128+rbg'."""
    variant, _, prng = name.partition("+")
    kind, _, chunk = variant.partition(":")
    if kind not in ("plain", "fused"):
        raise ValueError(f"unknown variant {name!r}: plain | fused[:CHUNK], optionally +PRNG")
    chunk_size = 0 if kind == "plain" else int(chunk or 256)
    with jax.default_prng_impl(prng) if prng else contextlib.nullcontext():
        return perf.make_jax_step(shape, hparams, fused_head_chunk=chunk_size), prng


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    perf.add_shape_args(parser)
    parser.add_argument("--variants", nargs="+", default=["plain", "fused"])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round (median)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--check", action="store_true", help="only check the fused loss against the plain one")
    args = parser.parse_args()
    if args.check:
        if check_fused_loss() > 1e-5:
            raise SystemExit("fused loss differs from losses.distillation_loss")
        return
    shape, hparams = perf.shape_and_hparams_from_args(args)
    print(f"shape: {shape.describe()}", flush=True)
    runners = {}
    for name in args.variants:
        step, prng = make_variant(name, shape, hparams)

        def run(step=step, prng=prng):
            with jax.default_prng_impl(prng) if prng else contextlib.nullcontext():
                step.run()
        run()  # compiles
        runners[name] = run
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(args.rounds):
        for name, run in runners.items():
            times[name].append(perf.median(perf.time_calls(run, args.steps, warmup=1)))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in times.items()), flush=True)
    reference = args.variants[0]
    for name, ts in times.items():
        ratio = perf.median([b / t for b, t in zip(times[reference], ts, strict=True)])
        print(f"{name}: {perf.median(ts) * 1e3:.1f} ms/step, {perf.step_flops(shape) / perf.median(ts) / 1e9:.1f} "
              f"GFLOP/s, {ratio:.2f}x vs {reference}")


if __name__ == "__main__":
    main()
