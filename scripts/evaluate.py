r"""Held-out masked-LM metrics of one or more models, and their agreement with a teacher.

Every model sees the same blocks masked the same way (--seed), so the rows compare. Prints
one row per model (parameters, MLM loss, perplexity, accuracy; with --teacher also top-1
agreement and KL(teacher ‖ model) on the masked tokens) and writes them as JSON. Example:

    python scripts/evaluate.py --teacher path/to/camembert-base --model runs/student \
        --tokenizer path/to/camembert-base --data data/fr_novels_128/eval \
        --seq-len 128 --max-blocks 500 --out results/mlm.json

--data takes held-out text files (.txt/.jsonl, directories, globs) or one token-shard
directory written by scripts/prepare_data.py.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from jaxdistil import cli, run_config
from jaxdistil.checkpoint import find_tokenizer, load_model_with_tokenizer
from jaxdistil.config import ModelConfig
from jaxdistil.evaluate import lengths, mlm
from jaxdistil.tokenizer import load_tokenizer

COLUMNS = ("model", "role", "params", "loss", "perplexity", "accuracy", "agreement", "kl")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    trained = run_config.base()  # held-out blocks are masked as the trainer's are
    parser = cli.parser(__doc__)
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        required=True,
        help="HF dir / Hub name, params checkpoint or training workdir (repeatable)",
    )
    parser.add_argument("--teacher", help="reference model for agreement and KL (none: no agreement columns)")
    parser.add_argument("--tokenizer", help="tokenizer dir (none: the teacher's or first model's own)")
    parser.add_argument("--data", nargs="+", required=True, help="held-out text files or a shard dir")
    parser.add_argument(
        "--seq-len",
        type=int,
        help="block length, with <s> and </s> (default: the model's longest input, the shortest of --model and "
        "--teacher; with a shard directory as --data: its block length)",
    )
    parser.add_argument("--max-blocks", type=int, help="evaluate on at most N blocks (none: all)")
    parser.add_argument("--batch-size", type=int, default=mlm.BATCH_SIZE, help="blocks per evaluation step")
    parser.add_argument(
        "--mlm-probability",
        type=float,
        default=trained.masking.mlm_probability,
        help="fraction of the non-special tokens masked for prediction",
    )
    parser.add_argument("--seed", type=int, default=mlm.MASKING_SEED, help="masking seed")
    parser.add_argument("--out", type=pathlib.Path, help="write the rows as JSON here (none: printed only)")
    return parser.parse_args(argv)


def block_length(requested: int | None, data: Sequence[str], tokenizer: Any, models: Mapping[str, ModelConfig]) -> int:
    """--seq-len, else the block length of a shard directory or (text) the longest input every model encodes;
    whatever cannot be evaluated is refused in the words of --seq-len and --data, the options to change."""
    shards = mlm.shard_meta(data)
    if shards is None:
        return lengths.input_length("--seq-len", requested, models)
    given = f"--data {data[0]}"
    if shards.vocab_size != len(tokenizer):
        raise ValueError(
            f"{given} was tokenised with {shards.tokenizer!r} ({shards.vocab_size} tokens), not with this tokenizer "
            f"({len(tokenizer)} tokens); pass that --tokenizer, or shards made with this one by scripts/prepare_data.py"
        )
    if requested not in (None, shards.seq_len):
        raise ValueError(
            f"--seq-len {requested} does not match the {shards.seq_len}-token blocks of {given}; leave --seq-len out"
        )
    name, longest = lengths.longest_input(models)
    if shards.seq_len > longest:
        raise ValueError(
            f"the {shards.seq_len}-token blocks of {given} are longer than the {longest} positions model {name} can "
            f"encode; make shards with scripts/prepare_data.py --seq-len {longest}"
        )
    return shards.seq_len


def main(argv: Sequence[str] | None = None) -> int:
    cli.setup_logging()
    args = parse_args(argv)
    try:
        sources = [args.teacher, *args.model] if args.teacher else args.model
        tokenizer_source = args.tokenizer or next(filter(None, map(find_tokenizer, sources)), None)
        if tokenizer_source is None:
            raise ValueError("no model directory holds tokenizer files: pass --tokenizer")
        tokenizer = load_tokenizer(tokenizer_source)
        models = {source: load_model_with_tokenizer(source, tokenizer)[0] for source in args.model}
        teacher = (args.teacher, load_model_with_tokenizer(args.teacher, tokenizer)[0]) if args.teacher else None
        compared = {name: config for name, (config, _) in [*models.items(), *([teacher] if teacher else [])]}
        seq_len = block_length(args.seq_len, args.data, tokenizer, compared)
        blocks = mlm.load_eval_blocks(args.data, tokenizer, seq_len, args.max_blocks)
        masking = mlm.EvalMasking.from_tokenizer(tokenizer, args.mlm_probability)
        rows = mlm.compare_models(
            models, blocks, masking, teacher=teacher, batch_size=args.batch_size, seed=args.seed, progress=True
        )
    except (FileNotFoundError, ValueError, OSError) as error:
        return cli.fail(error)

    print(f"{len(blocks)} blocks x {seq_len} tokens, {rows[0]['masked_tokens']} masked (seed {args.seed})")
    print(cli.format_table(rows, COLUMNS))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "data": args.data,
            "tokenizer": str(tokenizer_source),
            "seq_len": seq_len,
            "num_blocks": int(len(blocks)),
            "seed": args.seed,
            "mlm_probability": args.mlm_probability,
            "rows": rows,
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
