"""Downstream tasks as data: which tasks exist, their splits, and the splits encoded for a model.

A task is `ner` or `pos` (token classification over `TaggedSentence`s) or `cls` (text(-pair)
classification over `TextExample`s). Its splits are read from files (`read_split`) or from
the HF Hub (`hf_task_splits`), then encoded with one label map into fixed-shape arrays
{input_ids, attention_mask, labels} (labels per token or per example, IGNORE_INDEX where
there is nothing to learn), each bound to the function that scores predictions on it at
word or example level (`prepare_data`). Fitting a model to them is `evaluate.finetune`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxdistil.evaluate import alignment, metrics, readers
from jaxdistil.evaluate.readers import TaggedSentence, TextExample

Example = TaggedSentence | TextExample


@dataclasses.dataclass(frozen=True)
class TaskKind:
    """What differs between tasks: the head, the metric that selects the best epoch, the examples."""

    head: str  # a `convert.HEAD_ARCHITECTURES` key
    primary_metric: str
    tagged: bool  # TaggedSentence examples (else TextExample)


TASKS: dict[str, TaskKind] = {
    "ner": TaskKind("token_classification", "f1", tagged=True),
    "pos": TaskKind("token_classification", "accuracy", tagged=True),
    "cls": TaskKind("sequence_classification", "accuracy", tagged=False),
}


def task_kind(task: str) -> TaskKind:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASKS)}")
    return TASKS[task]


class Split(NamedTuple):
    """Examples and where they came from (a file path), for error messages and reports."""

    name: str
    examples: Sequence[Example]


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    """Fixed-length arrays of one split, and the function scoring predictions on it."""

    name: str
    arrays: dict[str, np.ndarray]  # input_ids, attention_mask, labels
    score: Callable[[np.ndarray], dict[str, float]]  # argmax ids (as `labels`) -> metrics


# ------------------------------------------------------------------------------ reading


def read_split(
    path: str,
    task: str,
    fmt: str = "auto",
    *,
    text_column: str = readers.TEXT_COLUMN,
    pair_column: str | None = None,
    label_column: str = readers.LABEL_COLUMN,
) -> Split:
    """One file as a Split: tagged formats for ner/pos, .tsv/.jsonl for cls.

    POS from WikiNER reads its POS field; CoNLL-U gives UPOS; the other tagged formats
    hold NER tags. The readers name the file and line of malformed input.
    """
    if task_kind(task).tagged:
        options = {}
        resolved = readers.guess_tagged_format(path) if fmt == "auto" else fmt
        if task == "pos" and resolved == "wikiner":
            options["tag_field"] = 1
        examples: Sequence[Example] = readers.read_tagged(path, resolved, **options)
    elif str(path).endswith(".jsonl"):
        examples = readers.read_jsonl_examples(path, text_column, label_column, pair_column)
    else:
        examples = readers.read_tsv_examples(path, text_column, label_column, pair_column)
    if not examples:
        raise ValueError(f"{path}: no examples")
    return Split(str(path), examples)


def hf_task_splits(task: str, dev_fraction: float = 0.1) -> tuple[Split, Split, Split]:
    """(train, dev, test) of a `readers.HF_TASKS` task from the Hub (online or cached).

    FLUE CLS has no validation split: a seeded `dev_fraction` of train is held out as dev
    (MultiFiT, which introduced CLS, also took 10 % of train as its dev set).
    """
    train = readers.load_hf_task(task, "train")
    test = Split(f"{task}:test", readers.load_hf_task(task, "test"))
    try:
        return (
            Split(f"{task}:train", train),
            Split(f"{task}:validation", readers.load_hf_task(task, "validation")),
            test,
        )
    except ValueError as error:
        if "split" not in str(error).lower():
            raise
    order = np.random.default_rng(0).permutation(len(train))
    cut = len(train) - max(1, int(dev_fraction * len(train)))
    train_part = [train[i] for i in sorted(order[:cut])]
    dev_part = [train[i] for i in sorted(order[cut:])]
    return Split(f"{task}:train", train_part), Split(f"{task}:train (held out)", dev_part), test


def tag_scheme(sentences: Sequence[TaggedSentence]) -> metrics.TagScheme:
    """'iob1' when entities mostly start with I- (WikiNER, raw Europeana), else 'iob2'.

    A majority, not a single occurrence: IOB2 corpora hold a few stray I- starts
    (WikiNEuRal's val: 61 against 22 577 B- tags), and IOB1 ones use B- only between
    adjacent same-type entities.
    """
    b_tags = i_starts = 0
    for sentence in sentences:
        previous = "O"
        for tag in sentence.tags:
            b_tags += tag.startswith("B-")
            i_starts += tag.startswith("I-") and previous[2:] != tag[2:]
            previous = tag
    return "iob1" if i_starts > b_tags else "iob2"


# ----------------------------------------------------------------------------- encoding


def id_to_label(label_map: Mapping[str, int]) -> dict[int, str]:
    return {i: label for label, i in label_map.items()}


def _score_tags(
    predictions: np.ndarray,
    *,
    encoding: alignment.TaggedEncoding,
    gold: list[list[str]],
    id2label: Mapping[int, str],
    task: str,
    scheme: metrics.TagScheme,
) -> dict[str, float]:
    """Word-level scores: token accuracy, plus seqeval entity P/R/F1 for NER."""
    predicted = alignment.decode_word_predictions(
        predictions, encoding.word_ids, encoding.num_words, id2label, fill_label="O"
    )
    scores = {"accuracy": metrics.token_accuracy(gold, predicted)}
    if task == "ner":
        scores.update(metrics.entity_scores(gold, predicted, scheme=scheme))
    scores["truncated_words"] = encoding.truncated_words
    return scores


def _score_labels(predictions: np.ndarray, *, gold: list[str], id2label: Mapping[int, str]) -> dict[str, float]:
    predicted = [id2label[int(i)] for i in predictions]
    return {"accuracy": metrics.accuracy(gold, predicted), "macro_f1": metrics.macro_f1(gold, predicted)}


def encode_split(
    split: Split,
    task: str,
    tokenizer: Any,
    label_map: Mapping[str, int],
    max_length: int,
    scheme: metrics.TagScheme = "iob2",
) -> EncodedSplit:
    """Tokenise a split (labels checked against `label_map`) and bind its scorer."""
    readers.check_labels_known(split.examples, dict(label_map), split.name)
    id2label = id_to_label(label_map)
    if task_kind(task).tagged:
        encoding = alignment.encode_tagged(split.examples, tokenizer, label_map, max_length)
        score = functools.partial(
            _score_tags,
            encoding=encoding,
            gold=[list(s.tags) for s in split.examples],
            id2label=id2label,
            task=task,
            scheme=scheme,
        )
        return EncodedSplit(split.name, encoding.batch(), score)
    arrays = alignment.encode_texts(split.examples, tokenizer, label_map, max_length)
    score = functools.partial(_score_labels, gold=[e.label for e in split.examples], id2label=id2label)
    return EncodedSplit(split.name, arrays, score)


def _check_example_types(task: str, splits: Sequence[Split]) -> None:
    """Tagged sentences for ner/pos, text examples for cls: a mix-up is a caller bug."""
    expected = TaggedSentence if task_kind(task).tagged else TextExample
    for split in splits:
        if not split.examples:
            raise ValueError(f"{split.name}: no examples")
        if not isinstance(split.examples[0], expected):
            raise TypeError(
                f"{split.name}: task {task!r} needs {expected.__name__} examples, "
                f"got {type(split.examples[0]).__name__}"
            )


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """A task's splits encoded with one label map (from the whole training set)."""

    label_map: dict[str, int]
    train: EncodedSplit
    dev: EncodedSplit
    tests: list[EncodedSplit]

    @property
    def id2label(self) -> dict[int, str]:
        return id_to_label(self.label_map)


def prepare_data(
    task: str,
    tokenizer: Any,
    train: Split,
    dev: Split,
    tests: Sequence[Split],
    *,
    max_length: int,
    max_train_examples: int | None,
    max_eval_examples: int | None,
) -> PreparedData:
    """Labels from all of `train` (before keeping its first `max_train_examples`), then every
    split encoded to `max_length` sub-tokens (dev and each test cut to `max_eval_examples`);
    a dev/test label unseen in training raises ValueError naming its split."""
    _check_example_types(task, [train, dev, *tests])
    label_map = readers.build_label_map(train.examples)
    scheme = tag_scheme(train.examples) if task == "ner" else "iob2"

    def encode(split: Split, limit: int | None) -> EncodedSplit:
        return encode_split(Split(split.name, split.examples[:limit]), task, tokenizer, label_map, max_length, scheme)

    return PreparedData(
        label_map,
        encode(train, max_train_examples),
        encode(dev, max_eval_examples),
        [encode(t, max_eval_examples) for t in tests],
    )
