"""What the benchmarks share: the benchmarked shape, random data, timing, the matmul peak, and
the trainer's own jitted step set up on random models.

The step benchmark (`train_step.py`), the paired variants (`prototypes.py`), the PyTorch
comparison (`torch_reference.py`) and the inference benchmark all import from here, so they
measure the same shapes, the same random data and the same statistics. The FLOP formulas
themselves are the library's (`jaxdistil.flops`, tested against XLA).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistil import flops, sharding
from jaxdistil.config import ModelConfig
from jaxdistil.data.pipeline import make_train_iterator, to_model_inputs
from jaxdistil.inputs import init_key
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.run_config import base, load_config
from jaxdistil.step import CompiledStep, compile_step

# Default sizes for the peak-matmul measurement: big enough to saturate the units,
# small enough to take well under a second each.
CPU_PEAK_SIZES = (512, 1024, 2048)
GPU_PEAK_SIZES = (2048, 4096, 8192)


# --- the benchmarked shape ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepShape:
    """Everything that fixes the cost of one distillation step: models, batch, dtype.

    The teacher and the student share width, heads, FFN and vocabulary (DistilBERT-style
    students differ only in depth), so one shape describes both. The defaults are the CPU
    acceptance shape of docs/performance.md.
    """

    teacher_layers: int = 6
    student_layers: int = 3
    hidden: int = 256
    heads: int = 4
    ffn: int = 1024
    vocab: int = 8000
    batch: int = 16
    seq: int = 128
    dtype: str = "float32"
    dropout: float = 0.1

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    def model_config(self, layers: int) -> ModelConfig:
        """A CamemBERT-shaped config; positions sized for `seq` (RoBERTa offsets by pad+2)."""
        return ModelConfig(
            vocab_size=self.vocab,
            hidden_size=self.hidden,
            num_hidden_layers=layers,
            num_attention_heads=self.heads,
            intermediate_size=self.ffn,
            max_position_embeddings=max(514, self.seq + 2),
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
        )

    @property
    def teacher(self) -> ModelConfig:
        return self.model_config(self.teacher_layers)

    @property
    def student(self) -> ModelConfig:
        return self.model_config(self.student_layers)

    @property
    def step_flops(self) -> int:
        return flops.distillation_step_flops(self.teacher, self.student, self.batch, self.seq)

    def describe(self) -> str:
        return (f"teacher {self.teacher_layers}L / student {self.student_layers}L, hidden {self.hidden}, "
                f"{self.heads} heads, ffn {self.ffn}, vocab {self.vocab}, batch {self.batch}x{self.seq}, "
                f"{self.dtype}, dropout {self.dropout}")


@dataclasses.dataclass(frozen=True)
class SyntheticVocab:
    """The vocabulary layout of the random data: CamemBERT's special ids (<s>NOTUSED, <pad>,
    </s>NOTUSED, <unk>, ...) below every regular id, and <mask> last, as our trained tokenizers
    have it. It stands in for a tokenizer where the step asks for one (`StepSpec.from_config`)."""

    config: ModelConfig

    @property
    def first_regular_id(self) -> int:
        return max(self.config.pad_token_id, self.config.bos_token_id, self.config.eos_token_id) + 1

    @property
    def mask_token_id(self) -> int:
        return self.config.vocab_size - 1

    @property
    def all_special_ids(self) -> tuple[int, ...]:
        return (*range(self.first_regular_id), self.mask_token_id)


# --- data --------------------------------------------------------------------------------


def random_ids(cfg: ModelConfig, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Random regular token ids of `cfg`'s vocabulary (no special id, no <mask>)."""
    vocab = SyntheticVocab(cfg)
    return np.random.default_rng(seed).integers(vocab.first_regular_id, vocab.mask_token_id, shape, dtype=np.int32)


def random_blocks(shape: StepShape, num_blocks: int, seed: int = 0) -> list[np.ndarray]:
    """Packed training blocks of random regular tokens framed by <s> … </s>, like the corpus'.

    Random ids cost exactly what real ones do; real text only changes the loss values.
    """
    cfg = shape.teacher
    ids = random_ids(cfg, (num_blocks, shape.seq), seed)
    ids[:, 0] = cfg.bos_token_id
    ids[:, -1] = cfg.eos_token_id
    return list(ids)


