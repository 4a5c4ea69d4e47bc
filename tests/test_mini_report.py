"""scripts/mini_report.py on hand-made run directories: the reference rows, the probes, the comparisons
with the baseline, the teacher and the scratch student, and the fine-tuning protocol, each checked
against numbers counted by hand; a run with only its manifest is reported with what is missing."""

from __future__ import annotations

import json
import pathlib
import runpy

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SEQUOIA_TEST = "data/ud_french_sequoia/fr_sequoia-ud-test.conllu"
GSD_TEST = "data/ud_french_gsd/fr_gsd-ud-test.conllu"
WIKINEURAL_TEST = "data/wikineural_fr/test.conllu"
EUROPEANA = "data/europeana_fr_ner/enp_FR.bnf.bio"
KNOBS = {"RUN": "", "STEPS": "8", "TEACHER_STEPS": "8", "SEQ_LEN": "32", "ABLATIONS": "", "FT_SEEDS": "0 1",
         "FT_EPOCHS": "5", "FT_MAX_TRAIN": "", "PROBE_EXTRA": ""}
LAYERS = {"teacher": 4, "distil": 2, "scratch": 2}
# Hand-made scores per role: fine-tuned means (POS Sequoia, POS GSD, NER WikiNEuRal, NER Europeana) and the
# probes' scores at their middle and last layer (POS Sequoia only; the other tests are not probed here).
FINE_TUNED = {"teacher": (0.95, 0.90, 0.60, 0.40), "distil": (0.93, 0.84, 0.57, 0.41),
              "scratch": (0.89, 0.86, 0.50, 0.35)}
PROBED = {"teacher": (0.90, 0.80), "distil": (0.81, 0.79), "scratch": (0.70, 0.60)}
BASELINE = (0.90, 0.85, 0.45, 0.38)  # baselines.json's most-frequent-tag row
PROBE_BASELINE = 0.75  # probe.py's most-frequent-tag row on its own training sentences


@pytest.fixture(scope="module")
def report():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO / "scripts"))  # mini_report imports mini_manifest from beside it
        return runpy.run_path(str(REPO / "scripts" / "mini_report.py"))


