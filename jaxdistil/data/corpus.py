"""Read and clean the text corpus: local `.txt` / `.jsonl` files, or an HF dataset.

Everything here yields plain `str` documents, one at a time, so corpora larger than memory
stream straight into the tokenizer. Cleaning is deliberately light (strip, Unicode NFC,
drop empty and too-short documents): the tokenizer's own normaliser does the rest, and
what a model sees at distillation time must match what the teacher's tokenizer expects.

Bad input fails early with a message that names the file and says what to do: a missing
path (`FileNotFoundError`), a binary file or an empty corpus (`ValueError`). Undecodable
bytes in otherwise-text files are dropped and counted, never fatal: web and OCR corpora
always have a few.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import pathlib
import random
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt",)
JSONL_SUFFIXES = (".jsonl",)
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES

# How much of a file's head we sniff to tell text from binary, and the thresholds: any NUL
# byte (never in UTF-8 text), or a high share of bytes that are not valid UTF-8.
_SNIFF_BYTES = 8192
_MAX_UNDECODABLE_FRACTION = 0.1

# `surrogateescape` turns each undecodable byte into one lone surrogate U+DC80..U+DCFF:
# exactly one character per bad byte, and valid UTF-8 never decodes to these.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")

DocBoundary = Literal["line", "paragraph"]


@dataclasses.dataclass
class CorpusStats:
    """Counts gathered while reading, for logs and the data-preparation summary."""

    files: int = 0
    docs_kept: int = 0
    docs_dropped: int = 0
    chars_kept: int = 0
    undecodable_bytes: int = 0
    files_with_undecodable_bytes: list[str] = dataclasses.field(default_factory=list)


def clean_text(text: str, *, min_chars: int = 1) -> str | None:
    """Strips and NFC-normalises `text`; None when shorter than `min_chars` afterwards.

    NFC first, so that "é" written as e + combining accent and as one code point become
    the same tokens; then the length check, in characters of the normalised text.
    """
    text = unicodedata.normalize("NFC", text.strip())
    if len(text) < max(min_chars, 1):
        return None
    return text


def decode_utf8_dropping_errors(raw: bytes) -> tuple[str, int]:
    """Decodes UTF-8, dropping undecodable bytes; returns (text, number of bytes dropped)."""
    try:
        return raw.decode("utf-8"), 0
    except UnicodeDecodeError:
        escaped = raw.decode("utf-8", errors="surrogateescape")
        text, num_bad = _ESCAPED_BYTE.subn("", escaped)
        return text, num_bad


def check_not_binary(path: pathlib.Path) -> None:
    """Raises ValueError when `path` looks binary (NUL bytes or mostly non-UTF-8 head)."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if b"\x00" in head:
        raise ValueError(
            f"{path} looks like a binary file (it contains NUL bytes); the corpus must be "
            "UTF-8 text (.txt, one document per line) or JSON lines (.jsonl): remove it "
            "from --input or convert it to text first."
        )
    if not head:
        return
    # A multi-byte character cut at the sniff boundary costs at most 3 bytes: ignore it.
    _, num_bad = decode_utf8_dropping_errors(head)
    if num_bad > 3 and num_bad / len(head) > _MAX_UNDECODABLE_FRACTION:
        raise ValueError(
            f"{path} looks like a binary or non-UTF-8 file ({num_bad} of its first "
            f"{len(head)} bytes are not valid UTF-8); convert it to UTF-8 text "
            "(e.g. `iconv -f latin1 -t utf-8`) or remove it from the inputs."
        )


def resolve_paths(inputs: Sequence[str | pathlib.Path]) -> list[pathlib.Path]:
    """Expands files, directories (recursively) and glob patterns into a sorted file list.

    Directories contribute only their `.txt` / `.jsonl` files (so a metadata `.tsv` next to
    the texts is ignored); a file named explicitly must have one of those suffixes.
    """
    if isinstance(inputs, (str, pathlib.Path)):
        inputs = [inputs]
    if not inputs:
        raise ValueError("no corpus input given: pass at least one file, directory or glob.")
    files: list[pathlib.Path] = []
    for item in inputs:
        files.extend(_resolve_one(str(item)))
    unique = sorted(set(files))
    if not unique:
        raise FileNotFoundError(f"no {'/'.join(SUPPORTED_SUFFIXES)} files found in {list(map(str, inputs))}.")
    return unique


