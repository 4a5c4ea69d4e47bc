r"""Is the teacher's learning curve ours, or the recipe's? The same MLM pre-training in HF + PyTorch.

The miniature reproduction's teacher (configs/mini.py) learns slowly: ~13 % held-out MLM accuracy
after a few thousand steps (docs/results.md). This trains HF's own `CamembertForMaskedLM`, from
the teacher's `student_config.json`, on the same token shards with the same hyperparameters, but
with HF's masking (`DataCollatorForLanguageModeling`, 15 %, 80/10/10) and torch's AdamW and
`get_linear_schedule_with_warmup`: nothing of jaxdistil's model, masking, optimizer or step.
The hyperparameters (batch, learning rate and schedule, AdamW's betas, eps and weight decay, clipping,
masking rate) are the teacher's, read from RUN/teacher/run_config.json. Every `--eval-every` steps it
prints the held-out MLM loss and accuracy over as many eval-shard blocks as the teacher evaluates
(masking seeded, the same blocks each time), to set beside the teacher's
`eval/mlm_accuracy` at the same steps in RUN/teacher/metrics.jsonl.

    python benchmarks/hf_mlm_reference.py --run runs/mini --steps 1000 --eval-every 500
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import time

# As benchmarks/torch_reference.py: libgomp's spinning waits cost torch dearly on a shared machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import transformers

from jaxdistil import cli
from jaxdistil.data.tokenize import read_shards


def evaluate(model, collator, blocks: np.ndarray, batch: int, seed: int) -> tuple[float, float]:
    """(mean masked-token loss, accuracy) over `blocks`, the masking drawn from `seed`."""
    model.eval()
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    total_loss = correct = count = 0.0
    with torch.no_grad():
        for start in range(0, len(blocks), batch):
            b = collator([{"input_ids": row} for row in torch.as_tensor(np.asarray(blocks[start:start + batch]))])
            logits = model(input_ids=b["input_ids"], attention_mask=(b["input_ids"] != collator.tokenizer.pad_token_id)
                           ).logits
            masked = b["labels"] != -100
            n = int(masked.sum())
            total_loss += float(torch.nn.functional.cross_entropy(logits[masked], b["labels"][masked],
                                                                  reduction="sum"))
            correct += float((logits[masked].argmax(-1) == b["labels"][masked]).sum())
            count += n
    torch.random.set_rng_state(generator_state)
    model.train()
    return total_loss / count, correct / count


def main(argv: list[str] | None = None) -> int:
    p = cli.parser(__doc__)
    p.add_argument("--run", type=pathlib.Path, required=True,
                   help="a reproduce_mini.sh RUN (tokenizer/, shards/, teacher/)")
    p.add_argument("--steps", type=int, default=1000, help="steps to train here")
    p.add_argument("--eval-every", type=int, default=500, help="steps between held-out evaluations")
    p.add_argument("--seed", type=int, default=0, help="model init, data order and masking")
    args = p.parse_args(argv)

    # The teacher's own hyperparameters, as its run recorded them (RUN/teacher/run_config.json).
    recorded = json.loads((args.run / "teacher" / "run_config.json").read_text())
    train_cfg, masking = recorded["train"], recorded["masking"]
    batch = train_cfg["batch_size"]
    torch.manual_seed(args.seed)
    tokenizer = transformers.AutoTokenizer.from_pretrained(args.run / "tokenizer")
    config = transformers.CamembertConfig(**json.loads((args.run / "teacher" / "student_config.json").read_text()))
    model = transformers.CamembertForMaskedLM(config)
    collator = transformers.DataCollatorForLanguageModeling(tokenizer, mlm_probability=masking["mlm_probability"],
                                                            return_tensors="pt")
    train, _ = read_shards(args.run / "shards" / "train", expected_vocab_size=config.vocab_size)
    eval_blocks, _ = read_shards(args.run / "shards" / "eval", expected_vocab_size=config.vocab_size)
    held_out = eval_blocks[:train_cfg["eval_batches"] * train_cfg["eval_batch_size"]]
    no_decay = [n for n, _ in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
    optimizer = torch.optim.AdamW(
        [{"params": [q for n, q in model.named_parameters() if n not in no_decay],
          "weight_decay": train_cfg["weight_decay"]},
         {"params": [q for n, q in model.named_parameters() if n in no_decay], "weight_decay": 0.0}],
        lr=train_cfg["learning_rate"], betas=(train_cfg["adam_b1"], train_cfg["adam_b2"]),
        eps=train_cfg["adam_eps"])
    schedule = transformers.get_linear_schedule_with_warmup(optimizer, train_cfg["warmup_steps"], train_cfg["steps"])
    order = np.random.default_rng(args.seed).permutation(len(train))
    print(f"HF CamembertForMaskedLM {config.num_hidden_layers} x {config.hidden_size}, "
          f"{sum(q.numel() for q in model.parameters()) / 1e6:.2f} M parameters; {len(train)} train blocks, "
          f"{len(held_out)} held-out blocks; torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    model.train()
    start, losses = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        rows = np.sort(order.take(range((step - 1) * batch, step * batch), mode="wrap"))  # each epoch in one order
        b = collator([{"input_ids": torch.tensor(train[i])} for i in rows])  # a copy: the shards are read-only maps
        loss = model(input_ids=b["input_ids"], attention_mask=(b["input_ids"] != tokenizer.pad_token_id),
                     labels=b["labels"]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg["max_grad_norm"])
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            eval_loss, accuracy = evaluate(model, collator, held_out, batch, seed=args.seed + 1)
            print(f"step {step}: train loss (mean of the last {min(len(losses), args.eval_every)}) "
                  f"{np.mean(losses[-args.eval_every:]):.3f}, held-out MLM loss {eval_loss:.3f} "
                  f"(perplexity {math.exp(eval_loss):.0f}), accuracy {accuracy:.4f}; "
                  f"{(time.perf_counter() - start) / step:.2f} s/step", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
