"""The miniature reproduction chain (scripts/reproduce_mini.sh + scripts/mini_report.py) at toy size.

Every stage runs on real French data (../shared/data) but tiny: 2 novels (one held out), a 1 000-token
vocabulary, 8 training steps of 4 × 32 tokens per model, 8 held-out blocks, fine-tuning on 64
sentences for 1 epoch with 1 seed, the reference rows and the probes on the same 64 training sentences,
one inference-speed setting. Then the report must hold its three rows beside the reference rows of
baselines.json, a probe row per model and layer of its probe.json, the comparisons and the protocol
of each results.json, say it is toy-sized, and sit beside its PNG; a second run must skip every stage;
removing one stage's marker must redo that stage (and the report) only; ablations asked for afterwards
must run after the main chain, be probed and be reported under "Investigation".
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "reproduce_mini.sh"
ROLES = ("teacher", "distil", "scratch")
STAGES = ["tokenizer", "shards", "teacher", "distil", "scratch", "mlm_eval", "ner_data", "baselines",
          *(f"probe_{role}" for role in ROLES),
          *(f"ft_{task}_{role}" for task in ("pos", "ner") for role in ROLES),
          "speed_distil", "speed_scratch", "report"]
TOY_KNOBS = {
    "STEPS": "8",
    "TEACHER_STEPS": "8",
    "VOCAB": "1000",
    "NOVELS": "FRA001*.txt",  # two short novels (Adam), one held out
    "HOLDOUT": "1",
    "SEQ_LEN": "32",
    "TRAIN_OVERRIDES": " ".join([
        "--config.train.batch_size=4", "--config.train.eval_batches=1", "--config.train.eval_batch_size=4",
        "--config.train.log_every=2", "--config.train.eval_every=4", "--config.train.checkpoint_every=4",
        "--config.progress=false"]),
    "EVAL_BLOCKS": "8",
    "FT_SEEDS": "0",
    "FT_EPOCHS": "1",
    "FT_MAX_TRAIN": "64",
    "FT_MAX_EVAL": "32",
    "FT_EXTRA": "--max-length 32 --batch-size 8 --lr 1e-3",  # one rate: the grid search is tested in test_finetune
    "PROBE_EXTRA": "--max-train-sentences 64 --max-test-sentences 32 --steps 20 --eval-every 10 "
                   "--weight-decays 0 --batch-size 16",
    "SPACY": "off",  # the spaCy row is tested in test_baselines where spaCy is installed
    "BENCH_SETTINGS": "2x32",
    "BENCH_FRAMEWORKS": "jax",
    "BENCH_EXTRA": "--repeats 2 --warmup 1",
}


def run_chain(env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"
    return done, time.perf_counter() - start


def timing_rows(run: pathlib.Path) -> list[dict[str, str]]:
    with open(run / "timings.tsv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def table_rows(markdown: str, heading: str) -> list[str]:
    """The body rows of the first table after `heading`."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table[2:]  # header and rule


