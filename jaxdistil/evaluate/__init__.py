"""Evaluation: MLM metrics, fill-mask, downstream fine-tuning readers and metrics."""
