"""Read and clean the text corpus: local `.txt` / `.jsonl` (plain, `.zst`, `.gz`) / `.parquet` files,
or a dataset repository of the Hugging Face Hub.

Everything here yields plain `str` documents, one at a time, so corpora larger than memory
stream straight into the tokenizer. Cleaning is deliberately light (strip, Unicode NFC,
drop empty and too-short documents): the tokenizer's own normaliser does the rest, and
what a model sees at distillation time must match what the teacher's tokenizer expects.

Bad input fails early with a message that names the file and says what to do: a missing
path (`FileNotFoundError`), a binary file or an empty corpus (`ValueError`), each in the
caller's own terms (`SettingNames`: a run config's fields, a script's flags). Undecodable
bytes in otherwise-text files are dropped, counted and warned about where they are first
met, never fatal: web and OCR corpora always have a few; a Latin-1 or cp1252 corpus is read
with its own codec (`ENCODINGS`).

A Hub dataset is read either through `datasets` (its own layout, streaming) or, given the
repository's data files (`data_files`, a glob such as OSCAR-2301's `fr_meta/*.jsonl.zst`),
file by file with the same readers as local files, only the text field decoded: a loading
script beside the data is never run, and metadata whose types vary from record to record
(OSCAR's `quality_warnings`) cannot break the read. The same reader takes a local directory
laid out exactly like the repository. A Hub that cannot be reached, or refuses a gated
repository, and a corrupt compressed file each fail with a message saying what to do.

Held-out text (`plan_holdout`) is whole files when the corpus has enough of them, else a
seeded fraction of the documents: a one-file corpus can still be evaluated on unseen text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import gzip
import itertools
import json
import logging
import pathlib
import random
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import fsspec
import zstandard

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt",)
JSONL_SUFFIXES = (".jsonl", ".jsonl.zst", ".jsonl.gz")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED_SUFFIXES = TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES
# Files read as they are stored, whose head can be sniffed for binary content.
PLAIN_SUFFIXES = (".txt", ".jsonl")

# Compressed bytes read per step from a `.zst` file (local or on the Hub).
_READ_CHUNK_BYTES = 1 << 20

# A Hub dataset id: "name" or "owner/name".
_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")

# How much of a file's head we sniff to tell text from binary, and the thresholds: any NUL
# byte (never in UTF-8 text), or a high share of bytes that are not valid UTF-8.
_SNIFF_BYTES = 8192
_MAX_UNDECODABLE_FRACTION = 0.1

# `surrogateescape` turns each undecodable byte into one lone surrogate U+DC80..U+DCFF:
# exactly one character per bad byte, and valid UTF-8 never decodes to these.
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")

DocBoundary = Literal["line", "paragraph"]

# Text codecs a corpus may be read with. UTF-8 drops (and counts) the bytes it cannot decode;
# the two single-byte codecs of older French text decode every byte (cp1252 all but five).
ENCODINGS = ("utf-8", "latin-1", "cp1252")
DEFAULT_ENCODING = ENCODINGS[0]


@dataclasses.dataclass(frozen=True)
class SettingNames:
    """How the user spells each corpus setting where they give it, so that an error says what
    to change in their own terms: `FLAGS` for scripts/prepare_data.py and
    scripts/train_tokenizer.py, `config_fields("data")` for a run config."""

    paths: str
    text_field: str
    min_chars: str
    encoding: str
    holdout_files: str
    holdout_fraction: str
    seq_len: str
    hf_name: str = ""  # "": the caller cannot read a Hub dataset
    hf_data_files: str = ""  # "": the caller has no such setting
    skip_corrupt_files: str = ""  # "": the caller has no such setting

    @classmethod
    def config_fields(cls, section: str) -> SettingNames:
        """The names of the fields of config section `section`, which are named like ours."""
        return cls(**{field.name: f"{section}.{field.name}" for field in dataclasses.fields(cls)})


FLAGS = SettingNames(paths="--input", text_field="--text-field", min_chars="--min-chars", encoding="--encoding",
                     holdout_files="--holdout-files", holdout_fraction="--holdout-fraction", seq_len="--seq-len",
                     hf_name="--hf-dataset")


class CorruptFileError(OSError):
    """A compressed or parquet corpus file that cannot be read to its end (damaged, truncated)."""


@dataclasses.dataclass
class CorpusStats:
    """Counts gathered while reading, for logs and the data-preparation summary."""

    files: int = 0
    docs_kept: int = 0
    docs_dropped: int = 0
    chars_kept: int = 0
    undecodable_bytes: int = 0
    files_with_undecodable_bytes: list[str] = dataclasses.field(default_factory=list)
    corrupt_files_skipped: list[str] = dataclasses.field(default_factory=list)


def clean_text(text: str, *, min_chars: int = 1) -> str | None:
    """Strips and NFC-normalises `text`; None when shorter than `min_chars` afterwards.

    NFC first, so that "é" written as e + combining accent and as one code point become
    the same tokens; then the length check, in characters of the normalised text.
    """
    text = unicodedata.normalize("NFC", text.strip())
    if len(text) < max(min_chars, 1):
        return None
    return text


def check_encoding(encoding: str, names: SettingNames = FLAGS) -> None:
    """Refuses codecs we cannot read byte line by byte line (UTF-16's newlines are two bytes)."""
    if encoding not in ENCODINGS:
        raise ValueError(f"{names.encoding}={encoding!r} is not a corpus encoding: use one of {ENCODINGS}")


def decode_dropping_errors(raw: bytes, encoding: str = DEFAULT_ENCODING) -> tuple[str, int]:
    """Decodes `raw`, dropping undecodable bytes; returns (text, number of bytes dropped)."""
    try:
        return raw.decode(encoding), 0
    except UnicodeDecodeError:
        escaped = raw.decode(encoding, errors="surrogateescape")
        text, num_bad = _ESCAPED_BYTE.subn("", escaped)
        return text, num_bad


def check_not_binary(path: pathlib.Path, encoding: str = DEFAULT_ENCODING, names: SettingNames = FLAGS) -> None:
    """Raises ValueError when `path` looks binary (NUL bytes, or a head mostly not in `encoding`)."""
    with open(path, "rb") as f:
        head = f.read(_SNIFF_BYTES)
    if b"\x00" in head:
        raise ValueError(
            f"{path} looks like a binary file (it contains NUL bytes); the corpus must be "
            "text (.txt, one document per line) or JSON lines (.jsonl): remove it "
            f"from {names.paths} or convert it to text first."
        )
    if not head:
        return
    # A multi-byte character cut at the sniff boundary costs at most 3 bytes: ignore it.
    _, num_bad = decode_dropping_errors(head, encoding)
    if num_bad > 3 and num_bad / len(head) > _MAX_UNDECODABLE_FRACTION:
        raise ValueError(
            f"{path} looks like a binary or non-{encoding.upper()} file ({num_bad} of its first "
            f"{len(head)} bytes are not valid {encoding.upper()}); convert it to UTF-8 text "
            f"(e.g. `iconv -f latin1 -t utf-8`), set {names.encoding} to its codec, or remove it "
            f"from {names.paths}."
        )


def corpus_suffix(name: str) -> str | None:
    """The corpus file type of a file name (".txt", ".jsonl.zst", ...), None when it is not one."""
    return next((suffix for suffix in SUPPORTED_SUFFIXES if name.endswith(suffix)), None)


def resolve_paths(inputs: Sequence[str | pathlib.Path], names: SettingNames = FLAGS) -> list[pathlib.Path]:
    """Expands files, directories (recursively) and glob patterns into a sorted file list.

    Directories contribute only their corpus files (`SUPPORTED_SUFFIXES`, so a metadata `.tsv`
    next to the texts is ignored); a file named explicitly must have one of those suffixes.
    """
    if isinstance(inputs, (str, pathlib.Path)):
        inputs = [inputs]
    if not inputs:
        raise ValueError(f"no corpus input given: give {names.paths} at least one file, directory or glob.")
    files: list[pathlib.Path] = []
    for item in inputs:
        files.extend(_resolve_one(str(item), names))
    unique = sorted(set(files))
    if not unique:
        raise FileNotFoundError(f"no {'/'.join(SUPPORTED_SUFFIXES)} files found in {list(map(str, inputs))}.")
    return unique


def _resolve_one(item: str, names: SettingNames) -> list[pathlib.Path]:
    path = pathlib.Path(item)
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and corpus_suffix(p.name)]
        if not found:
            raise FileNotFoundError(f"directory {path} holds no {'/'.join(SUPPORTED_SUFFIXES)} files.")
        return found
    if path.is_file():
        if not corpus_suffix(path.name):
            raise ValueError(
                f"{path}: unsupported file type {path.suffix!r}; expected one of "
                f"{SUPPORTED_SUFFIXES} (.txt: one document per line, .jsonl: one JSON "
                "object per line with a text field, compressed or not; .parquet: a text column)."
            )
        return [path]
    if glob.has_magic(item):
        matches = [pathlib.Path(p) for p in glob.glob(item, recursive=True)]
        found = [p for p in matches if p.is_file() and corpus_suffix(p.name)]
        if not found:
            raise FileNotFoundError(f"glob {item!r} matches no {'/'.join(SUPPORTED_SUFFIXES)} files.")
        return found
    raise FileNotFoundError(f"corpus path {path} does not exist (check {names.paths}).")


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


