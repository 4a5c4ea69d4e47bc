"""Every path of a training run, named once.

A workdir holds what `scripts/train.py` writes and everything that reads a run (resume,
export, evaluation, fine-tuning) looks for:

    checkpoints/<step>/     Orbax: the train state and the grain iterator (`checkpoint.py`)
    checkpoints.unreadable/ checkpoints that a resume could not read, moved aside
    student_config.json     the student's HF config fields
    run_config.json         the run config as trained (`run_record.py`)
    run_history.jsonl       one line per invocation: when, where, resumed from, what changed
    run.lock                held by the process training in it (`lock`)
    tokenizer/              the run's tokenizer (HF files)
    teacher/                a random-init teacher, saved once in HF format (teacher.source="random")
    data/{train,eval}/      token shards tokenised on the first run
    metrics.jsonl, tensorboard/
    hf/                     the HF export (export_hf=True)
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import logging
import os
import pathlib
import socket

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Workdir:
    root: pathlib.Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", pathlib.Path(root))

    @property
    def checkpoints(self) -> pathlib.Path:
        return self.root / "checkpoints"

    @property
    def unreadable_checkpoints(self) -> pathlib.Path:
        """Where resume moves checkpoints it cannot read (never deleted: a user may recover them)."""
        return self.root / "checkpoints.unreadable"

    @property
    def student_config(self) -> pathlib.Path:
        return self.root / "student_config.json"

    @property
    def run_config(self) -> pathlib.Path:
        return self.root / "run_config.json"

    @property
    def run_history(self) -> pathlib.Path:
        return self.root / "run_history.jsonl"

    @property
    def lock_file(self) -> pathlib.Path:
        return self.root / "run.lock"

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


def owning_workdir(path: str | os.PathLike) -> Workdir | None:
    """The training workdir `path` is, or lies inside (None when it is in none)."""
    path = pathlib.Path(path).resolve()
    for candidate in (path, *path.parents):
        if is_training_workdir(candidate):
            return Workdir(candidate)
    return None


class WorkdirBusy(OSError):
    """Another live process trains in this workdir (an OSError, as EBUSY is)."""


class WorkdirLock:
    """An exclusive lock on a workdir for the life of a run: a second trainer stops at once.

    The lock is a `flock` on `run.lock`, which the kernel releases when its process dies, so
    a run killed with SIGKILL never leaves a lock that blocks the next one; the file holds
    the holder's host, pid and start time, for the messages. (On network filesystems without
    working `flock`, two hosts could both take it: give each run its own workdir there.)
    """

    def __init__(self, workdir: Workdir):
        self.workdir = workdir
        self._fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        path = self.workdir.lock_file
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_holder(fd))
            os.close(fd)
            raise WorkdirBusy(f"{self.workdir.root} is in use by another run ({holder}); wait for it to end or "
                              "stop it, or train into another --workdir") from None
        previous = _read_holder(fd)
        if previous:
            log.warning("took over the lock of %s, which ended without releasing it (killed?)", _describe(previous))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(),
                                  "since": datetime.datetime.now().isoformat(timespec="seconds")}).encode(), 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # an empty lock file: released cleanly
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> dict | None:
    raw = os.pread(fd, 4096, 0)
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return {"unreadable": raw[:80].decode(errors="replace")}


def _describe(holder: dict | None) -> str:
    if not holder:
        return "a process that has not written its name yet"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}"
