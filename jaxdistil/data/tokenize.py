"""Tokenise documents, pack them into fixed-length RoBERTa blocks, and store them as shards.

Packing follows RoBERTa's FULL-SENTENCES format: documents are tokenised without special
tokens and concatenated into one stream with `</s>` between documents; the stream is cut
into pieces of `seq_len - 2` tokens and each block is `<s> piece </s>`. Every position of
every block is a real token (no padding except, optionally, in the final block), which is
what makes MLM pre-training and distillation compute-efficient.

Shards on disk (one directory):
    shard_00000.npy ...   int32 (blocks, seq_len), memory-mapped when read
    token_counts.npy      int64 (vocab_size,): occurrences of each id over all blocks
                          (pad excluded), for DistilBERT's `mlm_smoothing` masking
    meta.json             ShardMeta below; written last, so its presence marks a complete set
    progress.json         while the set is being written: the complete shards, each with where the
                          document stream stood after it, so that an interrupted write resumes

Tokenisation runs in worker processes (`workers`), started fresh (forkserver: no JAX and no
tokenizer thread pool inherited through a fork) and fed chunks of documents in order; packing
and writing stay in this process, so the shards are the same bytes for any number of workers.
Every file is written under a temporary name and renamed: a kill never leaves a half-written
file under a shard's name.
"""

from __future__ import annotations

import bisect
import collections
import concurrent.futures
import dataclasses
import hashlib
import io
import itertools
import json
import logging
import multiprocessing
import os
import pathlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from jaxdistil.data.corpus import FLAGS, SettingNames

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
TOKEN_COUNTS_FILE = "token_counts.npy"
PROGRESS_FILE = "progress.json"
SHARD_FORMAT_VERSION = 1
SHARD_GLOB = "shard_*.npy"
_TEMPORARY_SUFFIX = ".partial"  # a file being written; renamed to its name once complete

# Chunks of documents queued per worker: enough that no worker waits for the next one,
# few enough that memory stays at a few chunks of text.
_CHUNKS_IN_FLIGHT_PER_WORKER = 2


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """The ids packing needs: RoBERTa's `<s>` (cls/bos), `</s>` (sep/eos) and `<pad>`."""

    bos_id: int
    eos_id: int
    pad_id: int


@dataclasses.dataclass(frozen=True)
class ShardMeta:
    """What a directory of token shards contains, and how it was made."""

    seq_len: int
    vocab_size: int
    tokenizer: str
    num_blocks: int
    num_tokens: int  # non-pad tokens in all blocks, special tokens included
    num_docs: int
    bos_id: int
    eos_id: int
    pad_id: int
    shards: tuple[str, ...]
    token_counts_file: str = TOKEN_COUNTS_FILE
    format_version: int = SHARD_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ShardMeta:
        fields = json.loads(text)
        fields["shards"] = tuple(fields["shards"])
        return cls(**fields)


def special_ids(tokenizer: Any) -> SpecialIds:
    """RoBERTa's block delimiters: cls/sep where defined (CamemBERT: 5/6), else bos/eos."""
    bos = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    missing = [name for name, i in (("bos/cls", bos), ("eos/sep", eos), ("pad", pad)) if i is None]
    if missing:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} lacks special tokens {missing}.")
    return SpecialIds(bos_id=int(bos), eos_id=int(eos), pad_id=int(pad))


def tokenize_texts(
    texts: Iterable[str], tokenizer: Any, *, batch_size: int = 1000, workers: int = 1
) -> Iterator[np.ndarray]:
    """Token ids (int32) of each text, without special tokens, in order; tokenised in batches for
    speed, by `workers` processes when more than one."""
    for _, docs in encoded_chunks(texts, tokenizer, batch_size=batch_size, workers=workers):
        yield from docs


