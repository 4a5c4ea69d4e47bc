"""scripts/prepare_data.py with worker processes, and resumed after a kill: the same bytes either way.

The reference is one uninterrupted single-process run of the script on real French text; a run with
two tokenizer processes, and a run killed (SIGKILL, mid-write of a shard at about 60 %) then run again,
must leave exactly its files, without tokenising again what the complete shards hold, and without
reading the half-written shard the kill left.
"""

from __future__ import annotations

import json
import pathlib
import runpy
import subprocess
import sys

import numpy as np
import pytest

from jaxdistil.data import corpus
from jaxdistil.data import tokenize as tok
from jaxdistil.tokenizer import load_tokenizer

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "prepare_data.py"
BLOCKS_PER_SHARD = 40

# Runs prepare_data.py's main in a fresh process that SIGKILLs itself while writing the shard named
# argv[1], after writing half of it under the temporary name, as a kill in the middle of a write leaves.
KILLED_RUN = """
import os, runpy, signal, sys
from jaxdistil.data import tokenize
write = tokenize.write_file
def dying_write(path, data):
    if path.name == sys.argv[1]:
        path.with_name(path.name + tokenize._TEMPORARY_SUFFIX).write_bytes(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    write(path, data)
tokenize.write_file = dying_write
sys.exit(runpy.run_path(sys.argv[2])["main"](sys.argv[3:]))
"""


