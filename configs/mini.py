"""The miniature DistilCamemBERT reproduction on real French text (issue #6, docs/results.md).

The one place its roles, ablations and model sizes are written. Every run is one role of this
file, trained on the same tokenizer, shards and token budget (scripts/reproduce_mini.sh runs them):

    python scripts/train.py --config configs/mini.py:teacher,RUN --workdir RUN/teacher
    python scripts/train.py --config configs/mini.py:distil,RUN  --workdir RUN/distil
    python scripts/train.py --config configs/mini.py:scratch,RUN --workdir RUN/scratch

The argument is ROLE,RUN[,STEPS] (the chain passes STEPS; the CI toy chain uses a handful).

- ROLES: the reproduction's three runs, the teacher (TEACHER_LAYERS layers of SHAPE, plain MLM),
  the distilled student (STUDENT_LAYERS layers copied from the teacher, the paper's
  distillation loss) and the same student from scratch (DistilBERT's ablation);
- ABLATIONS: issue #6's "investigate: loss weights, T, init, budget", each one change to the
  distilled student, trained on the same steps and batches (`ABLATIONS=...` in reproduce_mini.sh).

RUN holds `tokenizer/` (scripts/train_tokenizer.py) and `shards/{train,eval}`
(scripts/prepare_data.py) made from ../shared/data/fr_novels (ELTeC-fra, public domain).
"""

from typing import NamedTuple

from jaxdistil.run_config import base

# The encoder every role shares: the teacher is TEACHER_LAYERS of it, every student STUDENT_LAYERS.
SHAPE = dict(hidden_size=256, num_attention_heads=4, intermediate_size=1024, max_position_embeddings=130,
             type_vocab_size=1, layer_norm_eps=1e-5)
TEACHER_LAYERS = 4
STUDENT_LAYERS = 2


class Role(NamedTuple):
    label: str  # how the report names it
    description: str  # how it is trained: what differs from the others


TEACHER = "teacher"  # the role the students learn from; its workdir is RUN/teacher
# The reproduction's three runs, in the order they train and are reported.
ROLES = {
    TEACHER: Role("teacher", "random init, MLM loss only, the students' teacher"),
    "distil": Role("distilled student", "teacher-layer init, distillation loss 0.5 / 0.3 / 0.2, T = 2 (the recipe)"),
    "scratch": Role("scratch student", "random init, MLM loss only"),
}
# ablation -> what differs from the distilled student
ABLATIONS = {
    "init_only": "teacher-layer init, MLM loss only (weights 0 / 0 / 1)",
    "distil_random": "random init, distillation loss 0.5 / 0.3 / 0.2, T = 2",
    "distil_t1": "teacher-layer init, distillation loss, T = 1",
    "untrained": "random init, no pre-training at all (fine-tuning only)",
}


def get_config(arg: str):
    role, run, *rest = arg.split(",")
    if role not in ROLES and role not in ABLATIONS:
        raise ValueError(f"configs/mini.py:ROLE,RUN[,STEPS] with ROLE one of {'|'.join([*ROLES, *ABLATIONS])}, "
                         f"got {role!r}")
    c = base()
    c.tokenizer.source = f"{run}/tokenizer"
    c.data.shards_dir = f"{run}/shards/train"
    c.data.eval_shards_dir = f"{run}/shards/eval"
    c.data.seq_len = 128
    c.train.steps = int(rest[0]) if rest else 2000
    c.train.batch_size = 32
    c.train.learning_rate = 1e-3
    c.train.warmup_steps = max(1, c.train.steps // 20)
    c.train.weight_decay = 0.01
    c.train.log_every = 20
    c.train.eval_every = max(1, c.train.steps // 4)
    c.train.eval_batches = 16
    c.train.checkpoint_every = max(1, c.train.steps // 10)
    c.export_hf = True
    if role == TEACHER:
        c.mode = "mlm"
        c.student.init = "random"
        c.student.num_layers = TEACHER_LAYERS
        c.student.random.update(SHAPE)
    elif role in ("distil", "init_only", "distil_t1"):
        c.mode = "distil"
        c.teacher.source = f"{run}/{TEACHER}"
        c.student.init = "teacher"
        c.student.num_layers = STUDENT_LAYERS
        if role == "init_only":
            c.loss.alpha_distil, c.loss.alpha_cosine, c.loss.alpha_mlm = 0.0, 0.0, 1.0
        if role == "distil_t1":
            c.loss.temperature = 1.0
    elif role == "distil_random":
        c.mode = "distil"
        c.teacher.source = f"{run}/{TEACHER}"
        c.student.init = "random"
        c.student.num_layers = STUDENT_LAYERS
        c.student.random.update(SHAPE)
    else:  # scratch, untrained
        c.mode = "mlm"
        c.student.init = "random"
        c.student.num_layers = STUDENT_LAYERS
        c.student.random.update(SHAPE)
        if role == "untrained":
            c.train.steps = 0
    return c
