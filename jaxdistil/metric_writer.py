"""Training metrics to TensorBoard event files and to `metrics.jsonl`, from process 0 only.

A resumed run continues from its last checkpoint (a new one from step 0), so the steps logged
after it by an interrupted invocation are dropped from both sinks (`start_step`): every step
appears once, with the values of the run that continued.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
from tensorboardX import SummaryWriter

from jaxdistil.workdir import Workdir


class MetricWriter:
    """Scalars to TensorBoard and to a JSONL log (one line per logged step)."""

    def __init__(self, workdir: Workdir, start_step: int, enabled: bool = True):
        self.enabled = enabled
        if enabled:
            truncate_jsonl(workdir, start_step)
            # TensorBoard hides the events of the steps after `start_step` that older files hold.
            self._tb = SummaryWriter(str(workdir.tensorboard), purge_step=start_step + 1)
            self._jsonl = open(workdir.metrics, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in scalars.items():
            self._tb.add_scalar(k, v, step)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()

    def close(self) -> None:
        if self.enabled:
            self._tb.close()
            self._jsonl.close()


def read_rows(workdir: Workdir) -> list[dict[str, Any]]:
    if not workdir.metrics.is_file():
        return []
    with open(workdir.metrics, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_jsonl(workdir: Workdir, last_step: int) -> None:
    """Keeps the rows up to `last_step` (written to a new file, then renamed over the old one)."""
    rows = read_rows(workdir)
    kept = [r for r in rows if r["step"] <= last_step]
    if len(kept) == len(rows):
        return
    partial = workdir.metrics.with_suffix(".jsonl.partial")
    partial.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    os.replace(partial, workdir.metrics)


def last_logged(workdir: Workdir) -> dict[str, float]:
    """The scalars of the last logged step, merged over its rows (train and eval), without `step`."""
    rows = read_rows(workdir)
    if not rows:
        return {}
    last = rows[-1]["step"]
    return {k: v for r in rows if r["step"] == last for k, v in r.items() if k != "step"}


def host_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}
