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
from collections.abc import Sequence

from jaxdistil import cli, run_config
from jaxdistil.checkpoint import find_tokenizer, load_model_with_tokenizer
from jaxdistil.evaluate import mlm
from jaxdistil.tokenizer import load_tokenizer

COLUMNS = ("model", "role", "params", "loss", "perplexity", "accuracy", "agreement", "kl")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    trained = run_config.base()  # held-out blocks are packed and masked as the trainer's are
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
    parser.add_argument("--seq-len", type=int, default=trained.data.seq_len, help="block length, with <s> and </s>")
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
        blocks = mlm.load_eval_blocks(args.data, tokenizer, args.seq_len, args.max_blocks)
        masking = mlm.EvalMasking.from_tokenizer(tokenizer, args.mlm_probability)
        rows = mlm.compare_models(
            models, blocks, masking, teacher=teacher, batch_size=args.batch_size, seed=args.seed, progress=True
        )
    except (FileNotFoundError, ValueError, OSError) as error:
        return cli.fail(error)

    print(f"{len(blocks)} blocks x {args.seq_len} tokens, {rows[0]['masked_tokens']} masked (seed {args.seed})")
    print(cli.format_table(rows, COLUMNS))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "data": args.data,
            "tokenizer": str(tokenizer_source),
            "seq_len": args.seq_len,
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
