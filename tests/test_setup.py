"""Run set-up against bad or unusual input (issue 11, cases 4, 7 and 8): a failed set-up
leaves nothing that wins later, non-UTF-8 text is never damaged silently, and a one-file
corpus can be trained and evaluated on; each error names the setting where the user gives it."""

from __future__ import annotations

import collections
import logging
import pathlib
import runpy

import jax
import pytest
from helpers import make_tiny_tokenizer

from jaxdistil import inputs
from jaxdistil.config import ModelConfig
from jaxdistil.convert import save_hf
from jaxdistil.data import corpus
from jaxdistil.data import tokenize as tok
from jaxdistil.modeling import MaskedLM, init_params
from jaxdistil.run_config import load_config
from jaxdistil.tokenizer import load_tokenizer
from jaxdistil.workdir import Workdir

REPO = pathlib.Path(__file__).resolve().parents[1]

# configs/tiny.py at a few seconds of set-up: a 2-layer 32-wide random teacher, 32-token blocks.
SMALL = {
    "data.seq_len": 32, "data.max_docs": 600, "data.eval_max_docs": 100,
    "tokenizer.vocab_size": 300, "tokenizer.train_max_docs": 600,
    "teacher.random.hidden_size": 32, "teacher.random.num_hidden_layers": 2,
    "teacher.random.num_attention_heads": 2, "teacher.random.intermediate_size": 64,
    "teacher.random.max_position_embeddings": 34, "student.num_layers": 1, "progress": False,
}

# A sentence whose accents a Latin-1 file stores as single bytes, which are not UTF-8.
FEVRIER = "Le 2 février, à Paris, on célébra la fête."


def tiny_config(paths, overrides=None):
    """configs/tiny.py on `paths`, loaded as scripts/train.py loads it, with SMALL and `overrides`."""
    config = load_config(f"{REPO / 'configs' / 'tiny.py'}:{','.join(map(str, paths))}")
    for dotted, value in {**SMALL, **(overrides or {})}.items():
        *parents, leaf = dotted.split(".")
        node = config
        for name in parents:
            node = node[name]
        node[leaf] = value
    return config


def setup_artefacts(root: pathlib.Path) -> list[str]:
    """What set-up has left in a workdir (the lock and the write probe aside)."""
    return sorted(p.name for p in root.iterdir() if p.name != "run.lock") if root.exists() else []


@pytest.fixture(scope="module")
def one_file(french_lines, tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("one") / "novel.txt"
    path.write_text("\n".join(french_lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def two_files(french_lines, tmp_path_factory) -> list[pathlib.Path]:
    root = tmp_path_factory.mktemp("two")
    cut = int(len(french_lines) * 0.8)
    (root / "a.txt").write_text("\n".join(french_lines[:cut]), encoding="utf-8")
    (root / "b.txt").write_text("\n".join(french_lines[cut:]), encoding="utf-8")
    return [root / "a.txt", root / "b.txt"]


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> pathlib.Path:
    """An HF teacher with the ids of `french_tokenizer_dir` (1 000 tokens) and no tokenizer files."""
    out = tmp_path_factory.mktemp("teacher_hf")
    cfg = ModelConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=34)
    save_hf(cfg, init_params(MaskedLM(cfg), jax.random.key(0)), out)
    return out


def cli_main(script: str):
    return runpy.run_path(str(REPO / "scripts" / script))["main"]


# --- case 4: a failed set-up never poisons the workdir ------------------------------------------


def test_a_tokenizer_that_does_not_fit_the_teacher_is_never_saved(two_files, teacher_dir, french_tokenizer_dir,
                                                                   tmp_path):
    workdir = Workdir(tmp_path / "run")
    bad = tiny_config(two_files, {"teacher.source": str(teacher_dir), "tokenizer.source": "train"})
    with pytest.raises(ValueError) as err:
        inputs.prepare_inputs(bad, workdir)
    assert "tokenizer.source='train' does not fit the teacher" in str(err.value)
    assert "tokenizer has 300 tokens but the model's vocab_size is 1000" in str(err.value)
    assert setup_artefacts(workdir.root) == []  # no tokenizer, no partial one
    fixed = tiny_config(two_files, {"teacher.source": str(teacher_dir), "tokenizer.source": str(french_tokenizer_dir)})
    ready = inputs.prepare_inputs(fixed, workdir)
    assert len(ready.tokenizer) == len(load_tokenizer(workdir.tokenizer)) == 1000
    assert len(ready.train_blocks) > 0 and len(ready.eval_blocks) > 0
    assert setup_artefacts(workdir.root) == ["data", "student_config.json", "tokenizer"]
    assert sorted(p.name for p in (workdir.root / "data").iterdir()) == ["eval", "train"]


def test_a_tokenizer_left_in_the_workdir_that_does_not_fit_is_named_with_what_to_do(
        two_files, teacher_dir, french_tokenizer_dir, tmp_path):
    workdir = Workdir(tmp_path / "run")
    left = make_tiny_tokenizer(["un petit texte pour un petit tokenizer"] * 20, vocab_size=40)
    left.save_pretrained(workdir.tokenizer)  # as a failed set-up of an older version left it
    given_teacher = tiny_config(two_files, {"teacher.source": str(teacher_dir),
                                            "tokenizer.source": str(french_tokenizer_dir)})
    with pytest.raises(ValueError) as err:
        inputs.prepare_inputs(given_teacher, workdir)
    message = str(err.value)
    assert message.startswith(f"{workdir.tokenizer} does not fit the teacher {teacher_dir}")
    assert f"tokenizer has {len(left)} tokens but the model's vocab_size is 1000" in message
    assert message.endswith(f"it was made for another config; delete {workdir.tokenizer} or use a new --workdir")
    trained = tiny_config(two_files, {"tokenizer.source": "train"})
    with pytest.raises(ValueError) as err:
        inputs.prepare_inputs(trained, workdir)
    assert str(err.value) == (f"{workdir.tokenizer} has {len(left)} tokens but tokenizer.vocab_size is 300: it was "
                              f"made for another config; delete {workdir.tokenizer} or use a new --workdir")
    assert setup_artefacts(workdir.root) == ["tokenizer"]


def test_a_teacher_without_tokenizer_files_says_so(two_files, teacher_dir, tmp_path):
    config = tiny_config(two_files, {"teacher.source": str(teacher_dir), "tokenizer.source": "teacher"})
    with pytest.raises(ValueError) as err:
        inputs.prepare_inputs(config, Workdir(tmp_path / "run"))
    assert str(err.value) == (f"the teacher at {teacher_dir} has no tokenizer files (tokenizer.json / "
                              "tokenizer_config.json); set --config.tokenizer.source to a tokenizer directory")
    assert setup_artefacts(tmp_path / "run") == []


def test_shards_of_a_failed_setup_are_not_kept(french_lines, french_tokenizer_dir, tmp_path):
    """The eval split fails (nothing long enough in the held-out file): neither split stays behind."""
    paths = [tmp_path / "x.txt", tmp_path / "y.txt"]
    (kept,), (held_out,) = corpus.split_holdout_files(paths, 1, seed=0)
    kept.write_text("\n".join(french_lines), encoding="utf-8")
    held_out.write_text("court\nbref\n", encoding="utf-8")
    workdir = Workdir(tmp_path / "run")
    config = tiny_config(paths, {"tokenizer.source": str(french_tokenizer_dir)})
    with pytest.raises(ValueError, match=rf"empty corpus: no usable text in 1 file\(s\) \({held_out}\).*Check "
                                         r"data\.paths, data\.text_field or data\.min_chars"):
        inputs.prepare_inputs(config, workdir)
    assert list(workdir.root.glob("data/*")) == [] and list(workdir.root.rglob("*.partial")) == []


def test_shards_left_in_the_workdir_for_another_seq_len_are_named(two_files, french_tokenizer_dir, tmp_path):
    workdir = Workdir(tmp_path / "run")
    inputs.prepare_inputs(tiny_config(two_files, {"tokenizer.source": str(french_tokenizer_dir)}), workdir)
    shorter = tiny_config(two_files, {"tokenizer.source": str(french_tokenizer_dir), "data.seq_len": 16})
    with pytest.raises(ValueError, match=rf"{workdir.root / 'data'} holds token shards that do not fit this run "
                                         r"\(seq_len 32 != expected 16\): it was made for another config; "
                                         rf"delete {workdir.root / 'data'} or use a new --workdir"):
        inputs.prepare_inputs(shorter, workdir)


def test_a_damaged_teacher_left_in_the_workdir_is_named_with_what_to_do(two_files, french_tokenizer_dir, tmp_path):
    workdir = Workdir(tmp_path / "run")
    workdir.teacher.mkdir(parents=True)
    (workdir.teacher / "config.json").write_text("{")  # as an older version's killed set-up left it
    with pytest.raises(ValueError) as err:
        inputs.prepare_inputs(tiny_config(two_files, {"tokenizer.source": str(french_tokenizer_dir)}), workdir)
    assert str(err.value).startswith(f"{workdir.teacher} cannot be read (")
    assert str(err.value).endswith(f": an earlier set-up left it damaged or unfinished; delete {workdir.teacher} "
                                   "or use a new --workdir")


def test_build_in_place_renames_only_what_was_made_whole(tmp_path):
    target = tmp_path / "teacher"
    stale = tmp_path / ".teacher.partial"
    stale.mkdir()
    (stale / "config.json").write_text("{}")  # left by a killed set-up

    def fail(partial: pathlib.Path) -> None:
        (partial / "config.json").write_text("{}")
        raise RuntimeError("killed while writing the weights")

    with pytest.raises(RuntimeError):
        inputs.build_in_place({target: fail})
    assert not target.exists() and not stale.exists()
    target.mkdir()
    (target / "half.json").write_text("{}")  # an unfinished one of an older version
    inputs.build_in_place({target: lambda partial: (partial / "config.json").write_text("{}")})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher"]
    assert sorted(p.name for p in target.iterdir()) == ["config.json"]


# --- case 7: non-UTF-8 text ----------------------------------------------------------------------


def latin1_file(tmp_path: pathlib.Path) -> pathlib.Path:
    """Latin-1 text whose lines 3 and 54 have accents (5 bytes each that are not UTF-8)."""
    path = tmp_path / "ancien.txt"
    lines = ["Une premiere ligne sans accent.", "Deuxieme ligne, toujours simple.", FEVRIER]
    lines += [f"Ligne {i} de la suite, simple elle aussi." for i in range(50)] + [FEVRIER]
    path.write_bytes("\n".join(lines).encode("latin-1"))
    return path


def undecodable_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "not valid UTF-8" in r.getMessage()]


def test_undecodable_bytes_are_warned_about_where_met_even_when_max_docs_stops_early(tmp_path, caplog):
    path = latin1_file(tmp_path)
    stats = corpus.CorpusStats()
    with caplog.at_level(logging.WARNING, logger="jaxdistil.data.corpus"):
        docs = list(corpus.iter_local_texts([path], max_docs=3, stats=stats))
    assert docs[2] == "Le 2 fvrier,  Paris, on clbra la fte."  # what utf-8 makes of it
    assert stats.undecodable_bytes == 5 and stats.files_with_undecodable_bytes == [str(path)]
    assert undecodable_warnings(caplog) == [
        f"{path}: line 3 has bytes that are not valid UTF-8: they are dropped from this file, and counted. If it "
        "is Latin-1 or Windows-1252 text, set --encoding to 'latin-1' or 'cp1252'"]
    caplog.clear()
    stats = corpus.CorpusStats()
    with caplog.at_level(logging.WARNING, logger="jaxdistil.data.corpus"):
        list(corpus.iter_local_texts([path], stats=stats, names=inputs.DATA_FIELDS))
    assert stats.undecodable_bytes == 10 and stats.files_with_undecodable_bytes == [str(path)]
    assert undecodable_warnings(caplog) == [
        f"{path}: line 3 has bytes that are not valid UTF-8: they are dropped from this file, and counted. If it "
        "is Latin-1 or Windows-1252 text, set data.encoding to 'latin-1' or 'cp1252'"]  # once per file


@pytest.mark.parametrize("encoding, text", [("latin-1", FEVRIER), ("cp1252", "L’œuvre d’art — déjà vue")])
def test_an_encoding_reads_non_utf8_text_whole(tmp_path, caplog, encoding, text):
    path = tmp_path / "texte.txt"
    path.write_bytes(f"{text}\n".encode(encoding))
    stats = corpus.CorpusStats()
    with caplog.at_level(logging.WARNING, logger="jaxdistil.data.corpus"):
        assert list(corpus.iter_local_texts([path], encoding=encoding, stats=stats)) == [text]
    assert stats.undecodable_bytes == 0 and "not valid" not in caplog.text


def test_encodings_keep_refusing_binary_files_and_unknown_codecs(tmp_path):
    blob = tmp_path / "blob.txt"
    blob.write_bytes(b"PK\x03\x04\x00\x00binary\x00zip")
    with pytest.raises(ValueError, match=r"blob\.txt looks like a binary file.*remove it from data\.paths"):
        corpus.check_local_files([blob], encoding="latin-1", names=inputs.DATA_FIELDS)
    with pytest.raises(ValueError, match=r"data\.encoding='utf-16' is not a corpus encoding: use one of "
                                         r"\('utf-8', 'latin-1', 'cp1252'\)"):
        corpus.check_local_files([blob], encoding="utf-16", names=inputs.DATA_FIELDS)


def test_data_encoding_reaches_the_run_corpus(tmp_path, two_files):
    path = latin1_file(tmp_path)
    config = tiny_config([path, *two_files], {"data.encoding": "latin-1", "data.holdout_files": 1})
    holdout = inputs.plan_corpus(config)
    texts = list(inputs.training_texts(config.data, holdout, held_out=path not in holdout.train_files))
    assert FEVRIER in texts


def test_encoding_flag_of_prepare_data_and_train_tokenizer(tmp_path, french_lines, capsys):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("\n".join(french_lines[:1000]).encode("latin-1", errors="replace"))
    learned_e = {}
    for encoding in ("utf-8", "latin-1"):
        out = tmp_path / f"tok-{encoding}"
        assert cli_main("train_tokenizer.py")(["--input", str(latin1), "--vocab-size", "300", "--out", str(out),
                                               "--encoding", encoding]) == 0
        tokenizer = load_tokenizer(out)
        # "é" itself always has a piece (tokenizer.FRENCH_CHARS); pieces around it come from the text
        learned_e[encoding] = any("é" in piece and piece != "é" for piece in tokenizer.get_vocab())
    assert learned_e == {"utf-8": False, "latin-1": True}  # utf-8 dropped every é it was trained on
    prepare = cli_main("prepare_data.py")
    undecodable = {}
    for encoding in ("utf-8", "latin-1"):
        capsys.readouterr()
        assert prepare(["--input", str(latin1), "--tokenizer", str(tmp_path / "tok-latin-1"), "--seq-len", "32",
                        "--out", str(tmp_path / f"shards-{encoding}"), "--encoding", encoding]) == 0
        summary = capsys.readouterr().out
        undecodable[encoding] = int(summary.split(" undecodable bytes")[0].rsplit(" ", 1)[1])
    assert undecodable["utf-8"] > 100 and undecodable["latin-1"] == 0


# --- case 8: a one-file corpus --------------------------------------------------------------------


def test_one_file_holds_out_a_seeded_fraction_of_its_documents(one_file, caplog):
    with caplog.at_level(logging.INFO, logger="jaxdistil.data.corpus"):
        holdout = corpus.plan_holdout([one_file], 1, 0.05, seed=0, names=inputs.DATA_FIELDS)
    assert "1 file: holding out 5 % of its documents for evaluation" in caplog.text
    everything = list(corpus.iter_local_texts([one_file]))
    train = list(corpus.iter_holdout_texts(holdout, held_out=False))
    held = list(corpus.iter_holdout_texts(holdout, held_out=True))
    assert 0.03 < len(held) / len(everything) < 0.07
    assert collections.Counter(train) + collections.Counter(held) == collections.Counter(everything)
    assert is_in_order_within(train, everything) and is_in_order_within(held, everything)
    assert list(corpus.iter_holdout_texts(holdout, held_out=True)) == held  # the same draw every time
    assert list(corpus.iter_holdout_texts(holdout, held_out=True, max_docs=10)) == held[:10]
    other_seed = list(corpus.iter_holdout_texts(corpus.plan_holdout([one_file], 1, 0.05, seed=1), held_out=True))
    assert other_seed != held


def is_in_order_within(part: list[str], whole: list[str]) -> bool:
    """`part` is a subsequence of `whole`."""
    remaining = iter(whole)
    return all(doc in remaining for doc in part)


def test_enough_files_still_hold_out_whole_files_as_before(two_files):
    holdout = corpus.plan_holdout(two_files, 1, 0.05, seed=0)
    train, held = corpus.split_holdout_files(two_files, 1, seed=0)
    assert (list(holdout.train_files), list(holdout.eval_files), holdout.document_fraction) == (train, held, 0.0)


def test_a_one_file_corpus_is_set_up_for_training_and_evaluation(one_file, tmp_path):
    config = tiny_config([one_file], {"tokenizer.source": "train"})
    assert config.data.holdout_files == 1
    ready = inputs.prepare_inputs(config, Workdir(tmp_path / "run"))
    assert len(ready.train_blocks) > len(ready.eval_blocks) > 0
    holdout = inputs.plan_corpus(config)
    train = list(inputs.training_texts(config.data, holdout, held_out=False))
    held = list(inputs.training_texts(config.data, holdout, held_out=True))
    everything = list(corpus.iter_local_texts([one_file], min_chars=config.data.min_chars))
    assert len(train) == config.data.max_docs and held
    assert collections.Counter(train) + collections.Counter(held) <= collections.Counter(everything)


def test_no_evaluation_text_is_a_true_message_before_anything_is_written(one_file, tmp_path):
    config = tiny_config([one_file], {"tokenizer.source": "train", "data.holdout_files": 0})
    with pytest.raises(ValueError) as err:
        inputs.prepare_inputs(config, Workdir(tmp_path / "run"))
    assert str(err.value).startswith(
        "no evaluation text: data.holdout_files=0 holds nothing out of the 1 corpus file(s) and "
        "data.eval_shards_dir is not set. Set data.holdout_files to 1 or more")
    assert not (tmp_path / "run").exists()


def test_messages_name_config_fields_in_a_run_and_flags_in_prepare_data(one_file, french_tokenizer_dir, tmp_path,
                                                                         capsys):
    config = tiny_config([one_file], {"data.holdout_fraction": 0.0})
    with pytest.raises(ValueError) as err:
        inputs.prepare_inputs(config, Workdir(tmp_path / "run"))
    assert "data.holdout_files=1 whole files cannot be held out of 1 file(s)" in str(err.value)
    assert "data.holdout_fraction=0.0 is not a fraction between 0 and 1" in str(err.value)
    assert "--" not in str(err.value)
    missing = tiny_config([tmp_path / "nope.txt"])
    with pytest.raises(FileNotFoundError, match=r"nope\.txt does not exist \(check data\.paths\)"):
        inputs.prepare_inputs(missing, Workdir(tmp_path / "run"))
    assert not (tmp_path / "run").exists()

    prepare = cli_main("prepare_data.py")
    common = ["--input", str(one_file), "--tokenizer", str(french_tokenizer_dir), "--seq-len", "32",
              "--holdout-files", "1"]
    capsys.readouterr()
    assert prepare([*common, "--out", str(tmp_path / "bad"), "--holdout-fraction", "0"]) == 2
    error = capsys.readouterr().err
    assert "--holdout-files=1 whole files cannot be held out of 1 file(s)" in error
    assert "--holdout-fraction=0.0 is not a fraction" in error and "data." not in error
    assert prepare([*common, "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "train: 1 file(s) (95 % of the documents)" in out and "eval: 1 file(s) (5 % of the documents)" in out
    train, _ = tok.read_shards(tmp_path / "out" / "train", expected_seq_len=32)
    held, _ = tok.read_shards(tmp_path / "out" / "eval", expected_seq_len=32)
    assert len(train) > 10 * len(held) > 0


def test_train_tokenizer_takes_a_one_file_corpus(one_file, tmp_path, capsys):
    out = tmp_path / "tok"
    assert cli_main("train_tokenizer.py")(["--input", str(one_file), "--vocab-size", "300", "--out", str(out),
                                           "--holdout-files", "1", "--max-docs", "800"]) == 0
    assert f"wrote {out}: 300 tokens, trained on 1 file(s)" in capsys.readouterr().out
