"""The ELBO objective's loss and metrics: the loss keeps its arithmetic bit for bit, the metrics carry no
autograd record, a KL that is not per example is averaged by itself, and a VAE subclass's encode is used."""

from __future__ import annotations

import pytest
import torch

from vaekit.models import ElboTerms, VAE, mlp_vae
from vaekit.objectives import ELBO


class _Terms:
    """A stand-in model returning fixed terms."""

    def __init__(self, rec, kl):
        self.rec, self.kl, self.latent_dims = rec, kl, {k: 1 for k in kl}

    def elbo_terms(self, batch):
        return ElboTerms(rec=self.rec, kl=dict(self.kl))


@pytest.mark.parametrize("beta_steps, step", [(0, 0), (10, 4), (1000, 3)])
def test_loss_and_metrics_are_the_means_of_the_terms_bit_for_bit(beta_steps, step):
    """loss = beta * (sum of the KL means) - mean(rec) in that order (float32, bit for bit: a run resumed from an
    older checkpoint keeps its arithmetic), loss = -elbo exactly at beta = 1, metrics without autograd."""
    g = torch.Generator().manual_seed(0)
    rec = (100 * torch.randn(100, generator=g)).requires_grad_()
    kl = {"a": (30 * torch.rand(100, generator=g)).requires_grad_(),
          "b": (3 * torch.rand(100, generator=g)).requires_grad_()}
    obj = ELBO(warmup_steps=beta_steps)
    beta = obj.weight(step)
    loss, metrics = obj(_Terms(rec, kl), None, step)
    total = kl["a"].mean() + kl["b"].mean()
    want = (total if beta == 1.0 else beta * total) - rec.mean()
    torch.testing.assert_close(loss, want, rtol=0, atol=0)
    torch.testing.assert_close(metrics["elbo"], (rec.mean() - total).detach(), rtol=0, atol=0)
    if beta == 1.0:
        assert torch.equal(metrics["loss"], -metrics["elbo"])
    torch.testing.assert_close(metrics["rec"], rec.mean().detach(), rtol=0, atol=0)
    torch.testing.assert_close(metrics["kl/a"], kl["a"].mean().detach(), rtol=0, atol=0)
    assert all(not v.requires_grad for v in metrics.values())
    loss.backward()
    torch.testing.assert_close(rec.grad, torch.full_like(rec, -1 / 100))
    torch.testing.assert_close(kl["b"].grad, torch.full_like(rec, beta / 100))


def test_a_kl_of_another_shape_takes_the_mean_of_each_term():
    rec = torch.tensor([1.0, 2.0, 3.0, 4.0])
    kl = {"group": torch.tensor([0.5, 1.5])}  # per group, not per example
    loss, metrics = ELBO()(_Terms(rec, kl), None)
    torch.testing.assert_close(loss, torch.tensor(1.0 - 2.5))
    torch.testing.assert_close(metrics["elbo"], torch.tensor(2.5 - 1.0))


def test_a_vae_subclass_with_its_own_encode_is_trained_through_it():
    calls = []

    class Noisy(VAE):
        def encode(self, x):
            calls.append(x.shape)
            return super().encode(x)

    base = mlp_vae([6], latent_features=2, hidden=[4])
    model = Noisy(base.encoder, base.posterior, base.decoder, base.likelihood, [6])
    x = torch.bernoulli(torch.full((3, 6), 0.5))
    ELBO()(model, x)
    assert calls == [torch.Size([3, 6])]
    ELBO()(base, x)  # (the plain VAE: no encode call needed)
