"""Words ⇄ sub-tokens: encode tagged sentences and texts for fine-tuning, decode predictions.

Tagged sentences are encoded at their own length (the caller pads each batch, `finetune`'s
buckets), one row per sentence, or several overlapping windows for a sentence longer than
`max_length`: every word is labelled and scored exactly once, never cut off. A word's label
sits on one sub-token (`label_piece`); its other sub-tokens, specials and padding get
IGNORE_INDEX so the loss skips them, and prediction reads the same sub-token. Texts for
classification are padded to `max_length` (batches are cut to their longest row) and truncated
longest-first beyond it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from jaxdistil.evaluate.readers import TaggedSentence, TextExample
from jaxdistil.losses import IGNORE_INDEX

NO_WORD = -1  # word_ids value on specials and padding
WORD_START = "▁"  # SentencePiece's word-start marker; alone, a piece that says nothing about the word

LabelPiece = Literal["first", "first_content"]
# "first": the word's first sub-token, the usual HF recipe (and what HF's token-classification
# pipeline reads with aggregation "first"). With words pre-split that is a bare "▁" for many
# words (SentencePiece splits "▁" off a word it has no piece for), the same piece for all of
# them; "first_content": the first sub-token that is not a bare "▁", which carries the word's
# own letters (the first one when the word has nothing else). Measured on Sequoia POS with a
# small encoder, "first" tags better once trained for a few epochs (presumably attention
# gives the bare "▁" its word's context; "first_content" only leads in the first epoch), so it
# is the default; the figures and commands are in docs/results.md.
LABEL_PIECES: tuple[LabelPiece, ...] = ("first", "first_content")
DEFAULT_LABEL_PIECE: LabelPiece = "first"
# Consecutive windows of a long sentence share this fraction of their sub-tokens.
WINDOW_OVERLAP = 0.5


@dataclass(frozen=True)
class TaggedEncoding:
    """Tagged sentences as rows of sub-tokens (one per sentence, or per window of a long one).

    Arrays are right-padded to the longest row only: a batch cut to its own longest row is exact.
    word_ids[r, j] is the sentence-wide index of the word that sub-token j of row r belongs to
    (NO_WORD on specials and padding); scored[r, j] marks the one sub-token, over all rows of a
    sentence, that carries the word's label and prediction; sentence_ids[r] is row r's sentence.
    piece_word_ids holds every sentence's sub-tokens once (windows overlap), for sub-word scores.
    """

    input_ids: np.ndarray  # [rows, width] int32
    attention_mask: np.ndarray  # [rows, width] int32
    labels: np.ndarray  # [rows, width] int32, IGNORE_INDEX off scored sub-tokens
    word_ids: np.ndarray  # [rows, width] int32
    scored: np.ndarray  # [rows, width] bool
    sentence_ids: np.ndarray  # [rows] int32
    num_words: np.ndarray  # [sentences] int32
    piece_word_ids: np.ndarray  # [sentences, most pieces] int32, NO_WORD-padded
    unscored_words: int  # words that tokenise to no sub-token at all (none in practice)

    def batch(self) -> dict[str, np.ndarray]:
        """The arrays a train/eval step consumes."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "labels": self.labels}


def label_piece_indices(
    piece_ids: Sequence[int],
    piece_word_ids: Sequence[int],
    num_words: int,
    label_piece: LabelPiece,
    bare_id: int | None,
) -> np.ndarray:
    """Index of the sub-token that carries each word's label (-1 for a word without sub-tokens).

    `first_content` skips a leading bare "▁" (`bare_id`) when the word has another sub-token.
    """
    if label_piece not in LABEL_PIECES:
        raise ValueError(f"label_piece={label_piece!r}; expected one of {LABEL_PIECES}")
    first = np.full(num_words, -1, dtype=np.int64)
    content = np.full(num_words, -1, dtype=np.int64)
    for index, (piece, word) in enumerate(zip(piece_ids, piece_word_ids, strict=True)):
        if word == NO_WORD:
            continue
        if first[word] < 0:
            first[word] = index
        if content[word] < 0 and piece != bare_id:
            content[word] = index
    if label_piece == "first":
        return first
    return np.where(content >= 0, content, first)


def window_starts(num_pieces: int, width: int) -> list[int]:
    """Starts of the `width`-piece windows covering `num_pieces`, overlapping by WINDOW_OVERLAP."""
    if num_pieces <= width:
        return [0]
    stride = max(1, int(width * (1 - WINDOW_OVERLAP)))
    return [*range(0, num_pieces - width, stride), num_pieces - width]


def best_window(index: int, starts: Sequence[int], width: int) -> int:
    """The window in which sub-token `index` has the most context on its poorer side."""
    context = [min(index - s, s + width - 1 - index) for s in starts]
    return int(np.argmax(context))


