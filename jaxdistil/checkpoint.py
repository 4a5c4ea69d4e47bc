"""Models and train states on disk: Orbax checkpoints of a run, and one loader for any model.

Three kinds of model directory exist in jaxdistil's world:
- an HF checkpoint directory (config.json + model.safetensors / pytorch_model.bin), or a
  Hub name when online;
- a *params checkpoint* written by `conversion/from_pytorch.py`: `config.json` (HF fields),
  `params/` (Orbax) and, optionally, the tokenizer files;
- a *training workdir* written by `scripts/train.py` (`jaxdistil.workdir`), whose
  `checkpoints/<step>/` hold the train state beside the data iterator's state.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import pathlib
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore

try:  # Orbax's private module that calls TensorStore (0.12.x's layout); without it, no workaround is installed
    from orbax.checkpoint._src.serialization import tensorstore_utils as orbax_tensorstore
except ImportError:
    orbax_tensorstore = None

from jaxdistil.config import ModelConfig
from jaxdistil.convert import check_tokenizer, load_hf, params_to_state_dict, state_dict_to_params
from jaxdistil.modeling import MaskedLM, param_shapes
from jaxdistil.optim import TrainState
from jaxdistil.tokenizer import load_tokenizer, save_tokenizer
from jaxdistil.workdir import Workdir, is_training_workdir

log = logging.getLogger(__name__)

PARAMS_DIR = "params"
CONFIG_FILE = "config.json"
KEEP_EVERY_CHECKPOINT = 1_000_000  # a reader's manager must never delete what the trainer kept


# --- a TensorStore leak, worked around -----------------------------------------------------------


@functools.lru_cache(maxsize=16)  # a save resolves a few directories
def _resolved_kvstore_spec(spec_json: str) -> str:
    return json.dumps(tensorstore.KvStore.Spec(json.loads(spec_json)).to_json())


class _KvStoreSpec:
    """A kvstore spec whose `to_json` TensorStore computes once per distinct spec."""

    def __init__(self, spec: Any):
        self.spec = spec

    def to_json(self) -> Any:
        return json.loads(_resolved_kvstore_spec(json.dumps(self.spec, sort_keys=True)))


class _KvStore:
    Spec = _KvStoreSpec

    @staticmethod
    def open(spec: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(spec, _KvStoreSpec):
            spec = tensorstore.KvStore.Spec(spec.spec)
        return tensorstore.KvStore.open(spec, *args, **kwargs)


class TensorStoreWithoutLeaks:
    """`tensorstore` as Orbax's tensorstore_utils sees it, without the two calls that leak on every save.

    TensorStore (0.1.86, the newest) never frees the Python objects that `KvStore.Spec.to_json()` and
    `experimental_collect_matching_metrics` return, nor memory of its own with them. Orbax (0.12.8)
    calls the first once per array per save, resolving the same directory's file spec each time,
    and the second twice per save, for a log line of the raw bytes written: a run's memory grew
    with every checkpoint. Here each distinct spec is resolved once, and the kvstore metrics
    read as none (Orbax then skips that log line); everything else is TensorStore itself.
    """

    KvStore = _KvStore
    KVSTORE_METRICS = "/tensorstore/kvstore/"

    def experimental_collect_matching_metrics(self, prefix: str = "", *args: Any, **kwargs: Any) -> list:
        if prefix == self.KVSTORE_METRICS:
            return []
        return tensorstore.experimental_collect_matching_metrics(prefix, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(tensorstore, name)


def avoid_tensorstore_leaks() -> None:
    """Gives Orbax's TensorStore calls `TensorStoreWithoutLeaks` (once per process; idempotent)."""
    if getattr(orbax_tensorstore, "ts", None) is tensorstore:
        orbax_tensorstore.ts = TensorStoreWithoutLeaks()


# --- the train state of a run ------------------------------------------------------------------