def random_batch(shape: StepShape, seed: int = 0) -> dict[str, np.ndarray]:
    """One host batch {"input_ids", "attention_mask"} int32 (B, L), as the pipeline yields."""
    return to_model_inputs(np.stack(random_blocks(shape, shape.batch, seed)), shape.teacher.pad_token_id)


def pipeline_tokens_per_s(shape: StepShape, batches: int = 200, seed: int = 0) -> float:
    """Host tokens/s of the grain training pipeline over random blocks (first batch excluded).

    The pipeline must outrun the step by a wide margin, or the accelerator waits on the host.
    """
    blocks = random_blocks(shape, max(4 * shape.batch, 1024), seed)
    iterator = make_train_iterator(blocks, global_batch_size=shape.batch, seed=seed,
                                   pad_id=shape.teacher.pad_token_id, process_index=0, process_count=1)
    next(iterator)  # starts the prefetch threads
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * shape.tokens / (time.perf_counter() - start)


# --- timing ------------------------------------------------------------------------------


def time_calls(fn: Callable[[], Any], steps: int, warmup: int = 1,
               cpu_times: list[float] | None = None) -> list[float]:
    """Wall seconds per call of `fn`, which must block until its work is done (e.g. via
    `jax.block_until_ready`), after `warmup` untimed calls that absorb compilation.

    `cpu_times`, if given, receives the process CPU seconds (all threads) of each call: on
    a machine shared with other jobs, CPU time moves much less than wall time.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        cpu_start, start = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        if cpu_times is not None:
            cpu_times.append(time.process_time() - cpu_start)
    return times


def available_cores() -> int:
    """CPU cores this process may run on (torch's thread count in the comparisons)."""
    return len(os.sched_getaffinity(0))


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(values: Sequence[float]) -> str:
    """'median (min–max)' in ms: the range shows how noisy a shared machine was."""
    return f"{median(values) * 1e3:.1f} ms (min {min(values) * 1e3:.1f}, max {max(values) * 1e3:.1f})"


# --- peak matmul throughput ----------------------------------------------------------------


def matmul_runner(n: int, dtype: str = "float32", chain: int | None = None) -> tuple[Callable[[], None], float]:
    """(a blocking call that runs `chain` n×n×n matmuls in `dtype`, its FLOPs), compiled.

    The matmuls run inside one jitted loop (x ← x @ w, w scaled to keep |x| stable), so the
    dispatch of a call is amortised even when one matmul takes microseconds on a GPU.
    """
    if chain is None:
        chain = 1 if jax.default_backend() == "cpu" else 20
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (n, n), dtype)
    w = (jax.random.normal(kw, (n, n), jnp.float32) / np.sqrt(n)).astype(dtype)
    run = jax.jit(lambda x, w: jax.lax.fori_loop(0, chain, lambda _, y: y @ w, x))
    call = lambda: jax.block_until_ready(run(x, w))  # noqa: E731
    call()  # compiles
    return call, 2.0 * n**3 * chain


def matmul_flops_per_s(n: int, dtype: str = "float32", repeats: int = 5) -> float:
    """Best FLOP/s of an n×n×n matmul in `dtype` over `repeats` calls on JAX's default device.

    The best, not the median: a peak is what the hardware can do, and on a shared machine
    only the least disturbed call shows it.
    """
    call, count = matmul_runner(n, dtype)
    return count / min(time_calls(call, repeats, warmup=1))


def measure_peak_flops(dtype: str = "float32", sizes: Sequence[int] | None = None) -> tuple[float, int]:
    """(best FLOP/s, the size that reached it) over square matmuls of the given sizes.

    The MFU denominator is this measured peak, not a datasheet number: on a shared CPU the
    datasheet peak is never available, and a measured one makes MFU comparable across runs.
    """
    default = CPU_PEAK_SIZES if jax.default_backend() == "cpu" else GPU_PEAK_SIZES
    return max((matmul_flops_per_s(n, dtype), n) for n in (sizes or default))


def peak_memory_bytes() -> int | None:
    """Peak bytes in use on the first device, where the backend reports it (GPU/TPU)."""
    stats = jax.devices()[0].memory_stats()
    if not stats:
        return None
    return stats.get("peak_bytes_in_use")


