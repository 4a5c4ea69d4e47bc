"""The distillation trainer: end to end, resume, multi-device equality, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
import types

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import REPO, make_config, micro_overrides, subprocess_env, train_cli  # noqa: E402
from transformers import pipeline

from jaxdistil import sharding
from jaxdistil.checkpoint import checkpoint_manager, load_student_from_workdir, restore_train_state, save_train_state
from jaxdistil.config import ModelConfig
from jaxdistil.convert import save_hf
from jaxdistil.data.pipeline import make_train_iterator
from jaxdistil.loop import run
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.optim import TrainState, init_train_state, optimizer_for_run
from jaxdistil.step import StepSpec, build_train_step
from jaxdistil.student import init_from_teacher


def test_tiny_config_end_to_end(corpus_files, french_tokenizer_dir, tmp_path):
    config = make_config({**micro_overrides(corpus_files, french_tokenizer_dir, steps=60),
                          "train.learning_rate": 5e-3, "train.batch_size": 16})
    last = run(config, tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss/total"] for r in rows if "loss/total" in r]
    assert len(losses) == 60
    # A random-init teacher is nearly uniform, so the MLM term carries the learning here.
    # Measured (2 CPU cores): total 1.39 → 1.23, MLM 6.9 → ~6.0 over 60 steps.
    first, final = np.mean(losses[:5]), np.mean(losses[-5:])
    assert final < 0.93 * first, (first, final)
    mlm = [r["loss/mlm"] for r in rows if "loss/mlm" in r]
    assert np.mean(mlm[-5:]) < 0.93 * np.mean(mlm[:5]), (mlm[:5], mlm[-5:])
    assert {"loss/distil", "loss/cosine", "loss/mlm", "opt/grad_norm", "opt/lr"} <= set(rows[-2])
    assert "eval/mlm_accuracy" in rows[-1]
    assert last["perf/tokens_per_s"] > 0 and 0 <= last["eval/mlm_accuracy"] <= 1
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    fill = pipeline("fill-mask", model=str(tmp_path / "run" / "hf"), top_k=3)
    answers = fill("Il était une <mask> dans la maison.")
    assert len(answers) == 3 and all("score" in a for a in answers)
    # the CLI exports the same student from the workdir
    done = subprocess.run([sys.executable, str(REPO / "conversion" / "to_pytorch.py"), "--checkpoint",
                           str(tmp_path / "run"), "--out", str(tmp_path / "export")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "(step 60)" in done.stdout
    a = (tmp_path / "run" / "hf" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "export" / "model.safetensors").read_bytes()


def test_resume_after_sigkill_is_bit_identical(corpus_files, french_tokenizer_dir, tmp_path):
    """Also with the compiled steps of the killed and resumed runs loaded from the straight run's
    compilation cache (a cache of its own, so the straight run really compiles)."""
    overrides = micro_overrides(corpus_files, french_tokenizer_dir, steps=40)
    env = subprocess_env(XLA_FLAGS="")
    cache = tmp_path / "xla"

    def cli(workdir):
        return [*train_cli(overrides, workdir), f"--compilation-cache={cache}"]

    straight = subprocess.run(cli(tmp_path / "straight"), capture_output=True, text=True, env=env, timeout=600)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert any("train_step" in p.name for p in cache.iterdir()), sorted(p.name for p in cache.iterdir())

    killed = subprocess.Popen(cli(tmp_path / "killed"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env=env)
    first_checkpoint = tmp_path / "killed" / "checkpoints" / "10"
    deadline = time.time() + 300
    while not first_checkpoint.is_dir() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    saved = sorted(int(p.name) for p in (tmp_path / "killed" / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and max(saved) < 40, saved  # really killed mid-run
    resumed = subprocess.run(cli(tmp_path / "killed"), capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    _, params_a, step_a = load_student_from_workdir(tmp_path / "straight")
    _, params_b, step_b = load_student_from_workdir(tmp_path / "killed")
    assert step_a == step_b == 40
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), params_a, params_b)


def _step_losses(num_devices, fsdp, steps=3, grad_accum=1, fused_head_chunk_len=16, mode="distil"):
    teacher_cfg = ModelConfig(vocab_size=256, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=34)
    teacher_params = init_params(MaskedLM(teacher_cfg), jax.random.key(0))
    student_params = init_from_teacher(jax.device_get(teacher_params), (1,))
    student_cfg = teacher_cfg.replace(num_hidden_layers=1)
    config = make_config({"data.paths": ("x",), "train.steps": 10, "train.warmup_steps": 2, "mode": mode,
                          "train.fsdp": fsdp, "train.grad_accum": grad_accum,
                          "train.fused_head_chunk_len": fused_head_chunk_len})
    tx = optimizer_for_run(config.train).tx
    distil = mode == "distil"
    vocab = types.SimpleNamespace(mask_token_id=255, all_special_ids=(0, 1, 2, 3, 255))
    spec = StepSpec.from_config(config, vocab, vocab_size=256)
    mesh = sharding.make_mesh(num_devices)
    state = init_train_state(student_params, tx, seed=0)
    state_sh = sharding.state_shardings(state, mesh, fsdp)
    teacher_sh = sharding.state_shardings(teacher_params, mesh, fsdp)
    step = build_train_step(student=MaskedLM(student_cfg), teacher=MaskedLM(teacher_cfg) if distil else None,
                              tx=tx, spec=spec,
                              mesh=mesh, state_sharding=state_sh, teacher_sharding=teacher_sh)
    state = jax.device_put(state, state_sh)
    teacher_params = jax.device_put(teacher_params, teacher_sh)
    rng = np.random.RandomState(0)
    losses = []
    for _ in range(steps):
        ids = rng.randint(4, 255, size=(16, 32)).astype(np.int32)
        ids[:, 0], ids[:, -1] = 0, 2
        ids[3, 20:] = 1  # some padding
        batch = sharding.global_batch({"input_ids": ids, "attention_mask": (ids != 1).astype(np.int32)}, mesh)
        state, metrics = step(state, teacher_params, batch, None)
        losses.append([float(metrics[k]) for k in ("loss/total", "loss/distil", "loss/cosine", "loss/mlm")])
    return np.array(losses), jax.device_get(state.params)


@pytest.mark.parametrize("fsdp", [False, True])
def test_eight_devices_match_one(fsdp):
    assert len(jax.devices()) >= 8, "conftest sets --xla_force_host_platform_device_count=8"
    one, params_one = _step_losses(1, fsdp=False)
    eight, params_eight = _step_losses(8, fsdp=fsdp)
    np.testing.assert_allclose(eight, one, atol=1e-5, rtol=0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), params_one, params_eight)


def test_fused_head_in_chunks_on_eight_devices_matches_one_device_plain():
    """Chunks along the sequence keep the batch sharding: 2 rows per device, 4 chunks of 8 positions."""
    plain, params_plain = _step_losses(1, fsdp=False, fused_head_chunk_len=0)
    fused, params_fused = _step_losses(8, fsdp=True, fused_head_chunk_len=8)
    np.testing.assert_allclose(fused, plain, atol=1e-5, rtol=0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), params_plain, params_fused)


@pytest.mark.parametrize("mode", ["distil", "mlm"])
def test_fused_head_step_matches_plain_logits(mode):
    """The trainer's default fused LM head + loss takes the same steps as full logits + distillation_loss."""
    plain, params_plain = _step_losses(1, fsdp=False, fused_head_chunk_len=0, mode=mode)
    fused, params_fused = _step_losses(1, fsdp=False, fused_head_chunk_len=8, mode=mode)  # 4 chunks of 8 × 16
    np.testing.assert_allclose(fused, plain, atol=2e-6, rtol=0)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6, rtol=0), params_plain, params_fused)
    assert plain[-1, 1] == 0.0 if mode == "mlm" else plain[-1, 1] > 0.0


