"""The miniature DistilCamemBERT reproduction on real French text (issue #6, docs/results.md).

Three runs on the same tokenizer, shards and token budget, driven by scripts/reproduce_mini.sh:

    python scripts/train.py --config configs/mini_teacher.py:RUN --workdir RUN/teacher
    python scripts/train.py --config configs/mini_distil.py:RUN  --workdir RUN/distil
    python scripts/train.py --config configs/mini_scratch.py:RUN --workdir RUN/scratch

(each the same as `configs/mini.py:ROLE,RUN[,STEPS]`, the one place the recipe is written).

- teacher: a CamemBERT-shaped encoder (4 × 256, 4 heads, FFN 1024) pre-trained with plain MLM;
- distil: a 2-layer student initialised from teacher layers (0, 3), trained with the paper's
  0.5·distil + 0.3·cosine + 0.2·MLM loss, T = 2;
- scratch: the same 2-layer architecture from random init with MLM only, the same steps and
  batches (DistilBERT's ablation).

Ablations of the distilled student (issue #6's "investigate: loss weights, T, init, budget"), each
changing one thing of `distil` and trained on the same steps and batches (`ABLATIONS=...` in
scripts/reproduce_mini.sh):
- init_only: the teacher-layer initialisation with the MLM loss only (weights 0 / 0 / 1);
- distil_random: the full distillation loss from a random initialisation;
- distil_t1: temperature 1 instead of 2;
- untrained: the scratch student before any training (0 steps): what fine-tuning alone reaches.
RUN holds `tokenizer/` (scripts/train_tokenizer.py) and `shards/{train,eval}`
(scripts/prepare_data.py) made from ../shared/data/fr_novels (ELTeC-fra, public domain).
`steps` is the third argument when given (the CI toy chain uses a handful).
"""

from jaxdistil.run_config import base

SHAPE = dict(hidden_size=256, num_attention_heads=4, intermediate_size=1024, max_position_embeddings=130,
             type_vocab_size=1, layer_norm_eps=1e-5)


ROLES = ("teacher", "distil", "scratch", "init_only", "distil_random", "distil_t1", "untrained")


def role_config(role: str):
    """`get_config(arg)` of configs/mini_ROLE.py: RUN[,STEPS] with the role fixed."""
    return lambda arg: get_config(f"{role},{arg}")


def get_config(arg: str):
    role, run, *rest = arg.split(",")
    if role not in ROLES:
        raise ValueError(f"configs/mini.py:ROLE,RUN[,STEPS] with ROLE one of {'|'.join(ROLES)}, got {role!r}")
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
    if role == "teacher":
        c.mode = "mlm"
        c.student.init = "random"
        c.student.num_layers = 4
        c.student.random.update(SHAPE)
    elif role in ("distil", "init_only", "distil_t1"):
        c.mode = "distil"
        c.teacher.source = f"{run}/teacher"
        c.student.init = "teacher"
        c.student.num_layers = 2
        if role == "init_only":
            c.loss.alpha_distil, c.loss.alpha_cosine, c.loss.alpha_mlm = 0.0, 0.0, 1.0
        if role == "distil_t1":
            c.loss.temperature = 1.0
    elif role == "distil_random":
        c.mode = "distil"
        c.teacher.source = f"{run}/teacher"
        c.student.init = "random"
        c.student.num_layers = 2
        c.student.random.update(SHAPE)
    else:  # scratch, untrained
        c.mode = "mlm"
        c.student.init = "random"
        c.student.num_layers = 2
        c.student.random.update(SHAPE)
        if role == "untrained":
            c.train.steps = 0
    return c
