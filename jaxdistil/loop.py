"""`run(config, workdir)`: the whole distillation (or MLM pre-training) job.

Set-up checks everything that can be wrong with the inputs (workdir, corpus, tokenizer vs
teacher, sequence length) before any long work starts; then the loop trains, logs, evaluates
and checkpoints. Re-running with the same workdir resumes from the latest checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import logging
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxdistil import sharding as shd
from jaxdistil import train as T
from jaxdistil.checkpoint import load_model
from jaxdistil.config import ModelConfig
from jaxdistil.convert import check_tokenizer, save_hf
from jaxdistil.evaluate.mlm import MaskingSpec, batch_key, metrics_from_sums, mlm_eval_step
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.student import check_layer_map, default_layer_map, init_from_teacher, student_config

log = logging.getLogger(__name__)

TEACHER_DIR = "teacher"
DATA_DIR = "data"


@dataclasses.dataclass
class Job:
    """What set-up resolved: models, tokenizer, data, and where things live."""

    workdir: pathlib.Path
    tokenizer: Any
    teacher_config: ModelConfig | None
    teacher_params: Any
    student_config: ModelConfig
    student_init: Any  # initial student params (used only when not resuming)
    train_blocks: Any
    eval_blocks: Any
    token_counts: np.ndarray | None


def check_workdir(workdir: pathlib.Path) -> None:
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write_test.{jax.process_index()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write to the workdir {workdir} ({e.strerror}); "
                              "choose a writable --workdir") from e


# --- set-up ----------------------------------------------------------------------------------


def _training_texts(data_cfg: Any, holdout: bool) -> Any:
    from jaxdistil.data import corpus

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


def resolve_tokenizer(config: Any, workdir: pathlib.Path) -> Any:
    """The run's tokenizer: the one saved in the workdir, else the configured or trained one.

    Process 0 makes and saves it; every process then loads the saved copy, so all agree.
    """
    from jaxdistil.tokenizer import load_tokenizer, train_tokenizer

    saved = workdir / T.TOKENIZER_DIR

    def make_and_save():
        if (saved / "tokenizer_config.json").is_file():
            return
        tok_cfg = config.tokenizer
        if tok_cfg.source == "train":
            texts = itertools.islice(_training_texts(config.data, holdout=False), tok_cfg.train_max_docs)
            tokenizer = train_tokenizer(texts, tok_cfg.vocab_size, seed=config.seed)
        elif tok_cfg.source == "teacher":
            tokenizer = load_tokenizer(config.teacher.source)
        else:
            tokenizer = load_tokenizer(tok_cfg.source)
        tokenizer.save_pretrained(str(saved))

    primary_first("tokenizer", make_and_save)
    return load_tokenizer(saved)


def primary_first(name: str, make: Any) -> None:
    """Runs `make` (which writes files) on process 0 only, then waits for it everywhere."""
    error = None
    if jax.process_index() == 0:
        try:
            make()
        except Exception as e:  # re-raised after the barrier, so other processes do not hang
            error = e
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"jaxdistil:{name}")
    if error is not None:
        raise error


def resolve_teacher(config: Any, tokenizer: Any, workdir: pathlib.Path) -> tuple[ModelConfig, Any]:
    """Loads (or, for `source='random'`, creates once and saves) the frozen teacher."""
    saved = workdir / TEACHER_DIR
    source = config.teacher.source
    if source == "random":
        def make_and_save():
            if (saved / "config.json").is_file():
                return
            model_cfg = ModelConfig(**{**config.teacher.random.to_dict(), "vocab_size": len(tokenizer),
                                       "pad_token_id": tokenizer.pad_token_id,
                                       "bos_token_id": tokenizer.bos_token_id,
                                       "eos_token_id": tokenizer.eos_token_id})
            params = init_params(MaskedLM(model_cfg), jax.random.key(config.seed + 1))
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
        fields = {**base, **s_cfg.random.to_dict(), "vocab_size": len(tokenizer),
                  "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
                  "eos_token_id": tokenizer.eos_token_id}
        if s_cfg.num_layers:
            fields["num_hidden_layers"] = s_cfg.num_layers
        cfg = ModelConfig(**fields)
        return cfg, jax.device_get(init_params(MaskedLM(cfg), jax.random.key(config.seed + 2)))
    raise ValueError(f"student.init must be 'teacher' or 'random', got {s_cfg.init!r}")


def resolve_data(config: Any, tokenizer: Any, workdir: pathlib.Path):
    """Token blocks for training and evaluation: pre-tokenised shards, tokenised once."""
    from jaxdistil.data.tokenize import read_shards, read_token_counts, tokenize_to_shards

    data_cfg = config.data
    seq_len = data_cfg.seq_len
    dirs = {}
    for split, holdout in (("train", False), ("eval", True)):
        given = data_cfg.shards_dir if split == "train" else data_cfg.eval_shards_dir
        target = pathlib.Path(given) if given else workdir / DATA_DIR / split
        if given and not (target / "meta.json").is_file():
            raise FileNotFoundError(f"no token shards at {target} (make them with scripts/prepare_data.py)")

        def make_shards(target=target, holdout=holdout, split=split):
            if not (target / "meta.json").is_file():
                log.info("tokenising the %s corpus into %s", split, target)
                tokenize_to_shards(_training_texts(data_cfg, holdout), tokenizer, target, seq_len=seq_len,
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


def set_up(config: Any, workdir: str | pathlib.Path) -> Job:
    workdir = pathlib.Path(workdir)
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
        (workdir / T.STUDENT_CONFIG).write_text(json.dumps(s_config.to_hf_dict(), indent=2) + "\n")
        (workdir / T.RUN_CONFIG).write_text(config.to_json_best_effort(indent=2) + "\n")
    return Job(workdir, tokenizer, teacher_config, teacher_params, s_config, s_params, train_blocks,
               eval_blocks, counts)


def step_spec(config: Any, tokenizer: Any, vocab_size: int, batch_shards: int = 1,
              tied_decoders: bool = True) -> T.StepSpec:
    loss, masking = config.loss, config.masking
    distil = config.mode == "distil"
    fused_head_chunk = config.train.get("fused_head_chunk", 256) if tied_decoders else 0
    return T.StepSpec(
        temperature=loss.temperature, alpha_distil=loss.alpha_distil if distil else 0.0,
        alpha_cosine=loss.alpha_cosine if distil else 0.0, alpha_mlm=loss.alpha_mlm if distil else 1.0,
        restrict_to_mask=loss.restrict_to_mask, mlm_probability=masking.mlm_probability,
        mask_ratio=masking.mask_ratio, random_ratio=masking.random_ratio,
        mask_token_id=tokenizer.mask_token_id, special_token_ids=tuple(sorted(tokenizer.all_special_ids)),
        vocab_size=vocab_size, grad_accum=config.train.grad_accum, use_teacher=distil,
        fused_head_chunk=fused_head_chunk, batch_shards=batch_shards)


# --- the loop --------------------------------------------------------------------------------


def run(config: Any, workdir: str | pathlib.Path) -> dict[str, float]:
    """Trains to `config.train.steps` (resuming if the workdir has a checkpoint); returns last metrics.

    `config.train.prng_impl` (e.g. "rbg") scopes JAX's PRNG implementation to this run: masking
    and dropout draw from it (a scoped setting, so the process's default is left as it was).
    """
    impl = config.train.get("prng_impl")
    with jax.default_prng_impl(impl) if impl else contextlib.nullcontext():
        return _run(config, workdir)


def _run(config: Any, workdir: str | pathlib.Path) -> dict[str, float]:
    from tqdm.auto import tqdm

    from jaxdistil.data.masking import token_weights_from_counts
    from jaxdistil.data.pipeline import make_eval_batches, make_train_iterator

    job = set_up(config, workdir)
    train_cfg = config.train
    dtype = jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32
    mesh = shd.make_mesh(config.num_devices or None)
    attention = train_cfg.get("attention_impl")
    student = MaskedLM(job.student_config, dtype=dtype, attention_impl=attention, remat=train_cfg.remat)
    teacher = (MaskedLM(job.teacher_config, dtype=dtype, attention_impl=attention)
               if job.teacher_config is not None else None)
    tx = T.make_optimizer(train_cfg)
    schedule = T.learning_rate_schedule(train_cfg.learning_rate, train_cfg.warmup_steps, train_cfg.steps)
    models = [job.student_config] + ([job.teacher_config] if teacher else [])
    spec = step_spec(config, job.tokenizer, job.student_config.vocab_size, batch_shards=mesh.devices.size,
                     tied_decoders=all(m.tie_word_embeddings for m in models))
    token_weights = None
    if job.token_counts is not None:
        token_weights = jnp.asarray(token_weights_from_counts(
            job.token_counts, config.masking.mlm_smoothing, special_token_ids=spec.special_token_ids))

    abstract = jax.eval_shape(lambda p: T.init_train_state(p, tx, config.seed), job.student_init)
    state_sh = shd.state_shardings(abstract, mesh, train_cfg.fsdp)
    teacher_sh = shd.state_shardings(job.teacher_params, mesh, train_cfg.fsdp) if teacher else None
    step_fn = T.build_train_step(student=student, teacher=teacher, tx=tx, spec=spec, mesh=mesh,
                                 state_sharding=state_sh, teacher_sharding=teacher_sh, schedule=schedule)
    teacher_params = jax.device_put(job.teacher_params, teacher_sh) if teacher else None

    data_iter = make_train_iterator(job.train_blocks, global_batch_size=train_cfg.batch_size,
                                    seed=config.data.seed, pad_id=job.tokenizer.pad_token_id)
    manager = T.checkpoint_manager(job.workdir, keep=train_cfg.keep_checkpoints)
    if manager.latest_step() is not None:
        abstract_sh = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                   abstract, state_sh)
        state = T.restore_checkpoint(manager, abstract_sh, data_iter)
        log.info("resumed from step %d", int(state.step))
    else:
        init = jax.jit(lambda p: T.init_train_state(p, tx, config.seed), out_shardings=state_sh)
        state = init(job.student_init)
    eval_batches = make_eval_batches(job.eval_blocks, global_batch_size=train_cfg.eval_batch_size,
                                     pad_id=job.tokenizer.pad_token_id)
    eval_spec = MaskingSpec(spec.mask_token_id, spec.special_token_ids, spec.mlm_probability)
    eval_fn = jax.jit(lambda p, b, r: mlm_eval_step(p, None, b, r, module=student, teacher_module=None,
                                                     spec=eval_spec))

    writer = T.MetricWriter(job.workdir, enabled=jax.process_index() == 0)
    start_step = int(jax.device_get(state.step))
    last: dict[str, float] = {}
    bar = tqdm(total=train_cfg.steps, initial=start_step, desc="distil" if teacher else "mlm",
               disable=jax.process_index() != 0 or not config.progress, dynamic_ncols=True)
    timer_start, timed_tokens, first_timed = None, 0.0, start_step + 1
    pending: list[tuple[int, Any]] = []
    with T.StopFlag() as stop:
        step = start_step
        while step < train_cfg.steps and not stop.stop:
            batch = shd.global_batch(next(data_iter), mesh)
            state, metrics = step_fn(state, teacher_params, batch, token_weights)
            step += 1
            bar.update(1)
            pending.append((step, metrics))
            if timer_start is None:  # the first step compiles: throughput counts from after it
                jax.block_until_ready(metrics)
                timer_start = time.perf_counter()
            if step % train_cfg.log_every == 0 or step == train_cfg.steps:
                scalars = [(s, T.host_scalars(m)) for s, m in pending]  # one host sync per log
                pending = []
                timed_tokens += sum(sc["data/tokens"] for s, sc in scalars if s > first_timed)
                last = scalars[-1][1]
                last["perf/tokens_per_s"] = timed_tokens / max(time.perf_counter() - timer_start, 1e-9)
                for s, sc in scalars:
                    writer.write(s, sc)
                bar.set_postfix(loss=f"{last['loss/total']:.3f}", tok_s=f"{last['perf/tokens_per_s']:.0f}")
            if train_cfg.eval_every and (step % train_cfg.eval_every == 0 or step == train_cfg.steps):
                ev = evaluate(eval_fn, state.params, eval_batches, mesh, train_cfg.eval_batches, config.seed)
                writer.write(step, ev)
                last.update(ev)
                if jax.process_index() == 0:
                    bar.write(f"step {step}: eval MLM loss {ev['eval/mlm_loss']:.3f} acc {ev['eval/mlm_accuracy']:.3f}")
            if step % train_cfg.checkpoint_every == 0 or step == train_cfg.steps:
                T.save_checkpoint(manager, state, data_iter)
        for s, m in pending:  # steps since the last log, when stopped early
            writer.write(s, T.host_scalars(m))
        if stop.stop and step < train_cfg.steps:
            T.save_checkpoint(manager, state, data_iter)
            log.warning("stopped at step %d; re-run the same command to resume", step)
    bar.close()
    writer.close()
    manager.close()
    if config.export_hf and step >= train_cfg.steps and jax.process_index() == 0:
        save_hf(job.student_config, jax.device_get(state.params), job.workdir / "hf", job.tokenizer)
    return last


def evaluate(eval_fn, params, eval_batches, mesh, max_batches: int, seed: int) -> dict[str, float]:
    """Held-out MLM loss/accuracy of the student; the same masks at every evaluation."""
    totals: dict[str, float] = {}
    for i, batch in enumerate(T.iterate_eval(eval_batches, max_batches)):
        sums = jax.device_get(eval_fn(params, shd.global_batch(batch, mesh), batch_key(seed, i)))
        for k, v in sums.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    metrics = metrics_from_sums(totals)
    return {"eval/mlm_loss": metrics["loss"], "eval/mlm_accuracy": metrics["accuracy"],
            "eval/perplexity": metrics["perplexity"]}
