"""Distil (or MLM-pre-train) a RoBERTa-family model with jaxdistil.

    python scripts/train.py --config configs/tiny.py --workdir runs/tiny
    python scripts/train.py --config configs/paper.py --workdir runs/distilcamembert \
        --config.train.batch_size=256

Re-running the same command with the same workdir resumes from its latest checkpoint.
Several hosts: run the same command on each, with --coordinator_address, --num_processes
and --process_id (or the environment JAX's `jax.distributed.initialize()` understands).
"""

import logging
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<name>.py[:arg]", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints, logs and the export go")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes (multi-host)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index (multi-host)")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() from the environment")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every file it writes at INFO
    import jax

    if _COORDINATOR.value or _DISTRIBUTED.value:
        # CPU processes need a collectives backend (GPUs/TPUs bring their own).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    from jaxdistil.cli import fail
    from jaxdistil.loop import run

    try:
        metrics = run(_CONFIG.value, _WORKDIR.value)
    except (OSError, ValueError, ImportError) as e:
        sys.exit(fail(e))
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("loss/", "eval/"))}
    print(f"done: {_WORKDIR.value} {shown}")


if __name__ == "__main__":
    app.run(main)
