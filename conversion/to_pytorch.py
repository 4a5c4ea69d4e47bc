r"""Exports a jaxdistil model as an HF PyTorch checkpoint directory.

    python conversion/to_pytorch.py --checkpoint runs/distilcamembert --out distilcamembert-base
    python conversion/to_pytorch.py --checkpoint checkpoints/teacher --out hf_teacher --tokenizer tok_dir

CHECKPOINT is a training workdir (the latest step, or --step) or a params checkpoint from
conversion/from_pytorch.py. OUT then loads with `AutoModelForMaskedLM.from_pretrained(OUT)`
and `pipeline("fill-mask", model=OUT)`.
"""

from __future__ import annotations

import pathlib
import sys

from jaxdistil import cli
from jaxdistil.checkpoint import has_tokenizer, is_params_checkpoint, load_params_checkpoint, load_student_from_workdir
from jaxdistil.convert import save_hf
from jaxdistil.tokenizer import load_tokenizer
from jaxdistil.workdir import Workdir


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--checkpoint", required=True, help="training workdir or params checkpoint dir (required)")
    parser.add_argument("--out", required=True, help="HF directory to write (required)")
    parser.add_argument("--tokenizer", help="tokenizer dir or Hub name (default: the checkpoint's own)")
    parser.add_argument("--step", type=int, help="training step to export (default: the latest)")
    args = parser.parse_args(argv)
    cli.setup_logging()
    try:
        source = pathlib.Path(args.checkpoint)
        if not source.exists():
            raise FileNotFoundError(f"no checkpoint at {source}")
        if is_params_checkpoint(source):
            config, params = load_params_checkpoint(source)
            tokenizer_dir = source if has_tokenizer(source) else None
            step = None
        else:
            config, params, step = load_student_from_workdir(source, step=args.step)
            tokenizer_dir = Workdir(source).tokenizer if has_tokenizer(Workdir(source).tokenizer) else None
        tokenizer_source = args.tokenizer or tokenizer_dir
        tokenizer = load_tokenizer(tokenizer_source) if tokenizer_source else None
        out = save_hf(config, params, args.out, tokenizer)
    except (OSError, ValueError, ImportError) as e:
        return cli.fail(e)
    print(f"wrote {out}{f' (step {step})' if step is not None else ''}: {cli.describe_model(config, params)}, "
          f"tokenizer: {'yes' if tokenizer is not None else 'no (pass --tokenizer)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
