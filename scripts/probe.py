r"""Frozen-encoder probes: a linear classifier over a model's middle- and last-layer word features.

For POS (Sequoia train, chosen on Sequoia dev, tested on Sequoia and GSD test) and NER
(WikiNEuRal val.conllu minus a held-out share as dev, tested on test.conllu). The encoder is
never trained: a softmax regression per layer (jaxdistil/evaluate/probe.py) is fitted on its
features, and the most-frequent-tag baseline fitted on the same training sentences is scored on
the same test words beside it. Prints a table and writes OUT/probe.json. Examples:

    # a training workdir's student, both tasks, the default layers
    python scripts/probe.py --model runs/student --out results/probe/student

    # a quick look: the first 500 training sentences, layers 2 and 6 of an HF export
    python scripts/probe.py --model runs/teacher/hf --layers 2 6 --max-train-sentences 500 --out /tmp/probe
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import pathlib
import sys
from collections.abc import Sequence

from jaxdistil import cli
from jaxdistil.checkpoint import load_model_with_tokenizer
from jaxdistil.evaluate import alignment, baselines, probe, readers, tasks

DATA_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
NER_DEV_FRACTION = 0.1  # WikiNEuRal has no dev file: this share of the training sentences (seed 0)
COLUMNS = ("task", "layer", "test", "metric", "probe", "baseline", "dev", "weight_decay", "step")
logger = logging.getLogger("jaxdistil.probe")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = probe.ProbeConfig()
    parser = cli.parser(__doc__)
    parser.add_argument("--model", required=True, help="HF dir / Hub name, params checkpoint or training workdir")
    parser.add_argument("--tokenizer", help="tokenizer dir (none: the model's own)")
    parser.add_argument("--out", required=True, help="directory for probe.json")
    parser.add_argument("--tasks", nargs="+", default=["pos", "ner"], choices=["pos", "ner"], help="tasks to probe")
    parser.add_argument("--layers", nargs="+", type=int,
                        help="hidden-state indices, 0 = embeddings (none: the middle layer and the last)")
    parser.add_argument("--data-dir", default=str(DATA_DIR), help="where the default files below are read from")
    for task, (train, dev, tests) in baselines.REFERENCE_FILES.items():
        name = task.upper()
        parser.add_argument(f"--{task}-train", help=f"{name} training file (none: DATA_DIR/{train})")
        held_out = f"{NER_DEV_FRACTION * 100:g}%% of the training sentences"  # argparse %-formats help texts
        parser.add_argument(f"--{task}-dev", help=f"{name} dev file (none: {f'DATA_DIR/{dev}' if dev else held_out})")
        parser.add_argument(f"--{task}-test", action="append",
                            help=f"{name} test file, repeatable (none: DATA_DIR/ {' and '.join(tests)})")
    parser.add_argument("--max-train-sentences", type=int, help="keep the first N training sentences (none: all)")
    parser.add_argument("--max-test-sentences", type=int, help="keep the first N of dev and each test (none: all)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows (sentences or windows) per feature batch")
    parser.add_argument("--label-piece", default=alignment.DEFAULT_LABEL_PIECE, choices=alignment.LABEL_PIECES,
                        help="the sub-token a word is read at, as in fine-tuning (jaxdistil/evaluate/alignment.py)")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="classifier steps per weight decay")
    parser.add_argument("--eval-every", type=int, default=defaults.eval_every, help="steps between dev scores")
    parser.add_argument("--probe-batch-size", type=int, default=defaults.batch_size, help="words per classifier step")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="AdamW learning rate")
    parser.add_argument("--weight-decays", nargs="+", type=float, default=list(defaults.weight_decays),
                        help="AdamW weight decays tried, the best on dev kept")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="minibatch order")
    return parser.parse_args(argv)


def read_splits(args: argparse.Namespace, task: str):
    """(all training sentences, dev, {test name: sentences}) of `task`, from the options or REFERENCE_FILES."""
    train_file, dev_file, test_files = baselines.REFERENCE_FILES[task]
    root = pathlib.Path(args.data_dir)
    train_path = getattr(args, f"{task}_train") or str(root / train_file)
    dev_path = getattr(args, f"{task}_dev") or (str(root / dev_file) if dev_file else None)
    test_paths = getattr(args, f"{task}_test") or [str(root / t) for t in test_files]
    for path in (train_path, dev_path, *test_paths):
        if path is not None and not pathlib.Path(path).is_file():
            raise FileNotFoundError(f"no file {path}: pass --{task}-train/--{task}-dev/--{task}-test or --data-dir")
    train = list(tasks.read_split(train_path, task).examples)
    if dev_path is None:
        train, dev = tasks.hold_out(train, NER_DEV_FRACTION)
    else:
        dev = list(tasks.read_split(dev_path, task).examples)
    limit = args.max_test_sentences
    tests = {path: list(tasks.read_split(path, task).examples)[:limit] for path in test_paths}
    return train, dev[:limit], tests


def probe_task(args, task, config, params, tokenizer, layers, probe_config) -> list[dict]:
    """Features once per split for every layer, then one probe per layer, beside the baseline row."""
    all_train, dev, tests = read_splits(args, task)
    label_map = readers.build_label_map(all_train)  # from every training sentence, as fine-tuning does
    train = all_train[: args.max_train_sentences]
    for name, sentences in [("dev", dev), *tests.items()]:
        readers.check_labels_known(sentences, label_map, name)
    scheme = tasks.tag_scheme(train) if task == "ner" else "iob2"

    def features(sentences):
        return probe.extract_word_features(config, params, tokenizer, sentences, label_map, layers, args.batch_size,
                                           args.label_piece)

    logger.info("%s: features of %d train, %d dev sentences and %d test file(s), layers %s",
                task, len(train), len(dev), len(tests), list(layers))
    train_words, dev_words = features(train), features(dev)
    test_words = {name: features(sentences) for name, sentences in tests.items()}
    lexicon = baselines.fit_lexicon(train)
    reference = {
        name: baselines.most_frequent_tag_row(task, lexicon, tests[name], scheme, words.piece_counts)
        for name, words in test_words.items()
    }
    id2label = tasks.id_to_label(label_map)
    results = []
    for layer in layers:
        fitted = probe.probe_layer(task, layer, train_words, dev_words, test_words, id2label, scheme, probe_config)
        logger.info("%s layer %d: best dev %s", task, layer, fitted["best"])
        results.append({
            "task": task, **fitted, "baseline": reference, "train_sentences": len(train),
            "words": {"train": len(train_words.labels), "dev": len(dev_words.labels),
                      **{name: len(w.labels) for name, w in test_words.items()}},
            "windowed_sentences": {"train": train_words.windowed_sentences,
                                   **{name: w.windowed_sentences for name, w in test_words.items()}},
            "featureless_words": {"train": train_words.featureless_words,
                                  **{name: w.featureless_words for name, w in test_words.items()}},
            "label_piece": args.label_piece,
        })
    return results


def table_rows(results: Sequence[dict]) -> list[dict]:
    rows = []
    for result in results:
        metric = result["metric"]
        for name, scores in result["tests"].items():
            rows.append({
                "task": result["task"], "layer": result["layer"], "test": pathlib.Path(name).name, "metric": metric,
                "probe": scores[metric], "baseline": result["baseline"][name][metric],
                "dev": result["best"]["dev"], "weight_decay": result["best"]["weight_decay"],
                "step": result["best"]["step"],
            })
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    probe_config = probe.ProbeConfig(args.steps, args.eval_every, args.probe_batch_size, args.learning_rate,
                                     tuple(args.weight_decays), args.seed)
    try:
        (config, params), tokenizer = load_model_with_tokenizer(args.model, args.tokenizer)
        layers = tuple(args.layers) if args.layers else probe.default_layers(config)
        results = [r for task in args.tasks
                   for r in probe_task(args, task, config, params, tokenizer, layers, probe_config)]
    except (OSError, ValueError) as error:
        return cli.fail(error)
    print(cli.format_table(table_rows(results), COLUMNS))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": args.model, "model_config": cli.describe_model(config, params), "layers": list(layers),
              "probe_config": dataclasses.asdict(probe_config), "results": results}
    (out / "probe.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
