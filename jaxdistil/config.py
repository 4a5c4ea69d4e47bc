"""The model's shape as a frozen dataclass that reads and writes HF `config.json`.

One typed, immutable object travels from the HF checkpoint to the Flax modules and back, so
a student exported to PyTorch carries exactly the hyper-parameters it was trained with.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

# RoBERTa-family architectures whose encoder, embeddings and MLM head are the same maths.
SUPPORTED_MODEL_TYPES = ("camembert", "roberta", "xlm-roberta")
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "swish")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and regularisation of a RoBERTa/CamemBERT encoder with its MLM head.

    Field names are HF's, so `from_hf_dict`/`to_hf_dict` are a plain copy. Defaults are
    camembert-base's (Martin et al. 2020; the Hub's `camembert-base/config.json`).
    """

    vocab_size: int = 32005
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    pad_token_id: int = 1
    bos_token_id: int = 5
    eos_token_id: int = 6
    layer_norm_eps: float = 1e-5
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    classifier_dropout: float | None = None
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True
    model_type: str = "camembert"

    def __post_init__(self) -> None:
        problems = []
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} must be a positive integer")
        if self.num_attention_heads >= 1 and self.hidden_size % self.num_attention_heads:
            problems.append(
                f"hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}: every head needs hidden_size/heads dimensions")
        if not 0 <= self.pad_token_id < self.vocab_size:
            problems.append(f"pad_token_id={self.pad_token_id} is outside the vocabulary "
                            f"(vocab_size={self.vocab_size})")
        if self.max_position_embeddings <= self.pad_token_id + 1:
            problems.append(
                f"max_position_embeddings={self.max_position_embeddings} leaves no room for "
                f"positions: RoBERTa positions start at pad_token_id + 1 = {self.pad_token_id + 1}")
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            problems.append(f"hidden_act={self.hidden_act!r} is not one of {SUPPORTED_ACTIVATIONS}")
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            problems.append(
                f"model_type={self.model_type!r}: jaxdistil implements the RoBERTa family "
                f"{SUPPORTED_MODEL_TYPES}; convert or choose a checkpoint of one of these")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                problems.append(f"{name}={getattr(self, name)} must be in [0, 1)")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_sequence_length(self) -> int:
        """Longest input the position table can encode (514 - 2 = 512 for camembert-base)."""
        return self.max_position_embeddings - self.pad_token_id - 1

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # --- HF config.json -------------------------------------------------------------------

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any]) -> ModelConfig:
        """Reads the fields we model from an HF config dict; refuses other architectures."""
        model_type = hf.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            archs = hf.get("architectures") or []
            raise ValueError(
                f"config.json describes model_type={model_type!r} (architectures={archs}); "
                f"jaxdistil supports only RoBERTa-family models {SUPPORTED_MODEL_TYPES}. "
                "Point it at a CamemBERT/RoBERTa checkpoint.")
        if hf.get("is_decoder") or hf.get("add_cross_attention"):
            raise ValueError("config.json describes a decoder (is_decoder/add_cross_attention); "
                             "jaxdistil models bidirectional masked-LM encoders only")
        pos_type = hf.get("position_embedding_type", "absolute")
        if pos_type != "absolute":
            raise ValueError(f"position_embedding_type={pos_type!r} is not supported "
                             "(only RoBERTa's absolute positions)")
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in hf.items() if k in names and v is not None}
        if kwargs.get("bos_token_id") is None:
            kwargs.pop("bos_token_id", None)
        return cls(**kwargs)

    def to_hf_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return out

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> ModelConfig:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no config.json at {path}")
        with open(path, encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} is not valid JSON ({e}); is it really an HF config.json?") from e
        return cls.from_hf_dict(data)

    def to_hf_config(self, architecture: str = "CamembertForMaskedLM", **extra: Any):
        """An HF `PretrainedConfig` (so config.json gets every field transformers expects)."""
        from transformers import AutoConfig

        fields = self.to_hf_dict()
        model_type = fields.pop("model_type")
        hf_config = AutoConfig.for_model(model_type, **fields, **extra)
        hf_config.architectures = [architecture]
        return hf_config
