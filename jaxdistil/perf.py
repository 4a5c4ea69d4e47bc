"""Performance accounting for the distillation step: analytic FLOPs, matmul peak, timing.

The step benchmark (`benchmarks/train_step.py`) and the PyTorch comparison
(`benchmarks/torch_reference.py`) both import from here, so the two measure the same
shapes, the same random data and the same statistics, and the FLOP formula is unit-tested
against XLA's own count (`tests/test_perf.py`).

FLOP convention: one multiply-add = 2 FLOPs; only matrix multiplications are counted.
LayerNorm, GELU, softmax, the loss and the optimizer are O(B·L·(F+V)) elementwise work,
which XLA's cost analysis counts too: it comes out 3.3 % above ours on the 256-wide CPU
acceptance shape and 9.5 % above on a 128-wide toy (`tests/test_perf.py`).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxdistil.config import ModelConfig

# Default sizes for the peak-matmul measurement: big enough to saturate the units,
# small enough to take well under a second each.
CPU_PEAK_SIZES = (512, 1024, 2048)
GPU_PEAK_SIZES = (2048, 4096, 8192)


# --- the benchmarked shape ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepShape:
    """Everything that fixes the cost of one distillation step: models, batch, dtype.

    The teacher and the student share width, heads, FFN and vocabulary (DistilBERT-style
    students differ only in depth), so one shape describes both.
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

    def describe(self) -> str:
        return (f"teacher {self.teacher_layers}L / student {self.student_layers}L, hidden {self.hidden}, "
                f"{self.heads} heads, ffn {self.ffn}, vocab {self.vocab}, batch {self.batch}x{self.seq}, "
                f"{self.dtype}, dropout {self.dropout}")


# --- analytic FLOPs -----------------------------------------------------------------------


def layer_forward_flops(cfg: ModelConfig, batch: int, seq: int) -> int:
    """One encoder layer, forward: 8·B·L·H² (Q,K,V,O) + 4·B·L·H·F (FFN) + 4·B·L²·H (QKᵀ, PV).

    With F = 4H this is the familiar 24·B·L·H² + 4·B·L²·H.
    """
    h, f = cfg.hidden_size, cfg.intermediate_size
    tokens = batch * seq
    return 8 * tokens * h * h + 4 * tokens * h * f + 4 * batch * seq * seq * h


def lm_head_forward_flops(cfg: ModelConfig, batch: int, positions: int) -> int:
    """MLM head at `positions` per row: dense 2·B·K·H² + tied decoder 2·B·K·H·V."""
    h = cfg.hidden_size
    return 2 * batch * positions * h * (h + cfg.vocab_size)


def model_forward_flops(cfg: ModelConfig, batch: int, seq: int, logit_positions: int | None = None) -> int:
    """Encoder + MLM head forward; the head at every position unless `logit_positions` is given."""
    head_positions = seq if logit_positions is None else logit_positions
    return (cfg.num_hidden_layers * layer_forward_flops(cfg, batch, seq)
            + lm_head_forward_flops(cfg, batch, head_positions))


def distillation_step_flops(
    teacher: ModelConfig, student: ModelConfig, batch: int, seq: int, logit_positions: int | None = None
) -> int:
    """Teacher forward (no grad) + student forward and backward (backward = 2 × forward).

    The backward of every matmul computes two products of the forward's size (the input
    gradient and the weight gradient), hence 3 × forward for the student.
    """
    return (model_forward_flops(teacher, batch, seq, logit_positions)
            + 3 * model_forward_flops(student, batch, seq, logit_positions))


def step_flops(shape: StepShape) -> int:
    return distillation_step_flops(shape.teacher, shape.student, shape.batch, shape.seq)


