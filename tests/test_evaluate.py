"""Held-out MLM metrics, teacher–student agreement, fill-mask, the evaluate CLI, the inference benchmark.

A small masked LM is briefly trained on real French (a 2-layer "teacher", the trainer's own
step with plain MLM) and a 1-layer "student" is cut from it as DistilBERT does, so the
accuracies are past chance and the two models differ; every number the tools report is
recounted here from the models' logits.
"""

from __future__ import annotations

import functools
import json
import pathlib
import runpy
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import make_tiny_tokenizer

from jaxdistil import optim, run_config, step
from jaxdistil.checkpoint import find_tokenizer, load_model
from jaxdistil.config import ModelConfig
from jaxdistil.convert import save_hf
from jaxdistil.data import corpus
from jaxdistil.data.masking import mask_tokens
from jaxdistil.data.tokenize import tokenize_to_shards
from jaxdistil.evaluate import mlm
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.student import default_layer_map, init_from_teacher, student_config
from jaxdistil.tokenizer import load_tokenizer

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SEQ_LEN = 64
BATCH = 8


def script(name: str):
    return runpy.run_path(str(REPO_ROOT / name))["main"]


@pytest.fixture(scope="module")
def tokenizer(french_tokenizer_dir):
    return load_tokenizer(french_tokenizer_dir)


