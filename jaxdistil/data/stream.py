"""Streamed training data: a Hub-layout corpus read, cleaned, tokenised and packed on the fly.

Instead of tokenising the whole corpus before step 1 (data/tokenize.py's shards), the training
stream is made while training runs, in a background thread (grain's `ThreadPrefetchIterDataset`,
which records the state of each batch it holds, so what a checkpoint saves is the position of
the last batch the trainer took, not of the prefetched ones).

Lanes: the corpus files are dealt to `lanes` independent streams (lane j reads files j, j+L, …
in order, over and over: one epoch per pass), each packed on its own exactly as
`tokenize.iter_packed_blocks` packs a document stream. Row r of global batch k is block
k·R + r mod R of lane r // R (R = global batch / lanes rows per lane), and process p of P owns
lanes [p·L/P, (p+1)·L/P): its rows are a contiguous run of the global batch, as
`jax.make_array_from_process_local_data` assembles them. So the global batch depends on the
lanes and never on the process count, every process yields one batch per step however long its
files are (a lane that runs out starts its next epoch), and each host trains on its own files only
(set-up reads the held-out head and the first document of each lane everywhere, to check them).

State, per lane (JSON, one grain checkpoint file per process): epoch, the file being read,
how many of its documents are packed, whether a document was packed yet, and the carry (the
stream's tokens not yet in a block). Restoring it re-opens that file, skips that many
documents (read again, not tokenised) and goes on: a resumed run sees exactly the blocks an
uninterrupted one would.

Hold-out: with no evaluation split, the first `n_held_out` documents of the corpus (all
files in order) are evaluated on, never trained on: `plan_stream` counts how many of them
each file holds, and the lanes skip those.

Worker processes (grain's `mp_prefetch`) are not used yet: one thread per host reads and
tokenises; lanes are the unit a worker process would own.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import grain
import numpy as np

from jaxdistil.data import corpus
from jaxdistil.data.pipeline import Batch, resolve_process, to_model_inputs
from jaxdistil.data.tokenize import (
    PackState,
    count_token_ids,
    iter_packed_blocks,
    pack_document,
    special_ids,
    tokenize_texts,
)

logger = logging.getLogger(__name__)

# Documents tokenised in one call of the fast tokenizer (batched calls are several times faster).
TOKENIZE_BATCH_DOCS = 64
# Blocks counted at once for the token counts.
_COUNT_CHUNK_BLOCKS = 4096


@dataclasses.dataclass(frozen=True)
class StreamSource:
    """The training stream's files, how many leading documents of each are held out, and how to read them."""

    name: str  # the Hub id or directory (data.hf_name), for messages
    fs: Any  # the fsspec filesystem the files are in (local, or the Hub's)
    files: tuple[str, ...]
    held_out: tuple[int, ...]  # leading documents of each file that belong to the held-out set
    text_field: str
    min_chars: int
    skip_corrupt_files: bool
    names: corpus.SettingNames


def read_file(source: StreamSource, index: int, start: int = 0) -> Iterator[str]:
    """Clean training documents of file `index`, from its document `start` (never a held-out one)."""
    with corpus.hub_errors(source.name, source.names):
        docs = corpus.iter_file_texts(source.files[index], text_field=source.text_field, min_chars=source.min_chars,
                                      doc_boundary="line", encoding=corpus.DEFAULT_ENCODING,
                                      skip_corrupt_files=source.skip_corrupt_files, stats=corpus.CorpusStats(),
                                      names=source.names, fs=source.fs)
        yield from itertools.islice(docs, max(start, source.held_out[index]), None)


def iter_stream_texts(source: StreamSource, files: Sequence[int] | None = None) -> Iterator[str]:
    """One pass over the training documents of `files` (default: all), in order."""
    for index in range(len(source.files)) if files is None else files:
        yield from read_file(source, index)


