"""Runs that last for days (issue 11): a divergence stops before it is saved, a corrupt checkpoint
falls back to the previous one, one trainer per workdir, a resume keeps the run's settings and its
metrics, an export never overwrites what a run needs, and SIGKILL at any moment loses nothing."""

import contextlib
import importlib.util
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from helpers import REPO, make_config, micro_overrides, subprocess_env, train_cli

from jaxdistil import malloc
from jaxdistil.checkpoint import load_student_from_workdir
from jaxdistil.config import ModelConfig
from jaxdistil.convert import save_hf
from jaxdistil.loop import Diverged, run
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.workdir import Workdir, WorkdirBusy, WorkdirLock


def _steps_logged(workdir):
    return [json.loads(line)["step"] for line in Workdir(workdir).metrics.read_text().splitlines()
            if "loss/total" in line]


def _history(workdir):
    """run_history.jsonl without its "trained" lines (each invocation's training time, for the model card)."""
    entries = [json.loads(line) for line in Workdir(workdir).run_history.read_text().splitlines()]
    return [e for e in entries if e["event"] != "trained"]


# --- 1. divergence -------------------------------------------------------------------------------------


def test_a_diverging_run_stops_before_saving_the_bad_state(corpus_files, french_tokenizer_dir, tmp_path):
    config = make_config({**micro_overrides(corpus_files, french_tokenizer_dir, steps=30),
                          "train.learning_rate": 1e6, "train.checkpoint_every": 2, "train.log_every": 10})
    with pytest.raises(Diverged) as err:
        run(config, tmp_path / "w")
    message = str(err.value)
    assert message.startswith("training diverged at step ") and "--config.train.learning_rate (now 1e+06)" in message
    bad_step = int(message.split("step ")[1].split(":")[0])
    history = _history(tmp_path / "w")[-1]
    assert history["event"] == "diverged" and history["step"] == bad_step
    last_good = history["last_checkpoint"]
    assert last_good is not None and last_good < bad_step and f"nothing after step {last_good} was saved" in message
    _, params, step = load_student_from_workdir(tmp_path / "w")
    assert step == last_good and all(np.isfinite(x).all() for x in jax.tree.leaves(params))
    assert not (tmp_path / "w" / "hf").exists()
    assert _steps_logged(tmp_path / "w")[-1] == bad_step  # the first bad step is in the log, for the record
    assert issubclass(Diverged, ValueError)  # scripts/train.py: one error line, exit 2
    # The advice is taken: another learning rate is accepted, and the run resumes from the last good
    # checkpoint (whose weights 1e6 may already have ruined; that is the user's call).
    config.train.learning_rate = 1e-3
    with contextlib.suppress(Diverged):
        run(config, tmp_path / "w")
    resumed = [h for h in _history(tmp_path / "w") if h["event"] == "resumed"]
    assert resumed[-1]["resumed_from"] == last_good
    assert resumed[-1]["changed"]["train.learning_rate"] == {"was": 1e6, "now": 1e-3}


