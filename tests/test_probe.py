"""Frozen-encoder probes: the softmax regression recovers a linear labelling, the word features are
the hidden states at each word's label piece (one per gold word, long sentences included), and
scripts/probe.py runs end to end on a tiny random model and the real files."""

import json
import runpy

import jax
import numpy as np
import pytest

from jaxdistil.config import ModelConfig
from jaxdistil.convert import save_hf
from jaxdistil.evaluate import alignment, probe, readers
from jaxdistil.evaluate.readers import TaggedSentence
from jaxdistil.modeling import MaskedLM, RobertaModel, init_params
from jaxdistil.tokenizer import load_tokenizer

TOLERANCE = 1e-5  # never raised
POSITIONS = 34  # 32 sub-tokens: many Sequoia sentences need windows


def _linear_data(seed, rows, dims=12, classes=4, margin=0.5):
    """Gaussian features labelled by the argmax of a fixed linear map, near-ties dropped."""
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(99).normal(size=(dims, classes))
    x = rng.normal(size=(rows * 2, dims)).astype(np.float32)
    logits = x @ weights
    top2 = np.sort(logits, axis=1)[:, -2:]
    keep = (top2[:, 1] - top2[:, 0]) > margin
    return x[keep][:rows], logits.argmax(axis=1)[keep][:rows].astype(np.int32)


def test_probe_recovers_a_linear_labelling():
    train_x, train_y = _linear_data(0, 3000)
    dev_x, dev_y = _linear_data(1, 500)
    test_x, test_y = _linear_data(2, 500)
    config = probe.ProbeConfig(steps=300, eval_every=100, batch_size=256, learning_rate=0.05, weight_decays=(0.0,))
    params, record = probe.fit_probe(train_x, train_y, dev_x, lambda p: float(np.mean(p == dev_y)), 4, config)
    assert float(np.mean(np.asarray(probe.predict(params, test_x)) == test_y)) > 0.98
    assert [point["step"] for point in record["curves"]["0.0"]] == [100, 200, 300]
    # The same probe on shuffled labels stays near chance (a quarter): it does not memorise.
    shuffled = np.random.default_rng(3).permutation(train_y)
    params, _ = probe.fit_probe(train_x, shuffled, dev_x, lambda p: float(np.mean(p == dev_y)), 4, config)
    assert float(np.mean(np.asarray(probe.predict(params, test_x)) == test_y)) < 0.6


def test_probe_settings_are_checked():
    x, y = _linear_data(0, 50)
    with pytest.raises(ValueError, match="eval_every"):
        probe.fit_probe(x, y, x, lambda p: 0.0, 4, probe.ProbeConfig(steps=5, eval_every=10))


def test_default_layers_are_a_middle_one_and_the_last():
    assert probe.default_layers(ModelConfig(num_hidden_layers=12)) == (6, 12)
    assert probe.default_layers(ModelConfig(num_hidden_layers=1)) == (1,)


@pytest.fixture(scope="module")
def tiny(french_tokenizer_dir, shared_data_dir, tmp_path_factory):
    tokenizer = load_tokenizer(french_tokenizer_dir)
    config = ModelConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=POSITIONS)
    params = jax.device_get(init_params(MaskedLM(config), jax.random.key(0)))
    model_dir = save_hf(config, params, tmp_path_factory.mktemp("probe") / "model", tokenizer)
    sequoia = readers.read_conllu(shared_data_dir / "ud_french_sequoia" / "fr_sequoia-ud-train.conllu")
    return config, params, tokenizer, model_dir, sequoia


