r"""Inference speed of teacher vs student: sequences/s of the masked-LM forward pass.

Two implementations of each model on the same inputs: the jitted JAX forward (the timed
call ends with `block_until_ready`, compilation absorbed by the warm-up) and the exported
HF PyTorch model (`convert.save_hf`, reloaded with `AutoModelForMaskedLM`, eval mode under
`torch.no_grad`). Each (batch, length) setting reports the median of --repeats timed calls
after --warmup untimed ones, and the student/teacher speed ratio per framework:

    # trained models (any `checkpoint.load_model` source)
    python benchmarks/inference.py --teacher path/to/camembert-base --student runs/student/hf

    # random weights of the DistilCamemBERT shapes (12×768 vs 6×768), reduced vocab for CPU
    python benchmarks/inference.py --random --teacher-layers 12 --student-layers 6 --hidden 768 \
        --vocab 8000 --settings 1x128 8x128

Speed depends on shapes only, so random weights measure what trained ones would. The last
line is machine-readable: `student_teacher_ratio_jax=<x> student_teacher_ratio_torch=<y>`
(medians over the settings).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/inference.py`: make `benchmarks` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402
from jaxdistil import cli  # noqa: E402
from jaxdistil.checkpoint import load_model  # noqa: E402
from jaxdistil.config import ModelConfig  # noqa: E402
from jaxdistil.convert import save_hf  # noqa: E402
from jaxdistil.modeling import MaskedLM, count_params, init_params  # noqa: E402

Model = tuple[ModelConfig, Any]


def parse_setting(text: str) -> tuple[int, int]:
    """'8x128' -> (8, 128)."""
    try:
        batch, length = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"setting {text!r} is not BATCHxLENGTH, e.g. 8x128") from None
    if batch < 1 or length < 3:
        raise argparse.ArgumentTypeError(f"setting {text!r}: batch >= 1 and length >= 3 needed")
    return batch, length


def random_model(layers: int, hidden: int, heads: int, vocab: int, max_length: int, seed: int) -> Model:
    """CamemBERT-shaped random weights (FFN = 4 × hidden)."""
    config = ModelConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden,
        max_position_embeddings=max(514, max_length + 2),
    )
    return config, jax.device_get(init_params(MaskedLM(config), jax.random.key(seed)))


def random_inputs(config: ModelConfig, batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Full-length rows of random regular tokens framed by <s> … </s> (no padding)."""
    ids = harness.random_ids(config, (batch, length), seed)
    ids[:, 0], ids[:, -1] = config.bos_token_id, config.eos_token_id
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def jax_forward(model: Model) -> Callable[[dict[str, np.ndarray]], Callable[[], Any]]:
    """inputs -> a no-argument call running the jitted forward to completion."""
    config, params = model
    params = jax.device_put(params)
    apply = jax.jit(lambda p, ids, mask: MaskedLM(config).apply({"params": p}, ids, mask).logits)

    def bind(inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        ids, mask = jax.device_put(inputs["input_ids"]), jax.device_put(inputs["attention_mask"])
        return lambda: jax.block_until_ready(apply(params, ids, mask))

    return bind


def torch_forward(model: Model) -> Callable[[dict[str, np.ndarray]], Callable[[], Any]]:
    """The same, for the model exported to HF and reloaded as `CamembertForMaskedLM`."""
    import torch  # only when torch is measured: it is an optional dependency
    from transformers import AutoModelForMaskedLM

    with tempfile.TemporaryDirectory() as tmp:
        save_hf(model[0], model[1], tmp)
        torch_model = AutoModelForMaskedLM.from_pretrained(tmp).eval()

    def bind(inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        ids = torch.from_numpy(inputs["input_ids"]).long()
        mask = torch.from_numpy(inputs["attention_mask"]).long()

        def call() -> Any:
            with torch.no_grad():
                return torch_model(input_ids=ids, attention_mask=mask).logits

        return call

    return bind


def measure(
    teacher: Model,
    student: Model,
    settings: Sequence[tuple[int, int]],
    frameworks: Sequence[str],
    repeats: int,
    warmup: int,
) -> list[dict[str, Any]]:
    """One row per (framework, setting): teacher and student sequences/s and their ratio."""
    builders = {"jax": jax_forward, "torch": torch_forward}
    rows = []
    for framework in frameworks:
        bound = {role: builders[framework](model) for role, model in (("teacher", teacher), ("student", student))}
        for batch, length in settings:
            inputs = random_inputs(teacher[0], batch, length)
            speed = {}
            for role, bind in bound.items():
                seconds = harness.median(harness.time_calls(bind(inputs), repeats, warmup=warmup))
                speed[role] = batch / seconds
            rows.append(
                {
                    "framework": framework,
                    "batch": batch,
                    "length": length,
                    "teacher_seq_per_s": speed["teacher"],
                    "student_seq_per_s": speed["student"],
                    "student/teacher": speed["student"] / speed["teacher"],
                }
            )
            print(
                f"{framework} {batch}x{length}: teacher {speed['teacher']:.1f} seq/s, "
                f"student {speed['student']:.1f} seq/s",
                flush=True,
            )
    return rows


def load_models(args: argparse.Namespace) -> tuple[Model, Model]:
    if args.random:
        longest = max(length for _, length in args.settings)
        shape = (args.hidden, args.heads, args.vocab, longest)
        return random_model(args.teacher_layers, *shape, seed=1), random_model(args.student_layers, *shape, seed=2)
    teacher, student = load_model(args.teacher), load_model(args.student)
    if teacher[0].vocab_size != student[0].vocab_size:
        raise ValueError(
            f"teacher and student vocabularies differ ({teacher[0].vocab_size} vs "
            f"{student[0].vocab_size}): they must read the same inputs"
        )
    longest = max(length for _, length in args.settings)
    for name, (config, _) in (("teacher", teacher), ("student", student)):
        if longest > config.max_sequence_length:
            raise ValueError(f"setting length {longest} exceeds the {name}'s {config.max_sequence_length} positions")
    return teacher, student


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = cli.parser(__doc__)
    parser.add_argument("--teacher", help="teacher model (any load_model source; required without --random)")
    parser.add_argument("--student", help="student model (any load_model source; required without --random)")
    parser.add_argument("--random", action="store_true", help="random weights of the shapes below instead")
    parser.add_argument("--teacher-layers", type=int, default=12, help="--random: teacher layers")
    parser.add_argument("--student-layers", type=int, default=6, help="--random: student layers")
    parser.add_argument("--hidden", type=int, default=768, help="--random: hidden size (FFN = 4 × hidden)")
    parser.add_argument("--heads", type=int, default=12, help="--random: attention heads")
    parser.add_argument("--vocab", type=int, default=8000, help="reduced from 32005 to keep CPU runs short")
    parser.add_argument(
        "--settings",
        type=parse_setting,
        nargs="+",
        default=[(1, 128), (8, 128), (32, 128)],
        metavar="BxL",
        help="batch x length settings, e.g. 1x128 8x128",
    )
    parser.add_argument("--frameworks", nargs="+", choices=("jax", "torch"), default=["jax", "torch"],
                        help="which implementations to time")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per setting (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first (compilation)")
    parser.add_argument("--threads", type=int, default=harness.available_cores(),
                        help="torch threads; by default the cores this process may use")
    args = parser.parse_args(argv)
    if not args.random and not (args.teacher and args.student):
        parser.error("give --teacher and --student, or --random")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    if "torch" in args.frameworks:
        import torch  # optional dependency, only when torch is measured

        torch.set_num_threads(args.threads)
    try:
        teacher, student = load_models(args)
    except (FileNotFoundError, ValueError, OSError) as error:
        return cli.fail(error)
    print(
        f"teacher {teacher[0].num_hidden_layers}L ({count_params(teacher[1]):,} params), student "
        f"{student[0].num_hidden_layers}L ({count_params(student[1]):,} params), "
        f"hidden {teacher[0].hidden_size}, vocab {teacher[0].vocab_size}; "
        f"device {jax.devices()[0].device_kind}",
        flush=True,
    )
    rows = measure(teacher, student, args.settings, args.frameworks, args.repeats, args.warmup)
    print(
        cli.format_table(
            rows,
            ["framework", "batch", "length", "teacher_seq_per_s", "student_seq_per_s", "student/teacher"],
            digits=2,
        )
    )
    ratios = {fw: harness.median([r["student/teacher"] for r in rows if r["framework"] == fw])
              for fw in args.frameworks}
    print(" ".join(f"student_teacher_ratio_{fw}={ratio:.3f}" for fw, ratio in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
