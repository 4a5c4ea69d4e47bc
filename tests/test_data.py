"""Data path: corpus cleaning and errors, packing, token shards, the grain pipeline and its resume."""

from __future__ import annotations

import json
import logging
import pathlib
import runpy

import numpy as np
import pytest
from helpers import make_tiny_tokenizer

from jaxdistil.data import corpus, pipeline
from jaxdistil.data import tokenize as tok

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

FRENCH_LINES = [
    "Le petit chat dort sur le canapé rouge de la grand-mère.",
    "Il était une fois une princesse qui vivait dans un château.",
    "Les enfants jouent dans le jardin pendant que la pluie tombe.",
    "Une veillée d'hiver, au coin du feu, chez Norine Duclos.",
    "Où est la bibliothèque ? Elle est fermée le dimanche, hélas.",
    "Ça coûte cher, répondit-il en haussant les épaules.",
] * 40


@pytest.fixture(scope="module")
def tiny_tokenizer():
    return make_tiny_tokenizer(FRENCH_LINES, vocab_size=120)


def write_bytes(tmp_path: pathlib.Path, name: str, data: bytes) -> pathlib.Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------ corpus: cleaning


def test_clean_text_strips_normalises_to_nfc_and_drops_short():
    decomposed = "  e\u0301te\u0301 \n"  # "été" with combining accents
    assert corpus.clean_text(decomposed) == "\u00e9t\u00e9"
    assert corpus.clean_text("   \t\n") is None
    assert corpus.clean_text("abc", min_chars=4) is None
    assert corpus.clean_text("abcd", min_chars=4) == "abcd"


def test_local_txt_drops_empty_short_and_undecodable_bytes_and_counts_them(tmp_path, caplog):
    data = (
        "Bonjour à tous\n\n   \nab\nLe caf".encode()
        + b"\xe9\xff au lait\n"  # a latin-1 "é" and a stray byte: 2 undecodable bytes
        + "e\u0301te\u0301 chaud\n".encode()
    )
    path = write_bytes(tmp_path, "a.txt", data)
    stats = corpus.CorpusStats()
    with caplog.at_level(logging.WARNING, logger="jaxdistil.data.corpus"):
        docs = list(corpus.iter_local_texts([path], min_chars=3, stats=stats))
    assert docs == ["Bonjour à tous", "Le caf au lait", "\u00e9t\u00e9 chaud"]
    assert stats.undecodable_bytes == 2
    assert stats.files_with_undecodable_bytes == [str(path)]
    assert (stats.docs_kept, stats.docs_dropped) == (3, 3)
    assert "2 undecodable" in caplog.text and "a.txt" in caplog.text


def test_paragraph_documents_and_max_docs(tmp_path):
    path = write_bytes(tmp_path, "p.txt", b"un deux\ntrois\n\n\nquatre\n\ncinq six\n")
    docs = list(corpus.iter_local_texts([path], doc_boundary="paragraph"))
    assert docs == ["un deux trois", "quatre", "cinq six"]
    assert list(corpus.iter_local_texts([path], doc_boundary="paragraph", max_docs=2)) == docs[:2]


def test_jsonl_reads_the_configured_field_and_names_a_missing_one(tmp_path):
    lines = [{"content": "Première phrase.", "id": 1}, {"content": "Deuxième."}, {"content": None}]
    path = write_bytes(tmp_path, "d.jsonl", "\n".join(json.dumps(x) for x in lines).encode())
    assert list(corpus.iter_local_texts([path], text_field="content")) == ["Première phrase.", "Deuxième."]
    with pytest.raises(ValueError, match=r"d\.jsonl:1: no field 'text'.*--text-field"):
        list(corpus.iter_local_texts([path]))


def test_directories_and_globs_pick_only_text_files_sorted(tmp_path):
    b = write_bytes(tmp_path, "corpus/b.txt", b"deux\n")
    a = write_bytes(tmp_path, "corpus/sub/a.jsonl", b'{"text": "un"}\n')
    write_bytes(tmp_path, "corpus/metadata.tsv", b"x\ty\n")
    assert corpus.resolve_paths([tmp_path / "corpus"]) == sorted([a, b])
    assert corpus.resolve_paths([str(tmp_path / "corpus" / "*.txt")]) == [b]
    assert list(corpus.iter_local_texts([tmp_path / "corpus"])) == ["deux", "un"]  # path order


