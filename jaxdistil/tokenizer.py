"""Tokenizers: load any HF tokenizer, or train a CamemBERT-style SentencePiece one.

CamemBERT's tokenizer is a SentencePiece unigram model with fairseq's special tokens. We
train the same kind of model with `sentencepiece`, then hand its pieces and scores to
transformers' `CamembertTokenizer(vocab=...)`, so the saved directory loads with
`AutoTokenizer.from_pretrained(dir)` like camembert-base's. Beside `tokenizer.json` we write
`sentencepiece.bpe.model` (camembert-base's file name) with the pieces in the *same id order*,
so `sentencepiece.SentencePieceProcessor` on that file gives the ids `tokenizer.json` gives.
transformers reads `tokenizer.json` first. From a lone `.model` file its CamemBERT converter
assumes camembert-base's fairseq layout (its own fixed entries, then the file's pieces after the
first), which moves every id of ours, so `tokenizer.json` is always saved beside the file.
"""

from __future__ import annotations

import collections
import io
import logging
import os
import pathlib
import shutil
import string
import unicodedata
from collections.abc import Iterable

log = logging.getLogger(__name__)

# Same roles as camembert-base: <s> is bos/cls, </s> eos/sep; <mask> is the last id.
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
MASK_TOKEN = "<mask>"
MIN_PIECES = 16  # learned pieces a vocabulary needs, beyond its single characters
SPM_FILE = "sentencepiece.bpe.model"  # camembert-base's name for its SentencePiece model
# A character seen at least this often in the training text gets a piece of its own, however
# small `character_coverage` would make its share (it drops digits and `%` on the novels).
MIN_CHAR_COUNT = 5
# Characters French text needs that must never be <unk>, even when the training text lacks them:
# printable ASCII (digits, `%`, `/`, ...), then French punctuation, symbols and accented letters.
FRENCH_CHARS = ("".join(c for c in string.printable if not c.isspace()) + "€£°«»‹›“”‘’…–—"
                "àâäçéèêëîïôöùûüÿæœÀÂÄÇÉÈÊËÎÏÔÖÙÛÜŸÆŒ")


def load_tokenizer(name_or_path: str | os.PathLike):
    """An HF *fast* tokenizer (batched Rust tokenisation; word ids for labels), local or Hub."""
    from transformers import AutoTokenizer

    text = str(name_or_path)
    if not pathlib.Path(text).exists() and (text.startswith((".", "/", "~")) or text.count("/") > 1):
        raise FileNotFoundError(f"no tokenizer directory at {text}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(text)
    except Exception as e:
        raise ValueError(f"could not load a tokenizer from {text!r} ({type(e).__name__}: {e}); "
                         "give a directory with tokenizer.json / tokenizer_config.json or a Hub name "
                         "when online") from e
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"tokenizer {text!r} is not a fast tokenizer; save one with `tokenizer.json` "
                         "(AutoTokenizer.from_pretrained(..., use_fast=True).save_pretrained(dir))")
    return tokenizer


def save_tokenizer(tokenizer, out_dir: str | os.PathLike) -> None:
    """`save_pretrained`, plus the tokenizer's SentencePiece model when it has one: the one
    `train_tokenizer` made, or the file it was loaded with (transformers v5 saves only
    `tokenizer.json`; camembert-base's repository has both)."""
    tokenizer.save_pretrained(str(out_dir))
    target = pathlib.Path(out_dir) / SPM_FILE
    trained = getattr(tokenizer, "sentencepiece_model", None)
    source = getattr(tokenizer, "vocab_file", None)
    if trained is not None:
        target.write_bytes(trained)
    elif source and str(source).endswith(".model") and pathlib.Path(source).is_file():
        if pathlib.Path(source).resolve() != target.resolve():
            shutil.copyfile(source, target)


def required_chars(sentences: Iterable[str], min_count: int = MIN_CHAR_COUNT) -> str:
    """`FRENCH_CHARS` plus every character seen `min_count` times or more (NFKC, as SentencePiece's
    normaliser sees it; whitespace is SentencePiece's own business)."""
    counts = collections.Counter()
    for sentence in sentences:
        counts.update(unicodedata.normalize("NFKC", sentence))
    frequent = {c for c, n in counts.items() if n >= min_count and not c.isspace()}
    return "".join(sorted(frequent | set(FRENCH_CHARS)))


