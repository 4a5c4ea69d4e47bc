"""Where models live on disk, and one function that loads a model from any of them.

Three kinds of model directory exist in jaxdistil's world:
- an HF checkpoint directory (config.json + model.safetensors / pytorch_model.bin), or a
  Hub name when online;
- a *params checkpoint* written by `conversion/from_pytorch.py`: `config.json` (HF fields),
  `params/` (Orbax) and, optionally, the tokenizer files;
- a *training workdir* written by `scripts/train.py` (see `jaxdistil.train`).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
from typing import Any

import numpy as np

from jaxdistil.config import ModelConfig

log = logging.getLogger(__name__)

PARAMS_DIR = "params"
CONFIG_FILE = "config.json"


def is_params_checkpoint(path: str | os.PathLike) -> bool:
    p = pathlib.Path(path)
    return (p / PARAMS_DIR).is_dir() and (p / CONFIG_FILE).is_file()


def save_params_checkpoint(out_dir: str | os.PathLike, config: ModelConfig, params: Any,
                           tokenizer: Any = None) -> pathlib.Path:
    """Writes config.json + Orbax params (+ tokenizer) so JAX can reload without torch."""
    import orbax.checkpoint as ocp

    out = pathlib.Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(out / PARAMS_DIR, params, force=True)
    checkpointer.wait_until_finished()
    (out / CONFIG_FILE).write_text(json.dumps(config.to_hf_dict(), indent=2) + "\n", encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    return out


def load_params_checkpoint(path: str | os.PathLike) -> tuple[ModelConfig, dict]:
    import orbax.checkpoint as ocp

    p = pathlib.Path(path).resolve()
    if not is_params_checkpoint(p):
        raise FileNotFoundError(f"{p} is not a jaxdistil params checkpoint (no {CONFIG_FILE} + {PARAMS_DIR}/)")
    config = ModelConfig.from_json_file(p / CONFIG_FILE)
    try:
        params = ocp.StandardCheckpointer().restore(p / PARAMS_DIR)
    except Exception as e:
        raise ValueError(f"could not read the Orbax params in {p / PARAMS_DIR}: {e}") from e
    params = _as_numpy_fp32(params)
    from jaxdistil.convert import params_to_state_dict, state_dict_to_params
    from jaxdistil.modeling import MaskedLM, param_shapes

    # Re-validate names and shapes against the config through the HF naming table.
    params = state_dict_to_params(params_to_state_dict(params), param_shapes(MaskedLM(config)))
    return config, params


def _as_numpy_fp32(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _as_numpy_fp32(v) for k, v in tree.items()}
    return np.asarray(tree, dtype=np.float32)


def has_tokenizer(path: str | os.PathLike) -> bool:
    p = pathlib.Path(path)
    return (p / "tokenizer.json").is_file() or (p / "tokenizer_config.json").is_file()


def load_model(source: str | os.PathLike) -> tuple[ModelConfig, dict]:
    """A masked-LM `(config, params)` from an HF dir / Hub name, params checkpoint or workdir."""
    from jaxdistil.convert import load_hf

    path = pathlib.Path(source)
    if is_params_checkpoint(path):
        return load_params_checkpoint(path)
    if path.is_dir() and (path / "checkpoints").is_dir():
        from jaxdistil.train import load_student_from_workdir

        config, params, _ = load_student_from_workdir(path)
        return config, params
    return load_hf(source)