def test_holdout_takes_whole_files_deterministically():
    files = [pathlib.Path(f"f{i}.txt") for i in range(10)]
    train, held = corpus.split_holdout_files(files, 3, seed=1)
    assert len(held) == 3 and set(train).isdisjoint(held) and set(train) | set(held) == set(files)
    assert corpus.split_holdout_files(files, 3, seed=1) == (train, held)
    with pytest.raises(ValueError, match="at least one file must remain"):
        corpus.split_holdout_files(files, 10)


# -------------------------------------------------------------------------- corpus: errors


def test_missing_path_is_named(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=r"nope\.txt does not exist"):
        list(corpus.iter_local_texts([missing]))
    with pytest.raises(FileNotFoundError, match="matches no"):
        corpus.resolve_paths([str(tmp_path / "*.txt")])


def test_empty_corpus_names_the_input_and_what_to_check(tmp_path):
    path = write_bytes(tmp_path, "blank.txt", b"\n   \nab\n\n")
    with pytest.raises(ValueError, match=r"empty corpus.*blank\.txt.*4 document\(s\) dropped.*min_chars=3"):
        list(corpus.iter_local_texts([path], min_chars=3))


@pytest.mark.parametrize(
    "data, why",
    [(b"PK\x03\x04\x00\x00binary\x00zip", "NUL bytes"), (bytes(range(128, 256)) * 20, "not valid UTF-8")],
)
def test_binary_file_is_refused_by_name(tmp_path, data, why):
    good = write_bytes(tmp_path, "good.txt", b"une ligne correcte\n")
    bad = write_bytes(tmp_path, "archive.txt", data)
    with pytest.raises(ValueError, match=rf"archive\.txt looks like a binary.*{why}"):
        list(corpus.iter_local_texts([good, bad]))


def test_unsupported_suffix_is_refused(tmp_path):
    path = write_bytes(tmp_path, "table.csv", b"a,b\n")
    with pytest.raises(ValueError, match=r"table\.csv: unsupported file type '\.csv'"):
        corpus.resolve_paths([path])


# -------------------------------------------------------------------------------- packing

IDS = tok.SpecialIds(bos_id=0, eos_id=2, pad_id=1)


def random_docs(seed: int, num_docs: int = 40, vocab: int = 50) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 30, size=num_docs)  # includes empty documents
    return [rng.integers(4, vocab, size=n).tolist() for n in lengths]


def token_stream(docs: list[list[int]]) -> list[int]:
    """Documents joined with </s> between them (empty documents skipped)."""
    stream: list[int] = []
    for doc in (d for d in docs if d):
        stream += ([IDS.eos_id] if stream else []) + doc
    return stream