def xla_flops(compiled: Any) -> float | None:
    """FLOPs of a compiled JAX computation by XLA's cost analysis (None if unreported)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, Sequence):  # older JAX: one dict per computation
        analysis = analysis[0] if analysis else None
    if not analysis or "flops" not in analysis:
        return None
    return float(analysis["flops"])


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
    import jax
    import jax.numpy as jnp

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
    call, flops = matmul_runner(n, dtype)
    return flops / min(time_calls(call, repeats, warmup=1))


def default_peak_sizes() -> tuple[int, ...]:
    import jax

    return CPU_PEAK_SIZES if jax.default_backend() == "cpu" else GPU_PEAK_SIZES


def measure_peak_flops(dtype: str = "float32", sizes: Sequence[int] | None = None) -> tuple[float, int]:
    """(best FLOP/s, the size that reached it) over square matmuls of the given sizes.

    The MFU denominator is this measured peak, not a datasheet number: on a shared CPU the
    datasheet peak is never available, and a measured one makes MFU comparable across runs.
    """
    results = [(matmul_flops_per_s(n, dtype), n) for n in (sizes or default_peak_sizes())]
    return max(results)


def peak_memory_bytes() -> int | None:
    """Peak bytes in use on the first device, where the backend reports it (GPU/TPU)."""
    import jax

    stats = jax.devices()[0].memory_stats()
    if not stats:
        return None
    return stats.get("peak_bytes_in_use")


# --- data --------------------------------------------------------------------------------


def first_regular_id(cfg: ModelConfig) -> int:
    """Smallest id above every CamemBERT special id (<s>NOTUSED, <pad>, </s>NOTUSED, <unk>, ...)."""
    return max(cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id) + 1


def random_blocks(shape: StepShape, num_blocks: int, seed: int = 0) -> list[np.ndarray]:
    """Packed training blocks of random regular tokens framed by <s> … </s>, like the corpus'.

    Random ids cost exactly what real ones do; real text only changes the loss values.
    """
    cfg = shape.teacher
    rng = np.random.default_rng(seed)
    ids = rng.integers(first_regular_id(cfg), cfg.vocab_size - 1, (num_blocks, shape.seq), dtype=np.int32)
    ids[:, 0] = cfg.bos_token_id
    ids[:, -1] = cfg.eos_token_id
    return list(ids)


def random_batch(shape: StepShape, seed: int = 0) -> dict[str, np.ndarray]:
    """One host batch {"input_ids", "attention_mask"} int32 (B, L), as the pipeline yields."""
    from jaxdistil.data.pipeline import to_model_inputs

    return to_model_inputs(np.stack(random_blocks(shape, shape.batch, seed)), shape.teacher.pad_token_id)


def pipeline_tokens_per_s(shape: StepShape, batches: int = 200, seed: int = 0) -> float:
    """Host tokens/s of the grain training pipeline over random blocks (first batch excluded).

    The pipeline must outrun the step by a wide margin, or the accelerator waits on the host.
    """
    from jaxdistil.data.pipeline import make_train_iterator

    blocks = random_blocks(shape, max(4 * shape.batch, 1024), seed)
    iterator = make_train_iterator(blocks, global_batch_size=shape.batch, seed=seed,
                                   pad_id=shape.teacher.pad_token_id, process_index=0, process_count=1)
    next(iterator)  # starts the prefetch threads
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * shape.tokens / (time.perf_counter() - start)


# --- shared command line ----------------------------------------------------------------------


def train_hparams(config: Any = None) -> Any:
    """The `train` fields the optimizer reads; `config.train` when a run config is given.

    Defaults are configs/base.py's (the DistilBERT distiller's). They do not change the cost
    of a step, but both frameworks use the same ones so the comparison is like for like.
    """
    from ml_collections import ConfigDict

    fields = dict(steps=10_000, learning_rate=5e-4, warmup_steps=100, weight_decay=0.0, adam_b1=0.9,
                  adam_b2=0.98, adam_eps=1e-6, max_grad_norm=5.0)
    if config is not None:
        fields.update({k: config.train[k] for k in fields})
    return ConfigDict(fields)


def load_run_config(spec: str) -> Any:
    """`get_config(arg)` of `configs/x.py[:arg]`, loaded by path (configs/ is not a package)."""
    import importlib.util

    path, _, arg = spec.partition(".py:")
    path = path if path.endswith(".py") else path + ".py"
    module_spec = importlib.util.spec_from_file_location("_bench_config", path)
    if module_spec is None or module_spec.loader is None:
        raise FileNotFoundError(f"cannot load a config from {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def _teacher_model_config(config: Any) -> ModelConfig:
    """The teacher's shape: the random one, a local checkpoint's config.json, else camembert-base's."""
    import pathlib

    source = config.teacher.source
    if source == "random":
        return ModelConfig(**config.teacher.random.to_dict())
    for name in ("config.json", "teacher/config.json"):  # an HF/params dir, or a training workdir
        candidate = pathlib.Path(source) / name
        if candidate.is_file():
            return ModelConfig.from_json_file(candidate)
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


