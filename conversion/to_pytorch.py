r"""Exports a jaxdistil model as an HF PyTorch checkpoint directory.

    python conversion/to_pytorch.py --checkpoint runs/distilcamembert --out distilcamembert-base
    python conversion/to_pytorch.py --checkpoint checkpoints/teacher --out hf_teacher --tokenizer tok_dir
    python conversion/to_pytorch.py --checkpoint runs/distilcamembert --out distilcamembert-base \
        --results results/suite/suite.json --push-to-hub USER/distilcamembert-base --private

CHECKPOINT is a training workdir (the latest step, or --step) or a params checkpoint from
conversion/from_pytorch.py. OUT then loads with `AutoModelForMaskedLM.from_pretrained(OUT)`
and `pipeline("fill-mask", model=OUT)`. A non-empty OUT is replaced only with --overwrite, and
never when it is a training workdir or one of its files (its `teacher/` or `tokenizer/`, say),
except the workdir's own export directory `hf/`.

Every export writes a model card, OUT/README.md: metadata, the recipe (from a workdir), usage,
the suite's results (--results, from scripts/benchmark_suite.py) and citations. --push-to-hub
uploads OUT as one commit (token from HF_TOKEN or `hf auth login`); a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import pathlib
import sys

from jaxdistil import cli
from jaxdistil.checkpoint import has_tokenizer, is_params_checkpoint, load_params_checkpoint, load_student_from_workdir
from jaxdistil.model_card import PublishError, push_to_hub, write_export
from jaxdistil.tokenizer import load_tokenizer
from jaxdistil.workdir import Workdir, owning_workdir


def check_destination(out: pathlib.Path, overwrite: bool) -> None:
    """Refuses to write where an export would destroy something (ValueError naming it)."""
    owner = owning_workdir(out)
    if owner is not None and out.resolve() != owner.hf_export.resolve():
        raise ValueError(f"--out {out} is inside the training workdir {owner.root}, whose files a resume reads; "
                         f"export elsewhere, or to {owner.hf_export}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ValueError(f"--out {out} exists and is not empty; choose a new directory, or pass --overwrite "
                         "to replace its model files")


def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--checkpoint", required=True, help="training workdir or params checkpoint dir (required)")
    parser.add_argument("--out", required=True, help="HF directory to write (required)")
    parser.add_argument("--tokenizer", help="tokenizer dir or Hub name (default: the checkpoint's own)")
    parser.add_argument("--step", type=int, help="training step to export (default: the latest)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    parser.add_argument("--results", type=pathlib.Path,
                        help="suite.json of scripts/benchmark_suite.py, put in the model card (none: no results)")
    parser.add_argument("--push-to-hub", metavar="USER/NAME",
                        help="upload OUT to this Hub repository (none: local only)")
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    args = parser.parse_args(argv)
    cli.setup_logging()
    try:
        source = pathlib.Path(args.checkpoint)
        if not source.exists():
            raise FileNotFoundError(f"no checkpoint at {source}")
        check_destination(pathlib.Path(args.out), args.overwrite)
        if is_params_checkpoint(source):
            config, params = load_params_checkpoint(source)
            tokenizer_dir = source if has_tokenizer(source) else None
            step = None
        else:
            config, params, step = load_student_from_workdir(source, step=args.step)
            tokenizer_dir = Workdir(source).tokenizer if has_tokenizer(Workdir(source).tokenizer) else None
        tokenizer_source = args.tokenizer or tokenizer_dir
        tokenizer = load_tokenizer(tokenizer_source) if tokenizer_source else None
        if args.private and not args.push_to_hub:
            raise ValueError("--private only applies with --push-to-hub USER/NAME")
        if args.push_to_hub and args.push_to_hub.count("/") != 1:
            raise ValueError(f"--push-to-hub {args.push_to_hub}: expected USER/NAME")
        suite = json.loads(args.results.read_text(encoding="utf-8")) if args.results else None
        workdir = None if is_params_checkpoint(source) else source
        out = write_export(config, params, args.out, tokenizer, workdir=workdir, suite=suite, repo_id=args.push_to_hub)
        print(f"wrote {out}{f' (step {step})' if step is not None else ''}: {cli.describe_model(config, params)}, "
              f"tokenizer: {'yes' if tokenizer is not None else 'no (pass --tokenizer)'}, model card README.md")
        if args.push_to_hub:
            print(f"published to {push_to_hub(out, args.push_to_hub, private=args.private)}")
    except (OSError, ValueError, ImportError, PublishError) as e:
        return cli.fail(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
