"""Streamed training data: a Hub-layout corpus read, cleaned, tokenised and packed on the fly.

Instead of tokenising the whole corpus before step 1 (data/tokenize.py's shards), the training
stream is made while training runs: in a background thread (grain's `ThreadPrefetchIterDataset`,
which records the state of each batch it holds, so what a checkpoint saves is the position of
the last batch the trainer took, not of the prefetched ones), or in `workers` worker processes.

Lanes: the corpus files are dealt to `lanes` independent streams (lane j reads files j, j+L, …
in order, over and over: one epoch per pass), each packed on its own exactly as
`tokenize.iter_packed_blocks` packs a document stream. Row r of global batch k is block
k·R + r mod R of lane r // R (R = global batch / lanes rows per lane), and process p of P owns
lanes [p·L/P, (p+1)·L/P): its rows are a contiguous run of the global batch, as
`jax.make_array_from_process_local_data` assembles them. So the global batch depends on the
lanes and never on the process count, every process yields one batch per step however long its
files are (a lane that runs out starts its next epoch), and each host trains on its own files only
(set-up reads the held-out head and the first document of each lane everywhere, to check them).

State, per lane (JSON, one grain checkpoint file per process), taken the last time the lane had
no block ready: epoch, the file being read, how many of its documents are packed, whether a
document was packed yet and the carry (the packer's pending tokens, less than a block), plus
`skip`, the blocks handed out since. Restoring it re-opens that file, skips that many documents
(read again, not tokenised), re-tokenises one document and discards `skip` blocks: a resumed run
sees exactly the blocks an uninterrupted one would, and a state stays small however long the
document (so a worker can send one with every chunk). A state without `skip` (older checkpoints,
whose carry may hold whole blocks) restores the same way.

Hold-out: with no evaluation split, the first `n_held_out` documents of the corpus (all
files in order) are evaluated on, never trained on: `plan_stream` counts how many of them
each file holds, and the lanes skip those.

Worker processes (`workers` ≥ 1, data.stream_workers): this process's lanes are dealt to them
(its lane at position i to worker i mod workers), each a spawned process (the parent runs JAX's
threads, which fork would copy mid-lock) that makes, for each of its lanes in turn,
`rows_per_lane` blocks and the lane's state after them, into its own bounded queue. The parent
takes, for each of its lanes in lane order, the next chunk of that lane's worker: the batches,
and the states a checkpoint saves, are the thread's, so a run may switch between the two on resume.
A worker's exception reaches the parent as the same type and message; a worker that dies silently
is named; workers stop with the iterator (closed, collected, or at exit) or when the parent dies.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import sys
import weakref
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
# A lane's state before its first document.
START_STATE = {"epoch": 0, "file": 0, "doc": 0, "first": True, "carry": [], "skip": 0}
# Seconds a queue is waited on before checking the process at its other end is alive.
_POLL_SECONDS = 1.0
# Seconds a terminated worker is given to exit before it is killed.
_STOP_SECONDS = 5.0


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

    Its state (module docstring) is `_base`, where the lane stood the last time no block was ready,
    and `_skip`, the blocks handed out since: small, and O(1) to take.
    """

    def __init__(self, source: StreamSource, tokenizer: Any, *, index: int, lanes: int, seq_len: int):
        self.index = index
        self.source = source
        self.tokenizer = tokenizer
        self.files = tuple(range(index, len(source.files), lanes))
        self.seq_len = seq_len
        self.ids = special_ids(tokenizer)
        self.set_state(START_STATE)

    def get_state(self) -> dict[str, Any]:
        epoch, file, doc, first, carry = self._base
        return {"epoch": epoch, "file": file, "doc": doc, "first": first, "carry": carry.tolist(),
                "skip": self._skip}

    def set_state(self, state: dict[str, Any]) -> None:
        self.epoch, self.file, self.doc = state["epoch"], state["file"], state["doc"]
        carry = np.asarray(state["carry"], dtype=np.int32)
        # The carry packed as a document of its own (a fresh PackState adds no separator before it) gives
        # back the full blocks it holds (an older state's) and the pending rest.
        blocks, pack = pack_document(PackState(), carry, seq_len=self.seq_len, ids=self.ids)
        self._ready = collections.deque(blocks)
        self._pack = PackState(pack.pending, started=not state["first"])
        self._docs: Iterator[tuple[int, int, int, Sequence[int]]] | None = None  # read ahead from this state
        self._base, self._skip = (self.epoch, self.file, self.doc, state["first"], carry), 0
        for _ in range(state.get("skip", 0)):
            self.next_block()

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
            self._base = (self.epoch, self.file, self.doc, not self._pack.started, self._pack.pending)
            self._skip = 0
            self.epoch, self.file, self.doc, tokens = next(self._docs)
            blocks, self._pack = pack_document(self._pack, tokens, seq_len=self.seq_len, ids=self.ids)
            self._ready.extend(blocks)
        self._skip += 1
        return self._ready.popleft()