def files_of(out: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def setup(french_lines, french_tokenizer_dir, tmp_path_factory):
    """Four novel-like files, and the argv of a run holding one of them out (the output dir appended)."""
    root = tmp_path_factory.mktemp("prepare")
    for i in range(4):
        (root / "corpus").mkdir(exist_ok=True)
        (root / "corpus" / f"part{i}.txt").write_text("\n".join(french_lines[i::4]), encoding="utf-8")
    argv = ["--input", str(root / "corpus"), "--tokenizer", str(french_tokenizer_dir), "--seq-len", "32",
            "--holdout-files", "1", "--blocks-per-shard", str(BLOCKS_PER_SHARD)]
    return root, argv


@pytest.fixture(scope="module")
def reference(setup):
    """The output of one uninterrupted run in this process."""
    root, argv = setup
    out = root / "reference"
    assert main()([*argv, "--out", str(out), "--workers", "1"]) == 0
    return out


def main():
    return runpy.run_path(str(SCRIPT))["main"]


class Interrupted(Exception):
    """The injected failure of an in-process run."""


def interrupt_at(monkeypatch, shard: str) -> None:
    """Makes this process's runs fail as they start writing `shard`."""
    write = tok.write_file

    def failing_write(path, data):
        if path.name == shard:
            raise Interrupted(shard)
        write(path, data)

    monkeypatch.setattr(tok, "write_file", failing_write)


def identity(path: pathlib.Path) -> tuple[int, int]:
    """A file's inode and modification time: both change when it is written again (renamed into place)."""
    return path.stat().st_ino, path.stat().st_mtime_ns


def test_reference_run_is_complete_and_packs_what_the_tokenizer_gives(setup, reference, french_tokenizer_dir):
    root, _ = setup
    assert not [name for name in files_of(reference) if name.endswith((tok.PROGRESS_FILE, ".partial"))]
    meta = tok.read_meta(reference / "train")
    assert len(meta.shards) >= 5, "a kill at 60 % needs a few shards"
    # The packed stream from HF's own encode of the training files (one document per line).
    files = sorted((root / "corpus").glob("*.txt"))
    train_files = corpus.plan_holdout(files, 1, 0.05, seed=0).train_files
    tokenizer = load_tokenizer(str(french_tokenizer_dir))
    lines = [line.strip() for path in train_files for line in path.read_text(encoding="utf-8").splitlines()]
    docs = [tokenizer.encode(line, add_special_tokens=False) for line in lines if line]
    blocks, _ = tok.read_shards(reference / "train")
    np.testing.assert_array_equal(blocks.to_array(), tok.pack_blocks(docs, seq_len=32, ids=tok.special_ids(tokenizer)))
    assert meta.num_docs == len(docs)


def test_two_workers_write_the_same_bytes_as_one(setup, reference):
    root, argv = setup
    out = root / "two_workers"
    assert main()([*argv, "--out", str(out), "--workers", "2"]) == 0
    assert files_of(out) == files_of(reference)


def test_killed_run_resumes_to_the_same_bytes_without_redoing_complete_shards(setup, reference, monkeypatch, capsys):
    root, argv = setup
    out = root / "killed"
    shards = tok.read_meta(reference / "train").shards
    dying = shards[int(len(shards) * 0.6)]
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, dying, str(SCRIPT), *argv, "--out", str(out),
                             "--workers", "2"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    train = out / "train"
    progress = json.loads((train / tok.PROGRESS_FILE).read_text())
    listed = [shard["name"] for shard in progress["shards"]]
    assert listed == list(shards[: shards.index(dying)]) and not (train / tok.META_FILE).exists()
    assert (train / (dying + ".partial")).stat().st_size > 0, "the kill must leave a half-written shard"
    kept = {name: identity(train / name) for name in listed}

    encoded: list[str] = []
    encode = tok.encode_chunk
    monkeypatch.setattr(tok, "encode_chunk", lambda backend, texts: encoded.extend(texts) or encode(backend, texts))
    assert main()([*argv, "--out", str(out), "--workers", "1"]) == 0
    assert f"after its {len(listed)} complete shard(s)" in capsys.readouterr().err
    assert files_of(out) == files_of(reference)
    assert {name: identity(train / name) for name in listed} == kept
    all_docs = tok.read_meta(reference / "train").num_docs + tok.read_meta(reference / "eval").num_docs
    assert len(encoded) == all_docs - progress["shards"][-1]["docs"], "complete shards' documents tokenised again"


def test_a_damaged_complete_shard_is_written_again_with_those_after_it(setup, reference, monkeypatch, capsys):
    root, argv = setup
    out = root / "damaged"
    shards = tok.read_meta(reference / "train").shards
    with monkeypatch.context() as patch:
        interrupt_at(patch, shards[4])
        with pytest.raises(Interrupted):
            main()([*argv, "--out", str(out), "--workers", "1"])
    train = out / "train"
    damaged = bytearray((train / shards[1]).read_bytes())
    damaged[-1] ^= 1
    (train / shards[1]).write_bytes(bytes(damaged))
    (train / shards[6]).write_bytes(b"not a shard")  # as a kill after a rename, before progress.json
    first = identity(train / shards[0])
    assert main()([*argv, "--out", str(out), "--workers", "1"]) == 0
    assert f"{train / shards[1]} is missing or damaged" in capsys.readouterr().err
    assert files_of(out) == files_of(reference)
    assert identity(train / shards[0]) == first


def test_a_resumed_run_refuses_other_settings_or_another_corpus(setup, monkeypatch, capsys):
    root, argv = setup
    out = root / "refused"
    with monkeypatch.context() as patch:
        interrupt_at(patch, "shard_00003.npy")
        with pytest.raises(Interrupted):
            main()([*argv, "--out", str(out), "--workers", "1"])
    capsys.readouterr()
    assert main()([*argv, "--out", str(out), "--blocks-per-shard", "50"]) == 2
    assert "interrupted write with other settings (blocks_per_shard 40 != 50)" in capsys.readouterr().err
    other_corpus = root / "other_corpus"
    other_corpus.mkdir()
    for path in sorted((root / "corpus").glob("*.txt")):
        lines = path.read_text(encoding="utf-8").splitlines()
        (other_corpus / path.name).write_text("\n".join(lines[1:]), encoding="utf-8")
    other = [str(other_corpus) if arg == str(root / "corpus") else arg for arg in argv]
    assert main()([*other, "--out", str(out)]) == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("error: the corpus is not the one the interrupted write to")
    assert not (out / "train" / tok.META_FILE).exists()
