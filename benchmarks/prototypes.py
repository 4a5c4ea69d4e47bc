r"""Variants of the distillation step, timed against each other in alternating rounds.

Each variant is `harness.make_jax_step` (the trainer's own jitted step) with one option
changed, so a proposal is measured on the real step, paired and interleaved (a shared machine
drifts; alternating rounds cancel most of it). Variants (`--variants`, the first is the
reference):

  plain         full (B, L, V) logits and `losses.distillation_loss` (`train.fused_head_chunk_len=0`)
  fused[:N]     the fused LM head + loss, N positions of each sequence per chunk (default: the run
                config's `train.fused_head_chunk_len`)
  ...+PRNG      built and run under that `jax_default_prng_impl`, e.g. `fused+rbg`

    python benchmarks/prototypes.py --check                       # fused loss == plain loss, grads too
    python benchmarks/prototypes.py --variants plain fused --rounds 10 --steps 1
    python benchmarks/prototypes.py --variants fused:8 fused:16 fused:32
"""

from __future__ import annotations

import contextlib
import pathlib
import sys

if __package__ in (None, ""):  # run as `python benchmarks/prototypes.py`: make `benchmarks` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import harness  # noqa: E402
from jaxdistil import cli  # noqa: E402
from jaxdistil.losses import IGNORE_INDEX, distillation_loss, fused_distillation_loss  # noqa: E402


def check_fused_loss(seed: int = 0) -> float:
    """Largest relative gap between the fused and the plain loss (value, parts and gradients)."""
    b, length, h, v = 3, 10, 16, 50
    keys = jax.random.split(jax.random.key(seed), 10)
    hs, ht, hidden_s, hidden_t = (jax.random.normal(k, (b, length, h)) for k in keys[:4])
    ws, wt = (0.3 * jax.random.normal(k, (v, h)) for k in keys[4:6])
    bs, bt = (0.1 * jax.random.normal(k, (v,)) for k in keys[6:8])
    labels = jnp.where(jax.random.uniform(keys[8], (b, length)) < 0.3,
                       jax.random.randint(keys[9], (b, length), 0, v), IGNORE_INDEX)
    mask = jnp.ones((b, length), jnp.int32).at[1, -4:].set(0)
    labels = jnp.where(mask.astype(bool), labels, IGNORE_INDEX)
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


def make_variant(name: str, shape: harness.StepShape, config) -> tuple[harness.JaxStep, str]:
    """(the step, its PRNG implementation or '') of a variant name such as 'fused:8+rbg'."""
    variant, _, prng = name.partition("+")
    kind, _, chunk = variant.partition(":")
    if kind not in ("plain", "fused"):
        raise ValueError(f"unknown variant {name!r}: plain | fused[:CHUNK_LEN], optionally +PRNG")
    chunk_len = 0 if kind == "plain" else int(chunk or config.train.fused_head_chunk_len)
    with jax.default_prng_impl(prng) if prng else contextlib.nullcontext():
        return harness.make_jax_step(shape, config, fused_head_chunk_len=chunk_len), prng


def main() -> None:
    parser = cli.parser(__doc__)
    harness.add_shape_args(parser)
    parser.add_argument("--variants", nargs="+", default=["plain", "fused"],
                        help="variants to time, the first is the reference (see above)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round (median)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds over all variants")
    parser.add_argument("--check", action="store_true", help="only check the fused loss against the plain one")
    args = parser.parse_args()
    cli.setup_logging()
    if args.check:
        if check_fused_loss() > 1e-5:
            raise SystemExit("fused loss differs from losses.distillation_loss")
        return
    shape, config = harness.shape_and_config_from_args(args)
    print(f"shape: {shape.describe()}", flush=True)
    runners = {}
    for name in args.variants:
        step, prng = make_variant(name, shape, config)

        def run(step=step, prng=prng):
            with jax.default_prng_impl(prng) if prng else contextlib.nullcontext():
                step.run()
        run()  # compiles
        runners[name] = run
    times: dict[str, list[float]] = {name: [] for name in runners}
    for r in range(args.rounds):
        for name, run in runners.items():
            times[name].append(harness.median(harness.time_calls(run, args.steps, warmup=1)))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in times.items()), flush=True)
    reference = args.variants[0]
    for name, ts in times.items():
        ratio = harness.median([b / t for b, t in zip(times[reference], ts, strict=True)])
        print(f"{name}: {harness.median(ts) * 1e3:.1f} ms/step, {shape.step_flops / harness.median(ts) / 1e9:.1f} "
              f"GFLOP/s, {ratio:.2f}x vs {reference}")


if __name__ == "__main__":
    main()
