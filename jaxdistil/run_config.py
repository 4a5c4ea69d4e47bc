"""Every field of a jaxdistil run, with defaults; the files in configs/ start from `base()`.

Defaults are the DistilBERT distiller's (HF research project `distillation/`, `train.py`)
where the DistilCamemBERT paper (Delestre & Amar, CAp 2022) is silent.
"""

from ml_collections import ConfigDict
from ml_collections.config_dict import placeholder
from ml_collections.config_flags.config_flags import ConfigFileFlagParser  # what DEFINE_config_file parses with


def base() -> ConfigDict:
    c = ConfigDict()
    c.mode = "distil"  # "distil": teacher → student; "mlm": plain masked-LM pre-training, no teacher
    c.seed = 42  # distiller default
    c.dtype = "float32"  # compute dtype: "bfloat16" on GPU/TPU; parameters stay fp32
    c.num_devices = 0  # 0: every device of every process, one data-parallel mesh
    c.progress = True
    c.export_hf = False  # write WORKDIR/hf (an HF checkpoint) when the run completes

    c.teacher = ConfigDict()
    c.teacher.source = "camembert-base"  # Hub name, HF dir, params checkpoint, workdir, or "random"
    c.teacher.random = ConfigDict(dict(  # shape of a random-init teacher (source="random")
        hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
        max_position_embeddings=130, type_vocab_size=1, layer_norm_eps=1e-5))

    c.student = ConfigDict()
    c.student.init = "teacher"  # "teacher": layers copied from the teacher; "random": fresh init
    c.student.num_layers = 6
    c.student.layer_map = ()  # teacher layer per student layer; () = evenly spread (DistilBERT)
    c.student.random = ConfigDict(dict(  # shape of a random-init student (init="random")
        hidden_size=256, num_attention_heads=4, intermediate_size=1024, max_position_embeddings=130,
        type_vocab_size=1, layer_norm_eps=1e-5))

    c.tokenizer = ConfigDict()
    c.tokenizer.source = "teacher"  # "teacher" (the teacher's own), a dir/Hub name, or "train"
    c.tokenizer.vocab_size = 8000  # for source="train"
    c.tokenizer.train_max_docs = 200_000

    c.data = ConfigDict()
    # "files": local .txt, .jsonl (plain, .zst or .gz) and .parquet files, dirs, globs; "hf": a Hugging Face
    # dataset (hf_name), read file by file (hf_data_files) or streamed by `datasets`.
    c.data.source = "files"
    c.data.paths = ()
    c.data.holdout_files = 1  # whole files held out for evaluation (never lines of a trained file)
    # When the corpus has too few files to hold out holdout_files whole ones and keep one for training
    # (e.g. one file), this share of the documents of every file is held out instead (a draw seeded by
    # data.seed, disjoint from the training documents).
    c.data.holdout_fraction = 0.05
    c.data.hf_name = ""  # a Hub dataset id, or a local directory laid out exactly like that repository
    c.data.hf_config = ""
    c.data.hf_split = "train"
    c.data.hf_eval_split = "validation"
    # Glob of the dataset's data files relative to its repository root, "{config}" and "{split}" filled in from
    # hf_config and the split read (e.g. OSCAR-2301's "{config}_meta/{config}_meta_part_*.jsonl.zst"): read one
    # after the other (JSON lines, plain/.zst/.gz, or parquet), only text_field decoded, so a loading script beside
    # them is never run and metadata of varying types cannot break the read. "": streamed by datasets.load_dataset
    # (the repository's own layout; datasets >= 4 refuses script-based repositories).
    c.data.hf_data_files = ""
    c.data.text_field = "text"
    c.data.min_chars = 20
    # Codec of the local files: "utf-8" drops the bytes it cannot decode (counted, and warned about at the
    # first one of each file); "latin-1" or "cp1252" read older non-UTF-8 text whole.
    c.data.encoding = "utf-8"
    # A compressed or parquet corpus file that cannot be read to its end (damaged, truncated) fails set-up, naming
    # it; True skips it with a warning instead (the documents read from it before the damage are kept).
    c.data.skip_corrupt_files = False
    c.data.max_docs = -1  # -1: all documents (streaming reads every document, epoch after epoch: it must be -1)
    # source="hf" with hf_data_files: True reads, cleans, tokenises and packs the training documents on the fly, in
    # a background thread or worker processes (stream_workers), resumable exactly from any checkpoint
    # (jaxdistil/data/stream.py), so step 1 starts in seconds; False tokenises them once into WORKDIR/data shards
    # before step 1. Local files (source="files") and datasets' own layout (hf_data_files="") always use shards, as
    # do given shards_dir.
    c.data.streaming = True
    # Streamed: independent streams the files are dealt to (file i to lane i % stream_lanes), each packed on its
    # own; the batch is the same for any process count. A multiple of the process count, dividing
    # train.batch_size, at most the number of files.
    c.data.stream_lanes = 1
    # Streamed: batches made ahead by the background thread (0: none), or chunks by each of the stream_workers.
    c.data.stream_prefetch = 4
    # Streamed: worker processes reading this process's lanes, at most one per lane (0: the background thread). How
    # the stream is read, never what it yields: a run may change it on resume.
    c.data.stream_workers = 0
    # Streamed with masking.mlm_smoothing > 0: the token counts it masks by are those of the first
    # stream_count_docs training documents, counted once at set-up (WORKDIR/data/stream_counts).
    c.data.stream_count_docs = 10_000
    c.data.eval_max_docs = 2000
    c.data.seq_len = 128
    c.data.shards_dir = ""  # pre-tokenised shards (scripts/prepare_data.py); "" = tokenise into WORKDIR/data
    c.data.eval_shards_dir = ""
    c.data.seed = 0

    c.masking = ConfigDict()
    c.masking.mlm_probability = 0.15  # distiller: mlm_mask_prop
    c.masking.mask_ratio = 0.8  # word_mask
    c.masking.random_ratio = 0.1  # word_rand (word_keep = 0.1)
    c.masking.mlm_smoothing = 0.0  # distiller uses 0.7 with token counts; 0 = uniform (HF collator)

    c.loss = ConfigDict()
    c.loss.temperature = 2.0  # distiller default
    c.loss.alpha_distil = 0.5  # DistilCamemBERT
    c.loss.alpha_cosine = 0.3
    c.loss.alpha_mlm = 0.2
    c.loss.restrict_to_mask = False  # distiller: restrict_ce_to_mask

    c.train = ConfigDict()
    c.train.steps = 1000
    c.train.batch_size = 32  # sequences per optimizer step (global, all devices and micro-batches)
    c.train.grad_accum = 1  # micro-batches per optimizer step
    c.train.learning_rate = 5e-4  # distiller default
    c.train.warmup_steps = 100
    c.train.weight_decay = 0.0  # distiller default
    c.train.adam_b1 = 0.9
    c.train.adam_b2 = 0.98
    c.train.adam_eps = 1e-6
    c.train.max_grad_norm = 5.0
    c.train.fsdp = False  # shard params/optimizer state over devices (else replicated)
    c.train.remat = False  # recompute student layer activations in the backward pass
    # jax.nn.dot_product_attention implementation: None lets JAX choose; "cudnn" asks for cuDNN's
    # fused (flash) attention on NVIDIA GPUs, "xla" for the plain einsum-softmax-einsum.
    c.train.attention_impl = placeholder(str)  # None, overridable with a string
    # JAX PRNG for masking and dropout: None keeps threefry (the same bits on every backend); "rbg" or
    # "unsafe_rbg" use XLA's RngBitGenerator (faster on GPU with cuDNN attention, slower on CPU:
    # docs/performance.md). Fixed for the life of a run.
    c.train.prng_impl = placeholder(str)
    # Positions of every sequence decoded per chunk by the fused LM head + KL + CE
    # (losses.fused_distillation_loss), which never materialises the (B, L, V) logits: the same loss
    # and gradients with far less memory traffic (docs/performance.md). A divisor of data.seq_len
    # avoids padding. 0 computes the full logits. Used only when the decoders are tied to the word
    # embeddings (CamemBERT's).
    c.train.fused_head_chunk_len = 16
    c.train.log_every = 10
    c.train.eval_every = 500
    c.train.eval_batches = 20
    c.train.eval_batch_size = 32
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    return c


def load_config(spec: str):
    """`get_config(arg)` of `configs/x.py[:arg]`, loaded exactly as scripts/train.py's --config flag
    loads it (ml_collections' config-file parser), unlocked so callers may override fields."""
    return ConfigFileFlagParser("config", lock_config=False).parse(spec)