@pytest.mark.parametrize("seq_len", [3, 8, 17])
def test_packing_frames_blocks_and_reproduces_the_stream(seq_len):
    docs = random_docs(seq_len)
    stream = token_stream(docs)
    blocks = tok.pack_blocks(docs, seq_len=seq_len, ids=IDS)
    assert blocks.dtype == np.int32 and blocks.shape == (len(stream) // (seq_len - 2), seq_len)
    assert (blocks[:, 0] == IDS.bos_id).all() and (blocks[:, -1] == IDS.eos_id).all()
    assert (blocks != IDS.pad_id).all()
    assert blocks[:, 1:-1].ravel().tolist() == stream[: blocks[:, 1:-1].size]


def test_packing_pads_the_final_block_when_asked():
    docs = random_docs(7)
    stream = token_stream(docs)
    seq_len = 16
    assert len(stream) % (seq_len - 2), "the test needs a partial final block"
    blocks = tok.pack_blocks(docs, seq_len=seq_len, ids=IDS, drop_remainder=False)
    rest = len(stream) % (seq_len - 2)
    last = blocks[-1]
    assert last[0] == IDS.bos_id and last[rest + 1] == IDS.eos_id
    assert (last[rest + 2 :] == IDS.pad_id).all()
    interiors = blocks[:-1, 1:-1].ravel().tolist() + last[1 : rest + 1].tolist()
    assert interiors == stream


def test_token_counts_match_a_plain_count_and_skip_pad():
    blocks = tok.pack_blocks(random_docs(3), seq_len=12, ids=IDS, drop_remainder=False)
    counts = tok.count_token_ids(blocks, 60, ignore_ids=(IDS.pad_id,))
    assert counts.dtype == np.int64 and counts.shape == (60,)
    expected = np.zeros(60, np.int64)
    for token in blocks.ravel():
        expected[token] += token != IDS.pad_id
    np.testing.assert_array_equal(counts, expected)
    with pytest.raises(ValueError, match="out of range"):
        tok.count_token_ids(blocks, 10)


def test_tokenize_texts_uses_no_special_tokens(tiny_tokenizer):
    texts = FRENCH_LINES[:5]
    ids = [doc.tolist() for doc in tok.tokenize_texts(texts, tiny_tokenizer, batch_size=2)]
    assert ids == [tiny_tokenizer.encode(t, add_special_tokens=False) for t in texts]
    assert all(0 not in doc and 2 not in doc for doc in ids)
    assert tok.special_ids(tiny_tokenizer) == tok.SpecialIds(bos_id=0, eos_id=2, pad_id=1)


# ------------------------------------------------------------------------------- shards


def test_shards_round_trip_and_memory_map(tmp_path, tiny_tokenizer):
    texts = FRENCH_LINES[:60]
    meta = tok.tokenize_to_shards(
        texts, tiny_tokenizer, tmp_path / "train", seq_len=16, tokenizer_name="tiny", blocks_per_shard=7
    )
    expected = tok.pack_blocks(
        tok.tokenize_texts(texts, tiny_tokenizer), seq_len=16, ids=tok.special_ids(tiny_tokenizer)
    )
    blocks, read_meta = tok.read_shards(
        tmp_path / "train", expected_seq_len=16, expected_vocab_size=len(tiny_tokenizer)
    )
    assert read_meta == meta
    assert (meta.num_blocks, meta.num_docs, meta.tokenizer) == (len(expected), 60, "tiny")
    assert len(meta.shards) == -(-len(expected) // 7) > 1
    assert isinstance(blocks._shards[0], np.memmap)
    np.testing.assert_array_equal(blocks.to_array(), expected)
    np.testing.assert_array_equal(np.stack([blocks[i] for i in range(len(blocks))]), expected)
    np.testing.assert_array_equal(blocks[-1], expected[-1])
    counts = tok.read_token_counts(tmp_path / "train")
    np.testing.assert_array_equal(counts, tok.count_token_ids(expected, len(tiny_tokenizer)))
    assert counts.sum() == meta.num_tokens == expected.size


def test_shard_mismatches_and_misuse_are_refused(tmp_path, tiny_tokenizer):
    out = tmp_path / "prepared" / "train"
    tok.tokenize_to_shards(FRENCH_LINES[:20], tiny_tokenizer, out, seq_len=16)
    with pytest.raises(ValueError, match=r"seq_len 16 != expected 32.*--seq-len"):
        tok.read_shards(out, expected_seq_len=32)
    with pytest.raises(ValueError, match=rf"vocab_size {len(tiny_tokenizer)} != expected 32005"):
        tok.read_shards(out, expected_vocab_size=32005)
    with pytest.raises(FileNotFoundError, match=r"no meta\.json.*subdirectories \['train'\]"):
        tok.read_shards(tmp_path / "prepared")
    with pytest.raises(FileExistsError, match="already holds token shards"):
        tok.tokenize_to_shards(FRENCH_LINES[:20], tiny_tokenizer, out, seq_len=16)
    with pytest.raises(ValueError, match="fewer than 510 tokens"):
        tok.tokenize_to_shards(["court"], tiny_tokenizer, tmp_path / "tiny", seq_len=512)


def test_prepare_data_cli_writes_train_and_eval_and_fails_clearly(tmp_path, tiny_tokenizer, capsys):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    for i in range(4):
        write_bytes(tmp_path, f"corpus/novel{i}.txt", "\n".join(FRENCH_LINES[i::4]).encode())
    main = runpy.run_path(str(REPO_ROOT / "scripts" / "prepare_data.py"))["main"]
    argv = [
        "--input",
        str(tmp_path / "corpus"),
        "--tokenizer",
        str(tmp_path / "tok"),
        "--seq-len",
        "32",
        "--out",
        str(tmp_path / "out"),
        "--holdout-files",
        "1",
    ]
    assert main(argv) == 0
    assert "train: 3 file(s)" in capsys.readouterr().out
    train, _ = tok.read_shards(tmp_path / "out" / "train", expected_seq_len=32)
    held, _ = tok.read_shards(tmp_path / "out" / "eval", expected_seq_len=32)
    assert len(train) > len(held) > 0
    bad = [
        "--input",
        str(tmp_path / "missing"),
        "--tokenizer",
        str(tmp_path / "tok"),
        "--seq-len",
        "32",
        "--out",
        str(tmp_path / "out2"),
    ]
    assert main(bad) == 2
    assert "missing does not exist" in capsys.readouterr().err


def test_real_french_novel_cleans_tokenises_and_packs(shared_data_dir):
    novel = sorted((shared_data_dir / "fr_novels").glob("*.txt"))[0]
    stats = corpus.CorpusStats()
    texts = list(corpus.iter_local_texts([novel], min_chars=2, max_docs=3000, stats=stats))
    assert len(texts) > 100 and stats.docs_dropped > 0  # the novels start with blank lines
    assert all(t == t.strip() and len(t) >= 2 for t in texts)
    tokenizer = make_tiny_tokenizer(texts[:500], vocab_size=400)
    ids = tok.special_ids(tokenizer)
    blocks = tok.pack_blocks(tok.tokenize_texts(texts, tokenizer), seq_len=64, ids=ids)
    assert len(blocks) > 50
    assert (blocks[:, 0] == ids.bos_id).all() and (blocks[:, -1] == ids.eos_id).all()
    unk_share = np.mean(blocks == tokenizer.unk_token_id)
    assert unk_share < 0.01, f"{unk_share:.1%} <unk>: cleaning or tokenisation is broken"
    words = tokenizer.decode(blocks[0, 1:-1].tolist(), skip_special_tokens=True).split()
    assert len(words) > 5 and words[:-1] == " ".join(texts).split()[: len(words) - 1]


# ----------------------------------------------------------------------------- pipeline

PAD = 1
SEQ = 4


def numbered_blocks(n: int) -> np.ndarray:
    """Block i is [i+10, i+10, i+10, pad] (a padded tail exercises the attention mask)."""
    blocks = np.repeat(np.arange(10, 10 + n, dtype=np.int32)[:, None], SEQ, axis=1)
    blocks[:, -1] = PAD
    return blocks


def block_numbers(batch: dict[str, np.ndarray]) -> list[int]:
    return (batch["input_ids"][:, 0] - 10).tolist()


def take(iterator, n: int) -> list[dict[str, np.ndarray]]:
    return [next(iterator) for _ in range(n)]


def train_iter(blocks, **kwargs):
    defaults = dict(global_batch_size=4, seed=0, pad_id=PAD, process_index=0, process_count=1)
    return pipeline.make_train_iterator(blocks, **(defaults | kwargs))


def test_batches_have_the_model_input_format():
    batch = next(train_iter(numbered_blocks(24)))
    assert set(batch) == {"input_ids", "attention_mask"}
    assert batch["input_ids"].dtype == np.int32 and batch["input_ids"].shape == (4, SEQ)
    assert batch["attention_mask"].dtype == np.int32
    np.testing.assert_array_equal(batch["attention_mask"], [[1, 1, 1, 0]] * 4)


def test_same_seed_same_batches_other_seed_other_order():
    blocks = numbered_blocks(24)
    first = [block_numbers(b) for b in take(train_iter(blocks, seed=7), 12)]
    again = [block_numbers(b) for b in take(train_iter(blocks, seed=7), 12)]
    other = [block_numbers(b) for b in take(train_iter(blocks, seed=8), 12)]
    assert first == again
    assert first != other


def test_each_epoch_covers_every_block_once_in_a_new_order():
    blocks = numbered_blocks(24)
    numbers = sum((block_numbers(b) for b in take(train_iter(blocks), 18)), [])
    epochs = [numbers[0:24], numbers[24:48], numbers[48:72]]
    assert all(sorted(e) == list(range(24)) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2] != epochs[0]
    assert epochs[0] != list(range(24))


def test_neighbouring_seeds_do_not_share_epoch_orders():
    """grain seeds epoch e with seed + e: without hashing, seed 1's first epoch is seed 0's second."""
    blocks = numbered_blocks(24)
    seed0 = sum((block_numbers(b) for b in take(train_iter(blocks, seed=0), 12)), [])
    seed1 = sum((block_numbers(b) for b in take(train_iter(blocks, seed=1), 6)), [])
    assert seed1 != seed0[24:]


def test_finite_epochs_stop_after_the_last_full_global_batch_on_every_process():
    blocks = numbered_blocks(11)  # 2 epochs = 22 blocks: 5 global batches of 4, 2 left over
    single = list(train_iter(blocks, num_epochs=2))
    parts = [list(train_iter(blocks, num_epochs=2, process_index=p, process_count=4)) for p in range(4)]
    assert len(single) == 5 and [len(part) for part in parts] == [5] * 4


def test_two_processes_split_each_global_batch_in_order():
    blocks = numbered_blocks(26)
    single = [block_numbers(b) for b in take(train_iter(blocks), 20)]
    halves = [
        [block_numbers(b) for b in take(train_iter(blocks, process_index=p, process_count=2), 20)]
        for p in range(2)
    ]
    for step in range(20):
        zero, one = halves[0][step], halves[1][step]
        assert len(zero) == len(one) == 2
        assert set(zero).isdisjoint(one)
        # in process order, row for row: the global array is the single-process batch
        assert list(zero) + list(one) == list(single[step])


def test_bad_batch_and_process_settings_are_refused():
    with pytest.raises(ValueError, match="multiple of the process count 3"):
        train_iter(numbered_blocks(24), process_count=3)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        train_iter(numbered_blocks(3))
    with pytest.raises(ValueError, match=r"process_index 2 is not in \[0, process_count=2\)"):
        train_iter(numbered_blocks(24), process_index=2, process_count=2)


def test_process_defaults_come_from_jax():
    assert pipeline.resolve_process(None, None) == (0, 1)


def test_get_set_state_resumes_bit_identically():
    blocks = numbered_blocks(22)
    iterator = train_iter(blocks, seed=3)
    take(iterator, 5)
    state = iterator.get_state()
    assert json.loads(json.dumps(state)) == state
    expected = take(iterator, 9)
    resumed = train_iter(blocks, seed=3)
    resumed.set_state(state)
    for a, b in zip(take(resumed, 9), expected, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_orbax_checkpoint_manager_round_trip_resumes_bit_identically(tmp_path):
    import orbax.checkpoint as ocp

    blocks = numbered_blocks(22)
    iterator = train_iter(blocks, seed=5, global_batch_size=2)
    take(iterator, 4)
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=True)
    with ocp.CheckpointManager(tmp_path / "ckpt", options=options) as manager:
        manager.save(
            4,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave({"w": np.arange(3.0)}),
                data_iter=pipeline.iterator_save_args(iterator),
            ),
        )
        expected = take(iterator, 15)  # the iterator moves on while the save completes
        manager.wait_until_finished()

    fresh = train_iter(blocks, seed=5, global_batch_size=2)
    with ocp.CheckpointManager(tmp_path / "ckpt") as manager:
        assert manager.latest_step() == 4
        restored = manager.restore(
            4,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore({"w": np.zeros(3)}),
                data_iter=pipeline.iterator_restore_args(fresh),
            ),
        )
    assert restored.data_iter is fresh
    np.testing.assert_array_equal(restored.state["w"], np.arange(3.0))
    for a, b in zip(take(fresh, 15), expected, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_eval_batches_are_ordered_complete_and_padded_to_full_batches():
    blocks = numbered_blocks(10)
    single = list(
        pipeline.make_eval_batches(blocks, global_batch_size=4, pad_id=PAD, process_index=0, process_count=1)
    )
    assert len(single) == 3
    ids = np.concatenate([b["input_ids"] for b in single])
    np.testing.assert_array_equal(ids[:10], blocks)
    assert (ids[10:] == PAD).all()
    assert np.concatenate([b["attention_mask"] for b in single])[10:].sum() == 0
    assert [block_numbers(b) for b in single] == [
        block_numbers(b)
        for b in pipeline.make_eval_batches(
            blocks, global_batch_size=4, pad_id=PAD, process_index=0, process_count=1
        )
    ]
    parts = [
        list(
            pipeline.make_eval_batches(
                blocks, global_batch_size=4, pad_id=PAD, process_index=p, process_count=2
            )
        )
        for p in range(2)
    ]
    assert len(parts[0]) == len(parts[1]) == 3
    for step in range(3):
        rows = np.concatenate([parts[0][step]["input_ids"], parts[1][step]["input_ids"]])
        assert sorted(rows[:, 0].tolist()) == sorted(single[step]["input_ids"][:, 0].tolist())


def test_pipeline_reads_memory_mapped_shards(tmp_path, tiny_tokenizer):
    tok.tokenize_to_shards(FRENCH_LINES[:60], tiny_tokenizer, tmp_path, seq_len=16, blocks_per_shard=5)
    blocks, meta = tok.read_shards(tmp_path, expected_seq_len=16)
    batches = list(
        pipeline.make_train_iterator(blocks, global_batch_size=4, seed=0, pad_id=meta.pad_id, num_epochs=1)
    )
    assert len(batches) == meta.num_blocks // 4
    seen = np.concatenate([b["input_ids"] for b in batches])
    all_rows = {r.tobytes() for r in blocks.to_array()}
    assert len({r.tobytes() for r in seen}) == len(seen) and all(r.tobytes() in all_rows for r in seen)
