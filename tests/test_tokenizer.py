"""`train_tokenizer` on the real novels: every frequent character has a piece, the SentencePiece file
gives the ids tokenizer.json gives, and scripts/train_tokenizer.py reports the held-out <unk> rate.

Trained once per module on one novel with the most digits (ELTeC-fra, ../shared/data/fr_novels),
held-out text from another novel; a 1 000-id vocabulary trains in seconds.
"""

from __future__ import annotations

import collections
import itertools
import pathlib
import runpy
import unicodedata

import pytest
import sentencepiece as spm
from transformers import AutoTokenizer, CamembertTokenizerFast

from jaxdistil.tokenizer import FRENCH_CHARS, MIN_CHAR_COUNT, SPM_FILE, train_tokenizer, unk_rate

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN_NOVEL, HELD_OUT_NOVEL = "FRA04001_Verne.txt", "FRA01902_Gaboriau.txt"  # both have every digit
VOCAB_SIZE = 1000
DIGITS = "0123456789"


def read_lines(path, n=3000) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in itertools.islice(f, n) if line.strip()]


@pytest.fixture(scope="module")
def novels(shared_data_dir):
    return shared_data_dir / "fr_novels"


@pytest.fixture(scope="module")
def train_lines(novels) -> list[str]:
    return read_lines(novels / TRAIN_NOVEL)


@pytest.fixture(scope="module")
def held_out(novels) -> list[str]:
    return read_lines(novels / HELD_OUT_NOVEL, 2000)


@pytest.fixture(scope="module")
def tokenizer_dir(train_lines, tmp_path_factory):
    out = tmp_path_factory.mktemp("novel_tokenizer")
    train_tokenizer(train_lines, VOCAB_SIZE, out)
    return out


def char_counts(lines) -> collections.Counter:
    return collections.Counter(c for line in lines for c in unicodedata.normalize("NFKC", line))


def test_every_frequent_character_and_french_ones_have_a_piece(tokenizer_dir, train_lines):
    counts = char_counts(train_lines)
    assert all(counts[d] >= MIN_CHAR_COUNT for d in DIGITS + "«»éèàç")  # the novel exercises the rule
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    covered = {c for c, n in counts.items() if n >= MIN_CHAR_COUNT and not c.isspace()} | set(FRENCH_CHARS)
    assert {"%", "/", "€", "’", "…", "œ", "É"} <= covered
    unknown = [c for c in sorted(covered)
               if tokenizer.unk_token_id in tokenizer(c, add_special_tokens=False)["input_ids"]]
    assert unknown == []
    assert tokenizer.unk_token_id not in tokenizer("En 1867, 25 % de hausse : 9,60 €.")["input_ids"]


def test_held_out_unk_pieces_are_only_rare_characters(tokenizer_dir, train_lines, held_out):
    """An <unk> on unseen text can only stand for a character the training text had fewer than
    MIN_CHAR_COUNT times (read back through the offsets), never one of FRENCH_CHARS."""
    counts = char_counts(train_lines)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    encoded = tokenizer(held_out, add_special_tokens=False, return_offsets_mapping=True)
    unk_text = {line[a:b].strip() for line, ids, offsets in zip(held_out, encoded["input_ids"],
                                                                encoded["offset_mapping"], strict=True)
                for i, (a, b) in zip(ids, offsets, strict=True) if i == tokenizer.unk_token_id}
    chars = {c for text in unk_text for c in unicodedata.normalize("NFKC", text)}
    assert all(counts[c] < MIN_CHAR_COUNT and c not in FRENCH_CHARS for c in chars), chars


def test_sentencepiece_model_gives_the_ids_of_tokenizer_json(tokenizer_dir, held_out):
    fast = AutoTokenizer.from_pretrained(tokenizer_dir)
    camembert = CamembertTokenizerFast.from_pretrained(tokenizer_dir)
    processor = spm.SentencePieceProcessor(model_file=str(tokenizer_dir / SPM_FILE))
    ids = fast(held_out, add_special_tokens=False)["input_ids"]
    assert camembert(held_out, add_special_tokens=False)["input_ids"] == ids
    assert processor.encode(held_out) == ids
    assert processor.get_piece_size() == len(fast) == VOCAB_SIZE
    specials = {"<s>": fast.bos_token_id, "<pad>": fast.pad_token_id, "</s>": fast.eos_token_id,
                "<unk>": fast.unk_token_id, "<mask>": fast.mask_token_id}
    assert {piece: processor.piece_to_id(piece) for piece in specials} == specials
    assert (processor.bos_id(), processor.eos_id(), processor.pad_id(), processor.unk_id()) == (0, 2, 1, 3)
    with_specials = fast(held_out[0])["input_ids"]
    assert with_specials == [fast.bos_token_id, *processor.encode(held_out[0]), fast.eos_token_id]


def test_script_prints_the_held_out_unk_rate(novels, tmp_path, capsys):
    """The rate printed equals a count made independently with SentencePiece on the held-out file."""
    for name in (TRAIN_NOVEL, HELD_OUT_NOVEL):
        (tmp_path / "corpus").mkdir(exist_ok=True)
        (tmp_path / "corpus" / name).write_text("\n".join(read_lines(novels / name, 1500)), encoding="utf-8")
    main = runpy.run_path(str(REPO_ROOT / "scripts" / "train_tokenizer.py"))["main"]
    out = tmp_path / "tok"
    assert main(["--input", str(tmp_path / "corpus"), "--vocab-size", "600", "--out", str(out),
                 "--holdout-files", "1"]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if "<unk>" in line)
    processor = spm.SentencePieceProcessor(model_file=str(out / SPM_FILE))
    held_file = next(f for f in (tmp_path / "corpus").iterdir() if f.name in line)
    pieces = [i for text in read_lines(held_file, 10_000) for i in processor.encode(text)]
    expected = sum(i == processor.unk_id() for i in pieces) / len(pieces)
    assert f"{100 * expected:.4f} %" in line
    rate, counted = unk_rate(AutoTokenizer.from_pretrained(out), read_lines(held_file, 10_000))
    assert (rate, counted) == (pytest.approx(expected), len(pieces))


def test_script_refuses_a_min_char_count_below_one(novels, tmp_path, capsys):
    main = runpy.run_path(str(REPO_ROOT / "scripts" / "train_tokenizer.py"))["main"]
    assert main(["--input", str(novels / TRAIN_NOVEL), "--vocab-size", "600", "--out", str(tmp_path / "t"),
                 "--min-char-count", "0"]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert error.startswith("error: min_char_count=0: it must be 1 or more")
    assert main(["--input", str(novels / TRAIN_NOVEL), "--vocab-size", "100", "--out", str(tmp_path / "t")]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert error.startswith("error: vocab_size=100 leaves 95 pieces, too few beside the")
    assert error.endswith("raise vocab_size, or min_char_count")
