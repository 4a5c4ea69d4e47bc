"""Text corpora, tokenisation, packing, the grain pipeline and MLM masking."""
