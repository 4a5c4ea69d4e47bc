"""DistilCamemBERT (Delestre & Amar, CAp 2022; Hub: cmarkea/distilcamembert-base).

    python scripts/train.py --config configs/paper.py --workdir runs/distilcamembert
    python conversion/to_pytorch.py --checkpoint runs/distilcamembert --out distilcamembert-base

Needs the HF Hub (teacher, tokenizer, corpus) and a GPU/TPU. Sources of each setting:
- teacher `camembert-base` (12 × 768, vocab 32 005) and its tokenizer; student 6 layers of the
  same width initialised from teacher layers 0, 2, 4, 7, 9, 11 with embeddings and LM head
  (the DistilBERT initialisation, Sanh et al. 2019, §3 "Student initialization"; layer list
  from the distiller's `scripts/extract_distilbert.py`).
- loss 0.5·distil + 0.3·cosine + 0.2·MLM: the DistilCamemBERT paper and model card.
- corpus: French OSCAR (the paper). `oscar-corpus/OSCAR-2301`, config "fr", is gated on the Hub
  (accept its terms, `huggingface-cli login`); any streaming French corpus with a text field
  works (`--config.data.hf_name=... --config.data.text_field=...`). OSCAR has no validation
  split, so the first `eval_max_docs` documents are held out and never trained on.
- everything the paper leaves unsaid takes the DistilBERT distiller's defaults (HF research
  project `distillation/train.py`): temperature 2.0; 15 % masking, 80/10/10; mlm_smoothing
  0.7 (token-frequency-smoothed masking); restrict_ce_to_mask False; AdamW lr 5e-4,
  β = (0.9, 0.98), ε = 1e-6, weight decay 0; warm-up 5 % then linear decay; grad-norm clip
  5.0; seed 56; sequences up to 512 tokens; large batches through gradient accumulation
  (the distiller: 5 sequences × 50 accumulation steps × 8 GPUs ≈ 2 000 sequences).
- our choices, not from either paper: 512 sequences of 512 tokens per optimizer step
  (16 micro-batches of 32), 100 000 steps (≈ 26 B tokens), bf16 compute with fp32 params.
"""

from jaxdistil.run_config import base


def get_config(arg: str | None = None):
    del arg
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
    c.data.hf_split = "train"
    c.data.hf_eval_split = ""  # none: hold out the stream's first eval_max_docs documents
    c.data.text_field = "text"
    c.data.max_docs = 20_000_000  # tokenised once into WORKDIR/data (shards), then epochs over them
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
    return c
