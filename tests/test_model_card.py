"""Every export writes a model card that the Hub's parser reads; the push uploads one folder or nothing.

A random tiny masked LM (a params checkpoint with the French test tokenizer) goes through
conversion/to_pytorch.py; the Hub is never contacted (tests run with HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import pathlib
import runpy

import huggingface_hub
import jax
import pytest
import yaml
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from jaxdistil import model_card
from jaxdistil.checkpoint import save_params_checkpoint
from jaxdistil.config import ModelConfig
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.run_config import base
from jaxdistil.tokenizer import load_tokenizer

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=66)
SUITE = {
    "protocol": "Fine-tuning: lr 5e-06, batch 8.",
    "results": [
        {"task": "wikiner_fr", "metric": "subword_f1", "metric_name": "sub-word token F1 (card)",
         "dataset": "Jean-Baptiste/wikiner_fr", "task_type": "token-classification",
         "teacher": 0.98, "student": 0.97, "retained_pct": 0.97 / 0.98 * 100},
        {"task": "xnli_fr", "metric": "accuracy", "metric_name": "accuracy", "dataset": "facebook/xnli",
         "dataset_config": "fr", "task_type": "text-classification",
         "teacher": 0.81, "student": 0.77, "retained_pct": 77 / 0.81},
    ],
    "inference": {"device": "cpu", "batch_size": 1, "teacher_ms": 20.0, "student_ms": 10.0, "speedup": 2.0},
}


@pytest.fixture(scope="module")
def params_checkpoint(french_tokenizer_dir, tmp_path_factory) -> pathlib.Path:
    tokenizer = load_tokenizer(french_tokenizer_dir)
    config = ModelConfig(vocab_size=len(tokenizer), **TINY)
    params = jax.device_get(init_params(MaskedLM(config), jax.random.key(0)))
    return save_params_checkpoint(tmp_path_factory.mktemp("ckpt") / "model", config, params, tokenizer)


@pytest.fixture(scope="module")
def results_file(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("suite") / "suite.json"
    path.write_text(json.dumps(SUITE), encoding="utf-8")
    return path


def to_pytorch(*argv: str) -> int:
    return runpy.run_path(str(REPO_ROOT / "conversion" / "to_pytorch.py"))["main"](list(argv))


def test_recipe_is_read_from_the_workdir(tmp_path):
    config = base()
    config.teacher.source = "camembert-base"
    config.student.layer_map = (0, 2, 4, 7, 9, 11)
    (tmp_path / "run_config.json").write_text(config.to_json_best_effort(), encoding="utf-8")
    (tmp_path / "student_config.json").write_text(json.dumps({"num_hidden_layers": 6}), encoding="utf-8")
    rows = [{"step": 10, "data/tokens": 1000.0}, {"step": 30, "data/tokens": 2000.0, "perf/tokens_per_s": 1234.0}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    recipe = model_card.read_recipe(tmp_path)
    assert recipe["tokens_seen"] == 10 * 1000 + 20 * 2000
    assert (recipe["steps"], recipe["layer_map"], recipe["student_layers"]) == (30, [0, 2, 4, 7, 9, 11], 6)
    assert (recipe["alpha_distil"], recipe["alpha_cosine"], recipe["alpha_mlm"]) == (0.5, 0.3, 0.2)
    text = model_card.render_card("distilcamembert-base", recipe, SUITE, repo_id="me/distilcamembert-base")
    assert "teacher's layers 0, 2, 4, 7, 9, 11" in text and "tokens seen: 50,000" in text
    assert "throughput: 1,234 tokens/s" in text
    assert 'pipeline("fill-mask", model="me/distilcamembert-base")' in text
    assert ModelCard(text).data.base_model is None  # "camembert-base" is not an owner/name id


def test_export_writes_a_card_the_hub_parses_and_the_dir_loads(params_checkpoint, results_file, tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    out = tmp_path / "distilcamembert-tiny"
    assert to_pytorch("--checkpoint", str(params_checkpoint), "--out", str(out), "--results", str(results_file)) == 0
    card = ModelCard.load(out / "README.md")
    metadata = yaml.safe_load((out / "README.md").read_text(encoding="utf-8").split("---")[1])
    ModelCardData(**metadata)  # the metadata round-trips through huggingface_hub's own schema
    assert (card.data.language, card.data.license, card.data.pipeline_tag) == ("fr", "mit", "fill-mask")
    assert set(card.data.datasets) == {"Jean-Baptiste/wikiner_fr", "facebook/xnli"}
    name, results = model_index_to_eval_results(metadata["model-index"])
    assert name == "distilcamembert-tiny"
    assert [(r.dataset_type, r.dataset_config, r.metric_type, r.metric_value) for r in results] == [
        ("Jean-Baptiste/wikiner_fr", None, "subword_f1", 0.97), ("facebook/xnli", "fr", "accuracy", 0.77)]
    assert "Delestre" in card.text and "Sanh" in card.text and "| xnli_fr | accuracy |" in card.text
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["CamembertForMaskedLM"] and config["model_type"] == "camembert"
    model = transformers.AutoModelForMaskedLM.from_pretrained(out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    fill = transformers.pipeline("fill-mask", model=str(out))
    assert len(fill(f"Le chat est {tokenizer.mask_token}.")) == 5


def test_push_uploads_the_export_to_the_named_repo(params_checkpoint, tmp_path, monkeypatch):
    calls = {}
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_exists", lambda self, repo_id, **kw: False)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo",
                        lambda self, repo_id, **kw: calls.setdefault("create", (repo_id, kw["private"])))

    def fake_upload(self, *, folder_path, repo_id, **kw):
        calls["upload"] = (repo_id, sorted(p.name for p in pathlib.Path(folder_path).iterdir()))
        return "https://huggingface.co/me/tiny/commit/abc"

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", fake_upload)
    out = tmp_path / "export"
    assert to_pytorch("--checkpoint", str(params_checkpoint), "--out", str(out),
                      "--push-to-hub", "me/tiny", "--private") == 0
    assert calls["create"] == ("me/tiny", True)
    repo_id, files = calls["upload"]
    assert repo_id == "me/tiny"
    assert {"README.md", "config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    assert 'model="me/tiny"' in (out / "README.md").read_text(encoding="utf-8")


def test_push_offline_fails_in_one_line_and_deletes_what_it_created(params_checkpoint, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "a")
    assert to_pytorch("--checkpoint", str(params_checkpoint), "--out", out, "--push-to-hub", "me/x") == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert error.startswith("error: could not publish") and "me/x" in error and error.endswith("nothing was uploaded")
    assert "offline" in error.lower()
    deleted = []
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_exists", lambda self, repo_id, **kw: False)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "delete_repo", lambda self, repo_id, **kw: deleted.append(repo_id))

    def refused(self, **kw):
        raise OSError("403 Forbidden")

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", refused)
    with pytest.raises(model_card.PublishError, match="403 Forbidden.*nothing was uploaded"):
        model_card.push_to_hub(tmp_path / "a", "me/x")
    assert deleted == ["me/x"]
