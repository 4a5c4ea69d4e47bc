"""DistilCamemBERT (Delestre & Amar, CAp 2022; Hub: cmarkea/distilcamembert-base).

    python scripts/train.py --config configs/paper.py --workdir runs/distilcamembert
    python scripts/train.py --config configs/paper.py:fineweb2 --workdir runs/distilcamembert-fw2
    python scripts/train.py --config configs/paper.py:local --config.data.hf_name=DIR --workdir runs/paper-local
    python conversion/to_pytorch.py --checkpoint runs/distilcamembert --out distilcamembert-base

Needs the HF Hub (teacher, tokenizer, corpus) and a GPU/TPU. Sources of each setting:
- teacher `camembert-base` (12 × 768, vocab 32 005) and its tokenizer; student 6 layers of the
  same width initialised from teacher layers 0, 2, 4, 7, 9, 11 with embeddings and LM head
  (the DistilBERT initialisation, Sanh et al. 2019, §3 "Student initialization"; layer list
  from the distiller's `scripts/extract_distilbert.py`).
- loss 0.5·distil + 0.3·cosine + 0.2·MLM: the DistilCamemBERT paper and model card.
- corpus: French OSCAR (the paper). `oscar-corpus/OSCAR-2301` is gated on the Hub (accept its
  terms on the dataset's page, then `hf auth login` or HF_TOKEN). It is a script-based
  repository, which `datasets` >= 4 refuses, so its French files, JSON lines compressed with
  zstd (`fr_meta/fr_meta_part_<N>.jsonl.zst`, the text in `content`), are read directly and
  their metadata ignored; `--config.data.hf_name=DIR` reads a local copy laid out like the
  repository. OSCAR has no validation split, so the first `eval_max_docs` documents are held
  out and never trained on. The training documents are streamed (`data.streaming`): read,
  tokenised and packed while training runs by worker processes (`data.stream_workers`), in
  `data.stream_lanes` lanes of files (one host or more, each reading its own), resumable
  exactly from any checkpoint; `mlm_smoothing`'s token counts come from the head of the
  stream (`data.stream_count_docs` documents).
- everything the paper leaves unsaid takes the DistilBERT distiller's defaults (HF research
  project `distillation/train.py`): temperature 2.0; 15 % masking, 80/10/10; mlm_smoothing
  0.7 (token-frequency-smoothed masking); restrict_ce_to_mask False; AdamW lr 5e-4,
  β = (0.9, 0.98), ε = 1e-6, weight decay 0; warm-up 5 % then linear decay; grad-norm clip
  5.0; seed 56; sequences up to 512 tokens; large batches through gradient accumulation
  (the distiller: 5 sequences × 50 accumulation steps × 8 GPUs ≈ 2 000 sequences).
- our choices, not from either paper: 512 sequences of 512 tokens per optimizer step
  (16 micro-batches of 32), 100 000 steps (≈ 26 B tokens), bf16 compute with fp32 params.

Variants, the argument after the colon (comma-separated words):
- `fineweb2`: the ungated FineWeb-2 French subset instead of OSCAR (`HuggingFaceFW/fineweb-2`,
  subset `fra_Latn`, parquet files `data/fra_Latn/train/*.parquet`, field `text`).
- `local`: the same recipe, every code path of it unchanged (a Hub-layout corpus read file by
  file, mlm_smoothing 0.7, gradient accumulation, bf16 compute, the student initialised from
  chosen teacher layers), at toy scale and offline: a small random 4-layer teacher, a 2-layer
  student from its layers 0 and 3, a tokenizer trained on the spot, short sequences and a few
  steps, reading the local directory `--config.data.hf_name=DIR` laid out like the corpus's
  repository (`local,fineweb2` for a FineWeb-2 copy). Seconds of training on a CPU.
"""

from jaxdistil.run_config import base

VARIANTS = ("fineweb2", "local")


