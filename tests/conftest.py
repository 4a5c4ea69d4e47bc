"""Shared test set-up.

Eight fake CPU devices are configured before JAX is imported, so the sharding tests can
build real meshes on a CPU-only machine; single-device code simply uses the first one.
A persistent compilation cache keeps repeated jit compiles cheap across test files.
"""

import itertools
import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One compilation cache for the suite, its own processes and the tools it launches (JAX reads these).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(pathlib.Path(__file__).resolve().parents[1] / ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402

from jaxdistil.tokenizer import train_tokenizer  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"



@pytest.fixture(scope="session")
def shared_data_dir() -> pathlib.Path:
    """The real French data in ../shared/data; tests that need it skip where it is absent."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real French data not found at {SHARED_DATA} (see README: ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def french_lines(shared_data_dir) -> list[str]:
    """A few thousand lines of real French prose (one ELTeC novel, ../shared/data/fr_novels)."""
    novels = sorted((shared_data_dir / "fr_novels").glob("*.txt"))
    with open(novels[0], encoding="utf-8") as f:
        return [line.strip() for line in itertools.islice(f, 4000) if line.strip()]


@pytest.fixture(scope="session")
def french_tokenizer_dir(french_lines, tmp_path_factory) -> pathlib.Path:
    """A 1 000-token CamemBERT-style tokenizer trained on `french_lines`, saved once per session."""
    out = tmp_path_factory.mktemp("tokenizer")
    train_tokenizer(french_lines, vocab_size=1000, out_dir=out)
    return out


@pytest.fixture(scope="module")
def corpus_files(french_lines, tmp_path_factory):
    """Two small French text files: one to train on, one held out."""
    root = tmp_path_factory.mktemp("corpus")
    cut = int(len(french_lines) * 0.8)
    (root / "a_train.txt").write_text("\n".join(french_lines[:cut]), encoding="utf-8")
    (root / "b_holdout.txt").write_text("\n".join(french_lines[cut:]), encoding="utf-8")
    return [str(root / "a_train.txt"), str(root / "b_holdout.txt")]
