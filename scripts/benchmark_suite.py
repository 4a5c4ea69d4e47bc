r"""DistilCamemBERT's model-card suite for a student and its teacher: the card's table, in JSON and markdown.

Fine-tunes each task (wikiner_fr NER, FLUE CLS books/dvd/music, PAWS-X fr, XNLI fr) over several
seeds with one protocol, scores the test sets with the best-on-dev parameters, and prints a table
of teacher, student and the share of the teacher's score the student keeps; then times inference
per example at batch 1 on CPU, as the card does, teacher vs student. Example:

    python scripts/benchmark_suite.py --model distilcamembert-base --teacher camembert-base \
        --dataset-path wikiner_fr=data/wikiner_fr --dataset-path pawsx_fr=data/paws-x \
        --dataset-path xnli_fr=data/xnli --dataset-path flue_cls=data/cls-acl10-unprocessed.tar.gz \
        --out results/suite

Protocol (FLUE's published fine-tuning, getalp/Flaubert flue/examples/*.cfg): lr 5e-6, batch 8,
30 epochs on CLS, 10 on PAWS-X and XNLI, 3 on NER (FLUE has none), AdamW with 10 % warm-up and
linear decay, early stopping on dev (patience 2), mean ± std over seeds 0 1 2. wikiner_fr has no
dev split: 5 % of train is held out (seed 0); FLUE CLS holds out 20 % of each class of train.
NER is reported as seqeval entity F1 and as the card's per-sub-word-token F1.

--dataset-path TASK=DIR reads a local copy laid out like the Hub repository (flue_cls: the
Webis-CLS-10 archive cls-acl10-unprocessed.tar.gz, which is not on the Hub); without it the
Hub is read. OUT/suite.json is what `conversion/to_pytorch.py --results` puts in the model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from jaxdistil import cli
from jaxdistil.checkpoint import load_model_with_tokenizer
from jaxdistil.evaluate import finetune as ft
from jaxdistil.evaluate import lengths, readers, tasks
from jaxdistil.model_card import markdown_table

DEFAULT_TASKS = ("wikiner_fr", "flue_cls", "pawsx_fr", "xnli_fr")
METRIC_NAMES = {"f1": "entity F1 (seqeval)", "subword_f1": "sub-word token F1 (card)", "accuracy": "accuracy"}
TASK_TYPES = {"ner": "token-classification", "cls": "text-classification"}
TABLE_COLUMNS = ("task", "metric", "teacher", "student", "retained_pct")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = cli.parser(__doc__)
    parser.add_argument("--model", required=True, help="the student: HF dir / Hub name, params checkpoint or workdir")
    parser.add_argument("--teacher", help="the teacher, loaded the same way (none: the student alone, no %% retained)")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS),
                        choices=sorted(tasks.SUITE_TASKS) + sorted(tasks.SUITE_GROUPS),
                        help="suite tasks; flue_cls stands for its three domains, reported each and averaged")
    parser.add_argument("--dataset-path", action="append", default=[], metavar="TASK=DIR",
                        help="local copy of a task's Hub repository (flue_cls=the Webis-CLS-10 archive); repeatable")
    parser.add_argument("--out", required=True, type=pathlib.Path, help="directory for suite.json and suite.md")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one fine-tuning per seed and task")
    parser.add_argument("--epochs", type=int, help="most epochs per task (default: the protocol's, per task)")
    parser.add_argument("--lr", type=float, default=ft.SUITE_LEARNING_RATE, help="peak learning rate")
    parser.add_argument("--batch-size", type=int, default=ft.SUITE_BATCH_SIZE, help="training examples per step")
    parser.add_argument("--max-length", type=int,
                        help="sub-tokens per example, specials included (default: the models' longest input)")
    parser.add_argument("--max-train-examples", type=int, help="only the first N training examples (none: all)")
    parser.add_argument("--max-eval-examples", type=int, help="only the first N of dev and test (none: all)")
    parser.add_argument("--timing-examples", type=int, default=100,
                        help="examples of the last task's test set timed one by one per model (0: no timing)")
    return parser.parse_args(argv)


def parse_dataset_paths(items: Sequence[str]) -> dict[str, str]:
    """`TASK=DIR` items as {TASK: DIR}; TASK is a `--dataset-path` key of some suite task."""
    known = {t.dataset_path_key for t in tasks.SUITE_TASKS.values()}
    paths = {}
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or key not in known or not path:
            raise ValueError(f"--dataset-path {item!r}: expected TASK=DIR with TASK one of {sorted(known)}")
        paths[key] = path
    return paths


def mean_test_score(results: Sequence[ft.FinetuneResult], metric: str) -> tuple[float, float]:
    """Mean and std over seeds of `metric` on the (single) test split."""
    summary = ft.summarize(results)
    test = next(name for name in summary if name != "dev")
    return summary[test][metric]["mean"], summary[test][metric]["std"]


def retained(teacher: float | None, student: float) -> float | None:
    return None if teacher is None or teacher == 0 else 100.0 * student / teacher


def score_rows(scores: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per task and metric, and FLUE CLS's domain average after its domains."""
    rows = []
    for name, per_model in scores.items():
        for metric in tasks.SUITE_TASKS[name].metrics:
            teacher = per_model["teacher"][metric]["mean"] if "teacher" in per_model else None
            student = per_model["student"][metric]["mean"]
            rows.append({
                "task": name, "metric": metric, "metric_name": METRIC_NAMES[metric],
                "dataset": tasks.SUITE_TASKS[name].dataset_id, "dataset_config": tasks.SUITE_TASKS[name].dataset_config,
                "task_type": TASK_TYPES[tasks.SUITE_TASKS[name].kind],
                "teacher": teacher, "student": student, "retained_pct": retained(teacher, student),
            })
    for group, members in tasks.SUITE_GROUPS.items():
        domain_rows = [r for r in rows if r["task"] in members]
        if len(domain_rows) == len(members):
            teacher = None if domain_rows[0]["teacher"] is None else float(np.mean([r["teacher"] for r in domain_rows]))
            student = float(np.mean([r["student"] for r in domain_rows]))
            rows.append({**domain_rows[0], "task": f"{group} (mean of {len(members)} domains)",
                         "teacher": teacher, "student": student, "retained_pct": retained(teacher, student)})
    return rows


