"""Test helpers shared across test files (no network, no Hub: everything built on the fly)."""

from __future__ import annotations

from collections.abc import Sequence

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0, 1, 2, 3; <mask> is added last


def make_tiny_tokenizer(texts: Sequence[str], vocab_size: int = 300):
    """A small RoBERTa-style fast tokenizer (Unigram + Metaspace, NFC) trained on `texts`.

    Ids: <s> 0, <pad> 1, </s> 2, <unk> 3, <mask> = len(tokenizer) - 1. cls/sep are <s>/</s>
    as in RoBERTa and CamemBERT. Trains in well under a second on a few hundred lines.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size - 1,  # <mask> comes on top
        special_tokens=list(SPECIAL_TOKENS),
        unk_token="<unk>",
        show_progress=False,
    )
    backend.train_from_iterator(list(texts), trainer=trainer)
    backend.add_special_tokens(["<mask>"])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        cls_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
