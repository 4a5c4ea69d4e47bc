"""Streamed training data (issue 12): `configs/paper.py:local` on local replicas of OSCAR-2301 and
FineWeb-2 reads, tokenises and packs its training documents while it trains (no WORKDIR/data train
shards); the batches are the documents packed in order as data/tokenize.py packs them, each lane
its own files; the held-out documents are never trained on; a resumed stream (in process, or after
SIGKILL) continues bit-identically; two processes train like one; worker processes make the thread's
batches and states; bad input fails before step 1."""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import types

import jax
import numpy as np
import pytest
from helpers import REPO, subprocess_env
from test_corpus_sources import (  # noqa: F401  (fixtures)
    PAPER,
    fineweb_dir,
    french_docs,
    oscar_dir,
    oscar_record,
    paper_local,
    write_zst_jsonl,
)

from jaxdistil import inputs, loop
from jaxdistil.checkpoint import load_student_from_workdir
from jaxdistil.data import corpus, stream
from jaxdistil.data.tokenize import pack_blocks, special_ids, tokenize_texts
from jaxdistil.run_record import check_resume
from jaxdistil.workdir import Workdir

REPLICAS = [("oscar", ()), ("fineweb2", ("fineweb2",))]


@pytest.fixture(scope="module")
def replicas(oscar_dir, fineweb_dir):  # noqa: F811
    return {"oscar": oscar_dir, "fineweb2": fineweb_dir}


@pytest.fixture(scope="module")
def ready(replicas, tmp_path_factory):
    """replica -> (its paper:local config, the inputs its set-up resolved, the workdir), set up once per module."""
    made = {}

    def get(replica):
        if replica not in made:
            config = paper_local(replicas[replica], *dict(REPLICAS)[replica])
            workdir = tmp_path_factory.mktemp(f"run-{replica}")
            made[replica] = config, inputs.prepare_inputs(config, Workdir(workdir)), workdir
        return made[replica]

    return get


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def packed(texts, tokenizer, seq_len):
    return pack_blocks(tokenize_texts(texts, tokenizer), seq_len=seq_len, ids=special_ids(tokenizer))


# --- what the stream yields ---------------------------------------------------------------------------


@pytest.mark.parametrize("replica, variants", REPLICAS)
def test_one_lane_yields_the_training_documents_packed_in_order(replica, variants, ready):
    config, run, workdir = ready(replica)
    assert run.train_blocks is None and run.train_stream is not None
    assert not (workdir / "data" / "train").exists()  # nothing tokenised ahead
    assert (workdir / "data" / "eval" / "meta.json").is_file()  # the held-out blocks, once
    config = paper_local(config.data.hf_name, *variants, stream_lanes=1)
    batch_size, seq_len = config.train.batch_size, config.data.seq_len
    batches = take(inputs.train_iterator(config, run), 5)
    # The reference: the set-up's own reading of the training side (first eval_max_docs held out), packed
    # by data/tokenize.py's packer.
    reference = packed(inputs.training_texts(config.data, None, held_out=False), run.tokenizer, seq_len)
    np.testing.assert_array_equal(np.concatenate([b["input_ids"] for b in batches]), reference[:5 * batch_size])
    for batch in batches:
        np.testing.assert_array_equal(batch["attention_mask"], np.ones((batch_size, seq_len)))


def test_shards_can_still_be_forced_and_hold_the_blocks_the_stream_yields(ready, tmp_path):
    config, run, _ = ready("fineweb2")
    config = paper_local(config.data.hf_name, "fineweb2", streaming=False, stream_lanes=1)
    sharded = inputs.prepare_inputs(config, Workdir(tmp_path / "run"))
    assert sharded.train_stream is None and (tmp_path / "run" / "data" / "train" / "meta.json").is_file()
    streamed = np.concatenate([b["input_ids"] for b in take(inputs.train_iterator(config, run), 4)])
    np.testing.assert_array_equal(np.asarray(sharded.train_blocks[:len(streamed)]), streamed)


