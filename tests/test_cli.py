"""Every command-line tool follows jaxdistil.cli's convention: `--help` exits 0 and shows each option
with a help text (cli.parser refuses to parse otherwise) and its default; train.py says where the
config fields are documented; a mistake on the command line is one `error:` line and exit status 2
(train.py's --config overrides included); length options default to what the model can encode."""

import json
import logging
import os
import pathlib
import re
import runpy
import subprocess
import sys
import types

import jax
import pytest
from helpers import make_tiny_tokenizer

from benchmarks import soak
from jaxdistil import cli
from jaxdistil.config import ModelConfig
from jaxdistil.convert import save_hf
from jaxdistil.data.tokenize import tokenize_to_shards
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.tokenizer import load_tokenizer

REPO = pathlib.Path(__file__).resolve().parents[1]
TOOLS = sorted(str(p.relative_to(REPO)) for d in ("scripts", "conversion", "benchmarks")
               for p in (REPO / d).glob("*.py") if p.name not in ("__init__.py", "harness.py"))


@pytest.fixture(scope="module")
def helps():
    """`TOOL --help` of every tool, run side by side (each pays a jax/transformers import)."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = {t: subprocess.Popen([sys.executable, str(REPO / t), "--help"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=env) for t in TOOLS}
    return {t: (p.wait(timeout=300), p.stdout.read(), p.stderr.read()) for t, p in procs.items()}


def test_the_tools_are_found():
    expected = {"scripts/train.py", "scripts/finetune.py", "conversion/to_pytorch.py", "benchmarks/train_step.py"}
    assert expected <= set(TOOLS)


@pytest.mark.parametrize("tool", TOOLS)
def test_help_exits_zero_and_shows_defaults(helps, tool):
    status, out, err = helps[tool]
    assert status == 0, err[-2000:]
    assert "default" in out
    examples = [line.strip() for line in out.splitlines() if "python " in line or "bash " in line]
    assert examples, "the docstring's example commands are shown"
    # A backslash line continuation in a non-raw docstring joins the lines with a run of spaces.
    assert not [line for line in examples if re.search(r"\S {4,}[^\s#]", line)], examples


def test_train_help_says_where_the_config_fields_are(helps):
    _, out, _ = helps["scripts/train.py"]
    assert "jaxdistil/run_config.py" in out and "--config.SECTION.FIELD" in out


def test_an_option_without_help_is_refused():
    parser = cli.parser("doc")
    parser.add_argument("--bare", default=1)
    with pytest.raises(TypeError, match="--bare"):
        parser.parse_args([])


def test_fail_prints_one_error_line_and_returns_2(capsys):
    assert cli.fail(ValueError("no such file: x")) == 2
    assert capsys.readouterr().err == "error: no such file: x\n"


# ------------------------------------------------------- train.py: mistakes in --config (issue 11, case 9)

RAISING_CONFIG = '''
def get_config(arg=None):
    raise ValueError("data.paths needs at least one file")
'''

# case: (what follows --config configs/tiny.py, the one stderr line expected after "error: ").
CONFIG_MISTAKES = {
    "unknown field": (
        ["--config.train.stepz=5"], "--config.train.stepz: no such config field; did you mean train.steps?"),
    "unknown section": (
        ["--config.trian.steps=5"], "--config.trian.steps: no such config field; did you mean train.steps?"),
    "malformed name": (
        ["--config.train.batch-size=4"],
        "--config.train.batch-size: no such config field; did you mean train.batch_size?"),
    "bad int": (
        ["--config.train.steps=abc"], "--config.train.steps=abc: train.steps must be of type int (the config has 150)"),
    "bad int, space-separated": (
        ["--config.train.steps", "1x"],
        "--config.train.steps=1x: train.steps must be of type int (the config has 150)"),
    "bad bool after a good override": (
        ["--config.train.steps=3", "--config.export_hf=maybe"],
        "--config.export_hf=maybe: export_hf must be of type bool (the config has True)"),
    "a boolean's value after a space": (
        ["--config.progress", "False"],
        "unexpected argument 'False': train.py takes flags only (a boolean is written --config.FIELD=false)"),
    "bad float": (
        ["--config.train.learning_rate=fast"],
        "--config.train.learning_rate=fast: train.learning_rate must be of type float (the config has 0.001)"),
}


@pytest.fixture(scope="module")
def config_mistakes(tmp_path_factory):
    """Each mistake's train.py run, side by side: {case: (status, stdout, stderr, workdir)}."""
    root = tmp_path_factory.mktemp("config_mistakes")
    (root / "raising.py").write_text(RAISING_CONFIG, encoding="utf-8")
    tiny = f"{REPO / 'configs' / 'tiny.py'}:{root / 'a.txt'}"  # the text is not read before training
    cases = {name: ([f"--config={tiny}", *args], message) for name, (args, message) in CONFIG_MISTAKES.items()}
    cases["missing config file"] = ([f"--config={root / 'nope.py'}", "--config.train.steps=3"],
                                    f"--config {root / 'nope.py'}: no such file")
    cases["missing config file, no override"] = ([f"--config={root / 'nope.py'}"],
                                                 f"--config {root / 'nope.py'}: no such file")
    cases["config file that raises"] = (["--config", str(root / "raising.py")],
                                        f"--config {root / 'raising.py'}: data.paths needs at least one file")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    procs = {}
    for name, (args, message) in cases.items():
        workdir = root / name.replace(" ", "_").replace(",", "")
        command = [sys.executable, str(REPO / "scripts" / "train.py"), *args, f"--workdir={workdir}"]
        procs[name] = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env),
                       message, workdir)
    return {name: (*p.communicate(timeout=300), p.returncode, message, workdir)
            for name, (p, message, workdir) in procs.items()}


