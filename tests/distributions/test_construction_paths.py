"""The direct constructions of the per-step distributions equal torch's constructors, and the cached prior
follows its buffers."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
from torch.distributions import Bernoulli, Independent, Normal

from vaekit.distributions import DiagonalNormal, StandardNormal
from vaekit.distributions.likelihoods import Bernoulli as BernoulliLikelihood
from vaekit.distributions.likelihoods import _IndependentBernoulli


@pytest.mark.parametrize("shape, event_dims", [((5, 3), 1), ((2, 4, 3, 3), 3), ((4, 2, 3), 2), ((3,), 1)])
def test_diagonal_normal_matches_torchs_independent_normal(shape, event_dims):
    g = torch.Generator().manual_seed(0)
    loc, scale = torch.randn(shape, generator=g), torch.rand(shape, generator=g) + 0.1
    ours = DiagonalNormal(loc, scale, event_dims=event_dims)
    ref = Independent(Normal(loc, scale), event_dims)
    assert (ours.batch_shape, ours.event_shape) == (ref.batch_shape, ref.event_shape)
    assert ours.base_dist.batch_shape == ref.base_dist.batch_shape and ours.base_dist.event_shape == torch.Size()
    assert ours._validate_args is False and ours.base_dist._validate_args is False
    assert ours.loc is loc and ours.scale is scale and ours.reinterpreted_batch_ndims == event_dims
    z = torch.randn(shape, generator=g)
    torch.testing.assert_close(ours.log_prob(z), ref.log_prob(z), rtol=0, atol=0)
    torch.testing.assert_close(ours.entropy(), ref.entropy(), rtol=0, atol=0)
    assert ours.expand((7, *ours.batch_shape)).batch_shape == (7, *ours.batch_shape)
    torch.manual_seed(1)
    a = ours.rsample((2,))
    torch.manual_seed(1)
    b = ref.rsample((2,))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_diagonal_normal_still_validates_and_broadcasts():
    with pytest.raises(ValueError, match="scale"):
        DiagonalNormal(torch.zeros(3), -torch.ones(3), validate_args=True)
    d = DiagonalNormal(torch.zeros(3), torch.ones(4, 3))  # broadcast: the constructor of torch
    assert d.batch_shape == (4,) and d.event_shape == (3,)
    with pytest.raises(ValueError, match="event_dims=2"):
        DiagonalNormal(torch.zeros(3), torch.ones(3), event_dims=2)


@pytest.mark.parametrize("event_ndim", [0, 1, 2])
def test_bernoulli_of_logits_matches_the_constructors(event_ndim):
    logits = torch.randn(4, 2, 5)
    x = torch.bernoulli(torch.full((4, 2, 5), 0.3))
    ours = _IndependentBernoulli.of_logits(logits, event_ndim)
    ref = Independent(Bernoulli(logits=logits, validate_args=False), event_ndim)
    assert (ours.batch_shape, ours.event_shape) == (ref.batch_shape, ref.event_shape)
    assert ours._validate_args == ref._validate_args  # (the class default, as Independent leaves it)
    assert (ours.base_dist.batch_shape, ours.base_dist.event_shape) == (logits.shape, torch.Size())
    assert ours.base_dist._validate_args is False and ours.base_dist.logits is logits
    torch.testing.assert_close(ours.log_prob(x), ref.log_prob(x), rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(ours.mean, ref.mean)
    with pytest.raises(ValueError, match="reinterpreted_batch_ndims"):
        _IndependentBernoulli.of_logits(logits, 4)
    assert isinstance(BernoulliLikelihood()(logits, event_ndim), _IndependentBernoulli)


def test_standard_normal_reuses_its_distribution_and_follows_its_buffers():
    prior = StandardNormal(3)
    p = prior()
    assert prior() is p and p.standard and p.event_shape == (3,)
    prior.double()  # new buffer tensors: a new distribution of their dtype
    q = prior()
    assert q is not p and q.loc.dtype == torch.float64 and q.standard
    assert q.loc is prior.loc and q.scale is prior.scale
    for clone in (copy.deepcopy(prior), pickle.loads(pickle.dumps(prior))):
        assert "_dist" not in clone.__dict__ or clone.__dict__["_dist"].loc is clone.loc
        d = clone()
        assert d.loc is clone.loc and d.loc.dtype == torch.float64
        torch.testing.assert_close(d.log_prob(torch.zeros(3, dtype=torch.float64)), q.log_prob(torch.zeros(3, dtype=torch.float64)))


def test_rsample_reads_the_loc_and_scale_properties_of_a_subclass():
    class Floored(DiagonalNormal):
        @property
        def scale(self):
            return self.base_dist.scale.clamp(min=0.5)

    d = Floored(torch.zeros(3), torch.full((3,), 1e-3))
    torch.manual_seed(0)
    a = d.rsample()
    torch.manual_seed(0)
    b, _ = d.rsample_and_log_prob()
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.abs().max() > 0.01  # the floored scale, not the constructor's 1e-3
