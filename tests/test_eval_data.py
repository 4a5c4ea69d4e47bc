"""Evaluation data: readers (small written files and the real shared data), metrics, alignment."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from jaxdistil.evaluate import alignment, metrics, readers
from jaxdistil.evaluate.readers import TaggedSentence, TextExample
from jaxdistil.tokenizer import load_tokenizer

NER_TAGS = {"O"} | {f"{p}-{t}" for p in "BI" for t in ("PER", "LOC", "ORG", "MISC")}
UPOS_TAGS = {
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
}  # fmt: skip


def write(tmp_path: pathlib.Path, name: str, text: str) -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------- readers, small files


def test_wikiner_reads_tokens_and_ner_or_pos_tags(tmp_path):
    path = write(
        tmp_path,
        "wikiner.txt",
        "Marie|NAM|I-PER vit|VER|O à|PRP|O Paris|NAM|I-LOC\n\nIl|PRO|O dort|VER|O\n",
    )
    sentences = readers.read_wikiner(path)
    assert sentences == [
        TaggedSentence(["Marie", "vit", "à", "Paris"], ["I-PER", "O", "O", "I-LOC"]),
        TaggedSentence(["Il", "dort"], ["O", "O"]),
    ]
    assert readers.read_wikiner(path, tag_field=1)[1].tags == ["PRO", "VER"]
    assert readers.read_tagged(path, "auto") == sentences


def test_wikiner_malformed_line_names_file_and_line(tmp_path):
    path = write(tmp_path, "bad.txt", "Le|DET|O chat|NOM|O\nIl|PRO|O\nParis|NAM dort|VER|O\n")
    with pytest.raises(ValueError, match=r"bad\.txt:3: malformed WikiNER token 'Paris\|NAM'"):
        readers.read_wikiner(path)


def test_conllu_skips_comments_multiword_ranges_and_empty_nodes(tmp_path):
    rows = [
        "# sent_id = 1",
        "# text = Il va au marché.",
        "1\tIl\til\tPRON\tCLS\t_\t2\tnsubj\t_\t_",
        "2\tva\taller\tVERB\tV\t_\t0\troot\t_\t_",
        "3-4\tau\t_\t_\t_\t_\t_\t_\t_\t_",
        "3\tà\tà\tADP\tP\t_\t5\tcase\t_\t_",
        "4\tle\tle\tDET\tDET\t_\t5\tdet\t_\t_",
        "4.1\tvite\tvite\tADV\tADV\t_\t_\t_\t2:advmod\t_",
        "5\tmarché\tmarché\tNOUN\tNC\t_\t2\tobl\t_\t_",
        "",
        "# sent_id = 2",
        "1\tOui\toui\tINTJ\tI\t_\t0\troot\t_\t_",
        "",
    ]
    path = write(tmp_path, "tiny.conllu", "\n".join(rows) + "\n")
    sentences = readers.read_conllu(path)
    assert sentences == [
        TaggedSentence(["Il", "va", "à", "le", "marché"], ["PRON", "VERB", "ADP", "DET", "NOUN"]),
        TaggedSentence(["Oui"], ["INTJ"]),
    ]
    assert readers.read_conllu(path, column="xpos")[0].tags == ["CLS", "V", "P", "DET", "NC"]
    assert readers.read_tagged(path) == sentences


def test_wikineural_and_generic_columns(tmp_path):
    path = write(tmp_path, "wn.conllu", "0\tJean Paul\tB-PER\n1\tdort\tO\n\n0\tLyon\tB-LOC\n")
    expected = [
        TaggedSentence(["Jean Paul", "dort"], ["B-PER", "O"]),
        TaggedSentence(["Lyon"], ["B-LOC"]),
    ]
    assert readers.read_wikineural(path) == expected
    assert readers.read_tagged(path) == expected  # content wins over the .conllu extension
    columns = write(tmp_path, "c.txt", "Jean NNP B-PER\ndort V O\n\nLyon NNP B-LOC\n")
    assert readers.read_columns(columns, token_column=0, tag_column=2) == [
        TaggedSentence(["Jean", "dort"], ["B-PER", "O"]),
        TaggedSentence(["Lyon"], ["B-LOC"]),
    ]
    assert readers.read_columns(columns, tag_column=1)[0].tags == ["NNP", "V"]
    broken = write(tmp_path, "broken.txt", "Jean NNP B-PER\ndort O\n")
    with pytest.raises(ValueError, match=r"broken\.txt:2: expected 3 columns"):
        readers.read_columns(broken)


def test_europeana_splits_at_final_punctuation_never_inside_entities(tmp_path):
    stream = "Le O\nM I-PER\n. I-PER\nDupont I-PER\nest O\nà O\nParis I-LOC\n. O\nIl O\nvit O\n! O\nFin O\n"
    path = write(tmp_path, "tiny.bio", stream)
    sentences = readers.read_europeana(path)
    assert [s.tokens for s in sentences] == [
        ["Le", "M", ".", "Dupont", "est", "à", "Paris", "."],
        ["Il", "vit", "!"],
        ["Fin"],
    ]
    assert sentences[0].tags == ["O", "B-PER", "I-PER", "I-PER", "O", "O", "B-LOC", "O"]
    assert readers.read_europeana(path, to_iob2=False)[0].tags[1] == "I-PER"
    assert readers.read_tagged(path) == sentences


def test_split_long_segment_caps_length_at_an_outside_word():
    segment = TaggedSentence(list("abcdefg"), ["O", "O", "I-PER", "I-PER", "I-PER", "O", "O"])
    pieces = readers.split_long_segment(segment, max_words=3)
    # the cap is reached inside the entity (c..e), so the cut waits for the next O word
    assert [p.tokens for p in pieces] == [list("abcdef"), ["g"]]
    assert readers.split_long_segment(TaggedSentence(list("abcd"), ["O"] * 4), 2) == [
        TaggedSentence(["a", "b"], ["O", "O"]),
        TaggedSentence(["c", "d"], ["O", "O"]),
    ]


def test_tsv_and_jsonl_examples(tmp_path):
    tsv = write(
        tmp_path,
        "pawsx.tsv",
        'id\tsentence1\tsentence2\tlabel\n1\tIl dit "oui".\tIl a dit "oui".\t1\n2\tA\tB\t0\n',
    )
    examples = readers.read_tsv_examples(tsv, "sentence1", "label", pair_column="sentence2")
    assert examples == [
        TextExample('Il dit "oui".', 'Il a dit "oui".', "1"),
        TextExample("A", "B", "0"),
    ]
    with pytest.raises(ValueError, match=r"pawsx\.tsv: no column\(s\) \['text'\]"):
        readers.read_tsv_examples(tsv, text_column="text")
    jsonl = write(
        tmp_path, "cls.jsonl", '{"text": "Super livre", "label": 1}\n\n{"text": "Nul", "label": 0}\n'
    )
    assert readers.read_jsonl_examples(jsonl) == [
        TextExample("Super livre", None, "1"),
        TextExample("Nul", None, "0"),
    ]
    bad = write(tmp_path, "bad.jsonl", '{"text": "ok", "label": 1}\n{"txt": "oops", "label": 0}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: KeyError"):
        readers.read_jsonl_examples(bad)


def test_load_hf_classification_maps_class_labels_to_names(monkeypatch):
    datasets = pytest.importorskip("datasets")
    table = datasets.Dataset.from_dict(
        {
            "premise": ["Il pleut.", "Il fait beau."],
            "hypothesis": ["Il fait sec.", "Le ciel est bleu."],
            "label": [2, 0],
        },
        features=datasets.Features(
            {
                "premise": datasets.Value("string"),
                "hypothesis": datasets.Value("string"),
                "label": datasets.ClassLabel(names=["entailment", "neutral", "contradiction"]),
            }
        ),
    )
    calls = []

    def fake_load_dataset(name, config, split):
        calls.append((name, config, split))
        return table

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    examples = readers.load_hf_task("xnli_fr", "validation")
    assert calls == [("xnli", "fr", "validation")]
    assert examples == [
        TextExample("Il pleut.", "Il fait sec.", "contradiction"),
        TextExample("Il fait beau.", "Le ciel est bleu.", "entailment"),
    ]
    assert set(readers.HF_TASKS) == {"flue_cls", "pawsx_fr", "xnli_fr"}


def test_label_map_and_unseen_labels_named_with_source():
    train = [TaggedSentence(["a", "b"], ["O", "B-PER"]), TaggedSentence(["c"], ["I-PER"])]
    label_map = readers.build_label_map(train)
    assert label_map == {"B-PER": 0, "I-PER": 1, "O": 2}
    readers.check_labels_known([TaggedSentence(["x"], ["O"])], label_map, "dev.conllu")
    test = [TaggedSentence(["x", "y", "z"], ["B-EVENT", "O", "B-EVENT"])]
    with pytest.raises(ValueError, match=r"test\.conllu: .*'B-EVENT' \(2x\)"):
        readers.check_labels_known(test, label_map, "test.conllu")
    cls_map = readers.build_label_map([TextExample("t", None, "pos"), TextExample("u", None, "neg")])
    with pytest.raises(ValueError, match=r"dev\.tsv: .*'neutral'"):
        readers.check_labels_known([TextExample("v", None, "neutral")], cls_map, "dev.tsv")


# ----------------------------------------------------------------------- real shared data


def test_real_wikineural(shared_data_dir):
    for split, expected_count in (("val", 12_600), ("test", 11_678)):
        path = shared_data_dir / "wikineural_fr" / f"{split}.conllu"
        sentences = readers.read_tagged(path)
        assert len(sentences) == expected_count
        tags = {tag for s in sentences for tag in s.tags}
        assert tags == NER_TAGS
        assert all(s.tokens and all(s.tokens) for s in sentences)
    assert sentences[-1].tokens[-1] == "."


def test_real_europeana_segments_without_cutting_entities(shared_data_dir):
    path = shared_data_dir / "europeana_fr_ner" / "enp_FR.bnf.bio"
    raw = readers.read_columns(path, token_column=0, tag_column=1)
    assert len(raw) == 1  # one unsegmented stream: this is why the reader splits it
    assert {t for t in raw[0].tags} == {"O", "I-PER", "I-LOC", "I-ORG"}  # IOB1: no B- at all
    sentences = readers.read_tagged(path)
    assert 5_000 < len(sentences) < 30_000
    assert sum(len(s.tokens) for s in sentences) == len(raw[0].tokens)
    assert {t for s in sentences for t in s.tags} <= NER_TAGS
    # an entity cut in two would add one: entity starts match those of the whole stream
    whole_stream_starts = sum(t.startswith("B-") for t in metrics.iob1_to_iob2(raw[0].tags))
    assert sum(t.startswith("B-") for s in sentences for t in s.tags) == whole_stream_starts
    assert not any(s.tags[0].startswith("I-") for s in sentences)
    assert np.median([len(s.tokens) for s in sentences]) < 40


def test_real_ud_treebanks(shared_data_dir):
    expected = {
        "ud_french_sequoia/fr_sequoia-ud-train.conllu": 2_231,
        "ud_french_sequoia/fr_sequoia-ud-test.conllu": 456,
        "ud_french_gsd/fr_gsd-ud-test.conllu": 416,
    }
    for relative, count in expected.items():
        sentences = readers.read_tagged(shared_data_dir / relative)
        assert len(sentences) == count, relative
        assert {t for s in sentences for t in s.tags} <= UPOS_TAGS, relative
    first = readers.read_conllu(shared_data_dir / "ud_french_sequoia/fr_sequoia-ud-test.conllu")[0]
    assert first.tokens[:3] == ["cela", "signifie", "que"]
    assert first.tags[:3] == ["PRON", "VERB", "SCONJ"]


# -------------------------------------------------------------------------------- metrics

# IOB1 by hand. Gold: PER(0-1), LOC(3), LOC(4) | ORG(1-2), PER(3) -> 5 entities.
GOLD_IOB1 = [["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "O"], ["O", "I-ORG", "I-ORG", "I-PER", "O"]]
# Pred: PER(0-1) ok, LOC(3-4) wrong | ORG(1) wrong, PER(3) ok -> 4 entities, 2 correct.
PRED_IOB1 = [["I-PER", "I-PER", "O", "I-LOC", "I-LOC", "O"], ["O", "I-ORG", "O", "I-PER", "O"]]


def test_iob1_to_iob2():
    assert [metrics.iob1_to_iob2(t) for t in GOLD_IOB1] == [
        ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "O"],
        ["O", "B-ORG", "I-ORG", "B-PER", "O"],
    ]
    assert metrics.iob1_to_iob2(["I-PER", "I-LOC", "I-LOC", "B-LOC", "I-LOC"]) == [
        "B-PER", "B-LOC", "I-LOC", "B-LOC", "I-LOC",
    ]  # fmt: skip
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    assert metrics.iob1_to_iob2(iob2) == iob2  # valid IOB2 is left as it is


def test_entity_scores_match_hand_count_and_seqeval():
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB1, IOB2

    precision, recall = 2 / 4, 2 / 5
    hand_f1 = 2 * precision * recall / (precision + recall)  # 4/9
    scores = metrics.entity_scores(GOLD_IOB1, PRED_IOB1, scheme="iob1")
    assert scores["precision"] == pytest.approx(precision)
    assert scores["recall"] == pytest.approx(recall)
    assert scores["f1"] == pytest.approx(hand_f1)
    # seqeval's own strict IOB1 reading of the raw tags is an independent reference
    assert scores["f1"] == pytest.approx(f1_score(GOLD_IOB1, PRED_IOB1, mode="strict", scheme=IOB1))
    gold2 = [metrics.iob1_to_iob2(t) for t in GOLD_IOB1]
    pred2 = [metrics.iob1_to_iob2(t) for t in PRED_IOB1]
    assert metrics.entity_scores(gold2, pred2)["f1"] == pytest.approx(
        f1_score(gold2, pred2, mode="strict", scheme=IOB2)
    )


def test_token_accuracy_and_shape_checks():
    assert metrics.token_accuracy([["A", "B"], ["C"]], [["A", "X"], ["C"]]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="sequence 0"):
        metrics.token_accuracy([["A", "B"]], [["A"]])


def test_accuracy_and_macro_f1():
    gold, pred = ["a", "a", "b", "c"], ["a", "b", "b", "a"]
    # per class F1 = 2TP/(2TP+FP+FN): a 2/4, b 2/3, c 0/1
    assert metrics.macro_f1(gold, pred) == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert metrics.accuracy(gold, pred) == pytest.approx(2 / 4)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    gold_ids, pred_ids = rng.integers(0, 5, 200).tolist(), rng.integers(0, 4, 200).tolist()
    assert metrics.macro_f1(gold_ids, pred_ids) == pytest.approx(
        sklearn_metrics.f1_score(gold_ids, pred_ids, average="macro")
    )


# ------------------------------------------------------------------------------ alignment

CORPUS = [
    "Marie Curie vit à Paris avec Pierre .",
    "Le chat dort sur le canapé rouge .",
    "La Société Générale ouvre une agence à Lyon .",
    "Emmanuel parle de la Bretagne et de Marseille .",
    "Les manuscrits non insérés ne sont pas rendus .",
]


def make_tiny_tokenizer():
    """A CamemBERT-like fast tokenizer (Unigram + Metaspace, RoBERTa specials), trained in ms."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=80, special_tokens=["<s>", "<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    backend.train_from_iterator(CORPUS * 5, trainer)
    backend.add_special_tokens(["<mask>"])
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>",
        pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
    )  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    tok = make_tiny_tokenizer()
    assert [tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert tok.mask_token_id == len(tok) - 1
    return tok


def test_split_words_tokenize_like_running_text(tokenizer):
    words = CORPUS[0].split()
    split = tokenizer(words, is_split_into_words=True)["input_ids"]
    assert split == tokenizer(CORPUS[0])["input_ids"]
    assert tokenizer.convert_ids_to_tokens(split[1]).startswith("▁")


def scored_words(encoding: alignment.TaggedEncoding) -> list[tuple[int, int]]:
    """(sentence, word) of every scored sub-token."""
    rows, positions = np.nonzero(encoding.scored)
    return [(int(encoding.sentence_ids[r]), int(encoding.word_ids[r, p])) for r, p in zip(rows, positions, strict=True)]


def reference_label_positions(tokenizer, words, label_piece):
    """Where each word's label sits in `<s> pieces </s>`, from tokenising the words one by one."""
    positions, offset = [], 1
    for word in words:
        pieces = tokenizer.convert_ids_to_tokens(tokenizer(word, add_special_tokens=False)["input_ids"])
        content = [i for i, piece in enumerate(pieces) if piece != "▁"]
        positions.append(offset + (content[0] if label_piece == "first_content" and content else 0))
        offset += len(pieces)
    return positions


@pytest.mark.parametrize("label_piece", alignment.LABEL_PIECES)
def test_labels_on_the_chosen_piece_and_round_trip(tokenizer, label_piece):
    sentences = [
        TaggedSentence("Marie Curie vit à Paris".split(), ["B-PER", "I-PER", "O", "O", "B-LOC"]),
        TaggedSentence("Zanzibar dort".split(), ["B-LOC", "O"]),
    ]
    label_map = readers.build_label_map(sentences)
    encoding = alignment.encode_tagged(sentences, tokenizer, label_map, max_length=24, label_piece=label_piece)
    pieces = [[tokenizer(w, add_special_tokens=False)["input_ids"] for w in s.tokens] for s in sentences]
    width = max(sum(map(len, p)) for p in pieces) + 2  # padded to the longest row only
    for array in (encoding.input_ids, encoding.attention_mask, encoding.labels, encoding.word_ids):
        assert array.shape == (2, width) and array.dtype == np.int32
    assert encoding.unscored_words == 0 and encoding.sentence_ids.tolist() == [0, 1]
    for row, sentence in enumerate(sentences):
        expected_ids = [0] + [i for p in pieces[row] for i in p] + [2]
        expected_labels = [-100] * len(expected_ids)
        for position, tag in zip(reference_label_positions(tokenizer, sentence.tokens, label_piece), sentence.tags,
                                 strict=True):
            expected_labels[position] = label_map[tag]
        padding = width - len(expected_ids)
        assert encoding.input_ids[row].tolist() == expected_ids + [1] * padding
        assert encoding.attention_mask[row].tolist() == [1] * len(expected_ids) + [0] * padding
        assert encoding.labels[row].tolist() == expected_labels + [-100] * padding
    assert len(tokenizer("Zanzibar", add_special_tokens=False)["input_ids"]) > 1  # multi-piece word
    # inverse: gold ids on the labelled sub-tokens, noise elsewhere, decode back to the tags
    noise = np.random.default_rng(0).integers(0, len(label_map), encoding.labels.shape)
    predictions = np.where(encoding.labels >= 0, encoding.labels, noise)
    id_to_label = {i: label for label, i in label_map.items()}
    assert alignment.decode_word_predictions(predictions, encoding, id_to_label) == [s.tags for s in sentences]
    assert set(encoding.batch()) == {"input_ids", "attention_mask", "labels"}


def test_label_positions_on_a_hand_made_case(tokenizer):
    # "Marie Curie vit": ▁Mar ie | ▁ C ur ie | ▁ v it — two words start with a bare "▁".
    sentence = TaggedSentence("Marie Curie vit".split(), ["B-PER", "I-PER", "O"])
    words = [tokenizer.convert_ids_to_tokens(tokenizer(w, add_special_tokens=False)["input_ids"])
             for w in sentence.tokens]
    assert words == [["▁Mar", "ie"], ["▁", "C", "ur", "ie"], ["▁", "v", "it"]]
    label_map = readers.build_label_map([sentence])
    expected = {"first": [1, 3, 7], "first_content": [1, 4, 8]}  # after <s>
    for label_piece, positions in expected.items():
        encoding = alignment.encode_tagged([sentence], tokenizer, label_map, 16, label_piece)
        assert np.flatnonzero(encoding.scored[0]).tolist() == positions
    # The default is the choice that tagged better when measured (alignment.DEFAULT_LABEL_PIECE).
    encoding = alignment.encode_tagged([sentence], tokenizer, label_map, 16)
    assert np.flatnonzero(encoding.scored[0]).tolist() == expected["first"]
    # A word made of a bare "▁" only keeps it; one without sub-tokens is marked -1.
    bare = 7
    ids, word_ids = [bare, 10, 11, bare, bare, 12], [0, 0, 0, 1, 2, 2]
    assert alignment.label_piece_indices(ids, word_ids, 4, "first", bare).tolist() == [0, 3, 4, -1]
    assert alignment.label_piece_indices(ids, word_ids, 4, "first_content", bare).tolist() == [1, 3, 5, -1]
    with pytest.raises(ValueError, match="label_piece='last'"):
        alignment.label_piece_indices(ids, word_ids, 4, "last", bare)


def test_a_long_sentence_becomes_windows_and_every_word_is_scored_once(tokenizer):
    words = " ".join(CORPUS).split()
    long = TaggedSentence(words, [f"T{i % 5}" for i in range(len(words))])  # the tags tell neighbours apart
    short = TaggedSentence(CORPUS[1].split(), ["T0"] * len(CORPUS[1].split()))
    label_map = readers.build_label_map([long, short])
    max_length = 32
    width = max_length - 2  # sub-tokens between <s> and </s>
    pieces = tokenizer(long.tokens, is_split_into_words=True, add_special_tokens=False)["input_ids"]
    assert len(pieces) > 3 * max_length
    encoding = alignment.encode_tagged([short, long, short], tokenizer, label_map, max_length)
    starts = alignment.window_starts(len(pieces), width)
    assert encoding.sentence_ids.tolist() == [0] + [1] * len(starts) + [2]
    assert encoding.input_ids.shape[1] == max_length
    for number, start in enumerate(starts):  # each window: <s> + its slice of the sentence's pieces + </s>
        row = encoding.input_ids[1 + number]
        assert row[encoding.attention_mask[1 + number] == 1].tolist() == [0, *pieces[start : start + width], 2]
    assert starts[0] == 0 and starts[-1] == len(pieces) - width
    assert [b - a for a, b in zip(starts[:-2], starts[1:-1], strict=True)] == [width // 2] * (len(starts) - 2)
    # Every word of every sentence is scored exactly once, in the window where it has the most context.
    assert sorted(scored_words(encoding)) == [(s, w) for s, n in enumerate(encoding.num_words) for w in range(n)]
    for row, position in zip(*np.nonzero(encoding.scored[1 : 1 + len(starts)]), strict=True):
        index = position - 1 + starts[row]  # the piece's index in the whole sentence
        context = [min(index - s, s + width - 1 - index) for s in starts if s <= index < s + width]
        assert min(position - 1, width - position) == max(context)
    noise = np.random.default_rng(0).integers(0, len(label_map), encoding.labels.shape)
    predictions = np.where(encoding.labels >= 0, encoding.labels, noise)
    id_to_label = {i: label for label, i in label_map.items()}
    decoded = alignment.decode_word_predictions(predictions, encoding, id_to_label)
    assert decoded == [short.tags, long.tags, short.tags]
    assert encoding.piece_word_ids.shape == (3, len(pieces))


def test_real_sequoia_words_are_labelled_once_each_never_on_a_bare_word_start(shared_data_dir, french_tokenizer_dir):
    tokenizer = load_tokenizer(french_tokenizer_dir)
    test = readers.read_tagged(shared_data_dir / "ud_french_sequoia" / "fr_sequoia-ud-test.conllu")
    label_map = readers.build_label_map(test)
    max_length = 128  # the test models' positions: some sentences are longer
    encoded = tokenizer([list(s.tokens) for s in test], is_split_into_words=True, add_special_tokens=False)
    word_pieces = []  # word_pieces[sentence][word]: the word's piece ids, from an independent pass
    for index, sentence in enumerate(test):
        pieces = [[] for _ in sentence.tokens]
        for piece, word in zip(encoded["input_ids"][index], encoded.word_ids(index), strict=True):
            pieces[word].append(piece)
        word_pieces.append(pieces)
    assert max(len(ids) for ids in encoded["input_ids"]) + 2 > max_length
    bare = tokenizer.get_vocab()["▁"]
    words = sum(len(s.tokens) for s in test)
    labelled_bare = {}
    for label_piece in alignment.LABEL_PIECES:
        encoding = alignment.encode_tagged(test, tokenizer, label_map, max_length, label_piece)
        assert encoding.input_ids.shape[1] == max_length and encoding.unscored_words == 0
        rows, positions = np.nonzero(encoding.scored)
        assert len(rows) == len(set(scored_words(encoding))) == words  # every gold word of the file, exactly once
        labelled_bare[label_piece] = 0
        for row, position in zip(rows, positions, strict=True):
            pieces = word_pieces[encoding.sentence_ids[row]][encoding.word_ids[row, position]]
            content = [p for p in pieces if p != bare] or pieces
            expected = pieces[0] if label_piece == "first" else content[0]
            assert encoding.input_ids[row, position] == expected
            labelled_bare[label_piece] += int(expected == bare and content != pieces)
    assert labelled_bare["first_content"] == 0
    assert labelled_bare["first"] > 0.1 * words  # the first piece is a bare "▁" for many words


def test_encode_texts_single_and_pair(tokenizer):
    label_map = {"0": 0, "1": 1}
    pairs = [TextExample("Le chat dort .", "Le chat rouge dort .", "1"), TextExample("Paris", "Lyon", "0")]
    batch = alignment.encode_texts(pairs, tokenizer, label_map, max_length=32)
    reference = tokenizer(pairs[0].text, pairs[0].text_pair)["input_ids"]
    assert batch["input_ids"][0, : len(reference)].tolist() == reference
    assert reference.count(2) == 3 and reference[0] == 0  # <s> A </s></s> B </s>
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == np.int32
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, 32)
    single = alignment.encode_texts([TextExample(CORPUS[1], None, "0")], tokenizer, label_map, max_length=6)
    assert single["input_ids"][0].tolist()[0] == 0 and single["input_ids"][0, -1] == 2
    assert single["attention_mask"].sum() == 6
    with pytest.raises(ValueError, match="text_pair"):
        alignment.encode_texts([pairs[0], TextExample("x", None, "0")], tokenizer, label_map, 8)
