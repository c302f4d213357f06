"""fit_igr_prior: accuracy against uniform and Poisson targets, the on-disk cache, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import vaekit.distributions.relaxed.prior_fit as prior_fit
from vaekit.distributions.relaxed import IGR, IGRStickBreaking, RelaxedCategorical, fit_igr_prior


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path))
    return tmp_path / "igr_priors"


def _tv_of_mean_sample(prior, target: torch.Tensor, n: int = 100_000) -> float:
    """Total variation between the target and the mean of n fresh samples (independent of the fit's own check)."""
    torch.manual_seed(123)
    mean = prior.distribution().rsample((n,)).double().mean(0)
    return 0.5 * float((mean - target).abs().sum())


def _poisson(rate: float, k: int) -> torch.Tensor:
    p = torch.tensor([math.exp(-rate) * rate ** i / math.factorial(i) for i in range(k)], dtype=torch.float64)
    return p / p.sum()


@pytest.mark.parametrize("relaxation,target", [
    ("igr_i", torch.full((10,), 0.1, dtype=torch.float64)),
    ("igr_sb", _poisson(3.0, 10)),
], ids=["uniform10_igr_i", "poisson3_igr_sb"])
def test_fit_matches_target_within_001_tv(cache, relaxation, target):
    prior = fit_igr_prior(target, relaxation=relaxation, n_steps=300, num_samples=500)
    assert prior.loc.shape == prior.scale.shape == (9,) and bool((prior.scale > 0).all())
    assert isinstance(prior.distribution(), IGRStickBreaking if relaxation == "igr_sb" else IGR)
    tv = _tv_of_mean_sample(prior, target)
    assert tv < 0.01 and prior.tv_distance < 0.02
    # the unfitted standard normal is far from the target: the fit did the work
    unfitted = prior_fit.IGRPrior(torch.zeros(9), torch.ones(9), 0.0, relaxation, 0.5, 1.0)
    assert _tv_of_mean_sample(unfitted, target) > 0.05


def test_cache_is_written_reused_and_recomputed_when_corrupt(cache, monkeypatch):
    kw = dict(n_steps=20, num_samples=50)
    first = fit_igr_prior([0.2, 0.3, 0.5], **kw)
    files = list(cache.glob("*.safetensors"))
    assert len(files) == 1
    real_fit = prior_fit._fit
    monkeypatch.setattr(prior_fit, "_fit", lambda *a, **k: pytest.fail("recomputed a cached prior"))
    again = fit_igr_prior([0.2, 0.3, 0.5], **kw)
    assert torch.equal(again.loc, first.loc) and torch.equal(again.scale, first.scale)
    assert again.tv_distance == first.tv_distance
    monkeypatch.setattr(prior_fit, "_fit", real_fit)
    fit_igr_prior([0.2, 0.3, 0.5], temperature=0.3, **kw)  # other arguments: another file
    assert len(list(cache.glob("*.safetensors"))) == 2
    files[0].write_bytes(b"not a safetensors file")
    with pytest.warns(RuntimeWarning, match="corrupt"):
        redone = fit_igr_prior([0.2, 0.3, 0.5], **kw)
    assert torch.equal(redone.loc, first.loc)  # seeded: the recomputation is the same fit
    assert fit_igr_prior([0.2, 0.3, 0.5], **kw).loc.equal(first.loc)  # and the file is good again


def test_no_cache_writes_nothing(cache):
    fit_igr_prior([0.5, 0.5], n_steps=5, num_samples=10, cache=False)
    assert not cache.exists()


def test_family_fits_uniform_prior_on_demand_once(cache, monkeypatch):
    calls = []
    real = prior_fit.fit_igr_prior

    def quick(target, **kw):
        calls.append(kw["relaxation"])
        return real(target, **{**kw, "n_steps": 30, "num_samples": 100})

    monkeypatch.setattr(prior_fit, "fit_igr_prior", quick)
    family = RelaxedCategorical(4, n_variables=2, n_categories=3, relaxation="igr_sb", prior="uniform_fit")
    assert calls == []  # nothing is fitted at construction
    p1, p2 = family.prior_distribution(), family.prior_distribution()
    assert calls == ["igr_sb"] and isinstance(p1, IGRStickBreaking) and p1.batch_shape == (2,)
    assert torch.equal(p1.loc, p2.loc) and not torch.equal(p1.loc, torch.zeros(2, 2))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(target_probs=[0.5, 0.6]), ValueError, "sum to 1"),
    (dict(target_probs=[1.2, -0.2]), ValueError, "non-negative"),
    (dict(target_probs=[1.0]), ValueError, "K >= 2"),
    (dict(target_probs=[[0.5, 0.5]]), ValueError, "K >= 2"),
    (dict(target_probs="uniform"), TypeError, "probabilities"),
    (dict(target_probs=[0.5, 0.5], temperature=0.0), ValueError, "temperature"),
    (dict(target_probs=[0.5, 0.5], delta=-1.0), ValueError, "delta"),
    (dict(target_probs=[0.5, 0.5], relaxation="gs"), ValueError, "relaxation"),
    (dict(target_probs=[0.5, 0.5], n_steps=0), ValueError, "n_steps"),
    (dict(target_probs=[0.5, 0.5], lr=0.0), ValueError, "lr"),
])
def test_bad_input_raises_before_writing(cache, kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_igr_prior(**kwargs)
    assert not cache.exists()