@dataclasses.dataclass(frozen=True)
class Holdout:
    """Which text is held out for evaluation, never trained on.

    Whole files (`eval_files`, disjoint from `train_files`) when the corpus has enough; else
    both sides read every file and `document_fraction` > 0 of the documents, drawn by a
    generator seeded `seed` in reading order, go to evaluation and the rest to training.
    """

    train_files: tuple[pathlib.Path, ...]
    eval_files: tuple[pathlib.Path, ...]
    document_fraction: float = 0.0
    seed: int = 0


def plan_holdout(
    files: Sequence[pathlib.Path], num_files: int, fraction: float, *, seed: int, names: SettingNames = FLAGS
) -> Holdout:
    """Holds out `num_files` whole files (a seeded choice, see `split_holdout_files`), or, when
    that would leave no file for training, the seeded `fraction` of the documents of every file;
    `num_files=0` holds out nothing."""
    files = sorted(files)
    if num_files < 0:
        raise ValueError(f"{names.holdout_files}={num_files}: it must be 0 (no held-out text) or more.")
    if num_files == 0:
        return Holdout(tuple(files), ())
    if num_files < len(files):
        train, held_out = split_holdout_files(files, num_files, seed=seed)
        return Holdout(tuple(train), tuple(held_out))
    if not 0 < fraction < 1:
        raise ValueError(
            f"{names.holdout_files}={num_files} whole files cannot be held out of {len(files)} file(s) with one "
            f"left for training, so documents are held out instead, but {names.holdout_fraction}={fraction} "
            f"is not a fraction between 0 and 1: set it (e.g. 0.05) or give more files."
        )
    counted, whose = ("1 file", "its") if len(files) == 1 else (f"{len(files)} files", "their")
    logger.info("%s: holding out %g %% of %s documents for evaluation (%s=%d whole files would leave none for "
                "training)", counted, fraction * 100, whose, names.holdout_files, num_files)
    return Holdout(tuple(files), tuple(files), fraction, seed)