def test_export_refuses_non_finite_weights(tmp_path):
    cfg = ModelConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=32, max_position_embeddings=20)
    params = jax.tree.map(np.asarray, init_params(MaskedLM(cfg), jax.random.key(0)))
    params["lm_head"]["bias"] = np.full_like(params["lm_head"]["bias"], np.nan)
    with pytest.raises(ValueError, match="refusing to export: 1 of .* tensors hold NaN or Inf"):
        save_hf(cfg, params, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- 2. corrupt checkpoints ----------------------------------------------------------------------------


def _corrupt(step_dir, how):
    if how == "truncated data file":
        data = max((p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"),
                   key=lambda p: p.stat().st_size)
        data.write_bytes(data.read_bytes()[:100])
    elif how == "no metadata":
        (step_dir / "state" / "_METADATA").unlink()
    else:
        next((step_dir / "data_iter").glob("process_*.json")).unlink()


@pytest.mark.parametrize("how", ["truncated data file", "no metadata", "no iterator state"])
def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous_one(corpus_files, french_tokenizer_dir,
                                                                         tmp_path, caplog, how):
    config = make_config({**micro_overrides(corpus_files, french_tokenizer_dir, steps=20), "export_hf": False})
    run(config, tmp_path / "w")
    _, finished, _ = load_student_from_workdir(tmp_path / "w")
    _corrupt(tmp_path / "w" / "checkpoints" / "20", how)
    caplog.set_level("WARNING", logger="jaxdistil")
    run(config, tmp_path / "w")
    assert "checkpoint 20 cannot be read" in caplog.text and "fell back from step 20 to step 10" in caplog.text
    assert (tmp_path / "w" / "checkpoints.unreadable" / "20").is_dir()  # moved aside, not deleted
    _, resumed, step = load_student_from_workdir(tmp_path / "w")
    assert step == 20
    jax.tree.map(np.testing.assert_array_equal, finished, resumed)  # steps 10-20 replayed exactly
    assert _steps_logged(tmp_path / "w") == list(range(1, 21))  # each step once


def test_no_readable_checkpoint_is_one_clear_error(corpus_files, french_tokenizer_dir, tmp_path):
    config = make_config({**micro_overrides(corpus_files, french_tokenizer_dir, steps=20), "export_hf": False})
    run(config, tmp_path / "w")
    for step in ("10", "20"):
        _corrupt(tmp_path / "w" / "checkpoints" / step, "no metadata")
    for _ in range(2):  # and the next attempt does not silently start again from step 0
        with pytest.raises(ValueError, match="the run cannot resume. To start it again from step 0, delete"):
            run(config, tmp_path / "w")


# --- 3. one trainer per workdir -------------------------------------------------------------------------


def test_a_second_trainer_on_a_busy_workdir_stops_at_once(corpus_files, french_tokenizer_dir, tmp_path):
    overrides = {**micro_overrides(corpus_files, french_tokenizer_dir, steps=100000), "train.eval_every": 0,
                 "train.checkpoint_every": 1000, "export_hf": False}
    first = subprocess.Popen(train_cli(overrides, tmp_path / "w"), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=subprocess_env(XLA_FLAGS=""))
    try:
        deadline = time.time() + 300
        while not Workdir(tmp_path / "w").metrics.is_file() and time.time() < deadline:
            time.sleep(0.1)
        second = subprocess.run(train_cli(overrides, tmp_path / "w"), capture_output=True, text=True,
                                env=subprocess_env(XLA_FLAGS=""), timeout=300)
        assert first.poll() is None, "the first trainer is still running"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert second.returncode == 2
    assert f"error: {tmp_path / 'w'} is in use by another run (pid {first.pid} on " in second.stderr
    # The killed trainer's lock does not outlive it.
    with WorkdirLock(Workdir(tmp_path / "w")):
        pass


def test_the_lock_of_a_killed_run_is_taken_over_with_a_message(tmp_path, caplog):
    workdir = Workdir(tmp_path)
    workdir.lock_file.write_text(json.dumps({"host": "elsewhere", "pid": 12345, "since": "2026-11-30T10:00:00"}))
    caplog.set_level("WARNING", logger="jaxdistil")
    with WorkdirLock(workdir):
        assert "took over the lock of pid 12345 on elsewhere since 2026-11-30T10:00:00" in caplog.text
        with pytest.raises(WorkdirBusy, match=f"in use by another run \\(pid {os.getpid()} on "):
            WorkdirLock(workdir).__enter__()
    assert workdir.lock_file.read_text() == ""  # released cleanly


# --- 5. resume keeps the run's settings -----------------------------------------------------------------


def test_a_resume_refuses_other_data_or_model_settings_and_records_the_rest(corpus_files, french_tokenizer_dir,
                                                                             tmp_path, caplog):
    overrides = {**micro_overrides(corpus_files, french_tokenizer_dir, steps=10), "export_hf": False}
    run(make_config(overrides), tmp_path / "w")
    for field, value, shown in [("data.seq_len", 16, "data.seq_len: 32 in the run, 16 now"),
                                ("student.num_layers", 2, "student.num_layers: 1 in the run, 2 now"),
                                ("seed", 7, "seed: 42 in the run, 7 now")]:
        with pytest.raises(ValueError, match="holds a run started with other settings") as err:
            run(make_config({**overrides, field: value}), tmp_path / "w")
        assert shown in str(err.value)
    assert _history(tmp_path / "w")[-1]["event"] == "started"  # the refused runs changed nothing
    caplog.set_level("INFO", logger="jaxdistil")
    run(make_config({**overrides, "train.steps": 15, "train.learning_rate": 5e-4}), tmp_path / "w")
    assert "resumed from step 10 of 15" in caplog.text
    entry = _history(tmp_path / "w")[-1]
    assert entry["event"] == "resumed" and entry["resumed_from"] == 10
    assert entry["changed"]["train.steps"] == {"was": 10, "now": 15}
    assert json.loads(Workdir(tmp_path / "w").run_config.read_text())["train"]["steps"] == 15
    last = run(make_config({**overrides, "train.steps": 15, "train.learning_rate": 5e-4}), tmp_path / "w")
    assert "already complete at step 15 of 15" in caplog.text
    assert last["loss/total"] > 0 and "eval/mlm_loss" in last  # the run's last metrics, not {}


# --- 6. exports never overwrite a run's files -----------------------------------------------------------


def test_to_pytorch_refuses_a_workdirs_files_and_non_empty_directories(corpus_files, french_tokenizer_dir, tmp_path,
                                                                     capsys):
    spec = importlib.util.spec_from_file_location("to_pytorch", REPO / "conversion" / "to_pytorch.py")
    to_pytorch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(to_pytorch)
    run(make_config(micro_overrides(corpus_files, french_tokenizer_dir, steps=5)), tmp_path / "w")
    teacher_config = (tmp_path / "w" / "teacher" / "config.json").read_bytes()
    assert to_pytorch.main(["--checkpoint", str(tmp_path / "w"), "--out", str(tmp_path / "w" / "teacher")]) == 2
    assert "is inside the training workdir" in capsys.readouterr().err
    assert (tmp_path / "w" / "teacher" / "config.json").read_bytes() == teacher_config
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert to_pytorch.main(["--checkpoint", str(tmp_path / "w"), "--out", str(tmp_path / "other")]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert to_pytorch.main(["--checkpoint", str(tmp_path / "w"), "--out", str(tmp_path / "other"),
                            "--overwrite"]) == 0
    assert (tmp_path / "other" / "model.safetensors").is_file()


# --- acceptance 2: SIGKILL at random moments ------------------------------------------------------------


def test_sigkill_at_random_moments_then_resume_is_bit_identical(corpus_files, french_tokenizer_dir, tmp_path):
    """Frequent checkpoints, so some kills land during a save; every re-run resumes and the end is the same."""
    overrides = {**micro_overrides(corpus_files, french_tokenizer_dir, steps=40), "train.checkpoint_every": 3,
                 "train.log_every": 2, "train.eval_every": 20, "export_hf": False}
    env = subprocess_env(XLA_FLAGS="")
    straight = subprocess.run(train_cli(overrides, tmp_path / "straight"), capture_output=True, text=True, env=env,
                              timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = tmp_path / "killed"
    pick = random.Random(0)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(train_cli(overrides, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env)
        deadline = time.time() + 300
        while (not (killed / "metrics.jsonl").is_file() or len(_steps_logged(killed)) < 2) \
                and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(pick.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2, "the runs finished before they could be killed: give them more steps"
    done = subprocess.run(train_cli(overrides, killed), capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    _, params_a, step_a = load_student_from_workdir(tmp_path / "straight")
    _, params_b, step_b = load_student_from_workdir(killed)
    assert step_a == step_b == 40
    jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
    assert _steps_logged(killed) == _steps_logged(tmp_path / "straight") == list(range(1, 41))


# --- acceptance 3: memory that stays flat (glibc's arenas; docs/performance.md, Soak) --------------------

_ARENAS_AFTER_THREADS = """
import ctypes, sys, threading
import jax
from jaxdistil import malloc
print(malloc.limit_arenas(int(sys.argv[1])))
libc = ctypes.CDLL(None)
barrier = threading.Barrier(5)
def allocate():  # each thread mallocs while the others are alive, so none can reuse another's arena
    libc.malloc(4096)
    barrier.wait()
workers = [threading.Thread(target=allocate) for _ in range(4)]
for w in workers:
    w.start()
barrier.wait()
jax.jit(lambda x: x @ x)(jax.numpy.ones((256, 256))).block_until_ready()  # JAX's backend and its thread pools
print(malloc.arena_count())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc arenas are glibc's")
@pytest.mark.parametrize("arenas,expected", [(1, "at most 1"), (malloc.ARENAS, f"at most {malloc.ARENAS}"),
                                             (0, "glibc's default")])
def test_the_arena_limit_reaches_every_thread_started_after_it(arenas, expected):
    env = {k: v for k, v in subprocess_env(XLA_FLAGS="").items() if k != "MALLOC_ARENA_MAX"}
    done = subprocess.run([sys.executable, "-c", _ARENAS_AFTER_THREADS, str(arenas)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    message, count = done.stdout.splitlines()[-2:]
    assert expected in message
    if arenas:
        assert int(count) == arenas  # four threads of ours and JAX's pools, sharing the arenas allowed
    else:
        assert int(count) >= 5  # the control: glibc gives each new thread an arena of its own


def test_the_trainer_limits_its_arenas_and_the_environment_wins(corpus_files, french_tokenizer_dir, tmp_path):
    overrides = {**micro_overrides(corpus_files, french_tokenizer_dir, steps=2), "export_hf": False,
                 "train.eval_every": 100}
    env = {k: v for k, v in subprocess_env(XLA_FLAGS="").items() if k != "MALLOC_ARENA_MAX"}
    default = subprocess.run(train_cli(overrides, tmp_path / "a"), capture_output=True, text=True, env=env,
                             timeout=300)
    assert default.returncode == 0, default.stderr[-3000:]
    assert f"malloc arenas: at most {malloc.ARENAS} (glibc's MALLOC_ARENA_MAX" in default.stderr
    chosen = subprocess.run(train_cli(overrides, tmp_path / "a"), capture_output=True, text=True,
                            env={**env, "MALLOC_ARENA_MAX": "4"}, timeout=300)
    assert chosen.returncode == 0, chosen.stderr[-3000:]
    assert "malloc arenas: MALLOC_ARENA_MAX=4 from the environment" in chosen.stderr


_HEAP_READINGS = """
import ctypes
from jaxdistil import malloc
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
before = malloc.heap_mib()
blocks = [libc.malloc(1024) for _ in range(32 * 1024)]  # 32 MiB of small blocks, kept
held = malloc.heap_mib()
for block in blocks[:-1]:  # freed, but the last block pins the heap's top: glibc keeps the rest free
    libc.free(block)
freed = malloc.heap_mib()
print(*before, *held, *freed)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallinfo2 is glibc's")
def test_the_heap_reading_tells_memory_in_use_from_memory_kept_free():
    # a fresh single-threaded process: the readings are process-wide, other threads would move them
    done = subprocess.run([sys.executable, "-c", _HEAP_READINGS], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    in_use, free, held_in_use, _, freed_in_use, freed_free = map(float, done.stdout.split())
    assert held_in_use - in_use == pytest.approx(32, abs=4)
    assert freed_in_use - in_use == pytest.approx(0, abs=4)
    assert freed_free - free == pytest.approx(32, abs=4)
