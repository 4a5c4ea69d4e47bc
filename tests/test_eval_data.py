"""Evaluation data: readers (small written files and the real shared data), metrics, alignment."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

from jaxdistil.evaluate import alignment, metrics, readers
from jaxdistil.evaluate.readers import TaggedSentence, TextExample

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


def test_labels_on_first_subtoken_and_round_trip(tokenizer):
    sentences = [
        TaggedSentence("Marie Curie vit à Paris".split(), ["B-PER", "I-PER", "O", "O", "B-LOC"]),
        TaggedSentence("Zanzibar dort".split(), ["B-LOC", "O"]),
    ]
    label_map = readers.build_label_map(sentences)
    max_length = 24
    encoding = alignment.encode_tagged(sentences, tokenizer, label_map, max_length)
    for array in (encoding.input_ids, encoding.attention_mask, encoding.labels, encoding.word_ids):
        assert array.shape == (2, max_length) and array.dtype == np.int32
    assert encoding.truncated_words == 0
    for row, sentence in enumerate(sentences):
        # the reference: tokenize word by word, without specials
        pieces = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in sentence.tokens]
        expected_ids = [0] + [i for p in pieces for i in p] + [2]
        expected_labels = [-100]
        for word_pieces, tag in zip(pieces, sentence.tags, strict=True):
            expected_labels += [label_map[tag]] + [-100] * (len(word_pieces) - 1)
        expected_labels += [-100]
        padding = max_length - len(expected_ids)
        assert encoding.input_ids[row].tolist() == expected_ids + [1] * padding
        assert encoding.attention_mask[row].tolist() == [1] * len(expected_ids) + [0] * padding
        assert encoding.labels[row].tolist() == expected_labels + [-100] * padding
    assert len(tokenizer("Zanzibar", add_special_tokens=False)["input_ids"]) > 1  # multi-piece word
    # inverse: gold ids on first sub-tokens, noise elsewhere, decode back to the tags
    noise = np.random.default_rng(0).integers(0, len(label_map), encoding.labels.shape)
    predictions = np.where(encoding.labels >= 0, encoding.labels, noise)
    id_to_label = {i: label for label, i in label_map.items()}
    decoded = alignment.decode_word_predictions(
        predictions, encoding.word_ids, encoding.num_words, id_to_label
    )
    assert decoded == [s.tags for s in sentences]
    assert set(encoding.batch()) == {"input_ids", "attention_mask", "labels"}


def test_truncation_counts_lost_words_and_decoding_fills_them(tokenizer):
    sentence = TaggedSentence(CORPUS[2].split(), ["O", "B-ORG", "I-ORG", "O", "O", "O", "O", "B-LOC", "O"])
    label_map = readers.build_label_map([sentence])
    max_length = 10  # 8 slots for sub-tokens between <s> and </s>
    pieces = [len(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in sentence.tokens]
    starts = np.cumsum([0] + pieces[:-1])
    expected_kept = int(np.sum(starts < max_length - 2))
    assert expected_kept < len(sentence.tokens)
    encoding = alignment.encode_tagged([sentence], tokenizer, label_map, max_length)
    assert encoding.truncated_words == len(sentence.tokens) - expected_kept
    assert encoding.input_ids[0, -1] == 2  # </s> survives truncation
    assert int(np.sum(encoding.labels >= 0)) == expected_kept
    decoded = alignment.decode_word_predictions(
        np.where(encoding.labels >= 0, encoding.labels, 0), encoding.word_ids, encoding.num_words,
        {i: label for label, i in label_map.items()}, fill_label="O",
    )  # fmt: skip
    assert decoded == [sentence.tags[:expected_kept] + ["O"] * (len(sentence.tokens) - expected_kept)]


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
