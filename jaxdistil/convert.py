"""HF PyTorch state dicts ⇄ Flax parameter trees, through one naming table used both ways.

The Flax tree mirrors HF's module tree (see `jaxdistil.modeling`), so a parameter's HF key is
its Flax path joined with dots, with the leaf renamed and transposed by `LEAF_RULES` and
`layer_N` written `layer.N`. Loading walks the tree the model *expects* (from
`jax.eval_shape`), so every missing, unexpected or wrong-shaped tensor is named in the error.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from jaxdistil import modeling
from jaxdistil.config import ModelConfig
from jaxdistil.tokenizer import save_tokenizer

log = logging.getLogger(__name__)

# Flax leaf name -> (HF leaf name, array transform Flax->HF; it is its own inverse).
_identity: Callable[[np.ndarray], np.ndarray] = lambda a: a  # noqa: E731
_transpose: Callable[[np.ndarray], np.ndarray] = lambda a: np.ascontiguousarray(a.T)  # noqa: E731
LEAF_RULES: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "kernel": ("weight", _transpose),  # nn.Dense (in, out) ⇄ nn.Linear (out, in)
    "embedding": ("weight", _identity),  # nn.Embed ⇄ nn.Embedding
    "scale": ("weight", _identity),  # nn.LayerNorm
    "bias": ("bias", _identity),
}

# HF keys that are not weights of ours: buffers, and the LM decoder that HF ties to the word
# embeddings (weight) and to lm_head.bias (bias). The pooler is unused by every head we build.
_TOLERATED = (
    re.compile(r"(^|\.)position_ids$"),
    re.compile(r"(^|\.)token_type_ids$"),
    re.compile(r"^lm_head\.decoder\.bias$"),
    re.compile(r"^(roberta\.)?pooler\."),
)
_TIED_DECODER = re.compile(r"^lm_head\.decoder\.weight$")

HEAD_ARCHITECTURES = {
    "masked_lm": "CamembertForMaskedLM",
    "token_classification": "CamembertForTokenClassification",
    "sequence_classification": "CamembertForSequenceClassification",
}


class CheckpointError(ValueError):
    """A checkpoint that does not fit the model it is loaded into."""


def hf_key(flax_path: tuple[str, ...]) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """The HF state-dict key of a Flax parameter path, and the transform between them."""
    *modules, leaf = flax_path
    hf_leaf, transform = LEAF_RULES[leaf]
    parts = [re.sub(r"^layer_(\d+)$", r"layer.\1", m) for m in modules]
    return ".".join([*parts, hf_leaf]), transform


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for k, v in tree.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def _unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return tree


def params_to_state_dict(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Flax params → HF state dict (numpy, fp32), the tied decoder left out as HF saves it."""
    state = {}
    for path, value in _flatten(params).items():
        key, transform = hf_key(path)
        state[key] = transform(np.asarray(value, dtype=np.float32))
    return state


def state_dict_to_params(state: Mapping[str, Any], expected: Mapping[str, Any]) -> dict:
    """HF state dict → Flax params with the structure and shapes of `expected`.

    `expected` is a (shape-only) parameter tree, e.g. `modeling.param_shapes(module)`.
    Raises CheckpointError naming every missing, unexpected or mis-shaped tensor.
    """
    state = {k: v for k, v in state.items()}
    # A bare encoder checkpoint (CamembertModel) has no `roberta.` prefix.
    if "roberta" in expected and not any(k.startswith("roberta.") for k in state):
        state = {("roberta." + k if not k.startswith(("lm_head.", "classifier.")) else k): v
                 for k, v in state.items()}
    flat, missing, bad_shape, used = {}, [], [], set()
    for path, spec in _flatten(expected).items():
        key, transform = hf_key(path)
        if key not in state:
            missing.append(key)
            continue
        used.add(key)
        array = transform(_to_numpy(state[key]))
        if tuple(array.shape) != tuple(spec.shape):
            bad_shape.append(f"{key}: checkpoint {tuple(array.shape)} vs model {tuple(spec.shape)}")
            continue
        flat[path] = array.astype(np.float32, copy=False)
    def tolerated(key: str) -> bool:
        if _TIED_DECODER.search(key):  # a tied model takes it from the word embeddings
            return "lm_head.decoder.weight" not in used
        return any(p.search(key) for p in _TOLERATED)

    unexpected = [k for k in state if k not in used and not tolerated(k)]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if bad_shape:
        problems.append(f"wrong shapes [{'; '.join(bad_shape)}]")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if problems:
        raise CheckpointError("checkpoint does not match the model config: " + ", ".join(problems)
                              + ". Check that config.json belongs to these weights.")
    return _unflatten(flat)


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


# --- reading HF checkpoints ---------------------------------------------------------------


def _read_weights(directory: pathlib.Path) -> dict[str, Any]:
    """The state dict of an HF directory: (sharded) safetensors first, else pytorch_model.bin."""
    single = directory / "model.safetensors"
    index = directory / "model.safetensors.index.json"
    binary = directory / "pytorch_model.bin"
    try:
        if single.is_file():
            from safetensors.numpy import load_file

            return dict(load_file(str(single)))
        if index.is_file():
            from safetensors.numpy import load_file

            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, Any] = {}
            for shard in shards:
                state.update(load_file(str(directory / shard)))
            return state
        if binary.is_file():
            try:
                import torch
            except ImportError as e:
                raise ImportError(f"{binary} is a PyTorch pickle; reading it needs torch "
                                  "(pip install 'jaxdistil[torch]')") from e
            return torch.load(binary, map_location="cpu", weights_only=True)
    except ImportError:
        raise
    except Exception as e:  # safetensors, torch and json each raise their own types
        raise CheckpointError(f"could not read the weights in {directory}: {e}. "
                              "The file is truncated or not a checkpoint; re-export it.") from e
    raise FileNotFoundError(
        f"{directory} has no model.safetensors, model.safetensors.index.json or pytorch_model.bin")


