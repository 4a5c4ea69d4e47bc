"""The paper's corpus sources as the Hub stores them (issue 12): local replicas of OSCAR-2301 French
(zstd JSON lines, text in `content`, metadata whose types differ between files, the loading script
beside them) and of FineWeb-2 French (parquet with its columns), read through the run's set-up and
trained on with `configs/paper.py:local`; local `.jsonl.zst` / `.jsonl.gz` / `.parquet` files; and
each bad input with its one-line error naming what to change."""

from __future__ import annotations

import gzip
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import types

import huggingface_hub
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from huggingface_hub.errors import GatedRepoError

from jaxdistil import inputs, loop
from jaxdistil.data import corpus
from jaxdistil.run_config import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
PAPER = REPO / "configs" / "paper.py"

# What OSCAR-2301's loading script would do if anything ran it: fail loudly.
LOADING_SCRIPT = 'raise RuntimeError("the loading script must never be run")\n'
OSCAR_PARTS = 3
TEST_DOC = "Un document de test, hors entraînement."  # FineWeb-2's test files, never in the train ones
FINEWEB_COLUMNS = ("text", "id", "dump", "url", "date", "file_path", "language", "language_score",
                   "language_script", "minhash_cluster_size", "top_langs")


def documents(lines: list[str], per_doc: int = 4) -> list[str]:
    """Documents of a few consecutive lines of real French prose, as web pages hold paragraphs."""
    return ["\n".join(lines[i:i + per_doc]) for i in range(0, len(lines) - per_doc + 1, per_doc)]


def oscar_record(text: str, part: int, index: int) -> dict:
    """A record as OSCAR-2301 stores it: `content`, `warc_headers`, `metadata`. Parts with an even number
    carry lists where the others carry nulls (quality_warnings, categories): the types differ by file."""
    listed = part % 2 == 0
    return {
        "content": text,
        "warc_headers": {"warc-record-id": f"<urn:uuid:{part:04d}-{index:06d}>", "warc-date": "2022-11-26T10:00:00Z",
                         "content-length": str(len(text.encode())), "warc-type": "conversion",
                         "warc-identified-content-language": "fra"},
        "metadata": {"identification": {"label": "fr", "prob": 0.98},
                     "harmful_pp": 1234.5, "tlsh": "tlsh:T1...",
                     "quality_warnings": ["short_sentences"] if listed else None,
                     "categories": ["news"] if listed else None,
                     "sentence_identifications": [{"label": "fr", "prob": 0.97}] * text.count("\n")},
    }


def write_zst_jsonl(path: pathlib.Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(data))


def expected(docs: list[str], min_chars: int = 20) -> list[str]:
    return [clean for doc in docs if (clean := corpus.clean_text(doc, min_chars=min_chars)) is not None]


@pytest.fixture(scope="module")
def french_docs(french_lines) -> list[str]:
    return documents(french_lines)


@pytest.fixture(scope="module")
def oscar_dir(french_docs, tmp_path_factory) -> pathlib.Path:
    """oscar-corpus/OSCAR-2301 as the Hub lays it out: the loading script and card at the root, one
    directory per language; only French is read."""
    root = tmp_path_factory.mktemp("OSCAR-2301")
    (root / "OSCAR-2301.py").write_text(LOADING_SCRIPT)
    (root / "README.md").write_text("---\npretty_name: OSCAR\n---\n")
    per_part = math.ceil(len(french_docs) / OSCAR_PARTS)
    for part in range(1, OSCAR_PARTS + 1):
        docs = french_docs[(part - 1) * per_part:part * per_part]
        write_zst_jsonl(root / "fr_meta" / f"fr_meta_part_{part}.jsonl.zst",
                        [oscar_record(doc, part, i) for i, doc in enumerate(docs)])
    write_zst_jsonl(root / "de_meta" / "de_meta_part_1.jsonl.zst",
                    [oscar_record("Ein deutsches Dokument, das nicht gelesen wird.", 1, 0)])
    return root


@pytest.fixture(scope="module")
def fineweb_dir(french_docs, tmp_path_factory) -> pathlib.Path:
    """HuggingFaceFW/fineweb-2 as the Hub lays it out: data/<lang>/{train,test}/*.parquet with its columns."""
    root = tmp_path_factory.mktemp("fineweb-2")
    (root / "README.md").write_text("---\npretty_name: FineWeb 2\n---\n")
    half = len(french_docs) // 2
    for name, docs in {"000_00000.parquet": french_docs[:half], "001_00000.parquet": french_docs[half:]}.items():
        write_fineweb(root / "data" / "fra_Latn" / "train" / name, docs)
    write_fineweb(root / "data" / "fra_Latn" / "test" / "000_00000.parquet", [TEST_DOC])
    write_fineweb(root / "data" / "deu_Latn" / "train" / "000_00000.parquet", ["Ein deutsches Dokument."])
    return root


