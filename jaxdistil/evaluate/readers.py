"""Readers for downstream evaluation data: tagged sentences (NER, POS) and text examples.

Every reader returns plain frozen records, so fine-tuning code never sees a file format:
`TaggedSentence` for token classification, `TextExample` for sentence(-pair) classification.
Errors name the file and line, because a malformed line in a 200 000-line file is
otherwise a needle in a haystack.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import pathlib
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from jaxdistil.evaluate.metrics import iob1_to_iob2

PathLike = str | pathlib.Path

TAGGED_FORMATS = ("wikiner", "conllu", "wikineural", "europeana", "columns")
CONLLU_COLUMNS = ("id", "form", "lemma", "upos", "xpos", "feats", "head", "deprel", "deps", "misc")
SENTENCE_FINAL_TOKENS = frozenset({".", "!", "?", "...", "…"})
MAX_SEGMENT_WORDS = 128  # longest sentence cut out of an unsegmented stream (Europeana)
# Header names of a GLUE/FLUE-style classification TSV.
TEXT_COLUMN = "sentence"
LABEL_COLUMN = "label"


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence as words and one tag per word."""

    tokens: list[str]
    tags: list[str]

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.tags):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.tags)} tags")


@dataclass(frozen=True)
class TextExample:
    """One classification example: a text, an optional second text (pair tasks), a label."""

    text: str
    text_pair: str | None
    label: str


# ---------------------------------------------------------------------------- tagged data