def encode_tagged(
    sentences: Sequence[TaggedSentence],
    tokenizer: Any,
    label_map: Mapping[str, int],
    max_length: int,
    label_piece: LabelPiece = DEFAULT_LABEL_PIECE,
) -> TaggedEncoding:
    """Tokenize pre-split words with an HF fast tokenizer; label each word on its `label_piece`.

    A sentence longer than `max_length` (specials included) becomes overlapping windows and each
    word is labelled in the one where it has the most context. The tokenizer must pre-tokenize
    every word as a word start (CamemBERT's Metaspace prepends `▁` to each word when
    `is_split_into_words=True`), else word pieces differ from those seen in running text.
    Unknown tags raise KeyError: check labels first (readers.check_labels_known).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("a fast tokenizer is needed: word_ids() comes from the Rust backend")
    if not sentences:
        raise ValueError("no sentences to encode")
    if max_length < 3:
        raise ValueError(f"max_length={max_length} leaves no room between <s> and </s>")
    encoded = tokenizer([list(s.tokens) for s in sentences], is_split_into_words=True, add_special_tokens=False)
    bare_id = tokenizer.get_vocab().get(WORD_START)
    width = max_length - 2
    rows: list[tuple[list[int], list[int], list[int], int]] = []  # ids, word ids, labels, sentence
    pieces_per_sentence, unscored = [], 0
    for index, sentence in enumerate(sentences):
        ids = list(encoded["input_ids"][index])
        words = [NO_WORD if w is None else w for w in encoded.word_ids(index)]
        pieces_per_sentence.append(words)
        labelled = label_piece_indices(ids, words, len(sentence.tokens), label_piece, bare_id)
        unscored += int(np.sum(labelled < 0))
        starts = window_starts(len(ids), width)
        tags = [IGNORE_INDEX] * len(ids)
        window_of = [0] * len(ids)
        for word, piece in enumerate(labelled):
            if piece >= 0:
                tags[piece] = label_map[sentence.tags[word]]
                window_of[piece] = best_window(int(piece), starts, width)
        for number, start in enumerate(starts):
            stop = start + width
            own = [tag if window_of[j] == number else IGNORE_INDEX for j, tag in enumerate(tags[start:stop], start)]
            rows.append((ids[start:stop], words[start:stop], own, index))
    longest = max(len(r[0]) for r in rows) + 2
    shape = (len(rows), longest)
    input_ids = np.full(shape, tokenizer.pad_token_id, dtype=np.int32)
    attention_mask = np.zeros(shape, dtype=np.int32)
    labels = np.full(shape, IGNORE_INDEX, dtype=np.int32)
    word_ids = np.full(shape, NO_WORD, dtype=np.int32)
    for row, (ids, words, tags, _) in enumerate(rows):
        size = len(ids) + 2
        input_ids[row, :size] = [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id]
        attention_mask[row, :size] = 1
        labels[row, 1 : size - 1] = tags
        word_ids[row, 1 : size - 1] = words
    most_pieces = max(len(p) for p in pieces_per_sentence)
    piece_word_ids = np.full((len(sentences), most_pieces), NO_WORD, dtype=np.int32)
    for index, words in enumerate(pieces_per_sentence):
        piece_word_ids[index, : len(words)] = words
    return TaggedEncoding(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        word_ids=word_ids,
        scored=labels != IGNORE_INDEX,
        sentence_ids=np.array([r[3] for r in rows], dtype=np.int32),
        num_words=np.array([len(s.tokens) for s in sentences], dtype=np.int32),
        piece_word_ids=piece_word_ids,
        unscored_words=unscored,
    )


def decode_word_predictions(
    token_predictions: np.ndarray,
    encoding: TaggedEncoding,
    id_to_label: Mapping[int, str] | Sequence[str],
    fill_label: str = "O",
) -> list[list[str]]:
    """Per-sub-token predicted ids (rows of `encoding`) → per-word tags, read off each word's scored sub-token.

    Predictions may be wider than the encoding (padding) but not narrower. A word without any
    sub-token gets `fill_label`, so the metrics count it against the model.
    """
    token_predictions = np.asarray(token_predictions)
    rows, width = encoding.word_ids.shape
    if token_predictions.ndim != 2 or token_predictions.shape[0] != rows or token_predictions.shape[1] < width:
        raise ValueError(f"predictions {token_predictions.shape} vs encoding rows {encoding.word_ids.shape}")
    decoded = [[fill_label] * int(n) for n in encoding.num_words]
    for row, position in zip(*np.nonzero(encoding.scored), strict=True):
        word = int(encoding.word_ids[row, position])
        decoded[int(encoding.sentence_ids[row])][word] = id_to_label[int(token_predictions[row, position])]
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
