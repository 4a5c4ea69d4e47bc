"""What a run reads, resolved from its config before any long work starts.

`prepare_inputs(config, workdir)` checks the corpus settings and the workdir, then resolves
the tokenizer, the frozen teacher, the student's initial parameters and the token data
(token shards, or for a Hub-layout corpus the training stream, `data.streaming`), checking each
against the others (tokenizer vs models, sequence length vs positions).
Everything a run writes once — the tokenizer, a random teacher, the token shards — is made
by process 0 alone and read back by every process after a barrier (`primary_first`), so all
hosts agree; it is written under a temporary name and renamed into place only when complete
and checked (`build_in_place`), so a failed set-up leaves nothing that a later run would
use. What an earlier set-up left that does not fit is refused, naming the file to delete.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import os
import pathlib
import shutil
from collections.abc import Callable
from typing import Any

import grain
import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxdistil.checkpoint import find_tokenizer, load_model
from jaxdistil.config import ModelConfig
from jaxdistil.convert import check_tokenizer, save_hf
from jaxdistil.data import corpus, stream
from jaxdistil.data.pipeline import make_train_iterator
from jaxdistil.data.tokenize import (
    META_FILE,
    meta_mismatches,
    read_meta,
    read_shards,
    read_token_counts,
    tokenize_to_shards,
)
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.student import check_layer_map, default_layer_map, init_from_teacher, student_config
from jaxdistil.tokenizer import load_tokenizer, save_tokenizer, train_tokenizer
from jaxdistil.workdir import Workdir

log = logging.getLogger(__name__)

# Corpus errors name the run config's fields, where the user sets them.
DATA_FIELDS = corpus.SettingNames.config_fields("data")
SHARDS_FIELDS = {"train": "data.shards_dir", "eval": "data.eval_shards_dir"}

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
    train_blocks: Any  # token blocks; None when the training documents are streamed
    eval_blocks: Any
    token_counts: np.ndarray | None
    train_stream: stream.StreamSource | None = None  # the streamed training documents (data.streaming)


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


def build_in_place(makers: dict[pathlib.Path, Callable[[pathlib.Path], None]]) -> None:
    """Makes each target directory under a temporary name (`make(partial)` writes and checks it),
    then renames every one into place once all were made: a failed or killed set-up never
    leaves a half-made artefact that the next run would take for finished.

    Callers build only what is not finished yet, so a target already there is an unfinished one
    (left by an older version) and is replaced.
    """
    partials = {target: target.with_name(f".{target.name}.partial") for target in makers}
    try:
        for target, make in makers.items():
            shutil.rmtree(partials[target], ignore_errors=True)
            partials[target].mkdir(parents=True)
            make(partials[target])
    except BaseException:
        for partial in partials.values():
            shutil.rmtree(partial, ignore_errors=True)
        raise
    for target, partial in partials.items():
        if target.exists():
            shutil.rmtree(target)
        os.replace(partial, target)


MADE_FOR_ANOTHER_CONFIG = "it was made for another config"
UNREADABLE = "an earlier set-up left it damaged or unfinished"


def left_in_workdir(path: pathlib.Path, problem: str, cause: str = MADE_FOR_ANOTHER_CONFIG) -> ValueError:
    """The error for an artefact an earlier set-up left in the workdir that this run cannot use."""
    return ValueError(f"{path} {problem}: {cause}; delete {path} or use a new --workdir")


def plan_corpus(config: Any) -> corpus.Holdout | None:
    """The local corpus files and what of them is held out, checked before anything is written
    (missing or binary files, the held-out share, whether there is any evaluation text); None
    when the run reads no local text."""
    data_cfg = config.data
    if data_cfg.source not in ("files", "hf"):
        raise ValueError(f"data.source must be 'files' or 'hf', got {data_cfg.source!r}")
    reads_text = config.tokenizer.source == "train" or not data_cfg.shards_dir or not data_cfg.eval_shards_dir
    if data_cfg.source == "hf" and reads_text and not data_cfg.hf_name:
        raise ValueError(f"data.source='hf' but {DATA_FIELDS.hf_name} is not set: give a Hub dataset id or a local "
                         "directory laid out exactly like the repository (--config.data.hf_name=DIR)")
    if streams(data_cfg) and data_cfg.max_docs >= 0:
        raise ValueError(f"data.max_docs={data_cfg.max_docs} bounds the documents tokenised into shards, but the "
                         "training stream reads every document, epoch after epoch: set data.max_docs=-1, or "
                         "data.streaming=False")
    if data_cfg.source != "files" or not reads_text:
        return None
    files = corpus.check_local_files(list(data_cfg.paths), encoding=data_cfg.encoding, names=DATA_FIELDS)
    holdout = corpus.plan_holdout(files, data_cfg.holdout_files, data_cfg.holdout_fraction, seed=data_cfg.seed,
                                  names=DATA_FIELDS)
    if not holdout.eval_files and not data_cfg.eval_shards_dir:
        raise ValueError(
            f"no evaluation text: {DATA_FIELDS.holdout_files}={data_cfg.holdout_files} holds nothing out of the "
            f"{len(files)} corpus file(s) and data.eval_shards_dir is not set. Set {DATA_FIELDS.holdout_files} "
            f"to 1 or more (whole files, or a {DATA_FIELDS.holdout_fraction} of the documents when there are too "
            "few files), or data.eval_shards_dir to held-out shards (scripts/prepare_data.py)")
    return holdout


def streams(data_cfg: Any) -> bool:
    """Whether the training documents are streamed (data/stream.py) rather than read from token shards: a Hub
    dataset read file by file (data.hf_data_files), unless data.streaming is off or shards are given."""
    return data_cfg.source == "hf" and data_cfg.streaming and bool(data_cfg.hf_data_files) and not data_cfg.shards_dir


def plan_train_stream(data_cfg: Any) -> stream.StreamSource:
    """The training stream of the Hub-layout corpus, checked; without an evaluation split its first
    eval_max_docs documents are held out (the same ones `training_texts(held_out=True)` reads)."""
    return stream.plan_stream(
        data_cfg.hf_name, data_cfg.hf_data_files, config=data_cfg.hf_config, split=data_cfg.hf_split,
        n_held_out=0 if data_cfg.hf_eval_split else data_cfg.eval_max_docs, lanes=data_cfg.stream_lanes,
        text_field=data_cfg.text_field, min_chars=data_cfg.min_chars, skip_corrupt_files=data_cfg.skip_corrupt_files,
        lanes_setting="data.stream_lanes", names=DATA_FIELDS)


def training_texts(data_cfg: Any, holdout: corpus.Holdout | None, held_out: bool) -> Any:
    """The documents of the training (or held-out) corpus, cleaned, as a lazy iterator."""
    max_docs = data_cfg.eval_max_docs if held_out else data_cfg.max_docs
    max_docs = None if max_docs < 0 else max_docs
    if data_cfg.source == "files":
        return corpus.iter_holdout_texts(holdout, held_out=held_out, max_docs=max_docs,
                                         text_field=data_cfg.text_field, min_chars=data_cfg.min_chars,
                                         encoding=data_cfg.encoding, skip_corrupt_files=data_cfg.skip_corrupt_files,
                                         names=DATA_FIELDS)
    hf_options = dict(config=data_cfg.hf_config or None, data_files=data_cfg.hf_data_files,
                      text_field=data_cfg.text_field, min_chars=data_cfg.min_chars,
                      skip_corrupt_files=data_cfg.skip_corrupt_files, names=DATA_FIELDS)
    if data_cfg.hf_eval_split:
        split = data_cfg.hf_eval_split if held_out else data_cfg.hf_split
        return corpus.iter_hf_texts(data_cfg.hf_name, split=split, max_docs=max_docs, **hf_options)
    # No validation split (OSCAR): the stream's first eval_max_docs documents are held out.
    texts = corpus.iter_hf_texts(data_cfg.hf_name, split=data_cfg.hf_split, **hf_options)
    n_eval = data_cfg.eval_max_docs
    if held_out:
        return itertools.islice(texts, n_eval)
    return itertools.islice(texts, n_eval, None if max_docs is None else n_eval + max_docs)


def tokenizer_files(path: str, what: str) -> str:
    """`path` where it holds tokenizer files (or is a workdir with a tokenizer/), else a clear error:
    AutoTokenizer makes a few-token tokenizer from a bare model config instead of failing."""
    found = find_tokenizer(path)
    if found is None:
        raise ValueError(f"{what} at {path} has no tokenizer files (tokenizer.json / tokenizer_config.json); "
                         "set --config.tokenizer.source to a tokenizer directory")
    return found


def make_tokenizer(config: Any, holdout: corpus.Holdout | None) -> Any:
    """The tokenizer `config.tokenizer.source` names: trained on the training text, the teacher's
    own, or loaded from a directory or the Hub."""
    tok_cfg = config.tokenizer
    if tok_cfg.source == "train":
        texts = itertools.islice(training_texts(config.data, holdout, held_out=False), tok_cfg.train_max_docs)
        return train_tokenizer(texts, tok_cfg.vocab_size, seed=config.seed)
    source, what = (config.teacher.source, "the teacher") if tok_cfg.source == "teacher" else (
        tok_cfg.source, "tokenizer.source")
    if source == "random":
        raise ValueError("tokenizer.source='teacher' but the teacher is random and has no tokenizer; set "
                         "--config.tokenizer.source to 'train' or a tokenizer directory")
    return load_tokenizer(tokenizer_files(source, what) if pathlib.Path(source).exists() else source)


def resolve_tokenizer(config: Any, workdir: Workdir, holdout: corpus.Holdout | None,
                      teacher_config: ModelConfig | None) -> Any:
    """The run's tokenizer: the one saved in the workdir, else the configured or trained one,
    saved there once it is known to fit the given teacher (`teacher_config`, None when the
    teacher is made from the tokenizer or there is none)."""
    saved = workdir.tokenizer

    def make_and_save():
        if saved.exists():
            return
        tokenizer = make_tokenizer(config, holdout)
        if teacher_config is not None:
            try:
                check_tokenizer(tokenizer, teacher_config)
            except ValueError as e:
                raise ValueError(f"the tokenizer of tokenizer.source={config.tokenizer.source!r} does not fit the "
                                 f"teacher {config.teacher.source}: {e}") from None
        build_in_place({saved: lambda partial: save_tokenizer(tokenizer, partial)})

    primary_first("tokenizer", make_and_save)
    try:
        tokenizer = load_tokenizer(saved)
    except (OSError, ValueError) as e:
        raise left_in_workdir(saved, f"cannot be read ({e})", UNREADABLE) from None
    if config.tokenizer.source == "train" and len(tokenizer) != config.tokenizer.vocab_size:
        raise left_in_workdir(
            saved, f"has {len(tokenizer)} tokens but tokenizer.vocab_size is {config.tokenizer.vocab_size}")
    if teacher_config is not None:
        check_saved_fits(saved, tokenizer, teacher_config, against=f"the teacher {config.teacher.source}")
    return tokenizer


def check_saved_fits(saved: pathlib.Path, tokenizer: Any, model_config: ModelConfig, against: str) -> None:
    """`check_tokenizer`, for a pair of which `saved` was already in the workdir: the error names it."""
    try:
        check_tokenizer(tokenizer, model_config)
    except ValueError as e:
        raise left_in_workdir(saved, f"does not fit {against} ({e})") from None


def _fields_from_tokenizer(tokenizer: Any) -> dict[str, int]:
    """The config fields a tokenizer fixes: a random model must index exactly its ids."""
    return {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}


def load_given_teacher(config: Any) -> tuple[ModelConfig | None, Any]:
    """The frozen teacher when the config names one (mode='distil', not random); else (None, None)."""
    if config.mode != "distil" or config.teacher.source == "random":
        return None, None
    return load_model(config.teacher.source)


def resolve_random_teacher(config: Any, tokenizer: Any, workdir: Workdir) -> tuple[ModelConfig, Any]:
    """The random teacher (`teacher.source='random'`), created for the tokenizer and saved once, in
    HF format in WORKDIR/teacher, so a resumed run distils from the same one."""
    saved = workdir.teacher

    def make_and_save():
        if saved.exists():
            return
        model_cfg = ModelConfig(**{**config.teacher.random.to_dict(), **_fields_from_tokenizer(tokenizer)})
        params = init_params(MaskedLM(model_cfg), init_key(config.seed, "teacher"))
        # HF format, not Orbax: Orbax saves are collective, and only process 0 runs this.
        build_in_place({saved: lambda partial: save_hf(model_cfg, jax.device_get(params), partial)})

    primary_first("teacher", make_and_save)
    try:
        teacher_config, params = load_model(saved)
    except (OSError, ValueError) as e:
        raise left_in_workdir(saved, f"cannot be read ({e})", UNREADABLE) from None
    check_saved_fits(saved, tokenizer, teacher_config, against=f"the tokenizer {tokenizer.name_or_path}")
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


def resolve_data(config: Any, tokenizer: Any, workdir: Workdir, holdout: corpus.Holdout | None):
    """(train blocks, eval blocks, token counts, train stream): pre-tokenised shards, or tokenised once
    into WORKDIR/data (the splits renamed into place together, once all are made); a streamed run
    tokenises only its held-out documents there, and reads its training documents as it trains."""
    data_cfg = config.data
    train_stream = plan_train_stream(data_cfg) if streams(data_cfg) else None
    given = {"train": data_cfg.shards_dir, "eval": data_cfg.eval_shards_dir}
    dirs = {split: pathlib.Path(path) if path else workdir.data(split) for split, path in given.items()}
    for split, path in given.items():
        if path and not (dirs[split] / META_FILE).is_file():
            raise FileNotFoundError(f"no token shards at {path} ({SHARDS_FIELDS[split]}): make them with "
                                    "scripts/prepare_data.py")

    def tokenize_split(partial: pathlib.Path, split: str) -> None:
        log.info("tokenising the %s corpus into %s", split, dirs[split])
        tokenize_to_shards(training_texts(data_cfg, holdout, held_out=split == "eval"), tokenizer, partial,
                           seq_len=data_cfg.seq_len, overwrite=True, names=DATA_FIELDS)
        read_shards(partial, expected_seq_len=data_cfg.seq_len, expected_vocab_size=len(tokenizer))

    def make_missing():
        missing = {dirs[split]: functools.partial(tokenize_split, split=split) for split, path in given.items()
                   if not path and not (dirs[split] / META_FILE).is_file()
                   and not (split == "train" and train_stream)}
        if missing:
            build_in_place(missing)

    primary_first("data", make_missing)
    train_blocks = None if train_stream else read_split(dirs["train"], given["train"], config, tokenizer, workdir)
    eval_blocks = read_split(dirs["eval"], given["eval"], config, tokenizer, workdir)
    counts = None
    if config.masking.mlm_smoothing > 0:
        counts = (resolve_stream_counts(config, tokenizer, workdir, train_stream) if train_stream
                  else read_token_counts(dirs["train"]))
    return train_blocks, eval_blocks, counts, train_stream


STREAM_COUNTS_FILE = "token_counts.npy"
STREAM_COUNTS_MADE_WITH = "made_with.json"


def resolve_stream_counts(config: Any, tokenizer: Any, workdir: Workdir, source: stream.StreamSource) -> np.ndarray:
    """The token counts `mlm_smoothing` masks a streamed run by (`stream.head_token_counts` over the first
    data.stream_count_docs training documents): counted once by process 0 into WORKDIR/data/stream_counts,
    so a resumed run masks exactly as before, read back by every process."""
    saved = workdir.data("stream_counts")
    made_with = {"docs": config.data.stream_count_docs, "seq_len": config.data.seq_len,
                 "vocab_size": len(tokenizer)}

    def count(partial: pathlib.Path) -> None:
        log.info("counting the tokens of the first %d training documents", config.data.stream_count_docs)
        counts = stream.head_token_counts(source, tokenizer, num_docs=config.data.stream_count_docs,
                                          seq_len=config.data.seq_len)
        np.save(partial / STREAM_COUNTS_FILE, counts)
        (partial / STREAM_COUNTS_MADE_WITH).write_text(json.dumps(made_with) + "\n")

    primary_first("stream_counts", lambda: None if saved.exists() else build_in_place({saved: count}))
    try:
        found = json.loads((saved / STREAM_COUNTS_MADE_WITH).read_text())
        counts = np.load(saved / STREAM_COUNTS_FILE)
    except (OSError, ValueError) as e:
        raise left_in_workdir(saved, f"cannot be read ({e})", UNREADABLE) from None
    if found != made_with:
        raise left_in_workdir(saved, f"holds the token counts of {found}, this run counts {made_with}")
    return counts


def train_iterator(config: Any, inputs: RunInputs) -> grain.DatasetIterator:
    """The run's checkpointable iterator of this process's training batches: streamed, or over token shards."""
    if inputs.train_stream is not None:
        data_cfg = config.data
        return stream.make_stream_iterator(inputs.train_stream, inputs.tokenizer, seq_len=data_cfg.seq_len,
                                           lanes=data_cfg.stream_lanes, global_batch_size=config.train.batch_size,
                                           prefetch=data_cfg.stream_prefetch, workers=data_cfg.stream_workers)
    return make_train_iterator(inputs.train_blocks, global_batch_size=config.train.batch_size,
                               seed=config.data.seed, pad_id=inputs.tokenizer.pad_token_id)


def read_split(path: pathlib.Path, given: str, config: Any, tokenizer: Any, workdir: Workdir) -> Any:
    """The blocks of one split, after checking they fit the run; the error says what to do about
    shards made in this workdir by an earlier set-up, or given in the config."""
    expected = dict(expected_seq_len=config.data.seq_len, expected_vocab_size=len(tokenizer))
    problems = meta_mismatches(read_meta(path), **expected)
    if problems and not given:
        raise left_in_workdir(workdir.root / "data", f"holds token shards that do not fit this run "
                                      f"({'; '.join(problems)})")
    blocks, _ = read_shards(path, **expected)
    return blocks


def check_sequence_length(seq_len: int, model_cfg: ModelConfig, what: str) -> None:
    if seq_len > model_cfg.max_sequence_length:
        raise ValueError(f"data.seq_len={seq_len} is longer than the {what} can encode "
                         f"({model_cfg.max_sequence_length} positions: max_position_embeddings="
                         f"{model_cfg.max_position_embeddings}, pad_token_id={model_cfg.pad_token_id}); "
                         "lower data.seq_len")


def check_settings(config: Any) -> corpus.Holdout | None:
    """What can be checked before anything is written: the mode, the corpus and what is held out
    (`plan_corpus`)."""
    if config.mode not in ("distil", "mlm"):
        raise ValueError(f"mode must be 'distil' or 'mlm', got {config.mode!r}")
    return plan_corpus(config)


def prepare_inputs(config: Any, workdir: Workdir) -> RunInputs:
    """Everything the run reads (`check_settings`, then `build_inputs`)."""
    holdout = check_settings(config)
    check_workdir(workdir)
    return build_inputs(config, workdir, holdout)


def build_inputs(config: Any, workdir: Workdir, holdout: corpus.Holdout | None) -> RunInputs:
    """Each artefact made once and checked against the others, in a checked, writable workdir.

    A given teacher is loaded before the tokenizer, so a tokenizer that does not fit it is
    refused before it is saved.
    """
    teacher_config, teacher_params = load_given_teacher(config)
    tokenizer = resolve_tokenizer(config, workdir, holdout, teacher_config)
    if config.mode == "distil":
        if teacher_config is None:
            teacher_config, teacher_params = resolve_random_teacher(config, tokenizer, workdir)
        check_sequence_length(config.data.seq_len, teacher_config, "teacher")
    s_config, s_params = resolve_student(config, tokenizer, teacher_config, teacher_params)
    check_tokenizer(tokenizer, s_config)
    check_sequence_length(config.data.seq_len, s_config, "student")
    train_blocks, eval_blocks, counts, train_stream = resolve_data(config, tokenizer, workdir, holdout)
    if jax.process_index() == 0:
        workdir.student_config.write_text(json.dumps(s_config.to_hf_dict(), indent=2) + "\n")
    return RunInputs(workdir, tokenizer, teacher_config, teacher_params, s_config, s_params, train_blocks,
                     eval_blocks, counts, train_stream)