def _lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline); utf-8-sig drops a stray BOM."""
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\r\n")


def read_wikiner(path: PathLike, tag_field: int = 2) -> list[TaggedSentence]:
    """WikiNER: one sentence a line, tokens `word|POS|TAG` separated by spaces.

    `tag_field` picks the NER tag (2, default) or the POS tag (1). Blank lines (document
    breaks in the original release) are skipped. The split is from the right, so a word
    that itself contains `|` survives.
    """
    if tag_field not in (1, 2):
        raise ValueError(f"tag_field must be 1 (POS) or 2 (NER), got {tag_field}")
    sentences = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        tokens, tags = [], []
        for item in line.split():
            fields = item.rsplit("|", 2)
            if len(fields) != 3 or not all(fields):
                raise ValueError(f"{path}:{number}: malformed WikiNER token {item!r}; expected word|POS|TAG")
            tokens.append(fields[0])
            tags.append(fields[tag_field])
        sentences.append(TaggedSentence(tokens, tags))
    return sentences


def _column_index(column: int | str) -> int:
    if isinstance(column, int):
        return column
    try:
        return CONLLU_COLUMNS.index(column.lower())
    except ValueError:
        raise ValueError(f"unknown CoNLL-U column {column!r}; expected one of {CONLLU_COLUMNS}") from None


def _read_sentences(path: PathLike, parse: Callable[[int, str], tuple[str, str] | None]) -> list[TaggedSentence]:
    """Sentences of a one-token-a-line file, a blank line ending each sentence.

    `parse(line_number, line)` turns a non-blank line into `(token, tag)`, or None for a
    line that holds no word (a comment, a multi-word token range).
    """
    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, line in _lines(path):
        if not line.strip():
            if tokens:
                sentences.append(TaggedSentence(tokens, tags))
                tokens, tags = [], []
            continue
        parsed = parse(number, line)
        if parsed is not None:
            tokens.append(parsed[0])
            tags.append(parsed[1])
    if tokens:
        sentences.append(TaggedSentence(tokens, tags))
    return sentences


def read_conllu(path: PathLike, column: int | str = "upos") -> list[TaggedSentence]:
    """CoNLL-U (Universal Dependencies): FORM and one tag column, UPOS by default.

    Only syntactic words are kept: comment lines, multi-word token ranges (`1-2 au`) and
    empty nodes (`1.1`) are skipped, so `au` appears as its words `à` + `le` with their tags.
    """
    tag_index = _column_index(column)

    def parse(number: int, line: str) -> tuple[str, str] | None:
        if line.startswith("#"):
            return None
        fields = line.split("\t")
        if len(fields) != len(CONLLU_COLUMNS):
            raise ValueError(f"{path}:{number}: expected 10 tab-separated columns, got {len(fields)}")
        word_id = fields[0]
        if "-" in word_id or "." in word_id:
            return None
        if not word_id.isdigit():
            raise ValueError(f"{path}:{number}: malformed word id {word_id!r}")
        return fields[1], fields[tag_index]

    return _read_sentences(path, parse)


def read_columns(
    path: PathLike,
    token_column: int = 0,
    tag_column: int = -1,
    delimiter: str | None = None,
    comment_prefix: str | None = None,
) -> list[TaggedSentence]:
    """Generic column file: one token a line, blank line between sentences.

    `delimiter=None` splits on any whitespace (CoNLL-2003 style); pass "\\t" for TSV files
    whose tokens may contain spaces. Every non-blank line must have the same number of fields
    as the first one, since a changing count usually means a broken file.
    """
    expected_fields: int | None = None

    def parse(number: int, line: str) -> tuple[str, str] | None:
        nonlocal expected_fields
        if comment_prefix is not None and line.startswith(comment_prefix):
            return None
        fields = line.split(delimiter)
        if expected_fields is None:
            expected_fields = len(fields)
        if len(fields) != expected_fields:
            raise ValueError(
                f"{path}:{number}: expected {expected_fields} columns, got {len(fields)}: {line!r}"
            )
        try:
            return fields[token_column], fields[tag_column]
        except IndexError:
            raise ValueError(
                f"{path}:{number}: no column {token_column} or {tag_column} in {line!r}"
            ) from None

    return _read_sentences(path, parse)


def read_wikineural(path: PathLike) -> list[TaggedSentence]:
    """WikiNEuRal: `index<TAB>token<TAB>IOB2-tag`, blank line between sentences."""
    return read_columns(path, token_column=1, tag_column=2, delimiter="\t")


def split_long_segment(sentence: TaggedSentence, max_words: int = MAX_SEGMENT_WORDS) -> list[TaggedSentence]:
    """Cut a run of words into sentences, never inside an entity.

    A sentence ends after a sentence-final token (`.`, `!`, `?`, `...`) tagged `O`, or after
    the first `O`-tagged word once it holds `max_words` words. Abbreviation dots inside
    entities (`J . Dupont` tagged I-PER) carry an entity tag, so they never cut.
    """
    pieces: list[TaggedSentence] = []
    start = 0
    for index, (token, tag) in enumerate(zip(sentence.tokens, sentence.tags, strict=True)):
        length = index + 1 - start
        outside = tag == "O"
        if outside and (token in SENTENCE_FINAL_TOKENS or length >= max_words):
            pieces.append(
                TaggedSentence(sentence.tokens[start : index + 1], sentence.tags[start : index + 1])
            )
            start = index + 1
    if start < len(sentence.tokens):
        pieces.append(TaggedSentence(sentence.tokens[start:], sentence.tags[start:]))
    return pieces


def read_europeana(path: PathLike, max_words: int = MAX_SEGMENT_WORDS, to_iob2: bool = True) -> list[TaggedSentence]:
    """Europeana Newspapers NER: `token tag` per line, IOB1, (almost) no blank lines.

    The file is one stream of OCR'd newspaper pages, so sentences are recovered with
    `split_long_segment` (sentence-final punctuation tagged `O`, at most `max_words` words
    unless an entity straddles the limit); blank lines, where present, also end a sentence.
    Tags are converted to IOB2 by default, because models fine-tuned on IOB2 data
    (WikiNEuRal) predict `B-` at every entity start, and token accuracy or label-map checks
    against IOB1 gold would count those as errors.
    """
    segments = read_columns(path, token_column=0, tag_column=1, delimiter=None)
    sentences = [piece for segment in segments for piece in split_long_segment(segment, max_words)]
    if to_iob2:
        sentences = [TaggedSentence(s.tokens, iob1_to_iob2(s.tags)) for s in sentences]
    return sentences


def _first_content_lines(path: PathLike, limit: int = 1000) -> tuple[list[str], bool]:
    """Up to `limit` non-blank, non-comment lines, and whether a blank line was seen among them."""
    lines, saw_blank = [], False
    for _, line in _lines(path):
        if not line.strip():
            saw_blank = saw_blank or bool(lines)
        elif not line.startswith("#"):
            lines.append(line)
        if len(lines) >= limit:
            break
    return lines, saw_blank


def guess_tagged_format(path: PathLike) -> str:
    """Guess a format name of `TAGGED_FORMATS` from the file's first lines (extension as tie-break).

    10 tab-separated fields → conllu; `int<TAB>token<TAB>tag` → wikineural; every token
    `a|b|c` → wikiner; two fields → europeana when the extension is `.bio` or no blank line
    appears in the first 1000 lines (an unsegmented stream), else columns.
    """
    lines, saw_blank = _first_content_lines(path)
    if not lines:
        raise ValueError(f"{path}: no content to guess a format from")
    first = lines[0]
    tab_fields = first.split("\t")
    if len(tab_fields) == len(CONLLU_COLUMNS):
        return "conllu"
    if len(tab_fields) == 3 and tab_fields[0].isdigit():
        return "wikineural"
    if all(item.count("|") >= 2 for item in first.split()):
        return "wikiner"
    if len(first.split()) == 2:
        unsegmented = pathlib.Path(path).suffix == ".bio" or not saw_blank
        return "europeana" if unsegmented else "columns"
    if len(first.split()) > 2:
        return "columns"
    raise ValueError(f"{path}: cannot guess the format from {first!r}; pass fmt= explicitly")


def read_tagged(path: PathLike, fmt: str = "auto", **options: Any) -> list[TaggedSentence]:
    """Read tagged sentences in any supported format; `options` go to the format's reader."""
    readers = {
        "wikiner": read_wikiner,
        "conllu": read_conllu,
        "wikineural": read_wikineural,
        "europeana": read_europeana,
        "columns": read_columns,
    }
    if fmt == "auto":
        fmt = guess_tagged_format(path)
    if fmt not in readers:
        raise ValueError(f"unknown format {fmt!r}; expected 'auto' or one of {TAGGED_FORMATS}")
    return readers[fmt](path, **options)


