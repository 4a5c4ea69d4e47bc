"""Words ⇄ sub-tokens: encode tagged sentences and texts for fine-tuning, decode predictions.

Everything is padded to one fixed `max_length` and returned as numpy int32, so every batch
has the same shape and the jitted train/eval steps compile once.
Token classification follows the usual HF recipe: a word's label sits on its first
sub-token; later sub-tokens, specials and padding get IGNORE_INDEX so the loss skips them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jaxdistil.evaluate.readers import TaggedSentence, TextExample
from jaxdistil.losses import IGNORE_INDEX

NO_WORD = -1  # word_ids value on specials and padding


@dataclass(frozen=True)
class TaggedEncoding:
    """Fixed-length encoding of tagged sentences, plus what decoding needs.

    word_ids[i, j] is the index of the word that sub-token j of sentence i belongs to
    (NO_WORD on specials and padding); num_words holds each sentence's full word count,
    so decoding can give truncated words a tag too; truncated_words counts words whose
    first sub-token fell beyond max_length (they have no label and no prediction).
    """

    input_ids: np.ndarray  # [n, max_length] int32
    attention_mask: np.ndarray  # [n, max_length] int32
    labels: np.ndarray  # [n, max_length] int32, IGNORE_INDEX off first sub-tokens
    word_ids: np.ndarray  # [n, max_length] int32
    num_words: np.ndarray  # [n] int32
    truncated_words: int

    def batch(self) -> dict[str, np.ndarray]:
        """The arrays a train/eval step consumes."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "labels": self.labels}


def _first_subtoken_mask(word_ids: np.ndarray) -> np.ndarray:
    """True where a sub-token is the first one of its word (word id differs from its left neighbour)."""
    previous = np.concatenate(
        [np.full((word_ids.shape[0], 1), NO_WORD, word_ids.dtype), word_ids[:, :-1]], axis=1
    )
    return (word_ids != NO_WORD) & (word_ids != previous)


def encode_tagged(
    sentences: Sequence[TaggedSentence],
    tokenizer: Any,
    label_map: Mapping[str, int],
    max_length: int,
) -> TaggedEncoding:
    """Tokenize pre-split words with an HF fast tokenizer and put each label on its first sub-token.

    The tokenizer must pre-tokenize every word as a word start (CamemBERT's Metaspace
    prepends `▁` to each word when `is_split_into_words=True`), else word pieces differ
    from those seen in running text. Unknown tags raise KeyError: check labels first
    (readers.check_labels_known).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("a fast tokenizer is needed: word_ids() comes from the Rust backend")
    if not sentences:
        raise ValueError("no sentences to encode")
    encoded = tokenizer(
        [list(s.tokens) for s in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        padding="max_length",
    )
    word_ids = np.array(
        [[NO_WORD if w is None else w for w in encoded.word_ids(i)] for i in range(len(sentences))],
        dtype=np.int32,
    ).reshape(len(sentences), max_length)
    first = _first_subtoken_mask(word_ids)
    labels = np.full(word_ids.shape, IGNORE_INDEX, dtype=np.int32)
    num_words = np.array([len(s.tokens) for s in sentences], dtype=np.int32)
    truncated = 0
    for row, sentence in enumerate(sentences):
        positions = np.flatnonzero(first[row])
        labels[row, positions] = [label_map[sentence.tags[w]] for w in word_ids[row, positions]]
        last_kept = int(word_ids[row].max()) if positions.size else -1
        truncated += len(sentence.tokens) - (last_kept + 1)
    return TaggedEncoding(
        input_ids=np.asarray(encoded["input_ids"], dtype=np.int32).reshape(len(sentences), max_length),
        attention_mask=np.asarray(encoded["attention_mask"], dtype=np.int32).reshape(
            len(sentences), max_length
        ),
        labels=labels,
        word_ids=word_ids,
        num_words=num_words,
        truncated_words=truncated,
    )


def decode_word_predictions(
    token_predictions: np.ndarray,
    word_ids: np.ndarray,
    num_words: np.ndarray,
    id_to_label: Mapping[int, str] | Sequence[str],
    fill_label: str = "O",
) -> list[list[str]]:
    """Per-sub-token predicted ids → per-word tags, read off each word's first sub-token.

    Words without a sub-token in the window (truncation) get `fill_label`, so the output
    has every sentence's full length and the metrics count them against the model.
    """
    token_predictions = np.asarray(token_predictions)
    word_ids = np.asarray(word_ids)
    if token_predictions.shape != word_ids.shape:
        raise ValueError(f"predictions {token_predictions.shape} vs word_ids {word_ids.shape}")
    first = _first_subtoken_mask(word_ids)
    decoded = []
    for row in range(word_ids.shape[0]):
        tags = [fill_label] * int(num_words[row])
        for position in np.flatnonzero(first[row]):
            tags[int(word_ids[row, position])] = id_to_label[int(token_predictions[row, position])]
        decoded.append(tags)
    return decoded


def encode_texts(
    examples: Sequence[TextExample],
    tokenizer: Any,
    label_map: Mapping[str, int],
    max_length: int,
) -> dict[str, np.ndarray]:
    """Encode single texts or text pairs (`<s> A </s></s> B </s>`), truncating longest first.

    All examples must agree on having a pair or not: a mixed list is a data bug.
    """
    if not examples:
        raise ValueError("no examples to encode")
    has_pair = {example.text_pair is not None for example in examples}
    if len(has_pair) > 1:
        raise ValueError("some examples have a text_pair and others do not")
    pairs = [e.text_pair for e in examples] if has_pair == {True} else None
    encoded = tokenizer(
        [e.text for e in examples],
        pairs,
        truncation=True,
        max_length=max_length,
        padding="max_length",
    )
    shape = (len(examples), max_length)
    return {
        "input_ids": np.asarray(encoded["input_ids"], dtype=np.int32).reshape(shape),
        "attention_mask": np.asarray(encoded["attention_mask"], dtype=np.int32).reshape(shape),
        "labels": np.array([label_map[e.label] for e in examples], dtype=np.int32),
    }