def plan_stream(name: str, data_files: str, *, config: str, split: str, n_held_out: int, lanes: int,
                text_field: str, min_chars: int, skip_corrupt_files: bool, lanes_setting: str,
                names: corpus.SettingNames) -> StreamSource:
    """The stream of `name`'s files matching `data_files`, its first `n_held_out` documents held out, checked
    before step 1: each of the `lanes` lanes has a training document (so an empty stream, a record without
    the text field or an unreachable Hub fails here, in one line)."""
    with corpus.hub_errors(name, names):
        fs, files, where = corpus.dataset_files(name, data_files, config=config, split=split, names=names)
    if lanes < 1 or lanes > len(files):
        raise ValueError(f"{lanes_setting}={lanes}: each lane reads its own files, and {where} has {len(files)} "
                         f"matching {data_files!r}; set it between 1 and {len(files)}")
    source = StreamSource(name, fs, tuple(files), (0,) * len(files), text_field, min_chars, skip_corrupt_files,
                          names)
    held, left = [], n_held_out
    for index in range(len(files)):
        held.append(sum(1 for _ in itertools.islice(read_file(source, index), left)))
        left -= held[-1]
    source = dataclasses.replace(source, held_out=tuple(held))
    for lane in range(lanes):
        if next(iter_stream_texts(source, range(lane, len(files), lanes)), None) is None:
            whose = "" if lanes == 1 else f" of lane {lane} of {lanes} (files {lane}, {lane + lanes}, …)"
            raise ValueError(
                f"empty stream: no training document in the files{whose} of {where} after the {n_held_out - left} "
                f"held-out one(s) (none of at least {min_chars} characters in {text_field!r}); check "
                f"{names.hf_data_files}, {names.text_field} and {names.min_chars}"
                + (f", or lower {lanes_setting}" if lanes > 1 else ""))
    logger.info("streaming %d file(s) of %s in %d lane(s), %d held-out document(s) skipped", len(files), where,
                lanes, n_held_out - left)
    return source


def head_token_counts(source: StreamSource, tokenizer: Any, *, num_docs: int, seq_len: int) -> np.ndarray:
    """Occurrences of each id in the first `num_docs` training documents of the stream (all files in order),
    packed as training packs them (special tokens counted, pad not): the frequencies `mlm_smoothing`
    masks by. A head of the corpus rather than all of it, so set-up takes seconds instead of a pass over the
    whole corpus; a head of many documents approximates the corpus's frequencies (it is the sample the
    masking sees, saved once, so a resumed run masks alike)."""
    ids = special_ids(tokenizer)
    docs = tokenize_texts(itertools.islice(iter_stream_texts(source), num_docs), tokenizer,
                          batch_size=TOKENIZE_BATCH_DOCS)
    blocks = iter_packed_blocks(docs, seq_len=seq_len, ids=ids, drop_remainder=False)
    counts = np.zeros(len(tokenizer), dtype=np.int64)
    while chunk := list(itertools.islice(blocks, _COUNT_CHUNK_BLOCKS)):
        counts += count_token_ids(np.stack(chunk), len(tokenizer), ignore_ids=(ids.pad_id,))
    return counts


class Lane:
    """One lane: its files read over and over, tokenised in batches, packed by `tokenize.pack_document`.

    Its state's `carry` is the stream's tokens not yet returned in a block: the bodies of the blocks a
    document completed but `next_block` has not handed out yet, then the packer's pending tokens.
    """

    def __init__(self, source: StreamSource, tokenizer: Any, *, index: int, lanes: int, seq_len: int):
        self.index = index
        self.source = source
        self.tokenizer = tokenizer
        self.files = tuple(range(index, len(source.files), lanes))
        self.seq_len = seq_len
        self.ids = special_ids(tokenizer)
        self.set_state({"epoch": 0, "file": 0, "doc": 0, "first": True, "carry": []})

    def get_state(self) -> dict[str, Any]:
        carry = np.concatenate([block[1:-1] for block in self._ready] + [self._pack.pending])
        return {"epoch": self.epoch, "file": self.file, "doc": self.doc, "first": not self._pack.started,
                "carry": carry.tolist()}

    def set_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.file, self.doc = state["epoch"], state["file"], state["doc"]
        # The carry packed as a document of its own (a fresh PackState adds no separator before it) gives
        # back the full blocks it holds and the pending rest.
        blocks, pack = pack_document(PackState(), np.asarray(state["carry"], dtype=np.int32), seq_len=self.seq_len,
                                     ids=self.ids)
        self._ready = collections.deque(blocks)
        self._pack = PackState(pack.pending, started=not state["first"])
        self._docs: Iterator[tuple[int, int, int, Sequence[int]]] | None = None  # read ahead from this state

    def _read(self) -> Iterator[tuple[int, int, int, Sequence[int]]]:
        """(epoch, file, documents of it packed after this one, tokens) of each document from the state on."""
        epoch, file, doc = self.epoch, self.file, self.doc
        idle = 0  # files in a row without a document: a whole pass of them means the lane is empty
        while True:
            if file == len(self.files):
                epoch, file, doc = epoch + 1, 0, 0
            index = self.files[file]
            position = max(doc, self.source.held_out[index])
            texts = read_file(self.source, index, position)
            read_any = False
            for tokens in tokenize_texts(texts, self.tokenizer, batch_size=TOKENIZE_BATCH_DOCS):
                read_any = True
                position += 1
                yield epoch, file, position, tokens
            idle = 0 if read_any else idle + 1
            if idle > len(self.files):
                raise ValueError(f"stream lane {self.index}: no training document left in its files "
                                 f"({', '.join(self.source.files[i] for i in self.files)})")
            file, doc = file + 1, 0

    def next_block(self) -> np.ndarray:
        """The lane's next `<s> … </s>` block: the stream's next seq_len - 2 tokens."""
        while not self._ready:
            if self._docs is None:
                self._docs = self._read()
            self.epoch, self.file, self.doc, tokens = next(self._docs)
            blocks, self._pack = pack_document(self._pack, tokens, seq_len=self.seq_len, ids=self.ids)
            self._ready.extend(blocks)
        return self._ready.popleft()