def checkpoint_manager(workdir: str | os.PathLike, keep: int, create: bool = True) -> ocp.CheckpointManager:
    avoid_tensorstore_leaks()
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=create, enable_async_checkpointing=False)
    return ocp.CheckpointManager(Workdir(workdir).checkpoints.resolve(), options=options)


def save_train_state(manager: ocp.CheckpointManager, state: TrainState, data_iter: Any) -> None:
    """The state and the grain iterator as one step; a step already on disk is left as it is
    (e.g. SIGTERM right after a periodic save: Orbax refuses to overwrite a step)."""
    step = int(jax.device_get(state.step))
    if manager.latest_step() == step:
        return
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state.as_dict()),
                                               data_iter=grain.checkpoint.CheckpointSave(data_iter)),
                 force=True)
    manager.wait_until_finished()


def restore_train_state(manager: ocp.CheckpointManager, abstract_state: TrainState, data_iter: Any) -> TrainState:
    """The latest step, laid out as `abstract_state` (shapes and shardings); `data_iter` moves to it."""
    restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state.as_dict()),
        data_iter=grain.checkpoint.CheckpointRestore(data_iter)))
    return TrainState(**restored["state"])


class NoReadableCheckpoint(ValueError):
    """Every checkpoint of a workdir failed to restore."""


def restore_newest_readable(workdir: Workdir, keep: int, abstract_state: TrainState, data_iter: Any
                            ) -> tuple[ocp.CheckpointManager, TrainState | None, list[int]]:
    """(manager, the newest checkpoint that restores or None for a new run, the steps moved aside).

    A checkpoint that cannot be read (truncated file, lost metadata or iterator state) is moved
    to `checkpoints.unreadable/` with a warning, and the next older one is tried: a corrupt
    latest checkpoint costs the steps since the previous one, not the run.
    """
    moved: list[int] = []
    while True:
        manager = checkpoint_manager(workdir.root, keep=keep)
        step = manager.latest_step()
        if step is None:
            if moved or workdir.unreadable_checkpoints.is_dir():
                manager.close()
                raise NoReadableCheckpoint(
                    f"no checkpoint in {workdir.checkpoints} can be read (unreadable ones are in "
                    f"{workdir.unreadable_checkpoints}); the run cannot resume. To start it again from step 0, "
                    f"delete {workdir.unreadable_checkpoints}")
            return manager, None, moved
        try:
            return manager, restore_train_state(manager, abstract_state, data_iter), moved
        except Exception as e:  # Orbax, TensorStore and grain each raise their own types
            manager.close()
            destination = _move_aside(workdir, step)
            log.warning("checkpoint %d cannot be read (%s: %s); moved it to %s and trying the previous one",
                        step, type(e).__name__, str(e).splitlines()[0][:200] if str(e) else "", destination)
            moved.append(step)


def _move_aside(workdir: Workdir, step: int) -> pathlib.Path:
    workdir.unreadable_checkpoints.mkdir(exist_ok=True)
    destination = workdir.unreadable_checkpoints / str(step)
    suffix = 1
    while destination.exists():
        destination = workdir.unreadable_checkpoints / f"{step}.{suffix}"
        suffix += 1
    (workdir.checkpoints / str(step)).rename(destination)
    return destination


def load_student_from_workdir(workdir: str | os.PathLike, step: int | None = None
                              ) -> tuple[ModelConfig, dict, int]:
    """The student `(config, params, step)` of a training workdir (latest step by default)."""
    paths = Workdir(workdir)
    if not paths.student_config.is_file() or not paths.checkpoints.is_dir():
        raise FileNotFoundError(f"{paths.root} is not a jaxdistil training workdir "
                                f"(no {paths.student_config.name} / {paths.checkpoints.name}/)")
    config = ModelConfig.from_json_file(paths.student_config)
    manager = checkpoint_manager(paths.root, keep=KEEP_EVERY_CHECKPOINT, create=False)
    steps = manager.all_steps()
    if not steps:
        raise FileNotFoundError(f"{paths.checkpoints} holds no checkpoint yet")
    step = max(steps) if step is None else step
    if step not in steps:
        raise ValueError(f"no checkpoint for step {step} in {paths.root}; available: {sorted(steps)}")
    abstract = param_shapes(MaskedLM(config))
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item={"params": abstract},
            restore_args={"params": jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), abstract)},
            partial_restore=True)))
    params = jax.tree.map(lambda x: np.asarray(x, np.float32), restored["state"]["params"])
    return config, params, step