@pytest.mark.parametrize("label_piece", alignment.LABEL_PIECES)
def test_features_are_the_hidden_states_at_each_label_piece(tiny, label_piece):
    config, params, tokenizer, _, sequoia = tiny
    sentences = sequoia[:40]
    label_map = readers.build_label_map(sentences)
    words = probe.extract_word_features(config, params, tokenizer, sentences, label_map, (1, 2), batch_size=8,
                                        label_piece=label_piece)
    gold_words = sum(len(s.tokens) for s in sentences)
    assert words.labels.shape == (gold_words,) and words.features[2].shape == (gold_words, config.hidden_size)
    assert words.labels.tolist() == [label_map[t] for s in sentences for t in s.tags]
    assert words.windowed_sentences > 0  # some of the 40 are longer than 32 sub-tokens
    # A short sentence alone, unpadded, through the model: its words' rows are the states at the label piece.
    bare_id = tokenizer.get_vocab().get(alignment.WORD_START)
    start = 0
    for sentence in sentences:
        encoded = tokenizer(sentence.tokens, is_split_into_words=True)
        if len(encoded["input_ids"]) <= config.max_sequence_length:
            break
        start += len(sentence.tokens)
    inner = encoded["input_ids"][1:-1]
    word_ids = [w for w in encoded.word_ids() if w is not None]
    pieces = alignment.label_piece_indices(inner, word_ids, len(sentence.tokens), label_piece, bare_id) + 1
    choices = {c: alignment.label_piece_indices(inner, word_ids, len(sentence.tokens), c, bare_id).tolist()
               for c in alignment.LABEL_PIECES}
    assert len({tuple(v) for v in choices.values()}) == 2, "the sentence tells the two label pieces apart"
    states = RobertaModel(config).apply({"params": params["roberta"]}, np.array([encoded["input_ids"]])).hidden_states
    for layer in (1, 2):
        expected = np.asarray(states[layer])[0, pieces]
        np.testing.assert_allclose(words.features[layer][start : start + len(sentence.tokens)], expected,
                                   atol=TOLERANCE, rtol=TOLERANCE)


def test_a_layer_the_model_lacks_is_refused(tiny):
    config, params, tokenizer, _, sequoia = tiny
    with pytest.raises(ValueError, match=r"layer\(s\) \[3\] outside 0..2"):
        probe.extract_word_features(config, params, tokenizer, sequoia[:2], {"X": 0}, (3,))


def test_probe_cli_runs_end_to_end(tiny, tmp_path, capsys):
    _, _, _, model_dir, _ = tiny
    ner_file = tmp_path / "ner.conllu"
    sentences = [
        TaggedSentence(["Victor", "Hugo", "vit", "à", "Paris", "."], ["B-PER", "I-PER", "O", "O", "B-LOC", "O"]),
        TaggedSentence(["Lyon", "est", "loin", "."], ["B-LOC", "O", "O", "O"]),
    ] * 6
    blocks = ["".join(f"{i}\t{w}\t{t}\n" for i, (w, t) in enumerate(zip(s.tokens, s.tags, strict=True)))
              for s in sentences]
    ner_file.write_text("\n".join(blocks), encoding="utf-8")
    tool = runpy.run_path("scripts/probe.py")
    status = tool["main"]([
        "--model", str(model_dir), "--out", str(tmp_path / "out"), "--max-train-sentences", "20",
        "--max-test-sentences", "10", "--steps", "20", "--eval-every", "10", "--weight-decays", "0", "0.1",
        "--ner-train", str(ner_file), "--ner-test", str(ner_file),
    ])
    assert status == 0
    record = json.loads((tmp_path / "out" / "probe.json").read_text())
    results = {(r["task"], r["layer"]): r for r in record["results"]}
    assert set(results) == {("pos", 1), ("pos", 2), ("ner", 1), ("ner", 2)}
    pos = results[("pos", 2)]
    for name, scores in pos["tests"].items():
        gold = readers.read_conllu(name)[:10]
        assert scores["words"] == pos["words"][name] == sum(len(s.tokens) for s in gold)
        assert 0.0 <= scores["accuracy"] <= 1.0
    assert pos["best"]["weight_decay"] in (0.0, 0.1) and pos["best"]["step"] in (10, 20)
    ner = results[("ner", 1)]
    assert {"f1", "subword_f1"} <= set(ner["tests"][str(ner_file)])
    assert ner["baseline"][str(ner_file)]["f1"] == 1.0  # the lexicon has seen every test word with its tag
    table = capsys.readouterr().out
    assert "fr_gsd-ud-test.conllu" in table and "baseline" in table
