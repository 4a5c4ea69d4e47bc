"""HF ⇄ Flax conversion: lossless round trips, exports HF loads cleanly, clear errors."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
import sentencepiece as spm
import torch
from helpers import make_tiny_tokenizer
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForMaskedLM, CamembertConfig, CamembertForMaskedLM, pipeline

from jaxdistil.checkpoint import load_params_checkpoint, save_params_checkpoint
from jaxdistil.config import ModelConfig
from jaxdistil.convert import CheckpointError, check_tokenizer, load_hf, save_hf
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.tokenizer import load_tokenizer

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SMALL = dict(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=128, max_position_embeddings=66, pad_token_id=1, bos_token_id=0,
             eos_token_id=2)


def random_hf_model(**overrides) -> CamembertForMaskedLM:
    torch.manual_seed(0)
    model = CamembertForMaskedLM(CamembertConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_round_trip_is_bit_identical(tmp_path):
    model = random_hf_model()
    model.save_pretrained(tmp_path / "hf")
    config, params = load_hf(tmp_path / "hf")
    save_hf(config, params, tmp_path / "back")
    before, after = load_file(str(tmp_path / "hf" / "model.safetensors")), load_file(
        str(tmp_path / "back" / "model.safetensors"))
    assert sorted(before) == sorted(after)
    for key in before:
        assert before[key].dtype == after[key].dtype and np.array_equal(before[key], after[key]), key


def test_round_trip_through_params_checkpoint(tmp_path):
    config, params = load_hf(random_hf_model())
    save_params_checkpoint(tmp_path / "ckpt", config, params)
    config2, params2 = load_params_checkpoint(tmp_path / "ckpt")
    assert config2 == config
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), params, params2)


def test_export_loads_in_hf_and_fill_mask_agrees(tmp_path, french_tokenizer_dir):
    tokenizer = load_tokenizer(french_tokenizer_dir)
    config = ModelConfig(**{**SMALL, "vocab_size": len(tokenizer)})
    params = init_params(MaskedLM(config), jax.random.key(1))
    params = jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.key(2), p.shape), params)
    save_hf(config, params, tmp_path / "export", tokenizer)

    _, info = AutoModelForMaskedLM.from_pretrained(tmp_path / "export", output_loading_info=True)
    assert not any(info.values()), info  # no missing/unexpected/mismatched keys

    sentence = f"Le camembert est {tokenizer.mask_token} :)"
    fill = pipeline("fill-mask", model=str(tmp_path / "export"), top_k=5)
    hf_top5 = [r["token"] for r in fill(sentence)]
    enc = tokenizer(sentence, return_tensors="np")
    logits = MaskedLM(config).apply({"params": params}, enc["input_ids"], enc["attention_mask"]).logits
    position = int(np.argmax(enc["input_ids"][0] == tokenizer.mask_token_id))
    ours = list(np.argsort(-np.asarray(logits[0, position]))[:5])
    assert hf_top5 == ours


def test_missing_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such checkpoint directory"):
        load_hf(tmp_path / "nowhere")


def test_directory_without_weights(tmp_path):
    random_hf_model().config.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        load_hf(tmp_path)


def _corrupt(tmp_path, edit):
    random_hf_model().save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    edit(state)
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})


def test_wrong_shaped_tensor_is_named(tmp_path):
    def edit(state):
        state["roberta.encoder.layer.1.intermediate.dense.weight"] = np.zeros((100, 64), np.float32)
    _corrupt(tmp_path, edit)
    with pytest.raises(CheckpointError, match=r"wrong shapes.*layer\.1\.intermediate\.dense\.weight"):
        load_hf(tmp_path)


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    def edit(state):
        del state["roberta.encoder.layer.0.attention.self.key.bias"]
        state["roberta.encoder.layer.7.output.dense.weight"] = np.zeros((64, 64), np.float32)
    _corrupt(tmp_path, edit)
    with pytest.raises(CheckpointError) as err:
        load_hf(tmp_path)
    assert "missing tensors ['roberta.encoder.layer.0.attention.self.key.bias']" in str(err.value)
    assert "unexpected tensors ['roberta.encoder.layer.7.output.dense.weight']" in str(err.value)


def test_unreadable_weights(tmp_path):
    random_hf_model().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="could not read the weights"):
        load_hf(tmp_path)


def test_config_of_another_architecture(tmp_path):
    random_hf_model().save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data.update(model_type="bert", architectures=["BertForMaskedLM"])
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="model_type='bert'.*supports only RoBERTa-family"):
        load_hf(tmp_path)


def test_tokenizer_size_mismatch(french_tokenizer_dir, tmp_path):
    tokenizer = load_tokenizer(french_tokenizer_dir)
    config = ModelConfig(**{**SMALL, "vocab_size": len(tokenizer) + 5})
    with pytest.raises(ValueError, match=r"tokenizer has 1000 tokens but the model's vocab_size is 1005"):
        check_tokenizer(tokenizer, config)
    params = init_params(MaskedLM(config), jax.random.key(0))
    with pytest.raises(ValueError, match="do not belong together"):
        save_hf(config, params, tmp_path / "out", tokenizer)
    assert not (tmp_path / "out" / "model.safetensors").exists()  # refused before writing


def test_tokenizer_is_camembert_style(french_tokenizer_dir):
    tokenizer = load_tokenizer(french_tokenizer_dir)
    assert len(tokenizer) == 1000
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id,
            tokenizer.mask_token_id) == (0, 1, 2, 3, 999)
    ids = tokenizer("Il était une fois.")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id == 0 and ids[-1] == tokenizer.sep_token_id == 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == "Il était une fois."


def run_cli(script, *args):
    return subprocess.run([sys.executable, str(REPO / "conversion" / script), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_conversion_clis_round_trip(tmp_path, french_tokenizer_dir):
    tokenizer = load_tokenizer(french_tokenizer_dir)
    model = random_hf_model(vocab_size=len(tokenizer))
    model.save_pretrained(tmp_path / "hf")
    tokenizer.save_pretrained(tmp_path / "hf")
    done = run_cli("from_pytorch.py", "--model", tmp_path / "hf", "--out", tmp_path / "ckpt")
    assert done.returncode == 0, done.stderr
    assert "tokenizer: yes" in done.stdout
    done = run_cli("to_pytorch.py", "--checkpoint", tmp_path / "ckpt", "--out", tmp_path / "hf2")
    assert done.returncode == 0, done.stderr
    a, b = load_file(str(tmp_path / "hf" / "model.safetensors")), load_file(str(tmp_path / "hf2" / "model.safetensors"))
    assert all(np.array_equal(a[k], b[k]) for k in a) and sorted(a) == sorted(b)
    assert pipeline("fill-mask", model=str(tmp_path / "hf2"))(f"Le {tokenizer.mask_token}.")


def test_conversion_cli_bad_input(tmp_path):
    done = run_cli("from_pytorch.py", "--model", tmp_path / "missing", "--out", tmp_path / "x")
    assert done.returncode != 0 and "no such checkpoint directory" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_cli("to_pytorch.py", "--checkpoint", tmp_path / "missing", "--out", tmp_path / "y")
    assert done.returncode != 0 and "no checkpoint at" in done.stderr
    assert run_cli("to_pytorch.py", "--help").returncode == 0


# camembert-base's config.json as the Hub serves it (huggingface.co/camembert-base, config.json).
# `output_past` is a transformers-2 field no model class reads any more, so it is not expected back.
CAMEMBERT_BASE_CONFIG = {
    "architectures": ["CamembertForMaskedLM"], "attention_probs_dropout_prob": 0.1, "bos_token_id": 5,
    "eos_token_id": 6, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 514,
    "model_type": "camembert", "num_attention_heads": 12, "num_hidden_layers": 12, "output_past": True,
    "pad_token_id": 1, "type_vocab_size": 1, "vocab_size": 32005,
}
LEGACY_FIELDS = {"output_past"}


def test_exported_config_has_camembert_base_fields_and_the_tokenizer_ids(tmp_path, french_tokenizer_dir):
    """A student's config comes from its teacher's (here camembert-base's bos 5 / eos 6), but its ids
    must be those of the tokenizer it is exported with; tie_word_embeddings is written explicitly."""
    tokenizer = load_tokenizer(french_tokenizer_dir)
    config = ModelConfig(**{**SMALL, "vocab_size": len(tokenizer), "bos_token_id": 5, "eos_token_id": 6})
    save_hf(config, init_params(MaskedLM(config), jax.random.key(0)), tmp_path / "export", tokenizer)
    written = json.loads((tmp_path / "export" / "config.json").read_text(encoding="utf-8"))
    assert set(CAMEMBERT_BASE_CONFIG) - LEGACY_FIELDS <= set(written)
    assert {k: written[k] for k in ("architectures", "model_type", "hidden_act", "type_vocab_size")} == {
        k: CAMEMBERT_BASE_CONFIG[k] for k in ("architectures", "model_type", "hidden_act", "type_vocab_size")}
    assert written["tie_word_embeddings"] is True
    exported = load_tokenizer(tmp_path / "export")
    assert (written["bos_token_id"], written["eos_token_id"], written["pad_token_id"]) == (
        exported.bos_token_id, exported.eos_token_id, exported.pad_token_id) == (0, 2, 1)


def test_sentencepiece_model_is_exported_when_the_source_has_one(tmp_path, french_tokenizer_dir, french_lines):
    with_spm = load_tokenizer(french_tokenizer_dir)
    assert (french_tokenizer_dir / "sentencepiece.bpe.model").is_file()
    config = ModelConfig(**{**SMALL, "vocab_size": len(with_spm)})
    params = init_params(MaskedLM(config), jax.random.key(0))
    save_hf(config, params, tmp_path / "a", with_spm)
    processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "a" / "sentencepiece.bpe.model"))
    text = french_lines[:200]
    assert processor.encode(text) == load_tokenizer(tmp_path / "a")(text, add_special_tokens=False)["input_ids"]
    without = make_tiny_tokenizer(french_lines[:300], vocab_size=len(with_spm))
    save_hf(config, params, tmp_path / "b", without)
    assert not (tmp_path / "b" / "sentencepiece.bpe.model").exists()