class StreamIterator(grain.DatasetIterator):
    """This process's batches: `rows_per_lane` consecutive blocks of each of its lanes, in lane order."""

    def __init__(self, lanes: list[Lane], *, rows_per_lane: int, pad_id: int):
        super().__init__()
        self._lanes = lanes
        self._rows_per_lane = rows_per_lane
        self._pad_id = pad_id

    def __next__(self) -> Batch:
        rows = [lane.next_block() for lane in self._lanes for _ in range(self._rows_per_lane)]
        return to_model_inputs(np.stack(rows), self._pad_id)

    def get_state(self) -> dict[str, Any]:
        return {"lanes": {str(lane.index): lane.get_state() for lane in self._lanes}}

    def set_state(self, state: dict[str, Any]) -> None:
        if "lanes" not in state:
            raise ValueError(f"the checkpoint's data iterator is not a stream (its state has {sorted(state)}): "
                             "resume with the data settings the run was started with (data.streaming)")
        saved, mine = sorted(state["lanes"], key=int), [str(lane.index) for lane in self._lanes]
        if saved != mine:
            raise ValueError(f"the checkpoint's data stream holds lanes {saved} for this process, this run reads "
                             f"lanes {mine}: resume with the same data.stream_lanes and number of processes")
        for lane in self._lanes:
            lane.set_state(state["lanes"][str(lane.index)])


class StreamDataset(grain.IterDataset):
    """The stream as a grain IterDataset (so grain's prefetching can run it in a thread)."""

    def __init__(self, make_lanes: Any, *, rows_per_lane: int, pad_id: int):
        super().__init__()
        self._make_lanes = make_lanes
        self._rows_per_lane = rows_per_lane
        self._pad_id = pad_id

    def __iter__(self) -> StreamIterator:
        return StreamIterator(self._make_lanes(), rows_per_lane=self._rows_per_lane, pad_id=self._pad_id)


def process_lanes(lanes: int, process_index: int, process_count: int) -> range:
    """The lanes process `process_index` of `process_count` reads: a contiguous run of them."""
    if lanes % process_count:
        raise ValueError(f"data.stream_lanes={lanes} must be a multiple of the process count {process_count}, so "
                         "every process reads its own lanes")
    per_process = lanes // process_count
    return range(process_index * per_process, (process_index + 1) * per_process)


def make_stream_iterator(
    source: StreamSource,
    tokenizer: Any,
    *,
    seq_len: int,
    lanes: int,
    global_batch_size: int,
    prefetch: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.DatasetIterator:
    """A checkpointable iterator of this process's training batches from the stream (module docstring).

    Yields {"input_ids", "attention_mask"}: int32 (global_batch_size / process_count, seq_len);
    `prefetch` batches are made ahead in a background thread (0: in the caller's thread).
    """
    index, count = resolve_process(process_index, process_count)
    mine = process_lanes(lanes, index, count)
    if global_batch_size < 1 or global_batch_size % lanes:
        raise ValueError(f"train.batch_size={global_batch_size} must be a positive multiple of "
                         f"data.stream_lanes={lanes}: every lane gives the same number of rows to each batch")

    def make_lanes() -> list[Lane]:
        return [Lane(source, tokenizer, index=j, lanes=lanes, seq_len=seq_len) for j in mine]

    ds: grain.IterDataset = StreamDataset(make_lanes, rows_per_lane=global_batch_size // lanes,
                                          pad_id=tokenizer.pad_token_id)
    if prefetch:
        ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=prefetch)
    logger.info("train data: streamed, process %d of %d reads lanes %s of %d", index, count, list(mine), lanes)
    return iter(ds)
