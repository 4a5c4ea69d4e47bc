"""Markdown report of a miniature reproduction run (scripts/reproduce_mini.sh, issue #6).

    python scripts/mini_report.py --run runs/mini --out docs/results.md

Reads RUN/manifest.json (written by scripts/reproduce_mini.sh through scripts/mini_manifest.py:
the roles and ablations of configs/mini.py, the knobs of the last invocation and the script's
defaults, where the records are) and RUN's outputs — ROLE/{run_config.json,student_config.json,
metrics.jsonl}, eval/mlm*.json, baselines/baselines.json, ft/{pos,ner}_ROLE/results.json,
probe/ROLE/probe.json, speed/ROLE.log, the stage timings, commands and invocations, NOTES.md
(optional, quoted as is) — and writes one table (params, held-out MLM accuracy and perplexity, POS
accuracy on Sequoia/GSD test, NER F1 on WikiNEuRal test/Europeana as mean ± std over seeds,
sequences/s) with the reference rows measured on the same files beside the models, the share of
the teacher each student retains, the frozen-encoder probes, whether each model beats the
most-frequent-tag baseline and whether the distilled student keeps `KEEPS` of the teacher and beats
the scratch student (issue #14), the fine-tuning protocol each model got (learning rates tried and
chosen, seeds, epochs), the ablations, the training runs, the exact commands and stage timings, and
the training curves as a PNG beside the markdown (OUT_STEM_curves.png). It says plainly when the
runs were smaller than the full miniature reproduction (the plan at the script's defaults), stopped
early, or which outputs are missing; missing numbers show as "–".
"""

from __future__ import annotations

import collections
import csv
import json
import math
import pathlib
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import mini_manifest  # scripts/, beside this file

from jaxdistil import cli
from jaxdistil.evaluate.baselines import SPACY_INSTALL, SPACY_OVERLAP
from jaxdistil.workdir import Workdir

# (column, task, substring of the test file's path, metric)
TEST_COLUMNS = (
    ("POS acc Sequoia test", "pos", "fr_sequoia-ud-test", "accuracy"),
    ("POS acc GSD test", "pos", "fr_gsd-ud-test", "accuracy"),
    ("NER F1 WikiNEuRal test", "ner", "wikineural_fr/test", "f1"),
    ("NER F1 Europeana", "ner", "enp_FR", "f1"),
)
COLUMNS = tuple(c for c, *_ in TEST_COLUMNS)
BASELINES = pathlib.Path("baselines", "baselines.json")  # under RUN: the baselines stage's rows
BASELINE_SYSTEM = "most frequent tag"  # scripts/baselines.py's system name for the lexicon rows
KEEPS = 0.95  # issue #14: the share of the teacher's score the distilled student should keep
SPEED_LINE = re.compile(r"^(\w+) (\d+)x(\d+): teacher ([\d.]+) seq/s, student ([\d.]+) seq/s")
DASH = "–"
DATA_SOURCES = """\
- MLM / distillation text: ELTeC-fra (COST-ELTeC/ELTeC-fra @ 83f0a43, `plain1/`), 96 French novels
  1840–1920, public domain; whole novels are held out for the MLM evaluation.
- POS: UD French-Sequoia (UniversalDependencies/UD_French-Sequoia @ f5b0496, LGPL-LR) train/dev/test;
  UD French-GSD test (UniversalDependencies/UD_French-GSD @ 830e278, CC BY-SA 4.0) as a cross-domain test.
- NER: WikiNEuRal French (Babelscape/wikineural @ d2e28c7, CC BY-NC-SA 4.0, research use): `val.conllu`
  is the training data (every 10th sentence held out as dev), reported on `test.conllu`; Europeana
  Newspapers French (EuropeanaNewspapers/ner-corpora @ 6bf838d, CC0), noisy OCR, out of domain. Europeana
  has no MISC entities, so a model's MISC predictions there count as false positives.
"""


# ------------------------------------------------------------------------------ reading


