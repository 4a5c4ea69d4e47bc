r"""Distil (or MLM-pre-train) a RoBERTa-family model with jaxdistil.

    python scripts/train.py --config configs/tiny.py --workdir runs/tiny
    python scripts/train.py --config configs/paper.py --workdir runs/distilcamembert \
        --config.train.batch_size=256

Every field of --config, with its default and what it means, is documented in
jaxdistil/run_config.py (`base()`); any of them can be overridden as --config.SECTION.FIELD=VALUE.
Re-running the same command with the same workdir resumes from its latest checkpoint.
Several hosts: run the same command on each, with --coordinator-address, --num-processes
and --process-id (or --distributed, for the environment `jax.distributed.initialize()` reads).
"""

import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from jaxdistil import cli
from jaxdistil.loop import run

_ONE_PROCESS = "multi-host; default: none, one process"
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/<name>.py[:arg] (required); its fields are documented in jaxdistil/run_config.py",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "where checkpoints, logs, the tokenizer and the export go (required; no default)")
_COORDINATOR = flags.DEFINE_string("coordinator-address", None, f"host:port of process 0 ({_ONE_PROCESS})")
_NUM_PROCESSES = flags.DEFINE_integer("num-processes", None, f"number of processes ({_ONE_PROCESS})")
_PROCESS_ID = flags.DEFINE_integer("process-id", None, f"this process's index ({_ONE_PROCESS})")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() from the environment")
for _name in ("coordinator-address", "num-processes", "process-id"):  # the underscore spellings still work
    flags.DEFINE_alias(_name.replace("-", "_"), _name)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    cli.setup_logging()
    if _COORDINATOR.value or _DISTRIBUTED.value:
        # CPU processes need a collectives backend (GPUs/TPUs bring their own).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    try:
        metrics = run(_CONFIG.value, _WORKDIR.value)
    except (OSError, ValueError, ImportError) as e:
        sys.exit(cli.fail(e))
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("loss/", "eval/"))}
    print(f"done: {_WORKDIR.value} {shown}")


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # absl's --help exits 1; asking for help is not an error
        app.usage(shorthelp=True, writeto_stdout=True)
        sys.exit(0)
    app.run(main)
