"""Model-protocol contract, parametrized over every model configuration: add one line to MODELS."""

from __future__ import annotations

import pytest
import torch
from contract_helpers import check_protocol

from vaekit.distributions import DiagonalGaussian, Gaussian, LearnedGaussian
from vaekit.models import VAE, conv_vae, mlp_vae
from vaekit.nn import MLP
from vaekit.objectives import ELBO, IWAE, logmeanexp

MODELS = {
    "mlp_bernoulli": lambda: mlp_vae([20], 3, hidden=[16]),
    "mlp_bernoulli_learned_prior": lambda: mlp_vae([20], 3, hidden=[16], learned_prior=True),
    "mlp_gaussian": lambda: mlp_vae([20], 3, hidden=[16], likelihood="gaussian"),
    "mlp_gaussian_learned": lambda: mlp_vae([20], 3, hidden=[16], likelihood="gaussian_learned"),
    "mlp_gaussian_predicted": lambda: mlp_vae([20], 3, hidden=[16], likelihood="gaussian_predicted"),
    "mlp_logistic": lambda: mlp_vae([20], 3, hidden=[16], likelihood="discretized_logistic"),
    "mlp_image_input": lambda: mlp_vae([1, 4, 5], 3, hidden=[16]),
    "conv28_bernoulli": lambda: conv_vae([1, 28, 28], 4, channels=(4, 8), features=16),
    "conv32_logistic": lambda: conv_vae([3, 32, 32], 4, channels=(4, 4, 8), features=16, likelihood="discretized_logistic"),
    "mc_kl": lambda: VAE(MLP(20, 8), DiagonalGaussian(8, 3), MLP(3, 20), Gaussian(), [20], kl="mc"),
}


def _data(model, n=6):
    torch.manual_seed(0)
    x = torch.rand(n, *model.data_shape)
    name = type(model.likelihood).__name__
    return torch.bernoulli(x) if name == "Bernoulli" else x


@pytest.mark.parametrize("name", MODELS)
def test_protocol_shapes(name):
    model = MODELS[name]()
    check_protocol(model, _data(model))


@pytest.mark.parametrize("name", MODELS)
def test_elbo_terms_equal_single_log_weight_with_mc_kl(name):
    """With the same noise, rec + log p - log q from elbo_terms is the k=1 log-weight."""
    model = MODELS[name]()
    x = _data(model)
    torch.manual_seed(3)
    t = model.elbo_terms(x)
    torch.manual_seed(3)
    lw = model.log_weights(x, 1)[0]
    n = model.latent_names[0]
    torch.testing.assert_close(t.rec + t.log_p[n] - t.log_q[n], lw, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name", MODELS)
def test_objectives_backpropagate_to_all_parameters(name):
    model = MODELS[name]()
    x = _data(model)
    for objective in (ELBO(), IWAE(k=3), ELBO(warmup="entropy", warmup_steps=10), ELBO(free_bits=0.5)):
        model.zero_grad()
        loss, metrics = objective(model, x, step=2)
        assert loss.shape == () and torch.isfinite(loss)
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, f"{objective}: no gradient for {missing}"


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip_gives_identical_outputs(name):
    a, b = MODELS[name](), MODELS[name]()
    b.load_state_dict(a.state_dict())
    x = _data(a)
    torch.manual_seed(5)
    la = a.log_weights(x, 4)
    torch.manual_seed(5)
    torch.testing.assert_close(b.log_weights(x, 4), la)


def test_analytic_kl_is_expectation_of_mc_kl():
    torch.manual_seed(0)
    model = mlp_vae([20], 3, hidden=[16])
    x = torch.bernoulli(torch.rand(4, 20))
    analytic = model.elbo_terms(x).kl["z"]
    model.kl_method = "mc"
    with torch.no_grad():  # 20000 single-sample MC KLs per example, in one batched call
        mc = model.elbo_terms(x.repeat(20000, 1)).kl["z"].reshape(20000, 4).mean(0)
    torch.testing.assert_close(mc, analytic, atol=0.08, rtol=0.0)


def test_elbo_below_iwae_in_expectation():
    torch.manual_seed(0)
    model = mlp_vae([20], 3, hidden=[16])
    x = torch.bernoulli(torch.rand(8, 20))
    with torch.no_grad():
        lw = model.log_weights(x, 2000)
    elbo = lw.mean()
    iwae = [logmeanexp(lw[: k * (2000 // k)].reshape(k, -1, 8), 0).mean() for k in (1, 10, 100)]
    assert elbo <= iwae[1] <= iwae[2] + 1e-6


def test_entropy_warmup_and_free_bits_numbers():
    torch.manual_seed(0)
    model = mlp_vae([20], 3, hidden=[16])
    x = torch.bernoulli(torch.rand(8, 20))
    torch.manual_seed(1)
    t = model.elbo_terms(x)
    torch.manual_seed(1)
    loss, _ = ELBO(warmup="entropy", warmup_steps=4)(model, x, step=1)  # beta = 0.25
    expected = -(t.rec.mean() + t.log_p["z"].mean() - 0.25 * t.log_q["z"].mean())
    torch.testing.assert_close(loss, expected)
    torch.manual_seed(1)
    loss_fb, _ = ELBO(free_bits=100.0)(model, x)  # every KL below 100 nats/dim -> constant 300
    torch.testing.assert_close(loss_fb, -t.rec.mean() + 300.0)


def test_bad_input_errors():
    model = mlp_vae([20], 3, hidden=[16])
    with pytest.raises(ValueError, match=r"has shape \(4, 21\).*\(batch, 20\)"):
        model.validate_data(torch.zeros(4, 21))
    with pytest.raises(TypeError, match="floating-point"):
        model.validate_data(torch.zeros(4, 20, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN/inf"):
        model.validate_data(torch.full((2, 20), float("nan")))
    with pytest.raises(ValueError, match="not binary"):
        model.validate_data(torch.full((2, 20), 0.5))
    with pytest.raises(ValueError, match="empty"):
        model.validate_data(torch.zeros(0, 20))
    with pytest.raises(ValueError, match="decoder returns 21 numbers per example"):
        VAE(MLP(20, 8), DiagonalGaussian(8, 3), MLP(3, 21), Gaussian(), [20]).sample(2)
    with pytest.raises(ValueError, match="prior has 4 latent features"):
        VAE(MLP(20, 8), DiagonalGaussian(8, 3), MLP(3, 20), Gaussian(), [20], prior=LearnedGaussian(4))
    with pytest.raises(TypeError, match="likelihood must be a Likelihood"):
        VAE(MLP(20, 8), DiagonalGaussian(8, 3), MLP(3, 20), "gaussian", [20])