def test_grad_accumulation_runs_and_learns():
    losses, _ = _step_losses(2, fsdp=False, steps=4, grad_accum=2)
    assert np.all(np.isfinite(losses))


def test_mlm_mode_has_no_teacher_terms(corpus_files, french_tokenizer_dir, tmp_path):
    overrides = {**micro_overrides(corpus_files, french_tokenizer_dir, steps=6), "mode": "mlm",
                 "student.init": "random", "student.num_layers": 1, "student.random.hidden_size": 32,
                 "student.random.num_attention_heads": 2, "student.random.intermediate_size": 64,
                 "student.random.max_position_embeddings": 34, "export_hf": False}
    last = run(make_config(overrides), tmp_path / "mlm")
    assert last["loss/distil"] == 0.0 and last["loss/cosine"] == 0.0
    assert last["loss/total"] == pytest.approx(last["loss/mlm"])
    assert not (tmp_path / "mlm" / "teacher").exists()


def test_prng_impl_is_scoped_to_the_run_and_resumes(corpus_files, french_tokenizer_dir, tmp_path):
    """train.prng_impl="rbg" (the GPU option) trains, resumes under the same impl, and leaves the
    process's default PRNG as it was: the setting belongs to the run, not to the process."""
    overrides = {**micro_overrides(corpus_files, french_tokenizer_dir, steps=4), "mode": "mlm",
                 "student.init": "random", "student.num_layers": 1, "student.random.hidden_size": 32,
                 "student.random.num_attention_heads": 2, "student.random.intermediate_size": 64,
                 "student.random.max_position_embeddings": 34, "export_hf": False,
                 "train.checkpoint_every": 4, "train.prng_impl": "rbg"}
    before = jax.config.jax_default_prng_impl
    first = run(make_config(overrides), tmp_path / "rbg")
    assert jax.config.jax_default_prng_impl == before
    resumed = run(make_config({**overrides, "train.steps": 6}), tmp_path / "rbg")
    steps = [json.loads(line)["step"] for line in (tmp_path / "rbg" / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 6 and np.isfinite(resumed["loss/total"]) and np.isfinite(first["loss/total"])
    with jax.default_prng_impl("rbg"):
        expected_key_shape = jax.random.PRNGKey(0).shape  # (4,) for rbg, (2,) for threefry
    manager = checkpoint_manager(tmp_path / "rbg", keep=3, create=False)
    assert manager.latest_step() == 6
    state = manager.restore(6, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    assert state["rng"].shape == expected_key_shape == (4,)


def test_saving_a_step_already_on_disk_is_a_no_op(tmp_path):
    """A SIGTERM that lands right after a periodic checkpoint saves the same step again: that must
    not fail (orbax refuses to overwrite a step), and what is on disk stays restorable."""
    import optax

    params = {"w": np.arange(3.0, dtype=np.float32)}
    tx = optax.sgd(0.1)
    state = TrainState(step=jax.numpy.asarray(4), params=params, opt_state=tx.init(params),
                         rng=jax.random.PRNGKey(0))
    blocks = [np.full(8, i + 10, np.int32) for i in range(16)]
    iterator = make_train_iterator(blocks, global_batch_size=2, seed=0, pad_id=1, process_index=0, process_count=1)
    next(iterator)
    manager = checkpoint_manager(tmp_path, keep=3)
    save_train_state(manager, state, iterator)
    next(iterator)  # the iterator moved on; the step did not
    save_train_state(manager, state, iterator)
    assert manager.all_steps() == [4]
    fresh = make_train_iterator(blocks, global_batch_size=2, seed=0, pad_id=1, process_index=0, process_count=1)
    restored = restore_train_state(manager, jax.eval_shape(lambda: state), fresh)
    np.testing.assert_array_equal(restored.params["w"], params["w"])
    manager.close()


# --- bad input: clear errors before any work is lost ------------------------------------------


def _expect_error(corpus_files, tokenizer_dir, tmp_path, message, **changes):
    config = make_config({**micro_overrides(corpus_files, tokenizer_dir), **changes})
    with pytest.raises((ValueError, OSError)) as err:
        run(config, tmp_path / "bad")
    assert message in str(err.value), str(err.value)
    assert not (tmp_path / "bad" / "checkpoints").exists()


def test_empty_corpus(corpus_files, french_tokenizer_dir, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\n")
    _expect_error(corpus_files, french_tokenizer_dir, tmp_path, "empty.txt",
                  **{"data.paths": (str(empty), corpus_files[1])})


def test_binary_corpus(corpus_files, french_tokenizer_dir, tmp_path):
    blob = tmp_path / "blob.txt"
    blob.write_bytes(bytes(range(256)) * 64)
    _expect_error(corpus_files, french_tokenizer_dir, tmp_path, "blob.txt",
                  **{"data.paths": (str(blob), corpus_files[1])})


def test_teacher_tokenizer_vocab_mismatch(corpus_files, french_tokenizer_dir, tmp_path):
    teacher_dir = tmp_path / "teacher_hf"
    cfg = ModelConfig(vocab_size=1500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=34)
    save_hf(cfg, init_params(MaskedLM(cfg), jax.random.key(0)), teacher_dir)
    _expect_error(corpus_files, french_tokenizer_dir, tmp_path, "tokenizer has 1000 tokens but the model's "
                  "vocab_size is 1500", **{"teacher.source": str(teacher_dir)})


def test_seq_len_beyond_teacher_positions(corpus_files, french_tokenizer_dir, tmp_path):
    _expect_error(corpus_files, french_tokenizer_dir, tmp_path, "data.seq_len=64 is longer than the teacher",
                  **{"data.seq_len": 64})


def test_unwritable_workdir(corpus_files, french_tokenizer_dir, tmp_path):
    (tmp_path / "afile").write_text("x")
    config = make_config(micro_overrides(corpus_files, french_tokenizer_dir))
    with pytest.raises(PermissionError, match="cannot write to the workdir"):
        run(config, tmp_path / "afile" / "run")


def test_unknown_config_key_is_refused(corpus_files, french_tokenizer_dir, tmp_path):
    args = train_cli({"data.paths": tuple(corpus_files), "train.stpes": 5}, tmp_path / "w")
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "stpes" in done.stderr
    assert not (tmp_path / "w").exists()


def test_two_processes_train_in_lock_step_like_one(corpus_files, french_tokenizer_dir, tmp_path):
    """Two CPU processes (jax.distributed on localhost, one device each) = one process."""
    import socket

    overrides = {**micro_overrides(corpus_files, french_tokenizer_dir, steps=6), "train.checkpoint_every": 3,
                 "train.eval_every": 3, "export_hf": False}
    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=1")
    single = subprocess.run(train_cli(overrides, tmp_path / "one"), capture_output=True, text=True, env=env,
                            timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    procs = [subprocess.Popen(train_cli(overrides, tmp_path / "two") + [
        f"--coordinator_address=localhost:{port}", "--num_processes=2", f"--process_id={i}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for i in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    rows_one = [json.loads(x) for x in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    rows_two = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    losses = lambda rows: [r["loss/total"] for r in rows if "loss/total" in r]  # noqa: E731
    np.testing.assert_allclose(losses(rows_two), losses(rows_one), atol=1e-5, rtol=0)
    evals = lambda rows: [r["eval/mlm_loss"] for r in rows if "eval/mlm_loss" in r]  # noqa: E731
    np.testing.assert_allclose(evals(rows_two), evals(rows_one), atol=1e-5, rtol=0)
    _, params_one, _ = load_student_from_workdir(tmp_path / "one")
    _, params_two, _ = load_student_from_workdir(tmp_path / "two")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), params_one, params_two)


def test_sigterm_checkpoints_then_resume_finishes(corpus_files, french_tokenizer_dir, tmp_path):
    """Preemption: SIGTERM makes the loop save where it is and stop; the same call resumes."""
    import threading

    config = make_config({**micro_overrides(corpus_files, french_tokenizer_dir, steps=200),
                          "train.checkpoint_every": 10, "train.eval_every": 0, "export_hf": False})
    workdir = tmp_path / "preempted"

    def preempt():
        deadline = time.time() + 300
        while not (workdir / "checkpoints" / "10").is_dir() and time.time() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=preempt, daemon=True).start()
    run(config, workdir)
    manager = checkpoint_manager(workdir, keep=100, create=False)
    stopped_at = manager.latest_step()
    assert 10 <= stopped_at < 200, stopped_at
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == stopped_at  # metrics up to the stop are flushed
    config.train.steps = stopped_at + 5
    run(config, workdir)
    assert checkpoint_manager(workdir, keep=100, create=False).latest_step() == stopped_at + 5
