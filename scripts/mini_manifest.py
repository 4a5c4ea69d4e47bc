r"""The plan of one scripts/reproduce_mini.sh invocation, kept in RUN/manifest.json for the report.

    python scripts/mini_manifest.py --knob RUN=runs/mini --knob STEPS=600 ... \
        --default RUN=runs/mini --default STEPS=600 ... --record commands=runs/mini/commands.tsv ...

reproduce_mini.sh calls it at its start with the value of every knob (--knob), the script's
default of every knob (--default) and where the chain's records go (--record). It checks
ABLATIONS against configs/mini.py, writes RUN/manifest.json and prints the runs to train in
the order the chain trains them, one line each: ROLE, KIND (teacher, student or ablation), STEPS
and CONFIG, tab-separated. scripts/mini_report.py reads the manifest.

The manifest (JSON), every field written each time:
    knobs, defaults       NAME -> value: this invocation's knobs and the script's defaults
    teacher               the role the students learn from
    roles                 configs/mini.py's roles, in order: NAME -> {label, description}
    ablations             configs/mini.py's ablations, in order: NAME -> description
    requested_ablations   the ablations this invocation asked for (ABLATIONS)
    planned               the plan at the knobs: train (ROLE -> {config, steps, batch_size, seq_len}),
                          finetune ({seeds, epochs, max_train_examples}) and probe ({extra}: scripts/probe.py's
                          flags beyond the files, '' = its defaults); batch_size is the config's, before
                          TRAIN_OVERRIDES
    full                  the same plan at the script's defaults: the full-size miniature reproduction
    records               NAME -> file under RUN: the exact commands, the stage timings, the invocations
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # configs/ is a folder of the checkout, not an installed package

from configs import mini  # noqa: E402
from jaxdistil import cli  # noqa: E402

MANIFEST = "manifest.json"  # under RUN
CONFIG_FILE = pathlib.Path(mini.__file__).resolve().relative_to(REPO).as_posix()


def requested_ablations(knobs: Mapping[str, str]) -> list[str]:
    """ABLATIONS as a list (each once, in the order given); unknown names are an error."""
    names = list(dict.fromkeys(knobs["ABLATIONS"].split()))
    unknown = [n for n in names if n not in mini.ABLATIONS]
    if unknown:
        raise ValueError(f"unknown ablation(s) {' '.join(unknown)} in ABLATIONS (configs/mini.py has: "
                         f"{' '.join(mini.ABLATIONS)})")
    return names


def plan(knobs: Mapping[str, str]) -> dict[str, Any]:
    """What the chain trains and fine-tunes at these knobs.

    The teacher trains for TEACHER_STEPS, every student for STEPS (an ablation may fix its own,
    as `untrained` does); reproduce_mini.sh gives every training run --config.data.seq_len=SEQ_LEN
    and scripts/finetune.py --seeds FT_SEEDS --epochs FT_EPOCHS --max-train-examples FT_MAX_TRAIN, and
    scripts/probe.py PROBE_EXTRA.
    """
    train = {}
    for role in (*mini.ROLES, *requested_ablations(knobs)):
        arg = f"{role},{knobs['RUN']},{knobs['TEACHER_STEPS'] if role == mini.TEACHER else knobs['STEPS']}"
        config = mini.get_config(arg)
        train[role] = {"config": f"{CONFIG_FILE}:{arg}", "steps": config.train.steps,
                       "batch_size": config.train.batch_size, "seq_len": int(knobs["SEQ_LEN"])}
    max_train = knobs["FT_MAX_TRAIN"]
    finetune = {"seeds": [int(s) for s in knobs["FT_SEEDS"].split()], "epochs": int(knobs["FT_EPOCHS"]),
                "max_train_examples": int(max_train) if max_train else None}
    return {"train": train, "finetune": finetune, "probe": {"extra": knobs["PROBE_EXTRA"]}}


def build(knobs: Mapping[str, str], defaults: Mapping[str, str], records: Mapping[str, str]) -> dict[str, Any]:
    run = knobs["RUN"]
    return {
        "knobs": dict(knobs),
        "defaults": dict(defaults),
        "teacher": mini.TEACHER,
        "roles": {name: role._asdict() for name, role in mini.ROLES.items()},
        "ablations": dict(mini.ABLATIONS),
        "requested_ablations": requested_ablations(knobs),
        "planned": plan(knobs),
        "full": plan(defaults),
        "records": {name: os.path.relpath(path, run) for name, path in records.items()},
    }


def read(run: pathlib.Path) -> dict[str, Any]:
    path = run / MANIFEST
    if not path.is_file():
        raise ValueError(f"no {path}: scripts/reproduce_mini.sh writes it when it starts (re-run it with the "
                         "run's knobs: finished stages are skipped)")
    return json.loads(path.read_text(encoding="utf-8"))


def assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__)
    parser.add_argument("--knob", action="append", type=assignment, default=[], metavar="NAME=VALUE",
                        help="one knob of this invocation (repeatable; RUN, STEPS, TEACHER_STEPS, SEQ_LEN, "
                             "ABLATIONS, FT_SEEDS, FT_EPOCHS, FT_MAX_TRAIN and PROBE_EXTRA are needed)")
    parser.add_argument("--default", action="append", type=assignment, default=[], metavar="NAME=VALUE",
                        help="the script's default of one knob (repeatable; the same knobs)")
    parser.add_argument("--record", action="append", type=assignment, default=[], metavar="NAME=PATH",
                        help="a file the chain writes its records to, e.g. commands=RUN/commands.tsv (repeatable)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    cli.setup_logging()
    args = parse_args(argv)
    knobs, defaults = dict(args.knob), dict(args.default)
    try:
        manifest = build(knobs, defaults, dict(args.record))
    except KeyError as error:
        return cli.fail(f"no value for the knob {error.args[0]} (give --knob and --default for it)")
    except ValueError as error:
        return cli.fail(error)
    path = pathlib.Path(knobs["RUN"]) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for role, planned in manifest["planned"]["train"].items():
        kind = "teacher" if role == mini.TEACHER else "student" if role in mini.ROLES else "ablation"
        print(f"{role}\t{kind}\t{planned['steps']}\t{planned['config']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
