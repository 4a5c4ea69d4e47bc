"""What a run reads, resolved from its config before any long work starts.

`prepare_inputs(config, workdir)` checks the workdir, then resolves the tokenizer, the frozen
teacher, the student's initial parameters and the token data, checking each against the
others (tokenizer vs models, sequence length vs positions). Everything a run writes once —
the tokenizer, a random teacher, the token shards — is made by process 0 alone and read back
by every process after a barrier (`primary_first`), so all hosts agree.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import pathlib
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxdistil.checkpoint import load_model
from jaxdistil.config import ModelConfig
from jaxdistil.convert import check_tokenizer, save_hf
from jaxdistil.data import corpus
from jaxdistil.data.tokenize import read_shards, read_token_counts, tokenize_to_shards
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.student import check_layer_map, default_layer_map, init_from_teacher, student_config
from jaxdistil.tokenizer import load_tokenizer, train_tokenizer
from jaxdistil.workdir import Workdir

log = logging.getLogger(__name__)

# Offsets of `config.seed` for the random initialisations, so teacher and student differ.
_INIT_SEED_OFFSETS = {"teacher": 1, "student": 2}


def init_key(seed: int, role: str) -> jax.Array:
    """The key that initialises a random `role` ("teacher" or "student") of a run seeded `seed`."""
    return jax.random.key(seed + _INIT_SEED_OFFSETS[role])


@dataclasses.dataclass
class RunInputs:
    """What set-up resolved: models, tokenizer, data, and where the run lives."""

    workdir: Workdir
    tokenizer: Any
    teacher_config: ModelConfig | None
    teacher_params: Any
    student_config: ModelConfig
    student_init: Any  # initial student params (used only when not resuming)
    train_blocks: Any
    eval_blocks: Any
    token_counts: np.ndarray | None


def check_workdir(workdir: Workdir) -> None:
    try:
        workdir.root.mkdir(parents=True, exist_ok=True)
        probe = workdir.root / f".write_test.{jax.process_index()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write to the workdir {workdir.root} ({e.strerror}); "
                              "choose a writable --workdir") from e


def primary_first(name: str, make: Any) -> None:
    """Runs `make` (which writes files) on process 0 only, then waits for it everywhere."""
    error = None
    if jax.process_index() == 0:
        try:
            make()
        except Exception as e:  # re-raised after the barrier, so other processes do not hang
            error = e
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"jaxdistil:{name}")
    if error is not None:
        raise error


def training_texts(data_cfg: Any, holdout: bool) -> Any:
    """The documents of the training (or held-out) corpus, cleaned, as a lazy iterator."""
    max_docs = data_cfg.eval_max_docs if holdout else data_cfg.max_docs
    max_docs = None if max_docs < 0 else max_docs
    if data_cfg.source == "files":
        files = corpus.resolve_paths(list(data_cfg.paths))
        train_files, eval_files = corpus.split_holdout_files(files, data_cfg.holdout_files, seed=data_cfg.seed)
        chosen = eval_files if holdout else train_files
        return corpus.iter_local_texts(chosen, text_field=data_cfg.text_field, min_chars=data_cfg.min_chars,
                                       max_docs=max_docs)
    if data_cfg.source == "hf":
        if data_cfg.hf_eval_split:
            split = data_cfg.hf_eval_split if holdout else data_cfg.hf_split
            return corpus.iter_hf_texts(data_cfg.hf_name, config=data_cfg.hf_config or None, split=split,
                                        text_field=data_cfg.text_field, min_chars=data_cfg.min_chars,
                                        max_docs=max_docs)
        # No validation split (OSCAR): the stream's first eval_max_docs documents are held out.
        texts = corpus.iter_hf_texts(data_cfg.hf_name, config=data_cfg.hf_config or None,
                                     split=data_cfg.hf_split, text_field=data_cfg.text_field,
                                     min_chars=data_cfg.min_chars)
        n_eval = data_cfg.eval_max_docs
        if holdout:
            return itertools.islice(texts, n_eval)
        return itertools.islice(texts, n_eval, None if max_docs is None else n_eval + max_docs)
    raise ValueError(f"data.source must be 'files' or 'hf', got {data_cfg.source!r}")


def resolve_tokenizer(config: Any, workdir: Workdir) -> Any:
    """The run's tokenizer: the one saved in the workdir, else the configured or trained one."""
    saved = workdir.tokenizer

    def make_and_save():
        if (saved / "tokenizer_config.json").is_file():
            return
        tok_cfg = config.tokenizer
        if tok_cfg.source == "train":
            texts = itertools.islice(training_texts(config.data, holdout=False), tok_cfg.train_max_docs)
            tokenizer = train_tokenizer(texts, tok_cfg.vocab_size, seed=config.seed)
        elif tok_cfg.source == "teacher":
            tokenizer = load_tokenizer(config.teacher.source)
        else:
            tokenizer = load_tokenizer(tok_cfg.source)
        tokenizer.save_pretrained(str(saved))

    primary_first("tokenizer", make_and_save)
    return load_tokenizer(saved)


def _fields_from_tokenizer(tokenizer: Any) -> dict[str, int]:
    """The config fields a tokenizer fixes: a random model must index exactly its ids."""
    return {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}