def briefly_trained(tokenizer, blocks: np.ndarray, layers: int, steps: int, seed: int):
    """A tiny masked LM after `steps` plain-MLM steps of the trainer's `step.train_step`."""
    config = ModelConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=SEQ_LEN + 2,
    )
    model = MaskedLM(config)
    run = run_config.base()
    run.mode = "mlm"  # no teacher, alpha_mlm = 1
    run.train.update(steps=steps, learning_rate=3e-3, warmup_steps=5, weight_decay=0.0)
    tx = optim.optimizer_for_run(run.train).tx
    spec = step.StepSpec.from_config(run, tokenizer, vocab_size=config.vocab_size)
    train_step = jax.jit(
        functools.partial(step.train_step, student=model, teacher=None, tx=tx, spec=spec), donate_argnums=0
    )
    state = optim.init_train_state(init_params(model, jax.random.key(seed)), tx, seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        rows = blocks[rng.integers(0, len(blocks), 16)]
        state, _ = train_step(state, None, {"input_ids": rows, "attention_mask": (rows != 1).astype(np.int32)}, None)
    return config, jax.device_get(state.params)


@pytest.fixture(scope="module")
def models(tokenizer, french_lines, tmp_path_factory):
    """Teacher and student saved as HF dirs (with the tokenizer), and a held-out text file."""
    train_blocks = mlm.blocks_from_texts(french_lines[:600], tokenizer, SEQ_LEN)
    root = tmp_path_factory.mktemp("mlm")
    teacher = briefly_trained(tokenizer, train_blocks, layers=2, steps=120, seed=0)
    # DistilBERT-style: the student is the teacher's embeddings, LM head and last layer.
    student = (student_config(teacher[0], 1), init_from_teacher(teacher[1], default_layer_map(2, 1)))
    held_out = root / "held_out.txt"
    held_out.write_text("\n".join(french_lines[600:]) + "\n", encoding="utf-8")
    dirs = {name: save_hf(*m, root / name, tokenizer) for name, m in (("teacher", teacher), ("student", student))}
    return types.SimpleNamespace(teacher=teacher, student=student, dirs=dirs, held_out=held_out)


def direct_counts(model, teacher, blocks: np.ndarray, tokenizer, seed: int, batch: int = BATCH) -> dict[str, float]:
    """The metrics recounted in NumPy (float64) from full logits, batch by batch as documented:
    blocks padded with all-pad rows to whole batches, batch i masked with fold_in(key(seed), i)."""
    pad = -len(blocks) % batch
    blocks = np.concatenate([blocks, np.full((pad, blocks.shape[1]), tokenizer.pad_token_id, np.int32)])
    totals = dict(masked=0, correct=0, agree=0, ce=0.0, kl=0.0)
    for i in range(len(blocks) // batch):
        ids = jnp.asarray(blocks[i * batch : (i + 1) * batch])
        attention = (ids != tokenizer.pad_token_id).astype(jnp.int32)
        masked, labels = mask_tokens(
            jax.random.fold_in(jax.random.key(seed), i),
            ids,
            attention,
            mask_token_id=tokenizer.mask_token_id,
            special_token_ids=tuple(sorted(tokenizer.all_special_ids)),
            vocab_size=len(tokenizer),
            mlm_probability=0.15,
        )
        log_probs = [
            jax.nn.log_softmax(np.asarray(MaskedLM(c).apply({"params": p}, masked, attention).logits, np.float64), -1)
            for c, p in (model, teacher)
        ]
        student_lp, teacher_lp = (np.asarray(lp) for lp in log_probs)
        sel = np.asarray(labels) != -100
        gold = np.asarray(labels)[sel]
        s, t = student_lp[sel], teacher_lp[sel]
        totals["masked"] += int(sel.sum())
        totals["correct"] += int(np.sum(s.argmax(-1) == gold))
        totals["agree"] += int(np.sum(s.argmax(-1) == t.argmax(-1)))
        totals["ce"] += float(-s[np.arange(len(gold)), gold].sum())
        totals["kl"] += float(np.sum(np.exp(t) * (t - s)))
    n = totals["masked"]
    return {
        "accuracy": totals["correct"] / n,
        "agreement": totals["agree"] / n,
        "loss": totals["ce"] / n,
        "kl": totals["kl"] / n,
        "masked_tokens": n,
    }


def test_evaluate_cli_rows_match_direct_counts(models, tokenizer, french_tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "results.json"
    argv = [
        "--model",
        str(models.dirs["student"]),
        "--teacher",
        str(models.dirs["teacher"]),
        "--tokenizer",
        str(french_tokenizer_dir),
        "--data",
        str(models.held_out),
        "--seq-len",
        str(SEQ_LEN),
        "--max-blocks",
        "20",
        "--batch-size",
        str(BATCH),
        "--seed",
        "3",
        "--out",
        str(out),
    ]
    assert script("scripts/evaluate.py")(argv) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    header = next(line for line in lines if line.startswith("model"))
    assert "agreement" in header and "kl" in header and "perplexity" in header
    assert any(line.startswith(str(models.dirs["teacher"])) for line in lines)
    assert any(line.startswith(str(models.dirs["student"])) for line in lines)
    report = json.loads(out.read_text())
    assert report["num_blocks"] == 20
    teacher_row, student_row = report["rows"]
    assert (teacher_row["role"], student_row["role"]) == ("teacher", "model")
    assert "agreement" not in teacher_row

    blocks = mlm.load_eval_blocks([str(models.held_out)], tokenizer, SEQ_LEN, 20)
    for row, model in ((student_row, models.student), (teacher_row, models.teacher)):
        expected = direct_counts(model, models.teacher, blocks, tokenizer, seed=3)
        assert row["masked_tokens"] == expected["masked_tokens"] > 100
        assert row["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
        assert row["loss"] == pytest.approx(expected["loss"], rel=1e-5)
        assert row["perplexity"] == pytest.approx(np.exp(expected["loss"]), rel=1e-5)
    # `expected` is now the teacher's own count against itself; recount the student's pair terms.
    expected = direct_counts(models.student, models.teacher, blocks, tokenizer, seed=3)
    assert student_row["agreement"] == pytest.approx(expected["agreement"], abs=1e-12)
    assert student_row["kl"] == pytest.approx(expected["kl"], rel=1e-4) and expected["kl"] > 0
    # Brief training got past chance (1/1000), and the student (the teacher's last layer) follows
    # its teacher closely; measured: accuracy 0.060 for both (the most frequent tokens), loss
    # 5.610 vs 5.617, agreement 0.994, KL 0.005 over 167 masked tokens.
    assert student_row["accuracy"] > 0.02 and teacher_row["accuracy"] > 0.02
    assert 0.5 < student_row["agreement"] <= 1.0
    assert teacher_row["params"] > student_row["params"]


def test_a_model_agrees_with_itself(models, tokenizer):
    blocks = mlm.load_eval_blocks([str(models.held_out)], tokenizer, SEQ_LEN, 10)
    scores = mlm.evaluate_mlm(
        models.teacher,
        blocks,
        mlm.EvalMasking.from_tokenizer(tokenizer, 0.15),
        batch_size=BATCH,
        teacher=models.teacher,
    )
    assert scores["agreement"] == 1.0
    assert scores["kl"] == pytest.approx(0.0, abs=1e-6)


def test_held_out_blocks_from_text_or_from_prepared_shards_agree(models, tokenizer, tmp_path):
    texts = corpus.iter_local_texts([str(models.held_out)])
    tokenize_to_shards(texts, tokenizer, tmp_path / "eval", seq_len=SEQ_LEN)  # as scripts/prepare_data.py
    from_text = mlm.load_eval_blocks([str(models.held_out)], tokenizer, SEQ_LEN, 12)
    from_shards = mlm.load_eval_blocks([str(tmp_path / "eval")], tokenizer, SEQ_LEN, 12)
    assert from_text.shape == (12, SEQ_LEN) and np.array_equal(from_text, from_shards)
    with pytest.raises(ValueError, match="seq_len 64 != expected 32"):
        mlm.load_eval_blocks([str(tmp_path / "eval")], tokenizer, 32, 12)


def test_tokenizer_found_in_model_dirs_and_training_workdirs(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "workdir" / "tokenizer")  # workdir.Workdir.tokenizer
    (tmp_path / "bare").mkdir()
    assert find_tokenizer(str(tmp_path / "hf")) == str(tmp_path / "hf")
    assert find_tokenizer(str(tmp_path / "workdir")) == str(tmp_path / "workdir" / "tokenizer")
    assert find_tokenizer(str(tmp_path / "bare")) is None


def test_evaluate_cli_refuses_a_mismatched_tokenizer(models, french_lines, tmp_path, capsys):
    other = make_tiny_tokenizer(french_lines[:300], vocab_size=300)
    other.save_pretrained(tmp_path / "other")
    argv = [
        "--model",
        str(models.dirs["student"]),
        "--tokenizer",
        str(tmp_path / "other"),
        "--data",
        str(models.held_out),
        "--seq-len",
        str(SEQ_LEN),
    ]
    assert script("scripts/evaluate.py")(argv) == 2
    err = capsys.readouterr().err
    assert f"model {models.dirs['student']}: tokenizer has 300 tokens but the model's vocab_size is 1000" in err


# ------------------------------------------------------------------------------- fill-mask


def test_fill_mask_matches_hf_pipeline(models, capsys):
    from transformers import pipeline

    model_dir = models.dirs["teacher"]
    hf = pipeline("fill-mask", model=str(model_dir), tokenizer=str(model_dir))
    model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
    for text in ("Le camembert est <mask> :)", "Il <mask> dans la <mask> de sa mère."):
        ours, theirs = mlm.fill_mask(model, tokenizer, text, top_k=5), hf(text, top_k=5)
        per_mask = [(ours, theirs)] if isinstance(theirs[0], dict) else zip(ours, theirs, strict=True)
        for our_row, their_row in per_mask:
            assert [{k: v for k, v in p.items() if k != "score"} for p in our_row] == [
                {k: v for k, v in p.items() if k != "score"} for p in their_row
            ]
            np.testing.assert_allclose([p["score"] for p in our_row], [p["score"] for p in their_row], atol=1e-5)
    main = script("scripts/fill_mask.py")
    assert main(["Le camembert est <mask> :)", "--model", str(model_dir), "--top-k", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [p["token"] for p in printed] == [p["token"] for p in hf("Le camembert est <mask> :)", top_k=3)]
    assert main(["Le camembert est <mask> :)", "--model", str(model_dir)]) == 0
    assert "token_str" in capsys.readouterr().out
    assert main(["Pas de masque ici.", "--model", str(model_dir)]) == 2
    assert "no <mask> token" in capsys.readouterr().err


# ------------------------------------------------------------------------------ benchmark


def test_inference_benchmark_runs_both_frameworks(capsys):
    argv = [
        "--random",
        "--teacher-layers",
        "2",
        "--student-layers",
        "1",
        "--hidden",
        "32",
        "--heads",
        "2",
        "--vocab",
        "200",
        "--settings",
        "2x16",
        "--repeats",
        "2",
        "--warmup",
        "1",
    ]
    assert script("benchmarks/inference.py")(argv) == 0
    printed = capsys.readouterr().out
    rows = [line.split() for line in printed.splitlines() if line.startswith(("jax ", "torch "))]
    assert [r[0] for r in rows if len(r) == 6] == ["jax", "torch"]
    ratios = dict(item.split("=") for item in printed.strip().splitlines()[-1].split())
    assert set(ratios) == {"student_teacher_ratio_jax", "student_teacher_ratio_torch"}
    assert all(float(v) > 0 for v in ratios.values())