def _resolve_one(item: str) -> list[pathlib.Path]:
    path = pathlib.Path(item)
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and p.suffix in SUPPORTED_SUFFIXES]
        if not found:
            raise FileNotFoundError(f"directory {path} holds no {'/'.join(SUPPORTED_SUFFIXES)} files.")
        return found
    if path.is_file():
        if path.suffix not in SUPPORTED_SUFFIXES:
            raise ValueError(
                f"{path}: unsupported file type {path.suffix!r}; expected one of "
                f"{SUPPORTED_SUFFIXES} (.txt: one document per line, .jsonl: one JSON "
                "object per line with a text field)."
            )
        return [path]
    if glob.has_magic(item):
        matches = [pathlib.Path(p) for p in glob.glob(item, recursive=True)]
        found = [p for p in matches if p.is_file() and p.suffix in SUPPORTED_SUFFIXES]
        if not found:
            raise FileNotFoundError(f"glob {item!r} matches no {'/'.join(SUPPORTED_SUFFIXES)} files.")
        return found
    raise FileNotFoundError(f"corpus path {path} does not exist (check --input).")


def split_holdout_files(
    files: Sequence[pathlib.Path], num_holdout: int, *, seed: int = 0
) -> tuple[list[pathlib.Path], list[pathlib.Path]]:
    """Splits whole files into (train, holdout), so no held-out document leaks into training.

    A seeded choice rather than "the last k files": sorted names often group one author
    or one source, and a held-out set should look like the training set.
    """
    if num_holdout < 0 or num_holdout >= len(files):
        raise ValueError(
            f"cannot hold out {num_holdout} of {len(files)} files: at least one file must "
            "remain for training."
        )
    holdout = set(random.Random(seed).sample(sorted(files), num_holdout))
    train = [f for f in sorted(files) if f not in holdout]
    return train, sorted(holdout)


def _iter_raw_lines(path: pathlib.Path, stats: CorpusStats) -> Iterator[tuple[int, str]]:
    """Yields (line number, decoded line), dropping and counting undecodable bytes."""
    bad_in_file = 0
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            text, num_bad = decode_utf8_dropping_errors(raw)
            bad_in_file += num_bad
            yield line_no, text
    if bad_in_file:
        stats.undecodable_bytes += bad_in_file
        stats.files_with_undecodable_bytes.append(str(path))
        logger.warning("%s: dropped %d undecodable (non-UTF-8) bytes", path, bad_in_file)


def iter_txt_documents(path: pathlib.Path, *, doc_boundary: DocBoundary, stats: CorpusStats) -> Iterator[str]:
    """Raw documents of a text file: one per line, or one per blank-line-separated paragraph."""
    if doc_boundary == "line":
        for _, line in _iter_raw_lines(path, stats):
            yield line
        return
    if doc_boundary != "paragraph":
        raise ValueError(f"doc_boundary must be 'line' or 'paragraph', got {doc_boundary!r}")
    paragraph: list[str] = []
    for _, line in _iter_raw_lines(path, stats):
        if line.strip():
            paragraph.append(line.strip())
        elif paragraph:
            yield " ".join(paragraph)
            paragraph = []
    if paragraph:
        yield " ".join(paragraph)


def iter_jsonl_documents(path: pathlib.Path, *, text_field: str, stats: CorpusStats) -> Iterator[str]:
    """Raw documents of a JSON-lines file: the `text_field` of each object."""
    for line_no, line in _iter_raw_lines(path, stats):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line_no}: invalid JSON ({e.msg}).") from e
        if not isinstance(record, dict) or text_field not in record:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(
                f"{path}:{line_no}: no field {text_field!r} (found {keys}); pass the right "
                "name with --text-field."
            )
        value = record[text_field]
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{path}:{line_no}: field {text_field!r} is a {type(value).__name__}, not text.")
        yield value


def clean_documents(
    raw_docs: Iterable[str],
    *,
    min_chars: int,
    stats: CorpusStats,
    max_docs: int | None = None,
) -> Iterator[str]:
    """Cleans raw documents, counting kept and dropped ones, stopping after `max_docs`."""
    for raw in raw_docs:
        if max_docs is not None and stats.docs_kept >= max_docs:
            return
        text = clean_text(raw, min_chars=min_chars)
        if text is None:
            stats.docs_dropped += 1
            continue
        stats.docs_kept += 1
        stats.chars_kept += len(text)
        yield text


