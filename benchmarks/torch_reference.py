r"""The same distillation step in plain PyTorch + HF `CamembertForMaskedLM`, for comparison.

Our own re-statement of the DistilBERT distiller's step (HF research project
`distillation/distiller.py`, `Distiller.step`): teacher forward in eval mode under
`no_grad`, student forward/backward in train mode (dropout as the config, 0.1 by default,
as the JAX step: student dropout on, teacher off), and the distiller's formulas on
`masked_select`-ed non-pad positions:

    0.5 · KLDiv(log_softmax(s/T), softmax(t/T), batchmean) · T²
  + 0.3 · CosineEmbeddingLoss(s_last_hidden, t_last_hidden, +1)
  + 0.2 · CrossEntropy(s, labels, ignore_index=-100)

then grad-norm clipping at `max_grad_norm`, AdamW (no decay on biases and LayerNorm weights)
and a linear warm-up/decay schedule. Masking is `jaxdistil.data.masking.mask_tokens`' recipe
(15 % of eligible tokens, 80/10/10, random ids never special) in torch ops, on the fly.

    python benchmarks/torch_reference.py                 # torch step time, acceptance shape
    python benchmarks/torch_reference.py --compare       # JAX vs torch, alternating rounds

`--compare` runs the jitted JAX step (`harness.make_jax_step`, i.e. the trainer's
`jaxdistil.step.compile_step`) and this step on the same shape and batch, alternating
`--rounds` rounds of `--steps` steps each so both see the same background load, and ends
with `jax/torch speedup = X` (median over rounds of torch ms / JAX ms).
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/torch_reference.py`: make `benchmarks` importable
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

# libgomp's default wait policy spins at every barrier. On a machine shared with other jobs a
# spinning thread waits for a descheduled partner, and the torch step ran far slower than with
# passive waiting (docs/performance.md). Passive is torch's fair configuration here; set
# OMP_WAIT_POLICY=ACTIVE to compare.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks import harness  # noqa: E402
from jaxdistil import cli  # noqa: E402
from jaxdistil.losses import IGNORE_INDEX  # noqa: E402


def mask_tokens_torch(gen: torch.Generator, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                      mask_token_id: int, special_token_ids: tuple[int, ...], vocab_size: int,
                      mlm_probability: float = 0.15, mask_ratio: float = 0.8, random_ratio: float = 0.1,
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """`jaxdistil.data.masking.mask_tokens` (uniform selection) in torch: same recipe, other rng."""
    eligible = attention_mask.bool() & ~torch.isin(input_ids, torch.tensor(special_token_ids))
    chosen = eligible & (torch.rand(input_ids.shape, generator=gen) < mlm_probability)
    action = torch.rand(input_ids.shape, generator=gen)
    to_mask = chosen & (action < mask_ratio)
    to_random = chosen & (action >= mask_ratio) & (action < mask_ratio + random_ratio)
    specials = sorted({s for s in special_token_ids if 0 <= s < vocab_size})
    random_ids = torch.randint(0, vocab_size - len(specials), input_ids.shape, generator=gen)
    for special_id in specials:  # step over the special ids: a bijection onto the others
        random_ids += (random_ids >= special_id).long()
    masked = torch.where(to_mask, mask_token_id, input_ids)
    masked = torch.where(to_random, random_ids, masked)
    labels = torch.where(chosen, input_ids, IGNORE_INDEX)
    return masked, labels


def distiller_loss(s_logits: torch.Tensor, t_logits: torch.Tensor, s_hidden: torch.Tensor,
                   t_hidden: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor, *,
                   temperature: float = 2.0, alpha_distil: float = 0.5, alpha_cosine: float = 0.3,
                   alpha_mlm: float = 0.2) -> torch.Tensor:
    """`Distiller.step`'s loss, formula for formula (masked_select over non-pad positions)."""
    vocab, dim = s_logits.size(-1), s_hidden.size(-1)
    mask = attention_mask.bool().unsqueeze(-1)
    s_slct = torch.masked_select(s_logits, mask.expand_as(s_logits)).view(-1, vocab)
    t_slct = torch.masked_select(t_logits, mask.expand_as(t_logits)).view(-1, vocab)
    loss_ce = F.kl_div(F.log_softmax(s_slct / temperature, dim=-1), F.softmax(t_slct / temperature, dim=-1),
                       reduction="batchmean") * temperature**2
    loss_mlm = F.cross_entropy(s_logits.view(-1, vocab), labels.view(-1), ignore_index=IGNORE_INDEX)
    s_h = torch.masked_select(s_hidden, mask.expand_as(s_hidden)).view(-1, dim)
    t_h = torch.masked_select(t_hidden, mask.expand_as(t_hidden)).view(-1, dim)
    loss_cos = F.cosine_embedding_loss(s_h, t_h, s_h.new_ones(s_h.size(0)), reduction="mean")
    return alpha_distil * loss_ce + alpha_mlm * loss_mlm + alpha_cosine * loss_cos


def _linear_warmup_decay(warmup: int, total: int):
    """transformers' `get_linear_schedule_with_warmup` factor, as `optim.learning_rate_schedule`."""
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


