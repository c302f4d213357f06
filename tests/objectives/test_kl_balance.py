"""ELBO's logistic warm-up shape and NVAE-style KL balancing, checked against hand computations."""

from __future__ import annotations

import pytest
import torch

from vaekit.models import ElboTerms, LatentVariableModel
from vaekit.objectives import ELBO, KLWeight


class FixedTerms(LatentVariableModel):
    """Returns given per-example terms: the objective's arithmetic is all that is tested."""

    def __init__(self, rec, kl, dims):
        super().__init__()
        self.terms = ElboTerms(rec=rec, kl=kl)
        self.latent_dims = dims

    def elbo_terms(self, batch):
        return self.terms

    def log_weights(self, x, k=1):  # every draw weighs the fixed ELBO
        return self.terms.elbo.expand(k, -1)


def test_balancing_coefficients_match_nvae_formula():
    kl = {"top": torch.tensor([1.0, 3.0]), "bottom": torch.tensor([8.0, 12.0])}
    model = FixedTerms(torch.tensor([-5.0, -7.0]), kl, {"top": 2, "bottom": 8})
    beta = 0.25
    loss, _ = ELBO(warmup_steps=4, kl_balance=True)(model, None, step=1)
    # coefficients: (mean|KL| + 0.01) / (dim / min dim), normalised to mean 1
    c = torch.tensor([2.0 + 0.01, (10.0 + 0.01) / 4])
    c = c / c.mean()
    expected = 6.0 + beta * (c[0] * 2.0 + c[1] * 10.0)
    torch.testing.assert_close(loss, expected)
    plain, _ = ELBO(warmup_steps=4)(model, None, step=1)
    torch.testing.assert_close(plain, torch.tensor(6.0 + beta * 12.0))
    assert not torch.isclose(loss, plain)


def test_balancing_stops_after_warmup_and_is_not_differentiated():
    kl_top = torch.tensor([1.0, 3.0], requires_grad=True)
    kl_bot = torch.tensor([8.0, 12.0], requires_grad=True)
    model = FixedTerms(torch.tensor([-5.0, -7.0]), {"top": kl_top, "bottom": kl_bot}, {"top": 2, "bottom": 8})
    after, _ = ELBO(warmup_steps=4, kl_balance=True)(model, None, step=4)
    torch.testing.assert_close(after, torch.tensor(6.0 + 12.0))
    loss, _ = ELBO(warmup_steps=4, kl_balance=True)(model, None, step=2)
    loss.backward()
    c = torch.tensor([2.01, 10.01 / 4])
    c = c / c.mean()
    # d loss / d KL_l(example) = beta * c_l / batch: the coefficients are constants
    torch.testing.assert_close(kl_top.grad, torch.full((2,), 0.5 * float(c[0]) / 2))
    torch.testing.assert_close(kl_bot.grad, torch.full((2,), 0.5 * float(c[1]) / 2))


def test_logistic_warmup_shape():
    w = KLWeight(1.0, warmup_steps=100, shape="logistic")
    assert w(50) == pytest.approx(0.5)
    assert w(10) < 0.01 and w(90) > 0.99 and w(100) == 1.0
    assert ELBO(warmup_steps=100, warmup_shape="logistic").weight(10) == pytest.approx(w(10))


def test_bad_arguments():
    with pytest.raises(ValueError, match="shape must be 'linear' or 'logistic'"):
        ELBO(warmup_shape="cosine")
    with pytest.raises(ValueError, match="kl_balance weights the KL terms"):
        ELBO(warmup="entropy", kl_balance=True)
