"""The PyTorch comparison step computes the same loss as jaxdistil, and masks the same way.

`benchmarks/torch_reference.py` is only worth comparing against if it does the same work:
here its distiller loss, on HF models holding the very weights of our Flax models, matches
`jaxdistil.losses.distillation_loss` on a padded batch, and its masking follows the recipe.
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import harness
from jaxdistil.convert import params_to_state_dict
from jaxdistil.data.masking import mask_tokens
from jaxdistil.losses import distillation_loss
from jaxdistil.modeling import MaskedLM, init_params

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SHAPE = harness.StepShape(teacher_layers=2, student_layers=1, hidden=64, heads=2, ffn=128, vocab=300, batch=3, seq=16)


@pytest.fixture(scope="module")
def ref():
    return importlib.import_module("benchmarks.torch_reference")  # after importorskip("torch")


def _both(cfg, seed, ids, attention_mask):
    """(Flax output, HF output) of one model with the same random weights, eval mode."""
    model = MaskedLM(cfg)
    params = init_params(model, jax.random.key(seed))
    flax_out = model.apply({"params": params}, ids, attention_mask)
    hf = transformers.CamembertForMaskedLM(cfg.to_hf_config()).eval()
    hf.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in params_to_state_dict(params).items()},
                       strict=False)  # the tied decoder weight is the word embeddings
    with torch.no_grad():
        hf_out = hf(input_ids=torch.from_numpy(np.array(ids)).long(),
                    attention_mask=torch.from_numpy(np.array(attention_mask)).long(), output_hidden_states=True)
    return flax_out, hf_out


def test_distiller_loss_matches_jaxdistil(ref):
    batch = harness.random_batch(SHAPE)
    batch["input_ids"][1, 10:] = SHAPE.teacher.pad_token_id
    batch["attention_mask"][1, 10:] = 0
    vocab = harness.SyntheticVocab(SHAPE.teacher)
    specials, mask_id = vocab.all_special_ids, vocab.mask_token_id
    mask = jnp.asarray(batch["attention_mask"])
    ids, labels = mask_tokens(jax.random.key(3), jnp.asarray(batch["input_ids"]), mask, mask_token_id=mask_id,
                              special_token_ids=specials, vocab_size=SHAPE.vocab)
    (jt, ht), (js, hs) = _both(SHAPE.teacher, 1, ids, mask), _both(SHAPE.student, 2, ids, mask)
    expected, _ = distillation_loss(js.logits, jt.logits, js.hidden_states[-1], jt.hidden_states[-1], labels, mask,
                                    temperature=2.0, alpha_distil=0.5, alpha_cosine=0.3, alpha_mlm=0.2)
    got = ref.distiller_loss(hs.logits, ht.logits, hs.hidden_states[-1], ht.hidden_states[-1],
                             torch.from_numpy(np.array(labels)).long(), torch.from_numpy(batch["attention_mask"]))
    assert abs(float(got) - float(expected)) < 1e-5 * abs(float(expected))


def test_torch_masking_follows_the_recipe(ref):
    shape = harness.StepShape(batch=64, seq=128)
    batch = harness.random_batch(shape)
    vocab = harness.SyntheticVocab(shape.teacher)
    specials, mask_id = vocab.all_special_ids, vocab.mask_token_id
    ids = torch.from_numpy(batch["input_ids"]).long()
    masked, labels = ref.mask_tokens_torch(torch.Generator().manual_seed(0), ids,
                                           torch.from_numpy(batch["attention_mask"]).long(),
                                           mask_token_id=mask_id, special_token_ids=specials, vocab_size=shape.vocab)
    chosen = labels != -100
    assert not chosen[:, 0].any() and not chosen[:, -1].any()  # <s> and </s> are never chosen
    assert abs(chosen.float().mean().item() - 0.15 * 126 / 128) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    assert abs((masked[chosen] == mask_id).float().mean().item() - 0.8) < 0.03
    kept = (masked[chosen] == ids[chosen]).float().mean().item()
    assert 0.07 < kept < 0.14  # 10 % kept (+ the rare random draw of the same id)
    assert not torch.isin(masked[chosen & (masked != mask_id)], torch.tensor(specials)).any()