def inference_ms_per_example(model_dir: str, texts: Sequence[str], max_length: int) -> float:
    """Mean wall time of one forward pass at batch 1 on CPU, PyTorch, as a user of the export runs it."""
    import torch  # heavy optional dependency (the [torch] extra), only for the timing
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    encoded = [tokenizer(t, truncation=True, max_length=max_length, return_tensors="pt") for t in texts]
    with torch.inference_mode():
        for inputs in encoded[:3]:  # warm-up
            model(**inputs)
        start = time.perf_counter()
        for inputs in encoded:
            model(**inputs)
    return 1000.0 * (time.perf_counter() - start) / len(encoded)


def measure_inference(sources: Mapping[str, str], test: tasks.Split, count: int, max_length: int) -> dict | None:
    """Batch-1 CPU time per example of each model on the first `count` test examples; first, so it fails early."""
    if count <= 0:
        return None
    texts = [e.text if isinstance(e, readers.TextExample) else " ".join(e.tokens) for e in test.examples[:count]]
    try:
        ms = {role: inference_ms_per_example(source, texts, max_length) for role, source in sources.items()}
    except OSError as error:
        raise OSError(f"timing loads the models with transformers, which needs HF directories or Hub names "
                      f"({error}); pass --timing-examples 0 to skip it") from None
    return {"device": "cpu", "batch_size": 1, "examples": len(texts), "student_ms": ms["student"],
            "teacher_ms": ms.get("teacher"), "speedup": ms["teacher"] / ms["student"] if "teacher" in ms else None}


def main(argv: Sequence[str] | None = None) -> int:
    cli.setup_logging()
    args = parse_args(argv)
    try:
        dataset_paths = parse_dataset_paths(args.dataset_path)
        names = tasks.expand_suite_tasks(args.tasks)
        sources = {"student": args.model, **({"teacher": args.teacher} if args.teacher else {})}
        models = {role: load_model_with_tokenizer(source) for role, source in sources.items()}
        max_length = lengths.input_length("--max-length", args.max_length,
                                          {sources[role]: m[0][0] for role, m in models.items()})
        splits = {n: tasks.suite_task_splits(n, dataset_paths.get(tasks.SUITE_TASKS[n].dataset_path_key))
                  for n in names}
        timing = measure_inference(sources, splits[names[-1]][2], args.timing_examples, max_length)
        overrides = dict(learning_rate=args.lr, batch_size=args.batch_size, max_length=max_length,
                         max_train_examples=args.max_train_examples, max_eval_examples=args.max_eval_examples)
        if args.epochs:
            overrides["epochs"] = args.epochs
        scores: dict[str, dict[str, Any]] = {}
        runs: dict[str, dict[str, list]] = {}
        bar = tqdm(total=len(names) * len(models) * len(args.seeds), desc="suite", unit="run")
        for name in names:
            train, dev, test = splits[name]
            config = ft.suite_config(name, **overrides)
            scores[name], runs[name] = {}, {}
            for role, (model, tokenizer) in models.items():
                results = []
                for seed in args.seeds:
                    bar.set_description(f"{name} {role} seed {seed}")
                    results.append(ft.finetune(model, tokenizer, tasks.SUITE_TASKS[name].kind, train, dev, [test],
                                               dataclasses.replace(config, seed=seed), progress=True))
                    bar.update()
                scores[name][role] = {m: dict(zip(("mean", "std"), mean_test_score(results, m), strict=True))
                                      for m in tasks.SUITE_TASKS[name].metrics}
                runs[name][role] = [r.metrics for r in results]
        bar.close()
    except (OSError, ValueError, FloatingPointError) as error:
        return cli.fail(error)

    rows = score_rows(scores)
    table_rows = [{**r, "metric": r["metric_name"]} for r in rows]
    print(cli.format_table(table_rows, TABLE_COLUMNS))
    if timing:
        print(cli.format_table([timing], ("device", "batch_size", "teacher_ms", "student_ms", "speedup"), digits=2))
    protocol = (f"Fine-tuning: lr {args.lr}, batch {args.batch_size}, epochs per task "
                f"{ {n: ft.suite_config(n, **overrides).epochs for n in names} }, early stopping on dev, "
                f"seeds {args.seeds}; test scores are means over seeds.")
    report = {"student": args.model, "teacher": args.teacher, "protocol": protocol, "max_length": max_length,
              "results": rows, "scores": scores, "inference": timing, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "suite.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    markdown = [markdown_table(table_rows, TABLE_COLUMNS), "", protocol]
    if timing:
        markdown += ["", markdown_table([timing], ("device", "batch_size", "teacher_ms", "student_ms", "speedup"), 2)]
    (args.out / "suite.md").write_text("\n".join(markdown) + "\n", encoding="utf-8")
    print(f"results in {args.out / 'suite.json'} and {args.out / 'suite.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