def _side_of_holdout(
    docs: Iterable[str], holdout: Holdout, *, held_out: bool, names: SettingNames
) -> Iterator[str]:
    """The documents of one side of a document-level holdout: the same seeded draw per document
    on both sides, so the two are disjoint and together are the whole corpus."""
    draws = random.Random(holdout.seed)
    seen = chosen = 0
    for doc in docs:
        seen += 1
        if (draws.random() < holdout.document_fraction) == held_out:
            chosen += 1
            yield doc
    if not chosen:
        side, change = ("held out", "raise") if held_out else ("left for training", "lower")
        raise ValueError(
            f"none of the {seen} documents of {_describe_files(holdout.train_files)} was {side} with "
            f"{names.holdout_fraction}={holdout.document_fraction}: {change} it or give more text."
        )


def iter_holdout_texts(
    holdout: Holdout,
    *,
    held_out: bool,
    max_docs: int | None = None,
    text_field: str = "text",
    min_chars: int = 1,
    doc_boundary: DocBoundary = "line",
    encoding: str = DEFAULT_ENCODING,
    skip_corrupt_files: bool = False,
    stats: CorpusStats | None = None,
    names: SettingNames = FLAGS,
) -> Iterator[str]:
    """Clean documents of the training side of `holdout`, or of its held-out side, at most `max_docs`."""
    files = holdout.eval_files if held_out else holdout.train_files
    options = dict(text_field=text_field, min_chars=min_chars, doc_boundary=doc_boundary, encoding=encoding,
                   skip_corrupt_files=skip_corrupt_files, stats=stats, names=names)
    if not holdout.document_fraction:
        return iter_local_texts(files, max_docs=max_docs, **options)
    side = _side_of_holdout(iter_local_texts(files, **options), holdout, held_out=held_out, names=names)
    return itertools.islice(side, max_docs)