def add_shape_args(parser: Any) -> None:
    """--config plus one flag per StepShape field; a flag given overrides the config's value."""
    parser.add_argument("--config", help="configs/x.py[:arg], a run config to take the shape and "
                        "optimizer from")
    for field in dataclasses.fields(StepShape):
        flag = {"teacher_layers": "--teacher-layers", "student_layers": "--student-layers"}.get(
            field.name, f"--{field.name}")
        parser.add_argument(flag, dest=field.name, type=type(field.default), default=None,
                            help=f"default {field.default}")


def shape_and_hparams_from_args(args: Any) -> tuple[StepShape, Any]:
    config = load_run_config(args.config) if args.config else None
    shape = shape_from_run_config(config) if config is not None else StepShape()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(StepShape)
                 if getattr(args, f.name) is not None}
    return dataclasses.replace(shape, **overrides), train_hparams(config)


# --- the JAX step, set up as the trainer does ----------------------------------------------------


def special_ids(cfg: ModelConfig) -> tuple[tuple[int, ...], int]:
    """(special ids, <mask> id) of a CamemBERT-style vocabulary: ids 0…eos and the last id."""
    mask_id = cfg.vocab_size - 1
    return tuple(range(first_regular_id(cfg))) + (mask_id,), mask_id


@dataclasses.dataclass
class JaxStep:
    """The jitted distillation step with its live state; `run()` does one step and blocks."""

    step_fn: Any
    state: Any
    teacher_params: Any
    batch: Any

    def run(self) -> None:
        import jax

        # The state is donated: keep the returned one, never reuse the old buffers.
        self.state, metrics = self.step_fn(self.state, self.teacher_params, self.batch, None)
        jax.block_until_ready((self.state, metrics))

    def compiled(self) -> Any:
        return self.step_fn.lower(self.state, self.teacher_params, self.batch, None).compile()


def make_jax_step(shape: StepShape, hparams: Any, seed: int = 0, attention_impl: str | None = None,
                  remat: bool = False, fused_head_chunk: int = 256) -> JaxStep:
    """`jaxdistil.train.build_train_step` on one device, random teacher and student, one batch.

    `attention_impl`, `remat` and `fused_head_chunk` are the trainer's `train.*` options of the
    same names (0 for `fused_head_chunk`: full logits).
    """
    import jax
    import jax.numpy as jnp

    from jaxdistil import sharding as shd
    from jaxdistil import train as T
    from jaxdistil.modeling import MaskedLM, init_params

    dtype = jnp.bfloat16 if shape.dtype == "bfloat16" else jnp.float32
    student = MaskedLM(shape.student, dtype=dtype, attention_impl=attention_impl, remat=remat)
    teacher = MaskedLM(shape.teacher, dtype=dtype, attention_impl=attention_impl)
    specials, mask_id = special_ids(shape.teacher)
    spec = T.StepSpec(mask_token_id=mask_id, special_token_ids=specials, vocab_size=shape.vocab,
                      fused_head_chunk=fused_head_chunk)
    tx = T.make_optimizer(hparams)
    mesh = shd.make_mesh(1)
    teacher_params = init_params(teacher, jax.random.key(seed + 1))
    student_params = init_params(student, jax.random.key(seed + 2))
    abstract = jax.eval_shape(lambda p: T.init_train_state(p, tx, seed), student_params)
    state_sh = shd.state_shardings(abstract, mesh, fsdp=False)
    teacher_sh = shd.state_shardings(teacher_params, mesh, fsdp=False)
    step_fn = T.build_train_step(student=student, teacher=teacher, tx=tx, spec=spec, mesh=mesh,
                                 state_sharding=state_sh, teacher_sharding=teacher_sh)
    state = jax.jit(lambda p: T.init_train_state(p, tx, seed), out_shardings=state_sh)(student_params)
    batch = shd.global_batch(random_batch(shape, seed), mesh)
    return JaxStep(step_fn, state, jax.device_put(teacher_params, teacher_sh), batch)