class TorchDistiller:
    """Teacher, student, AdamW and one batch; `run()` does one full distillation step."""

    def __init__(self, shape: harness.StepShape, train_cfg: Any, batch: dict[str, np.ndarray], seed: int = 0,
                 attn_implementation: str = "sdpa"):
        """`train_cfg` is a run config's `train` section (run_config.py): the same optimizer as JAX's."""
        from transformers import CamembertForMaskedLM

        if shape.dtype != "float32":
            raise ValueError("the torch reference runs on CPU in float32 only")
        torch.manual_seed(seed)
        self.shape, self.train_cfg = shape, train_cfg
        self.teacher = CamembertForMaskedLM(shape.teacher.to_hf_config(
            attn_implementation=attn_implementation)).eval().requires_grad_(False)
        self.student = CamembertForMaskedLM(shape.student.to_hf_config(
            attn_implementation=attn_implementation)).train()
        decay = [p for n, p in self.student.named_parameters() if not _no_decay(n)]
        no_decay = [p for n, p in self.student.named_parameters() if _no_decay(n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": train_cfg.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=train_cfg.learning_rate, betas=(train_cfg.adam_b1, train_cfg.adam_b2), eps=train_cfg.adam_eps,
            foreach=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _linear_warmup_decay(train_cfg.warmup_steps, train_cfg.steps))
        vocab = harness.SyntheticVocab(shape.teacher)
        self.specials, self.mask_id = vocab.all_special_ids, vocab.mask_token_id
        self.generator = torch.Generator().manual_seed(seed)
        self.input_ids = torch.from_numpy(batch["input_ids"]).long()
        self.attention_mask = torch.from_numpy(batch["attention_mask"]).long()

    def run(self) -> float:
        ids, labels = mask_tokens_torch(self.generator, self.input_ids, self.attention_mask,
                                        mask_token_id=self.mask_id, special_token_ids=self.specials,
                                        vocab_size=self.shape.vocab)
        with torch.no_grad():
            t_out = self.teacher(input_ids=ids, attention_mask=self.attention_mask, output_hidden_states=True)
        s_out = self.student(input_ids=ids, attention_mask=self.attention_mask, output_hidden_states=True)
        loss = distiller_loss(s_out.logits, t_out.logits, s_out.hidden_states[-1], t_out.hidden_states[-1],
                              labels, self.attention_mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), self.train_cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


def _no_decay(name: str) -> bool:
    """The distiller's `no_decay = ["bias", "LayerNorm.weight"]` (plus the LM head's layer_norm)."""
    return name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name


def compare(shape: harness.StepShape, config: Any, rounds: int, steps: int, attn: str) -> float:
    """Alternating rounds of JAX and torch steps; prints each round, returns the median speedup."""
    batch = harness.random_batch(shape)
    jax_step = harness.make_jax_step(shape, config)
    torch_step = TorchDistiller(shape, config.train, batch, attn_implementation=attn)
    print("compiling the JAX step and warming up both ...", flush=True)
    jax_step.run()
    torch_step.run()
    ratios, jax_all, torch_all, jax_cpu, torch_cpu = [], [], [], [], []
    for r in range(rounds):
        # One untimed step per round: the other framework's threads may still be spinning.
        jax_times = harness.time_calls(jax_step.run, steps, warmup=1, cpu_times=jax_cpu)
        torch_times = harness.time_calls(torch_step.run, steps, warmup=1, cpu_times=torch_cpu)
        jax_all += jax_times
        torch_all += torch_times
        ratios.append(harness.median(torch_times) / harness.median(jax_times))
        print(f"round {r + 1}/{rounds}: jax {harness.median(jax_times) * 1e3:.1f} ms/step, "
              f"torch {harness.median(torch_times) * 1e3:.1f} ms/step, ratio {ratios[-1]:.2f}", flush=True)
    # On a shared machine the fastest step is the least disturbed one: show it beside the medians.
    print(f"jax: {harness.spread(jax_all)}; torch: {harness.spread(torch_all)}; "
          f"ratio of the fastest steps {min(torch_all) / min(jax_all):.2f}")
    print(f"CPU seconds per step (all threads): jax {harness.median(jax_cpu):.2f}, "
          f"torch {harness.median(torch_cpu):.2f}, ratio {harness.median(torch_cpu) / harness.median(jax_cpu):.2f}")
    return harness.median(ratios)


def main() -> None:
    parser = cli.parser(__doc__)
    harness.add_shape_args(parser)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round (median taken)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating JAX/torch rounds (--compare)")
    parser.add_argument("--compare", action="store_true", help="time the JAX step too, alternating")
    parser.add_argument("--hf-attention", default="sdpa", choices=("sdpa", "eager"),
                        help="the HF models' attn_implementation")
    parser.add_argument("--threads", type=int, default=harness.available_cores(),
                        help="torch.set_num_threads; by default the cores this process may use")
    args = parser.parse_args()
    cli.setup_logging()
    torch.set_num_threads(args.threads)
    shape, config = harness.shape_and_config_from_args(args)
    print(f"shape: {shape.describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}, attention {args.hf_attention}", flush=True)
    if args.compare:
        speedup = compare(shape, config, args.rounds, args.steps, args.hf_attention)
        print(f"jax/torch speedup = {speedup:.2f}")
        return
    step = TorchDistiller(shape, config.train, harness.random_batch(shape), attn_implementation=args.hf_attention)
    times = harness.time_calls(step.run, args.steps, warmup=1)
    print(f"torch step: {harness.spread(times)}, {shape.tokens / harness.median(times):.0f} tokens/s")
    print(f"ms_per_step={harness.median(times) * 1e3:.2f} tokens_per_s={shape.tokens / harness.median(times):.0f}")


if __name__ == "__main__":
    main()