@contextlib.contextmanager
def open_binary(path: Any, fs: Any = None) -> Iterator[Any]:
    """`path` opened for reading bytes: a local file, or a file of the fsspec filesystem `fs` (the Hub's)."""
    with (open(path, "rb") if fs is None else fs.open(path, "rb")) as f:
        yield f


def iter_zstd_chunks(f: Any, path: Any) -> Iterator[bytes]:
    """The decompressed bytes of the zstd stream `f`, frame after frame; CorruptFileError when a frame
    is damaged or the file ends inside one (zstandard's stream reader lets a truncated file end silently)."""
    decompressor = zstandard.ZstdDecompressor()
    frame, in_frame = decompressor.decompressobj(), False
    try:
        while chunk := f.read(_READ_CHUNK_BYTES):
            while chunk:
                in_frame = True
                yield frame.decompress(chunk)
                chunk = b""
                if frame.eof:
                    chunk, frame, in_frame = frame.unused_data, decompressor.decompressobj(), False
    except zstandard.ZstdError as e:
        raise CorruptFileError(f"{path} is not a readable zstd file ({e})") from e
    if in_frame:
        raise CorruptFileError(f"{path} is truncated: it ends inside a zstd frame")


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The lines (with their newline) of a stream of byte chunks."""
    tail = b""
    for chunk in chunks:
        *lines, tail = (tail + chunk).split(b"\n")
        for line in lines:
            yield line + b"\n"
    if tail:
        yield tail


def iter_raw_lines(path: Any, fs: Any = None) -> Iterator[bytes]:
    """The byte lines of a text or JSON-lines file, decompressed from `.zst` / `.gz` as they are read."""
    suffix = corpus_suffix(str(path))
    with open_binary(path, fs) as f:
        if suffix == ".jsonl.zst":
            yield from split_lines(iter_zstd_chunks(f, path))
        elif suffix == ".jsonl.gz":
            try:
                yield from gzip.GzipFile(fileobj=f)
            except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError; truncated: EOFError
                raise CorruptFileError(f"{path} is not a readable gzip file ({e})") from e
        else:
            yield from f


def iter_decoded_lines(
    path: Any, stats: CorpusStats, *, encoding: str = DEFAULT_ENCODING, names: SettingNames = FLAGS, fs: Any = None
) -> Iterator[tuple[int, str]]:
    """Yields (line number, decoded line), dropping and counting undecodable bytes as they come,
    with a warning at the first one of the file (a reader may stop long before its end)."""
    bad_in_file = 0
    for line_no, raw in enumerate(iter_raw_lines(path, fs), start=1):
        text, num_bad = decode_dropping_errors(raw, encoding)
        if num_bad and not bad_in_file:
            stats.files_with_undecodable_bytes.append(str(path))
            logger.warning(
                "%s: line %d has bytes that are not valid %s: they are dropped from this file, and counted. If it "
                "is Latin-1 or Windows-1252 text, set %s to 'latin-1' or 'cp1252'",
                path, line_no, encoding.upper(), names.encoding)
        bad_in_file += num_bad
        stats.undecodable_bytes += num_bad
        yield line_no, text


def iter_txt_documents(lines: Iterable[tuple[int, str]], *, doc_boundary: DocBoundary) -> Iterator[str]:
    """Raw documents of a text file's decoded `lines`: one per line, or one per blank-line-separated paragraph."""
    if doc_boundary == "line":
        for _, line in lines:
            yield line
        return
    if doc_boundary != "paragraph":
        raise ValueError(f"doc_boundary must be 'line' or 'paragraph', got {doc_boundary!r}")
    paragraph: list[str] = []
    for _, line in lines:
        if line.strip():
            paragraph.append(line.strip())
        elif paragraph:
            yield " ".join(paragraph)
            paragraph = []
    if paragraph:
        yield " ".join(paragraph)


