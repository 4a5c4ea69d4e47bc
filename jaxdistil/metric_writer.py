"""Training metrics to TensorBoard event files and to `metrics.jsonl`, from process 0 only."""

from __future__ import annotations

import json
from typing import Any

import jax
from tensorboardX import SummaryWriter

from jaxdistil.workdir import Workdir


class MetricWriter:
    """Scalars to TensorBoard and to a JSONL log (one line per logged step)."""

    def __init__(self, workdir: Workdir, enabled: bool = True):
        self.enabled = enabled
        if enabled:
            self._tb = SummaryWriter(str(workdir.tensorboard))
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


def host_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(metrics).items()}