def test_each_lane_packs_its_own_files_and_gives_its_rows_of_every_batch(ready):
    config, run, _ = ready("oscar")
    assert config.data.stream_lanes == 2  # files 0 and 2 in lane 0, file 1 in lane 1
    source, tokenizer, seq_len = run.train_stream, run.tokenizer, config.data.seq_len
    files = [corpus.iter_local_texts([f], text_field="content", min_chars=config.data.min_chars) for f in source.files]
    docs = [list(f) for f in files]
    n_eval = config.data.eval_max_docs
    assert len(docs[0]) > n_eval and source.held_out == (n_eval, 0, 0)  # the held-out head lies in file 0
    lanes = [packed(docs[0][n_eval:] + docs[2], tokenizer, seq_len), packed(docs[1], tokenizer, seq_len)]
    rows = config.train.batch_size // 2
    for k, batch in enumerate(take(inputs.train_iterator(config, run), 4)):
        np.testing.assert_array_equal(batch["input_ids"][:rows], lanes[0][k * rows:(k + 1) * rows])
        np.testing.assert_array_equal(batch["input_ids"][rows:], lanes[1][k * rows:(k + 1) * rows])


def test_the_held_out_documents_are_never_in_the_training_stream(oscar_dir):  # noqa: F811
    config = paper_local(oscar_dir)
    source = inputs.plan_train_stream(config.data)
    held_out = list(inputs.training_texts(config.data, None, held_out=True))
    every = list(corpus.iter_local_texts(list(source.files), text_field="content", min_chars=config.data.min_chars))
    assert held_out == every[:config.data.eval_max_docs]
    trained = list(stream.iter_stream_texts(source))
    assert trained == every[config.data.eval_max_docs:]  # one pass: all the rest, and nothing held out
    assert not set(held_out) & set(trained)


def test_a_lane_starts_its_next_epoch_where_its_files_end(ready):
    """The stream goes on across epochs as one document stream: epoch 2 follows epoch 1 with `</s>`."""
    config, run, _ = ready("oscar")
    source, tokenizer, seq_len = run.train_stream, run.tokenizer, config.data.seq_len
    epoch = list(stream.iter_stream_texts(source))
    reference = packed(epoch + epoch + epoch, tokenizer, seq_len)
    lane = stream.Lane(source, tokenizer, index=0, lanes=1, seq_len=seq_len)
    one_epoch = len(packed(epoch, tokenizer, seq_len))
    blocks = [lane.next_block() for _ in range(one_epoch + 10)]
    np.testing.assert_array_equal(np.stack(blocks), reference[:one_epoch + 10])
    assert lane.epoch == 1  # reading its second pass (its state is still that of the block before: a skip)


@pytest.mark.parametrize("prefetch", [0, 3])
def test_a_restored_stream_continues_with_the_same_batches(prefetch, ready):
    config, run, _ = ready("fineweb2")
    config = paper_local(config.data.hf_name, "fineweb2", stream_prefetch=prefetch)
    straight = take(inputs.train_iterator(config, run), 12)
    first = inputs.train_iterator(config, run)
    take(first, 7)
    state = json.loads(json.dumps(first.get_state()))  # as grain's checkpoint handler stores it
    assert any(lane["carry"] and lane["skip"] for lane in state["lanes"].values())  # mid-document: both matter
    # Compact: less than a block of carry, however long the document.
    assert all(len(lane["carry"]) < config.data.seq_len - 2 for lane in state["lanes"].values())
    resumed = inputs.train_iterator(config, run)
    resumed.set_state(state)
    for a, b in zip(straight[7:], take(resumed, 5), strict=True):
        np.testing.assert_array_equal(a["input_ids"], b["input_ids"])