def _resolve_directory(name_or_path: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{path} is a file; give the HF checkpoint *directory* "
                             "(with config.json and model.safetensors)")
        return path
    text = str(name_or_path)
    looks_like_hub_id = re.fullmatch(r"[\w.-]+(/[\w.-]+)?", text) is not None and not text.startswith(".")
    if not looks_like_hub_id:
        raise FileNotFoundError(f"no such checkpoint directory: {path}")
    try:
        from huggingface_hub import snapshot_download

        return pathlib.Path(snapshot_download(
            text, allow_patterns=["*.json", "*.safetensors", "pytorch_model.bin", "*.model", "*.txt"]))
    except Exception as e:  # offline, unknown repo, gated repo...
        raise FileNotFoundError(
            f"{text!r} is neither a local directory nor a model that could be fetched from the "
            f"HF Hub ({type(e).__name__}: {e}). Give a local HF checkpoint directory, or go online."
        ) from e


def load_hf(path_or_model: Any, *, head: str = "masked_lm",
            num_labels: int | None = None) -> tuple[ModelConfig, dict]:
    """An HF RoBERTa-family checkpoint as `(ModelConfig, fp32 Flax params)`.

    Takes a local HF directory (model.safetensors or pytorch_model.bin), a Hub name (when
    online), or an in-memory `transformers.PreTrainedModel`.
    """
    if hasattr(path_or_model, "state_dict") and hasattr(path_or_model, "config"):
        hf_dict = path_or_model.config.to_dict()
        state = path_or_model.state_dict()
    else:
        directory = _resolve_directory(path_or_model)
        config_file = directory / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{directory} has no config.json; is it an HF checkpoint directory?")
        hf_dict = json.loads(config_file.read_text(encoding="utf-8"))
        state = _read_weights(directory)
    config = ModelConfig.from_hf_dict(hf_dict)
    if head != "masked_lm" and num_labels is None:
        num_labels = len(hf_dict.get("id2label") or {}) or hf_dict.get("num_labels")
    params = state_dict_to_params(state, modeling.param_shapes(modeling.model_with_head(config, head, num_labels)))
    return config, params


def save_hf(config: ModelConfig, params: Mapping[str, Any], out_dir: str | os.PathLike,
            tokenizer: Any = None, *, id2label: Mapping[int, str] | None = None) -> pathlib.Path:
    """Writes config.json + model.safetensors (+ tokenizer files) that HF loads as-is.

    The head is read off the params (`lm_head`, or `classifier` with/without `out_proj`). With a
    tokenizer, config.json's bos/eos ids are the tokenizer's (a student's config is its teacher's,
    whose ids may belong to another tokenizer), as camembert-base's are its tokenizer's.
    """
    from safetensors.numpy import save_file

    state = params_to_state_dict(params)
    non_finite = [k for k, v in state.items() if not np.isfinite(v).all()]
    if non_finite:
        raise ValueError(f"refusing to export: {len(non_finite)} of {len(state)} tensors hold NaN or Inf "
                         f"(first: {non_finite[0]}); the model diverged. Export an earlier checkpoint "
                         "(conversion/to_pytorch.py --step N)")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if "lm_head" in params:
        head, extra = "masked_lm", {}
    else:
        classifier = params.get("classifier", {})
        head = "sequence_classification" if "out_proj" in classifier else "token_classification"
        num_labels = (classifier["out_proj"] if "out_proj" in classifier else classifier)["bias"].shape[0]
        labels = dict(id2label) if id2label else {i: f"LABEL_{i}" for i in range(num_labels)}
        if len(labels) != num_labels:
            raise ValueError(f"id2label has {len(labels)} labels but the head has {num_labels}")
        extra = {"id2label": {int(i): str(v) for i, v in labels.items()},
                 "label2id": {str(v): int(i) for i, v in labels.items()}}
    if tokenizer is not None:
        check_tokenizer(tokenizer, config)
        ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
        config = config.replace(**{k: v for k, v in ids.items() if v is not None})
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.to_hf_config(HEAD_ARCHITECTURES[head], **extra).save_pretrained(str(out))
    if tokenizer is not None:
        save_tokenizer(tokenizer, out)
    log.info("wrote %d tensors (%s) to %s", len(state), HEAD_ARCHITECTURES[head], out)
    return out


def check_tokenizer(tokenizer: Any, config: ModelConfig) -> None:
    """Refuses a tokenizer whose ids would not index this model's embedding table."""
    size = len(tokenizer)
    if size != config.vocab_size:
        raise ValueError(
            f"tokenizer has {size} tokens but the model's vocab_size is {config.vocab_size}: they "
            "do not belong together. Use the tokenizer the model was trained with.")
    if tokenizer.pad_token_id != config.pad_token_id:
        raise ValueError(f"tokenizer pad id {tokenizer.pad_token_id} != model pad_token_id "
                         f"{config.pad_token_id}: position ids and masks would be wrong")