def write_fineweb(path: pathlib.Path, docs: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(docs)
    columns = {"text": docs, "id": [f"<urn:uuid:{i}>" for i in range(n)], "dump": ["CC-MAIN-2024-10"] * n,
               "url": [f"https://exemple.fr/{i}" for i in range(n)], "date": ["2024-03-01T00:00:00Z"] * n,
               "file_path": ["s3://commoncrawl/crawl-data/x.warc.gz"] * n, "language": ["fra"] * n,
               "language_score": [0.99] * n, "language_script": ["Latn"] * n,
               "minhash_cluster_size": list(range(1, n + 1)), "top_langs": ['{"fra_Latn_score": 0.99}'] * n}
    assert tuple(columns) == FINEWEB_COLUMNS
    pq.write_table(pa.table(columns), path)


def paper_local(corpus_dir: pathlib.Path, *variants: str, **data_overrides):
    config = load_config(f"{PAPER}:{','.join(('local', *variants))}")
    config.data.hf_name = str(corpus_dir)
    config.progress = False
    config.data.update(data_overrides)
    return config


def read_all(config) -> list[str]:
    return list(inputs.training_texts(config.data, inputs.plan_corpus(config), held_out=False))


# --- the sources, read as set-up reads them ----------------------------------------------------


def test_oscar_replica_yields_the_content_of_every_french_part_in_order(oscar_dir, french_docs):
    config = paper_local(oscar_dir, max_docs=-1, eval_max_docs=5)
    docs = expected(french_docs)
    assert read_all(config) == docs[5:]  # the stream's first eval_max_docs documents are held out
    held_out = list(inputs.training_texts(config.data, None, held_out=True))
    assert held_out == docs[:5]


def test_the_default_paper_config_reads_oscar_as_stored_and_its_variants(oscar_dir):
    config = load_config(str(PAPER))
    assert (config.data.source, config.data.hf_name, config.data.hf_config) == ("hf", "oscar-corpus/OSCAR-2301", "fr")
    assert config.data.text_field == "content" and config.data.hf_eval_split == ""
    assert (config.train.steps, config.train.batch_size, config.train.grad_accum, config.data.seq_len,
            config.masking.mlm_smoothing, config.dtype, config.teacher.source) == (
        100_000, 512, 16, 512, 0.7, "bfloat16", "camembert-base")
    fineweb = load_config(f"{PAPER}:fineweb2")
    assert (fineweb.data.hf_name, fineweb.data.hf_config, fineweb.data.text_field) == (
        "HuggingFaceFW/fineweb-2", "fra_Latn", "text")
    assert fineweb.data.hf_data_files.format(config="fra_Latn", split="train") == "data/fra_Latn/train/*.parquet"
    assert fineweb.train.to_dict() == config.train.to_dict()
    local = load_config(f"{PAPER}:local")
    assert (local.data.source, local.masking.mlm_smoothing, local.dtype, local.student.init,
            tuple(local.student.layer_map)) == ("hf", 0.7, "bfloat16", "teacher", (0, 3))
    assert local.train.grad_accum > 1 and local.data.hf_data_files == config.data.hf_data_files
    with pytest.raises(ValueError, match="unknown variant"):
        load_config(f"{PAPER}:oscar")


def test_fineweb2_replica_reads_the_text_column_of_the_french_train_files(fineweb_dir, french_docs):
    config = paper_local(fineweb_dir, "fineweb2", max_docs=-1, eval_max_docs=0)
    assert read_all(config) == expected(french_docs)
    config.data.hf_eval_split, config.data.eval_max_docs = "test", 10  # the repository's test files, if wanted
    assert list(inputs.training_texts(config.data, None, held_out=True)) == [TEST_DOC]


def test_local_files_read_zst_gz_and_parquet_like_plain_jsonl(tmp_path, french_docs):
    docs = french_docs[:30]
    records = [{"content": doc, "metadata": {"categories": None if i % 2 else ["x"]}} for i, doc in enumerate(docs)]
    write_zst_jsonl(tmp_path / "a.jsonl.zst", records[:10])
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records[10:20])
    pq.write_table(pa.table({"content": docs[20:], "n": list(range(10))}), tmp_path / "c.parquet")
    (tmp_path / "notes.tsv").write_text("ignored\n")
    assert list(corpus.iter_local_texts([tmp_path], text_field="content", min_chars=20)) == expected(docs)


# --- training runs of configs/paper.py:local ----------------------------------------------------


@pytest.mark.parametrize("replica, variants", [("oscar", ()), ("fineweb2", ("fineweb2",))])
def test_paper_local_trains_a_few_steps_on_each_replica(replica, variants, oscar_dir, fineweb_dir, tmp_path):
    corpus_dir = {"oscar": oscar_dir, "fineweb2": fineweb_dir}[replica]
    config = paper_local(corpus_dir, *variants)
    metrics = loop.run(config, tmp_path / "run")
    assert math.isfinite(metrics["loss/total"]) and metrics["loss/total"] > 0
    assert math.isfinite(metrics["eval/mlm_accuracy"])
    assert (tmp_path / "run" / "hf" / "config.json").is_file()
    assert not (tmp_path / "run" / "data" / "train").exists()  # streamed: no training shards (tests/test_streaming.py)