def resolve_teacher(config: Any, tokenizer: Any, workdir: Workdir) -> tuple[ModelConfig, Any]:
    """Loads (or, for `source='random'`, creates once and saves) the frozen teacher."""
    saved = workdir.teacher
    source = config.teacher.source
    if source == "random":
        def make_and_save():
            if (saved / "config.json").is_file():
                return
            model_cfg = ModelConfig(**{**config.teacher.random.to_dict(), **_fields_from_tokenizer(tokenizer)})
            params = init_params(MaskedLM(model_cfg), init_key(config.seed, "teacher"))
            # HF format, not Orbax: Orbax saves are collective, and only process 0 runs this.
            save_hf(model_cfg, jax.device_get(params), saved)

        primary_first("teacher", make_and_save)
        source = saved
    teacher_config, params = load_model(source)
    check_tokenizer(tokenizer, teacher_config)
    return teacher_config, params


def resolve_student(config: Any, tokenizer: Any, teacher_config: ModelConfig | None,
                    teacher_params: Any) -> tuple[ModelConfig, Any]:
    s_cfg = config.student
    if s_cfg.init == "teacher":
        if teacher_config is None:
            raise ValueError("student.init='teacher' needs a teacher (mode='distil')")
        cfg = student_config(teacher_config, s_cfg.num_layers)
        layer_map = (check_layer_map(s_cfg.layer_map, teacher_config, s_cfg.num_layers) if s_cfg.layer_map
                     else default_layer_map(teacher_config.num_hidden_layers, s_cfg.num_layers))
        log.info("student: %d layers from teacher layers %s", s_cfg.num_layers, list(layer_map))
        return cfg, init_from_teacher(teacher_params, layer_map)
    if s_cfg.init == "random":
        base = teacher_config.to_hf_dict() if teacher_config is not None else {}
        fields = {**base, **s_cfg.random.to_dict(), **_fields_from_tokenizer(tokenizer)}
        if s_cfg.num_layers:
            fields["num_hidden_layers"] = s_cfg.num_layers
        cfg = ModelConfig(**fields)
        return cfg, jax.device_get(init_params(MaskedLM(cfg), init_key(config.seed, "student")))
    raise ValueError(f"student.init must be 'teacher' or 'random', got {s_cfg.init!r}")


def resolve_data(config: Any, tokenizer: Any, workdir: Workdir):
    """Token blocks for training and evaluation: pre-tokenised shards, tokenised once."""
    data_cfg = config.data
    seq_len = data_cfg.seq_len
    dirs = {}
    for split, holdout in (("train", False), ("eval", True)):
        given = data_cfg.shards_dir if split == "train" else data_cfg.eval_shards_dir
        target = pathlib.Path(given) if given else workdir.data(split)
        if given and not (target / "meta.json").is_file():
            raise FileNotFoundError(f"no token shards at {target} (make them with scripts/prepare_data.py)")

        def make_shards(target=target, holdout=holdout, split=split):
            if not (target / "meta.json").is_file():
                log.info("tokenising the %s corpus into %s", split, target)
                tokenize_to_shards(training_texts(data_cfg, holdout), tokenizer, target, seq_len=seq_len,
                                   overwrite=True)

        primary_first(f"data-{split}", make_shards)
        dirs[split] = target
    train_blocks, _ = read_shards(dirs["train"], expected_seq_len=seq_len, expected_vocab_size=len(tokenizer))
    eval_blocks, _ = read_shards(dirs["eval"], expected_seq_len=seq_len, expected_vocab_size=len(tokenizer))
    counts = read_token_counts(dirs["train"]) if config.masking.mlm_smoothing > 0 else None
    return train_blocks, eval_blocks, counts


def check_sequence_length(seq_len: int, model_cfg: ModelConfig, what: str) -> None:
    if seq_len > model_cfg.max_sequence_length:
        raise ValueError(f"data.seq_len={seq_len} is longer than the {what} can encode "
                         f"({model_cfg.max_sequence_length} positions: max_position_embeddings="
                         f"{model_cfg.max_position_embeddings}, pad_token_id={model_cfg.pad_token_id}); "
                         "lower data.seq_len")


def prepare_inputs(config: Any, workdir: Workdir) -> RunInputs:
    check_workdir(workdir)
    if config.mode not in ("distil", "mlm"):
        raise ValueError(f"mode must be 'distil' or 'mlm', got {config.mode!r}")
    tokenizer = resolve_tokenizer(config, workdir)
    teacher_config = teacher_params = None
    if config.mode == "distil":
        teacher_config, teacher_params = resolve_teacher(config, tokenizer, workdir)
        check_sequence_length(config.data.seq_len, teacher_config, "teacher")
    s_config, s_params = resolve_student(config, tokenizer, teacher_config, teacher_params)
    check_tokenizer(tokenizer, s_config)
    check_sequence_length(config.data.seq_len, s_config, "student")
    train_blocks, eval_blocks, counts = resolve_data(config, tokenizer, workdir)
    if jax.process_index() == 0:
        workdir.student_config.write_text(json.dumps(s_config.to_hf_dict(), indent=2) + "\n")
        workdir.run_config.write_text(config.to_json_best_effort(indent=2) + "\n")
    return RunInputs(workdir, tokenizer, teacher_config, teacher_params, s_config, s_params, train_blocks,
                     eval_blocks, counts)
