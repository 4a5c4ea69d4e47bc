"""`run(config, workdir)`: the whole distillation (or MLM pre-training) job.

`run` reads as its phases: take the workdir's lock, check the settings against the run it holds
(`run_record`), resolve the inputs (`inputs.check_settings` and `build_inputs`, which check
everything that can be wrong before any long work), compile the step (`step.compile_step`), restore the newest
readable checkpoint or initialise, train with the periodic actions (log, held-out evaluation,
checkpoint, each behind a check that the loss is finite), export. Re-running with the same
workdir resumes; SIGTERM/SIGINT (preemption) checkpoints before stopping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import math
import pathlib
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from jaxdistil import sharding
from jaxdistil.checkpoint import restore_newest_readable, save_train_state
from jaxdistil.data.masking import token_weights_from_counts
from jaxdistil.data.pipeline import make_eval_batches
from jaxdistil.evaluate.mlm import EvalMasking, batch_key, metrics_from_sums, mlm_eval_step
from jaxdistil.inputs import RunInputs, build_inputs, check_settings, check_workdir, train_iterator
from jaxdistil.metric_writer import MetricWriter, host_scalars, last_logged
from jaxdistil.model_card import write_export
from jaxdistil.optim import TrainState
from jaxdistil.run_record import check_resume, record_event, record_invocation, record_settings, record_training
from jaxdistil.step import CompiledStep, compile_step
from jaxdistil.workdir import Workdir, WorkdirLock

log = logging.getLogger(__name__)


def run(config: Any, workdir: str | pathlib.Path) -> dict[str, float]:
    """Trains to `config.train.steps` (resuming if the workdir has a checkpoint); returns last metrics.

    `config.train.prng_impl` (e.g. "rbg") scopes JAX's PRNG implementation to this run: masking
    and dropout draw from it (a scoped setting, so the process's default is left as it was).
    """
    workdir = Workdir(workdir)
    impl = config.train.prng_impl
    primary = jax.process_index() == 0
    with jax.default_prng_impl(impl) if impl else contextlib.nullcontext():
        holdout = check_settings(config)  # before anything is written
        check_workdir(workdir)
        with WorkdirLock(workdir) if primary else contextlib.nullcontext():
            changed = check_resume(config, workdir)
            if primary:
                record_settings(config, workdir)
            inputs = build_inputs(config, workdir, holdout)
            data_iter = train_iterator(config, inputs)
            data_iter.start_prefetch()  # a stream's thread or worker processes start reading while the step compiles
            compiled = compile_step(config, inputs.student_config, inputs.teacher_config, inputs.tokenizer)
            manager, state, resumed_from = restore_or_init(config, inputs, compiled, data_iter)
            if primary:
                record_invocation(workdir, changed, resumed_from)
            try:
                if resumed_from is not None and resumed_from >= config.train.steps:
                    log.info("already complete at step %d of %d", resumed_from, config.train.steps)
                    last = last_logged(workdir)
                else:
                    last, state = timed_train(config, inputs, compiled, state, data_iter, manager)
            finally:
                manager.close()
            if config.export_hf and int(jax.device_get(state.step)) >= config.train.steps and primary:
                write_export(inputs.student_config, jax.device_get(state.params), workdir.hf_export,
                             inputs.tokenizer, workdir=workdir.root)
            return last


def timed_train(config: Any, inputs: RunInputs, compiled: CompiledStep, state: TrainState, data_iter: Any,
                manager: ocp.CheckpointManager) -> tuple[dict[str, float], TrainState]:
    """`train`, with its wall time recorded in run_history.jsonl however it ends (the card's wall time)."""
    start_step, started, end_step = int(jax.device_get(state.step)), time.monotonic(), None
    try:
        last, state = train(config, inputs, compiled, state, data_iter, manager)
        end_step = int(jax.device_get(state.step))
        return last, state
    finally:
        if jax.process_index() == 0:
            record_training(inputs.workdir, start_step, end_step, time.monotonic() - started)


def restore_or_init(config: Any, inputs: RunInputs, compiled: CompiledStep, data_iter: Any
                    ) -> tuple[ocp.CheckpointManager, TrainState, int | None]:
    """(manager, state, the step resumed from or None): the newest readable checkpoint, moving
    `data_iter` to it, else the initial state."""
    manager, state, moved = restore_newest_readable(
        inputs.workdir, config.train.keep_checkpoints, compiled.sharded_abstract_state(), data_iter)
    if state is None:
        return manager, compiled.init_state(inputs.student_init), None
    step = int(jax.device_get(state.step))
    if moved:
        log.warning("fell back from step %d to step %d: the newer checkpoints could not be read", moved[0], step)
    log.info("resumed from step %d of %d", step, config.train.steps)
    return manager, state, step


@dataclasses.dataclass
class HeldOutEval:
    """The student's held-out MLM loss/accuracy: the same blocks masked the same way every time."""

    eval_fn: Any
    batches: Any
    mesh: jax.sharding.Mesh
    max_batches: int
    seed: int

    @classmethod
    def for_run(cls, config: Any, inputs: RunInputs, compiled: CompiledStep) -> HeldOutEval:
        spec = compiled.spec
        masking = EvalMasking(spec.mask_token_id, spec.special_token_ids, spec.mlm_probability)
        eval_fn = jax.jit(lambda p, b, r: mlm_eval_step(p, None, b, r, module=compiled.student,
                                                         teacher_module=None, masking=masking))
        batches = make_eval_batches(inputs.eval_blocks, global_batch_size=config.train.eval_batch_size,
                                    pad_id=inputs.tokenizer.pad_token_id)
        return cls(eval_fn, batches, compiled.mesh, config.train.eval_batches, config.seed)

    def __call__(self, params: Any) -> dict[str, float]:
        totals: dict[str, float] = {}
        for i, batch in enumerate(itertools.islice(self.batches, self.max_batches)):
            batch = sharding.global_batch(batch, self.mesh)
            sums = jax.device_get(self.eval_fn(params, batch, batch_key(self.seed, i)))
            for k, v in sums.items():
                totals[k] = totals.get(k, 0.0) + float(v)
        metrics = metrics_from_sums(totals)
        return {"eval/mlm_loss": metrics["loss"], "eval/mlm_accuracy": metrics["accuracy"],
                "eval/perplexity": metrics["perplexity"]}


class Diverged(ValueError):
    """The loss or the gradient norm became NaN or Inf."""


class StepLog:
    """Step metrics kept on the device until they are needed on the host (at each log, and before
    each checkpoint: one host sync per log or save, none per step), checked finite there, and the
    throughput counted from after the first step, which compiles."""

    CHECKED = ("loss/total", "opt/grad_norm")

    def __init__(self, writer: MetricWriter, start_step: int):
        self.writer = writer
        self.pending: list[tuple[int, Any]] = []  # device metrics not yet fetched
        self.fetched: list[tuple[int, dict[str, float]]] = []  # fetched and checked, not yet written
        self.timer_start: float | None = None
        self.timed_tokens = 0.0
        self.first_timed = start_step + 1

    def add(self, step: int, metrics: Any) -> None:
        self.pending.append((step, metrics))
        if self.timer_start is None:
            jax.block_until_ready(metrics)
            self.timer_start = time.perf_counter()

    def check_finite(self) -> None:
        """Fetches the pending steps; on the first non-finite one, writes the steps up to it and raises."""
        for step, metrics in self.pending:
            scalars = host_scalars(metrics)
            self.fetched.append((step, scalars))
            bad = {k: scalars[k] for k in self.CHECKED if not math.isfinite(scalars[k])}
            if bad:
                self.pending = []
                self.write_fetched()
                raise Diverged(step, bad)
        self.pending = []

    def write_fetched(self) -> None:
        for s, sc in self.fetched:
            self.writer.write(s, sc)
        self.fetched = []

    def flush(self) -> dict[str, float]:
        """Writes every pending step; returns the last one's scalars with `perf/tokens_per_s`."""
        self.check_finite()
        rows = self.fetched
        self.timed_tokens += sum(sc["data/tokens"] for s, sc in rows if s > self.first_timed)
        last = rows[-1][1]
        last["perf/tokens_per_s"] = self.timed_tokens / max(time.perf_counter() - self.timer_start, 1e-9)
        self.write_fetched()
        return last


def divergence_advice(config: Any, step: int, bad: dict[str, float], last_saved: int | None) -> str:
    values = ", ".join(f"{k}={v}" for k, v in bad.items())
    saved = (f"nothing after step {last_saved} was saved, and re-running resumes from there" if last_saved
             else "no checkpoint was saved, and re-running starts again from step 0")
    fixes = [f"lower --config.train.learning_rate (now {config.train.learning_rate:g})",
             f"raise --config.train.warmup_steps (now {config.train.warmup_steps})",
             f"lower --config.train.max_grad_norm (now {config.train.max_grad_norm:g})"]
    if config.dtype != "float32":
        fixes.append(f"use --config.dtype=float32 (now {config.dtype})")
    return (f"training diverged at step {step}: {values}; {saved}. To get past it: " + ", or ".join(fixes))


def _due(step: int, every: int, total: int) -> bool:
    return step % every == 0 or step == total


def train(config: Any, inputs: RunInputs, compiled: CompiledStep, state: TrainState, data_iter: Any,
          manager: ocp.CheckpointManager) -> tuple[dict[str, float], TrainState]:
    """The loop to `train.steps`, or to a stop signal; returns (last metrics, final state).

    Raises `Diverged` at the first non-finite loss or gradient norm found, before any later
    state is saved: the last checkpoint on disk is a good one.
    """
    train_cfg = config.train
    primary = jax.process_index() == 0
    token_weights = None
    if inputs.token_counts is not None:
        token_weights = jnp.asarray(token_weights_from_counts(
            inputs.token_counts, config.masking.mlm_smoothing, special_token_ids=compiled.spec.special_token_ids))
    teacher_params = compiled.place_teacher(inputs.teacher_params)
    held_out = HeldOutEval.for_run(config, inputs, compiled)
    start_step = int(jax.device_get(state.step))
    writer = MetricWriter(inputs.workdir, start_step, enabled=primary)
    step_log = StepLog(writer, start_step)
    last: dict[str, float] = {}
    bar = tqdm(total=train_cfg.steps, initial=start_step, desc="distil" if compiled.teacher else "mlm",
               disable=not primary or not config.progress, dynamic_ncols=True)
    try:
        with StopFlag() as stop:
            step = start_step
            while step < train_cfg.steps and not stop.stop:
                batch = sharding.global_batch(next(data_iter), compiled.mesh)
                state, metrics = compiled.step_fn(state, teacher_params, batch, token_weights)
                step += 1
                bar.update(1)
                step_log.add(step, metrics)
                if _due(step, train_cfg.log_every, train_cfg.steps):
                    last = step_log.flush()
                    bar.set_postfix(loss=f"{last['loss/total']:.3f}", tok_s=f"{last['perf/tokens_per_s']:.0f}")
                if train_cfg.eval_every and _due(step, train_cfg.eval_every, train_cfg.steps):
                    step_log.check_finite()
                    scores = held_out(state.params)
                    writer.write(step, scores)
                    last.update(scores)
                    if primary:
                        bar.write(f"step {step}: eval MLM loss {scores['eval/mlm_loss']:.3f} "
                                  f"acc {scores['eval/mlm_accuracy']:.3f}")
                if _due(step, train_cfg.checkpoint_every, train_cfg.steps):
                    step_log.check_finite()
                    save_train_state(manager, state, data_iter)
            step_log.check_finite()
            step_log.write_fetched()  # steps since the last log, when stopped early
            if stop.stop and step < train_cfg.steps:
                save_train_state(manager, state, data_iter)
                log.warning("stopped at step %d; re-run the same command to resume", step)
    except Diverged as diverged:
        bad_step, bad = diverged.args
        message = divergence_advice(config, bad_step, bad, manager.latest_step())
        if primary:
            record_event(inputs.workdir, "diverged", step=bad_step, values=bad, last_checkpoint=manager.latest_step())
        raise Diverged(message) from None
    finally:
        bar.close()
        writer.close()
    return last, state


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