def test_two_processes_read_their_own_lanes_and_together_make_the_one_process_batch(ready):
    config, run, _ = ready("oscar")
    options = dict(seq_len=config.data.seq_len, lanes=2, global_batch_size=config.train.batch_size, prefetch=0)
    one = stream.make_stream_iterator(run.train_stream, run.tokenizer, process_index=0, process_count=1,
                                      **options)
    parts = [stream.make_stream_iterator(run.train_stream, run.tokenizer, process_index=p, process_count=2,
                                         **options) for p in range(2)]
    for _ in range(3):
        whole = next(one)["input_ids"]
        np.testing.assert_array_equal(np.concatenate([next(p)["input_ids"] for p in parts]), whole)
    with pytest.raises(ValueError, match=r"data.stream_lanes=2 must be a multiple of the process count 3"):
        stream.make_stream_iterator(run.train_stream, run.tokenizer, process_index=0, process_count=3, **options)


# --- worker processes: the thread's batches and states ----------------------------------------------------

SHORT_BATCHES = 40


@pytest.fixture(scope="module")
def short_stream(ready, french_docs, tmp_path_factory):  # noqa: F811
    """Three lanes over three short OSCAR-like parts (an epoch is a few batches), and the thread path's
    batches and states (after 0, 1, … batches, as a checkpoint stores them): what the workers must match."""
    root = tmp_path_factory.mktemp("OSCAR-short")
    for part, docs in enumerate([french_docs[:8], french_docs[8:14], french_docs[14:24]], start=1):
        write_zst_jsonl(root / "fr_meta" / f"fr_meta_part_{part}.jsonl.zst",
                        [oscar_record(doc, part, i) for i, doc in enumerate(docs)])
    config, run, _ = ready("oscar")
    source = inputs.plan_train_stream(paper_local(root, eval_max_docs=2, stream_lanes=3).data)
    assert source.held_out == (2, 0, 0)
    options = dict(seq_len=config.data.seq_len, lanes=3, global_batch_size=6, prefetch=0)
    thread = stream.make_stream_iterator(source, run.tokenizer, **options)
    batches, states = [], [json.loads(json.dumps(thread.get_state()))]
    for _ in range(SHORT_BATCHES):
        batches.append(next(thread)["input_ids"])
        states.append(json.loads(json.dumps(thread.get_state())))
    assert all(lane["epoch"] >= 1 for lane in states[-1]["lanes"].values())  # every lane into its next epoch

    def make(workers):
        return stream.make_stream_iterator(source, run.tokenizer, workers=workers, **options)

    return types.SimpleNamespace(make=make, batches=batches, states=states, source=source, tokenizer=run.tokenizer,
                                 seq_len=config.data.seq_len)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_worker_processes_make_the_threads_batches_and_states_and_stop_when_closed(short_stream):
    make, batches, states = short_stream.make, short_stream.batches, short_stream.states
    with pytest.raises(ValueError, match=r"^data.stream_workers=-1: set it to 0 \(a thread\) or a number of worker"):
        make(-1)
    capped = make(4)  # one worker per lane at most: no worker would have a lane
    assert [capped.worker_lanes(w) for w in range(capped.workers)] == [[0], [1], [2]]
    capped.close()
    processes = make(2)  # lanes 0 and 2 in worker 0, lane 1 in worker 1
    for k, expected in enumerate(batches):
        np.testing.assert_array_equal(next(processes)["input_ids"], expected)
        assert processes.get_state() == states[k + 1]
    pids = processes.worker_pids
    assert len(pids) == 2 and all(alive(pid) for pid in pids)
    processes.close()
    assert not any(alive(pid) for pid in pids)
    with pytest.raises(ValueError, match="closed iterator"):
        next(processes)


def test_a_state_moves_between_threads_and_worker_processes_and_a_killed_worker_is_named(short_stream):
    make, batches, states = short_stream.make, short_stream.batches, short_stream.states
    processes = make(1)
    processes.set_state(states[7])  # the thread's
    for k in range(7, 12):
        np.testing.assert_array_equal(next(processes)["input_ids"], batches[k])
    assert processes.get_state() == states[12]
    thread = make(0)
    thread.set_state(json.loads(json.dumps(processes.get_state())))
    for k in range(12, 17):
        np.testing.assert_array_equal(next(thread)["input_ids"], batches[k])
    [first] = processes.worker_pids
    processes.set_state(states[3])  # back: the worker is replaced
    assert not alive(first)
    for k in range(3, 5):
        np.testing.assert_array_equal(next(processes)["input_ids"], batches[k])
    [second] = processes.worker_pids
    os.kill(second, signal.SIGKILL)
    with pytest.raises(RuntimeError) as err:
        for _ in range(SHORT_BATCHES):  # the chunks it queued first
            next(processes)
    assert str(err.value).startswith(f"stream worker 0 (pid {second}, lanes [0, 1, 2]) exited with code -9 and no "
                                     "message")
    assert not alive(second) and processes.worker_pids == []


