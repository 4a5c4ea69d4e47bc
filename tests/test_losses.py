"""distillation_loss against a PyTorch restatement of HF's DistilBERT `Distiller.step`.

The reference gathers the selected rows with `masked_select` exactly as the distiller does
and uses torch's own loss modules, in float64 so it is the exact value; the JAX loss (fp32)
must match it, and torch autograd's gradients, to 1e-5. `fused_distillation_loss` (the LM
head's decoder applied inside the loss, chunk by chunk) is held to the same reference.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

from jaxdistil.losses import distillation_loss, fused_distillation_loss

BATCH, LENGTH, VOCAB, HIDDEN = 3, 9, 37, 16
TEMPERATURE = 2.0
ALPHAS = {"alpha_distil": 0.5, "alpha_cosine": 0.3, "alpha_mlm": 0.2}
TOL = 1e-5


def make_batch(seed: int) -> dict[str, np.ndarray]:
    """Random logits and hidden states on a padded batch with some masked labels.

    Padding positions get large values so that forgetting the mask changes every part.
    """
    rng = np.random.default_rng(seed)
    lengths = np.array([LENGTH, *rng.integers(2, LENGTH, size=BATCH - 1)])
    attention_mask = (np.arange(LENGTH)[None, :] < lengths[:, None]).astype(np.int32)
    chosen = (rng.random((BATCH, LENGTH)) < 0.3) & attention_mask.astype(bool)
    chosen[0, 1] = True  # at least one label
    labels = np.where(chosen, rng.integers(0, VOCAB, (BATCH, LENGTH)), -100).astype(np.int32)
    pad_scale = np.where(attention_mask[..., None] == 1, 1.0, 20.0)

    def draw(*shape: int, scale: float) -> np.ndarray:
        return (rng.normal(size=shape) * scale * pad_scale).astype(np.float32)

    return {
        "student_logits": draw(BATCH, LENGTH, VOCAB, scale=3.0),
        "teacher_logits": draw(BATCH, LENGTH, VOCAB, scale=3.0),
        "student_hidden": draw(BATCH, LENGTH, HIDDEN, scale=1.0),
        "teacher_hidden": draw(BATCH, LENGTH, HIDDEN, scale=1.0),
        "labels": labels,
        "attention_mask": attention_mask,
    }


def torch_distiller_loss(batch: dict[str, np.ndarray], restrict_ce_to_mask: bool) -> dict:
    """The distiller's loss, float64, with autograd gradients for the student inputs."""
    s_logits = torch.tensor(batch["student_logits"], dtype=torch.float64, requires_grad=True)
    t_logits = torch.tensor(batch["teacher_logits"], dtype=torch.float64)
    s_hidden = torch.tensor(batch["student_hidden"], dtype=torch.float64, requires_grad=True)
    t_hidden = torch.tensor(batch["teacher_hidden"], dtype=torch.float64)
    lm_labels = torch.tensor(batch["labels"], dtype=torch.long)
    attention_mask = torch.tensor(batch["attention_mask"], dtype=torch.bool)
    vocab = s_logits.size(-1)

    if restrict_ce_to_mask:
        mask = (lm_labels > -1).unsqueeze(-1).expand_as(s_logits)
    else:
        mask = attention_mask.unsqueeze(-1).expand_as(s_logits)
    s_logits_slct = torch.masked_select(s_logits, mask).view(-1, vocab)
    t_logits_slct = torch.masked_select(t_logits, mask).view(-1, vocab)
    loss_ce = (
        nn.KLDivLoss(reduction="batchmean")(
            nn.functional.log_softmax(s_logits_slct / TEMPERATURE, dim=-1),
            nn.functional.softmax(t_logits_slct / TEMPERATURE, dim=-1),
        )
        * TEMPERATURE**2
    )
    loss_mlm = nn.CrossEntropyLoss(ignore_index=-100)(s_logits.view(-1, vocab), lm_labels.view(-1))

    dim = s_hidden.size(-1)
    hidden_mask = attention_mask.unsqueeze(-1).expand_as(s_hidden)
    s_hidden_slct = torch.masked_select(s_hidden, hidden_mask).view(-1, dim)
    t_hidden_slct = torch.masked_select(t_hidden, hidden_mask).view(-1, dim)
    target = s_hidden_slct.new(s_hidden_slct.size(0)).fill_(1)
    loss_cos = nn.CosineEmbeddingLoss(reduction="mean")(s_hidden_slct, t_hidden_slct, target)

    total = (
        ALPHAS["alpha_distil"] * loss_ce + ALPHAS["alpha_cosine"] * loss_cos + ALPHAS["alpha_mlm"] * loss_mlm
    )
    total.backward()
    return {
        "total": total.item(),
        "distil": loss_ce.item(),
        "cosine": loss_cos.item(),
        "mlm": loss_mlm.item(),
        "grad_logits": s_logits.grad.numpy(),
        "grad_hidden": s_hidden.grad.numpy(),
    }


