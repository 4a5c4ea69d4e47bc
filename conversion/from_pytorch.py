r"""Converts an HF PyTorch RoBERTa/CamemBERT masked LM into a jaxdistil params checkpoint.

    python conversion/from_pytorch.py --model camembert-base --out checkpoints/camembert-base
    python conversion/from_pytorch.py --model path/to/hf_dir --out checkpoints/teacher

Writes OUT/config.json, OUT/params/ (Orbax) and the tokenizer files when the source has them.
"""

from __future__ import annotations

import sys

from jaxdistil import cli
from jaxdistil.checkpoint import has_tokenizer, save_params_checkpoint
from jaxdistil.convert import load_hf
from jaxdistil.tokenizer import load_tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--model", required=True, help="HF checkpoint directory or Hub name (online) (required)")
    parser.add_argument("--out", required=True, help="directory for the params checkpoint (required)")
    parser.add_argument("--tokenizer", help="tokenizer dir or Hub name (default: the model's own, if any)")
    args = parser.parse_args(argv)
    cli.setup_logging()
    try:
        config, params = load_hf(args.model)
        tokenizer_source = args.tokenizer or (args.model if has_tokenizer(args.model) else None)
        tokenizer = load_tokenizer(tokenizer_source) if tokenizer_source else None
        out = save_params_checkpoint(args.out, config, params, tokenizer)
    except (OSError, ValueError, ImportError) as e:
        return cli.fail(e)
    print(f"wrote {out}: {cli.describe_model(config, params)}, tokenizer: {'yes' if tokenizer is not None else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