def lane_states(state: dict[str, Any], mine: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The saved state of each of this process's lanes `mine`, refused with what to do when it does not fit."""
    if "lanes" not in state:
        raise ValueError(f"the checkpoint's data iterator is not a stream (its state has {sorted(state)}): "
                         "resume with the data settings the run was started with (data.streaming)")
    saved, wanted = sorted(state["lanes"], key=int), [str(j) for j in mine]
    if saved != wanted:
        raise ValueError(f"the checkpoint's data stream holds lanes {saved} for this process, this run reads "
                         f"lanes {wanted}: resume with the same data.stream_lanes and number of processes")
    return {j: state["lanes"][str(j)] for j in mine}


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
        states = lane_states(state, [lane.index for lane in self._lanes])
        for lane in self._lanes:
            lane.set_state(states[lane.index])


class StreamDataset(grain.IterDataset):
    """The stream as a grain IterDataset (so grain's prefetching can run it in a thread)."""

    def __init__(self, make_lanes: Any, *, rows_per_lane: int, pad_id: int):
        super().__init__()
        self._make_lanes = make_lanes
        self._rows_per_lane = rows_per_lane
        self._pad_id = pad_id

    def __iter__(self) -> StreamIterator:
        return StreamIterator(self._make_lanes(), rows_per_lane=self._rows_per_lane, pad_id=self._pad_id)


@dataclasses.dataclass(frozen=True)
class LaneSpec:
    """What a worker process needs to rebuild its lanes (pickled to it: the tokenizer travels whole)."""

    source: StreamSource
    tokenizer: Any
    lanes: int  # all lanes of the stream, as `Lane` deals the files
    seq_len: int
    rows_per_lane: int


def _put(out: Any, item: tuple, parent: Any) -> bool:
    """Puts `item` into the bounded queue `out`, waiting while it is full; False once the parent is gone."""
    while parent.is_alive():
        try:
            out.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            pass
    out.cancel_join_thread()  # nobody reads what is still buffered: exit without flushing it
    return False


def serve_lanes(inbox: Any, out: Any) -> None:
    """A worker process: its lanes rebuilt from the (LaneSpec, lane states) it is sent, then for each in turn,
    over and over, ("rows", lane, (rows_per_lane, seq_len) int32 blocks, lane state after them) into `out`;
    an exception ends it with ("error", its type's module and name, its message)."""
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    parent = multiprocessing.parent_process()
    try:
        while True:
            try:
                spec, states = inbox.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                if not parent.is_alive():
                    return
        lanes = []
        for j, state in states.items():
            lanes.append(Lane(spec.source, spec.tokenizer, index=j, lanes=spec.lanes, seq_len=spec.seq_len))
            lanes[-1].set_state(state)
        while True:
            for lane in lanes:
                rows = np.stack([lane.next_block() for _ in range(spec.rows_per_lane)])
                if not _put(out, ("rows", lane.index, rows, lane.get_state()), parent):
                    return
    except Exception as e:  # noqa: BLE001  (every error is the parent's to raise)
        _put(out, ("error", type(e).__module__, type(e).__qualname__, str(e)), parent)


def worker_error(module: str, name: str, message: str) -> Exception:
    """A worker's exception as the parent raises it: the same type and message where the type is known here
    and made from a message alone (the errors of corpus reading are), else a RuntimeError naming it."""
    try:
        error = functools.reduce(getattr, name.split("."), sys.modules[module])(message)
    except Exception:  # noqa: BLE001  (a type not imported here, or not made from one message)
        return RuntimeError(f"{module}.{name}: {message}")
    return error if isinstance(error, Exception) else RuntimeError(f"{module}.{name}: {message}")


def stop_workers(workers: Sequence[tuple[Any, Any, Any]]) -> None:
    """Terminates and joins worker processes (killed if they do not exit), and closes their queues."""
    for proc, _, _ in workers:
        proc.terminate()
    for proc, _, out in workers:
        proc.join(_STOP_SECONDS)
        if proc.is_alive():
            proc.kill()
            proc.join()
        out.close()


class WorkerStreamIterator(grain.DatasetIterator):
    """This process's batches as `StreamIterator` makes them, its lanes read by `workers` spawned processes
    (module docstring), started at the first batch and again after `set_state`."""

    def __init__(self, spec: LaneSpec, *, mine: Sequence[int], workers: int, prefetch: int, pad_id: int):
        super().__init__()
        self._spec = spec
        self._mine = list(mine)
        self._workers = workers
        self._depth = max(prefetch, 1)
        self._pad_id = pad_id
        self._states = {j: dict(START_STATE) for j in self._mine}
        self._running: list[tuple[Any, Any, Any]] = []  # (process, its inbox, its queue) of each worker
        self._finalizer: weakref.finalize | None = None

    @property
    def workers(self) -> int:
        return self._workers

    def worker_lanes(self, worker: int) -> list[int]:
        return self._mine[worker::self._workers]

    @property
    def worker_pids(self) -> list[int]:
        return [proc.pid for proc, _, _ in self._running]

    def start_prefetch(self) -> None:
        if not self._running:
            context = multiprocessing.get_context("spawn")
            for worker in range(self._workers):
                inbox, out = context.Queue(1), context.Queue(self._depth)
                proc = context.Process(target=serve_lanes, args=(inbox, out), daemon=True,
                                       name=f"jaxdistil-stream-worker-{worker}")
                proc.start()
                # Sent by the queue's thread, not as start()'s argument: a large pickle (the tokenizer) written to
                # a child that dies as it starts would block start() for ever.
                inbox.put((self._spec, {j: self._states[j] for j in self.worker_lanes(worker)}))
                inbox.close()
                inbox.cancel_join_thread()
                self._running.append((proc, inbox, out))  # kept: the child rebuilds the queues' locks by name
            # At close, collection or interpreter exit, whichever comes first (it holds no reference to self).
            self._finalizer = weakref.finalize(self, stop_workers, list(self._running))

    def _stop_workers(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer, self._running = None, []

    def close(self) -> None:
        self._stop_workers()
        super().close()

    def _take(self, worker: int) -> tuple[Any, ...]:
        """The next item of `worker`'s queue, waiting as long as the worker is alive."""
        proc, _, out = self._running[worker]
        while True:
            try:
                return out.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if not proc.is_alive():
                    break
        try:
            return out.get(timeout=_POLL_SECONDS)  # what it sent just before it exited
        except queue.Empty:
            raise RuntimeError(f"stream worker {worker} (pid {proc.pid}, lanes {self.worker_lanes(worker)}) exited "
                               f"with code {proc.exitcode} and no message (killed? out of memory?); the run can "
                               "resume from its last checkpoint") from None

    def __next__(self) -> Batch:
        self._assert_not_closed()
        self.start_prefetch()
        rows, states = [], {}
        try:
            for position, j in enumerate(self._mine):
                item = self._take(position % self._workers)
                if item[0] == "error":
                    raise worker_error(*item[1:])
                _, lane, block_rows, states[j] = item
                assert lane == j, f"stream worker sent lane {lane} where lane {j} was due"
                rows.append(block_rows)
        except BaseException:
            self._stop_workers()  # the chunks taken are lost: a next call restarts from the last batch
            raise
        self._states.update(states)
        return to_model_inputs(np.concatenate(rows), self._pad_id)

    def get_state(self) -> dict[str, Any]:
        return {"lanes": {str(j): self._states[j] for j in self._mine}}

    def set_state(self, state: dict[str, Any]) -> None:
        states = lane_states(state, self._mine)
        self._stop_workers()
        self._states = states


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
    workers: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.DatasetIterator:
    """A checkpointable iterator of this process's training batches from the stream (module docstring).

    Yields {"input_ids", "attention_mask"}: int32 (global_batch_size / process_count, seq_len). With
    `workers` = 0, `prefetch` batches are made ahead in a background thread (0: in the caller's thread);
    with `workers` ≥ 1, this process's lanes are read by that many worker processes, each `prefetch`
    (at least one) chunks ahead.
    """
    index, count = resolve_process(process_index, process_count)
    mine = process_lanes(lanes, index, count)
    if global_batch_size < 1 or global_batch_size % lanes:
        raise ValueError(f"train.batch_size={global_batch_size} must be a positive multiple of "
                         f"data.stream_lanes={lanes}: every lane gives the same number of rows to each batch")
    if workers < 0:
        raise ValueError(f"data.stream_workers={workers}: set it to 0 (a thread) or a number of worker processes")
    # Each worker reads whole lanes: more workers than this process's lanes would idle.
    workers = min(workers, len(mine))
    rows_per_lane = global_batch_size // lanes
    logger.info("train data: streamed, process %d of %d reads lanes %s of %d%s", index, count, list(mine), lanes,
                f" in {workers} worker process(es)" if workers else "")
    if workers:
        spec = LaneSpec(source, tokenizer, lanes, seq_len, rows_per_lane)
        return WorkerStreamIterator(spec, mine=mine, workers=workers, prefetch=prefetch,
                                    pad_id=tokenizer.pad_token_id)

    def make_lanes() -> list[Lane]:
        return [Lane(source, tokenizer, index=j, lanes=lanes, seq_len=seq_len) for j in mine]

    ds: grain.IterDataset = StreamDataset(make_lanes, rows_per_lane=rows_per_lane, pad_id=tokenizer.pad_token_id)
    if prefetch:
        ds = grain.experimental.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=prefetch)
    return iter(ds)