# --- bad input: one line saying what to do ------------------------------------------------------


def test_a_hub_id_while_offline_says_so_and_names_the_setting(oscar_dir):
    config = paper_local(oscar_dir)
    config.data.hf_name = "oscar-corpus/OSCAR-2301"
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # tests/conftest.py
    with pytest.raises(ConnectionError) as err:
        read_all(config)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("cannot reach the Hugging Face Hub for dataset oscar-corpus/OSCAR-2301 (offline?")
    assert "data.hf_name to a local directory laid out exactly like the repository" in message


def test_train_script_turns_an_unreachable_hub_into_one_error_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--config", f"{PAPER}:local",
         "--config.data.hf_name=oscar-corpus/OSCAR-2301", "--workdir", str(tmp_path / "w"), "--config.progress=False"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot reach the Hugging Face Hub for dataset oscar-corpus/OSCAR-2301"), last
    assert "data.hf_name" in last


def test_a_gated_repository_says_to_accept_the_terms_and_log_in(oscar_dir, monkeypatch):
    class RefusingHub:  # what HfFileSystem raises for a gated repository whose terms were not accepted
        def glob(self, path):
            response = types.SimpleNamespace(status_code=403, headers={}, request=None)  # the HTTP client's
            raise GatedRepoError("403 Client Error: cannot access gated repo", response=response)

    monkeypatch.setattr(huggingface_hub, "HfFileSystem", RefusingHub)
    config = paper_local(oscar_dir)
    config.data.hf_name = "oscar-corpus/OSCAR-2301"
    with pytest.raises(PermissionError) as err:
        read_all(config)
    assert str(err.value) == (
        "the Hub dataset oscar-corpus/OSCAR-2301 is gated and refused access: accept its terms on "
        "https://huggingface.co/datasets/oscar-corpus/OSCAR-2301 with your account, then log in (`hf auth login`) "
        "or set HF_TOKEN")


def test_records_without_the_text_field_name_the_fields_found(oscar_dir, fineweb_dir):
    with pytest.raises(ValueError) as err:
        read_all(paper_local(oscar_dir, text_field="text"))
    assert str(err.value) == (f"{oscar_dir / 'fr_meta' / 'fr_meta_part_1.jsonl.zst'}:1: no field 'text' (found "
                              "['content', 'metadata', 'warc_headers']); give the right name with data.text_field.")
    with pytest.raises(ValueError) as err:
        read_all(paper_local(fineweb_dir, "fineweb2", text_field="content"))
    assert f"000_00000.parquet: no column 'content' (found {list(FINEWEB_COLUMNS)})" in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_corrupt_zst_part_is_named_and_skipped_only_when_asked(damage, oscar_dir, french_docs, tmp_path, caplog):
    copy = tmp_path / "OSCAR-2301"
    shutil.copytree(oscar_dir, copy)
    part = copy / "fr_meta" / "fr_meta_part_2.jsonl.zst"
    data = part.read_bytes()
    part.write_bytes(data[:len(data) // 2] if damage == "truncated" else data[:8] + b"\xff" * 64 + data[72:])
    with pytest.raises(corpus.CorruptFileError) as err:
        read_all(paper_local(copy, max_docs=-1, eval_max_docs=0))
    message = str(err.value)
    assert message.startswith(str(part)) and "\n" not in message
    assert message.endswith("download it again, or set data.skip_corrupt_files=True to skip such files")
    kept = read_all(paper_local(copy, max_docs=-1, eval_max_docs=0, skip_corrupt_files=True))
    others = set(expected(french_docs)) - set(kept)
    assert others and set(kept) <= set(expected(french_docs))  # part 2's documents (some or all) are missing
    assert f"skipped a corrupt file: {part}" in caplog.text


def test_an_empty_stream_and_a_layout_without_the_files_say_what_to_check(oscar_dir, tmp_path):
    empty = tmp_path / "empty"
    (empty / "fr_meta").mkdir(parents=True)
    write_zst_jsonl(empty / "fr_meta" / "fr_meta_part_1.jsonl.zst", [oscar_record("court", 1, 0)] * 3)
    with pytest.raises(ValueError) as err:
        read_all(paper_local(empty))
    assert str(err.value).startswith(f"empty corpus: no usable text in directory {empty}: 1 file(s)")
    with pytest.raises(FileNotFoundError) as err:
        read_all(paper_local(oscar_dir, hf_config="it"))
    assert str(err.value) == (f"no .txt/.jsonl/.jsonl.zst/.jsonl.gz/.parquet files match "
                              f"'it_meta/it_meta_part_*.jsonl.zst' in directory {oscar_dir}: check "
                              "data.hf_data_files (and data.hf_name)")
    with pytest.raises(ValueError, match=r"data.hf_name is not set"):
        inputs.plan_corpus(load_config(f"{PAPER}:local"))