# ------------------------------------------------------------------ classification data


def read_tsv_examples(
    path: PathLike,
    text_column: str = TEXT_COLUMN,
    label_column: str = LABEL_COLUMN,
    pair_column: str | None = None,
    delimiter: str = "\t",
) -> list[TextExample]:
    """Delimited file with a header row naming its columns (GLUE/FLUE/PAWS-X style TSV).

    Quotes are not special (csv.QUOTE_NONE): these files hold raw sentences in which `"`
    is text, and treating it as quoting would glue rows together.
    """
    examples = []
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        wanted = [c for c in (text_column, pair_column, label_column) if c is not None]
        missing = [c for c in wanted if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: no column(s) {missing} in header {reader.fieldnames}")
        for row in reader:
            if None in row.values():  # DictReader pads short rows with None
                raise ValueError(f"{path}:{reader.line_num}: too few fields")
            pair = row[pair_column] if pair_column is not None else None
            examples.append(TextExample(row[text_column], pair, str(row[label_column])))
    return examples


def read_jsonl_examples(
    path: PathLike,
    text_field: str = "text",
    label_field: str = LABEL_COLUMN,
    pair_field: str | None = None,
) -> list[TextExample]:
    """One JSON object a line; labels are turned into strings so every source agrees."""
    examples = []
    for number, line in _lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            pair = str(record[pair_field]) if pair_field is not None else None
            examples.append(TextExample(str(record[text_field]), pair, str(record[label_field])))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{number}: {type(error).__name__}: {error}") from None
    return examples


@dataclass(frozen=True)
class HubTask:
    """Where a classification task lives on the HF Hub and which fields hold text and label."""

    dataset: str  # `datasets.load_dataset` name
    config: str | None
    text_fields: tuple[str, ...]
    label_field: str


HF_TASKS: dict[str, HubTask] = {
    # The three classification tasks reported for DistilCamemBERT, through `datasets`' script
    # loaders (datasets < 4 or a warm cache). datasets >= 4 refuses scripts: the benchmark suite
    # reads the parquet repositories instead (`PARQUET_DATASETS`, `read_parquet_examples`).
    "flue_cls": HubTask("flue", "CLS", ("text",), "label"),
    "pawsx_fr": HubTask("paws-x", "fr", ("sentence1", "sentence2"), "label"),
    "xnli_fr": HubTask("xnli", "fr", ("premise", "hypothesis"), "label"),
}


def examples_from_records(
    records: Iterable[dict[str, Any]],
    text_fields: Sequence[str],
    label_field: str,
    label_names: Sequence[str] | None = None,
) -> list[TextExample]:
    """Turn dict rows into TextExamples; integer labels become names when `label_names` is given."""
    if len(text_fields) not in (1, 2):
        raise ValueError(f"expected one or two text fields, got {list(text_fields)}")
    examples = []
    for record in records:
        label = record[label_field]
        if label_names is not None and isinstance(label, int):
            if not 0 <= label < len(label_names):
                raise ValueError(f"label {label} outside 0..{len(label_names) - 1} ({label_names})")
            label = label_names[label]
        pair = str(record[text_fields[1]]) if len(text_fields) == 2 else None
        examples.append(TextExample(str(record[text_fields[0]]), pair, str(label)))
    return examples


def load_hf_classification(
    name: str,
    config: str | None,
    split: str,
    text_fields: Sequence[str],
    label_field: str,
) -> list[TextExample]:
    """Load a classification split with `datasets` (needs network or a warm HF cache).

    ClassLabel integers become their names, so labels match those of TSV/JSONL files.
    """
    import datasets  # heavy; only users of the Hub path pay for it

    dataset = datasets.load_dataset(name, config, split=split)
    feature = dataset.features.get(label_field)
    label_names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    return examples_from_records(dataset, text_fields, label_field, label_names)


def load_hf_task(task: str, split: str) -> list[TextExample]:
    """Load one of `HF_TASKS` by its short name (what configs refer to)."""
    if task not in HF_TASKS:
        raise ValueError(f"unknown task {task!r}; known: {sorted(HF_TASKS)}")
    hub_task = HF_TASKS[task]
    return load_hf_classification(hub_task.dataset, hub_task.config, split, hub_task.text_fields, hub_task.label_field)


# ------------------------------------------------- parquet repositories, Webis-CLS-10

XNLI_LABELS = ("entailment", "neutral", "contradiction")  # facebook/xnli's ClassLabel names
PAWSX_LABELS = ("0", "1")  # google-research-datasets/paws-x's ClassLabel names (1: paraphrase)
# Jean-Baptiste/wikiner_fr's ner_tags ids. Its tags are IO (no B-): read here as IOB1 `I-X`, so
# seqeval and the tag-scheme check see entities (a bare `LOC` would read as type `OC`).
WIKINER_TAGS = ("O", "I-LOC", "I-PER", "I-MISC", "I-ORG")
HUB_DATASETS_ROOT = "hf://datasets"


class DatasetUnavailableError(OSError):
    """A task's data could not be read from the Hub (offline, refused) or from --dataset-path."""


@dataclass(frozen=True)
class ParquetDataset:
    """A Hub dataset repository stored as parquet: each split's files, relative to the repo root.

    The same relative globs are read under `hf://datasets/<repo>` or under a local copy of the
    repository (`--dataset-path`), so offline users and tests go through the reading code itself.
    """

    repo: str
    split_files: dict[str, str]  # split -> glob relative to the repository root
    text_columns: tuple[str, ...]  # one or two text columns; ("tokens",) for a tagged dataset
    label_column: str
    label_names: tuple[str, ...]  # integer label -> name
    config: str | None  # the Hub config these files make up (None: the only one)
    tagged: bool = False


PARQUET_DATASETS: dict[str, ParquetDataset] = {
    # facebook/xnli: fr/{train,validation,test}-00000-of-00001.parquet (commit 4086fca, "Add fr data files").
    "xnli_fr": ParquetDataset(
        "facebook/xnli",
        {split: f"fr/{split}-*.parquet" for split in ("train", "validation", "test")},
        ("premise", "hypothesis"),
        "label",
        XNLI_LABELS,
        "fr",
    ),
    # google-research-datasets/paws-x: the dataset card's schema (config fr: id, sentence1, sentence2,
    # label with ClassLabel names '0'/'1'; train 49 401, validation 2 000, test 2 000) is checked; the file
    # layout is assumed to be the Hub's script-to-parquet conversion, as facebook/xnli's (not seen here).
    "pawsx_fr": ParquetDataset(
        "google-research-datasets/paws-x",
        {split: f"fr/{split}-*.parquet" for split in ("train", "validation", "test")},
        ("sentence1", "sentence2"),
        "label",
        PAWSX_LABELS,
        "fr",
    ),
    # Jean-Baptiste/wikiner_fr: data/train-00000-of-00001-8a0e6775bf277040.parquet and
    # data/test-00000-of-00001-f042d39bd1dddf20.parquet; no validation split. Its card: columns id, tokens,
    # ner_tags (0 O, 1 LOC, 2 PER, 3 MISC, 4 ORG); train 120 682, test 13 410.
    "wikiner_fr": ParquetDataset(
        "Jean-Baptiste/wikiner_fr",
        {split: f"data/{split}-*.parquet" for split in ("train", "test")},
        ("tokens",),
        "ner_tags",
        WIKINER_TAGS,
        None,
        tagged=True,
    ),
}


def _dataset_files(dataset: ParquetDataset, split: str, dataset_path: PathLike | None) -> tuple[Any, list[str]]:
    """(fsspec filesystem, sorted file paths) of one split, on the Hub or in a local copy."""
    # Lazy: fsspec and huggingface_hub are only needed by users of these datasets.
    import fsspec
    from huggingface_hub import HfFileSystem

    if split not in dataset.split_files:
        raise ValueError(f"{dataset.repo} has no split {split!r}; it has {sorted(dataset.split_files)}")
    pattern = dataset.split_files[split]
    if dataset_path is not None:
        root = pathlib.Path(dataset_path)
        if not root.is_dir():
            raise DatasetUnavailableError(f"--dataset-path {root} is not a directory (a copy of {dataset.repo})")
        files = sorted(str(p) for p in root.glob(pattern))
        filesystem = fsspec.filesystem("file")
        where = f"--dataset-path {root}"
    else:
        where = f"{HUB_DATASETS_ROOT}/{dataset.repo}"
        filesystem = HfFileSystem()
        try:
            files = sorted(filesystem.glob(f"{where}/{pattern}"))
        except Exception as error:  # offline mode, DNS, HTTP 401/404: all mean "not reachable"
            raise DatasetUnavailableError(
                f"cannot read {where}/{pattern} ({type(error).__name__}: {error}); "
                f"download the repository and pass --dataset-path DIR (a directory laid out like {dataset.repo})"
            ) from None
    if not files:
        raise DatasetUnavailableError(
            f"no file matches {pattern} under {where} (expected the layout of {dataset.repo})"
        )
    return filesystem, files


def read_parquet_rows(name: str, split: str, dataset_path: PathLike | None = None) -> list[dict[str, Any]]:
    """Every row of one split of `PARQUET_DATASETS[name]`, from the Hub or from `dataset_path`."""
    import pyarrow.parquet as pq  # heavy; only these datasets need it

    if name not in PARQUET_DATASETS:
        raise ValueError(f"unknown parquet dataset {name!r}; known: {sorted(PARQUET_DATASETS)}")
    dataset = PARQUET_DATASETS[name]
    filesystem, files = _dataset_files(dataset, split, dataset_path)
    wanted = [*dataset.text_columns, dataset.label_column]
    rows: list[dict[str, Any]] = []
    for file in files:
        try:
            with filesystem.open(file, "rb") as handle:
                table = pq.read_table(handle)
        except Exception as error:  # a dropped connection or a file that is not parquet
            raise DatasetUnavailableError(f"cannot read {file} ({type(error).__name__}: {error})") from None
        missing = [c for c in wanted if c not in table.column_names]
        if missing:
            raise ValueError(f"{file}: no column(s) {missing}; it has {table.column_names}")
        rows.extend(table.select(wanted).to_pylist())
    return rows


def read_parquet_examples(
    name: str, split: str, dataset_path: PathLike | None = None
) -> list[TaggedSentence] | list[TextExample]:
    """One split of a `PARQUET_DATASETS` task as TaggedSentences (wikiner) or TextExamples."""
    dataset = PARQUET_DATASETS[name]
    rows = read_parquet_rows(name, split, dataset_path)
    if not dataset.tagged:
        return examples_from_records(rows, dataset.text_columns, dataset.label_column, dataset.label_names)
    names = dataset.label_names
    sentences = []
    for index, row in enumerate(rows):
        ids = row[dataset.label_column]
        if any(not 0 <= i < len(names) for i in ids):
            raise ValueError(f"{dataset.repo}:{split} row {index}: tag id outside 0..{len(names) - 1} in {ids}")
        sentences.append(TaggedSentence(list(row[dataset.text_columns[0]]), [names[i] for i in ids]))
    return sentences


CLS_DOMAINS = ("books", "dvd", "music")
CLS_LABELS = ("negative", "positive")


def _webis_review_bytes(source: PathLike, domain: str, split: str) -> bytes:
    """The bytes of `fr/<domain>/<split>.review` in the Webis-CLS-10 archive or its extracted directory."""
    wanted = f"fr/{domain}/{split}.review"
    path = pathlib.Path(source)
    if path.is_dir():
        found = sorted(p for p in path.rglob(f"{split}.review") if p.as_posix().endswith(wanted))
        if not found:
            raise DatasetUnavailableError(f"no */{wanted} under {path} (an extracted cls-acl10-unprocessed)")
        return found[0].read_bytes()
    if not path.is_file():
        raise DatasetUnavailableError(
            f"FLUE CLS reads the Webis-CLS-10 archive cls-acl10-unprocessed.tar.gz: no file or directory at {path}"
        )
    with tarfile.open(path) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and fnmatch.fnmatch(m.name, f"*{wanted}")]
        if not members:
            raise DatasetUnavailableError(f"{path}: no member */{wanted} (is it cls-acl10-unprocessed.tar.gz?)")
        return archive.extractfile(members[0]).read()