def write_json(path: pathlib.Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")


def new_run(report, path: pathlib.Path) -> pathlib.Path:
    """A run directory holding only the manifest reproduce_mini.sh writes first (at the script's defaults)."""
    manifest_tool = report["mini_manifest"]
    knobs = {**KNOBS, "RUN": str(path)}
    records = {name: str(path / f"{name}.tsv") for name in ("commands", "timings", "invocations")}
    write_json(path / manifest_tool.MANIFEST, manifest_tool.build(knobs, knobs, records))
    return path


def fine_tuning(role: str, task: str) -> dict:
    """A results.json: two learning rates tried with seed 0, two seeds at the chosen one."""
    means = FINE_TUNED[role][:2] if task == "pos" else FINE_TUNED[role][2:]
    tests = (SEQUOIA_TEST, GSD_TEST) if task == "pos" else (WIKINEURAL_TEST, EUROPEANA)
    metric = "accuracy" if task == "pos" else "f1"

    def run(rate, seed, dev, best, ran):
        return {"learning_rate": rate, "seed": seed, "primary_metric": metric, "dev": {metric: dev},
                "best_epoch": best, "epochs_run": ran}

    return {
        "config": {"seed": [0, 1], "epochs": 5, "patience": 3, "learning_rate": 5e-4, "batch_size": 16,
                   "max_length": 512, "label_piece": "first_word_piece", "warmup_ratio": 0.1, "weight_decay": 0.01,
                   "max_train_examples": None, "max_eval_examples": None},
        "learning_rate_search": [run(1e-3, 0, 0.91, 3, 5), run(5e-4, 0, 0.92, 5, 5)],
        "runs": [run(5e-4, 0, 0.92, 5, 5), run(5e-4, 1, 0.90, 2, 5)],
        "summary": {"dev": {metric: {"mean": 0.91, "std": 0.01}},
                    **{test: {metric: {"mean": m, "std": 0.01}} for test, m in zip(tests, means, strict=True)}},
    }


def probe_record(role: str) -> dict:
    depth = LAYERS[role]
    layers = [depth // 2, depth]
    results = []
    for task, test, metric in (("pos", SEQUOIA_TEST, "accuracy"), ("ner", WIKINEURAL_TEST, "f1")):
        for layer, score in zip(layers, PROBED[role], strict=True):
            results.append({
                "task": task, "layer": layer, "metric": metric, "train_sentences": 100,
                "words": {"train": 2000, "dev": 300, test: 400},
                "tests": {test: {metric: score if task == "pos" else 0.5}},
                "baseline": {test: {metric: PROBE_BASELINE if task == "pos" else 0.4}},
            })
    return {"layers": layers, "results": results,
            "probe_config": {"steps": 100, "batch_size": 256, "learning_rate": 0.01, "weight_decays": [0.0]}}


def complete_run(report, path: pathlib.Path) -> pathlib.Path:
    run = new_run(report, path)
    rows = [{"system": "most frequent tag", "task": task, "test": test, "train_sentences": sentences,
             metric: score}
            for task, test, metric, score, sentences in zip(
                ("pos", "pos", "ner", "ner"), (SEQUOIA_TEST, GSD_TEST, WIKINEURAL_TEST, EUROPEANA),
                ("accuracy", "accuracy", "f1", "f1"), BASELINE, (2231, 2231, 11340, 11340), strict=True)]
    rows.append({"system": "spaCy fr_core_news_sm 3.8.0", "task": "pos", "test": SEQUOIA_TEST,
                 "training_data": ["UD French Sequoia v2.8", "WikiNER"], "accuracy": 0.966})
    write_json(run / "baselines" / "baselines.json", {"rows": rows})
    for role, depth in LAYERS.items():
        write_json(run / role / "student_config.json", {"num_hidden_layers": depth, "hidden_size": 32})
        for task in ("pos", "ner"):
            write_json(run / "ft" / f"{task}_{role}" / "results.json", fine_tuning(role, task))
        write_json(run / "probe" / role / "probe.json", probe_record(role))
    return run


def table(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the body rows of the first table after `heading`."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_reference_rows_sit_beside_the_models(report, tmp_path):
    text = report["render"](report["load_run"](complete_run(report, tmp_path / "run")), None)
    rows = {row[0]: row for row in table(text, "## Results")}
    assert rows["*reference: most frequent tag*"][4:8] == ["90.00", "85.00", "45.00", "38.00"]
    spacy = rows["*reference: spaCy fr_core_news_sm 3.8.0*"]
    assert spacy[4:8] == ["96.60", "–", "–", "–"]  # only Sequoia test was scored
    assert rows["teacher (4 × 32)"][4] == "95.00 ± 1.00"
    assert "UD French Sequoia v2.8, WikiNER" in text and report["SPACY_OVERLAP"] in text
    assert "POS: 2231, NER: 11340" in text


def test_probe_table_and_share_of_the_teacher(report, tmp_path):
    text = report["render"](report["load_run"](complete_run(report, tmp_path / "run")), None)
    rows = table(text, "## Frozen-encoder probes")
    assert [row[:3] for row in rows[:6]] == [
        ["teacher (4 × 32)", "2 of 4", "90.00"], ["teacher (4 × 32)", "4 of 4", "80.00"],
        ["distilled student (2 × 32)", "1 of 2", "81.00"], ["distilled student (2 × 32)", "2 of 2", "79.00"],
        ["scratch student (2 × 32)", "1 of 2", "70.00"], ["scratch student (2 × 32)", "2 of 2", "60.00"]]
    assert rows[6][2] == "75.00" and rows[6][4] == "40.00"  # the probes' own baseline row
    retained = table(text, "Share of the teacher's probe score")
    # middle with middle, last with last: 0.81 / 0.90 and 0.79 / 0.80
    assert [row[2] for row in retained] == ["90.0 %", "98.8 %", "77.8 %", "75.0 %"]


def test_comparisons_are_the_hand_counted_facts(report, tmp_path):
    text = report["render"](report["load_run"](complete_run(report, tmp_path / "run")), None)
    rows = {(row[0], row[1]): row[2:] for row in table(text, "## Against the baseline")}
    # baseline | teacher, distilled, scratch above it | distilled / teacher | distilled above scratch
    assert rows["fine-tuned (mean over seeds)", "POS acc Sequoia test"] == [
        "90.00", "yes (+5.00)", "yes (+3.00)", "no (-1.00)", "97.9 % (≥ 95 %)", "yes (+4.00)"]
    assert rows["fine-tuned (mean over seeds)", "POS acc GSD test"] == [
        "85.00", "yes (+5.00)", "no (-1.00)", "yes (+1.00)", "93.3 % (< 95 %)", "no (-2.00)"]
    assert rows["fine-tuned (mean over seeds)", "NER F1 Europeana"][4] == "102.5 % (≥ 95 %)"
    assert rows["probe, layer 2 of 4 / 1 of 2 / 1 of 2", "POS acc Sequoia test"] == [
        "75.00", "yes (+15.00)", "yes (+6.00)", "no (-5.00)", "90.0 % (< 95 %)", "yes (+11.00)"]
    assert rows["probe, layer 4 of 4 / 2 of 2 / 2 of 2", "POS acc GSD test"] == ["–"] * 6  # not probed


def test_protocol_is_read_from_each_results_json(report, tmp_path):
    text = report["render"](report["load_run"](complete_run(report, tmp_path / "run")), None)
    rows = table(text, "## Fine-tuning protocol")
    assert [row[:2] for row in rows] == [[task, f"{name} ({depth} × 32)"] for task in ("POS", "NER") for name, depth
                                         in (("teacher", 4), ("distilled student", 2), ("scratch student", 2))]
    assert rows[0][2:] == ["0.001 (91.00), 0.0005 (92.00)", "0.0005", "0 1", "5 / 5", "5 / 2", "1 of 2"]
    assert "label on the first_word_piece piece" in text and "stopping after 3 without" in text


def test_a_run_with_only_its_manifest_says_what_is_missing(report, tmp_path):
    text = report["render"](report["load_run"](new_run(report, tmp_path / "run")), None)
    assert "reference rows missing (no baselines/baselines.json" in text
    assert "probes missing for: teacher, distil, scratch" in text
    assert "fine-tuning results missing: pos_teacher" in text
    assert "## Frozen-encoder probes" not in text and "## Fine-tuning protocol" not in text
    facts = table(text, "## Against the baseline")
    assert {row[0] for row in facts} == {"fine-tuned (mean over seeds)"}  # no probe rows without probes
    assert all(cell == "–" for row in facts for cell in row[2:])


def test_a_probe_knob_off_its_default_is_a_smaller_run(report, tmp_path):
    run = complete_run(report, tmp_path / "run")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["planned"]["probe"]["extra"] = "--max-train-sentences 64"
    (run / "manifest.json").write_text(json.dumps(manifest))
    text = report["render"](report["load_run"](run), None)
    assert "probes: scripts/probe.py --max-train-sentences 64 (full: its defaults)" in text