def iter_local_texts(
    inputs: Sequence[str | pathlib.Path],
    *,
    text_field: str = "text",
    min_chars: int = 1,
    doc_boundary: DocBoundary = "line",
    max_docs: int | None = None,
    stats: CorpusStats | None = None,
) -> Iterator[str]:
    """Clean documents from local `.txt` / `.jsonl` files, directories or globs, in order.

    Raises (lazily, as the generator runs) FileNotFoundError for missing paths, ValueError
    for binary files or when nothing usable is left after cleaning. Pass a `CorpusStats`
    to receive the counts; they are also logged at the end.
    """
    stats = stats if stats is not None else CorpusStats()
    files = resolve_paths(inputs)
    for path in files:
        check_not_binary(path)
    for path in files:
        if max_docs is not None and stats.docs_kept >= max_docs:
            break
        stats.files += 1
        if path.suffix in JSONL_SUFFIXES:
            raw_docs = iter_jsonl_documents(path, text_field=text_field, stats=stats)
        else:
            raw_docs = iter_txt_documents(path, doc_boundary=doc_boundary, stats=stats)
        yield from clean_documents(raw_docs, min_chars=min_chars, stats=stats, max_docs=max_docs)
    _finish(stats, source=_describe_files(files), min_chars=min_chars)


def iter_hf_texts(
    name: str,
    *,
    config: str | None = None,
    split: str = "train",
    text_field: str = "text",
    min_chars: int = 1,
    max_docs: int | None = None,
    stats: CorpusStats | None = None,
) -> Iterator[str]:
    """Clean documents streamed from a Hugging Face dataset (needs the network or the cache).

    Streaming, so a multi-hundred-GB corpus (e.g. OSCAR, CamemBERT's) never lands on disk
    as a whole.
    """
    import datasets  # Imported here: slow to import, and only this path needs it.

    stats = stats if stats is not None else CorpusStats()
    dataset = datasets.load_dataset(name, config, split=split, streaming=True)
    columns = getattr(dataset, "column_names", None)
    if columns is not None and text_field not in columns:
        raise ValueError(
            f"HF dataset {name!r} (config {config!r}, split {split!r}) has no column "
            f"{text_field!r}; its columns are {columns}: pass one with --text-field."
        )

    def raw_docs() -> Iterator[str]:
        for record in dataset:
            if text_field not in record:
                raise ValueError(
                    f"HF dataset {name!r}: record without field {text_field!r} "
                    f"(found {sorted(record)}); pass the right one with --text-field."
                )
            if isinstance(record[text_field], str):
                yield record[text_field]

    stats.files += 1
    yield from clean_documents(raw_docs(), min_chars=min_chars, stats=stats, max_docs=max_docs)
    _finish(stats, source=f"HF dataset {name!r} ({config!r}, {split!r})", min_chars=min_chars)


def _describe_files(files: Sequence[pathlib.Path], shown: int = 3) -> str:
    """'N file(s) (a, b, c and K more)': names the files without flooding the log."""
    names = ", ".join(str(f) for f in files[:shown])
    more = f" and {len(files) - shown} more" if len(files) > shown else ""
    return f"{len(files)} file(s) ({names}{more})"


def _finish(stats: CorpusStats, *, source: str, min_chars: int) -> None:
    """Logs the counts; raises when cleaning left nothing, naming the source."""
    if stats.docs_kept == 0:
        raise ValueError(
            f"empty corpus: no usable text in {source} after cleaning "
            f"({stats.docs_dropped} document(s) dropped as empty or shorter than "
            f"min_chars={min_chars}). Check the inputs, --text-field or --min-chars."
        )
    logger.info(
        "read %s: kept %d documents (%d chars), dropped %d empty/short",
        source,
        stats.docs_kept,
        stats.chars_kept,
        stats.docs_dropped,
    )
    if stats.undecodable_bytes:
        logger.warning(
            "dropped %d undecodable bytes in total, in %s",
            stats.undecodable_bytes,
            stats.files_with_undecodable_bytes,
        )
