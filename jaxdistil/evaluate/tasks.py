"""Downstream tasks as data: which tasks exist, their splits, and the splits encoded for a model.

A task is `ner` or `pos` (token classification over `TaggedSentence`s) or `cls` (text(-pair)
classification over `TextExample`s). Its splits are read from files (`read_split`) or from
the HF Hub (`hf_task_splits`; the model card's suite: `suite_task_splits`), then
encoded with one label map into arrays
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
    """Arrays of one split (rows padded to its longest row) and the function scoring predictions on it."""

    name: str
    arrays: dict[str, np.ndarray]  # input_ids, attention_mask, labels
    score: Callable[[np.ndarray], dict[str, float]]  # argmax ids (as `labels`) -> metrics
    num_examples: int  # sentences or texts (a long sentence may take several rows)


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


def hold_out(
    examples: Sequence[Example], fraction: float, seed: int = 0, *, stratify: bool = False
) -> tuple[list[Example], list[Example]]:
    """(kept, held out): a seeded `fraction` (at least one) of `examples`, both in their original order.

    With `stratify`, each label is split on its own (FLUE CLS's dev split is per class).
    """
    if stratify:
        groups: dict[str, list[int]] = {}
        for index, example in enumerate(examples):
            groups.setdefault(example.label, []).append(index)
    else:
        groups = {"": list(range(len(examples)))}
    kept, held = [], []
    for offset, indices in enumerate(groups[key] for key in sorted(groups)):
        order = np.random.default_rng(seed + offset).permutation(len(indices))
        cut = len(indices) - max(1, int(fraction * len(indices)))
        kept += [indices[i] for i in order[:cut]]
        held += [indices[i] for i in order[cut:]]
    return [examples[i] for i in sorted(kept)], [examples[i] for i in sorted(held)]


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
    train_part, dev_part = hold_out(train, dev_fraction)
    return Split(f"{task}:train", train_part), Split(f"{task}:train (held out)", dev_part), test


@dataclasses.dataclass(frozen=True)
class SuiteTask:
    """One task of DistilCamemBERT's model-card suite: its kind, where its data is, how dev is made."""

    kind: str  # a `TASKS` key
    data: str  # a `readers.PARQUET_DATASETS` key, or "webis_cls"
    dataset_path_key: str  # the TASK of `--dataset-path TASK=DIR` that serves it
    epochs: int  # the suite's fine-tuning protocol (`finetune.suite_config`)
    dev_fraction: float | None = None  # None: the dataset's own validation split
    domain: str | None = None  # FLUE CLS domain

    @property
    def dataset_id(self) -> str:
        """The Hub id the model card's metadata names (FLUE's for CLS, which has no parquet copy)."""
        return "GETALP/flue" if self.data == "webis_cls" else readers.PARQUET_DATASETS[self.data].repo

    @property
    def dataset_config(self) -> str | None:
        """The Hub config the model card's metadata names (FLUE's `CLS` for the Webis archive)."""
        if self.data == "webis_cls":
            return "CLS"
        return readers.PARQUET_DATASETS[self.data].config

    @property
    def metrics(self) -> tuple[str, ...]:
        """Test metrics the suite reports: seqeval F1 and the card's sub-word F1 for NER, else accuracy."""
        return ("f1", "subword_f1") if self.kind == "ner" else ("accuracy",)


SUITE_TASKS: dict[str, SuiteTask] = {
    # Epochs: FLUE's configs (getalp/Flaubert flue/examples/): 30 on CLS
    # (cls_books_lr5e6_hf_base_uncased.cfg), 10 on XNLI (xnli_lr5e6_xlm_base_cased.cfg), 10 on
    # PAWS-X (assumed as XNLI's; its cfg not read). FLUE has no NER: 3 epochs (HF Trainer's default).
    # wikiner has no validation split: 5 % of train held out (seed 0), as CATIE-AQ's frenchNER did.
    "wikiner_fr": SuiteTask("ner", "wikiner_fr", "wikiner_fr", epochs=3, dev_fraction=0.05),
    # FLUE holds out 20 % of each class of train as dev (extract_split_cls.py, val_ratio=0.2).
    **{
        f"flue_cls_{domain}": SuiteTask("cls", "webis_cls", "flue_cls", epochs=30, dev_fraction=0.2, domain=domain)
        for domain in readers.CLS_DOMAINS
    },
    "pawsx_fr": SuiteTask("cls", "pawsx_fr", "pawsx_fr", epochs=10),
    "xnli_fr": SuiteTask("cls", "xnli_fr", "xnli_fr", epochs=10),
}
# Names that stand for several suite tasks, reported each and averaged (FLUE reports CLS so).
SUITE_GROUPS: dict[str, tuple[str, ...]] = {"flue_cls": tuple(f"flue_cls_{d}" for d in readers.CLS_DOMAINS)}


def expand_suite_tasks(names: Sequence[str]) -> list[str]:
    """Suite task names with groups (`flue_cls`) replaced by their members, order kept."""
    expanded = []
    for name in names:
        members = SUITE_GROUPS.get(name, (name,))
        unknown = [m for m in members if m not in SUITE_TASKS]
        if unknown:
            raise ValueError(f"unknown suite task {name!r}; known: {sorted(SUITE_TASKS) + sorted(SUITE_GROUPS)}")
        expanded += [m for m in members if m not in expanded]
    return expanded


def suite_task_splits(name: str, dataset_path: str | None = None) -> tuple[Split, Split, Split]:
    """(train, dev, test) of a `SUITE_TASKS` task, from the Hub or from a local copy (`dataset_path`).

    FLUE CLS has no Hub copy: `dataset_path` is then the Webis-CLS-10 archive (or its extraction).
    """
    task = SUITE_TASKS[name]

    def read(split: str) -> list[Example]:
        if task.data != "webis_cls":
            return readers.read_parquet_examples(task.data, split, dataset_path)
        if dataset_path is None:
            raise readers.DatasetUnavailableError(
                f"{name} is read from the Webis-CLS-10 archive, which is not on the Hub: "
                "pass --dataset-path flue_cls=PATH/cls-acl10-unprocessed.tar.gz"
            )
        return readers.read_webis_cls(dataset_path, task.domain, split)

    train = read("train")
    test = Split(f"{name}:test", read("test"))
    if task.dev_fraction is None:
        return Split(f"{name}:train", train), Split(f"{name}:validation", read("validation")), test
    kept, held = hold_out(train, task.dev_fraction, stratify=task.kind == "cls")
    return Split(f"{name}:train", kept), Split(f"{name}:train (held out {task.dev_fraction:.0%})", held), test


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
    predicted = alignment.decode_word_predictions(predictions, encoding, id2label, fill_label="O")
    scores = {"accuracy": metrics.token_accuracy(gold, predicted)}
    if task == "ner":
        scores.update(metrics.entity_scores(gold, predicted, scheme=scheme))
        scores.update(metrics.subword_token_scores(*subword_labels(encoding.piece_word_ids, gold, predicted)))
    scores["unscored_words"] = encoding.unscored_words
    return scores


def subword_labels(
    word_ids: np.ndarray, gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> tuple[list[str], list[str]]:
    """(gold, predicted) tag of every sub-word token of every sentence, each its word's.

    The prediction is the word's, read off its labelled sub-token: the head is trained there only
    (alignment), so a later sub-token's own argmax is untrained; a model trained on every
    sub-token, as the DistilCamemBERT NER card's, predicts the word's tag on each of them.
    """
    rows, positions = np.nonzero(np.asarray(word_ids) != alignment.NO_WORD)
    words = [(int(r), int(word_ids[r, p])) for r, p in zip(rows, positions, strict=True)]
    return [gold[r][w] for r, w in words], [predicted[r][w] for r, w in words]


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
    label_piece: alignment.LabelPiece = alignment.DEFAULT_LABEL_PIECE,
) -> EncodedSplit:
    """Tokenise a split (labels checked against `label_map`) and bind its scorer."""
    readers.check_labels_known(split.examples, dict(label_map), split.name)
    id2label = id_to_label(label_map)
    if task_kind(task).tagged:
        encoding = alignment.encode_tagged(split.examples, tokenizer, label_map, max_length, label_piece)
        score = functools.partial(
            _score_tags,
            encoding=encoding,
            gold=[list(s.tags) for s in split.examples],
            id2label=id2label,
            task=task,
            scheme=scheme,
        )
        return EncodedSplit(split.name, encoding.batch(), score, len(split.examples))
    arrays = alignment.encode_texts(split.examples, tokenizer, label_map, max_length)
    score = functools.partial(_score_labels, gold=[e.label for e in split.examples], id2label=id2label)
    return EncodedSplit(split.name, arrays, score, len(split.examples))


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
    label_piece: alignment.LabelPiece = alignment.DEFAULT_LABEL_PIECE,
) -> PreparedData:
    """Labels from all of `train` (before keeping its first `max_train_examples`), then every
    split encoded in rows of at most `max_length` sub-tokens (dev and each test cut to `max_eval_examples`);
    a dev/test label unseen in training raises ValueError naming its split."""
    _check_example_types(task, [train, dev, *tests])
    label_map = readers.build_label_map(train.examples)
    scheme = tag_scheme(train.examples) if task == "ner" else "iob2"

    def encode(split: Split, limit: int | None) -> EncodedSplit:
        examples = Split(split.name, split.examples[:limit])
        return encode_split(examples, task, tokenizer, label_map, max_length, scheme, label_piece)

    return PreparedData(
        label_map,
        encode(train, max_train_examples),
        encode(dev, max_eval_examples),
        [encode(t, max_eval_examples) for t in tests],
    )