# --- params checkpoints (conversion/from_pytorch.py) -------------------------------------------


def is_params_checkpoint(path: str | os.PathLike) -> bool:
    p = pathlib.Path(path)
    return (p / PARAMS_DIR).is_dir() and (p / CONFIG_FILE).is_file()


def save_params_checkpoint(out_dir: str | os.PathLike, config: ModelConfig, params: Any,
                           tokenizer: Any = None) -> pathlib.Path:
    """Writes config.json + Orbax params (+ tokenizer) so JAX can reload without torch."""
    out = pathlib.Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(out / PARAMS_DIR, params, force=True)
    checkpointer.wait_until_finished()
    (out / CONFIG_FILE).write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n", encoding="utf-8")
    if tokenizer is not None:
        save_tokenizer(tokenizer, out)
    return out


def load_params_checkpoint(path: str | os.PathLike) -> tuple[ModelConfig, dict]:
    p = pathlib.Path(path).resolve()
    if not is_params_checkpoint(p):
        raise FileNotFoundError(f"{p} is not a jaxdistil params checkpoint (no {CONFIG_FILE} + {PARAMS_DIR}/)")
    config = ModelConfig.from_json_file(p / CONFIG_FILE)
    try:
        params = ocp.StandardCheckpointer().restore(p / PARAMS_DIR)
    except Exception as e:
        raise ValueError(f"could not read the Orbax params in {p / PARAMS_DIR}: {e}") from e
    params = jax.tree.map(lambda x: np.asarray(x, dtype=np.float32), params)
    # Re-validate names and shapes against the config through the HF naming table.
    params = state_dict_to_params(params_to_state_dict(params), param_shapes(MaskedLM(config)))
    return config, params


# --- any model source ----------------------------------------------------------------------------


def has_tokenizer(path: str | os.PathLike) -> bool:
    p = pathlib.Path(path)
    return (p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file()


def load_model(source: str | os.PathLike) -> tuple[ModelConfig, dict]:
    """A masked-LM `(config, params)` from an HF dir / Hub name, params checkpoint or workdir."""
    path = pathlib.Path(source)
    if is_params_checkpoint(path):
        return load_params_checkpoint(path)
    if path.is_dir() and is_training_workdir(path):
        config, params, _ = load_student_from_workdir(path)
        return config, params
    return load_hf(source)


def find_tokenizer(source: str | os.PathLike) -> str | None:
    """Where a model's tokenizer files are: the directory itself (HF dir, params checkpoint)
    or a workdir's `tokenizer/`; None when neither has them."""
    for candidate in (pathlib.Path(source), Workdir(source).tokenizer):
        if has_tokenizer(candidate):
            return str(candidate)
    return None


def load_model_with_tokenizer(source: str, tokenizer: Any = None) -> tuple[tuple[ModelConfig, Any], Any]:
    """`((config, params), tokenizer)` from any `load_model` source.

    `tokenizer` is a loaded tokenizer, a tokenizer directory, or None for the model's own
    files. A tokenizer that does not fit the model raises ValueError naming the model, since
    ids from another vocabulary silently produce garbage.
    """
    if tokenizer is None:
        tokenizer = find_tokenizer(source)
        if tokenizer is None:
            raise ValueError(f"{source} holds no tokenizer files: pass --tokenizer")
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(tokenizer)
    config, params = load_model(source)
    try:
        check_tokenizer(tokenizer, config)
    except ValueError as error:
        raise ValueError(f"model {source}: {error}") from None
    return (config, params), tokenizer
