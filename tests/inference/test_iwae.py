"""Tests of the IWAE log-likelihood estimator against exact linear-Gaussian likelihoods."""

from __future__ import annotations

import json
import math

import pytest
import torch
from linear_gaussian import LinearGaussian, exact_posterior, orthogonal_columns
from torch import Tensor, nn

from vaekit.distributions import DiagonalGaussian, Gaussian
from vaekit.inference import IWAEResult, iwae_log_likelihood
from vaekit.models import VAE, ElboTerms, LatentVariableModel
from vaekit.nn import MLP
from vaekit.objectives import ELBO

D, d, SIGMA = 6, 3, 0.5


def sample_data(W: Tensor, b: Tensor, sigma: float, n: int, seed: int) -> Tensor:
    """``n`` draws of x from the linear-Gaussian model, float64."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, W.shape[1], generator=g, dtype=torch.float64)
    return z @ W.T + b + sigma * torch.randn(n, W.shape[0], generator=g, dtype=torch.float64)


@pytest.fixture
def orthogonal() -> tuple[LinearGaussian, Tensor]:
    """A model whose exact posterior is diagonal (orthogonal columns of W), q = that posterior."""
    W = orthogonal_columns(D, d, [2.0, 1.0, 0.5])
    b = torch.linspace(-1, 1, D, dtype=torch.float64)
    return LinearGaussian(W, b, SIGMA), sample_data(W, b, SIGMA, 40, seed=1)


class Recording(LatentVariableModel):
    """Wraps a model and records every ``log_weights`` call: (k, batch, training, grad enabled)."""

    def __init__(self, inner: LatentVariableModel) -> None:
        super().__init__()
        self.inner = inner
        self.data_shape = inner.data_shape
        self.calls: list[tuple[int, int, bool, bool]] = []

    def validate_data(self, x, name: str = "x") -> Tensor:
        return self.inner.validate_data(x, name)

    def log_weights(self, x: Tensor, k: int = 1) -> Tensor:
        self.calls.append((k, x.shape[0], self.training, torch.is_grad_enabled()))
        return self.inner.log_weights(x, k)

    def elbo_terms(self, x: Tensor) -> ElboTerms:
        return self.inner.elbo_terms(x)


class WeightsOnly:
    """Mixin for test models known only through their log-weights: the one-sample ELBO is ``log_weights(x, 1)``."""

    def elbo_terms(self, x: Tensor) -> ElboTerms:
        return ElboTerms(rec=self.log_weights(x, 1)[0], kl={})


class Table(WeightsOnly, LatentVariableModel):
    """Serves fixed float32 log-weights ``table[i, :]`` in order to example ``i`` (x[:, 0] = i)."""

    data_shape = (1,)

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.table = table
        self.served = torch.zeros(table.shape[0], dtype=torch.long)

    def log_weights(self, x: Tensor, k: int = 1) -> Tensor:
        ids = x[:, 0].long()
        out = torch.stack([self.table[i, self.served[i]:self.served[i] + k] for i in ids.tolist()], 1)
        self.served[ids] += k
        return out


def paired(a: Tensor, b: Tensor) -> tuple[float, float]:
    """Mean and standard error of ``a - b`` over examples."""
    diff = a - b
    return float(diff.mean()), float(diff.std() / math.sqrt(diff.numel()))


def assert_increasing(results: dict[int, IWAEResult]) -> None:
    """IWAE_k increases with k: paired over the same examples, by 3 standard errors up to
    k=100 and by one from 100 to 1000 (the weights are heavy-tailed, so that step is the
    noisiest; in both tests over 8 seeds its smallest z-score was 2.1)."""
    ks = sorted(results)
    for lo, hi in zip(ks[:-1], ks[1:]):
        diff, se = paired(results[hi].per_example, results[lo].per_example)
        z = 1.0 if hi >= 1000 else 3.0
        assert diff > z * se, f"IWAE_{hi} - IWAE_{lo} = {diff:.4f} +- {se:.4f}"


# ---------------------------------------------------------------- exactness
@pytest.mark.parametrize("k", [1, 10, 1000])
def test_exact_posterior_makes_every_k_exact(orthogonal, k):
    model, x = orthogonal
    torch.manual_seed(0)
    res = iwae_log_likelihood(model, x, k=k, chunk_size=300)
    exact = model.log_marginal(x)
    assert res.per_example.dtype == torch.float64 and res.per_example.device.type == "cpu"
    assert torch.allclose(res.per_example, exact, rtol=0, atol=1e-5)
    assert torch.allclose(res.elbo_per_example, exact, rtol=0, atol=1e-5)
    assert res.mean == pytest.approx(float(exact.mean()), abs=1e-5)
    assert res.stderr == pytest.approx(float(exact.std()) / math.sqrt(len(x)), rel=1e-6)
    assert res.k == k and res.n == len(x)


def test_inexact_q_orders_elbo_iwae_and_exact(orthogonal):
    """ELBO <= IWAE_10 <= IWAE_100 <= IWAE_1000 <= log p(x), ELBO gap = KL(q || posterior)."""
    exact_model, _ = orthogonal
    model = LinearGaussian(exact_model.W, exact_model.b, SIGMA, c=exact_model.c.detach() + 0.5,
                           log_s=exact_model.log_s.detach() + 0.3)  # shifted, over-dispersed q
    x = sample_data(exact_model.W, exact_model.b, SIGMA, 1000, seed=2)
    log_p, kl = model.log_marginal(x), model.kl_to_posterior(x)
    torch.manual_seed(0)
    results = {k: iwae_log_likelihood(model, x, k=k) for k in (1, 10, 100, 1000)}

    # E_q[log w] = log p(x) - KL(q || p(z|x)): the 1000-sample ELBO average matches it
    gap, se = paired(log_p - results[1000].elbo_per_example, kl)
    assert abs(gap) < 4 * se + 1e-3 and se < 0.01
    assert float(kl.mean()) > 3.0  # q really is off
    assert_increasing(results)
    for k, res in results.items():
        gap, se = paired(log_p, res.per_example)
        assert gap > -3 * se, f"IWAE_{k} above log p(x) by {-gap:.4f} +- {se:.4f}"
    assert abs(results[1000].mean - float(log_p.mean())) < 0.05
    assert results[1].mean < float(log_p.mean()) - 2.0


def test_chunking_is_exact_and_accumulates_in_float64():
    """Every split of k into chunks and of the data into batches gives the float64 logsumexp."""
    n, k = 5, 1000
    g = torch.Generator().manual_seed(0)
    table = (-5000.0 + 30.0 * torch.randn(n, k, generator=g)).float()  # float32 ulp here ~5e-4
    expected = torch.logsumexp(table.double(), 1) - math.log(k)
    x = torch.arange(n, dtype=torch.float32)[:, None]
    for chunk_size, batch_size in [(7, 2), (1000, 5), (1, 1), (999, 3), (64, None)]:
        model = Table(table)
        res = iwae_log_likelihood(model, x, k=k, chunk_size=chunk_size, batch_size=batch_size)
        assert torch.equal(model.served, torch.full((n,), k))  # each weight used exactly once
        assert torch.allclose(res.per_example, expected, rtol=0, atol=1e-9), (chunk_size, batch_size)
        assert torch.allclose(res.elbo_per_example, table.double().mean(1), rtol=0, atol=1e-9)
        assert res.chunk_size == chunk_size


def test_all_zero_weights_give_minus_infinity():
    table = torch.zeros(2, 4)
    table[1] = -math.inf
    res = iwae_log_likelihood(Table(table), torch.tensor([[0.0], [1.0]]), k=4, chunk_size=3)
    assert abs(float(res.per_example[0])) < 1e-12 and res.per_example[1] == -math.inf
    assert res.to_dict()["mean"] is None


# ---------------------------------------------------------------- memory bound
@pytest.mark.parametrize("k, chunk_size", [(100, 7), (5, 7), (1000, 1000)])
def test_model_never_asked_for_more_than_chunk_size(orthogonal, k, chunk_size):
    model = Recording(orthogonal[0])
    iwae_log_likelihood(model, orthogonal[1], k=k, chunk_size=chunk_size, batch_size=16)
    assert max(c[0] for c in model.calls) == min(k, chunk_size)
    assert max(c[1] for c in model.calls) == 16
    assert sum(kc * b for kc, b, *_ in model.calls) == k * len(orthogonal[1])  # k samples per example


def test_max_elements_bounds_samples_times_batch(orthogonal):
    model = Recording(orthogonal[0])
    res = iwae_log_likelihood(model, orthogonal[1], k=100, max_elements=50)
    assert (res.chunk_size, res.batch_size) == (50, 1)
    assert max(kc * b for kc, b, *_ in model.calls) <= 50
    model.calls.clear()
    res = iwae_log_likelihood(model, orthogonal[1], k=100, batch_size=4, max_elements=50)
    assert (res.chunk_size, res.batch_size) == (12, 4)
    assert max(kc * b for kc, b, *_ in model.calls) <= 50


def test_default_budget_scales_with_example_size():
    """28x28-sized examples on the CPU: at most 2**22 / 784 = 5350 (sample, example) pairs."""
    W = orthogonal_columns(784, 2, [1.0, 1.0])
    model = Recording(LinearGaussian(W, torch.zeros(784, dtype=torch.float64), 1.0))
    x = torch.zeros(3, 784, dtype=torch.float64)
    res = iwae_log_likelihood(model, x, k=5000)
    assert (res.chunk_size, res.batch_size) == (5000, 1)
    assert max(kc * b for kc, b, *_ in model.calls) <= 2**22 // 784


# ---------------------------------------------------------------- mode and gradients
def test_runs_in_eval_mode_without_grad_and_restores_modes(orthogonal):
    model = Recording(orthogonal[0])
    model.train()
    model.inner.eval()  # mixed modes must come back as they were
    iwae_log_likelihood(model, orthogonal[1], k=3)
    assert all(not training and not grad for _, _, training, grad in model.calls)
    assert model.training and not model.inner.training


# ---------------------------------------------------------------- result object
def test_result_to_dict_is_json(orthogonal):
    res = iwae_log_likelihood(*orthogonal, k=4)
    out = json.loads(json.dumps(res.to_dict(per_example=True)))
    assert out["k"] == 4 and out["n"] == 40 and out["estimator"] == "iwae"
    assert out["mean"] == pytest.approx(res.mean) and out["stderr"] == pytest.approx(res.stderr)
    assert out["per_example"] == pytest.approx(res.per_example.tolist())
    assert "per_example" not in res.to_dict()
    one = iwae_log_likelihood(orthogonal[0], orthogonal[1][:1], k=4)
    assert math.isnan(one.stderr) and one.to_dict()["stderr"] is None
    assert isinstance(one, IWAEResult)


def test_progress_bar_reports_sample_example_pairs(orthogonal, capsys):
    iwae_log_likelihood(*orthogonal, k=4, batch_size=8, progress=True)
    err = capsys.readouterr().err
    assert "IWAE k=4" in err and "160/160" in err


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, exc, match", [
    ({"k": 0}, ValueError, "k must be an int >= 1, got 0"),
    ({"k": -3}, ValueError, "k must be an int >= 1, got -3"),
    ({"k": 2.5}, TypeError, "k must be an int >= 1, got 2.5 of type float"),
    ({"k": True}, TypeError, "k must be an int >= 1, got True"),
    ({"chunk_size": 0}, ValueError, "chunk_size must be an int >= 1, got 0"),
    ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
    ({"max_elements": 0}, ValueError, "max_elements must be an int >= 1, got 0"),
    ({"device": "cuda"}, ValueError, "device='cuda' but the model's parameters are on 'cpu'"),
    ({"device": "not-a-device"}, ValueError, "device must name a torch device"),
])
def test_bad_arguments(orthogonal, kwargs, exc, match):
    model = Recording(orthogonal[0])
    model.train()
    with pytest.raises(exc, match=match):
        iwae_log_likelihood(model, orthogonal[1], **{"k": 5, **kwargs})
    assert model.calls == [] and model.training  # nothing ran, mode untouched


@pytest.mark.parametrize("make_x, exc, match", [
    (lambda x: x.clone().index_fill_(0, torch.tensor([3]), math.nan), ValueError, "NaN/inf"),
    (lambda x: x[:, :4], ValueError, r"shape \(40, 4\) but this model expects \(batch, 6\)"),
    (lambda x: x[0], ValueError, r"shape \(6,\)"),
    (lambda x: x.long(), TypeError, "floating-point"),
    (lambda x: x.numpy(), TypeError, "must be a torch.Tensor"),
])
def test_bad_data(orthogonal, make_x, exc, match):
    model = Recording(orthogonal[0])
    with pytest.raises(exc, match=match):
        iwae_log_likelihood(model, make_x(orthogonal[1]), k=5)
    assert model.calls == []


def test_not_a_model():
    with pytest.raises(TypeError, match="model must be a vaekit.models.LatentVariableModel, got Linear"):
        iwae_log_likelihood(nn.Linear(2, 2), torch.zeros(3, 2), k=5)


class Broken(WeightsOnly, LatentVariableModel):
    data_shape = (2,)

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def log_weights(self, x: Tensor, k: int = 1) -> Tensor:
        if self.mode == "shape":
            return torch.zeros(x.shape[0], k)
        out = torch.zeros(k, x.shape[0])
        out[:, -1] = math.nan
        return out


def test_protocol_violations_are_reported():
    with pytest.raises(RuntimeError, match=r"Broken.log_weights\(x, 5\) .* shape \(5, 3\), got \(3, 5\)"):
        iwae_log_likelihood(Broken("shape"), torch.zeros(3, 2), k=5)
    model = Broken("nan")
    model.train()
    with pytest.raises(RuntimeError, match="NaN or \\+inf for 1 of 3 example\\(s\\) \\(first: index 2\\)"):
        iwae_log_likelihood(model, torch.zeros(3, 2), k=5)
    assert model.training


# ---------------------------------------------------------------- the headline number
def test_linear_gaussian_vae_with_fitted_posterior_is_within_005_nats():
    """A VAE with decoder fixed to known (W, b) and only q fitted by the ELBO: IWAE_1000 ~ log p(x).

    The true posterior is correlated (-0.72), so the best diagonal q leaves a KL gap of
    0.37 nats that importance weighting closes as k grows.
    """
    D, d, sigma = 8, 2, 0.5
    W = orthogonal_columns(D, d, [1.5, 1.5]) @ torch.tensor([[1.0, 0.8], [0.0, 0.6]], dtype=torch.float64)
    b = torch.linspace(-1.0, 1.0, D, dtype=torch.float64)
    truth = LinearGaussian(W, b, sigma)
    x_fit, x = sample_data(W, b, sigma, 500, seed=3), sample_data(W, b, sigma, 2000, seed=4)

    torch.manual_seed(0)
    vae = VAE(MLP(D, D), DiagonalGaussian(D, d), MLP(d, D), Gaussian("fixed", scale=sigma), [D]).double()
    with torch.no_grad():
        vae.decoder[0].weight.copy_(W)
        vae.decoder[0].bias.copy_(b)
    opt = torch.optim.Adam([*vae.encoder.parameters(), *vae.posterior.parameters()], lr=1e-2)
    elbo = ELBO()
    for step in range(300):
        loss, _ = elbo(vae, x_fit, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(vae.decoder[0].weight, W)  # only q was fitted

    log_p = truth.log_marginal(x)
    A, c, cov = exact_posterior(W, b, sigma)
    best_diag = LinearGaussian(W, b, sigma, A=A, c=c, log_s=-0.5 * torch.linalg.inv(cov).diagonal().log())
    best_gap = float(best_diag.kl_to_posterior(x).mean())
    results = {k: iwae_log_likelihood(vae, x, k=k) for k in (1, 10, 100, 1000)}

    # the fit got close to the best diagonal posterior (an ELBO gap of 0.37 nats)
    elbo_gap = float((log_p - results[1000].elbo_per_example).mean())
    assert best_gap == pytest.approx(0.365, abs=0.01)
    assert best_gap - 0.01 < elbo_gap < best_gap + 0.05
    # ELBO <= IWAE_10 <= IWAE_100 <= IWAE_1000 <= log p(x), each step significant
    assert_increasing(results)
    gap, se = paired(log_p, results[1000].per_example)
    assert -3 * se < gap < 0.05
