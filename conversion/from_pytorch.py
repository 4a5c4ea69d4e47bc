"""Converts an HF PyTorch RoBERTa/CamemBERT masked LM into a jaxdistil params checkpoint.

    python conversion/from_pytorch.py --model camembert-base --out checkpoints/camembert-base
    python conversion/from_pytorch.py --model path/to/hf_dir --out checkpoints/teacher

Writes OUT/config.json, OUT/params/ (Orbax) and the tokenizer files when the source has them.
"""

from __future__ import annotations

import argparse
import logging
import sys

from jaxdistil.checkpoint import has_tokenizer, save_params_checkpoint
from jaxdistil.cli import count_params, fail
from jaxdistil.convert import load_hf
from jaxdistil.tokenizer import load_tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="HF checkpoint directory or Hub name (online)")
    parser.add_argument("--out", required=True, help="directory for the params checkpoint")
    parser.add_argument("--tokenizer", help="tokenizer dir or Hub name (default: the model's own, if any)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config, params = load_hf(args.model)
        tokenizer_source = args.tokenizer or (args.model if has_tokenizer(args.model) else None)
        tokenizer = load_tokenizer(tokenizer_source) if tokenizer_source else None
        out = save_params_checkpoint(args.out, config, params, tokenizer)
    except (OSError, ValueError, ImportError) as e:
        return fail(e)
    print(f"wrote {out}: {config.model_type} {config.num_hidden_layers} layers x {config.hidden_size}, "
          f"vocab {config.vocab_size}, {count_params(params):,} parameters, "
          f"tokenizer: {'yes' if tokenizer is not None else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
