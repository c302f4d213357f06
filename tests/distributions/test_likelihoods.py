"""Likelihoods are normalised, score what they should, and reject data outside their support."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vaekit.distributions import (Bernoulli, DiscretizedLogistic, DiscretizedLogisticDistribution,
                                  DiscretizedLogisticMixture, DiscretizedLogisticMixtureDistribution, Gaussian)

LIKELIHOODS = {
    "bernoulli": lambda: Bernoulli(),
    "gaussian_fixed": lambda: Gaussian("fixed", scale=0.5),
    "gaussian_learned": lambda: Gaussian("learned", scale=0.5),
    "gaussian_predicted": lambda: Gaussian("predicted"),
    "discretized_logistic": lambda: DiscretizedLogistic(),
    "discretized_logistic_mixture": lambda: DiscretizedLogisticMixture(n_mixtures=3),
}


@pytest.mark.parametrize("name", LIKELIHOODS)
@pytest.mark.parametrize("data_shape", [(5,), (2, 3, 3)])
def test_shapes(name, data_shape):
    lik = LIKELIHOODS[name]()
    params = torch.randn(4, 7, lik.params_per_dim * data_shape[0], *data_shape[1:])
    px = lik(params, len(data_shape))
    assert px.batch_shape == (4, 7) and px.event_shape == data_shape
    x = px.sample()
    assert x.shape == (4, 7, *data_shape)
    assert px.log_prob(x).shape == (4, 7)
    assert torch.isfinite(px.log_prob(x)).all()


def test_bernoulli_sums_to_one_over_binary_vectors():
    px = Bernoulli()(torch.randn(3), 1)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))
    torch.testing.assert_close(px.log_prob(xs).exp().sum(), torch.tensor(1.0))


def test_gaussian_matches_closed_form_and_learns_scale():
    lik = Gaussian("fixed", scale=2.0)
    px = lik(torch.zeros(1, 3), 1)
    expected = 3 * (-0.5 * math.log(2 * math.pi) - math.log(2.0))
    torch.testing.assert_close(px.log_prob(torch.zeros(1, 3)), torch.tensor([expected]))
    learned = Gaussian("learned", scale=2.0)
    torch.testing.assert_close(learned(torch.zeros(3), 1).base_dist.scale, torch.full((3,), 2.0))
    assert sum(p.numel() for p in learned.parameters()) == 1
    pred = Gaussian("predicted")
    px = pred(torch.cat([torch.zeros(1, 3), torch.full((1, 3), 10.0)], -1), 1)
    torch.testing.assert_close(px.base_dist.scale, torch.full((1, 3), 10.0 + 1e-3), atol=1e-3, rtol=0)


@pytest.mark.parametrize("loc,log_scale", [(0.0, 0.0), (0.7, -3.0), (-0.99, -6.0), (0.2, 1.0)])
def test_discretized_logistic_masses_sum_to_one(loc, log_scale):
    levels = torch.arange(256, dtype=torch.float64) / 255
    d = DiscretizedLogisticDistribution(torch.full((256,), loc, dtype=torch.float64),
                                        torch.full((256,), log_scale, dtype=torch.float64))
    assert abs(float(d.log_prob(levels).exp().sum()) - 1.0) < 1e-3


def test_discretized_logistic_sample_on_grid_and_concentrates():
    d = DiscretizedLogisticDistribution(torch.full((2000,), 0.0), torch.full((2000,), -7.0))
    s = d.sample()
    torch.testing.assert_close(s * 255, torch.round(s * 255))
    assert ((s - 128 / 255).abs() < 1.5 / 255).float().mean() > 0.99


def test_validation_of_support():
    with pytest.raises(ValueError, match="not binary"):
        Bernoulli().validate(torch.tensor([0.0, 0.5, 1.0]))
    Bernoulli(strict=False).validate(torch.tensor([0.0, 0.5]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        DiscretizedLogistic().validate(torch.tensor([1.5]))
    with pytest.raises(ValueError, match="variance must be"):
        Gaussian("per_pixel")


def test_logistic_mixture_is_normalised_and_reduces_to_one_component():
    torch.manual_seed(0)
    levels = torch.arange(256.0) / 255
    logits, loc, log_scale = torch.randn(3), torch.randn(3) * 0.5, torch.randn(3) - 2
    mix = DiscretizedLogisticMixtureDistribution(logits.expand(256, 3), loc.expand(256, 3), log_scale.expand(256, 3))
    assert float(mix.log_prob(levels).exp().sum()) == pytest.approx(1.0, abs=1e-4)
    # the mixture mass is the weighted sum of the component masses
    comps = torch.stack([DiscretizedLogisticDistribution(loc[m].expand(256), log_scale[m].expand(256)).log_prob(levels)
                         for m in range(3)], -1).exp()
    torch.testing.assert_close(mix.log_prob(levels).exp(), (comps * logits.softmax(0)).sum(-1))
    # one component: the plain discretized logistic
    params = torch.randn(5, 2 * 4)
    one = DiscretizedLogisticMixture(n_mixtures=1)(torch.cat([torch.zeros(5, 4), params], 1), 1)
    x = torch.randint(0, 256, (5, 4)) / 255
    torch.testing.assert_close(one.log_prob(x), DiscretizedLogistic()(params, 1).log_prob(x))


def test_logistic_mixture_samples_follow_the_weights():
    torch.manual_seed(1)
    n = 20000
    logits = torch.tensor([0.0, math.log(3.0)]).expand(n, 2)
    loc = torch.tensor([-0.8, 0.8]).expand(n, 2)
    x = DiscretizedLogisticMixtureDistribution(logits, loc, torch.full((n, 2), -4.0)).sample()
    assert float((x > 0.5).float().mean()) == pytest.approx(0.75, abs=0.015)
