"""The model card's suite tasks read from local replicas of their Hub repositories and archive.

Each replica copies the real layout (the same relative file paths, columns and label ids: see
`readers.PARQUET_DATASETS`) at a few hundred rows of real French text, so the reading code is
the one that reads the Hub; the Webis-CLS-10 replica is a small .tar.gz of XML `.review` files.
"""

from __future__ import annotations

import io
import json
import pathlib
import runpy
import tarfile
from xml.sax.saxutils import escape

import fsspec
import huggingface_hub
import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxdistil.config import ModelConfig
from jaxdistil.convert import save_hf
from jaxdistil.evaluate import metrics, readers, tasks
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.tokenizer import load_tokenizer

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
ROWS = 200
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=66, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def write_parquet(path: pathlib.Path, columns: dict[str, list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)


def pair_replica(root: pathlib.Path, first: str, second: str, num_labels: int, lines: list[str]) -> pathlib.Path:
    """facebook/xnli or paws-x: fr/{train,validation,test}-00000-of-00001.parquet."""
    for offset, split in enumerate(("train", "validation", "test")):
        rows = range(offset * ROWS, (offset + 1) * ROWS)
        write_parquet(root / "fr" / f"{split}-00000-of-00001.parquet", {
            first: [lines[i] for i in rows], second: [lines[i + 1] for i in rows],
            "label": pa.array([i % num_labels for i in rows], pa.int64())})
    return root


def wikiner_replica(root: pathlib.Path, lines: list[str]) -> pathlib.Path:
    """Jean-Baptiste/wikiner_fr: data/{train,test}-00000-of-00001-<hash>.parquet, IO tag ids 0..4."""
    for split, name, offset in (("train", "8a0e6775bf277040", 0), ("test", "f042d39bd1dddf20", ROWS)):
        tokens = [lines[offset + i].split()[:12] for i in range(ROWS)]
        tags = [[(w + i) % 5 if word[:1].isupper() else 0 for w, word in enumerate(t)] for i, t in enumerate(tokens)]
        write_parquet(root / "data" / f"{split}-00000-of-00001-{name}.parquet", {
            "id": list(range(ROWS)), "tokens": tokens, "ner_tags": pa.array(tags, pa.list_(pa.int64()))})
    return root


def review_xml(texts: list[str], ratings: list[float]) -> bytes:
    """A Webis-CLS-10 .review file: <item>s with category, rating, asin, url, text, title, summary."""
    items = [f"<item><category>x</category><rating>{r:.1f}</rating><asin>B00{i}</asin><url>http://a/{i}</url>"
             f"<text>{escape(t)}</text><title>titre {i}</title><summary>s</summary></item>\n"
             for i, (t, r) in enumerate(zip(texts, ratings, strict=True))]
    return ('<?xml version="1.0"?>\n<items>\n' + "\n".join(items) + "</items>\n").encode()


RATINGS = (1.0, 2.0, 4.0, 5.0, 3.0)  # a stray 3 is skipped


def webis_replica(path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    """cls-acl10-unprocessed.tar.gz: cls-acl10-unprocessed/fr/<domain>/{train,test}.review."""
    with tarfile.open(path, "w:gz") as archive:
        for d, domain in enumerate(readers.CLS_DOMAINS):
            for s, split in enumerate(("train", "test")):
                start = (2 * d + s) * 100
                data = review_xml(lines[start:start + 100], [RATINGS[i % 5] for i in range(100)])
                info = tarfile.TarInfo(f"cls-acl10-unprocessed/fr/{domain}/{split}.review")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def replicas(french_lines, tmp_path_factory) -> dict[str, pathlib.Path]:
    """`--dataset-path` of every suite task (flue_cls: the archive)."""
    root = tmp_path_factory.mktemp("replicas")
    lines = [line for line in french_lines if len(line.split()) >= 4]
    return {
        "xnli_fr": pair_replica(root / "xnli", "premise", "hypothesis", 3, lines),
        "pawsx_fr": pair_replica(root / "pawsx", "sentence1", "sentence2", 2, lines),
        "wikiner_fr": wikiner_replica(root / "wikiner", lines),
        "flue_cls": webis_replica(root / "cls-acl10-unprocessed.tar.gz", lines),
    }


@pytest.fixture(scope="module")
def tiny_model(french_tokenizer_dir, tmp_path_factory) -> pathlib.Path:
    """A random masked LM with the French tokenizer, saved in HF format."""
    tokenizer = load_tokenizer(french_tokenizer_dir)
    config = ModelConfig(vocab_size=len(tokenizer), **TINY)
    params = jax.device_get(init_params(MaskedLM(config), jax.random.key(0)))
    return save_hf(config, params, tmp_path_factory.mktemp("tiny") / "hf", tokenizer)


def splits_of(name: str, replicas) -> tuple[tasks.Split, tasks.Split, tasks.Split]:
    return tasks.suite_task_splits(name, str(replicas[tasks.SUITE_TASKS[name].dataset_path_key]))


# ------------------------------------------------------------------------------ reading


@pytest.mark.parametrize("name, labels", [("xnli_fr", set(readers.XNLI_LABELS)), ("pawsx_fr", {"0", "1"})])
def test_pair_tasks_read_their_three_splits_with_label_names(name, labels, replicas):
    train, dev, test = splits_of(name, replicas)
    assert [len(s.examples) for s in (train, dev, test)] == [ROWS, ROWS, ROWS]
    assert dev.name == f"{name}:validation"
    assert {e.label for e in train.examples} == labels
    assert all(e.text_pair for e in train.examples)
    table = pq.read_table(replicas[name] / "fr" / "train-00000-of-00001.parquet").to_pylist()
    names = readers.PARQUET_DATASETS[name].label_names
    first, second = readers.PARQUET_DATASETS[name].text_columns
    assert [(e.text, e.text_pair, e.label) for e in train.examples] == [
        (r[first], r[second], names[r["label"]]) for r in table]


def test_wikiner_io_tags_and_a_seeded_five_percent_dev_split(replicas):
    train, dev, test = splits_of("wikiner_fr", replicas)
    assert (len(train.examples), len(dev.examples), len(test.examples)) == (ROWS - 10, 10, ROWS)
    assert "held out 5%" in dev.name
    original = readers.read_parquet_examples("wikiner_fr", "train", replicas["wikiner_fr"])
    assert sorted(map(str, train.examples + dev.examples)) == sorted(map(str, original))
    assert {t for s in original for t in s.tags} == set(readers.WIKINER_TAGS)
    assert tasks.tag_scheme(original) == "iob1"  # IO tags: every entity starts with I-
    again = tasks.suite_task_splits("wikiner_fr", str(replicas["wikiner_fr"]))
    assert again[1].examples == dev.examples


def test_flue_cls_labels_follow_flue_ratings_and_dev_is_a_fifth_of_each_class(replicas):
    assert tasks.expand_suite_tasks(["flue_cls", "xnli_fr"]) == [
        "flue_cls_books", "flue_cls_dvd", "flue_cls_music", "xnli_fr"]
    raw = readers.read_webis_cls(replicas["flue_cls"], "dvd", "train")
    kept_ratings = [r for r in (RATINGS[i % 5] for i in range(100)) if r != 3]
    assert [e.label for e in raw] == ["positive" if r > 3 else "negative" for r in kept_ratings]
    train, dev, test = splits_of("flue_cls_dvd", replicas)
    assert len(test.examples) == 80 and len(train.examples) + len(dev.examples) == 80
    dev_labels = [e.label for e in dev.examples]
    assert dev_labels.count("positive") == dev_labels.count("negative") == 8  # 20 % of 40 each


def test_the_hub_is_read_at_the_same_relative_paths(replicas, monkeypatch):
    """Without --dataset-path the globs go to hf://datasets/<repo>/...; here served by the replica."""
    asked = []

    class ReplicaHub:  # HfFileSystem's glob/open, answering from the local copy of the repository
        local = fsspec.filesystem("file")
        prefix = "hf://datasets/facebook/xnli/"

        def glob(self, pattern):
            asked.append(pattern)
            return self.local.glob(pattern.replace(self.prefix, f"{replicas['xnli_fr']}/"))

        def open(self, path, mode):
            return self.local.open(path, mode)

    monkeypatch.setattr(huggingface_hub, "HfFileSystem", ReplicaHub)
    examples = readers.read_parquet_examples("xnli_fr", "validation")
    assert asked == ["hf://datasets/facebook/xnli/fr/validation-*.parquet"]
    assert examples == readers.read_parquet_examples("xnli_fr", "validation", replicas["xnli_fr"])


def test_missing_data_names_dataset_path(replicas, tmp_path):
    with pytest.raises(readers.DatasetUnavailableError, match="--dataset-path flue_cls="):
        tasks.suite_task_splits("flue_cls_books")
    with pytest.raises(readers.DatasetUnavailableError, match="no file matches fr/train-"):
        tasks.suite_task_splits("xnli_fr", str(tmp_path))
    with pytest.raises(readers.DatasetUnavailableError, match="pass --dataset-path DIR"):
        tasks.suite_task_splits("pawsx_fr")  # tests run with HF_HUB_OFFLINE=1


def test_suite_end_to_end_on_replicas_writes_the_cards_table(replicas, tiny_model, tmp_path, capsys):
    """Every task loads through --dataset-path and fine-tunes; the same model as teacher keeps 100 %."""
    suite = runpy.run_path(str(REPO_ROOT / "scripts" / "benchmark_suite.py"))
    paths = [f"--dataset-path={key}={path}" for key, path in replicas.items()]
    status = suite["main"]([
        "--model", str(tiny_model), "--teacher", str(tiny_model), *paths, "--out", str(tmp_path),
        "--seeds", "0", "--epochs", "1", "--batch-size", "4", "--max-length", "32",
        "--max-train-examples", "4", "--max-eval-examples", "8", "--timing-examples", "3"])
    assert status == 0
    report = json.loads((tmp_path / "suite.json").read_text(encoding="utf-8"))
    rows = {(r["task"], r["metric"]): r for r in report["results"]}
    assert set(rows) == {
        ("wikiner_fr", "f1"), ("wikiner_fr", "subword_f1"), ("flue_cls_books", "accuracy"),
        ("flue_cls_dvd", "accuracy"), ("flue_cls_music", "accuracy"), ("pawsx_fr", "accuracy"),
        ("xnli_fr", "accuracy"), ("flue_cls (mean of 3 domains)", "accuracy")}
    assert (rows[("xnli_fr", "accuracy")]["dataset"], rows[("xnli_fr", "accuracy")]["dataset_config"]) == (
        "facebook/xnli", "fr")
    domains = [rows[(f"flue_cls_{d}", "accuracy")]["student"] for d in readers.CLS_DOMAINS]
    assert rows[("flue_cls (mean of 3 domains)", "accuracy")]["student"] == pytest.approx(np.mean(domains))
    for row in rows.values():  # fine-tuning is deterministic given the seed: teacher == student
        assert row["teacher"] == row["student"] and (row["student"] == 0 or row["retained_pct"] == pytest.approx(100))
    for name, per_model in report["runs"].items():
        (run,) = per_model["student"]
        assert run["epochs_run"] == 1 and run["train_examples"] == 4, name
    timing = report["inference"]
    assert timing["batch_size"] == 1 and timing["student_ms"] > 0
    assert timing["speedup"] == pytest.approx(timing["teacher_ms"] / timing["student_ms"])
    markdown = (tmp_path / "suite.md").read_text(encoding="utf-8")
    assert markdown.startswith("| task | metric | teacher | student | retained_pct |")
    assert "sub-word token F1 (card)" in markdown and "sub-word token F1 (card)" in capsys.readouterr().out


# ------------------------------------------------------------------------------ metrics


def test_subword_token_f1_equals_a_hand_count():
    gold = ["O", "I-PER", "I-PER", "O", "I-LOC", "I-LOC", "O", "O"]
    pred = ["O", "I-PER", "O", "O", "I-LOC", "I-PER", "O", "I-LOC"]
    # O: gold 4, pred 4 (pos 0,2,3,6), TP 3 -> P 3/4 R 3/4 F1 3/4
    # PER: gold 2, pred 2 (1,5), TP 1 -> P 1/2 R 1/2 F1 1/2
    # LOC: gold 2, pred 2 (4,7), TP 1 -> P 1/2 R 1/2 F1 1/2
    # weighted by support 4/8, 2/8, 2/8
    expected = 0.5 * 0.75 + 0.25 * 0.5 + 0.25 * 0.5
    scores = metrics.subword_token_scores(gold, pred)
    assert scores == pytest.approx({"subword_precision": expected, "subword_recall": expected, "subword_f1": expected})
    skewed = metrics.subword_token_scores(["O", "O", "I-PER"], ["O", "I-PER", "I-PER"])
    # O: P 1 R 1/2 F1 2/3 (weight 2/3); PER: P 1/2 R 1 F1 2/3 (weight 1/3)
    assert skewed["subword_precision"] == pytest.approx(2 / 3 * 1 + 1 / 3 * 0.5)
    assert skewed["subword_recall"] == pytest.approx(2 / 3 * 0.5 + 1 / 3 * 1)
    assert skewed["subword_f1"] == pytest.approx(2 / 3)


def test_subword_labels_give_every_sub_token_its_words_tags():
    word_ids = np.array([[-1, 0, 0, 1, -1, -1], [-1, 0, 1, 1, 1, -1]])
    gold = [["I-PER", "O"], ["O", "I-LOC"]]
    predicted = [["I-PER", "I-PER"], ["O", "O"]]
    assert tasks.subword_labels(word_ids, gold, predicted) == (
        ["I-PER", "I-PER", "O", "O", "I-LOC", "I-LOC", "I-LOC"],
        ["I-PER", "I-PER", "I-PER", "O", "O", "O", "O"])
