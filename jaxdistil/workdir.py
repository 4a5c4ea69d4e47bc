"""Every path of a training run, named once.

A workdir holds what `scripts/train.py` writes and everything that reads a run (resume,
export, evaluation, fine-tuning) looks for:

    checkpoints/<step>/     Orbax: the train state and the grain iterator (`checkpoint.py`)
    student_config.json     the student's HF config fields
    run_config.json         the run config as trained
    tokenizer/              the run's tokenizer (HF files)
    teacher/                a random-init teacher, saved once in HF format (teacher.source="random")
    data/{train,eval}/      token shards tokenised on the first run
    metrics.jsonl, tensorboard/
    hf/                     the HF export (export_hf=True)
"""

from __future__ import annotations

import dataclasses
import os
import pathlib


@dataclasses.dataclass(frozen=True)
class Workdir:
    root: pathlib.Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", pathlib.Path(root))

    @property
    def checkpoints(self) -> pathlib.Path:
        return self.root / "checkpoints"

    @property
    def student_config(self) -> pathlib.Path:
        return self.root / "student_config.json"

    @property
    def run_config(self) -> pathlib.Path:
        return self.root / "run_config.json"

    @property
    def tokenizer(self) -> pathlib.Path:
        return self.root / "tokenizer"

    @property
    def teacher(self) -> pathlib.Path:
        return self.root / "teacher"

    def data(self, split: str) -> pathlib.Path:
        return self.root / "data" / split

    @property
    def metrics(self) -> pathlib.Path:
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> pathlib.Path:
        return self.root / "tensorboard"

    @property
    def hf_export(self) -> pathlib.Path:
        return self.root / "hf"


def is_training_workdir(path: str | os.PathLike) -> bool:
    """A directory `scripts/train.py` wrote (it has checkpoints/), as opposed to a model directory."""
    return Workdir(path).checkpoints.is_dir()