def get_config(arg: str | None = None):
    variants = set(arg.split(",")) if arg else set()
    if variants - set(VARIANTS):
        raise ValueError(f"configs/paper.py: unknown variant(s) {sorted(variants - set(VARIANTS))}; "
                         f"give any of {VARIANTS}, comma-separated")
    c = base()
    c.seed = 56
    c.dtype = "bfloat16"
    c.teacher.source = "camembert-base"
    c.tokenizer.source = "teacher"
    c.student.init = "teacher"
    c.student.num_layers = 6
    c.student.layer_map = (0, 2, 4, 7, 9, 11)
    c.data.source = "hf"
    c.data.hf_name = "oscar-corpus/OSCAR-2301"
    c.data.hf_config = "fr"
    c.data.hf_data_files = "{config}_meta/{config}_meta_part_*.jsonl.zst"  # the loading script is never read
    c.data.hf_split = "train"
    c.data.hf_eval_split = ""  # none: hold out the stream's first eval_max_docs documents
    c.data.text_field = "content"
    c.data.max_docs = -1  # every document: streamed (read, tokenised, packed while training), epoch after epoch
    c.data.streaming = True
    c.data.stream_lanes = 16  # the files dealt to this many streams: up to as many hosts, each reading its own
    # Per host, at most one per lane it reads: 12 of a 16-core GPU host's cores (docs/performance.md, "Data pipeline").
    c.data.stream_workers = 12
    c.data.eval_max_docs = 10_000
    c.data.seq_len = 512  # blocks of <s> + 510 tokens + </s>: all 512 positions of camembert-base
    c.masking.mlm_smoothing = 0.7
    c.loss.temperature = 2.0
    c.loss.alpha_distil, c.loss.alpha_cosine, c.loss.alpha_mlm = 0.5, 0.3, 0.2
    c.loss.restrict_to_mask = False
    c.train.steps = 100_000
    c.train.batch_size = 512
    c.train.grad_accum = 16
    c.train.learning_rate = 5e-4
    c.train.warmup_steps = 5_000
    c.train.weight_decay = 0.0
    c.train.adam_b1, c.train.adam_b2, c.train.adam_eps = 0.9, 0.98, 1e-6
    c.train.max_grad_norm = 5.0
    c.train.log_every = 50
    c.train.eval_every = 2_000
    c.train.eval_batches = 50
    c.train.eval_batch_size = 64
    c.train.checkpoint_every = 2_000
    c.export_hf = True
    if "fineweb2" in variants:
        fineweb2(c)
    if "local" in variants:
        local(c)
    return c


def fineweb2(c) -> None:
    """FineWeb-2's French subset: ungated, parquet, the text in `text`, no validation split."""
    c.data.hf_name = "HuggingFaceFW/fineweb-2"
    c.data.hf_config = "fra_Latn"
    c.data.hf_data_files = "data/{config}/{split}/*.parquet"
    c.data.text_field = "text"


def local(c) -> None:
    """The recipe at toy scale, offline, on the local copy of a corpus repository in data.hf_name."""
    c.data.hf_name = ""  # required: --config.data.hf_name=DIR
    c.teacher.source = "random"
    c.teacher.random.update(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=34)
    c.student.num_layers = 2
    c.student.layer_map = (0, 3)  # the first and last teacher layers, as the paper's map (0, ..., 11)
    c.tokenizer.source = "train"
    c.tokenizer.vocab_size = 300
    c.tokenizer.train_max_docs = 600
    c.data.eval_max_docs = 50
    c.data.stream_lanes = 2  # so two processes can share the run (each replica has at least as many files)
    c.data.stream_count_docs = 200
    c.data.seq_len = 32
    c.train.steps = 4
    c.train.batch_size = 8
    c.train.grad_accum = 2
    c.train.warmup_steps = 1
    c.train.log_every = 2
    c.train.eval_every = 4
    c.train.eval_batches = 1
    c.train.eval_batch_size = 8
    c.train.checkpoint_every = 4
