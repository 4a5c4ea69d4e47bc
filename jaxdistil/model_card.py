"""The model card (README.md) every export writes, and publishing an export to the HF Hub.

The card is what a Hub visitor reads first, so it carries what `cmarkea/distilcamembert-base`'s
does: YAML metadata (language, licence, datasets, tags, a `model-index` of the benchmark suite's
results), the distillation recipe read from the training workdir, how to use the model with
`pipeline("fill-mask")`, and the DistilCamemBERT and DistilBERT citations.
"""

from __future__ import annotations

import json
import logging
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from jaxdistil.config import ModelConfig
from jaxdistil.convert import save_hf
from jaxdistil.metric_writer import read_rows
from jaxdistil.run_record import read_history, recorded_fields
from jaxdistil.tables import markdown_table
from jaxdistil.workdir import Workdir

log = logging.getLogger(__name__)

LICENSE = "mit"  # camembert-base's and cmarkea/distilcamembert-base's licence
TAGS = ("camembert", "distillation", "jaxdistil", "fill-mask")
CITATIONS = r"""```bibtex
@inproceedings{delestre2022distilcamembert,
  title = {{DistilCamemBERT : une distillation du mod{\`e}le fran{\c c}ais CamemBERT}},
  author = {Delestre, Cyrile and Amar, Abibatou},
  booktitle = {{CAp (Conf{\'e}rence sur l'Apprentissage automatique)}},
  address = {Vannes, France},
  year = {2022},
  url = {https://hal.archives-ouvertes.fr/hal-03674695},
}

@article{sanh2019distilbert,
  title = {DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter},
  author = {Sanh, Victor and Debut, Lysandre and Chaumond, Julien and Wolf, Thomas},
  journal = {arXiv preprint arXiv:1910.01108},
  year = {2019},
}
```"""


class PublishError(RuntimeError):
    """The Hub refused or could not be reached; the message says what was (not) left behind."""


# ------------------------------------------------------------------------------ recipe


def tokens_seen(rows: Sequence[Mapping[str, Any]]) -> int | None:
    """Tokens trained on, from metrics.jsonl: each logged step's `data/tokens` times the steps it stands for."""
    logged = [(int(r["step"]), float(r["data/tokens"])) for r in rows if "data/tokens" in r]
    if not logged:
        return None
    total, previous = 0.0, 0
    for step, tokens in logged:
        total += tokens * (step - previous)
        previous = step
    return int(total)