# --- the command line ------------------------------------------------------------------------


def add_shape_args(parser: argparse.ArgumentParser) -> None:
    """--config plus one flag per StepShape field; a flag given overrides the config's value."""
    parser.add_argument("--config", help="configs/x.py[:arg], a run config to take the shape, optimizer and step "
                        "options from (default: jaxdistil/run_config.py's base() with the shape below)")
    for field in dataclasses.fields(StepShape):
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=type(field.default),
                            default=None, help=f"the shape's {field.name} (default: the config's, else "
                            f"{field.default})")


def _teacher_model_config(config: Any) -> ModelConfig:
    """The teacher's shape: the random one, a local checkpoint's config.json, else camembert-base's."""
    source = config.teacher.source
    if source == "random":
        return ModelConfig(**config.teacher.random.to_dict())
    for name in ("config.json", "teacher/config.json"):  # an HF/params dir, or a training workdir
        candidate = f"{source}/{name}"
        try:
            return ModelConfig.from_json_file(candidate)
        except FileNotFoundError:
            continue
    return ModelConfig()  # a Hub name: camembert-base (ModelConfig's defaults)


def shape_from_run_config(config: Any) -> StepShape:
    """The step shape a run config trains; the batch is one micro-batch (batch_size / grad_accum),
    which is what a single forward/backward processes."""
    teacher = _teacher_model_config(config)
    vocab = config.tokenizer.vocab_size if config.tokenizer.source == "train" else teacher.vocab_size
    return StepShape(teacher_layers=teacher.num_hidden_layers, student_layers=config.student.num_layers,
                     hidden=teacher.hidden_size, heads=teacher.num_attention_heads,
                     ffn=teacher.intermediate_size, vocab=vocab,
                     batch=config.train.batch_size // max(config.train.grad_accum, 1),
                     seq=config.data.seq_len, dtype=config.dtype)


def shape_and_config_from_args(args: argparse.Namespace) -> tuple[StepShape, Any]:
    """(the shape, the run config) of `add_shape_args`' flags."""
    config = load_config(args.config) if args.config else base()
    shape = shape_from_run_config(config) if args.config else StepShape()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(StepShape)
                 if getattr(args, f.name) is not None}
    return dataclasses.replace(shape, **overrides), config


# --- the JAX step, set up as the trainer does ----------------------------------------------------


@dataclasses.dataclass
class JaxStep:
    """The trainer's jitted distillation step with its live state; `run()` does one step and blocks."""

    compiled: CompiledStep
    state: Any
    teacher_params: Any
    batch: Any

    def run(self) -> None:
        # The state is donated: keep the returned one, never reuse the old buffers.
        self.state, metrics = self.compiled.step_fn(self.state, self.teacher_params, self.batch, None)
        jax.block_until_ready((self.state, metrics))

    def lowered_and_compiled(self) -> Any:
        return self.compiled.step_fn.lower(self.state, self.teacher_params, self.batch, None).compile()


def make_jax_step(shape: StepShape, config: Any = None, seed: int = 0, **train_options: Any) -> JaxStep:
    """`jaxdistil.step.compile_step` on one device with random teacher and student and one batch.

    `config` is a run config (default `run_config.base()`), whose loss, masking and optimizer
    fields the step uses; `train_options` override its `train.*` fields (`attention_impl`,
    `remat`, `fused_head_chunk_len`, ...). The shape's dtype is the compute dtype.
    """
    config = (config or base()).copy_and_resolve_references()
    config.mode, config.dtype, config.num_devices, config.seed = "distil", shape.dtype, 1, seed
    config.train.update(train_options)
    compiled = compile_step(config, shape.student, shape.teacher, SyntheticVocab(shape.teacher))
    teacher_params = init_params(MaskedLM(shape.teacher), init_key(seed, "teacher"))
    student_params = init_params(MaskedLM(shape.student), init_key(seed, "student"))
    batch = sharding.global_batch(random_batch(shape, seed), compiled.mesh)
    return JaxStep(compiled, compiled.init_state(student_params), compiled.place_teacher(teacher_params), batch)
