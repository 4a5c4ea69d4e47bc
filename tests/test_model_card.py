"""Every export writes a model card that the Hub's parser reads; the push uploads one folder or nothing.

A random tiny masked LM (a params checkpoint with the French test tokenizer) goes through
conversion/to_pytorch.py, and a micro training run exports itself; the Hub is never contacted
(tests run with HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import json
import pathlib
import runpy

import huggingface_hub
import jax
import pytest
import sentencepiece as spm
import yaml
from helpers import make_config, micro_overrides
from huggingface_hub import ModelCard, ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from jaxdistil import model_card
from jaxdistil.checkpoint import save_params_checkpoint
from jaxdistil.config import ModelConfig
from jaxdistil.loop import run
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.run_config import base
from jaxdistil.run_record import read_history
from jaxdistil.tokenizer import load_tokenizer
from jaxdistil.workdir import Workdir

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
    assert card.data.pipeline_tag in transformers.pipelines.SUPPORTED_TASKS  # the tag names a real pipeline
    fill = transformers.pipeline(card.data.pipeline_tag, model=str(out))
    assert len(fill(f"Le chat est {tokenizer.mask_token}.")) == 5


def test_card_metadata_round_trips_through_huggingface_hub(params_checkpoint, results_file, tmp_path):
    """What `ModelCard.validate()` would post to the Hub, checked locally: the parsed metadata
    rebuilds the same card data, and model-index parses back to the suite's values."""
    out = tmp_path / "export"
    assert to_pytorch("--checkpoint", str(params_checkpoint), "--out", str(out), "--results", str(results_file)) == 0
    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    assert ModelCardData(**data).to_dict() == data
    assert ModelCard(str(card)).data.to_dict() == data  # rendered again, parsed again: unchanged
    name, parsed = model_index_to_eval_results(data["model-index"])
    assert name == card.data.model_name == "export"
    expected = [(row["task_type"], row["dataset"], row.get("dataset_config"), "test", row["metric"],
                 row["metric_name"], row["student"]) for row in SUITE["results"]]
    assert [(r.task_type, r.dataset_type, r.dataset_config, r.dataset_split, r.metric_type, r.metric_name,
             r.metric_value) for r in parsed] == expected
    assert data["language"] == "fr" and data["license"] == model_card.LICENSE and data["library_name"] == "transformers"


def test_export_tokenizer_files_give_one_set_of_ids(params_checkpoint, french_lines, tmp_path):
    """AutoTokenizer, CamembertTokenizerFast and the exported sentencepiece.bpe.model agree on real text."""
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "export"
    assert to_pytorch("--checkpoint", str(params_checkpoint), "--out", str(out)) == 0
    text = french_lines[:300]
    auto = transformers.AutoTokenizer.from_pretrained(out)(text, add_special_tokens=False)["input_ids"]
    camembert = transformers.CamembertTokenizerFast.from_pretrained(out)(text, add_special_tokens=False)["input_ids"]
    processor = spm.SentencePieceProcessor(model_file=str(out / "sentencepiece.bpe.model"))
    assert auto == camembert == processor.encode(text)


def history_line(**entry) -> str:
    return json.dumps(entry) + "\n"


def test_wall_time_sums_the_invocations_and_counts_the_untimed():
    hw = {"platform": "gpu", "device_kind": "NVIDIA H200", "device_count": 1, "process_count": 1}
    history = [
        {"event": "started", "resumed_from": None, "hardware": hw},
        {"event": "trained", "from_step": 0, "to_step": 50, "seconds": 100.0},
        {"event": "resumed", "resumed_from": 50, "hardware": {**hw, "device_count": 8, "process_count": 2}},
        {"event": "resumed", "resumed_from": 50, "hardware": hw},  # the one before was killed: no "trained" line
        {"event": "diverged", "step": 70},
        {"event": "trained", "from_step": 50, "to_step": None, "seconds": 25.5},
        {"event": "resumed", "resumed_from": 100},  # already complete: nothing to time
    ]
    assert model_card.wall_time(history, planned_steps=100) == (125.5, 1)
    assert model_card.hardware_used(history) == ["1 × NVIDIA H200", "8 × NVIDIA H200 (2 hosts)"]


def test_trainer_export_writes_the_card_with_hardware_and_wall_time(corpus_files, french_tokenizer_dir, tmp_path):
    """Two invocations (a run, then a resume to more steps): the card of WORKDIR/hf is the one
    conversion/to_pytorch.py writes, and its wall time is the sum of both invocations."""
    workdir = tmp_path / "distil-tiny"
    for steps in (2, 4):
        overrides = {**micro_overrides(corpus_files, french_tokenizer_dir, steps=steps), "train.log_every": 1}
        run(make_config(overrides), workdir)
    history = read_history(Workdir(workdir))
    trained = [e for e in history if e["event"] == "trained"]
    assert [(e["from_step"], e["to_step"]) for e in trained] == [(0, 2), (2, 4)]
    hardware = {(e["hardware"]["device_kind"], e["hardware"]["device_count"]) for e in history if "hardware" in e}
    assert hardware == {(jax.devices()[0].device_kind, jax.device_count())}
    recipe = model_card.read_recipe(workdir)
    assert recipe["wall_time_s"] == pytest.approx(sum(e["seconds"] for e in trained))
    assert recipe["steps"] == 4 and recipe["untimed_invocations"] == 0
    card = ModelCard.load(workdir / "hf" / "README.md")
    assert card.data.model_name == "distil-tiny"
    assert f"hardware: {jax.device_count()} × {jax.devices()[0].device_kind}" in card.text
    assert "steps trained: 4 of 4" in card.text
    assert (workdir / "hf" / "sentencepiece.bpe.model").is_file()
    out = tmp_path / "cli" / "distil-tiny"  # named as the workdir, so the two cards must be equal
    assert to_pytorch("--checkpoint", str(workdir), "--out", str(out)) == 0
    assert (workdir / "hf" / "README.md").read_bytes() == (out / "README.md").read_bytes()


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
