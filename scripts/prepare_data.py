r"""Tokenise a text corpus once into packed token shards for MLM distillation.

Writes OUT/train (and OUT/eval with --holdout-files) — int32 .npy shards of
`<s> ... </s>` blocks, token_counts.npy and meta.json — read back by
`jaxdistil.data.tokenize.read_shards`. With fewer input files than --holdout-files + 1
(e.g. one), a seeded --holdout-fraction of the documents is held out instead. Example
(ELTeC French novels, 6 held out):

    python scripts/prepare_data.py --input ../shared/data/fr_novels \
        --tokenizer path/to/camembert-base --seq-len 512 --out data/fr_novels_512 \
        --holdout-files 6

--workers processes tokenise; the shards are the same bytes for any number of them. An
interrupted run (killed, out of disk) resumes when the same command is run again: the
complete shards are checked and kept, their documents skipped, and it goes on from there
(--overwrite starts from nothing).
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys
from collections.abc import Iterator, Sequence

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from jaxdistil import cli
from jaxdistil.data import corpus
from jaxdistil.data.tokenize import (
    META_FILE,
    ShardMeta,
    TokenizeProgress,
    read_meta,
    tokenize_to_shards,
)
from jaxdistil.run_config import base
from jaxdistil.tokenizer import load_tokenizer

RUN_DATA = base().data  # the defaults shared with a run's data settings
log = logging.getLogger("jaxdistil.prepare_data")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__)
    source = parser.add_argument_group("input (local files, or an HF dataset)")
    source.add_argument(
        "--input",
        nargs="+",
        default=[],
        metavar="PATH",
        help=".txt (one document per line) / .jsonl files, directories, globs",
    )
    source.add_argument("--text-field", default="text", help="text field of .jsonl / HF records")
    source.add_argument("--hf-dataset", help="HF dataset name, streamed (needs the network); "
                        "give it or --input")
    source.add_argument("--hf-config", help="HF dataset config, e.g. unshuffled_deduplicated_fr (default: none)")
    source.add_argument("--hf-split", default="train", help="HF dataset split")
    parser.add_argument("--tokenizer", required=True, help="HF fast tokenizer dir or name (required)")
    parser.add_argument("--seq-len", type=int, required=True, help="block length, with <s> </s> (required)")
    parser.add_argument("--out", required=True, type=pathlib.Path, help="output directory (required)")
    parser.add_argument("--max-docs", type=int, help="stop after this many documents per split (default: all)")
    parser.add_argument(
        "--holdout-files",
        type=int,
        default=0,
        metavar="K",
        help="hold out K whole files (seeded choice) as OUT/eval",
    )
    parser.add_argument("--holdout-fraction", type=float, default=RUN_DATA.holdout_fraction,
                        help="share of the documents held out instead when there are too few files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out file (or document) choice")
    parser.add_argument("--encoding", choices=corpus.ENCODINGS, default=RUN_DATA.encoding,
                        help="codec of the input files (utf-8: undecodable bytes dropped and counted)")
    parser.add_argument(
        "--min-chars", type=int, default=1, help="drop documents shorter than this after cleaning"
    )
    parser.add_argument(
        "--doc-boundary",
        choices=("line", "paragraph"),
        default="line",
        help=".txt documents: one per line, or per blank-line paragraph",
    )
    parser.add_argument(
        "--keep-remainder", action="store_true", help="pad the final partial block instead of dropping it"
    )
    parser.add_argument("--blocks-per-shard", type=int, default=65536, help="blocks in each .npy shard file")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)),
                        help="tokenizer processes, one per core by default (1: tokenise in this process)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing shards, and start an interrupted run again from nothing")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: give at least 1")
    if bool(args.input) == bool(args.hf_dataset):
        parser.error("give exactly one of --input PATHS... or --hf-dataset NAME")
    if args.hf_dataset and args.holdout_files:
        parser.error(
            "--holdout-files needs local --input files; for an HF dataset run "
            "again with --hf-split set to its validation split"
        )
    return args


def plan_holdout(args: argparse.Namespace) -> corpus.Holdout | None:
    """The input files and what of them goes to OUT/eval (None: the HF dataset)."""
    if args.hf_dataset:
        return None
    files = corpus.check_local_files(args.input, encoding=args.encoding)
    return corpus.plan_holdout(files, args.holdout_files, args.holdout_fraction, seed=args.seed)


def splits(holdout: corpus.Holdout | None) -> dict[str, bool]:
    """Split name -> whether it is the held-out side."""
    return {"train": False, "eval": True} if holdout is not None and holdout.eval_files else {"train": False}


def texts_for(args: argparse.Namespace, holdout, held_out: bool, stats: corpus.CorpusStats) -> Iterator[str]:
    common = dict(text_field=args.text_field, min_chars=args.min_chars, max_docs=args.max_docs, stats=stats)
    if holdout is None:
        return corpus.iter_hf_texts(args.hf_dataset, config=args.hf_config, split=args.hf_split, **common)
    return corpus.iter_holdout_texts(holdout, held_out=held_out, doc_boundary=args.doc_boundary,
                                     encoding=args.encoding, **common)


def write_split(args, tokenizer, split: str, holdout, held_out: bool) -> tuple[ShardMeta, corpus.CorpusStats]:
    stats = corpus.CorpusStats()
    with (
        tqdm(desc=f"{split} docs", unit="doc") as docs_bar,
        tqdm(desc=f"{split} tokens", unit="tok", unit_scale=True) as tokens_bar,
    ):

        def on_progress(progress: TokenizeProgress) -> None:
            docs_bar.update(progress.docs - docs_bar.n)
            tokens_bar.update(progress.tokens - tokens_bar.n)

        meta = tokenize_to_shards(
            texts_for(args, holdout, held_out, stats),
            tokenizer,
            args.out / split,
            seq_len=args.seq_len,
            tokenizer_name=args.tokenizer,
            drop_remainder=not args.keep_remainder,
            blocks_per_shard=args.blocks_per_shard,
            workers=args.workers,
            on_progress=on_progress,
            overwrite=args.overwrite,
        )
    return meta, stats


def finished_splits(args: argparse.Namespace, split_names: list[str]) -> list[str]:
    """The splits an earlier, interrupted run finished, to keep while it resumes the others (none when
    all are finished: then the output is complete, and writing it again needs --overwrite)."""
    finished = [split for split in split_names if (args.out / split / META_FILE).exists()]
    if args.overwrite or len(finished) == len(split_names):
        return []
    for split in finished:
        meta = read_meta(args.out / split)
        if (meta.seq_len, meta.tokenizer) != (args.seq_len, args.tokenizer):
            raise ValueError(f"{args.out / split} holds shards made with other settings (--seq-len {meta.seq_len}, "
                             f"--tokenizer {meta.tokenizer}): run with --overwrite or choose another --out")
    return finished


def summary(split: str, meta: ShardMeta, stats: corpus.CorpusStats, holdout, held_out: bool) -> str:
    if holdout is None:
        source = "HF dataset"
    else:
        files = holdout.eval_files if held_out else holdout.train_files
        share = (holdout.document_fraction if held_out else 1 - holdout.document_fraction) * 100
        source = f"{len(files)} file(s)" + (f" ({share:g} % of the documents)" if holdout.document_fraction else "")
    return (
        f"{split}: {source}, {meta.num_docs} docs kept ({stats.docs_dropped} dropped, "
        f"{stats.undecodable_bytes} undecodable bytes) -> {meta.num_blocks} blocks x "
        f"{meta.seq_len} = {meta.num_tokens} tokens in {len(meta.shards)} shard(s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    lines = []
    try:
        with logging_redirect_tqdm():  # log lines above the progress bars, not through them
            holdout = plan_holdout(args)
            tokenizer = load_tokenizer(args.tokenizer)
            split_sides = splits(holdout)
            finished = finished_splits(args, list(split_sides))
            for split, held_out in split_sides.items():
                if split in finished:
                    meta = read_meta(args.out / split)
                    log.info("%s: complete from an earlier run, kept", args.out / split)
                    lines.append(f"{split}: kept from an earlier run, {meta.num_blocks} blocks x {meta.seq_len} "
                                 f"in {len(meta.shards)} shard(s)")
                    continue
                meta, stats = write_split(args, tokenizer, split, holdout, held_out)
                lines.append(summary(split, meta, stats, holdout, held_out))
    except (FileNotFoundError, FileExistsError, ValueError, OSError) as e:
        return cli.fail(e)
    print("\n".join(lines + [f"shards in {args.out}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
