r"""Soak: does a long run's memory stay flat? A tiny distillation of a few thousand steps, with
frequent evaluation and checkpoints, while a thread samples the process's resident memory.

    python benchmarks/soak.py                        # 5 000 steps, 2-3 minutes on 2 CPU cores
    python benchmarks/soak.py --steps 20000 --interval 5 --out soak.json
    python benchmarks/soak.py --config configs/tiny.py:a.txt,b.txt --workdir /tmp/soak

The HF distiller's users saw RAM grow without bound over a run (transformers#1179); a leak of
megabytes per thousand steps hides in a short test and fills a machine over a days-long run. The run is
`jaxdistil.loop.run` itself, in this process, on --config shrunk to a small model (the teacher
--teacher-layers x --hidden, a 1-layer student, --seq-len tokens, --batch sequences), evaluated
every --eval-every steps and checkpointed every --checkpoint-every. Every --interval seconds the
sampler reads VmRSS from /proc/self/status (Linux) and the last step logged to
WORKDIR/metrics.jsonl. After --warmup-steps (compilation, the first evaluation and checkpoint,
allocator pools filling), a least-squares line through (step, RSS) gives the growth per 1 000
steps, printed beside the same over the second half of those samples (a leak keeps its slope, a
plateau flattens) and the residual spread (the noise to compare them with). The last line is
machine-readable: `rss_after_warmup_mib=<a> rss_end_mib=<b> growth_mib_per_1000_steps=<c>
late_growth_mib_per_1000_steps=<d> residual_mib=<e> samples=<n> malloc_arenas=<k>
in_use_growth_mib_per_1000_steps=<f> free_growth_mib_per_1000_steps=<g>`: on glibc each sample also reads
`mallinfo2`, so the same line through the bytes in use (a leak) is told apart from the line through the
freed bytes glibc keeps in its arenas (retention; `na` elsewhere). glibc's arenas are limited as
scripts/train.py limits them (--malloc-arenas; jaxdistil/malloc.py): `--malloc-arenas 0` measures
glibc's default beside it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

if __package__ in (None, ""):  # run as `python benchmarks/soak.py`: make `benchmarks` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402
from jaxdistil import cli, loop, malloc  # noqa: E402
from jaxdistil.run_config import load_config  # noqa: E402
from jaxdistil.workdir import Workdir  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
PROC_STATUS = pathlib.Path("/proc/self/status")
LOG_TAIL_BYTES = 4096  # more than a few metrics.jsonl lines


@dataclasses.dataclass(frozen=True)
class Sample:
    seconds: float  # since the sampler started
    step: int  # the last step logged to metrics.jsonl (at most train.log_every behind)
    rss_mib: float
    in_use_mib: float | None = None  # glibc's bytes in use (malloc.heap_mib): a leak grows them
    free_mib: float | None = None  # glibc's freed bytes kept in its arenas: retention, not a leak


def rss_mib() -> float:
    """This process's resident set size (VmRSS), in MiB."""
    for line in PROC_STATUS.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise OSError(f"no VmRSS line in {PROC_STATUS}")


def last_logged_step(metrics: pathlib.Path) -> int | None:
    """The step of the last complete line of metrics.jsonl, read from its tail (the file only grows)."""
    try:
        with open(metrics, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):  # the line being written, or the tail's cut first line
            continue
    return None


class RssSampler(threading.Thread):
    """Samples (time, logged step, RSS) every `interval` seconds until stopped."""

    def __init__(self, metrics: pathlib.Path, interval: float):
        super().__init__(name="rss-sampler", daemon=True)
        self.metrics, self.interval = metrics, interval
        self.samples: list[Sample] = []
        self._start = time.monotonic()
        self._stopped = threading.Event()

    def sample(self) -> None:
        step = last_logged_step(self.metrics)
        if step is not None:  # nothing logged yet: set-up and compilation, not the loop
            heap = malloc.heap_mib() or (None, None)
            self.samples.append(Sample(time.monotonic() - self._start, step, rss_mib(), *heap))

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            self.sample()

    def stop(self) -> list[Sample]:
        """The samples; none is taken after the run, whose end frees what the loop held."""
        self._stopped.set()
        self.join()
        return self.samples


