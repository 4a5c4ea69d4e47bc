"""Every command-line tool follows jaxdistil.cli's convention: `--help` exits 0 and shows each option
with a help text (cli.parser refuses to parse otherwise) and its default; train.py says where the
config fields are documented."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from jaxdistil import cli

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
