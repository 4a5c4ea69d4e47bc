"""Tokenizers: load any HF tokenizer, or train a CamemBERT-style SentencePiece one.

CamemBERT's tokenizer is a SentencePiece unigram model with fairseq's special tokens. We
train the same kind of model with `sentencepiece`, then hand its pieces and scores to
transformers' `CamembertTokenizer(vocab=...)` (v5 no longer reads raw .model files), so the
saved directory loads with `AutoTokenizer.from_pretrained(dir)` like camembert-base's.
"""

from __future__ import annotations

import io
import logging
import os
import pathlib
from collections.abc import Iterable

log = logging.getLogger(__name__)

# Same roles as camembert-base: <s> is bos/cls, </s> eos/sep; <mask> is the last id.
SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")
MASK_TOKEN = "<mask>"


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


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike | None = None,
                    *, max_sentences: int = 2_000_000, seed: int = 0, character_coverage: float = 0.9999):
    """Trains a CamemBERT-style unigram SentencePiece tokenizer with exactly `vocab_size` ids.

    Ids: `<s>`=0, `<pad>`=1, `</s>`=2, `<unk>`=3, the learned pieces, then `<mask>` last, so a
    model's `pad_token_id` is 1 as in camembert-base. Returns the HF tokenizer (saved to
    `out_dir` when given).
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2
    from transformers import CamembertTokenizer

    n_learned = vocab_size - len(SPECIAL_TOKENS) - 1
    if n_learned < 16:
        raise ValueError(f"vocab_size={vocab_size} is too small: it must leave room for the "
                         f"{len(SPECIAL_TOKENS) + 1} special tokens and at least 16 pieces")
    sentences = (t.strip() for t in texts)
    sentences = [t for t in sentences if t]
    if not sentences:
        raise ValueError("no text to train the tokenizer on (every line was empty)")
    spm.set_random_generator_seed(seed)
    model = io.BytesIO()
    # SentencePiece reserves ids for unk/bos/eos; we put its unk at 0 and remap below.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=model, model_type="unigram",
        vocab_size=n_learned + 1, unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,
        character_coverage=character_coverage, input_sentence_size=max_sentences,
        shuffle_input_sentence=True, seed_sentencepiece_size=200_000, num_threads=os.cpu_count() or 1,
        hard_vocab_limit=True, minloglevel=2,
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
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
        log.info("saved a %d-token tokenizer to %s", len(tokenizer), out_dir)
    return tokenizer
