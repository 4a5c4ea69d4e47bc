"""Guess the masked word(s) of a sentence with a masked LM, as HF `pipeline("fill-mask")` does.

    python scripts/fill_mask.py "Le camembert est <mask> :)" --model runs/student/hf --top-k 5
    python scripts/fill_mask.py "Paris est la <mask> de la France." --model ckpt --tokenizer tok --json

Prints a table of score / token / sequence for each mask, or with --json the pipeline's own
answer shape: a list of {score, token, token_str, sequence} (a list of such lists when the
text holds several masks).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from jaxdistil import cli
from jaxdistil.checkpoint import load_model_with_tokenizer
from jaxdistil.evaluate.mlm import FILL_MASK_TOP_K, fill_mask


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__)
    parser.add_argument("text", help="text with one or more <mask> tokens")
    parser.add_argument("--model", required=True, help="HF dir / Hub name, params checkpoint or workdir")
    parser.add_argument("--tokenizer", help="tokenizer dir (none: the model's own)")
    parser.add_argument("--top-k", type=int, default=FILL_MASK_TOP_K, help="proposals per mask")
    parser.add_argument("--json", action="store_true", help="print the pipeline-shaped JSON answer")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    cli.setup_logging()
    args = parse_args(argv)
    try:
        model, tokenizer = load_model_with_tokenizer(args.model, args.tokenizer)
        answer = fill_mask(model, tokenizer, args.text, top_k=args.top_k)
    except (FileNotFoundError, ValueError, OSError) as error:
        return cli.fail(error)
    if args.json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    per_mask = [answer] if answer and isinstance(answer[0], dict) else answer
    for index, proposals in enumerate(per_mask):
        if len(per_mask) > 1:
            print(f"mask {index + 1}:")
        print(cli.format_table(proposals, ["token_str", "score", "token", "sequence"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