def iter_jsonl_documents(
    path: pathlib.Path, lines: Iterable[tuple[int, str]], *, text_field: str, names: SettingNames = FLAGS
) -> Iterator[str]:
    """Raw documents of a JSON-lines file (its decoded `lines`): the `text_field` of each object."""
    for line_no, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{line_no}: invalid JSON ({e.msg}).") from e
        if not isinstance(record, dict) or text_field not in record:
            keys = sorted(record) if isinstance(record, dict) else type(record).__name__
            raise ValueError(
                f"{path}:{line_no}: no field {text_field!r} (found {keys}); give the right "
                f"name with {names.text_field}."
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


def iter_parquet_documents(
    path: Any, *, text_field: str, names: SettingNames = FLAGS, fs: Any = None
) -> Iterator[str]:
    """Raw documents of a parquet file: its `text_field` column only, batch by batch."""
    import pyarrow  # Imported here: only parquet files need it (installed with datasets).
    import pyarrow.parquet

    with open_binary(path, fs) as f:
        try:
            table = pyarrow.parquet.ParquetFile(f)
            schema = table.schema_arrow
            if text_field not in schema.names:
                raise ValueError(f"{path}: no column {text_field!r} (found {schema.names}); give the right "
                                 f"name with {names.text_field}.")
            column_type = schema.field(text_field).type
            if not (pyarrow.types.is_string(column_type) or pyarrow.types.is_large_string(column_type)):
                raise ValueError(f"{path}: column {text_field!r} is {column_type}, not text.")
            for batch in table.iter_batches(columns=[text_field]):
                yield from (value for value in batch.column(0).to_pylist() if value is not None)
        except pyarrow.ArrowException as e:
            raise CorruptFileError(f"{path} is not a readable parquet file ({e})") from e


def iter_file_documents(path: Any, stats: CorpusStats, *, text_field: str, doc_boundary: DocBoundary, encoding: str,
                        names: SettingNames, fs: Any = None) -> Iterator[str]:
    """Raw documents of one corpus file of any supported type, local or in the filesystem `fs`."""
    suffix = corpus_suffix(str(path))
    if suffix in PARQUET_SUFFIXES:
        return iter_parquet_documents(path, text_field=text_field, names=names, fs=fs)
    lines = iter_decoded_lines(path, stats, encoding=encoding, names=names, fs=fs)
    if suffix in JSONL_SUFFIXES:
        return iter_jsonl_documents(path, lines, text_field=text_field, names=names)
    return iter_txt_documents(lines, doc_boundary=doc_boundary)


def iter_files_texts(
    files: Sequence[Any],
    *,
    source: str,
    text_field: str,
    min_chars: int,
    doc_boundary: DocBoundary,
    max_docs: int | None,
    encoding: str,
    skip_corrupt_files: bool,
    stats: CorpusStats,
    names: SettingNames,
    fs: Any = None,
) -> Iterator[str]:
    """Clean documents of `files` in order (`iter_file_texts`), at most `max_docs`, then the counts logged
    (`_finish`, which names `source`; no document at all is an error)."""
    for path in files:
        if max_docs is not None and stats.docs_kept >= max_docs:
            break
        yield from iter_file_texts(path, text_field=text_field, min_chars=min_chars, doc_boundary=doc_boundary,
                                   max_docs=max_docs, encoding=encoding, skip_corrupt_files=skip_corrupt_files,
                                   stats=stats, names=names, fs=fs)
    _finish(stats, source=source, min_chars=min_chars, names=names)


def iter_file_texts(
    path: Any,
    *,
    text_field: str,
    min_chars: int,
    doc_boundary: DocBoundary,
    encoding: str,
    skip_corrupt_files: bool,
    stats: CorpusStats,
    names: SettingNames,
    max_docs: int | None = None,
    fs: Any = None,
) -> Iterator[str]:
    """Clean documents of one corpus file (until `stats.docs_kept` reaches `max_docs`). A corrupt file fails
    the read, naming it, unless `skip_corrupt_files`: then it is skipped with a warning (the documents read
    from it before the damage are kept). An empty file yields nothing: emptiness is the caller's to judge."""
    stats.files += 1
    raw_docs = iter_file_documents(path, stats, text_field=text_field, doc_boundary=doc_boundary,
                                   encoding=encoding, names=names, fs=fs)
    try:
        yield from clean_documents(raw_docs, min_chars=min_chars, stats=stats, max_docs=max_docs)
    except CorruptFileError as e:
        if not skip_corrupt_files:
            how = (f"set {names.skip_corrupt_files}=True to skip such files" if names.skip_corrupt_files
                   else f"remove it from {names.paths}")
            raise CorruptFileError(f"{e}: download it again, or {how}") from e
        logger.warning("skipped a corrupt file: %s", e)
        stats.corrupt_files_skipped.append(str(path))


def iter_local_texts(
    inputs: Sequence[str | pathlib.Path],
    *,
    text_field: str = "text",
    min_chars: int = 1,
    doc_boundary: DocBoundary = "line",
    max_docs: int | None = None,
    encoding: str = DEFAULT_ENCODING,
    skip_corrupt_files: bool = False,
    stats: CorpusStats | None = None,
    names: SettingNames = FLAGS,
) -> Iterator[str]:
    """Clean documents from local corpus files, directories or globs, in order.

    Raises (lazily, as the generator runs) FileNotFoundError for missing paths, ValueError
    for binary files or when nothing usable is left after cleaning, CorruptFileError for a
    damaged compressed or parquet file (see `iter_files_texts`). Pass a `CorpusStats` to
    receive the counts; they are also logged at the end.
    """
    stats = stats if stats is not None else CorpusStats()
    files = check_local_files(inputs, encoding=encoding, names=names)
    yield from iter_files_texts(files, source=_describe_files(files), text_field=text_field, min_chars=min_chars,
                                doc_boundary=doc_boundary, max_docs=max_docs, encoding=encoding,
                                skip_corrupt_files=skip_corrupt_files, stats=stats, names=names)


def check_local_files(
    inputs: Sequence[str | pathlib.Path], *, encoding: str = DEFAULT_ENCODING, names: SettingNames = FLAGS
) -> list[pathlib.Path]:
    """The corpus files of `inputs`, each plain one checked to be text in `encoding`, before any is read."""
    check_encoding(encoding, names)
    files = resolve_paths(inputs, names)
    for path in files:
        if corpus_suffix(path.name) in PLAIN_SUFFIXES:
            check_not_binary(path, encoding, names)
    return files


def _is_network_error(error: BaseException) -> bool:
    """Whether `error` is a connection failure, or huggingface_hub's offline mode (a ConnectionError):
    the HTTP clients it may use (requests, httpx and its forks) name their base classes so."""
    return isinstance(error, (ConnectionError, TimeoutError)) or any(
        cls.__name__ in ("TransportError", "ConnectionError") for cls in type(error).__mro__)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


@contextlib.contextmanager
def hub_errors(name: str, names: SettingNames = FLAGS) -> Iterator[None]:
    """Turns what the Hub refuses, and a Hub that cannot be reached, into one-line errors saying what to do."""
    from huggingface_hub import errors as hub  # Imported here: slow to import, and only Hub reads need it.

    terms = (f"accept its terms on https://huggingface.co/datasets/{name} with your account, then log in "
             "(`hf auth login`) or set HF_TOKEN")
    try:
        yield
    except hub.GatedRepoError as e:
        raise PermissionError(f"the Hub dataset {name} is gated and refused access: {terms}") from e
    except hub.RepositoryNotFoundError as e:
        raise FileNotFoundError(f"no Hub dataset {name} ({names.hf_name}), or it is private or gated and you are "
                                "not logged in (`hf auth login` or HF_TOKEN)") from e
    except hub.HfHubHTTPError as e:
        if getattr(e.response, "status_code", None) not in (401, 403):
            raise
        raise PermissionError(f"the Hub refused access to dataset {name} ({_first_line(e)}): {terms}") from e
    except Exception as e:
        if not _is_network_error(e):
            raise
        raise ConnectionError(
            f"cannot reach the Hugging Face Hub for dataset {name} (offline? {_first_line(e)}): connect, or set "
            f"{names.hf_name} to a local directory laid out exactly like the repository") from e


def dataset_files(
    name: str, data_files: str, *, config: str = "", split: str = "train", names: SettingNames = FLAGS
) -> tuple[Any, list[str], str]:
    """(filesystem, files, where) of the dataset `name`: a local directory laid out like the Hub repository,
    else the Hub repository itself (an fsspec filesystem either way, so one reader reads both), and its
    corpus files matching the glob `data_files` relative to the repository root ("{config}" and "{split}"
    filled in), sorted; other files (a loading script, the card) are never read."""
    from huggingface_hub import HfFileSystem  # Imported here: slow to import, and only Hub reads need it.

    pattern = data_files.format(config=config, split=split)
    root = pathlib.Path(name).expanduser()
    if root.is_dir():
        fs, base, where = fsspec.filesystem("file"), root.resolve().as_posix(), f"directory {root}"
    elif _HUB_ID.fullmatch(name):
        fs, base, where = HfFileSystem(), f"datasets/{name}", f"Hub dataset {name}"
    else:
        raise FileNotFoundError(f"{names.hf_name}={name!r} is neither a directory nor a Hub dataset id "
                                "(owner/name)")
    files = sorted(path for path in fs.glob(f"{base}/{pattern}") if corpus_suffix(path))
    if not files:
        raise FileNotFoundError(f"no {'/'.join(SUPPORTED_SUFFIXES)} files match {pattern!r} in {where}: check "
                                f"{names.hf_data_files or 'the data files'} (and {names.hf_name})")
    return fs, files, where


def iter_hf_texts(
    name: str,
    *,
    config: str | None = None,
    split: str = "train",
    data_files: str = "",
    text_field: str = "text",
    min_chars: int = 1,
    max_docs: int | None = None,
    skip_corrupt_files: bool = False,
    stats: CorpusStats | None = None,
    names: SettingNames = FLAGS,
) -> Iterator[str]:
    """Clean documents of the Hugging Face dataset `name` (a Hub id, or a local copy of its repository).

    With `data_files` (see `dataset_files`), the repository's files are read one after the other with
    the local readers (JSON lines, plain or compressed, or parquet), only `text_field` decoded: the way
    to read a script-based repository such as OSCAR-2301, which `datasets` >= 4 refuses. Without, the
    dataset is streamed by `datasets` (its own layout). Either way nothing lands on disk as a whole.
    """
    stats = stats if stats is not None else CorpusStats()
    with hub_errors(name, names):
        if data_files:
            fs, files, where = dataset_files(name, data_files, config=config or "", split=split, names=names)
            yield from iter_files_texts(files, source=f"{where}: {_describe_files(files)}", text_field=text_field,
                                        min_chars=min_chars, doc_boundary="line", max_docs=max_docs,
                                        encoding=DEFAULT_ENCODING, skip_corrupt_files=skip_corrupt_files,
                                        stats=stats, names=names, fs=fs)
            return
        yield from iter_streamed_texts(name, config=config, split=split, text_field=text_field, min_chars=min_chars,
                                       max_docs=max_docs, stats=stats, names=names)


def iter_streamed_texts(
    name: str,
    *,
    config: str | None,
    split: str,
    text_field: str,
    min_chars: int,
    max_docs: int | None,
    stats: CorpusStats,
    names: SettingNames,
) -> Iterator[str]:
    """Clean documents streamed by `datasets` from the HF dataset `name`."""
    import datasets  # Imported here: slow to import, and only this path needs it.

    dataset = datasets.load_dataset(name, config, split=split, streaming=True)
    columns = getattr(dataset, "column_names", None)
    if columns is not None and text_field not in columns:
        raise ValueError(
            f"HF dataset {name!r} (config {config!r}, split {split!r}) has no column "
            f"{text_field!r}; its columns are {columns}: give one with {names.text_field}."
        )

    def raw_docs() -> Iterator[str]:
        for record in dataset:
            if text_field not in record:
                raise ValueError(
                    f"HF dataset {name!r}: record without field {text_field!r} "
                    f"(found {sorted(record)}); give the right one with {names.text_field}."
                )
            if isinstance(record[text_field], str):
                yield record[text_field]

    stats.files += 1
    yield from clean_documents(raw_docs(), min_chars=min_chars, stats=stats, max_docs=max_docs)
    _finish(stats, source=f"HF dataset {name!r} ({config!r}, {split!r})", min_chars=min_chars, names=names)


def _describe_files(files: Sequence[pathlib.Path], shown: int = 3) -> str:
    """'N file(s) (a, b, c and K more)': names the files without flooding the log."""
    names = ", ".join(str(f) for f in files[:shown])
    more = f" and {len(files) - shown} more" if len(files) > shown else ""
    return f"{len(files)} file(s) ({names}{more})"


def _finish(stats: CorpusStats, *, source: str, min_chars: int, names: SettingNames) -> None:
    """Logs the counts; raises when cleaning left nothing, naming the source."""
    if stats.docs_kept == 0:
        raise ValueError(
            f"empty corpus: no usable text in {source} after cleaning "
            f"({stats.docs_dropped} document(s) dropped as empty or shorter than "
            f"min_chars={min_chars}). Check {names.paths}, {names.text_field} or {names.min_chars}."
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