@dataclasses.dataclass(frozen=True)
class Growth:
    after_warmup_mib: float  # the first sample at or after the warm-up
    end_mib: float
    peak_mib: float
    per_1000_steps_mib: float  # least-squares slope over the samples after the warm-up
    late_per_1000_steps_mib: float  # the same over their second half: a leak keeps it, a plateau does not
    residual_mib: float  # standard deviation of the samples around the first line: the noise
    span_steps: int  # from the first sample after the warm-up to the last
    samples: int
    in_use_per_1000_steps_mib: float | None = None  # the same line through glibc's bytes in use
    free_per_1000_steps_mib: float | None = None  # and through its free bytes kept in the arenas

    @classmethod
    def fit(cls, samples: Sequence[Sample], warmup_steps: int, final_step: int | None = None) -> Growth:
        """The line through the samples from `warmup_steps` on, without those taken at `final_step`: the
        run's end (its last evaluation, the export) compiles and allocates once, it does not grow per step."""
        kept = [s for s in samples if s.step >= warmup_steps and s.step != final_step]
        late = kept[len(kept) // 2:]
        if len(late) < 3 or late[-1].step == late[0].step:
            raise ValueError(f"only {len(kept)} samples after step {warmup_steps}: lower --warmup-steps or "
                             "--interval, or raise --steps")
        slope, residual = line_fit(kept)
        heap = all(s.in_use_mib is not None for s in kept)
        in_use, free = ((line_fit(kept, field)[0] * 1000 for field in ("in_use_mib", "free_mib")) if heap
                        else (None, None))
        return cls(kept[0].rss_mib, kept[-1].rss_mib, max(s.rss_mib for s in kept), slope * 1000,
                   line_fit(late)[0] * 1000, residual, kept[-1].step - kept[0].step, len(kept), in_use, free)


def line_fit(samples: Sequence[Sample], field: str = "rss_mib") -> tuple[float, float]:
    """(MiB per step, standard deviation of the residuals) of the least-squares line through (step, field)."""
    steps = np.array([s.step for s in samples], dtype=np.float64)
    rss = np.array([getattr(s, field) for s in samples])
    slope, intercept = np.polyfit(steps, rss, 1)
    return float(slope), float(np.std(rss - (slope * steps + intercept)))


def _figure(value: float | None) -> str:
    return "na" if value is None else f"{value:.3f}"


def parse_args(argv: Sequence[str] | None = None):
    parser = cli.parser(__doc__)
    parser.add_argument("--config", default=str(REPO / "configs" / "tiny.py"),
                        help="config file[:arg] whose data, tokenizer and teacher settings are used")
    parser.add_argument("--workdir", type=pathlib.Path,
                        help="the run's workdir, kept (none: a temporary directory, removed at the end)")
    parser.add_argument("--steps", type=int, default=5000, help="training steps")
    parser.add_argument("--warmup-steps", type=int, default=500, help="steps left out of the fit")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--seq-len", type=int, default=32, help="data.seq_len")
    parser.add_argument("--batch", type=int, default=8, help="train.batch_size (and the evaluation batch)")
    parser.add_argument("--hidden", type=int, default=64, help="teacher (and student) hidden size")
    parser.add_argument("--teacher-layers", type=int, default=2, help="random teacher's layers (student: 1)")
    parser.add_argument("--eval-every", type=int, default=100, help="train.eval_every")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="train.checkpoint_every")
    parser.add_argument("--malloc-arenas", type=int, default=malloc.ARENAS,
                        help="glibc malloc arenas, as scripts/train.py sets them (0: glibc's default; "
                             "MALLOC_ARENA_MAX in the environment wins)")
    parser.add_argument("--out", type=pathlib.Path, help="write the samples and the fit as JSON here (none: not saved)")
    return parser.parse_args(argv)