def encoded_chunks(
    texts: Iterable[str], tokenizer: Any, *, batch_size: int, workers: int = 1
) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    """(texts, their token ids) of consecutive chunks of `batch_size` texts, in order.

    With `workers` > 1 the chunks are tokenised in that many processes, a few chunks ahead of
    the caller; one worker tokenises in this process (the trainer's set-up, where JAX runs).
    Fresh processes import the caller's main module, so a script that asks for workers keeps its
    work under `if __name__ == "__main__":` (multiprocessing's rule).
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    backend = plain_backend(tokenizer)
    chunks = batched(texts, batch_size)
    if workers == 1:
        for chunk in chunks:
            yield chunk, encode_chunk(backend, chunk)
        return
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("forkserver"), initializer=_start_worker,
        initargs=(backend.to_str(),),
    )
    in_flight: collections.deque = collections.deque()
    try:
        for chunk in chunks:
            in_flight.append((chunk, pool.submit(_encode_in_worker, chunk)))
            if len(in_flight) > workers * _CHUNKS_IN_FLIGHT_PER_WORKER:
                done, future = in_flight.popleft()
                yield done, _split_docs(*future.result())
        while in_flight:
            done, future = in_flight.popleft()
            yield done, _split_docs(*future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def plain_backend(tokenizer: Any) -> Any:
    """A copy of the fast tokenizer's Rust `tokenizers.Tokenizer`, without truncation or padding:
    what `tokenizer(texts, add_special_tokens=False)` runs, in a form a worker process can rebuild
    from a string without importing transformers."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError(f"tokenizer {getattr(tokenizer, 'name_or_path', tokenizer)!r} is not a fast (Rust) "
                         "tokenizer: load it with jaxdistil.tokenizer.load_tokenizer, which needs tokenizer.json")
    plain = type(backend).from_str(backend.to_str())
    plain.no_truncation()
    plain.no_padding()
    return plain