@pytest.mark.parametrize("case", [*CONFIG_MISTAKES, "missing config file", "missing config file, no override",
                                  "config file that raises"])
def test_a_config_mistake_is_one_line_and_exit_2(config_mistakes, case):
    out, err, status, message, workdir = config_mistakes[case]
    assert (status, err, out) == (2, f"error: {message}\n", "")
    assert not workdir.exists()


# ------------------------------------- evaluate.py / finetune.py: lengths from the model (issue 11, case 10)

SHORT_POSITIONS, LONG_POSITIONS = 34, 50  # max_position_embeddings: 32 and 48 tokens of input


def script_main(name: str):
    return runpy.run_path(str(REPO / "scripts" / name))["main"]


@pytest.fixture(autouse=True)
def fresh_library_logger(monkeypatch):
    """A script's main run in-process binds jaxdistil's log handler to that test's captured stderr (closed
    after it); each test here starts without it, so its stderr holds only what it printed itself (and the
    warnings Python's last-resort handler writes to the current stderr)."""
    library = logging.getLogger("jaxdistil")
    monkeypatch.setattr(library, "handlers", [])
    monkeypatch.setattr(library, "propagate", False)


@pytest.fixture(scope="module")
def length_models(french_tokenizer_dir, french_lines, tmp_path_factory):
    """Two random masked LMs saved as HF dirs with the tokenizer (32 and 48 positions), and held-out text."""
    tokenizer = load_tokenizer(french_tokenizer_dir)
    root = tmp_path_factory.mktemp("lengths")
    dirs = {}
    for positions in (SHORT_POSITIONS, LONG_POSITIONS):
        config = ModelConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=positions)
        params = jax.device_get(init_params(MaskedLM(config), jax.random.key(positions)))
        dirs[positions] = save_hf(config, params, root / f"model{positions}", tokenizer)
    held_out = root / "held_out.txt"
    held_out.write_text("\n".join(french_lines[-200:]) + "\n", encoding="utf-8")
    return types.SimpleNamespace(short=dirs[SHORT_POSITIONS], long=dirs[LONG_POSITIONS], held_out=held_out,
                                 tokenizer=tokenizer, root=root)


def test_length_options_say_their_default_in_help(helps):
    for tool, option in (("scripts/evaluate.py", "--seq-len"), ("scripts/finetune.py", "--max-length")):
        _, out, _ = helps[tool]
        described = re.search(rf"^  {option} [A-Z_]+\s+(.*?)(?=^  -)", out, re.MULTILINE | re.DOTALL)
        assert described and "default: the model's longest input" in " ".join(described[1].split()), out


