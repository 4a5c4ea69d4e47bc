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
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from jaxdistil.data.corpus import FLAGS, SettingNames

logger = logging.getLogger(__name__)

META_FILE = "meta.json"
TOKEN_COUNTS_FILE = "token_counts.npy"
SHARD_FORMAT_VERSION = 1


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


def tokenize_texts(texts: Iterable[str], tokenizer: Any, *, batch_size: int = 1000) -> Iterator[list[int]]:
    """Token ids of each text, without special tokens, tokenised in batches for speed."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == batch_size:
            yield from _encode_batch(batch, tokenizer)
            batch = []
    if batch:
        yield from _encode_batch(batch, tokenizer)


def _encode_batch(batch: list[str], tokenizer: Any) -> list[list[int]]:
    # verbose=False: documents longer than model_max_length are expected (we pack them).
    encoded = tokenizer(batch, add_special_tokens=False, return_attention_mask=False, verbose=False)
    return encoded["input_ids"]


def iter_packed_blocks(
    token_docs: Iterable[Sequence[int]],
    *,
    seq_len: int,
    ids: SpecialIds,
    drop_remainder: bool = True,
) -> Iterator[np.ndarray]:
    """Packs tokenised documents into `<s> ... </s>` blocks of exactly `seq_len` int32 ids.

    The stream is doc_0 `</s>` doc_1 `</s>` ... doc_n (separators only *between*
    documents); block i holds stream[i*(seq_len-2) : (i+1)*(seq_len-2)] between `<s>` and
    `</s>`. The final partial piece is dropped, or (drop_remainder=False) closed with `</s>`
    and padded with pad ids.
    """
    if seq_len < 3:
        raise ValueError(f"seq_len must be at least 3 (<s>, one token, </s>), got {seq_len}")
    body_len = seq_len - 2
    buffer = np.empty(0, dtype=np.int32)
    is_first = True
    for doc in token_docs:
        if len(doc) == 0:
            continue
        piece = np.asarray(doc, dtype=np.int32)
        if not is_first:
            piece = np.concatenate([np.array([ids.eos_id], np.int32), piece])
        is_first = False
        buffer = np.concatenate([buffer, piece])
        num_full = len(buffer) // body_len
        for i in range(num_full):
            yield _frame(buffer[i * body_len : (i + 1) * body_len], seq_len, ids)
        buffer = buffer[num_full * body_len :]
    if len(buffer) and not drop_remainder:
        yield _frame(buffer, seq_len, ids)


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


def write_shards(
    blocks: Iterable[np.ndarray],
    out_dir: str | pathlib.Path,
    *,
    seq_len: int,
    vocab_size: int,
    tokenizer_name: str,
    ids: SpecialIds,
    blocks_per_shard: int = 65536,
    num_docs: int | Callable[[], int] = 0,
    overwrite: bool = False,
    names: SettingNames = FLAGS,
) -> ShardMeta:
    """Streams blocks into `.npy` shards + token counts + meta.json; returns the metadata.

    Streaming keeps memory at one shard (65536 x 512 int32 = 128 MiB by default) whatever
    the corpus size. `num_docs` may be a callable read after the last block, for counts
    only known once the upstream generator is exhausted.
    """
    out = pathlib.Path(out_dir)
    if (out / META_FILE).exists() and not overwrite:
        raise FileExistsError(
            f"{out} already holds token shards ({META_FILE}); choose another --out or remove it first."
        )
    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("shard_*.npy")) + [out / META_FILE]:
        stale.unlink(missing_ok=True)

    counts = np.zeros(vocab_size, dtype=np.int64)
    shard_names: list[str] = []
    pending: list[np.ndarray] = []
    num_blocks = 0

    def flush() -> None:
        array = np.stack(pending).astype(np.int32, copy=False)
        name = f"shard_{len(shard_names):05d}.npy"
        np.save(out / name, array)
        counts[:] += count_token_ids(array, vocab_size, ignore_ids=(ids.pad_id,))
        shard_names.append(name)
        pending.clear()

    for block in blocks:
        if block.shape != (seq_len,):
            raise ValueError(f"block of shape {block.shape}, expected ({seq_len},)")
        pending.append(block)
        num_blocks += 1
        if len(pending) == blocks_per_shard:
            flush()
    if pending:
        flush()
    if num_blocks == 0:
        raise ValueError(
            f"no block of seq_len={seq_len} could be packed for {out}: the corpus has fewer "
            f"than {seq_len - 2} tokens. Use more text or a smaller {names.seq_len}."
        )

    np.save(out / TOKEN_COUNTS_FILE, counts)
    meta = ShardMeta(
        seq_len=seq_len,
        vocab_size=vocab_size,
        tokenizer=tokenizer_name,
        num_blocks=num_blocks,
        num_tokens=int(counts.sum()),
        num_docs=int(num_docs() if callable(num_docs) else num_docs),
        bos_id=ids.bos_id,
        eos_id=ids.eos_id,
        pad_id=ids.pad_id,
        shards=tuple(shard_names),
    )
    (out / META_FILE).write_text(meta.to_json())
    logger.info(
        "wrote %d blocks (%d tokens) in %d shard(s) to %s", num_blocks, meta.num_tokens, len(shard_names), out
    )
    return meta


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
    on_progress: Callable[[TokenizeProgress], None] | None = None,
    overwrite: bool = False,
    names: SettingNames = FLAGS,
) -> ShardMeta:
    """Texts → token ids → packed blocks → shards on disk, streaming end to end."""
    ids = special_ids(tokenizer)
    progress = TokenizeProgress()

    def counted(docs: Iterable[list[int]]) -> Iterator[list[int]]:
        for doc in docs:
            progress.docs += 1
            progress.tokens += len(doc)
            if on_progress is not None:
                on_progress(progress)
            yield doc

    token_docs = counted(tokenize_texts(texts, tokenizer, batch_size=batch_size))
    blocks = iter_packed_blocks(token_docs, seq_len=seq_len, ids=ids, drop_remainder=drop_remainder)
    return write_shards(
        blocks,
        out_dir,
        seq_len=seq_len,
        vocab_size=len(tokenizer),
        tokenizer_name=tokenizer_name or str(tokenizer.name_or_path) or type(tokenizer).__name__,
        ids=ids,
        blocks_per_shard=blocks_per_shard,
        num_docs=lambda: progress.docs,
        overwrite=overwrite,
        names=names,
    )