@functools.partial(jax.jit, static_argnames="restrict_to_mask")
def jax_loss_and_grads(batch: dict, restrict_to_mask: bool):
    def loss_fn(student_logits, student_hidden):
        return distillation_loss(
            student_logits,
            batch["teacher_logits"],
            student_hidden,
            batch["teacher_hidden"],
            batch["labels"],
            batch["attention_mask"],
            temperature=TEMPERATURE,
            restrict_to_mask=restrict_to_mask,
            **ALPHAS,
        )

    grad_fn = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)
    return grad_fn(batch["student_logits"], batch["student_hidden"])


@pytest.mark.parametrize("restrict_to_mask", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_torch_distiller(seed: int, restrict_to_mask: bool) -> None:
    batch = make_batch(seed)
    expected = torch_distiller_loss(batch, restrict_ce_to_mask=restrict_to_mask)
    (total, parts), (grad_logits, grad_hidden) = jax_loss_and_grads(batch, restrict_to_mask)

    np.testing.assert_allclose(float(total), expected["total"], rtol=TOL, atol=TOL)
    for name in ("distil", "cosine", "mlm"):
        np.testing.assert_allclose(float(parts[name]), expected[name], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(np.asarray(grad_logits), expected["grad_logits"], rtol=TOL, atol=TOL)
    np.testing.assert_allclose(np.asarray(grad_hidden), expected["grad_hidden"], rtol=TOL, atol=TOL)


def test_restricting_to_mask_changes_the_distil_part() -> None:
    """Guards the test above against a loss that ignores `restrict_to_mask`."""
    batch = make_batch(0)
    (_, everywhere), _ = jax_loss_and_grads(batch, False)
    (_, masked_only), _ = jax_loss_and_grads(batch, True)
    assert abs(float(everywhere["distil"]) - float(masked_only["distil"])) > 1e-3


def test_bf16_logits_are_computed_in_fp32() -> None:
    batch = make_batch(3)
    bf16 = {
        key: jnp.asarray(value, jnp.bfloat16) if value.dtype == np.float32 else value
        for key, value in batch.items()
    }
    # The exact reference for bf16 inputs: the distiller's loss on the bf16-rounded values.
    rounded = {key: np.asarray(value).astype(batch[key].dtype) for key, value in bf16.items()}
    expected = torch_distiller_loss(rounded, restrict_ce_to_mask=False)

    (total, parts), (grad_logits, _) = jax_loss_and_grads(bf16, False)

    assert total.dtype == jnp.float32
    assert all(part.dtype == jnp.float32 for part in parts.values())
    np.testing.assert_allclose(float(total), expected["total"], rtol=TOL, atol=TOL)
    for name in ("distil", "cosine", "mlm"):
        np.testing.assert_allclose(float(parts[name]), expected[name], rtol=TOL, atol=TOL)
    assert grad_logits.dtype == jnp.bfloat16
    unrounded = torch_distiller_loss(batch, restrict_ce_to_mask=False)
    np.testing.assert_allclose(float(total), unrounded["total"], rtol=2e-2)


def test_without_teacher_is_plain_mlm() -> None:
    batch = make_batch(4)
    total, parts = jax.jit(
        functools.partial(
            distillation_loss,
            temperature=1.0,
            alpha_distil=0.0,
            alpha_cosine=0.0,
            alpha_mlm=1.0,
        )
    )(batch["student_logits"], None, None, None, batch["labels"], batch["attention_mask"])

    vocab = batch["student_logits"].shape[-1]
    expected_mlm = nn.CrossEntropyLoss(ignore_index=-100)(
        torch.tensor(batch["student_logits"], dtype=torch.float64).view(-1, vocab),
        torch.tensor(batch["labels"], dtype=torch.long).view(-1),
    ).item()
    np.testing.assert_allclose(float(parts["mlm"]), expected_mlm, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(float(total), expected_mlm, rtol=TOL, atol=TOL)
    assert float(parts["distil"]) == 0.0 and float(parts["cosine"]) == 0.0


def test_missing_teacher_with_nonzero_weight_is_an_error() -> None:
    batch = make_batch(0)
    with pytest.raises(ValueError, match="alpha_distil"):
        distillation_loss(
            batch["student_logits"],
            None,
            None,
            None,
            batch["labels"],
            batch["attention_mask"],
            temperature=2.0,
            alpha_distil=0.5,
            alpha_cosine=0.0,
            alpha_mlm=0.5,
        )


@pytest.mark.parametrize("restrict_to_mask", [False, True])
def test_nothing_masked_gives_finite_values(restrict_to_mask: bool) -> None:
    batch = make_batch(5)
    batch["labels"] = np.full_like(batch["labels"], -100)
    (total, parts), grads = jax_loss_and_grads(batch, restrict_to_mask)

    assert float(parts["mlm"]) == 0.0
    if restrict_to_mask:
        assert float(parts["distil"]) == 0.0
    assert np.isfinite(float(total))
    assert all(np.isfinite(np.asarray(grad)).all() for grad in grads)


def test_zero_hidden_vector_follows_torch_eps() -> None:
    """torch's CosineEmbeddingLoss gives cos = 0 (loss 1) for a zero vector, never NaN."""
    batch = make_batch(6)
    batch["student_hidden"][0, 0] = 0.0
    expected = torch_distiller_loss(batch, restrict_ce_to_mask=False)
    (_, parts), _ = jax_loss_and_grads(batch, False)
    np.testing.assert_allclose(float(parts["cosine"]), expected["cosine"], rtol=TOL, atol=TOL)


def fused_case(seed: int) -> tuple[dict, dict]:
    """A `make_batch` whose logits are `features @ embeddings.T + bias`: (fused inputs, batch)."""
    batch = make_batch(seed)
    rng = np.random.default_rng(100 + seed)
    pad_scale = np.where(batch["attention_mask"][..., None] == 1, 1.0, 20.0)
    inputs = {}
    for who in ("student", "teacher"):
        features = (rng.normal(size=(BATCH, LENGTH, HIDDEN)) * pad_scale).astype(np.float32)
        embeddings = (rng.normal(size=(VOCAB, HIDDEN)) * 0.5).astype(np.float32)
        bias = (rng.normal(size=(VOCAB,)) * 0.3).astype(np.float32)
        inputs[who] = (features, embeddings, bias)
        batch[f"{who}_logits"] = (features.astype(np.float64) @ embeddings.T.astype(np.float64)
                                  + bias).astype(np.float32)
    return inputs, batch


@pytest.mark.parametrize("chunk_len", [1, 4, LENGTH, 64])  # 4 does not divide LENGTH: the rows get padded
@pytest.mark.parametrize("restrict_to_mask", [False, True])
def test_fused_head_matches_torch_distiller(restrict_to_mask: bool, chunk_len: int) -> None:
    inputs, batch = fused_case(int(restrict_to_mask))
    expected = torch_distiller_loss(batch, restrict_ce_to_mask=restrict_to_mask)
    s_features, s_embeddings, s_bias = inputs["student"]
    t_features, t_embeddings, t_bias = inputs["teacher"]

    def loss_fn(features, embeddings, bias, hidden):
        return fused_distillation_loss(
            features, (embeddings, bias), t_features, (t_embeddings, t_bias), hidden, batch["teacher_hidden"],
            batch["labels"], batch["attention_mask"], temperature=TEMPERATURE, restrict_to_mask=restrict_to_mask,
            chunk_len=chunk_len, **ALPHAS)

    grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1, 2, 3), has_aux=True))
    (total, parts), grads = grad_fn(s_features, s_embeddings, s_bias, batch["student_hidden"])

    np.testing.assert_allclose(float(total), expected["total"], rtol=TOL, atol=TOL)
    for name in ("distil", "cosine", "mlm"):
        np.testing.assert_allclose(float(parts[name]), expected[name], rtol=TOL, atol=TOL)
    # Chain rule through logits = features @ embeddings.T + bias, in float64.
    grad_logits = expected["grad_logits"].astype(np.float64)
    want = (grad_logits @ s_embeddings.astype(np.float64),
            np.einsum("blv,blh->vh", grad_logits, s_features.astype(np.float64)),
            grad_logits.sum(axis=(0, 1)), expected["grad_hidden"])
    for got, ref in zip(grads, want, strict=True):
        np.testing.assert_allclose(np.asarray(got), ref, rtol=TOL, atol=TOL * np.abs(ref).max())


def test_fused_head_without_teacher_is_plain_mlm() -> None:
    inputs, batch = fused_case(7)
    features, embeddings, bias = inputs["student"]
    kw = dict(temperature=1.0, alpha_distil=0.0, alpha_cosine=0.0, alpha_mlm=1.0)
    plain = jax.value_and_grad(lambda lg: distillation_loss(lg, None, None, None, batch["labels"],
                                                            batch["attention_mask"], **kw)[0])
    fused = jax.value_and_grad(lambda f: fused_distillation_loss(
        f, (embeddings, bias), None, None, None, None, batch["labels"], batch["attention_mask"], chunk_len=2,
        **kw)[0])
    value, grad_logits = plain(batch["student_logits"])
    fused_value, grad_features = fused(features)
    np.testing.assert_allclose(float(fused_value), float(value), rtol=TOL)
    np.testing.assert_allclose(np.asarray(grad_features), np.asarray(grad_logits) @ embeddings, rtol=1e-4,
                               atol=1e-6)
