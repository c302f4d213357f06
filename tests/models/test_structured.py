"""Structured output prediction: the conditional log-likelihood improves with training, agrees
with the generic IWAE estimator, and bad data shapes are rejected."""

from __future__ import annotations

import pytest
import torch

from vaekit.inference import iwae_log_likelihood
from vaekit.models.structured import StructuredPredictor, split_halves, structured_predictor


def halves_data(n: int = 64) -> torch.Tensor:
    """4x4 'images' whose lower half is a deterministic function (mirror) of the upper half, with noise."""
    g = torch.Generator().manual_seed(0)
    upper = torch.bernoulli(torch.full((n, 1, 2, 4), 0.5), generator=g)
    lower = upper.flip(-2)
    x = torch.cat([upper, lower], -2)
    return (x + torch.bernoulli(torch.full_like(x, 0.05), generator=g)) % 2


@pytest.mark.parametrize("relaxation", ["gs", "igr_i"])
def test_conditional_likelihood_improves_with_training(relaxation):
    x = halves_data()
    torch.manual_seed(0)
    model = structured_predictor([1, 4, 4], n_variables=4, n_categories=4, hidden=[32], relaxation=relaxation,
                                 temperature=0.5)
    before = float(model.conditional_log_likelihood(x, k=100).mean())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        opt.zero_grad()
        (-model.elbo_terms(x).rec.mean()).backward()
        opt.step()
    after = float(model.conditional_log_likelihood(x, k=100).mean())
    assert after > before + 1.0, (before, after)
    # the generic estimator sees the same weights
    torch.manual_seed(1)
    generic = iwae_log_likelihood(model, x, k=100).mean
    assert generic == pytest.approx(after, abs=0.15)


def test_split_and_shapes():
    x = torch.arange(16.0).reshape(1, 16)
    up, low = split_halves(x, [16])
    assert up.tolist() == [list(range(8))] and low.tolist() == [list(range(8, 16))]
    model = structured_predictor([16], n_variables=2, n_categories=3, hidden=[8])
    xb = torch.bernoulli(torch.full((5, 16), 0.5))
    terms = model.elbo_terms(xb)
    assert terms.rec.shape == (5,) and float(terms.kl["z"].abs().sum()) == 0
    assert model.log_weights(xb, 7).shape == (7, 5)
    assert model.predict(xb, k=20).shape == (5, 8)
    # the prediction ignores the lower half of the input
    changed = xb.clone()
    changed[:, 8:] = 1 - changed[:, 8:]
    torch.manual_seed(0)
    a = model.relaxed_context(xb)
    torch.manual_seed(0)
    torch.testing.assert_close(a, model.relaxed_context(changed))


def test_bad_input():
    with pytest.raises(ValueError, match="even"):
        structured_predictor([15])
    with pytest.raises(ValueError, match="even height"):
        structured_predictor([1, 5, 4])
    model = structured_predictor([16], n_variables=2, n_categories=3, hidden=[8])
    with pytest.raises(ValueError, match=r"shape \(2, 784\)"):
        model.conditional_log_likelihood(torch.zeros(2, 784))
    with pytest.raises(ValueError, match="train_samples"):
        StructuredPredictor(model.encoder, model.posterior, model.decoder, model.likelihood, [16], train_samples=0)
