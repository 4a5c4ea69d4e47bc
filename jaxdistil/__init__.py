"""jaxdistil: distil RoBERTa-family masked LMs (CamemBERT first) in JAX/Flax."""

__version__ = "0.1.0"
