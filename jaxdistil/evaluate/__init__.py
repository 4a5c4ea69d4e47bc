"""Evaluation of trained models; each module imports only those listed above it.

- `lengths`: input lengths taken from the models (the tools' length defaults and limits);
- `metrics`: token accuracy, seqeval entity P/R/F1, accuracy, macro-F1;
- `readers`: downstream data files (and Hub tasks) as `TaggedSentence` / `TextExample` records;
- `alignment`: words ⇄ sub-tokens, fixed-length encodings and per-word decoding;
- `tasks`: the downstream tasks, their splits, encoded and bound to their scorers;
- `finetune`: a task head fitted on a pretrained body, best-on-dev, exported to HF;
- `mlm`: held-out masked-LM metrics, teacher–student agreement, fill-mask.
"""
