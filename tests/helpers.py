"""Test helpers shared across test files (no network, no Hub: everything built on the fly)."""

from __future__ import annotations

import os
import pathlib
import sys
from collections.abc import Sequence

from jaxdistil.run_config import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0, 1, 2, 3; <mask> is added last


def make_tiny_tokenizer(texts: Sequence[str], vocab_size: int = 300):
    """A small RoBERTa-style fast tokenizer (Unigram + Metaspace, NFC) trained on `texts`.

    Ids: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> = len(tokenizer) - 1. cls/sep are <s>/</s>
    as in RoBERTa and CamemBERT. Trains in well under a second on a few hundred lines.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size - 1,  # <mask> comes on top
        special_tokens=list(SPECIAL_TOKENS),
        unk_token="<unk>",
        show_progress=False,
    )
    backend.train_from_iterator(list(texts), trainer=trainer)
    backend.add_special_tokens(["<mask>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        cls_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )


def micro_overrides(corpus_files, tokenizer_dir, steps=40):
    """configs/tiny.py shrunk further: a 2-layer 32-wide teacher, seconds per run."""
    return {
        "data.paths": tuple(corpus_files), "data.seq_len": 32, "data.max_docs": 1500, "data.eval_max_docs": 200,
        "tokenizer.source": str(tokenizer_dir),
        "teacher.random.hidden_size": 32, "teacher.random.num_hidden_layers": 2,
        "teacher.random.num_attention_heads": 2, "teacher.random.intermediate_size": 64,
        "teacher.random.max_position_embeddings": 34,
        "student.num_layers": 1, "train.steps": steps, "train.batch_size": 8, "train.warmup_steps": 4,
        "train.log_every": 5, "train.eval_every": steps, "train.eval_batches": 2, "train.eval_batch_size": 8,
        "train.checkpoint_every": 10, "progress": False, "export_hf": True,
    }


def make_config(overrides):
    config = load_config(f"{REPO / 'configs' / 'tiny.py'}:{','.join(overrides['data.paths'])}")
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def subprocess_env(**extra):
    """CPU-only; the suite's compilation cache (conftest's JAX_COMPILATION_CACHE_DIR) is inherited."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", **extra}


def train_cli(config_overrides, workdir):
    args = [sys.executable, str(REPO / "scripts" / "train.py"),
            f"--config={REPO / 'configs' / 'tiny.py'}:{','.join(config_overrides['data.paths'])}",
            f"--workdir={workdir}"]
    for k, v in config_overrides.items():
        if k != "data.paths":
            args.append(f"--config.{k}={v}")
    return args