def read_webis_cls(source: PathLike, domain: str, split: str) -> list[TextExample]:
    """FLUE CLS examples of one domain: French Amazon reviews, labelled from their star rating.

    As FLUE prepares them (getalp/Flaubert flue/extract_split_cls.py: `label = 1 if
    int(float(rating)) > 3 else 0  # rating == 3 are already removed`): rating > 3 positive,
    otherwise negative; a stray 3 is skipped rather than called negative. The text is the
    review's <text> (FLUE's dvd regex also sweeps in the title, a quirk not copied here).
    """
    if domain not in CLS_DOMAINS:
        raise ValueError(f"unknown FLUE CLS domain {domain!r}; expected one of {CLS_DOMAINS}")
    where = f"{source}:fr/{domain}/{split}.review"
    try:
        root = ET.fromstring(_webis_review_bytes(source, domain, split))
    except ET.ParseError as error:
        raise ValueError(f"{where}: not well-formed XML ({error})") from None
    examples = []
    for number, item in enumerate(root.iter("item"), start=1):
        rating, text = item.findtext("rating"), item.findtext("text")
        if rating is None or text is None:
            raise ValueError(f"{where}: item {number} has no <rating> or <text>")
        stars = int(float(rating))
        if stars != 3:
            examples.append(TextExample(text.strip(), None, CLS_LABELS[stars > 3]))
    if not examples:
        raise ValueError(f"{where}: no rated reviews")
    return examples