def test_an_older_state_holding_whole_blocks_and_no_skip_still_restores(short_stream):
    """Checkpoints written before states were compact carry every stream token not yet handed out."""
    source, tokenizer, seq_len = short_stream.source, short_stream.tokenizer, short_stream.seq_len
    docs = list(stream.read_file(source, 1))  # lane 1 of 3 reads file 1 alone, none of it held out
    reference = packed(docs + docs, tokenizer, seq_len)
    # The stream is doc_0 </s> doc_1 </s> …: after document d, every token past block k is the carry.
    tokens = list(tokenize_texts(docs, tokenizer))
    eos = [special_ids(tokenizer).eos_id]
    ends = np.cumsum([len(t) + 1 for t in tokens]) - 1  # where each document ends in the stream
    body, k = seq_len - 2, 1
    d = int(np.argmax(ends // body >= k + 2))  # the first document after which whole blocks wait past block k
    tokens_until_d = np.concatenate([np.concatenate([t, eos]) for t in tokens[:d + 1]])[:ends[d]]
    old = {"epoch": 0, "file": 0, "doc": d + 1, "first": False, "carry": tokens_until_d[k * body:].tolist()}
    assert len(old["carry"]) >= 2 * body and "skip" not in old
    lane = stream.Lane(source, tokenizer, index=1, lanes=3, seq_len=seq_len)
    lane.set_state(old)
    np.testing.assert_array_equal(lane.next_block(), reference[k])
    state = json.loads(json.dumps(lane.get_state()))  # still within the old carry: it and a skip
    again = stream.Lane(source, tokenizer, index=1, lanes=3, seq_len=seq_len)
    again.set_state(state)
    n = len(reference) - k - 1
    np.testing.assert_array_equal(np.stack([lane.next_block() for _ in range(n)]), reference[k + 1:])
    np.testing.assert_array_equal(np.stack([again.next_block() for _ in range(n)]), reference[k + 1:])


def test_mlm_smoothing_counts_the_head_of_the_training_stream_once(ready):
    config, run, workdir = ready("oscar")
    assert config.masking.mlm_smoothing > 0
    head = list(stream.iter_stream_texts(run.train_stream))[:config.data.stream_count_docs]
    blocks = pack_blocks(tokenize_texts(head, run.tokenizer), seq_len=config.data.seq_len,
                         ids=special_ids(run.tokenizer), drop_remainder=False)
    pad = run.tokenizer.pad_token_id
    expected = np.bincount(blocks[blocks != pad], minlength=len(run.tokenizer))  # a hand count
    np.testing.assert_array_equal(run.token_counts, expected)
    assert (workdir / "data" / "stream_counts" / "token_counts.npy").is_file()
    other = paper_local(config.data.hf_name, stream_count_docs=10)
    with pytest.raises(ValueError, match=r"stream_counts holds the token counts of .*'docs': 200.*'docs': 10"):
        inputs.prepare_inputs(other, Workdir(workdir))


# --- bad input: one line, before step 1 -----------------------------------------------------------------


def test_an_empty_stream_fails_at_set_up_in_one_line(tmp_path):
    empty = tmp_path / "empty"
    for part in (1, 2):
        write_zst_jsonl(empty / "fr_meta" / f"fr_meta_part_{part}.jsonl.zst", [oscar_record("court", part, 0)] * 3)
    with pytest.raises(ValueError) as err:
        inputs.plan_train_stream(paper_local(empty).data)
    message = str(err.value)
    assert message.startswith(f"empty stream: no training document in the files of lane 0 of 2 (files 0, 2, …) "
                              f"of directory {empty}") and "\n" not in message
    assert "data.min_chars" in message and "lower data.stream_lanes" in message


def test_a_lane_whose_files_lack_the_text_field_fails_at_set_up(oscar_dir, tmp_path):  # noqa: F811
    copy = tmp_path / "OSCAR-2301"
    parts = sorted((oscar_dir / "fr_meta").glob("*.jsonl.zst"))
    for part in parts:
        (copy / "fr_meta").mkdir(parents=True, exist_ok=True)
        (copy / "fr_meta" / part.name).write_bytes(part.read_bytes())
    bad = copy / "fr_meta" / parts[1].name  # the first file of lane 1, past the held-out documents
    write_zst_jsonl(bad, [{"contenu": "Un document sans le champ attendu, assez long."}])
    with pytest.raises(ValueError) as err:
        inputs.plan_train_stream(paper_local(copy).data)
    assert str(err.value) == (f"{bad}:1: no field 'content' (found ['contenu']); give the right name with "
                              "data.text_field.")


@pytest.mark.parametrize("skip, workers", [(False, 0), (False, 2), (True, 0)])
def test_a_corrupt_part_met_mid_stream_is_named_or_skipped_only_when_asked(skip, workers, ready, tmp_path):
    config, run, _ = ready("oscar")
    copy = tmp_path / "OSCAR-2301"
    parts = sorted((pathlib.Path(config.data.hf_name) / "fr_meta").glob("*.jsonl.zst"))
    (copy / "fr_meta").mkdir(parents=True)
    for part in parts:
        (copy / "fr_meta" / part.name).write_bytes(part.read_bytes())
    damaged = copy / "fr_meta" / parts[2].name  # lane 0's second file: met after the first one is packed
    damaged.write_bytes(damaged.read_bytes()[:len(damaged.read_bytes()) // 2])
    source = inputs.plan_train_stream(paper_local(copy, skip_corrupt_files=skip).data)  # set-up reads file heads only
    lane = stream.Lane(source, run.tokenizer, index=0, lanes=2, seq_len=config.data.seq_len)
    if not skip:
        with pytest.raises(corpus.CorruptFileError) as err:
            while True:
                lane.next_block()
        assert str(err.value).startswith(str(damaged)) and "\n" not in str(err.value)
        assert str(err.value).endswith("set data.skip_corrupt_files=True to skip such files")
        if workers:  # the same error, raised in the parent, from the worker reading lane 0
            batches = stream.make_stream_iterator(source, run.tokenizer, seq_len=config.data.seq_len, lanes=2,
                                                  global_batch_size=config.train.batch_size, prefetch=2,
                                                  workers=workers)
            with pytest.raises(corpus.CorruptFileError) as from_worker:
                while True:
                    next(batches)
            assert str(from_worker.value) == str(err.value)
            batches.close()
        return
    while lane.get_state()["epoch"] == 0:  # past the damage, into the next epoch
        lane.next_block()


def test_streaming_settings_that_cannot_work_are_refused(oscar_dir):  # noqa: F811
    with pytest.raises(ValueError, match=r"data.max_docs=600 bounds .* set data.max_docs=-1, or data.streaming=False"):
        inputs.plan_corpus(paper_local(oscar_dir, max_docs=600))
    assert not inputs.streams(paper_local(oscar_dir, hf_data_files="").data)  # datasets' own layout: shards
    assert not inputs.streams(paper_local(oscar_dir, streaming=False).data)
    with pytest.raises(ValueError, match=r"data.stream_lanes=4: each lane reads its own files, and directory .* "
                                         r"has 3 matching .*; set it between 1 and 3"):
        inputs.plan_train_stream(paper_local(oscar_dir, stream_lanes=4).data)


# --- whole runs: SIGKILL and resume, two processes ------------------------------------------------------


def test_the_recipes_worker_processes_train_on_the_threads_batches_and_leave_none_behind(ready, tmp_path, caplog):
    """paper.py's stream_workers, capped at the two lanes of paper:local: two worker processes."""
    corpus_dir = ready("oscar")[0].data.hf_name

    def short_run(**data):
        config = paper_local(corpus_dir, **data)
        config.train.update(steps=2, checkpoint_every=2, eval_every=0)
        config.export_hf = False
        return config

    config, workdir = short_run(), Workdir(tmp_path / "run")
    with caplog.at_level(logging.INFO, logger=stream.__name__):
        metrics = loop.run(config, workdir.root)
    assert "reads lanes [0, 1] of 2 in 2 worker process(es)" in caplog.text
    assert math.isfinite(metrics["loss/total"])
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("jaxdistil-stream-worker")]
    saved = next((workdir.checkpoints / "2" / "data_iter").glob("process_*.json"))
    # The run's own tokenizer and stream, read by the thread: the state after its two batches is the one saved,
    # and the thread may resume the run.
    thread = inputs.train_iterator(short_run(stream_workers=0, stream_prefetch=0),
                                   inputs.prepare_inputs(config, workdir))
    take(thread, config.train.steps)
    assert json.loads(saved.read_text()) == json.loads(json.dumps(thread.get_state()))
    assert config.data.stream_workers > 2
    assert check_resume(short_run(stream_workers=0), workdir) == {"data.stream_workers":
                                                                  (config.data.stream_workers, 0)}


def paper_cli(corpus_dir, workdir, variants="local", **overrides):
    args = [sys.executable, str(REPO / "scripts" / "train.py"), f"--config={PAPER}:{variants}", f"--workdir={workdir}",
            f"--config.data.hf_name={corpus_dir}", "--config.progress=False"]
    return args + [f"--config.{k}={v}" for k, v in overrides.items()]


LONG = {"train.steps": 24, "train.checkpoint_every": 4, "train.eval_every": 0, "train.log_every": 4,
        "export_hf": False}


@pytest.mark.slow
def test_sigkill_after_a_mid_stream_checkpoint_then_resume_is_bit_identical(oscar_dir, tmp_path):  # noqa: F811
    env = subprocess_env(XLA_FLAGS="")
    straight = subprocess.run(paper_cli(oscar_dir, tmp_path / "straight", **LONG), capture_output=True, text=True,
                              env=env, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(paper_cli(oscar_dir, killed, **LONG), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "8").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed: give it more steps"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = sorted(int(p.name) for p in (killed / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] < LONG["train.steps"]
    done = subprocess.run(paper_cli(oscar_dir, killed, **LONG), capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _, params_a, step_a = load_student_from_workdir(tmp_path / "straight")
    _, params_b, step_b = load_student_from_workdir(killed)
    assert step_a == step_b == LONG["train.steps"]
    jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
    assert not (killed / "data" / "train").exists()


@pytest.mark.slow
def test_two_processes_on_the_stream_train_in_lock_step_like_one(fineweb_dir, tmp_path):  # noqa: F811
    # float32: in bf16 the two processes' reductions, summed in another order, differ by more than 1e-5
    # (the batches themselves are equal: test_two_processes_read_their_own_lanes_…).
    overrides = {"train.steps": 4, "train.checkpoint_every": 2, "train.eval_every": 2, "train.log_every": 1,
                 "dtype": "float32", "export_hf": False}
    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=1")
    args = lambda workdir: paper_cli(fineweb_dir, workdir, "local,fineweb2", **overrides)  # noqa: E731
    single = subprocess.run(args(tmp_path / "one"), capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen(args(tmp_path / "two") + [
        f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    rows = {n: [json.loads(x) for x in (tmp_path / n / "metrics.jsonl").read_text().splitlines()]
            for n in ("one", "two")}
    for key in ("loss/total", "eval/mlm_loss"):
        values = {n: [r[key] for r in rows[n] if key in r] for n in rows}
        assert values["one"]
        np.testing.assert_allclose(values["two"], values["one"], atol=1e-5, rtol=0)
    _, params_one, _ = load_student_from_workdir(tmp_path / "one")
    _, params_two, _ = load_student_from_workdir(tmp_path / "two")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), params_one, params_two)
    assert not (tmp_path / "two" / "data" / "train").exists()
