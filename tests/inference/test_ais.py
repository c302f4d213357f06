"""Tests of AIS, reverse AIS and BDMC against exact linear-Gaussian likelihoods."""

from __future__ import annotations

import json
import math

import pytest
import torch
from linear_gaussian import LinearGaussian, PriorProposal, exact_posterior
from torch import Tensor

from vaekit.inference import (AISResult, BDMCResult, HMCSettings, ais_log_likelihood, ais_schedule, bdmc, combine_max,
                              iwae_log_likelihood, reverse_ais)
from vaekit.inference._hmc import LatentPacker
from vaekit.models import LatentVariableModel, mlp_vae

D, d, SIGMA = 8, 3, 0.5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors here are tiny: on a shared 2-core machine extra threads only wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(seed: int = 3) -> LinearGaussian:
    """Random (non-orthogonal) W: a correlated posterior, about 5x narrower than the prior."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, d, generator=g, dtype=torch.float64)
    return LinearGaussian(W, torch.linspace(-1, 1, D, dtype=torch.float64), SIGMA)


def paired(a: Tensor, b: Tensor) -> tuple[float, float]:
    """Mean and standard error of ``a - b`` over examples."""
    diff = a - b
    return float(diff.mean()), float(diff.std() / math.sqrt(diff.numel()))


def simulate(model: LatentVariableModel, n: int, seed: int) -> tuple[dict[str, Tensor], Tensor]:
    torch.manual_seed(seed)
    with torch.no_grad():
        z = model.sample_prior(n)
        return z, model.decode(z).sample()


@pytest.fixture(scope="module")
def lg() -> tuple[LinearGaussian, Tensor, Tensor]:
    model = make_model()
    _, x = simulate(model, 20, seed=0)
    return model, x, model.log_marginal(x)


class Split(PriorProposal, LatentVariableModel):
    """The linear-Gaussian model with its latent split into ``{"a": (n, 1), "b": (n, 2, 2)}``."""

    def __init__(self, inner: LinearGaussian) -> None:
        super().__init__()
        assert inner.W.shape[1] == 5
        self.inner, self.data_shape = inner, inner.data_shape

    def _join(self, z: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"z": torch.cat([z["a"], z["b"].flatten(-2)], -1)}

    def log_prior(self, z):
        return self.inner.log_prior(self._join(z))

    def log_joint(self, x, z):
        return self.inner.log_joint(x, self._join(z))

    def decode(self, z):
        return self.inner.decode(self._join(z))

    def sample_prior(self, n):
        z = self.inner.sample_prior(n)["z"]
        return {"a": z[:, :1], "b": z[:, 1:].reshape(n, 2, 2)}


class Flat(PriorProposal, LatentVariableModel):
    """``log p(x | z) = -|x|^2`` for every z: every AIS weight equals it exactly. Counts calls."""

    data_shape = (2,)

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def log_prior(self, z):
        return -0.5 * (z["z"] ** 2).sum(-1)

    def log_joint(self, x, z):
        self.calls += 1
        assert not self.training
        return self.log_prior(z) - (x**2).sum(-1)

    def sample_prior(self, n):
        return {"z": torch.randn(n, 3)}

    def decode(self, z):
        return torch.distributions.Independent(torch.distributions.Normal(torch.zeros(*z["z"].shape[:-1], 2), 1.0), 1)


# ---------------------------------------------------------------- schedules
@pytest.mark.parametrize("kind", ["linear", "sigmoidal"])
@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_schedule_endpoints_and_monotone(kind, n):
    betas = ais_schedule(n, kind)
    assert betas.shape == (n + 1,) and betas.dtype == torch.float64
    assert betas[0].item() == 0.0 and betas[-1].item() == 1.0
    assert bool((betas.diff() > 0).all())
    assert torch.allclose(betas + betas.flip(0), torch.ones_like(betas), atol=1e-12)  # symmetric about 1/2


def test_schedule_shapes():
    lin, sig = ais_schedule(100, "linear"), ais_schedule(100, "sigmoidal")
    assert torch.allclose(lin.diff(), torch.full((100,), 0.01, dtype=torch.float64))
    steps = sig.diff()
    assert steps[0] < 0.2 * 0.01 and steps[50] > 1.5 * 0.01  # small at the ends, large in the middle
    assert bool((steps[:50].diff() > 0).all())
    assert torch.allclose(ais_schedule(10, "sigmoidal", radius=1e-3), ais_schedule(10, "linear"), atol=1e-6)


# ---------------------------------------------------------------- exactness
@pytest.mark.parametrize("schedule, max_error", [("sigmoidal", 0.5), ("linear", 1.0)])
def test_ais_matches_exact_log_likelihood(lg, schedule, max_error):
    """Over 8 seeds the mean error had standard deviation 0.01 (sigmoidal) / 0.025 (linear) and
    the largest per-example error was 0.21 / 0.56 nats. Chains are nearly free here (the time
    goes into the 5,000 sequential gradient steps), so 64 of them keep the test far from its bounds."""
    model, x, exact = lg
    torch.manual_seed(1)
    res = ais_log_likelihood(model, x, n_chains=64, n_steps=500, schedule=schedule)
    diff = res.per_example - exact
    assert abs(float(diff.mean())) < 0.1, float(diff.mean())
    assert float(diff.abs().max()) < max_error, diff
    # the test can fail: importance sampling from the prior (one step) is far off
    naive = ais_log_likelihood(model, x, n_chains=64, n_steps=1)
    assert float((naive.per_example - exact).mean()) < -1.0
    assert res.per_example.dtype == torch.float64 and res.log_weights.shape == (20, 64)


def test_named_multidimensional_latents_are_packed():
    model = Split(LinearGaussian(torch.randn(D, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64),
                                 torch.zeros(D, dtype=torch.float64), 1.0))
    _, x = simulate(model, 12, seed=0)
    res = ais_log_likelihood(model, x, n_chains=16, n_steps=300)  # over 8 seeds: error sd 0.02
    assert abs(res.mean - float(model.inner.log_marginal(x).mean())) < 0.1
    assert res.settings["n_chains"] == 16 and res.log_weights.shape == (12, 16)


def test_packer_round_trip_and_rejects_discrete_latents():
    z = {"a": torch.randn(4, 5, 1), "b": torch.randn(4, 5, 2, 3).double()}
    packer = LatentPacker({k: v[0] for k, v in z.items()}, 1)
    back = packer.unpack(packer.pack(z, 2))
    assert packer.dim == 7 and packer.dtype == torch.float64
    assert all(torch.equal(back[k], z[k]) and back[k].dtype == z[k].dtype for k in z)
    with pytest.raises(TypeError, match="latent 'c' is torch.int64"):
        LatentPacker({"c": torch.zeros(3, 2, dtype=torch.long)}, 1)


def test_constant_likelihood_gives_exact_weights_for_any_batching():
    x = torch.tensor([[0.0, 1.0], [1.0, 1.0], [2.0, 0.5], [0.0, 3.0], [1.5, 1.5]])
    for batch_size in (1, 2, 5, None):
        res = ais_log_likelihood(Flat(), x, n_chains=3, n_steps=4, leapfrog_steps=2, batch_size=batch_size)
        assert torch.allclose(res.log_weights, -(x.double() ** 2).sum(1, keepdim=True).expand(5, 3), atol=1e-6)
        assert torch.allclose(res.ess, torch.full((5,), 3.0, dtype=torch.float64))
        assert res.settings["batch_size"] == (batch_size or 5)


# ---------------------------------------------------------------- reverse AIS and BDMC
def test_reverse_single_step_is_the_likelihood_at_the_start(lg):
    """With T = 1 reverse AIS has no transition: log u = log p(x | z_init) for every chain."""
    model, x, _ = lg
    z = {"z": torch.randn(20, d, dtype=torch.float64)}
    res = reverse_ais(model, x, z, n_chains=3, n_steps=1)
    loglik = model.log_joint(x, z) - model.log_prior(z)
    assert res.direction == "reverse" and torch.allclose(res.per_example, loglik.detach(), atol=1e-10)
    assert torch.allclose(res.log_weights, loglik.detach()[:, None].expand(20, 3), atol=1e-10)


def test_reverse_from_exact_posterior_is_an_upper_bound(lg):
    """AIS <= log p(x) <= reverse AIS from exact posterior draws, with fixed step sizes (the bound needs them).

    Over seeds 0-3 of the draws: with 5 steps reverse AIS was 2.5-2.8 nats above the exact log p(x)
    (standard error 0.3-0.5) and forward AIS 0.8-7.3 below; with 100 steps reverse was 0.24-0.63 above
    and the bracket (reverse - forward) 0.56-1.06 nats wide.
    """
    model, x, exact = lg
    A, c, cov = exact_posterior(model.W, model.b, SIGMA)
    torch.manual_seed(2)
    z = {"z": torch.distributions.MultivariateNormal(x @ A.T + c, cov).sample()}
    high, low = {}, {}
    for steps in (5, 100):
        torch.manual_seed(0)
        upper = reverse_ais(model, x, z, n_chains=4, n_steps=steps, adapt=False)
        lower = ais_log_likelihood(model, x, n_chains=4, n_steps=steps, adapt=False)
        (high[steps], se_high), (low[steps], se_low) = paired(upper.per_example, exact), paired(lower.per_example, exact)
        assert low[steps] <= 3 * se_low and high[steps] >= -3 * se_high, (steps, low, se_low, high, se_high)
        if steps == 5:  # an upper bound that is really above log p: a short schedule leaves it well above
            assert 1.5 < high[5] < 4.0 and high[5] > 5 * se_high, (high, se_high)
    # and a tight one: 100 steps bring reverse AIS within a nat of log p and the bracket below 1.5 nats
    width = {steps: high[steps] - low[steps] for steps in high}
    assert high[100] < 1.0 and width[100] < 1.5 and width[100] < width[5] / 2, (high, width)


def test_bdmc_brackets_exact_and_gap_shrinks():
    model = make_model()
    gaps = []
    for steps in (3, 30, 300):
        torch.manual_seed(5)
        res = bdmc(model, 20, n_chains=8, n_steps=steps)
        exact = model.log_marginal(res.x)
        # stochastic bounds: each side may cross the exact value by sampling noise only
        low, se_low = paired(res.forward.per_example, exact)
        high, se_high = paired(res.reverse.per_example, exact)
        assert low <= 3 * se_low and high >= -3 * se_high, (steps, low, se_low, high, se_high)
        assert torch.allclose(res.gap, res.reverse.per_example - res.forward.per_example)
        gaps.append(res.mean_gap)
    # over 4 seeds the gaps were 4.3-8.7, 0.65-1.1 and -0.01-0.08 nats (the last is noise around 0)
    assert gaps[0] > 2 * gaps[1] and gaps[1] > gaps[2] + 0.3 and abs(gaps[2]) < 0.3, gaps
    assert isinstance(res, BDMCResult) and res.x.shape == (20, D) and res.z["z"].shape == (20, d)
    out = json.loads(json.dumps(res.to_dict(per_example=True)))
    assert out["forward"]["direction"] == "forward" and out["reverse"]["direction"] == "reverse"
    assert out["mean_gap"] == pytest.approx(res.mean_gap) and len(out["gap"]) == 20


# ---------------------------------------------------------------- step size adaptation
def test_adaptation_moves_acceptance_to_target(lg):
    model, x, _ = lg
    torch.manual_seed(3)
    res = ais_log_likelihood(model, x, n_chains=8, n_steps=400, schedule="linear", step_size=0.01)
    late = res.trace["acceptance"][200:]
    assert res.trace["acceptance"].shape == (399,) and res.trace["step_size"].shape == (399,)
    assert abs(float(late.mean()) - 0.65) < 0.15
    assert res.trace["step_size"][0] == pytest.approx(0.01) and res.step_size.min() > 0.05
    high = ais_log_likelihood(model, x, n_chains=8, n_steps=400, schedule="linear", target_accept=0.95)
    assert float(high.step_size.mean()) < 0.7 * float(res.step_size.mean())
    assert float(high.trace["acceptance"][200:].mean()) > 0.85
    fixed = ais_log_likelihood(model, x, n_chains=2, n_steps=20, adapt=False, step_size=0.2, return_diagnostics=False)
    assert torch.equal(fixed.step_size, torch.full((20,), 0.2, dtype=torch.float64)) and fixed.trace is None
    clamp = ais_log_likelihood(model, x, n_chains=2, n_steps=50, step_size=0.3, step_size_bounds=(0.3, 0.31))
    assert bool(((clamp.step_size >= 0.3) & (clamp.step_size <= 0.31)).all())


# ---------------------------------------------------------------- a real VAE
def test_mlp_vae_shapes_bounds_grads_and_modes():
    torch.manual_seed(0)
    model = mlp_vae([20], 3, [16])
    model.train()
    model.decoder.eval()  # mixed modes come back as they were
    x = torch.bernoulli(torch.full((10, 20), 0.3))
    res = ais_log_likelihood(model, x, n_chains=8, n_steps=100)
    assert res.per_example.shape == (10,) and res.log_weights.shape == (10, 8)
    assert bool(torch.isfinite(res.per_example).all()) and res.acceptance.shape == (10,)
    assert res.grad_evals == 10 * 8 * (1 + 99 * 10)
    assert all(p.grad is None for p in model.parameters())
    assert model.training and model.encoder.training and not model.decoder.training
    elbo = iwae_log_likelihood(model, x, k=1000)
    above, se = paired(res.per_example, elbo.elbo_per_example)
    assert above > -3 * se
    assert abs(res.mean - elbo.mean) < 0.2  # IWAE_1000 is near exact for this small model


# ---------------------------------------------------------------- results and combination
def test_result_to_dict_is_json(lg):
    model, x, _ = lg
    res = ais_log_likelihood(model, x[:3], n_chains=2, n_steps=5)
    out = json.loads(json.dumps(res.to_dict(per_example=True)))
    assert out["estimator"] == "ais" and out["n"] == 3 and out["n_chains"] == 2
    assert out["mean"] == pytest.approx(res.mean) and out["per_example"] == pytest.approx(res.per_example.tolist())
    assert out["settings"]["step_size_bounds"] == [1e-4, 0.5] and out["settings"]["n_steps"] == 5
    one = ais_log_likelihood(model, x[:1], n_chains=1, n_steps=1)
    assert math.isnan(one.stderr) and one.to_dict()["stderr"] is None and one.to_dict()["acceptance"] is None
    assert isinstance(one, AISResult) and math.isnan(float(one.log_weight_var[0]))


def test_combine_max():
    ais, iwae = torch.tensor([-90.0, -85.0, -80.0]), torch.tensor([-89.0, -86.0, -80.0], dtype=torch.float64)
    assert torch.equal(combine_max(ais, iwae), torch.tensor([-89.0, -85.0, -80.0], dtype=torch.float64))
    res = AISResult(ais[:, None].double(), "forward", torch.ones(3), torch.ones(3), {})
    assert torch.equal(combine_max(res, iwae), combine_max(ais, iwae))
    with pytest.raises(ValueError, match="same examples"):
        combine_max(ais, iwae[:2])
    with pytest.raises(ValueError, match="iwae must be a 1-d tensor"):
        combine_max(ais, iwae[None])


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, error, match", [
    ({"n_chains": 0}, ValueError, "n_chains must be an int >= 1, got 0"),
    ({"n_chains": 2.5}, TypeError, "n_chains must be an int"),
    ({"n_steps": 0}, ValueError, "n_steps must be an int >= 1, got 0"),
    ({"leapfrog_steps": 0}, ValueError, "leapfrog_steps must be an int >= 1, got 0"),
    ({"target_accept": 0.0}, ValueError, r"target_accept must be a number in \(0, 1\), got 0.0"),
    ({"target_accept": 1.2}, ValueError, "target_accept .* got 1.2"),
    ({"step_size": 0.0}, ValueError, "step_size must be a number inside step_size_bounds"),
    ({"step_size": 0.9}, ValueError, r"step_size .*\(0.0001, 0.5\), got 0.9"),
    ({"step_size_bounds": (0.0, 1.0)}, ValueError, r"step_size_bounds must be \(low, high\) with 0 < low <= high"),
    ({"step_size_bounds": (0.5, 0.1)}, ValueError, r"step_size_bounds .* got \(0.5, 0.1\)"),
    ({"step_size_bounds": (0.1,)}, ValueError, "step_size_bounds"),
    ({"schedule": "cosine"}, ValueError, "schedule must be 'linear' or 'sigmoidal', got 'cosine'"),
    ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
    ({"device": "cuda:0"}, ValueError, "device='cuda:0' but the model's parameters are on 'cpu'"),
])
def test_bad_settings_raise_before_any_work(kwargs, error, match):
    model = Flat()
    model.register_buffer("anchor", torch.zeros(1))  # the model lives on the CPU
    x = torch.zeros(2, 2)
    for call in (lambda: ais_log_likelihood(model, x, **kwargs),
                 lambda: reverse_ais(model, x, {"z": torch.zeros(2, 3)}, **kwargs),
                 lambda: bdmc(model, 2, **kwargs)):
        with pytest.raises(error, match=match):
            call()
    assert model.calls == 0


def test_hmc_settings_are_one_object_for_all_three_estimators(lg):
    model, x, _ = lg
    kernel = HMCSettings(leapfrog_steps=3, step_size=0.1, target_accept=0.8, adapt=False)
    runs = []
    for how in ({"hmc": kernel}, {"leapfrog_steps": 3, "step_size": 0.1, "target_accept": 0.8, "adapt": False}):
        torch.manual_seed(4)
        runs.append(ais_log_likelihood(model, x[:4], n_chains=2, n_steps=6, **how))
    assert torch.equal(runs[0].log_weights, runs[1].log_weights)  # the same kernel, the same chains
    assert runs[0].settings["leapfrog_steps"] == 3 and runs[0].settings["adapt"] is False
    assert torch.equal(runs[0].step_size, torch.full((4,), 0.1, dtype=torch.float64))  # not adapted
    assert runs[0].grad_evals == 4 * 2 * (1 + 5 * 3)
    # bdmc's default kernel does not adapt; ais_log_likelihood's does
    assert bdmc(model, 2, n_chains=2, n_steps=3).forward.settings["adapt"] is False
    assert ais_log_likelihood(model, x[:2], n_chains=2, n_steps=3).settings["adapt"] is True
    with pytest.raises(ValueError, match=r"either as hmc=HMCSettings\(...\) or one by one, not both"):
        ais_log_likelihood(model, x, hmc=kernel, leapfrog_steps=2)
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'leapfrogs'; the HMC settings are"):
        reverse_ais(model, x, {"z": torch.zeros(len(x), 5)}, leapfrogs=2)
    with pytest.raises(TypeError, match="hmc must be a vaekit.inference.HMCSettings, got dict"):
        bdmc(model, 2, hmc={"leapfrog_steps": 2})
    with pytest.raises(ValueError, match=r"step_size must be a number inside step_size_bounds=\(0.2, 0.3\), got 0.05"):
        HMCSettings(step_size_bounds=(0.2, 0.3))
    with pytest.raises(TypeError, match="adapt must be True or False, got 'yes'"):
        HMCSettings(adapt="yes")


def test_bad_model_data_and_starts():
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"x has shape \(2, 3\)"):
        ais_log_likelihood(Flat(), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="model must be a vaekit.models.LatentVariableModel"):
        ais_log_likelihood(torch.nn.Linear(2, 2), x)

    class NoPrior(Flat):  # Flat without the prior methods of the protocol
        log_prior = LatentVariableModel.log_prior
        sample_prior = LatentVariableModel.sample_prior

    with pytest.raises(TypeError, match="implement log_prior, sample_prior"):
        ais_log_likelihood(NoPrior(), x)
    with pytest.raises(ValueError, match=r"z_init\['z'\] has shape \(3, 3\); expected \(n, \*event\) with n = 2"):
        reverse_ais(Flat(), x, {"z": torch.zeros(3, 3)})
    with pytest.raises(TypeError, match="z_init must be a non-empty dict"):
        reverse_ais(Flat(), x, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="n_examples must be an int >= 1, got 0"):
        bdmc(Flat(), 0)

    class WrongShape(Flat):
        def log_prior(self, z):
            return super().log_prior(z).sum(0)

    with pytest.raises(RuntimeError, match=r"log_prior\(z\) .* must return a tensor of shape \(2, 2\), got \(2,\)"):
        ais_log_likelihood(WrongShape(), x, n_chains=2)
