"""Exports a jaxdistil model as an HF PyTorch checkpoint directory.

    python conversion/to_pytorch.py --checkpoint runs/distilcamembert --out distilcamembert-base
    python conversion/to_pytorch.py --checkpoint checkpoints/teacher --out hf_teacher --tokenizer tok_dir

CHECKPOINT is a training workdir (the latest step, or --step) or a params checkpoint from
conversion/from_pytorch.py. OUT then loads with `AutoModelForMaskedLM.from_pretrained(OUT)`
and `pipeline("fill-mask", model=OUT)`.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys

from jaxdistil.checkpoint import has_tokenizer, is_params_checkpoint, load_params_checkpoint
from jaxdistil.cli import count_params, fail
from jaxdistil.convert import save_hf
from jaxdistil.tokenizer import load_tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="training workdir or params checkpoint dir")
    parser.add_argument("--out", required=True, help="HF directory to write")
    parser.add_argument("--tokenizer", help="tokenizer dir or Hub name (default: the checkpoint's own)")
    parser.add_argument("--step", type=int, help="training step to export (default: the latest)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        source = pathlib.Path(args.checkpoint)
        if not source.exists():
            raise FileNotFoundError(f"no checkpoint at {source}")
        if is_params_checkpoint(source):
            config, params = load_params_checkpoint(source)
            tokenizer_dir = source if has_tokenizer(source) else None
            step = None
        else:
            from jaxdistil.train import load_student_from_workdir

            config, params, step = load_student_from_workdir(source, step=args.step)
            tokenizer_dir = source / "tokenizer" if has_tokenizer(source / "tokenizer") else None
        tokenizer_source = args.tokenizer or tokenizer_dir
        tokenizer = load_tokenizer(tokenizer_source) if tokenizer_source else None
        out = save_hf(config, params, args.out, tokenizer)
    except (OSError, ValueError, ImportError) as e:
        return fail(e)
    print(f"wrote {out}{f' (step {step})' if step is not None else ''}: "
          f"{config.num_hidden_layers} layers x {config.hidden_size}, {count_params(params):,} parameters, "
          f"tokenizer: {'yes' if tokenizer is not None else 'no (pass --tokenizer)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
