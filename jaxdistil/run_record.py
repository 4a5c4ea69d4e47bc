"""What a workdir's run was started with, and what each later invocation changed.

A re-run of the same workdir resumes the same run, so the settings that decide the model, the
tokenizer, the data and the randomness (`FIXED_FOR_THE_RUN`) must be those it was started with:
`check_resume` compares the config with `run_config.json` and refuses any difference there,
showing it. Everything else may change between invocations — how long to train, how often to
log, evaluate and checkpoint, the device layout, and the optimisation itself (a lower learning
rate or fp32 to get past a divergence) — and is accepted: `record_settings` rewrites
`run_config.json` before set-up writes anything (so even a set-up that fails leaves a record of
what its files were made for), and `record_invocation` appends to `run_history.jsonl` what
changed, where the run resumed from and the hardware it ran on. `record_training` adds each
invocation's training time, so the run's wall time is the sum over its invocations (`read_history`).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from typing import Any

import jax

from jaxdistil.run_config import base
from jaxdistil.workdir import Workdir

# Field names, or section prefixes ending in ".": the model, tokenizer and data, and what the saved
# state depends on (the data iterator's position counts global batches; the PRNG key's shape).
FIXED_FOR_THE_RUN = ("mode", "seed", "teacher.", "student.", "tokenizer.", "data.", "masking.",
                     "train.batch_size", "train.prng_impl")
FREE_IN_FIXED = ("data.stream_workers",)  # how the stream is read, not what it yields (data/stream.py)
SHOWN_DIFFERENCES = 8


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {k: v for key, value in node.items() for k, v in _flatten(value, f"{prefix}{key}.").items()}
    return {prefix[:-1]: node}


def config_fields(config: Any) -> dict[str, Any]:
    """'section.field' -> value, as run_config.json holds it (tuples as lists)."""
    return _flatten(json.loads(config.to_json_best_effort()))


def recorded_fields(workdir: Workdir) -> dict[str, Any] | None:
    """The fields of the workdir's run_config.json; None for a new workdir."""
    if not workdir.run_config.is_file():
        return None
    try:
        return _flatten(json.loads(workdir.run_config.read_text(encoding="utf-8")))
    except ValueError as e:
        raise ValueError(f"{workdir.run_config} is not valid JSON ({e}); restore it, or move it away to resume "
                         "without comparing the settings") from None


UNSET = "(unset)"  # a field one side does not have


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {k: (old.get(k, UNSET), new.get(k, UNSET)) for k in sorted(old.keys() | new.keys())
            if old.get(k, UNSET) != new.get(k, UNSET)}


def is_fixed(field: str) -> bool:
    return field not in FREE_IN_FIXED and any(field == f or (f.endswith(".") and field.startswith(f))
                                              for f in FIXED_FOR_THE_RUN)


def check_resume(config: Any, workdir: Workdir) -> dict[str, tuple[Any, Any]]:
    """The accepted changes against the recorded run ({} for a new workdir); ValueError for the others."""
    old = recorded_fields(workdir)
    if old is None:
        return {}
    changed = differences(old, config_fields(config))
    defaults = config_fields(base())
    # A field the run's code did not have yet, at its default, or one this code no longer has: an upgrade.
    upgrade = {k for k, (was, now) in changed.items()
               if now == UNSET or (was == UNSET and k in defaults and now == defaults[k])}
    refused = {k: v for k, v in changed.items() if is_fixed(k) and k not in upgrade}
    if refused:
        fresh = "" if workdir.checkpoints.is_dir() else (
            f"; it holds no checkpoint yet, so to set it up again with the new settings delete {workdir.root}")
        shown = "; ".join(f"{k}: {_show(a)} in the run, {_show(b)} now"
                          for k, (a, b) in list(refused.items())[:SHOWN_DIFFERENCES])
        more = f" (and {len(refused) - SHOWN_DIFFERENCES} more)" if len(refused) > SHOWN_DIFFERENCES else ""
        raise ValueError(f"{workdir.root} holds a run started with other settings: {shown}{more}. Resume it with "
                         "its own settings, or train into a new --workdir (the model, tokenizer, data, masking, "
                         f"seed, batch size and PRNG are fixed for the life of a run){fresh}")
    return changed


def _show(value: Any) -> str:
    return UNSET if value == UNSET else json.dumps(value)


def _history_line(workdir: Workdir, entry: dict[str, Any]) -> None:
    entry = {"time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
             "host": socket.gethostname(), "pid": os.getpid(), **entry}
    with open(workdir.run_history, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def record_event(workdir: Workdir, event: str, **details: Any) -> None:
    """Something that happened to the run (e.g. "diverged"), as a line of run_history.jsonl."""
    _history_line(workdir, {"event": event, **details})


def record_settings(config: Any, workdir: Workdir) -> None:
    """run_config.json := this invocation's config (a new file renamed over the old: readers on other
    hosts see the old or the new one whole)."""
    partial = workdir.run_config.with_suffix(".json.partial")
    partial.write_text(config.to_json_best_effort(indent=2) + "\n", encoding="utf-8")
    os.replace(partial, workdir.run_config)


def hardware() -> dict[str, Any]:
    """The devices this invocation trains on, as the model card reports them."""
    devices = jax.devices()
    return {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
            "device_count": len(devices), "process_count": jax.process_count()}


def record_invocation(workdir: Workdir, changed: dict[str, tuple[Any, Any]], resumed_from: int | None) -> None:
    """One line of run_history.jsonl: started or resumed (from which step), what changed, on what hardware."""
    _history_line(workdir, {"event": "started" if resumed_from is None else "resumed", "resumed_from": resumed_from,
                            "changed": {k: {"was": a, "now": b} for k, (a, b) in changed.items()},
                            "hardware": hardware()})


def record_training(workdir: Workdir, from_step: int, to_step: int | None, seconds: float) -> None:
    """One line of run_history.jsonl: this invocation's time in the training loop (to_step None:
    it ended in an error). A process killed outright (SIGKILL) leaves no such line."""
    record_event(workdir, "trained", from_step=from_step, to_step=to_step, seconds=round(seconds, 3))


def read_history(workdir: Workdir) -> list[dict[str, Any]]:
    """run_history.jsonl's entries, oldest first ([] when there is none); a line cut short is skipped."""
    if not workdir.run_history.is_file():
        return []
    entries = []
    for line in workdir.run_history.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries
