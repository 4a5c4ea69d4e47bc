r"""Distil (or MLM-pre-train) a RoBERTa-family model with jaxdistil.

    python scripts/train.py --config configs/tiny.py --workdir runs/tiny
    python scripts/train.py --config configs/paper.py --workdir runs/distilcamembert \
        --config.train.batch_size=256

Every field of --config, with its default and what it means, is documented in
jaxdistil/run_config.py (`base()`); any of them can be overridden as --config.SECTION.FIELD=VALUE.
Re-running the same command with the same workdir resumes from its latest checkpoint.
Several hosts: run the same command on each, with --coordinator-address, --num-processes
and --process-id (or --distributed, for the environment `jax.distributed.initialize()` reads).
"""

import dataclasses
import difflib
import logging
import pathlib
import re
import sys
from collections.abc import Iterator, Sequence

import jax
from absl import app, flags
from ml_collections import ConfigDict, config_flags
from ml_collections.config_flags import config_path

from jaxdistil import cli, malloc, run_config
from jaxdistil.loop import run

_ONE_PROCESS = "multi-host; default: none, one process"
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/<name>.py[:arg] (required); its fields are documented in jaxdistil/run_config.py",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "where checkpoints, logs, the tokenizer and the export go (required; no default)")
_COORDINATOR = flags.DEFINE_string("coordinator-address", None, f"host:port of process 0 ({_ONE_PROCESS})")
_NUM_PROCESSES = flags.DEFINE_integer("num-processes", None, f"number of processes ({_ONE_PROCESS})")
_PROCESS_ID = flags.DEFINE_integer("process-id", None, f"this process's index ({_ONE_PROCESS})")
_COMPILATION_CACHE = flags.DEFINE_string(
    "compilation-cache", cli.COMPILATION_CACHE,
    "JAX's persistent compilation cache: compiled steps kept here are reused by a resumed or repeated run "
    "('' = none; default: $JAX_COMPILATION_CACHE_DIR, else a per-user cache directory)")
_MALLOC_ARENAS = flags.DEFINE_integer(
    "malloc-arenas", malloc.ARENAS,
    "glibc malloc arenas for this process: few keep a long run's memory from growing with its checkpoint "
    "saves (docs/performance.md, Soak); 0 = glibc's default; MALLOC_ARENA_MAX in the environment wins")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() from the environment")
for _name in ("coordinator-address", "num-processes", "process-id"):  # the underscore spellings still work
    flags.DEFINE_alias(_name.replace("-", "_"), _name)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    arenas = malloc.limit_arenas(_MALLOC_ARENAS.value)  # before JAX's backend starts its threads
    cli.setup_logging()
    logging.getLogger("jaxdistil.train").info(arenas)
    cli.use_compilation_cache(_COMPILATION_CACHE.value)
    if _COORDINATOR.value or _DISTRIBUTED.value:
        # CPU processes need a collectives backend (GPUs/TPUs bring their own).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
    try:
        metrics = run(_CONFIG.value, _WORKDIR.value)
    except (OSError, ValueError, ImportError) as e:
        sys.exit(cli.fail(e))
    shown = {k: round(v, 4) for k, v in metrics.items() if k.startswith(("loss/", "eval/"))}
    print(f"done: {_WORKDIR.value} {shown}")


# --config.SECTION.FIELD=VALUE, --config.SECTION.FIELD VALUE, --config.FLAG, --noconfig.FLAG (absl's spellings).
_OVERRIDE = re.compile(r"^--?(?P<negated>no)?config\.(?P<path>[^=]+)(?:=(?P<value>.*))?$", re.DOTALL)
_CONFIG_FILE = re.compile(r"^--?config(?:=(?P<spec>.*))?$", re.DOTALL)


def load_config_file(spec: str) -> ConfigDict:
    """--config's config, loaded as absl loads it; any failure is one ValueError naming the file, since
    ml_collections wraps the config file's own error in a traceback or defers it to the first access."""
    if not pathlib.Path(spec.split(":", 1)[0]).is_file():
        raise ValueError(f"--config {spec}: no such file")
    try:
        config = run_config.load_config(spec)
        config.keys()  # a get_config that raised OSError left a stand-in that raises on first use
    except Exception as error:  # whatever the config file raised, it is the user's file to fix
        original = error.__cause__ or error.__context__ or error
        raise ValueError(f"--config {spec}: {' '.join(str(original).split())}") from None
    return config


def field_names(config: ConfigDict, prefix: str = "") -> Iterator[str]:
    """Every section and field of `config` as the dotted name an override spells."""
    for key, value in config.items():
        yield prefix + key
        if isinstance(value, ConfigDict):
            yield from field_names(value, f"{prefix}{key}.")


@dataclasses.dataclass(frozen=True)
class Override:
    """One --config.PATH[=VALUE] as written; `value` None when it has no `=`."""

    path: str
    value: str | None
    following: str | None  # the next argument: the value of `--config.PATH VALUE`, unless PATH is a boolean


def config_arguments(argv: Sequence[str]) -> tuple[str | None, list[Override]]:
    """--config's value (None when not given) and its overrides, in the order written."""
    spec, overrides = None, []
    for i, arg in enumerate(argv):
        following = argv[i + 1] if i + 1 < len(argv) else None
        if found := _CONFIG_FILE.match(arg):
            spec = found["spec"] if found["spec"] is not None else following
        elif found := _OVERRIDE.match(arg):
            overrides.append(Override(found["path"], "false" if found["negated"] else found["value"], following))
    return spec, overrides


def override_mistake(config: ConfigDict, override: Override) -> str | None:
    """What is wrong with one override, in one line naming the field; None if nothing is."""
    path = override.path
    try:
        field_type = config_path.get_type(path, config)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        closest = difflib.get_close_matches(path, list(field_names(config)), n=1)
        hint = f"did you mean {closest[0]}?" if closest else "the fields are listed in jaxdistil/run_config.py"
        return f"--config.{path}: no such config field; {hint}"
    if override.value is None and field_type is bool:
        return None  # a bare --config.FLAG: true
    value = override.value if override.value is not None else override.following
    field_flag = f"config.{path}"  # defined by absl's parse of --config, with the parser for the field's type
    if value is None or field_flag not in flags.FLAGS:
        return None
    try:
        config_path.set_value(path, config, flags.FLAGS[field_flag].parser.parse(value))
    except (TypeError, ValueError):
        current = config_path.get_value(path, config)
        return f"--config.{path}={value}: {path} must be of type {field_type.__name__} (the config has {current!r})"
    return None


def config_mistake(argv: Sequence[str]) -> str | None:
    """The first mistake in --config or its overrides, in one line; None when absl's error is not about them."""
    spec, overrides = config_arguments(argv)
    if spec is None:
        return None
    try:
        config = load_config_file(spec)
    except ValueError as error:
        return str(error)
    return next(filter(None, (override_mistake(config, override) for override in overrides)), None)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing for app.run, with every command-line mistake as one `error:` line and exit 2:
    absl exits 1 on a bad flag, and a bad --config override or config file escapes it as a traceback."""
    try:
        remaining = flags.FLAGS(argv)
    except Exception as error:  # absl and ml_collections raise many types; none is worth a traceback here
        sys.exit(cli.fail(config_mistake(argv) or " ".join(str(error).split())))
    if not isinstance(_CONFIG.value, ConfigDict):  # ml_collections defers a config file's OSError to its first use
        sys.exit(cli.fail(config_mistake(argv) or "the --config file did not load"))
    if len(remaining) > 1:  # e.g. the "False" of `--config.progress False`, which sets progress to True
        sys.exit(cli.fail(f"unexpected argument {remaining[1]!r}: train.py takes flags only "
                          "(a boolean is written --config.FIELD=false)"))
    return remaining


if __name__ == "__main__":
    if {"-h", "--help"} & set(sys.argv[1:]):  # absl's --help exits 1; asking for help is not an error
        app.usage(shorthelp=True, writeto_stdout=True)
        sys.exit(0)
    app.run(main, flags_parser=parse_flags)
