"""One meaning of a flow posterior's "mean": the flow at the base mean, used by every consumer."""

from __future__ import annotations

import pytest
import torch

from vaekit.analysis._common import encode_means, posterior_means
from vaekit.distributions import Bernoulli, make_posterior, point_estimate
from vaekit.embedding._model import posterior_mean
from vaekit.models import VAE
from vaekit.nn import MLP
from vaekit.runs import reconstruct


def _vae(name: str) -> VAE:
    torch.manual_seed(0)
    enc = MLP(12, 6, hidden=[16], activation="elu", output_activation="elu")
    dec = MLP(3, 12, hidden=[16], activation="elu")
    return VAE(enc, make_posterior(name, 6, 3, n_flows=2), dec, Bernoulli(), [12]).eval()


@pytest.mark.parametrize("name", ["planar", "sylvester_householder", "realnvp", "iaf", "af"])
def test_reconstruct_analysis_and_embedder_use_the_same_point_estimate(name):
    model = _vae(name)
    x = torch.bernoulli(torch.full((7, 12), 0.4), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        q = model.encode(x)["z"]
        point = point_estimate(q)
        if name == "af":  # the couplings at the means of q(v0|x) and q(z0|x, v0)
            v0 = q.q_v0.loc
            expected = q.push(q.q_z0(v0).loc, v0)[0]
        else:  # the flow at the base mean
            expected = q.push(q.base.loc)[0]
        torch.testing.assert_close(point, expected, rtol=0, atol=0)
        assert not torch.allclose(point, q.base.loc if name != "af" else q.q_z0(q.q_v0.loc).loc, atol=1e-4)
        torch.manual_seed(0)
        a = encode_means(model, x)["z"]
        torch.manual_seed(1)  # no randomness involved: another seed gives the same
        b = posterior_means(model, x, batch_size=3)["z"]
        torch.testing.assert_close(a, point, rtol=0, atol=1e-6)
        torch.testing.assert_close(b, point, rtol=0, atol=1e-6)
        torch.testing.assert_close(posterior_mean(model, x), point, rtol=0, atol=1e-6)
        torch.testing.assert_close(reconstruct(model, x), model.decode({"z": point}).mean, rtol=0, atol=1e-6)


def test_gaussian_point_estimate_is_its_mean_and_relaxed_needs_n_mc():
    from vaekit.distributions import GumbelSoftmax

    q = make_posterior("gaussian", 4, 2)(torch.randn(3, 4))
    torch.testing.assert_close(point_estimate(q), q.mean, rtol=0, atol=0)
    relaxed = GumbelSoftmax(torch.zeros(2, 5), 0.5)
    with pytest.raises(NotImplementedError, match="GumbelSoftmax has no closed-form mean.*pass n_mc"):
        point_estimate(relaxed)
    assert point_estimate(relaxed, n_mc=8).shape == (2, 5)
