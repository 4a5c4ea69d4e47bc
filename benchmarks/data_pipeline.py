r"""Data pipeline throughput: can the host feed the GPU step? Documents/s, MB/s and tokens/s of each
stage, per worker and in total, and the time to the first batch.

    python benchmarks/data_pipeline.py                          # a 30 MB replica: minutes on 2 busy cores
    python benchmarks/data_pipeline.py --replica-mb 300 --replica-dir /tmp/oscar_replica
    python benchmarks/data_pipeline.py --tokenizer path/to/camembert-base --workers 2

The corpus is a local replica of OSCAR-2301 French as the Hub stores it (`fr_meta/fr_meta_part_<N>.jsonl.zst`,
one JSON document per line with its text in `content` beside `warc_headers` and `metadata`), built
from the ELTeC novels of ../shared/data/fr_novels (repeated up to --replica-mb of text, --lines-per-doc
lines to a document) and kept in --replica-dir for the next run. The tokenizer is --tokenizer, or a
CamemBERT-style unigram of --vocab-size trained on the spot.

Measured on the first --measure-mb of the replica's text (reading: all of it):
- streaming stages, one worker each: reading and cleaning (`corpus.iter_hf_texts` on the replica
  directory), tokenising (one thread, as in a worker process), packing into blocks; and the three
  chained in one process (the rate one streaming worker sustains), also per CPU second, which is
  what a dedicated core would do where other jobs share the machine;
- tokenising with --workers processes (`tokenize.tokenize_texts`), in total and per worker;
- local pre-tokenised shards (`tokenize_to_shards` with --workers) read back through the trainer's
  grain iterator (`pipeline.make_train_iterator`): time to the first batch, then tokens/s.
- the trainer's streaming iterator (`stream.make_stream_iterator`, --stream-lanes lanes read by its
  prefetch thread or by --stream-workers worker processes) over the replica: time to the first batch
  (planning and starting the workers included), then tokens/s.
Every batch source is a function in `BATCH_SOURCES` (name → batches).

The figures are printed beside the GPU step's consumption, `GPU_STEP_TOKENS_PER_S`, and the target of
issue 12: one worker's tokens/s times the cores of a GPU host (--gpu-host-cores) at least ten times it.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pathlib
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/data_pipeline.py`: make `benchmarks` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import zstandard  # noqa: E402

from benchmarks import harness  # noqa: E402
from jaxdistil import cli  # noqa: E402
from jaxdistil.data import corpus, pipeline, stream, tokenize  # noqa: E402
from jaxdistil.tokenizer import load_tokenizer, train_tokenizer  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
NOVELS = REPO.parent / "shared" / "data" / "fr_novels"
# The paper step's consumption on one H200: docs/performance.md, the H200 table, row
# `ATTENTION=cudnn BATCHES=64 bash benchmarks/gpu.sh --prng rbg --no-pipeline` (tokens/s column).
GPU_STEP_TOKENS_PER_S = 286_750
TARGET_RATIO = 10  # issue 12: one worker x a GPU host's cores >= this many times the step
REPLICA_DATA_FILES = "fr_meta/fr_meta_part_*.jsonl.zst"  # configs/paper.py's hf_data_files, config "fr"
REPLICA_STAMP = "replica.json"  # what the replica was built with: reused when it matches
MB = 1e6


@dataclasses.dataclass(frozen=True)
class Rate:
    """What one stage did in `seconds` (the first output after `first_s`), by `workers` processes."""

    stage: str
    workers: int
    docs: int
    text_bytes: int
    tokens: int
    seconds: float
    first_s: float = float("nan")
    cpu_s: float = float("nan")  # this process's CPU time: what a dedicated core would take (one worker)

    def row(self) -> dict[str, Any]:
        """Totals, per worker, and the time to the first output: `COLUMNS`."""
        docs, megabytes, tokens = (value / self.seconds for value in (self.docs, self.text_bytes / MB, self.tokens))
        return {"stage": self.stage, "workers": self.workers, "docs/s": round(docs), "MB/s": megabytes,
                "tokens/s": round(tokens), "tokens/s/worker": round(tokens / self.workers),
                "MB/s/worker": megabytes / self.workers, "seconds": self.seconds,
                "tokens/CPU-s": round(self.core_tokens_per_s) if self.workers == 1 and self.tokens and self.cpu_s > 0
                else None,  # NaN > 0 is False: stages that measure no CPU time (other processes) show none
                "first (ms)": None if self.first_s != self.first_s else round(self.first_s * 1e3)}

    @property
    def core_tokens_per_s(self) -> float:
        """Tokens per second of one dedicated core: per CPU second (a shared machine's wall clock is not)."""
        return self.tokens / self.cpu_s


COLUMNS = ["stage", "workers", "docs/s", "MB/s", "tokens/s", "MB/s/worker", "tokens/s/worker", "seconds",
           "tokens/CPU-s", "first (ms)"]


# --- the replica --------------------------------------------------------------------------------------


def novel_documents(lines_per_doc: int) -> Iterator[str]:
    """The novels' lines, `lines_per_doc` to a document, novel after novel, forever."""
    novels = sorted(NOVELS.glob("*.txt"))
    if not novels:
        raise FileNotFoundError(f"no novels in {NOVELS} (../shared/data/fr_novels): see ../shared/data/README.md")
    for path in itertools.cycle(novels):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for start in range(0, len(lines), lines_per_doc):
            yield "\n".join(lines[start:start + lines_per_doc])


def oscar_record(text: str, index: int) -> str:
    """One OSCAR-2301 line: `content`, and metadata whose types vary between records as the real ones do."""
    warnings = None if index % 3 else ["tiny", "short_sentences"]
    return json.dumps({
        "content": text,
        "warc_headers": {"warc-record-id": f"<urn:uuid:{index:032x}>", "content-length": str(len(text.encode()))},
        "metadata": {"identification": {"label": "fr", "prob": 0.99}, "quality_warnings": warnings,
                     "categories": None if index % 2 else ["news"]},
    }, ensure_ascii=False)


def build_replica(root: pathlib.Path, megabytes: float, part_mb: float, lines_per_doc: int) -> pathlib.Path:
    """A directory laid out like the OSCAR-2301 repository, holding `megabytes` of novel text."""
    wanted = {"text_mb": megabytes, "part_mb": part_mb, "lines_per_doc": lines_per_doc}
    stamp = root / REPLICA_STAMP
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return root
    (root / "fr_meta").mkdir(parents=True, exist_ok=True)
    for old in (root / "fr_meta").glob("*.jsonl.zst"):
        old.unlink()
    (root / "OSCAR-2301.py").write_text("# the loading script: present, never run\n")
    docs, written, part = novel_documents(lines_per_doc), 0, 0
    compressor = zstandard.ZstdCompressor(level=3)
    while written < megabytes * MB:
        part += 1
        with open(root / "fr_meta" / f"fr_meta_part_{part}.jsonl.zst", "wb") as f, compressor.stream_writer(f) as z:
            in_part = 0
            while in_part < part_mb * MB and written < megabytes * MB:
                text = next(docs)
                z.write((oscar_record(text, written) + "\n").encode())
                size = len(text.encode())
                in_part += size
                written += size
    stamp.write_text(json.dumps(wanted))
    return root


def replica_texts(root: pathlib.Path, megabytes: float) -> Iterator[str]:
    """Clean documents of the replica, read as the trainer reads the Hub repository, up to `megabytes`."""
    texts = corpus.iter_hf_texts(str(root), config="fr", data_files=REPLICA_DATA_FILES, text_field="content")
    read = 0
    for text in texts:
        if read >= megabytes * MB:
            return
        read += len(text.encode())
        yield text


# --- the stages ---------------------------------------------------------------------------------------


def timed(stage: str, workers: int, items: Iterator[Any], measure: Callable[[Any], tuple[int, int, int]]) -> Rate:
    """Runs `items` to their end; `measure(item)` gives its (docs, text bytes, tokens)."""
    cpu_start, start = time.process_time(), time.perf_counter()
    first = float("nan")
    docs = text_bytes = tokens = 0
    for item in items:
        if first != first:
            first = time.perf_counter() - start
        d, b, t = measure(item)
        docs, text_bytes, tokens = docs + d, text_bytes + b, tokens + t
    return Rate(stage, workers, docs, text_bytes, tokens, time.perf_counter() - start, first,
                time.process_time() - cpu_start)


def read_rate(texts: Iterator[str]) -> Rate:
    return timed("read + clean", 1, texts, lambda text: (1, _utf8_bytes([text]), 0))


def prepare_rate(texts: Callable[[], Iterator[str]], tokenizer: Any, out: pathlib.Path, seq_len: int,
                 workers: int, batch_size: int) -> Rate:
    """scripts/prepare_data.py's work: tokenise with `workers` processes, pack, write the shards."""
    counted = {"bytes": 0}

    def counting() -> Iterator[str]:
        for text in texts():
            counted["bytes"] += len(text.encode())
            yield text

    start = time.perf_counter()
    meta = tokenize.tokenize_to_shards(counting(), tokenizer, out, seq_len=seq_len, workers=workers,
                                       batch_size=batch_size)
    return Rate("prepare shards", workers, meta.num_docs, counted["bytes"], meta.num_tokens,
                time.perf_counter() - start)


def tokenize_rate(texts: list[str], tokenizer: Any, workers: int, batch_size: int) -> Rate:
    """Tokenising with `workers` processes; one: in this process, on one thread (a worker's rate)."""
    if workers == 1:
        backend = tokenize.plain_backend(tokenizer)
        chunks = ((chunk, tokenize.encode_chunk(backend, chunk)) for chunk in tokenize.batched(texts, batch_size))
    else:
        chunks = tokenize.encoded_chunks(texts, tokenizer, batch_size=batch_size, workers=workers)
    return timed("tokenise", workers, chunks, lambda chunk: (len(chunk[0]), _utf8_bytes(chunk[0]),
                                                           sum(len(d) for d in chunk[1])))


def _utf8_bytes(texts: Sequence[str]) -> int:
    return sum(len(t.encode()) for t in texts)


def pack_rate(token_docs: list[np.ndarray], seq_len: int, ids: tokenize.SpecialIds) -> Rate:
    blocks = tokenize.iter_packed_blocks(token_docs, seq_len=seq_len, ids=ids)
    return timed("pack", 1, blocks, lambda block: (0, 0, len(block)))


def streaming_worker_rate(texts: Callable[[], Iterator[str]], tokenizer: Any, seq_len: int, batch_size: int
                          ) -> Rate:
    """Read, clean, tokenise (one thread) and pack, chained in this process: one streaming worker."""
    backend = tokenize.plain_backend(tokenizer)
    ids = tokenize.special_ids(tokenizer)
    chunks = tokenize.batched(texts(), batch_size)

    def blocks_of_chunks() -> Iterator[tuple[list[str], int]]:
        state = tokenize.PackState()
        for chunk in chunks:
            made = 0
            for doc in tokenize.encode_chunk(backend, chunk):
                blocks, state = tokenize.pack_document(state, doc, seq_len=seq_len, ids=ids)
                made += len(blocks)
            yield chunk, made

    return timed("read → blocks (one worker)", 1, blocks_of_chunks(),
                 lambda item: (len(item[0]), _utf8_bytes(item[0]), item[1] * seq_len))


# --- batch sources: each a function (setup) -> iterator of the trainer's batches ---------------------------


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a batch source may use: the text, the tokenizer, the shapes, the prepared shards."""

    texts: Callable[[], Iterator[str]]
    tokenizer: Any
    seq_len: int
    batch: int
    workers: int
    shards: pathlib.Path
    replica: pathlib.Path
    stream_lanes: int
    stream_workers: int


def shard_batches(setup: Setup) -> Iterator[dict[str, np.ndarray]]:
    """Local pre-tokenised shards (made by `prepare_rate`), memory-mapped and read by the grain iterator."""
    blocks, meta = tokenize.read_shards(setup.shards, expected_seq_len=setup.seq_len)
    return pipeline.make_train_iterator(blocks, global_batch_size=setup.batch, seed=0, pad_id=meta.pad_id,
                                        process_index=0, process_count=1)


def stream_batches(setup: Setup) -> Iterator[dict[str, np.ndarray]]:
    """The trainer's streaming iterator (data/stream.py) over the replica: its lanes read by its thread or
    its worker processes, two batches (chunks) ahead, as `configs/paper.py` streams the Hub repository
    (time to first batch includes the plan and the workers' start)."""
    source = stream.plan_stream(str(setup.replica), REPLICA_DATA_FILES, config="fr", split="train", n_held_out=0,
                                lanes=setup.stream_lanes, text_field="content", min_chars=1, skip_corrupt_files=False,
                                lanes_setting="--stream-lanes", names=corpus.FLAGS)
    return stream.make_stream_iterator(source, setup.tokenizer, seq_len=setup.seq_len, lanes=setup.stream_lanes,
                                       global_batch_size=setup.batch, prefetch=2, workers=setup.stream_workers,
                                       process_index=0, process_count=1)


BATCH_SOURCES: dict[str, Callable[[Setup], Iterator[dict[str, np.ndarray]]]] = {
    "local shards → batches": shard_batches,
    "stream → batches": stream_batches,
}


def batch_rate(name: str, source: Callable[[Setup], Iterator[dict[str, np.ndarray]]], setup: Setup,
               batches: int, workers: int = 0) -> Rate:
    """Time to the source's first batch (from calling it), then tokens/s over `batches` more; made in this
    process, or by `workers` worker processes (whose CPU time this process does not see)."""
    start = time.perf_counter()
    iterator = source(setup)
    next(iterator)
    first = time.perf_counter() - start
    rate = timed(name, max(workers, 1), itertools.islice(iterator, batches),
                 lambda b: (0, 0, int(b["attention_mask"].sum())))
    return dataclasses.replace(rate, first_s=first, cpu_s=float("nan") if workers else rate.cpu_s)


# --- the report ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None):
    parser = cli.parser(__doc__)
    parser.add_argument("--replica-mb", type=float, default=30, help="text in the OSCAR-layout replica, MB")
    parser.add_argument("--replica-dir", type=pathlib.Path,
                        help="where the replica is built and kept (none: a temporary directory, removed)")
    parser.add_argument("--part-mb", type=float, default=50, help="text per .jsonl.zst part, MB")
    parser.add_argument("--lines-per-doc", type=int, default=40, help="novel lines in one replica document")
    parser.add_argument("--measure-mb", type=float, default=20,
                        help="text the stages after reading are measured on, MB (reading: the whole replica)")
    parser.add_argument("--tokenizer", help="HF fast tokenizer dir (none: a CamemBERT-style unigram trained here)")
    parser.add_argument("--vocab-size", type=int, default=32000, help="vocabulary of the tokenizer trained here")
    parser.add_argument("--tokenizer-docs", type=int, default=2000, help="replica documents whose lines it trains on")
    parser.add_argument("--workers", type=int, default=harness.available_cores(),
                        help="tokenizer processes of the multi-worker rows, one per core by default")
    parser.add_argument("--seq-len", type=int, default=512, help="block length")
    parser.add_argument("--batch", type=int, default=64, help="sequences per batch (the H200 step's micro-batch)")
    parser.add_argument("--batches", type=int, default=200, help="batches timed after the first")
    parser.add_argument("--batch-size", type=int, default=100, help="documents per tokenizer call (a chunk)")
    parser.add_argument("--gpu-host-cores", type=int, default=16, help="CPU cores of the GPU host in the target")
    parser.add_argument("--stream-lanes", type=int, default=1,
                        help="lanes of the streaming iterator (at most the replica's parts: see --part-mb)")
    parser.add_argument("--stream-workers", type=int, default=0,
                        help="worker processes reading the streaming iterator's lanes (0: its thread)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: give at least 1")
    if not 0 <= args.stream_workers <= args.stream_lanes:
        parser.error(f"--stream-workers {args.stream_workers}: give 0 (a thread) to --stream-lanes "
                     f"({args.stream_lanes}): each worker reads whole lanes")
    return args


def run(args, scratch: pathlib.Path) -> list[Rate]:
    replica = build_replica(args.replica_dir or scratch / "replica", args.replica_mb, args.part_mb,
                            args.lines_per_doc)
    print(f"replica: {replica} ({args.replica_mb:g} MB of text, "
          f"{sum(p.stat().st_size for p in replica.rglob('*.zst')) / MB:.0f} MB compressed)", flush=True)

    def texts() -> Iterator[str]:
        return replica_texts(replica, args.measure_mb)

    if args.tokenizer:
        tokenizer = load_tokenizer(args.tokenizer)
    else:
        lines = (line for doc in itertools.islice(texts(), args.tokenizer_docs) for line in doc.splitlines())
        tokenizer = train_tokenizer(lines, args.vocab_size)  # on lines: SentencePiece's sentences
    rates = [read_rate(replica_texts(replica, float("inf")))]  # the whole replica
    sample = list(texts())
    rates.append(tokenize_rate(sample, tokenizer, 1, args.batch_size))
    token_docs = list(tokenize.tokenize_texts(sample, tokenizer, batch_size=args.batch_size))
    rates.append(pack_rate(token_docs, args.seq_len, tokenize.special_ids(tokenizer)))
    rates.append(streaming_worker_rate(texts, tokenizer, args.seq_len, args.batch_size))
    if args.workers > 1:
        rates.append(tokenize_rate(sample, tokenizer, args.workers, args.batch_size))
    shards = scratch / "shards"
    rates.append(prepare_rate(texts, tokenizer, shards, args.seq_len, args.workers, args.batch_size))
    setup = Setup(texts, tokenizer, args.seq_len, args.batch, args.workers, shards, replica, args.stream_lanes,
                  args.stream_workers)
    print(f"stream → batches: {args.stream_lanes} lane(s), "
          + (f"{args.stream_workers} worker process(es)" if args.stream_workers else "its thread"), flush=True)
    return rates + [batch_rate(name, source, setup, args.batches,
                               workers=args.stream_workers if source is stream_batches else 0)
                    for name, source in BATCH_SOURCES.items()]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: the per-worker figures are per core
    print(f"machine: {platform.node()}, {harness.available_cores()} cores", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="data-pipeline-") as scratch:
            rates = run(args, pathlib.Path(scratch))
    except (OSError, ValueError) as error:
        return cli.fail(error)
    print(cli.format_table([r.row() for r in rates], COLUMNS, digits=1))
    worker = next(r for r in rates if r.stage.startswith("read → blocks"))
    one_worker = worker.core_tokens_per_s
    host = one_worker * args.gpu_host_cores
    print(f"GPU step: {GPU_STEP_TOKENS_PER_S:,} tokens/s (one H200, docs/performance.md); one streaming worker "
          f"{one_worker:,.0f} tokens per CPU second ({worker.tokens / worker.seconds:,.0f} per wall second here) "
          f"= {one_worker / GPU_STEP_TOKENS_PER_S:.2f}x the step")
    print(f"target: one worker x {args.gpu_host_cores} cores = {host:,.0f} tokens/s = "
          f"{host / GPU_STEP_TOKENS_PER_S:.1f}x the step (issue 12 asks >= {TARGET_RATIO}x): "
          f"{'met' if host >= TARGET_RATIO * GPU_STEP_TOKENS_PER_S else 'NOT met'}")
    for rate in rates:
        if rate.tokens:
            print(f"{rate.stage} ({rate.workers} worker(s)): {rate.tokens / rate.seconds / GPU_STEP_TOKENS_PER_S:.2f}x "
                  "the step")
    print(f"one_worker_tokens_per_s={one_worker:.0f} host_ratio={host / GPU_STEP_TOKENS_PER_S:.2f} "
          f"first_batch_s={rates[-1].first_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