def soak_config(args):
    """--config shrunk to the soak's small model, with evaluations and checkpoints every few steps."""
    config = load_config(args.config)
    config.progress = False
    config.export_hf = False
    config.data.seq_len = args.seq_len
    config.teacher.source = "random"
    config.teacher.random.update(hidden_size=args.hidden, num_hidden_layers=args.teacher_layers,
                                 num_attention_heads=2, intermediate_size=4 * args.hidden,
                                 max_position_embeddings=args.seq_len + 2)
    config.student.num_layers = 1
    config.train.update(steps=args.steps, batch_size=args.batch, eval_batch_size=args.batch, eval_batches=2,
                        eval_every=args.eval_every, checkpoint_every=args.checkpoint_every)
    return config


def soak(args, workdir: pathlib.Path) -> tuple[list[Sample], float]:
    """Runs the training with the sampler on; (samples, wall seconds of the run)."""
    sampler = RssSampler(Workdir(workdir).metrics, args.interval)
    start = time.perf_counter()
    sampler.start()
    try:
        loop.run(soak_config(args), workdir)
    finally:
        samples = sampler.stop()
    return samples, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    arenas = malloc.limit_arenas(args.malloc_arenas)  # before JAX's backend starts its threads, as the trainer
    cli.setup_logging()
    print(arenas)
    print(f"machine: {platform.node()}, {harness.available_cores()} cores, {jax.default_backend()} "
          f"({jax.devices()[0].device_kind}), jax {jax.__version__}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="soak-") as scratch:
            samples, seconds = soak(args, args.workdir or pathlib.Path(scratch) / "run")
        growth = Growth.fit(samples, args.warmup_steps, final_step=args.steps)
    except (OSError, ValueError) as error:
        return cli.fail(error)
    print(f"{args.steps} steps in {seconds:.0f} s, set-up included; {len(samples)} samples, "
          f"{growth.samples} after step {args.warmup_steps} and before the final step's evaluation and export")
    print(f"RSS after warm-up {growth.after_warmup_mib:.1f} MiB, at the end {growth.end_mib:.1f} MiB, "
          f"peak {growth.peak_mib:.1f} MiB")
    print(f"growth {growth.per_1000_steps_mib:+.2f} MiB per 1000 steps (least squares after warm-up; "
          f"{growth.late_per_1000_steps_mib:+.2f} over the second half), i.e. "
          f"{growth.per_1000_steps_mib * growth.span_steps / 1000:+.1f} MiB over {growth.span_steps} steps; "
          f"samples spread ±{growth.residual_mib:.2f} MiB around the line")
    if growth.in_use_per_1000_steps_mib is not None:
        print(f"glibc heap per 1000 steps: in use {growth.in_use_per_1000_steps_mib:+.2f} MiB (a leak grows it), "
              f"free but kept in the arenas {growth.free_per_1000_steps_mib:+.2f} MiB (retention)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {"args": {k: str(v) for k, v in vars(args).items()}, "fit": dataclasses.asdict(growth),
                  "samples": [dataclasses.asdict(s) for s in samples]}
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    print(f"rss_after_warmup_mib={growth.after_warmup_mib:.1f} rss_end_mib={growth.end_mib:.1f} "
          f"growth_mib_per_1000_steps={growth.per_1000_steps_mib:.3f} "
          f"late_growth_mib_per_1000_steps={growth.late_per_1000_steps_mib:.3f} residual_mib={growth.residual_mib:.3f} "
          f"samples={growth.samples} malloc_arenas={malloc.arena_count()} "
          f"in_use_growth_mib_per_1000_steps={_figure(growth.in_use_per_1000_steps_mib)} "
          f"free_growth_mib_per_1000_steps={_figure(growth.free_per_1000_steps_mib)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
