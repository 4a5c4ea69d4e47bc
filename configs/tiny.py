"""Tiny offline distillation: runs on a laptop CPU in about a minute, no network needed.

    python scripts/train.py --config configs/tiny.py --workdir runs/tiny
    python scripts/train.py --config configs/tiny.py:/path/to/french.txt --workdir runs/tiny

A tokenizer (2 000 pieces) is trained on the spot, a small random-init teacher (4 × 128) is
created and saved in the workdir, and a 2-layer student is distilled from it with the
DistilCamemBERT loss. The text is the argument (files, dirs or globs, comma-separated), or
by default two ELTeC novels from ../shared/data/fr_novels (public domain; see its README).
It exercises exactly the code paths of configs/paper.py, at toy scale.
"""

import pathlib

from jaxdistil.run_config import base

SHARED_NOVELS = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fr_novels"


def default_text() -> tuple[str, ...]:
    novels = sorted(SHARED_NOVELS.glob("*.txt"))[:2]
    if len(novels) < 2:
        raise FileNotFoundError(
            f"configs/tiny.py reads two French novels from {SHARED_NOVELS} by default; they are not "
            "there. Give text files instead: --config configs/tiny.py:a.txt,b.txt")
    return tuple(str(p) for p in novels)


def get_config(arg: str | None = None):
    c = base()
    c.data.paths = tuple(arg.split(",")) if arg else default_text()
    c.data.holdout_files = 1
    c.data.max_docs = 4000
    c.data.eval_max_docs = 300
    c.data.seq_len = 64
    c.tokenizer.source = "train"
    c.tokenizer.vocab_size = 2000
    c.tokenizer.train_max_docs = 4000
    c.teacher.source = "random"
    c.teacher.random.update(hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                            intermediate_size=256, max_position_embeddings=66)
    c.student.num_layers = 2
    c.train.steps = 150
    c.train.batch_size = 16
    c.train.learning_rate = 1e-3
    c.train.warmup_steps = 15
    c.train.log_every = 10
    c.train.eval_every = 75
    c.train.eval_batches = 4
    c.train.eval_batch_size = 16
    c.train.checkpoint_every = 50
    c.export_hf = True
    return c