def encode_chunk(backend: Any, texts: list[str]) -> list[np.ndarray]:
    """Token ids of `texts` (int32 arrays), without special tokens; offsets are not computed."""
    return [np.asarray(e.ids, np.int32) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """Consecutive lists of `size` items (the last one shorter)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


_worker_backend: Any = None  # the tokenizer of a worker process, set once by `_start_worker`


def _start_worker(backend_json: str) -> None:
    """A worker tokenises on one thread (the workers are the parallelism), and ends with its parent."""
    global _worker_backend
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer  # Imported here: a worker needs nothing else of the tokenizer's stack.

    _worker_backend = Tokenizer.from_str(backend_json)
    threading.Thread(target=_exit_with, args=(multiprocessing.parent_process(),), daemon=True).start()


def _exit_with(parent: Any) -> None:
    """Waits for the parent's end: a worker whose parent was killed would wait for tasks forever, as it
    holds both ends of the pool's task queue."""
    parent.join()
    os._exit(1)


def _encode_in_worker(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's ids as one flat array and the documents' lengths: two buffers to send back, not one
    object per document."""
    docs = encode_chunk(_worker_backend, texts)
    lengths = np.array([len(d) for d in docs], np.int64)
    return (np.concatenate(docs) if docs else np.empty(0, np.int32)), lengths


def _split_docs(flat: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(lengths)[:-1]) if len(lengths) else []


@dataclasses.dataclass(frozen=True, eq=False)
class PackState:
    """Where packing stands between documents: the stream tokens not yet in a block, and whether a
    document came before (then the next one is preceded by `</s>`)."""

    pending: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, np.int32))
    started: bool = False


def check_seq_len(seq_len: int) -> None:
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 (<s>, one token, </s>), got {seq_len}")


def pack_document(state: PackState, doc: Sequence[int], *, seq_len: int, ids: SpecialIds
                  ) -> tuple[np.ndarray, PackState]:
    """The full blocks (k, seq_len) that `doc` completes after `state`, and the state after it.

    The stream is doc_0 `</s>` doc_1 `</s>` ... doc_n (separators only *between* documents;
    empty documents are skipped); block i holds stream[i*(seq_len-2) : (i+1)*(seq_len-2)]
    between `<s>` and `</s>`.
    """
    if len(doc) == 0:
        return np.empty((0, seq_len), np.int32), state
    body_len = seq_len - 2
    separator = [np.array([ids.eos_id], np.int32)] if state.started else []
    stream = np.concatenate([state.pending, *separator, np.asarray(doc, np.int32)])
    num_full = len(stream) // body_len
    blocks = np.empty((num_full, seq_len), np.int32)
    blocks[:, 0] = ids.bos_id
    blocks[:, 1:-1] = stream[: num_full * body_len].reshape(num_full, body_len)
    blocks[:, -1] = ids.eos_id
    return blocks, PackState(stream[num_full * body_len :].copy(), started=True)


def iter_packed_blocks(
    token_docs: Iterable[Sequence[int]],
    *,
    seq_len: int,
    ids: SpecialIds,
    drop_remainder: bool = True,
) -> Iterator[np.ndarray]:
    """Packs tokenised documents into `<s> ... </s>` blocks of exactly `seq_len` int32 ids
    (`pack_document`). The final partial piece is dropped, or (drop_remainder=False) closed with
    `</s>` and padded with pad ids.
    """
    check_seq_len(seq_len)
    state = PackState()
    for doc in token_docs:
        blocks, state = pack_document(state, doc, seq_len=seq_len, ids=ids)
        yield from blocks
    if len(state.pending) and not drop_remainder:
        yield _frame(state.pending, seq_len, ids)


def _frame(body: np.ndarray, seq_len: int, ids: SpecialIds) -> np.ndarray:
    """`<s> body </s>` followed by pad ids up to `seq_len`."""
    block = np.full(seq_len, ids.pad_id, dtype=np.int32)
    block[0] = ids.bos_id
    block[1 : 1 + len(body)] = body
    block[1 + len(body)] = ids.eos_id
    return block


def pack_blocks(
    token_docs: Iterable[Sequence[int]],
    *,
    seq_len: int,
    ids: SpecialIds,
    drop_remainder: bool = True,
) -> np.ndarray:
    """All packed blocks as one int32 array (N, seq_len); see `iter_packed_blocks`."""
    blocks = list(iter_packed_blocks(token_docs, seq_len=seq_len, ids=ids, drop_remainder=drop_remainder))
    if not blocks:
        return np.zeros((0, seq_len), dtype=np.int32)
    return np.stack(blocks)


def count_token_ids(blocks: np.ndarray, vocab_size: int, *, ignore_ids: Sequence[int] = ()) -> np.ndarray:
    """Occurrences of each vocabulary id in `blocks`, as int64 (vocab_size,).

    DistilBERT's `mlm_smoothing` masks rare tokens more often (p ~ count**-0.7); padding
    is not text, so pass the pad id in `ignore_ids`.
    """
    flat = np.asarray(blocks).ravel()
    if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
        raise ValueError(
            f"token ids out of range [0, {vocab_size}) (min {flat.min()}, max {flat.max()}): "
            "the blocks were made with a different tokenizer."
        )
    counts = np.bincount(flat, minlength=vocab_size).astype(np.int64)
    counts[list(ignore_ids)] = 0
    return counts


class PackedBlocks(Sequence):
    """Read-only, memory-mapped view of all shards as one sequence of (seq_len,) blocks.

    grain's `MapDataset.source` only needs `len` and integer indexing, so each process
    touches just the rows it reads: nothing is loaded up front.
    """

    def __init__(self, shards: Sequence[np.ndarray]):
        if not shards:
            raise ValueError("PackedBlocks needs at least one shard")
        self._shards = list(shards)
        self.seq_len = int(self._shards[0].shape[1])
        self._ends = np.cumsum([len(s) for s in self._shards]).tolist()  # plain ints: bisect

    def __len__(self) -> int:
        return self._ends[-1]

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return np.stack([self[i] for i in range(*index.indices(len(self)))])
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"block {index} out of range [0, {len(self)})")
        shard = bisect.bisect_right(self._ends, index)
        start = 0 if shard == 0 else self._ends[shard - 1]
        return np.asarray(self._shards[shard][index - start])

    def to_array(self) -> np.ndarray:
        """All blocks in memory, as int32 (N, seq_len): for small sets such as eval."""
        return np.concatenate([np.asarray(s) for s in self._shards]).astype(np.int32, copy=False)


def read_meta(shard_dir: str | pathlib.Path) -> ShardMeta:
    """The ShardMeta of a shard directory, with a hint when pointed at its parent."""
    path = pathlib.Path(shard_dir)
    meta_path = path / META_FILE
    if not meta_path.exists():
        nested = sorted(p.parent.name for p in path.glob(f"*/{META_FILE}"))
        hint = (
            f" It has shard subdirectories {nested}: point at one of them."
            if nested
            else (" Create shards with scripts/prepare_data.py.")
        )
        raise FileNotFoundError(f"no {META_FILE} in {path}: not a token-shard directory.{hint}")
    return ShardMeta.from_json(meta_path.read_text())


def meta_mismatches(
    meta: ShardMeta, *, expected_seq_len: int | None = None, expected_vocab_size: int | None = None
) -> list[str]:
    """How shards differ from what a reader expects, one phrase per difference ([] when they fit)."""
    problems = []
    if expected_seq_len is not None and meta.seq_len != expected_seq_len:
        problems.append(f"seq_len {meta.seq_len} != expected {expected_seq_len}")
    if expected_vocab_size is not None and meta.vocab_size != expected_vocab_size:
        problems.append(f"vocab_size {meta.vocab_size} != expected {expected_vocab_size}")
    return problems


def check_meta(
    meta: ShardMeta,
    *,
    shard_dir: str | pathlib.Path,
    expected_seq_len: int | None = None,
    expected_vocab_size: int | None = None,
) -> None:
    """Refuses shards made for another model: a silent mismatch trains on garbage ids."""
    problems = meta_mismatches(meta, expected_seq_len=expected_seq_len, expected_vocab_size=expected_vocab_size)
    if problems:
        raise ValueError(
            f"token shards in {shard_dir} (tokenizer {meta.tokenizer!r}) do not match this "
            f"run: {'; '.join(problems)}. Re-run scripts/prepare_data.py with the model's "
            "tokenizer and --seq-len, or point the config at matching shards."
        )


def read_shards(
    shard_dir: str | pathlib.Path,
    *,
    expected_seq_len: int | None = None,
    expected_vocab_size: int | None = None,
) -> tuple[PackedBlocks, ShardMeta]:
    """Memory-maps a shard directory after checking it matches what the caller expects."""
    path = pathlib.Path(shard_dir)
    meta = read_meta(path)
    check_meta(
        meta, shard_dir=path, expected_seq_len=expected_seq_len, expected_vocab_size=expected_vocab_size
    )
    shards = []
    for name in meta.shards:
        shard_path = path / name
        if not shard_path.exists():
            raise FileNotFoundError(f"{shard_path} listed in {path / META_FILE} is missing.")
        array = np.load(shard_path, mmap_mode="r")
        if array.dtype != np.int32 or array.ndim != 2 or array.shape[1] != meta.seq_len:
            raise ValueError(
                f"{shard_path}: {array.dtype} {array.shape}, expected int32 (n, {meta.seq_len})."
            )
        shards.append(array)
    blocks = PackedBlocks(shards)
    if len(blocks) != meta.num_blocks:
        raise ValueError(f"{path}: shards hold {len(blocks)} blocks but {META_FILE} says {meta.num_blocks}.")
    return blocks, meta


def read_token_counts(shard_dir: str | pathlib.Path) -> np.ndarray:
    """The (vocab_size,) int64 token counts stored beside the shards."""
    path = pathlib.Path(shard_dir)
    meta = read_meta(path)
    counts = np.load(path / meta.token_counts_file)
    if counts.shape != (meta.vocab_size,):
        raise ValueError(f"{path}: token counts of shape {counts.shape}, expected ({meta.vocab_size},).")
    return counts


@dataclasses.dataclass
class TokenizeProgress:
    """Running totals, handed to a progress callback after each tokenised document."""

    docs: int = 0
    tokens: int = 0


@dataclasses.dataclass(frozen=True)
class ShardRecord:
    """A complete shard as progress.json lists it, with where the document stream stood after its
    last block: what an interrupted write resumes from."""

    name: str
    sha256: str  # of the file's bytes: a damaged or replaced shard is found, and written again
    docs: int  # documents consumed up to the shard's last block
    tokens: int  # their tokens
    docs_sha256: str  # of those documents' text: a resumed write checks it reads the same corpus
    carry: tuple[int, ...]  # stream tokens after the last block (`PackState.pending`)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> ShardRecord:
        return cls(**{**fields, "carry": tuple(fields["carry"])})


def tokenize_to_shards(
    texts: Iterable[str],
    tokenizer: Any,
    out_dir: str | pathlib.Path,
    *,
    seq_len: int,
    tokenizer_name: str | None = None,
    drop_remainder: bool = True,
    blocks_per_shard: int = 65536,
    batch_size: int = 1000,
    workers: int = 1,
    on_progress: Callable[[TokenizeProgress], None] | None = None,
    overwrite: bool = False,
    names: SettingNames = FLAGS,
) -> ShardMeta:
    """Texts → token ids (in `workers` processes) → packed blocks → shards on disk, streaming end to end.

    Memory stays at about one shard (65536 x 512 int32 = 128 MiB by default) whatever the corpus
    size. Resumable: each full shard is listed in progress.json once it is in place; called again
    on the same directory with the same settings and texts, this checks the listed shards' bytes
    and the documents they consumed, skips those documents without tokenising them and goes on
    from the last intact shard, writing exactly what an uninterrupted call writes. `overwrite`
    starts from nothing.
    """
    out = pathlib.Path(out_dir)
    if (out / META_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"{out} already holds token shards ({META_FILE}); choose another --out or remove it first."
        )
    check_seq_len(seq_len)
    ids = special_ids(tokenizer)
    fields = dict(seq_len=seq_len, vocab_size=len(tokenizer),
                  tokenizer=tokenizer_name or str(tokenizer.name_or_path) or type(tokenizer).__name__,
                  bos_id=ids.bos_id, eos_id=ids.eos_id, pad_id=ids.pad_id)
    settings = {**fields, "blocks_per_shard": blocks_per_shard, "format_version": SHARD_FORMAT_VERSION}
    out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        for name in (META_FILE, TOKEN_COUNTS_FILE, PROGRESS_FILE):
            (out / name).unlink(missing_ok=True)
    records, counts = intact_shards(out, settings)
    _remove_unlisted_shards(out, {r.name for r in records})
    texts, digest = iter(texts), hashlib.sha256()
    progress, state = TokenizeProgress(), PackState()
    if records:
        _skip_documents(texts, records[-1], digest, out)
        progress = TokenizeProgress(records[-1].docs, records[-1].tokens)
        state = PackState(np.asarray(records[-1].carry, np.int32), started=True)
        logger.info("resuming the write to %s after its %d complete shard(s) (%d documents)",
                    out, len(records), progress.docs)
        if on_progress is not None:
            on_progress(progress)

    def save_shard(blocks: list[np.ndarray]) -> tuple[str, str]:
        """(name, sha256) of the next shard, written."""
        array = np.stack(blocks)
        name, data = f"shard_{len(records):05d}.npy", _npy_bytes(array)
        write_file(out / name, data)
        counts[:] += count_token_ids(array, len(tokenizer), ignore_ids=(ids.pad_id,))
        return name, hashlib.sha256(data).hexdigest()

    pending: list[np.ndarray] = []  # blocks not in a shard yet
    for chunk, docs in encoded_chunks(texts, tokenizer, batch_size=batch_size, workers=workers):
        for text, doc in zip(chunk, docs, strict=True):
            _hash_document(digest, text)
            progress.docs += 1
            progress.tokens += len(doc)
            blocks, state = pack_document(state, doc, seq_len=seq_len, ids=ids)
            pending.extend(blocks)
            while len(pending) >= blocks_per_shard:
                name, sha256 = save_shard(pending[:blocks_per_shard])
                pending = pending[blocks_per_shard:]
                carry = np.concatenate([*(block[1:-1] for block in pending), state.pending])
                records.append(ShardRecord(name, sha256, progress.docs, progress.tokens, digest.hexdigest(),
                                           tuple(carry.tolist())))
                write_file(out / PROGRESS_FILE, json.dumps(
                    {"settings": settings, "shards": [dataclasses.asdict(r) for r in records]}).encode())
            if on_progress is not None:
                on_progress(progress)
    if len(state.pending) and not drop_remainder:
        pending.append(_frame(state.pending, seq_len, ids))
    shard_names = [r.name for r in records] + ([save_shard(pending)[0]] if pending else [])
    num_blocks = len(records) * blocks_per_shard + len(pending)
    if num_blocks == 0:
        raise ValueError(
            f"no block of seq_len={seq_len} could be packed for {out}: the corpus has fewer "
            f"than {seq_len - 2} tokens. Use more text or a smaller {names.seq_len}."
        )
    write_file(out / TOKEN_COUNTS_FILE, _npy_bytes(counts))
    meta = ShardMeta(**fields, num_blocks=num_blocks, num_tokens=int(counts.sum()), num_docs=progress.docs,
                     shards=tuple(shard_names))
    write_file(out / META_FILE, meta.to_json().encode())
    (out / PROGRESS_FILE).unlink(missing_ok=True)
    logger.info(
        "wrote %d blocks (%d tokens) in %d shard(s) to %s", num_blocks, meta.num_tokens, len(shard_names), out
    )
    return meta


def intact_shards(out: pathlib.Path, settings: dict[str, Any]) -> tuple[list[ShardRecord], np.ndarray]:
    """The complete shards an interrupted write left in `out`, up to the first one missing or whose
    bytes changed, and their token counts; ([], zeros) when nothing was left."""
    counts = np.zeros(settings["vocab_size"], np.int64)
    path = out / PROGRESS_FILE
    if not path.exists():
        return [], counts
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not readable ({e}): remove {out} to start again") from e
    differences = [f"{key} {saved['settings'].get(key)!r} != {value!r}" for key, value in settings.items()
                   if saved["settings"].get(key) != value]
    if differences:
        raise ValueError(f"{out} holds an interrupted write with other settings ({'; '.join(differences)}): "
                         f"resume it with the same ones, or remove {out} to start again")
    records = []
    for record in map(ShardRecord.from_dict, saved["shards"]):
        shard = out / record.name
        data = shard.read_bytes() if shard.is_file() else b""
        if hashlib.sha256(data).hexdigest() != record.sha256:
            logger.warning("%s is missing or damaged: writing it again, and the shards after it", shard)
            break
        counts += count_token_ids(np.load(io.BytesIO(data)), settings["vocab_size"],
                                  ignore_ids=(settings["pad_id"],))
        records.append(record)
    return records, counts


def _remove_unlisted_shards(out: pathlib.Path, keep: set[str]) -> None:
    """Shards and temporary files an interrupted write left beyond its intact shards: never read."""
    for path in [*out.glob(SHARD_GLOB), *out.glob(f"*{_TEMPORARY_SUFFIX}")]:
        if path.name not in keep:
            path.unlink()


def _skip_documents(texts: Iterator[str], record: ShardRecord, digest: Any, out: pathlib.Path) -> None:
    """Reads, without tokenising them, the documents the intact shards hold, checking they are the
    ones those shards were made from."""
    read = 0
    for text in itertools.islice(texts, record.docs):
        _hash_document(digest, text)
        read += 1
    if read < record.docs or digest.hexdigest() != record.docs_sha256:
        raise ValueError(f"the corpus is not the one the interrupted write to {out} read (its first "
                         f"{record.docs} documents differ): give the same input, or remove {out} to start again")


def _hash_document(digest: Any, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    digest.update(len(data).to_bytes(8, "little"))  # length first: "ab","c" and "a","bc" differ
    digest.update(data)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_file(path: pathlib.Path, data: bytes) -> None:
    """`data` into `path` under a temporary name, then renamed: `path` is complete or absent."""
    partial = path.with_name(path.name + _TEMPORARY_SUFFIX)
    partial.write_bytes(data)
    os.replace(partial, path)