# ---------------------------------------------------------------------------- label vocab


def _labels_of(examples: Iterable[TaggedSentence | TextExample]) -> Iterator[str]:
    for example in examples:
        if isinstance(example, TaggedSentence):
            yield from example.tags
        else:
            yield example.label


def build_label_map(train_examples: Iterable[TaggedSentence | TextExample]) -> dict[str, int]:
    """Label → id from the training data, sorted, so the same data always gives the same ids."""
    labels = sorted(set(_labels_of(train_examples)))
    if not labels:
        raise ValueError("no labels in the training examples")
    return {label: index for index, label in enumerate(labels)}


def check_labels_known(
    examples: Iterable[TaggedSentence | TextExample],
    label_map: dict[str, int],
    source: str,
) -> None:
    """Fail early when dev/test data holds labels the training data never showed.

    A model cannot predict them and they would be silently mapped to nothing; `source`
    (usually the file path) goes into the message with each unseen label and its count.
    """
    unseen = Counter(label for label in _labels_of(examples) if label not in label_map)
    if unseen:
        listed = ", ".join(f"{label!r} ({count}x)" for label, count in sorted(unseen.items()))
        raise ValueError(
            f"{source}: label(s) absent from the training data: {listed}; known labels: {sorted(label_map)}"
        )