def unk_rate(tokenizer, texts: Iterable[str]) -> tuple[float, int]:
    """(share of the pieces of `texts` that are `<unk>`, pieces counted); special tokens not counted."""
    total = unknown = 0
    for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]:
        total += len(ids)
        unknown += sum(i == tokenizer.unk_token_id for i in ids)
    if not total:
        raise ValueError("no held-out text to measure the <unk> rate on")
    return unknown / total, total


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike | None = None,
                    *, max_sentences: int = 2_000_000, seed: int = 0, character_coverage: float = 0.9999,
                    min_char_count: int = MIN_CHAR_COUNT):
    """Trains a CamemBERT-style unigram SentencePiece tokenizer with exactly `vocab_size` ids.

    Ids: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, the learned pieces, then `<mask>` last, so a
    model's `pad_token_id` is 1 as in camembert-base. Every character of `required_chars`
    (`min_char_count`) has a piece. Returns the HF tokenizer (saved to `out_dir` when given,
    with `sentencepiece.bpe.model`).
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from transformers import CamembertTokenizer

    if min_char_count < 1:
        raise ValueError(f"min_char_count={min_char_count}: it must be 1 or more (the times a character must "
                         "occur in the training text to get a piece of its own)")
    n_learned = vocab_size - len(SPECIAL_TOKENS) - 1
    if n_learned < MIN_PIECES:
        raise ValueError(f"vocab_size={vocab_size} is too small: it must leave room for the "
                         f"{len(SPECIAL_TOKENS) + 1} special tokens and at least {MIN_PIECES} pieces")
    sentences = (t.strip() for t in texts)
    sentences = [t for t in sentences if t]
    if not sentences:
        raise ValueError("no text to train the tokenizer on (every line was empty)")
    chars = required_chars(sentences, min_char_count)
    if len(chars) + MIN_PIECES > n_learned:
        raise ValueError(f"vocab_size={vocab_size} leaves {n_learned} pieces, too few beside the {len(chars)} "
                         f"characters that each need one (tokenizer.FRENCH_CHARS and those seen {min_char_count}+ "
                         "times): raise vocab_size, or min_char_count")
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    # SentencePiece reserves ids for unk/bos/eos; we put its unk at 0 and remap below.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, model_type="unigram",
        vocab_size=n_learned + 1, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        character_coverage=character_coverage, required_chars=chars,
        input_sentence_size=max_sentences, shuffle_input_sentence=True, seed_sentencepiece_size=200_000,
        num_threads=os.cpu_count() or 1, hard_vocab_limit=True, minloglevel=2,
    )
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model.getvalue())
    pieces = [(p.piece, p.score) for p in proto.pieces if p.type == p.NORMAL]
    vocab = [(tok, 0.0) for tok in SPECIAL_TOKENS] + pieces + [(MASK_TOKEN, 0.0)]
    if len(vocab) != vocab_size:
        raise ValueError(f"the corpus is too small for vocab_size={vocab_size}: SentencePiece "
                         f"learned only {len(pieces)} pieces; lower vocab_size or add text")
    tokenizer = CamembertTokenizer(
        vocab=vocab, additional_special_tokens=[],
        _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap or None)
    # Kept on the object, so whoever saves it (here, or a run's set-up into its workdir) writes the file.
    tokenizer.sentencepiece_model = reordered_spm_model(proto, pieces).SerializeToString()
    if out_dir is not None:
        save_tokenizer(tokenizer, out_dir)
        log.info("saved a %d-token tokenizer to %s", len(tokenizer), out_dir)
    return tokenizer


def reordered_spm_model(proto, pieces: list[tuple[str, float]]):
    """The trained SentencePiece model with our id order: specials first, `<mask>` last."""
    out = type(proto)()
    out.CopyFrom(proto)
    del out.pieces[:]
    kinds = {"<unk>": proto.SentencePiece.UNKNOWN}
    for token in SPECIAL_TOKENS:
        out.pieces.add(piece=token, score=0.0, type=kinds.get(token, proto.SentencePiece.CONTROL))
    for piece, score in pieces:
        out.pieces.add(piece=piece, score=score, type=proto.SentencePiece.NORMAL)
    out.pieces.add(piece=MASK_TOKEN, score=0.0, type=proto.SentencePiece.USER_DEFINED)
    ids = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    spec = out.trainer_spec
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = ids["<unk>"], ids["<s>"], ids["</s>"], ids["<pad>"]
    spec.vocab_size = len(out.pieces)
    return out