def test_evaluate_seq_len_defaults_to_the_shortest_model_and_refuses_longer(length_models, tmp_path, capsys):
    main = script_main("evaluate.py")
    out = tmp_path / "mlm.json"
    base = ["--data", str(length_models.held_out), "--max-blocks", "4", "--batch-size", "4"]
    assert main(["--model", str(length_models.long), "--teacher", str(length_models.short), *base,
                 "--out", str(out)]) == 0
    assert "4 blocks x 32 tokens" in capsys.readouterr().out
    assert json.loads(out.read_text())["seq_len"] == SHORT_POSITIONS - 2
    assert main(["--model", str(length_models.long), *base, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["seq_len"] == LONG_POSITIONS - 2  # alone, the longer model reads 48
    capsys.readouterr()

    assert main(["--model", str(length_models.long), "--teacher", str(length_models.short), *base,
                 "--seq-len", "40"]) == 2
    assert capsys.readouterr().err == (f"error: --seq-len 40 is longer than the 32 positions model "
                                       f"{length_models.short} can encode; lower --seq-len\n")


def test_evaluate_on_shards_takes_their_block_length_and_names_the_options(length_models, tmp_path, capsys):
    main = script_main("evaluate.py")
    texts = length_models.held_out.read_text(encoding="utf-8").splitlines()
    tokenize_to_shards(texts, length_models.tokenizer, tmp_path / "s32", seq_len=32)
    tokenize_to_shards(texts, length_models.tokenizer, tmp_path / "s48", seq_len=48)
    out = tmp_path / "mlm.json"
    assert main(["--model", str(length_models.long), "--data", str(tmp_path / "s32"), "--max-blocks", "4",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["seq_len"] == 32
    capsys.readouterr()

    assert main(["--model", str(length_models.short), "--data", str(tmp_path / "s48")]) == 2
    assert capsys.readouterr().err == (
        f"error: the 48-token blocks of --data {tmp_path / 's48'} are longer than the 32 positions model "
        f"{length_models.short} can encode; make shards with scripts/prepare_data.py --seq-len 32\n")
    assert main(["--model", str(length_models.long), "--data", str(tmp_path / "s32"), "--seq-len", "16"]) == 2
    assert capsys.readouterr().err == (
        f"error: --seq-len 16 does not match the 32-token blocks of --data {tmp_path / 's32'}; leave --seq-len out\n")


def test_evaluate_on_shards_of_another_tokenizer_names_the_tokenizer_option(length_models, french_lines, tmp_path,
                                                                             capsys):
    other = make_tiny_tokenizer(french_lines[:300], vocab_size=300)
    tokenize_to_shards(french_lines[-200:], other, tmp_path / "other", seq_len=32)
    assert script_main("evaluate.py")(["--model", str(length_models.short), "--data", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --data {tmp_path / 'other'} was tokenised with ") and err.count("\n") == 1
    assert "(300 tokens), not with this tokenizer (1000 tokens); pass that --tokenizer" in err
    assert "config" not in err  # advice for evaluate.py, not for train.py


def test_finetune_max_length_defaults_to_the_model_and_refuses_longer(length_models, tmp_path, capsys):
    main = script_main("finetune.py")
    data = tmp_path / "pos.txt"
    data.write_text("Marie|NAM|I-PER vit|VER|O à|PRP|O Paris|NAM|I-LOC\nIl|PRO|O dort|VER|O\n" * 4, encoding="utf-8")
    argv = ["--model", str(length_models.short), "--task", "pos", "--train", str(data), "--dev", str(data),
            "--epochs", "1", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["config"]["max_length"] == SHORT_POSITIONS - 2
    capsys.readouterr()
    assert main([*argv, "--max-length", "128"]) == 2
    assert capsys.readouterr().err == (f"error: --max-length 128 is longer than the 32 positions model "
                                       f"{length_models.short} can encode; lower --max-length\n")


# ----------------------------------------------------------------- benchmarks/soak.py's arithmetic (issue 11)


def test_soak_reads_the_last_complete_logged_step(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    assert soak.last_logged_step(metrics) is None  # nothing logged yet: no sample
    metrics.write_text('{"step": 10, "loss/total": 1.5}\n{"step": 20, "loss/total": 1.4}\n{"step": 3',
                       encoding="utf-8")  # the third line is being written
    assert soak.last_logged_step(metrics) == 20
    assert 1 < soak.rss_mib() < 1e6


def test_soak_fits_the_growth_after_the_warm_up_only():
    spike = [soak.Sample(0.0, 0, 900.0)]  # compilation: left out by the warm-up
    noise = 0.5  # MiB, alternating
    steady = [soak.Sample(float(i), step, 700 + step / 1000 + (noise if i % 2 else -noise))
              for i, step in enumerate(range(1000, 11000, 100), 1)]  # 1 MiB per 1000 steps
    growth = soak.Growth.fit(spike + steady, warmup_steps=1000)
    assert growth.per_1000_steps_mib == pytest.approx(1.0, abs=0.01)
    assert growth.late_per_1000_steps_mib == pytest.approx(1.0, abs=0.05)
    assert growth.residual_mib == pytest.approx(noise, abs=0.01)
    assert (growth.samples, growth.span_steps, growth.after_warmup_mib) == (100, 9900, steady[0].rss_mib)
    end = [soak.Sample(200.0 + i, 10900, 780.0) for i in range(10)]  # the final evaluation compiling
    assert soak.Growth.fit(spike + steady + end, warmup_steps=1000).per_1000_steps_mib > 2
    at_end = soak.Growth.fit(spike + steady + end, warmup_steps=1000, final_step=10900)
    assert at_end.per_1000_steps_mib == pytest.approx(1.0, abs=0.01) and at_end.samples == 99
    with pytest.raises(ValueError, match="lower --warmup-steps"):
        soak.Growth.fit(spike + steady[:4], warmup_steps=1000)
    assert growth.in_use_per_1000_steps_mib is None  # no heap readings (not glibc): none fitted


def test_soak_fits_the_heap_in_use_apart_from_the_free_memory_kept():
    # RSS grows 1 MiB per 1000 steps, all of it freed memory the allocator keeps: in use stays flat
    samples = [soak.Sample(float(i), step, 700 + step / 1000, 200.0 + (0.25 if i % 2 else -0.25), 300 + step / 1000)
               for i, step in enumerate(range(1000, 11000, 100))]
    growth = soak.Growth.fit(samples, warmup_steps=1000)
    assert growth.per_1000_steps_mib == pytest.approx(1.0, abs=0.01)
    assert growth.in_use_per_1000_steps_mib == pytest.approx(0.0, abs=0.01)
    assert growth.free_per_1000_steps_mib == pytest.approx(1.0, abs=0.01)