def read_json(path: pathlib.Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_metrics(path: pathlib.Path) -> dict[int, dict[str, float]]:
    """step -> scalars; a resumed run rewrites the steps since its checkpoint, the last line wins."""
    steps: dict[int, dict[str, float]] = collections.defaultdict(dict)
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                steps[int(record.pop("step"))].update(record)
    return dict(sorted(steps.items()))


def read_tsv(path: pathlib.Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_speed(path: pathlib.Path) -> dict[str, Any] | None:
    """benchmarks/inference.py's output: the device and one row per (framework, setting)."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    rows = [
        {"framework": m[1], "batch": int(m[2]), "length": int(m[3]), "teacher": float(m[4]), "student": float(m[5])}
        for m in map(SPEED_LINE.match, text.splitlines()) if m
    ]
    if not rows:
        raise ValueError(f"{path}: no 'FRAMEWORK BxL: teacher X seq/s, student Y seq/s' lines")
    device = re.search(r"; device (.+)$", text, re.MULTILINE)
    return {"device": device[1].strip() if device else "?", "rows": rows}


def headline_speed(speed: dict[str, Any]) -> dict[str, Any]:
    """The row the main table shows: JAX (else the first framework) at the largest batch."""
    rows = speed["rows"]
    framework = "jax" if any(r["framework"] == "jax" for r in rows) else rows[0]["framework"]
    return max((r for r in rows if r["framework"] == framework), key=lambda r: (r["batch"], r["length"]))


def model_name(label: str, model_config: dict[str, Any] | None) -> str:
    """'teacher (4 × 256)': the label with the layers and width the run was built with."""
    if model_config is None:
        return label
    return f"{label} ({model_config['num_hidden_layers']} × {model_config['hidden_size']})"


def load_run(run: pathlib.Path) -> dict[str, Any]:
    """Everything the report needs, with None where an output is missing."""
    manifest = mini_manifest.read(run)
    roles, teacher = list(manifest["roles"]), manifest["teacher"]
    out: dict[str, Any] = {"run": run, "manifest": manifest, "roles": roles, "teacher": teacher,
                           "students": [r for r in roles if r != teacher], "train": {}, "ft": {}, "speed": {}}
    # Every ablation with outputs, whichever invocation ran it, in configs/mini.py's order.
    out["ablations"] = [r for r in manifest["ablations"]
                        if (run / r).is_dir() or (run / "eval" / f"mlm_{r}.json").is_file()]
    for role in (*roles, *out["ablations"]):
        workdir = Workdir(run / role)
        out["train"][role] = {
            "config": read_json(workdir.run_config),
            "model_config": read_json(workdir.student_config),
            "metrics": read_metrics(workdir.metrics),
            "exported": (workdir.hf_export / "model.safetensors").is_file(),
        }
        for task in ("pos", "ner"):
            results = read_json(run / "ft" / f"{task}_{role}" / "results.json")
            if role in roles or results is not None:
                out["ft"][task, role] = results
    out["names"] = {role: model_name(manifest["roles"][role]["label"], out["train"][role]["model_config"])
                    for role in roles}
    for role in out["students"]:
        out["speed"][role] = read_speed(run / "speed" / f"{role}.log")
    out["baselines"] = read_json(run / BASELINES)
    out["probe"] = {role: read_json(run / "probe" / role / "probe.json") for role in (*roles, *out["ablations"])}
    mlm = read_json(run / "eval" / "mlm.json")
    out["mlm_meta"] = mlm
    out["mlm"] = {}
    ablation_evals = [read_json(run / "eval" / f"mlm_{r}.json") for r in out["ablations"]]
    for evaluation in (mlm, *ablation_evals):  # the main evaluation's teacher row is the one kept
        for row in (evaluation or {}).get("rows", []):
            role = teacher if row["role"] == "teacher" else pathlib.Path(row["model"]).parent.name
            out["mlm"].setdefault(role, row)
    for record in ("timings", "commands", "invocations"):
        out[record] = read_tsv(run / manifest["records"][record])
    notes = run / "NOTES.md"  # what a person running the chain wants said (an extended run, a restart)
    out["notes"] = notes.read_text(encoding="utf-8") if notes.is_file() else ""
    return out


# ---------------------------------------------------------------------------- deriving


def for_test(by_name: Mapping[str, Any] | None, path_part: str) -> Any:
    """The entry of the test set whose path contains `path_part` (not dev; None if there is none)."""
    for name, value in (by_name or {}).items():
        if name != "dev" and path_part in name.replace("\\", "/"):
            return value
    return None


def test_score(results: dict | None, path_part: str, metric: str) -> dict[str, float] | None:
    """{mean, std} of `metric` on the test set whose path contains `path_part`."""
    scores = for_test(results["summary"] if results else None, path_part)
    return None if scores is None else scores.get(metric)


def merge_columns(parts: Iterable[tuple[str, Mapping[str, Mapping[str, Any]]]]) -> dict[str, Any]:
    """COLUMNS -> score from (task, {test path: scores}) parts: each column's metric on its test file (None if
    no part has it)."""
    values: dict[str, Any] = dict.fromkeys(COLUMNS)
    for task, by_test in parts:
        for column, column_task, path_part, metric in TEST_COLUMNS:
            scores = for_test(by_test, path_part) if column_task == task else None
            if scores is not None and scores.get(metric) is not None:
                values[column] = scores[metric]
    return values


def reference_rows(baselines: dict | None) -> dict[str, dict[str, float | None]]:
    """system -> COLUMNS -> its score, from baselines.json (systems in the file's order; {} when it is missing)."""
    systems: dict[str, list[dict]] = {}
    for row in (baselines or {}).get("rows", []):
        systems.setdefault(row["system"], []).append(row)
    return {system: merge_columns((r["task"], {r["test"]: r}) for r in rows) for system, rows in systems.items()}


def probe_values(record: dict | None) -> dict[int, dict[str, float | None]]:
    """Probed layer -> COLUMNS -> the probe's test score, layers in probing order ({} without a probe.json)."""
    results = (record or {}).get("results", [])
    return {layer: merge_columns((r["task"], r["tests"]) for r in results if r["layer"] == layer)
            for layer in (record or {}).get("layers", [])}


def probe_baseline(record: dict | None) -> dict[str, float | None]:
    """COLUMNS -> the most-frequent-tag row probe.py fitted on the probe's own training sentences."""
    return merge_columns((r["task"], r["baseline"]) for r in (record or {}).get("results", []))


def mean(score: dict[str, float] | None) -> float | None:
    return None if score is None else score["mean"]


def above(value: float | None, reference: float | None) -> str:
    """'yes (+1.23)' or 'no (-0.40)': whether `value` beats `reference`, and by how many points."""
    if value is None or reference is None:
        return DASH
    return f"{'yes' if value > reference else 'no'} ({100 * (value - reference):+.2f})"


def keeps(student: float | None, teacher: float | None) -> str:
    """'97.1 % (≥ 95 %)': the student's share of the teacher's score, against `KEEPS`."""
    if student is None or teacher is None or teacher == 0:
        return DASH
    share = student / teacher
    return f"{100 * share:.1f} % ({'≥' if share >= KEEPS else '<'} {100 * KEEPS:g} %)"


def model_values(data: dict[str, Any], role: str) -> dict[str, Any]:
    """The main table's numbers for one model (None where missing)."""
    mlm = data["mlm"].get(role, {})
    values: dict[str, Any] = {"params": mlm.get("params"), "mlm_acc": mlm.get("accuracy"),
                              "mlm_ppl": mlm.get("perplexity")}
    for column, task, part, metric in TEST_COLUMNS:
        values[column] = test_score(data["ft"].get((task, role)), part, metric)
    is_teacher = role == data["teacher"]
    speed = data["speed"].get(data["students"][0] if is_teacher else role)  # the teacher: beside the first student
    values["speed"] = None
    if speed:
        row = headline_speed(speed)
        values["speed"] = row["teacher" if is_teacher else "student"]
    return values


def size_notes(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(ways the runs are smaller than the full miniature reproduction, ways they stopped early).

    Full size is the manifest's plan at reproduce_mini.sh's defaults.
    """
    smaller, short = [], []
    full = data["manifest"]["full"]
    for role in data["roles"]:
        train = data["train"][role]
        config = train["config"]
        if config is None:
            short.append(f"{role}: not trained (no {Workdir(role).run_config})")
            continue
        steps, batch, seq = config["train"]["steps"], config["train"]["batch_size"], config["data"]["seq_len"]
        planned = full["train"][role]
        if steps < planned["steps"] or batch < planned["batch_size"] or seq < planned["seq_len"]:
            smaller.append(f"{role}: {steps} steps of {batch} × {seq} tokens "
                           f"(full: {planned['steps']} steps of {planned['batch_size']} × {planned['seq_len']})")
        reached = max(train["metrics"], default=0)
        if reached < steps or not train["exported"]:
            short.append(f"{role}: stopped at step {reached} of {steps}"
                         + ("" if train["exported"] else " (no HF export)"))
    ft_configs = {k: v["config"] for k, v in data["ft"].items() if v}
    full_ft = full["finetune"]
    for (task, role), cfg in sorted(ft_configs.items()):
        issues = []
        if len(cfg["seed"]) < len(full_ft["seeds"]):
            issues.append(f"{len(cfg['seed'])} seed(s)")
        if cfg["epochs"] < full_ft["epochs"]:
            issues.append(f"{cfg['epochs']} epoch(s)")
        examples, full_examples = cfg["max_train_examples"], full_ft["max_train_examples"]
        if examples is not None and (full_examples is None or examples < full_examples):
            issues.append(f"{cfg['max_train_examples']} training examples")
        if issues:
            smaller.append(f"{task.upper()} fine-tuning of {role}: " + ", ".join(issues))
    missing = [f"{task}_{role}" for (task, role), v in data["ft"].items() if v is None]
    if missing:
        short.append("fine-tuning results missing: " + ", ".join(missing))
    if data["baselines"] is None:
        short.append(f"reference rows missing (no {BASELINES}: the baselines stage has not run)")
    unprobed = [role for role, record in data["probe"].items() if record is None]
    if unprobed:
        short.append("probes missing for: " + ", ".join(unprobed))
    if data["manifest"]["planned"]["probe"] != full["probe"]:
        smaller.append(f"probes: scripts/probe.py {data['manifest']['planned']['probe']['extra']} "
                       f"(full: {full['probe']['extra'] or 'its defaults'})")
    if not data["mlm"]:
        short.append("MLM evaluation missing (eval/mlm.json)")
    if not all(data["speed"].values()):
        short.append("inference speed missing for: " + ", ".join(r for r, s in data["speed"].items() if not s))
    return smaller, short


# ------------------------------------------------------------------------------ format


def pct(value: float | None, digits: int = 2) -> str:
    return DASH if value is None else f"{100 * value:.{digits}f}"


def mean_std(score: dict[str, float] | None) -> str:
    return DASH if score is None else f"{100 * score['mean']:.2f} ± {100 * score['std']:.2f}"


def ratio(student: float | None, teacher: float | None, as_percent: bool = True) -> str:
    if student is None or teacher is None or teacher == 0 or math.isnan(teacher):
        return DASH
    return f"{100 * student / teacher:.1f} %" if as_percent else f"{student / teacher:.2f} ×"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def results_section(data: dict[str, Any]) -> list[str]:
    values = {role: model_values(data, role) for role in data["roles"]}
    speed = data["speed"].get(data["students"][0])
    speed_label = "seq/s"
    if speed:
        h = headline_speed(speed)
        speed_label = f"seq/s ({h['framework']}, {h['batch']}×{h['length']})"
    header = ["model", "params", "MLM acc %", "MLM ppl", *(c for c, *_ in TEST_COLUMNS), speed_label]
    rows = []
    for role in data["roles"]:
        v = values[role]
        rows.append([
            data["names"][role],
            DASH if v["params"] is None else f"{v['params'] / 1e6:.2f} M",
            pct(v["mlm_acc"]),
            DASH if v["mlm_ppl"] is None else f"{v['mlm_ppl']:.1f}",
            *(mean_std(v[c]) for c, *_ in TEST_COLUMNS),
            DASH if v["speed"] is None else f"{v['speed']:.1f}",
        ])
    references = reference_rows(data["baselines"])
    for system, scores in references.items():
        rows.append([f"*reference: {system}*", "", "", "", *(pct(scores[c]) for c in COLUMNS), ""])
    teacher = values[data["teacher"]]

    retained_rows = []
    for role in data["students"]:
        v = values[role]
        retained_rows.append([
            data["names"][role],
            ratio(v["params"], teacher["params"]),
            ratio(v["mlm_acc"], teacher["mlm_acc"]),
            *(ratio(mean(v[c]), mean(teacher[c])) for c, *_ in TEST_COLUMNS),
            ratio(v["speed"], teacher["speed"], as_percent=False),
        ])
    retained_header = ["student", "params", "MLM acc", *(c for c, *_ in TEST_COLUMNS), "speed-up"]
    mlm_meta = data["mlm_meta"] or {}
    ft_config = next((v["config"] for v in data["ft"].values() if v), None)
    notes = []
    if mlm_meta:
        notes.append(f"MLM: {mlm_meta['num_blocks']} held-out blocks × {mlm_meta['seq_len']} tokens from novels "
                     f"never trained on, {mlm_meta['mlm_probability']:.0%} masked (seed {mlm_meta['seed']}); "
                     "every model sees the same masked positions.")
    if ft_config:
        notes.append(
            f"Fine-tuning: mean ± std over seeds {ft_config['seed']}, at most {ft_config['epochs']} epoch(s), "
            "at the learning rate each model chose on dev ('Fine-tuning protocol' below), training examples ≤ "
            f"{ft_config['max_train_examples'] or 'all'}, dev/test examples ≤ "
            f"{ft_config['max_eval_examples'] or 'all'} (the first ones of each file); the test scores are those "
            "of the epoch with the best dev score.")
    notes += reference_notes(data)
    if speed:
        notes.append(f"Speed: benchmarks/inference.py on {speed['device']}, median of timed calls; "
                     "all settings under 'Inference speed' below.")
    return [
        "## Results", "",
        markdown_table(header, rows), "",
        "Accuracy and F1 in %. What each student retains of the teacher:", "",
        markdown_table(retained_header, retained_rows), "",
        *(f"- {n}" for n in notes), "",
    ]


def reference_notes(data: dict[str, Any]) -> list[str]:
    """What the reference rows are fitted on, and what spaCy's training data share with our test sets."""
    rows = (data["baselines"] or {}).get("rows", [])
    if not rows:
        return []
    fitted = {r["task"]: r["train_sentences"] for r in rows if r["system"] == BASELINE_SYSTEM}
    notes = [f"Reference rows: `scripts/baselines.py` on the same test sentences as fine-tuning; {BASELINE_SYSTEM}: "
             "each word form's most frequent tag in the fine-tuning's training sentences (POS: "
             f"{fitted.get('pos', DASH)}, NER: {fitted.get('ner', DASH)}), an unseen form its lowercased form's, "
             "else the most frequent tag."]
    spacy = {r["system"]: r["training_data"] for r in rows if "training_data" in r}
    for system, sources in spacy.items():
        notes.append(f"{system} tags our gold words. {SPACY_OVERLAP} (this pipeline's meta.json `sources`: "
                     f"{', '.join(sources) or 'none'}).")
    if not spacy:
        notes.append(f"No spaCy row: the baselines stage ran without spaCy (SPACY=off, or not installed: "
                     f"{SPACY_INSTALL}; then delete RUN/.stages/baselines.done and re-run the chain).")
    return notes


def display_name(data: dict[str, Any], role: str) -> str:
    """A main role's name with its size, an ablation's as `name`."""
    return data["names"].get(role, f"ablation `{role}`")


def probe_section(data: dict[str, Any]) -> list[str]:
    """Each model's probe scores per probed layer, the probes' own baseline, and the students' share of the
    teacher's probe at the same position in the probed layers (by default the middle with the middle, the last
    with the last)."""
    models = [role for role, record in data["probe"].items() if record]
    if not models:
        return []
    values = {role: probe_values(data["probe"][role]) for role in models}
    rows = []
    for role in models:
        depth = model_size(data, role, "num_hidden_layers")
        rows += [[display_name(data, role), f"{layer} of {depth}", *(pct(scores[c]) for c in COLUMNS)]
                 for layer, scores in values[role].items()]
    record = data["probe"][models[0]]
    rows.append([f"*reference: {BASELINE_SYSTEM}* (the probes' training sentences)", "",
                 *(pct(v) for v in probe_baseline(record).values())])
    teacher = list(values.get(data["teacher"], {}).values())
    retained = []
    for role in models:
        if role == data["teacher"]:
            continue
        layers = values[role]
        depth = model_size(data, role, "num_hidden_layers")
        for index, (layer, scores) in enumerate(layers.items()):
            reference = teacher[index] if len(teacher) == len(layers) else {}
            retained.append([display_name(data, role), f"{layer} of {depth}",
                             *(ratio(scores[c], reference.get(c)) for c in COLUMNS)])
    config = record["probe_config"]
    sizes = []
    for result in record["results"]:
        if result["layer"] == record["layers"][-1]:
            words = result["words"]
            sizes.append(f"{result['task'].upper()} {result['train_sentences']} training sentences "
                         f"({words['train']} words), {words['dev']} dev words")
    lines = ["## Frozen-encoder probes", "",
             "A softmax regression over one layer's frozen word features (the hidden state at each word's label "
             "piece, layer 0 = the embeddings), fitted on the training sentences, its weight decay and step chosen "
             "on dev, scored on the fine-tuning's test sentences (`scripts/probe.py`): what the representation "
             "holds, without fine-tuning's noise. Accuracy and F1 in %.", "",
             markdown_table(["model", "layer", *COLUMNS], rows), ""]
    if retained:
        lines += ["Share of the teacher's probe score, layer by layer in probing order:", "",
                  markdown_table(["student", "layer", *COLUMNS], retained), ""]
    lines += [f"- Probes: {'; '.join(sizes)}; {config['steps']} steps of {config['batch_size']} words, "
              f"learning rate {config['learning_rate']:g}, weight decays {config['weight_decays']} "
              f"(as probed for {display_name(data, models[0])}).", ""]
    return lines


def comparison_section(data: dict[str, Any]) -> list[str]:
    """Issue #14's acceptance 1 and 4 as measured facts: each model against the most-frequent-tag baseline, the
    distilled student against `KEEPS` of the teacher and against the scratch student."""
    roles, teacher = data["roles"], data["teacher"]
    if len(data["students"]) < 2:
        return []
    recipe, scratch = data["students"][:2]
    fine_tuned = {role: {c: mean(model_values(data, role)[c]) for c in COLUMNS} for role in roles}
    measures = [("fine-tuned (mean over seeds)", fine_tuned,
                 reference_rows(data["baselines"]).get(BASELINE_SYSTEM, dict.fromkeys(COLUMNS)))]
    probed = {role: list(probe_values(data["probe"].get(role)).items()) for role in roles}
    baseline = probe_baseline(next((r for r in data["probe"].values() if r), None))
    for index in range(min(len(layers) for layers in probed.values())):  # positions every model was probed at
        where = " / ".join(f"{probed[r][index][0]} of {model_size(data, r, 'num_hidden_layers')}" for r in roles)
        measures.append((f"probe, layer {where}", {r: probed[r][index][1] for r in roles}, baseline))
    labels = {role: data["manifest"]["roles"][role]["label"] for role in roles}
    rows = []
    for measure, values, reference in measures:
        for c in COLUMNS:
            rows.append([measure, c, pct(reference[c]), *(above(values[r][c], reference[c]) for r in roles),
                         keeps(values[recipe][c], values[teacher][c]), above(values[recipe][c], values[scratch][c])])
    header = ["measure", "test", BASELINE_SYSTEM, *(f"{labels[r]} above it" for r in roles),
              f"{labels[recipe]} / {labels[teacher]}", f"{labels[recipe]} above {labels[scratch]}"]
    return ["## Against the baseline, the teacher and the scratch student", "",
            f"Measured, not judged: whether each model's score is above the {BASELINE_SYSTEM} row (points, in %), "
            f"the share of the teacher's score the {labels[recipe]} keeps (issue #14 asks ≥ {100 * KEEPS:g} %), and "
            f"whether it is above the {labels[scratch]}. Fine-tuned scores are compared with the reference row "
            "fitted on the fine-tuning's training sentences, probes with the one fitted on the probes' (layer: "
            f"{' / '.join(labels[r] for r in roles)}); a gap smaller than the seeds' ± above is within seed noise.",
            "", markdown_table(header, rows), ""]


def protocol_section(data: dict[str, Any]) -> list[str]:
    """The fine-tuning each model got, read from its results.json: rates tried and chosen, seeds, epochs."""
    order = [*data["roles"], *data["ablations"]]
    done = sorted(((key, results) for key, results in data["ft"].items() if results),
                  key=lambda item: (item[0][0] != "pos", order.index(item[0][1])))
    rows, configs = [], []
    for (task, role), results in done:
        config, runs = results["config"], results["runs"]
        configs.append(config)
        tried = ", ".join(f"{r['learning_rate']:g} ({pct(r['dev'][r['primary_metric']])})"
                          for r in results["learning_rate_search"])
        rows.append([task.upper(), display_name(data, role), tried, f"{config['learning_rate']:g}",
                     " ".join(str(seed) for seed in config["seed"]),
                     " / ".join(str(r["epochs_run"]) for r in runs), " / ".join(str(r["best_epoch"]) for r in runs),
                     f"{sum(r['best_epoch'] == r['epochs_run'] for r in runs)} of {len(runs)}"])
    if not rows:
        return []

    def distinct(field):
        return " / ".join(dict.fromkeys(str(c[field]) for c in configs))

    return ["## Fine-tuning protocol", "",
            "Per model and task, from its `ft/TASK_ROLE/results.json`: each learning rate of the grid trained with "
            "the first seed (its best dev score, %), the one kept for every seed, and per seed the epochs run and "
            "the best dev epoch (the test scores are that epoch's). A run whose best epoch is its last was still "
            "improving when it stopped.", "",
            markdown_table(["task", "model", "learning rates tried (best dev %)", "chosen", "seeds",
                            "epochs run per seed", "best epoch per seed", "best at the last epoch"], rows), "",
            f"- At most {distinct('epochs')} epochs, stopping after {distinct('patience')} without a dev gain; "
            f"batch {distinct('batch_size')}, max length {distinct('max_length')} sub-tokens (longer sentences in "
            f"overlapping windows), the label on the {distinct('label_piece')} piece, warm-up ratio "
            f"{distinct('warmup_ratio')}, weight decay {distinct('weight_decay')}.", ""]


def investigation_section(data: dict[str, Any]) -> list[str]:
    """The ablations beside the distilled and scratch students: which ingredient does what."""
    if not data["ablations"]:
        return []
    manifest = data["manifest"]
    recipe, *others = data["students"]  # the distilled student first, the other students last
    described = {recipe: manifest["roles"][recipe]["description"],
                 **{r: manifest["ablations"][r] for r in data["ablations"]},
                 **{r: manifest["roles"][r]["description"] for r in others}}
    teacher = model_values(data, data["teacher"])
    rows, retained = [], []
    for role, what in described.items():
        v = model_values(data, role)
        mlm = data["mlm"].get(role, {})
        config = data["train"][role]["config"]
        steps = DASH if config is None else f"{max(data['train'][role]['metrics'], default=0)} / " \
                                             f"{config['train']['steps']}"
        rows.append([f"`{role}`", what, steps, pct(v["mlm_acc"]), pct(mlm.get("agreement")),
                     *(mean_std(v[c]) for c, *_ in TEST_COLUMNS)])
        retained.append([f"`{role}`", *(ratio(None if v[c] is None else v[c]["mean"],
                                             None if teacher[c] is None else teacher[c]["mean"])
                                       for c, *_ in TEST_COLUMNS)])
    return ["## Investigation: what each ingredient of the distilled student does", "",
            "Each row changes one thing of the distilled student and is trained on the same steps, batches and "
            "teacher, then evaluated and fine-tuned exactly like the main rows (reproduce_mini.sh `ABLATIONS`, "
            "configs/mini.py).", "",
            markdown_table(["student", "what differs", "steps reached / planned", "MLM acc %",
                            "top-1 agreement with teacher %", *(c for c, *_ in TEST_COLUMNS)], rows), "",
            "Share of the teacher's score:", "",
            markdown_table(["student", *(c for c, *_ in TEST_COLUMNS)], retained), ""]


def agreement_section(data: dict[str, Any]) -> list[str]:
    if not data["mlm"]:
        return []
    rows = []
    for role in data["roles"]:
        row = data["mlm"].get(role)
        if row:
            rows.append([data["names"][role], f"{row['loss']:.4f}", f"{row['perplexity']:.2f}", pct(row["accuracy"]),
                         pct(row.get("agreement")), DASH if row.get("kl") is None else f"{row['kl']:.4f}"])
    return ["## Held-out masked LM", "",
            markdown_table(["model", "loss", "perplexity", "accuracy %", "top-1 agreement with teacher %",
                            "KL(teacher ‖ model)"], rows), ""]


def training_section(data: dict[str, Any], curves: str | None) -> list[str]:
    rows = []
    for role in data["roles"]:
        name = data["names"][role]
        train = data["train"][role]
        config, metrics = train["config"], train["metrics"]
        if config is None:
            rows.append([name] + [DASH] * 7)
            continue
        train_steps = [s for s, m in metrics.items() if "loss/total" in m]
        eval_steps = [s for s, m in metrics.items() if "eval/mlm_loss" in m]
        last = metrics[train_steps[-1]] if train_steps else {}
        rows.append([
            name, config["mode"], f"{max(metrics, default=0)} / {config['train']['steps']}",
            f"{config['train']['batch_size']} × {config['data']['seq_len']}",
            DASH if "loss/total" not in last else f"{last['loss/total']:.3f}",
            DASH if "loss/mlm" not in last else f"{last['loss/mlm']:.3f}",
            DASH if not eval_steps else f"{metrics[eval_steps[-1]]['eval/mlm_loss']:.3f}",
            DASH if "perf/tokens_per_s" not in last else f"{last['perf/tokens_per_s']:.0f}",
        ])
    lines = ["## Training runs", "",
             markdown_table(["model", "mode", "steps reached / planned", "batch × seq", "last loss/total",
                             "last loss/mlm", "last eval MLM loss", "tokens/s"], rows), "",
             "`loss/total` is the MLM loss for the teacher and the scratch student, and "
             "0.5·KL·T² + 0.3·cosine + 0.2·MLM for the distilled student; `loss/mlm` compares all three.", ""]
    if curves:
        lines += [f"![training curves]({curves})", ""]
    return lines


def speed_section(data: dict[str, Any]) -> list[str]:
    rows = []
    for role in data["students"]:
        speed = data["speed"].get(role)
        for r in (speed or {}).get("rows", []):
            rows.append([data["names"][role], r["framework"], f"{r['batch']}×{r['length']}", f"{r['teacher']:.1f}",
                         f"{r['student']:.1f}", f"{r['student'] / r['teacher']:.2f} ×"])
    if not rows:
        return []
    return ["## Inference speed", "",
            markdown_table(["student", "framework", "batch×length", "teacher seq/s", "student seq/s",
                            "speed-up"], rows), ""]


def commands_section(data: dict[str, Any]) -> list[str]:
    lines = ["## How it was run", ""]
    if data["invocations"]:
        knobs = data["invocations"][-1]["knobs"]
        lines += ["The last invocation (knobs as environment variables):", "", "```bash",
                  f"{knobs} bash scripts/reproduce_mini.sh", "```", ""]
    latest: dict[str, list[str]] = {}
    for row in data["commands"]:  # a stage re-run after an interruption repeats its commands
        commands = latest.setdefault(row["stage"], [])
        if row["command"] not in commands:
            commands.append(row["command"])
    if latest:
        lines += ["The commands each stage ran:", "", "```bash"]
        for stage, commands in latest.items():
            lines += [f"# {stage}", *commands]
        lines += ["```", ""]
    return lines


def timings_section(data: dict[str, Any]) -> list[str]:
    totals: dict[str, dict[str, Any]] = {}
    for row in data["timings"]:
        if row["status"] == "skipped":
            continue
        t = totals.setdefault(row["stage"], {"seconds": 0.0, "attempts": 0, "status": ""})
        t["seconds"] += float(row["seconds"])
        t["attempts"] += 1
        t["status"] = row["status"]
    if not totals:
        return []
    rows = [[stage, f"{t['seconds'] / 60:.1f}", str(t["attempts"]), t["status"]] for stage, t in totals.items()]
    total = sum(t["seconds"] for t in totals.values())
    rows.append(["**total**", f"**{total / 60:.1f}**", "", ""])
    return ["## Stage timings", "", "Wall time summed over attempts (an interrupted stage resumes on the next "
            "attempt); from `timings.tsv`.", "",
            markdown_table(["stage", "minutes", "attempts", "last status"], rows), ""]


def plot_curves(data: dict[str, Any], path: pathlib.Path) -> bool:
    """loss/total, loss/mlm and eval MLM loss vs step for every run; False if nothing to plot."""
    import matplotlib  # a dev extra, imported only when a report is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = (("loss/total", "training loss/total"), ("loss/mlm", "training MLM loss"),
              ("eval/mlm_loss", "held-out MLM loss (training-time eval)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), constrained_layout=True)
    plotted = False
    for ax, (key, title) in zip(axes, panels, strict=True):
        for role, name in {**data["names"], **{r: f"ablation {r}" for r in data["ablations"]}}.items():
            points = [(s, m[key]) for s, m in data["train"][role]["metrics"].items() if key in m]
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, marker="o" if len(points) < 20 else None, markersize=3, label=name)
                plotted = True
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if plotted:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return plotted


def model_size(data: dict[str, Any], role: str, field: str) -> str:
    """One field of the model a run built (its student_config.json), '?' before the run started."""
    model_config = data["train"][role]["model_config"]
    return "?" if model_config is None else str(model_config[field])


def render(data: dict[str, Any], curves: str | None) -> str:
    smaller, short = size_notes(data)
    teacher, student = data["teacher"], data["students"][0]
    teacher_layers, width = (model_size(data, teacher, f) for f in ("num_hidden_layers", "hidden_size"))
    student_layers = model_size(data, student, "num_hidden_layers")
    lines = ["# Miniature DistilCamemBERT reproduction", "",
             f"A {teacher_layers}-layer × {width} CamemBERT-shaped teacher pre-trained with MLM on French novels, "
             f"a {student_layers}-layer student distilled from it (layers copied from the teacher, 0.5·KL + "
             f"0.3·cosine + 0.2·MLM, T = 2) and the same {student_layers}-layer student trained from scratch with "
             "MLM only for the same steps (DistilBERT's ablation); all three fine-tuned on POS and NER with the "
             "same seeds and budget. Generated by "
             f"`scripts/mini_report.py` from `{data['run']}`; produced by `scripts/reproduce_mini.sh` (issue #6). "
             "Compare teacher and students here with each other, never with the paper's full-scale numbers.", ""]
    if smaller:
        lines += ["> **Toy-sized run — these numbers are not the miniature reproduction's results.** "
                  "It is smaller than the full miniature chain in these ways:", ">"]
        lines += [f"> - {s}" for s in smaller] + [""]
    if short:
        lines += ["> **Incomplete run** — stopped early or missing outputs:", ">"]
        lines += [f"> - {s}" for s in short] + [""]
    if not smaller and not short:
        lines += ["Full-size miniature run: every model trained for its planned steps, every stage complete.", ""]
    if data["notes"]:
        lines += ["## Notes on this run", "", data["notes"].strip(), ""]
    lines += results_section(data)
    lines += probe_section(data)
    lines += comparison_section(data)
    lines += protocol_section(data)
    lines += investigation_section(data)
    lines += agreement_section(data)
    lines += training_section(data, curves)
    lines += speed_section(data)
    lines += commands_section(data)
    lines += timings_section(data)
    lines += ["## Data", "", DATA_SOURCES]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    cli.setup_logging()
    parser = cli.parser(__doc__)
    parser.add_argument("--run", required=True, type=pathlib.Path,
                        help="the RUN directory of scripts/reproduce_mini.sh (with its manifest.json)")
    parser.add_argument("--out", required=True, type=pathlib.Path,
                        help="markdown file to write; the training curves go beside it as OUT_STEM_curves.png")
    args = parser.parse_args(argv)
    if not args.run.is_dir():
        return cli.fail(f"no run directory {args.run}")
    try:
        data = load_run(args.run)
        curves_path = args.out.with_name(f"{args.out.stem}_curves.png")
        curves = curves_path.name if plot_curves(data, curves_path) else None
        text = render(data, curves)
    except KeyError as error:
        return cli.fail(f"{args.run}: an output or the manifest lacks the field {error}")
    except (OSError, ValueError) as error:
        return cli.fail(error)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}" + (f" and {curves_path}" if curves else " (no training curves to plot)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
