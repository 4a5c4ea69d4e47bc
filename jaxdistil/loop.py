"""`run(config, workdir)`: the whole distillation (or MLM pre-training) job.

`run` reads as its phases: resolve the inputs (`inputs.prepare_inputs`, which checks
everything that can be wrong before any long work), compile the step (`step.compile_step`),
restore the latest checkpoint or initialise, train with the periodic actions (log, held-out
evaluation, checkpoint), export. Re-running with the same workdir resumes from the latest
checkpoint; SIGTERM/SIGINT (preemption) checkpoints before stopping.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import pathlib
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from tqdm.auto import tqdm

from jaxdistil import sharding
from jaxdistil.checkpoint import checkpoint_manager, restore_train_state, save_train_state
from jaxdistil.convert import save_hf
from jaxdistil.data.masking import token_weights_from_counts
from jaxdistil.data.pipeline import make_eval_batches, make_train_iterator
from jaxdistil.evaluate.mlm import EvalMasking, batch_key, metrics_from_sums, mlm_eval_step
from jaxdistil.inputs import RunInputs, prepare_inputs
from jaxdistil.metric_writer import MetricWriter, host_scalars
from jaxdistil.optim import TrainState
from jaxdistil.step import CompiledStep, compile_step
from jaxdistil.workdir import Workdir

log = logging.getLogger(__name__)


def run(config: Any, workdir: str | pathlib.Path) -> dict[str, float]:
    """Trains to `config.train.steps` (resuming if the workdir has a checkpoint); returns last metrics.

    `config.train.prng_impl` (e.g. "rbg") scopes JAX's PRNG implementation to this run: masking
    and dropout draw from it (a scoped setting, so the process's default is left as it was).
    """
    impl = config.train.prng_impl
    with jax.default_prng_impl(impl) if impl else contextlib.nullcontext():
        inputs = prepare_inputs(config, Workdir(workdir))
        compiled = compile_step(config, inputs.student_config, inputs.teacher_config, inputs.tokenizer)
        data_iter = make_train_iterator(inputs.train_blocks, global_batch_size=config.train.batch_size,
                                        seed=config.data.seed, pad_id=inputs.tokenizer.pad_token_id)
        manager = checkpoint_manager(inputs.workdir.root, keep=config.train.keep_checkpoints)
        state = restore_or_init(compiled, manager, data_iter, inputs.student_init)
        last, state = train(config, inputs, compiled, state, data_iter, manager)
        manager.close()
        if config.export_hf and int(jax.device_get(state.step)) >= config.train.steps and jax.process_index() == 0:
            save_hf(inputs.student_config, jax.device_get(state.params), inputs.workdir.hf_export, inputs.tokenizer)
        return last


def restore_or_init(compiled: CompiledStep, manager: ocp.CheckpointManager, data_iter: Any,
                    student_init: Any) -> TrainState:
    """The latest checkpoint (moving `data_iter` to it), else the initial state."""
    if manager.latest_step() is not None:
        state = restore_train_state(manager, compiled.sharded_abstract_state(), data_iter)
        log.info("resumed from step %d", int(state.step))
        return state
    return compiled.init_state(student_init)


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


class StepLog:
    """Step metrics kept on the device until the next log (one host sync per log), and throughput
    counted from after the first step, which compiles."""

    def __init__(self, writer: MetricWriter, start_step: int):
        self.writer = writer
        self.pending: list[tuple[int, Any]] = []
        self.timer_start: float | None = None
        self.timed_tokens = 0.0
        self.first_timed = start_step + 1

    def add(self, step: int, metrics: Any) -> None:
        self.pending.append((step, metrics))
        if self.timer_start is None:
            jax.block_until_ready(metrics)
            self.timer_start = time.perf_counter()

    def flush(self) -> dict[str, float]:
        """Writes every pending step; returns the last one's scalars with `perf/tokens_per_s`."""
        scalars = [(s, host_scalars(m)) for s, m in self.pending]
        self.pending = []
        self.timed_tokens += sum(sc["data/tokens"] for s, sc in scalars if s > self.first_timed)
        last = scalars[-1][1]
        last["perf/tokens_per_s"] = self.timed_tokens / max(time.perf_counter() - self.timer_start, 1e-9)
        for s, sc in scalars:
            self.writer.write(s, sc)
        return last

    def flush_unlogged(self) -> None:
        """Steps since the last log, when the run stops early."""
        for s, m in self.pending:
            self.writer.write(s, host_scalars(m))
        self.pending = []


def _due(step: int, every: int, total: int) -> bool:
    return step % every == 0 or step == total


def train(config: Any, inputs: RunInputs, compiled: CompiledStep, state: TrainState, data_iter: Any,
          manager: ocp.CheckpointManager) -> tuple[dict[str, float], TrainState]:
    """The loop to `train.steps`, or to a stop signal; returns (last metrics, final state)."""
    train_cfg = config.train
    primary = jax.process_index() == 0
    token_weights = None
    if inputs.token_counts is not None:
        token_weights = jnp.asarray(token_weights_from_counts(
            inputs.token_counts, config.masking.mlm_smoothing, special_token_ids=compiled.spec.special_token_ids))
    teacher_params = compiled.place_teacher(inputs.teacher_params)
    held_out = HeldOutEval.for_run(config, inputs, compiled)
    writer = MetricWriter(inputs.workdir, enabled=primary)
    start_step = int(jax.device_get(state.step))
    step_log = StepLog(writer, start_step)
    last: dict[str, float] = {}
    bar = tqdm(total=train_cfg.steps, initial=start_step, desc="distil" if compiled.teacher else "mlm",
               disable=not primary or not config.progress, dynamic_ncols=True)
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
                scores = held_out(state.params)
                writer.write(step, scores)
                last.update(scores)
                if primary:
                    bar.write(f"step {step}: eval MLM loss {scores['eval/mlm_loss']:.3f} "
                              f"acc {scores['eval/mlm_accuracy']:.3f}")
            if _due(step, train_cfg.checkpoint_every, train_cfg.steps):
                save_train_state(manager, state, data_iter)
        step_log.flush_unlogged()
        if stop.stop and step < train_cfg.steps:
            save_train_state(manager, state, data_iter)
            log.warning("stopped at step %d; re-run the same command to resume", step)
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