def hardware_used(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each distinct device set the run's invocations trained on, e.g. '8 × TPU v4 (2 hosts)'."""
    seen: list[str] = []
    for entry in history:
        hw = entry.get("hardware")
        if not hw:
            continue
        hosts = f" ({hw['process_count']} hosts)" if hw["process_count"] > 1 else ""
        text = f"{hw['device_count']} × {hw['device_kind']}{hosts}"
        if text not in seen:
            seen.append(text)
    return seen


def wall_time(history: Sequence[Mapping[str, Any]], planned_steps: int) -> tuple[float | None, int]:
    """(seconds in the training loop summed over the run's invocations, invocations that recorded
    none: killed, or failed before training; their time is missing from the sum)."""
    invocations: list[list[Mapping[str, Any]]] = []
    for entry in history:
        if entry.get("event") in ("started", "resumed"):
            invocations.append([entry])
        elif invocations:
            invocations[-1].append(entry)
    seconds, untimed = None, 0
    for start, *events in invocations:
        timed = [e["seconds"] for e in events if e.get("event") == "trained"]
        if timed:
            seconds = (seconds or 0.0) + sum(timed)
        elif (start.get("resumed_from") or 0) < planned_steps:
            untimed += 1
    return seconds, untimed


def read_recipe(workdir: str | pathlib.Path) -> dict[str, Any]:
    """What the card reports of a run: teacher, layer map, loss weights, temperature, steps, tokens
    seen, hardware and wall time."""
    run = Workdir(workdir)
    fields = recorded_fields(run)
    if fields is None:
        raise FileNotFoundError(f"{run.run_config} not found: is {workdir} a training workdir?")
    student = json.loads(run.student_config.read_text(encoding="utf-8")) if run.student_config.is_file() else {}
    layer_map = list(fields["student.layer_map"]) or None
    rows = read_rows(run)
    history = read_history(run)
    seconds, untimed = wall_time(history, fields["train.steps"])
    return {
        "teacher": fields["teacher.source"],
        "student_layers": student.get("num_hidden_layers", fields["student.num_layers"]),
        "layer_map": layer_map,
        "student_init": fields["student.init"],
        "temperature": fields["loss.temperature"],
        "alpha_distil": fields["loss.alpha_distil"],
        "alpha_cosine": fields["loss.alpha_cosine"],
        "alpha_mlm": fields["loss.alpha_mlm"],
        "steps": rows[-1]["step"] if rows else None,
        "planned_steps": fields["train.steps"],
        "batch_size": fields["train.batch_size"],
        "sequence_length": fields["data.seq_len"],
        "tokens_seen": tokens_seen(rows),
        "tokens_per_s": next((r["perf/tokens_per_s"] for r in reversed(rows) if "perf/tokens_per_s" in r), None),
        "hardware": hardware_used(history),
        "wall_time_s": seconds,
        "untimed_invocations": untimed,
    }


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{seconds:.1f} s"


def _recipe_section(recipe: Mapping[str, Any]) -> str:
    layer_map = recipe["layer_map"]
    layers = ", ".join(map(str, layer_map)) if layer_map else "evenly spread (DistilBERT's rule, first and last kept)"
    steps = recipe["steps"] if recipe["steps"] is not None else "-"
    tokens = f"{recipe['tokens_seen']:,}" if recipe["tokens_seen"] is not None else "-"
    speed = f"{recipe['tokens_per_s']:,.0f}" if recipe["tokens_per_s"] is not None else "-"
    wall = _duration(recipe["wall_time_s"]) if recipe["wall_time_s"] is not None else "-"
    if recipe["untimed_invocations"]:
        wall += (f" (a lower bound: {recipe['untimed_invocations']} invocation(s) recorded no training time, "
                 "killed or failed before training)")
    return "\n".join([
        "## Distillation recipe",
        "",
        f"- teacher: `{recipe['teacher']}`; student: {recipe['student_layers']} layers, "
        + (f"initialised from the teacher's layers {layers}" if recipe["student_init"] == "teacher"
           else "randomly initialised") + f" (`student.init={recipe['student_init']}`)",
        f"- loss: {recipe['alpha_distil']} · KL(student ‖ teacher, T={recipe['temperature']}) · T² + "
        f"{recipe['alpha_cosine']} · cosine(hidden states) + {recipe['alpha_mlm']} · MLM",
        f"- steps trained: {steps} of {recipe['planned_steps']} planned, batch {recipe['batch_size']} × "
        f"{recipe['sequence_length']} tokens; tokens seen: {tokens}; last logged throughput: {speed} tokens/s",
        f"- hardware: {'; '.join(recipe['hardware']) or '-'}; training wall time: {wall}",
    ])


# ------------------------------------------------------------------------------ the card


def eval_results(suite: Mapping[str, Any]) -> list[Any]:
    """`model-index` entries: the student's test score on every suite row."""
    from huggingface_hub import EvalResult  # lazy: only the card and the push need huggingface_hub

    return [
        EvalResult(
            task_type=row["task_type"],
            dataset_type=row["dataset"],
            dataset_name=row["task"],
            dataset_config=row.get("dataset_config"),
            dataset_split="test",
            metric_type=row["metric"],
            metric_name=row["metric_name"],
            metric_value=row["student"],
        )
        for row in suite["results"]
        if row.get("student") is not None
    ]


def _results_section(suite: Mapping[str, Any]) -> str:
    rows = [dict(row, task=row["task"], metric=row["metric_name"]) for row in suite["results"]]
    parts = ["## Evaluation (scripts/benchmark_suite.py)", "", suite.get("protocol", ""), "",
             markdown_table(rows, ("task", "metric", "teacher", "student", "retained_pct"), digits=4)]
    timing = suite.get("inference")
    if timing:
        parts += ["", markdown_table([timing], ("device", "batch_size", "teacher_ms", "student_ms", "speedup"), 2)]
    return "\n".join(parts)


def render_card(
    model_name: str,
    recipe: Mapping[str, Any] | None = None,
    suite: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> str:
    """README.md text: YAML front matter, then description, recipe, usage, results and citations."""
    from huggingface_hub import ModelCardData  # lazy: see eval_results

    results = eval_results(suite) if suite else None
    datasets = sorted({row["dataset"] for row in suite["results"]}) if suite else None
    data = ModelCardData(
        language="fr",
        license=LICENSE,
        library_name="transformers",
        pipeline_tag="fill-mask",
        tags=list(TAGS),
        datasets=datasets,
        base_model=recipe["teacher"] if recipe and "/" in str(recipe["teacher"]) else None,
        model_name=model_name,
        eval_results=results or None,
    )
    name = repo_id or model_name
    teacher = f"`{recipe['teacher']}`" if recipe else "its teacher"
    sections = [
        f"---\n{data.to_yaml()}\n---",
        f"# {model_name}",
        f"A French masked language model distilled from {teacher} with "
        "jaxdistil, following DistilCamemBERT (Delestre & Amar, 2022), itself "
        "DistilBERT's recipe (Sanh et al., 2019) applied to CamemBERT.",
    ]
    if recipe:
        sections.append(_recipe_section(recipe))
    sections.append(
        "## How to use\n\n```python\nfrom transformers import pipeline\n\n"
        f'fill_mask = pipeline("fill-mask", model="{name}")\n'
        'fill_mask("Le camembert est <mask> :)")\n```'
    )
    if suite:
        sections.append(_results_section(suite))
    sections.append("## Citation\n\n" + CITATIONS)
    return "\n\n".join(sections) + "\n"


def write_card(out_dir: str | pathlib.Path, text: str) -> pathlib.Path:
    path = pathlib.Path(out_dir) / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


def write_export(config: ModelConfig, params: Mapping[str, Any], out_dir: str | pathlib.Path, tokenizer: Any = None,
                 *, workdir: str | pathlib.Path | None = None, suite: Mapping[str, Any] | None = None,
                 repo_id: str | None = None) -> pathlib.Path:
    """What every export writes (conversion/to_pytorch.py and the trainer's `export_hf`): the HF
    directory and its model card, with the recipe when the model comes from a training `workdir`."""
    recipe = read_recipe(workdir) if workdir is not None else None  # before writing: a bad workdir writes nothing
    out = save_hf(config, params, out_dir, tokenizer)
    write_card(out, render_card(model_name(out, workdir, repo_id), recipe, suite, repo_id=repo_id))
    return out


def model_name(out: pathlib.Path, workdir: str | pathlib.Path | None, repo_id: str | None) -> str:
    """The card's title: the Hub repository's name, else the export directory's, except that a
    workdir's own export `hf/` is named after the workdir."""
    if repo_id:
        return repo_id.split("/")[1]
    if workdir is not None and out.resolve() == Workdir(workdir).hf_export.resolve():
        return Workdir(workdir).root.resolve().name
    return out.resolve().name


# ------------------------------------------------------------------------------ publish


def push_to_hub(folder: str | pathlib.Path, repo_id: str, private: bool = False, api: Any = None) -> str:
    """Upload an export as one commit (all files or none); returns the commit URL.

    The token comes from `HF_TOKEN` or `hf auth login`, as huggingface_hub reads it. A repository
    this call created is deleted again when the upload fails, so nothing is left half-published.
    """
    from huggingface_hub import HfApi  # lazy: see eval_results

    api = api or HfApi()
    created = False
    try:
        created = not api.repo_exists(repo_id)
        api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload from jaxdistil")
    except Exception as error:  # HTTP, auth, offline mode, DNS: all end the same way for the user
        left = "nothing was uploaded"
        if created:
            try:
                api.delete_repo(repo_id)
            except Exception:  # the original error is what the user needs to see
                left = f"the empty repository {repo_id} may remain"
        reason = f"{type(error).__name__}: {error}"
        raise PublishError(f"could not publish {folder} to {repo_id} ({reason}); {left}") from None
    log.info("published %s to %s", folder, repo_id)
    return str(getattr(commit, "commit_url", commit))
