r"""Throughput and MFU of the trainer's jitted distillation step (`jaxdistil.step.compile_step`).

    python benchmarks/train_step.py                                  # CPU acceptance shape
    python benchmarks/train_step.py --config configs/paper.py --dtype bfloat16 --batch 32
    python benchmarks/train_step.py --teacher-layers 12 --student-layers 6 --hidden 768 \
        --heads 12 --ffn 3072 --vocab 32005 --batch 32 --seq 128 --dtype bfloat16

Prints the median step time over `--steps` timed steps (after a compile/warm-up step),
tokens/s, the model FLOPs of one step by the analytic count of `jaxdistil.flops` (teacher
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

import pathlib
import sys

if __package__ in (None, ""):  # run as `python benchmarks/train_step.py`: make `benchmarks` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

from benchmarks import harness  # noqa: E402
from jaxdistil import cli, flops  # noqa: E402


def main() -> None:
    parser = cli.parser(__doc__)
    harness.add_shape_args(parser)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (median taken)")
    parser.add_argument("--peak-sizes", type=int, nargs="*", default=None,
                        help="square matmul sizes for the peak (default: by backend)")
    parser.add_argument("--attention", choices=["xla", "cudnn"], default=None,
                        help="train.attention_impl: jax.nn.dot_product_attention's implementation "
                        "(default: the config's, JAX chooses)")
    parser.add_argument("--remat", action="store_true", help="train.remat: recompute student activations in backward")
    parser.add_argument("--fused-head-chunk-len", type=int, default=None,
                        help="train.fused_head_chunk_len: positions of each sequence per chunk of the fused LM "
                        "head + loss; 0: full (B, L, V) logits (default: the config's)")
    parser.add_argument("--prng", default=None, help="jax_default_prng_impl for masking/dropout, e.g. rbg "
                        "(default: JAX's, threefry)")
    parser.add_argument("--no-pipeline", action="store_true", help="skip the host-pipeline measurement")
    args = parser.parse_args()
    cli.setup_logging()
    if args.prng:
        jax.config.update("jax_default_prng_impl", args.prng)
    shape, config = harness.shape_and_config_from_args(args)
    options = {"remat": args.remat}
    if args.attention:
        options["attention_impl"] = args.attention
    if args.fused_head_chunk_len is not None:
        options["fused_head_chunk_len"] = args.fused_head_chunk_len
    step = harness.make_jax_step(shape, config, **options)
    chunk = step.compiled.spec.fused_head_chunk_len
    device = jax.devices()[0]
    print(f"shape: {shape.describe()}", flush=True)
    print(f"device: {device.device_kind} ({jax.default_backend()}), jax {jax.__version__}; "
          f"attention {step.compiled.student.attention_impl or 'JAX default'}, remat {args.remat}, "
          f"fused head chunk {f'{chunk} positions' if chunk else 'off'}, "
          f"prng {jax.config.jax_default_prng_impl}", flush=True)

    step.run()  # compiles
    # The peak is measured before and after the timed steps, and the best kept: on a shared
    # machine that is the closest to what the hardware can do.
    peak_before = harness.measure_peak_flops(shape.dtype, args.peak_sizes)
    cpu_times: list[float] = []
    times = harness.time_calls(step.run, args.steps, warmup=1, cpu_times=cpu_times)
    seconds = harness.median(times)
    tokens_per_s = shape.tokens / seconds
    print(f"step: {harness.spread(times)} over {args.steps} steps, {tokens_per_s:,.0f} tokens/s; "
          f"{harness.median(cpu_times):.2f} CPU s/step (all threads)", flush=True)

    analytic = shape.step_flops
    xla = flops.xla_flops(step.lowered_and_compiled())
    xla_note = f", XLA cost analysis {xla / 1e9:.2f} GFLOP ({xla / analytic:.3f}× analytic)" if xla else ""
    if xla and chunk and shape.seq > chunk:
        xla_note += " (XLA counts the fused head's loop body once: a lower bound; --fused-head-chunk-len 0 to compare)"
    achieved = analytic / seconds
    print(f"model FLOPs/step: {analytic / 1e9:.2f} GFLOP analytic{xla_note}")

    peak, size = max(peak_before, harness.measure_peak_flops(shape.dtype, args.peak_sizes))
    mfu = achieved / peak
    print(f"achieved {achieved / 1e12:.3f} TFLOP/s; {shape.dtype} matmul peak {peak / 1e12:.3f} TFLOP/s "
          f"(best {size}² call); MFU {mfu:.1%}, least-disturbed step {analytic / min(times) / peak:.1%}")

    memory = harness.peak_memory_bytes()
    memory_note = f"{memory / 2**30:.2f} GiB" if memory else "not reported by this backend"
    print(f"peak device memory: {memory_note}")
    if not args.no_pipeline:
        host = harness.pipeline_tokens_per_s(shape)
        print(f"host grain pipeline: {host:,.0f} tokens/s ({host / tokens_per_s:.0f}× the step)")
    print(f"ms_per_step={seconds * 1e3:.2f} tokens_per_s={tokens_per_s:.0f} mfu={mfu:.4f}")


if __name__ == "__main__":
    main()