@pytest.mark.slow
def test_toy_chain_reports_and_resumes(shared_data_dir, tmp_path):
    run, report = tmp_path / "run", tmp_path / "results.md"
    env = {**os.environ, **TOY_KNOBS, "RUN": str(run), "DATA": str(shared_data_dir), "REPORT": str(report),
           "PYTHON": sys.executable,
           "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}  # one CPU device, not the suite's 8 fake ones; conftest's cache

    run.mkdir()
    (run / "NOTES.md").write_text("A note from whoever ran the chain.\n", encoding="utf-8")
    first, first_seconds = run_chain(env, timeout=1200)
    print(f"toy chain: {first_seconds:.0f} s")
    rows = timing_rows(run)
    assert [r["stage"] for r in rows] == STAGES and {r["status"] for r in rows} == {"done"}

    text = report.read_text(encoding="utf-8")
    results = table_rows(text, "## Results")
    assert [r.split("|")[1].strip().split(" (")[0] for r in results] == [
        "teacher", "distilled student", "scratch student", "*reference: most frequent tag*"]
    assert all("–" not in r for r in results), results  # every cell filled
    assert "Toy-sized run" in text and "8 steps of 4 × 32 tokens" in text
    assert len(table_rows(text, "What each student retains")) == 2

    # The reference rows: fitted on the NER fine-tuning's own 64 training sentences, scored on its test
    # sentences, shown beside the models as baselines.json has them.
    baselines = json.loads((run / "baselines" / "baselines.json").read_text())["rows"]
    assert {r["system"] for r in baselines} == {"most frequent tag"}  # SPACY=off
    ner_rows = [r for r in baselines if r["task"] == "ner"]
    assert {r["train"] for r in ner_rows} == {str(run / "data" / "ner" / "train.conllu")}
    ner_ft = json.loads((run / "ft" / "ner_teacher" / "results.json").read_text())
    assert {r["train_sentences"] for r in ner_rows} == {ner_ft["runs"][0]["train_examples"]} == {64}
    assert {r["test_sentences"] for r in baselines} == {32}
    assert {pathlib.Path(r["test"]).name for r in ner_rows} == {
        pathlib.Path(t).name for t in ner_ft["summary"] if t != "dev"}
    reference = next(cells(r) for r in table_rows(text, "## Results") if "reference: most frequent tag" in r)
    sequoia = next(r for r in baselines if r["test"].endswith("fr_sequoia-ud-test.conllu"))
    europeana = next(r for r in baselines if "enp_FR" in r["test"])
    assert reference[4] == f"{100 * sequoia['accuracy']:.2f}" and reference[7] == f"{100 * europeana['f1']:.2f}"
    assert "No spaCy row" in text

    # The probes: two layers (the middle and the last) of every model, as its probe.json has them.
    probes = [cells(r) for r in table_rows(text, "## Frozen-encoder probes")]
    for role, name in zip(ROLES, ("teacher", "distilled student", "scratch student"), strict=True):
        record = json.loads((run / "probe" / role / "probe.json").read_text())
        depth = record["layers"][-1]
        mine = [row for row in probes if row[0].split(" (")[0] == name]
        assert [row[1] for row in mine] == [f"{layer} of {depth}" for layer in record["layers"]] and len(mine) == 2
        last_pos = next(r for r in record["results"] if r["task"] == "pos" and r["layer"] == depth)
        sequoia_probe = next(v for k, v in last_pos["tests"].items() if k.endswith("fr_sequoia-ud-test.conllu"))
        assert mine[1][2] == f"{100 * sequoia_probe['accuracy']:.2f}"
        assert all("–" not in cell for cell in mine[1])  # all four test sets probed
    assert len(table_rows(text, "Share of the teacher's probe score")) == 4
    facts = [cells(r) for r in table_rows(text, "## Against the baseline")]
    assert len(facts) == 3 * 4 and {row[0] for row in facts[:4]} == {"fine-tuned (mean over seeds)"}
    assert all(row[3].startswith(("yes (", "no (")) for row in facts)
    protocol = [cells(r) for r in table_rows(text, "## Fine-tuning protocol")]
    assert [row[0] for row in protocol] == ["POS"] * 3 + ["NER"] * 3
    assert {row[3] for row in protocol} == {"0.001"} and {row[5] for row in protocol} == {"1"}  # FT_EXTRA's --lr
    assert "probes: scripts/probe.py --max-train-sentences 64" in text
    assert "scripts/train.py --config configs/mini.py:distil," in text
    assert "## Notes on this run\n\nA note from whoever ran the chain." in text
    png = report.with_name("results_curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "](results_curves.png)" in text

    # NER dev: every 10th WikiNEuRal val sentence, the rest is training data.
    def sentences(path):
        return path.read_text(encoding="utf-8").strip().split("\n\n")

    val = sentences(shared_data_dir / "wikineural_fr" / "val.conllu")
    assert sentences(run / "data" / "ner" / "dev.conllu") == val[9::10]
    assert len(sentences(run / "data" / "ner" / "train.conllu")) == len(val) - len(val[9::10])

    # Re-running skips every stage, quickly, and leaves the report alone.
    written = report.stat().st_mtime_ns
    _, again_seconds = run_chain(env, timeout=120)
    rerun = timing_rows(run)[len(rows):]
    assert [r["stage"] for r in rerun] == STAGES and {r["status"] for r in rerun} == {"skipped"}
    assert again_seconds < 30, again_seconds
    assert report.stat().st_mtime_ns == written

    # A stage whose marker is gone runs again, and so does the report; nothing else.
    (run / ".stages" / "speed_scratch.done").unlink()
    run_chain(env, timeout=300)
    third = {r["stage"]: r["status"] for r in timing_rows(run)[len(rows) + len(rerun):]}
    assert {s for s, status in third.items() if status == "done"} == {"speed_scratch", "report"}
    assert report.stat().st_mtime_ns != written

    # Ablations run after the main chain (which is skipped) and are reported beside distil and scratch.
    before = len(timing_rows(run))
    run_chain({**env, "ABLATIONS": "untrained init_only"}, timeout=900)
    fourth = [(r["stage"], r["status"]) for r in timing_rows(run)[before:] if r["status"] != "skipped"]
    assert fourth == [(stage, "done") for stage in (
        "untrained", "mlm_eval_untrained", "probe_untrained", "ft_pos_untrained", "ft_ner_untrained",
        "init_only", "mlm_eval_init_only", "probe_init_only", "ft_pos_init_only", "ft_ner_init_only", "report")]
    text = report.read_text(encoding="utf-8")
    investigation = table_rows(text, "## Investigation")
    assert [r.split("|")[1].strip() for r in investigation] == ["`distil`", "`init_only`", "`untrained`", "`scratch`"]
    assert all("–" not in r for r in investigation), investigation
    assert "| 0 / 0 |" in investigation[2]  # the untrained student is never trained
    assert "scripts/train.py --config configs/mini.py:init_only," in text
    probed = {cells(r)[0] for r in table_rows(text, "## Frozen-encoder probes")}
    assert {"ablation `init_only`", "ablation `untrained`"} < probed
