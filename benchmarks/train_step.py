"""Throughput and MFU of the jitted distillation step (`jaxdistil.train.build_train_step`).

    python benchmarks/train_step.py                                  # CPU acceptance shape
    python benchmarks/train_step.py --config configs/paper.py --dtype bfloat16 --batch 32
    python benchmarks/train_step.py --teacher-layers 12 --student-layers 6 --hidden 768 \
        --heads 12 --ffn 3072 --vocab 32005 --batch 32 --seq 128 --dtype bfloat16

Prints the median step time over `--steps` timed steps (after a compile/warm-up step),
tokens/s, the model FLOPs of one step by the analytic count of `jaxdistil.perf` (teacher
forward + 3 × student forward, matmuls only:

    forward = layers · (8·B·L·H² + 4·B·L·H·F + 4·B·L²·H) + 2·B·L·H·(H + V)

i.e. 24·B·L·H² + 4·B·L²·H per layer when F = 4H, plus the LM head's dense and decoder)
next to XLA's own count for the compiled step, the achieved FLOP/s, MFU against a
square-matmul peak measured in the same run and dtype (the fastest call over a few sizes),
the device's peak memory where it reports one, and the host tokens/s of the grain pipeline,
which must outrun the step. MFU uses the median step against the best matmul: exact on an
idle machine, a lower bound on a shared one (the fastest step's MFU is printed beside it).
The last line is machine-readable: `ms_per_step=<x> tokens_per_s=<y> mfu=<z>`.
"""

from __future__ import annotations

import argparse

import jax

from jaxdistil import perf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    perf.add_shape_args(parser)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median taken)")
    parser.add_argument("--peak-sizes", type=int, nargs="*", default=None,
                        help="square matmul sizes for the peak (default: by backend)")
    parser.add_argument("--attention", choices=["xla", "cudnn"], default=None,
                        help="jax.nn.dot_product_attention implementation (default: JAX chooses)")
    parser.add_argument("--remat", action="store_true", help="recompute student activations in backward")
    parser.add_argument("--fused-head-chunk", type=int, default=256,
                        help="positions per chunk of the fused LM head + loss; 0: full (B, L, V) logits")
    parser.add_argument("--prng", default=None, help="jax_default_prng_impl for masking/dropout, e.g. rbg")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the host-pipeline measurement")
    args = parser.parse_args()
    if args.prng:
        jax.config.update("jax_default_prng_impl", args.prng)
    shape, hparams = perf.shape_and_hparams_from_args(args)
    device = jax.devices()[0]
    print(f"shape: {shape.describe()}", flush=True)
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}; "
          f"attention {args.attention or 'JAX default'}, remat {args.remat}, "
          f"fused head chunk {args.fused_head_chunk or 'off'}, "
          f"prng {jax.config.jax_default_prng_impl}", flush=True)

    step = perf.make_jax_step(shape, hparams, attention_impl=args.attention, remat=args.remat,
                              fused_head_chunk=args.fused_head_chunk)
    step.run()  # compiles
    # The peak is measured before and after the timed steps, and the best kept: on a shared
    # machine that is the closest to what the hardware can do.
    peak_before = perf.measure_peak_flops(shape.dtype, args.peak_sizes)
    cpu_times: list[float] = []
    times = perf.time_calls(step.run, args.steps, warmup=1, cpu_times=cpu_times)
    seconds = perf.median(times)
    tokens_per_s = shape.tokens / seconds
    print(f"step: {perf.spread(times)} over {args.steps} steps, {tokens_per_s:,.0f} tokens/s; "
          f"{perf.median(cpu_times):.2f} CPU s/step (all threads)", flush=True)

    analytic = perf.step_flops(shape)
    xla = perf.xla_flops(step.compiled())
    xla_note = f", XLA cost analysis {xla / 1e9:.2f} GFLOP ({xla / analytic:.3f}× analytic)" if xla else ""
    if xla and args.fused_head_chunk and shape.tokens > args.fused_head_chunk:
        xla_note += " (XLA counts the fused head's loop body once: a lower bound; --fused-head-chunk 0 to compare)"
    achieved = analytic / seconds
    print(f"model FLOPs/step: {analytic / 1e9:.2f} GFLOP analytic{xla_note}")

    peak, size = max(peak_before, perf.measure_peak_flops(shape.dtype, args.peak_sizes))
    mfu = achieved / peak
    print(f"achieved {achieved / 1e12:.3f} TFLOP/s; {shape.dtype} matmul peak {peak / 1e12:.3f} TFLOP/s "
          f"(best {size}² call); MFU {mfu:.1%}, least-disturbed step {analytic / min(times) / peak:.1%}")

    memory = perf.peak_memory_bytes()
    memory_note = f"{memory / 2**30:.2f} GiB" if memory else "not reported by this backend"
    print(f"peak device memory: {memory_note}")
    if not args.no_pipeline:
        host = perf.pipeline_tokens_per_s(shape)
        print(f"host grain pipeline: {host:,.0f} tokens/s ({host / tokens_per_s:.0f}× the step)")
    print(f"ms_per_step={seconds * 1e3:.2f} tokens_per_s={tokens_per_s:.0f} mfu={mfu:.4f}")


if __name__ == "__main__":
    main()
