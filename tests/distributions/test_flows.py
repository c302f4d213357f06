"""Contract tests for the flow posteriors: add a family by adding one line to FAMILIES."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch.autograd.functional import jacobian
from torch.distributions import Independent, Normal
from torch.func import functional_call, stack_module_state, vmap

from vaekit._recording import to_config
from vaekit.distributions import (IAF, POSTERIORS, AuxiliaryFlow, Bernoulli, ConditionalDistribution, DrawWithLogProb,
                                  NeuralSplineFlow, PlanarFlow, RadialFlow, RealNVPFlow, StandardNormal, SylvesterFlow,
                                  kl_divergence, make_posterior, rsample_and_log_prob)
from vaekit.models import VAE
from vaekit.nn import MLP
from vaekit.objectives import ELBO, IWAE

C, D, B = 5, 3, 4

FAMILIES = {
    "planar": lambda: PlanarFlow(C, D, n_flows=3),
    "radial": lambda: RadialFlow(C, D, n_flows=3),
    "sylvester_orthogonal": lambda: SylvesterFlow(C, D, "orthogonal", n_flows=2),
    "sylvester_orthogonal_m2": lambda: SylvesterFlow(C, 4, "orthogonal", n_flows=2, n_orthogonal=2),
    "sylvester_householder": lambda: SylvesterFlow(C, D, "householder", n_flows=2, n_householder=3),
    "sylvester_triangular": lambda: SylvesterFlow(C, D, "triangular", n_flows=3),
    "realnvp": lambda: RealNVPFlow(C, D, n_flows=3, hidden=[16]),
    "realnvp_1d": lambda: RealNVPFlow(C, 1, n_flows=2, hidden=[8]),
    "af": lambda: AuxiliaryFlow(C, D, n_flows=2, hidden=[16], aux_features=2),
    "iaf": lambda: IAF(C, D, n_flows=2, hidden=[16]),
    "iaf_1d": lambda: IAF(C, 1, n_flows=2, hidden=[8]),
    "nsf": lambda: NeuralSplineFlow(C, D, n_flows=2, hidden=[16], bins=4),
}
INVERTIBLE = {"radial", "realnvp", "realnvp_1d", "iaf", "iaf_1d", "nsf"}
ALL = list(FAMILIES)
TRANSFORMS = [n for n in ALL if n != "af"]  # families whose distribution is a FlowDistribution


def _make(name: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> ConditionalDistribution:
    torch.manual_seed(seed)
    return FAMILIES[name]().to(dtype)


def _context(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, C, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("batch", [(B,), (2, 3)])
@pytest.mark.parametrize("sample_shape", [(), (7,)])
def test_shapes_and_finite(name, batch, sample_shape):
    family = _make(name)
    q = family(_context(*batch))
    d = family.latent_features
    assert q.batch_shape == batch and q.event_shape == (d,)
    z, log_q = rsample_and_log_prob(q, sample_shape)
    assert z.shape == (*sample_shape, *batch, d) and log_q.shape == (*sample_shape, *batch)
    assert torch.isfinite(z).all() and torch.isfinite(log_q).all()
    assert q.rsample(sample_shape).shape == z.shape and not q.sample(sample_shape).requires_grad


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_every_parameter(name):
    family = _make(name)
    z, log_q = rsample_and_log_prob(family(_context(B)), (3,))
    (z.pow(2).sum() + log_q.sum()).backward()
    for pname, p in family.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", TRANSFORMS)
def test_log_det_matches_autograd_jacobian(name):
    family = _make(name, torch.float64)
    for seed in range(3):  # a few single contexts
        q = family(_context(dtype=torch.float64, seed=seed))
        torch.manual_seed(seed)
        z, log_q = q.rsample_and_log_prob()
        torch.manual_seed(seed)
        z0, log_q0 = q.base.rsample_and_log_prob()
        z_t, logdet = q.push(z0)
        torch.testing.assert_close(z_t, z, rtol=0, atol=0)
        jac = jacobian(lambda v: q.push(v)[0], z0)
        exact = torch.linalg.slogdet(jac).logabsdet
        torch.testing.assert_close(log_q0 - log_q, exact, rtol=0, atol=1e-5)
        torch.testing.assert_close(logdet, exact, rtol=0, atol=1e-5)


def _gaussian(params: torch.Tensor) -> Independent:
    loc, raw = params.chunk(2, dim=-1)
    return Independent(Normal(loc, F.softplus(raw) + 1e-5), 1)


def test_auxiliary_flow_log_q_is_the_auxiliary_bound():
    family = _make("af", torch.float64)
    d, dv = family.latent_features, family.aux_features
    for seed in range(3):
        ctx = _context(dtype=torch.float64, seed=seed)
        q = family(ctx)
        torch.manual_seed(seed)
        z, log_q = q.rsample_and_log_prob()
        torch.manual_seed(seed)
        parts = q.rsample_with_auxiliary()
        z0, v0 = parts["z0"], parts["v0"]
        assert z.shape == (d,) and v0.shape == (dv,)  # v stays inside: samples are z only
        # every term recomputed from the networks, independently of the distribution's code
        log_q_v0 = _gaussian(family.q_v0(ctx)).log_prob(v0)
        log_q_z0 = _gaussian(family.q_z0(torch.cat([v0, ctx]))).log_prob(z0)

        def joint(w):
            z_t, v_t, _ = q.push(w[:d], w[d:])
            return torch.cat([z_t, v_t])

        w0 = torch.cat([z0, v0])
        z_t, v_t = joint(w0).split([d, dv])
        logdet = torch.linalg.slogdet(jacobian(joint, w0)).logabsdet
        log_r = _gaussian(family.reverse(torch.cat([z_t, ctx]))).log_prob(v_t)
        torch.testing.assert_close(z, z_t, rtol=0, atol=1e-12)
        torch.testing.assert_close(log_q, log_q_v0 + log_q_z0 - logdet - log_r, rtol=0, atol=1e-5)
        torch.testing.assert_close(parts["logdet"], logdet, rtol=0, atol=1e-5)
        assert log_r.abs() > 1e-3 and log_q_v0.abs() > 1e-3  # both terms really enter
    with pytest.raises(NotImplementedError, match="auxiliary bound"):
        q.log_prob(z)


@pytest.mark.parametrize("name", ALL)
def test_log_prob_of_own_samples(name):
    family = _make(name, torch.float64)
    q = family(_context(B, dtype=torch.float64))
    z, log_q = rsample_and_log_prob(q, (5,))
    if name in INVERTIBLE:
        torch.testing.assert_close(q.log_prob(z), log_q, rtol=0, atol=1e-5)
        torch.testing.assert_close(q.log_prob(z[2]), log_q[2], rtol=0, atol=1e-5)  # no sample dimension
    else:
        with pytest.raises(NotImplementedError, match="only scores its own samples"):
            q.log_prob(z)


@pytest.mark.parametrize("name", ALL)
def test_monte_carlo_kl_is_nonnegative(name):
    family = _make(name)
    q = family(_context(B))
    p = StandardNormal(family.latent_features)()
    with torch.no_grad():
        z, log_q = rsample_and_log_prob(q, (4000,))
        kl = kl_divergence(q, p, z, log_q)  # no closed form registered: "auto" falls back to Monte Carlo
    torch.testing.assert_close(kl, log_q - p.log_prob(z))
    mean, err = kl.mean(0), kl.std(0) / 4000 ** 0.5
    assert (mean > 0).all() and (mean > 3 * err).all(), (mean, err)


def test_planar_flow_with_zero_u_is_the_base_gaussian():
    family = _make("planar")
    d = family.latent_features
    with torch.no_grad():
        for step in family.transforms:  # each step's first d outputs are its u
            step.amortize.weight[:d] = 0.0
            step.amortize.bias[:d] = 0.0
    q = family(_context(B))
    torch.manual_seed(0)
    z, log_q = q.rsample_and_log_prob((20000,))
    torch.manual_seed(0)
    z0, log_q0 = q.base.rsample_and_log_prob((20000,))
    torch.testing.assert_close(z, z0, rtol=0, atol=0)
    torch.testing.assert_close(log_q, log_q0, rtol=0, atol=1e-6)
    p = StandardNormal(d)()
    mc = kl_divergence(q, p, z, log_q).mean(0)
    torch.testing.assert_close(mc, kl_divergence(q.base, p), rtol=0, atol=0.03)


def test_planar_constraint_keeps_w_dot_u_above_minus_one():
    family = PlanarFlow(C, D, n_flows=2).double()
    ctx = _context(500, dtype=torch.float64)
    for step in family.transforms:
        with torch.no_grad():
            step.amortize.weight.mul_(5.0)  # large, often anti-aligned u and w
        u, w = step.amortize(ctx)[..., :2 * D].chunk(2, -1)
        assert ((u * w).sum(-1) < -1).double().mean() > 0.2  # the raw u often violates the condition ...
        transform = step(ctx)
        torch.testing.assert_close(transform.w, w)
        assert ((transform.u_hat * w).sum(-1) > -1 - 1e-9).all()  # ... u_hat never does (up to rounding, m(w.u) ~ -1)
    z, log_q = rsample_and_log_prob(family(ctx), (10,))
    assert torch.isfinite(log_q).all() and torch.isfinite(z).all()


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_gives_identical_samples(name):
    from safetensors.torch import load, save

    a, b = _make(name, seed=0), _make(name, seed=1)
    ctx = _context(B)
    b.load_state_dict(load(save(a.state_dict())))  # what a checkpoint holds
    torch.manual_seed(5)
    za, la = rsample_and_log_prob(a(ctx), (3,))
    torch.manual_seed(5)
    zb, lb = rsample_and_log_prob(b(ctx), (3,))
    torch.testing.assert_close(za, zb, rtol=0, atol=0)
    torch.testing.assert_close(la, lb, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_config_rebuilds_the_same_family(name):
    from jsonargparse import ArgumentParser

    family = _make(name)
    cfg = yaml.safe_load(yaml.safe_dump(to_config(family)))  # plain YAML values only
    parser = ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_subclass_arguments(ConditionalDistribution, "posterior", required=True)
    rebuilt = parser.instantiate(parser.parse_object({"posterior": cfg})).posterior
    assert type(rebuilt) is type(family)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in family.state_dict().items()}
    assert to_config(rebuilt) == to_config(family)


@pytest.mark.parametrize("name", ALL)
def test_works_under_functional_call_and_vmap(name):
    """Local optimisation stacks per-datapoint parameters and vmaps one functional call that draws and scores."""
    family = _make(name)
    n, h = 3, _context(3)
    params, buffers = stack_module_state([DrawWithLogProb(family)] * n)
    skeleton = DrawWithLogProb(copy.deepcopy(family)).to("meta")

    def one(p, b, hi):
        return functional_call(skeleton, (p, b), (hi[None], 2))

    torch.manual_seed(0)
    z, log_q = vmap(one, randomness="same")(params, buffers, h)
    for i in range(n):
        torch.manual_seed(0)
        zi, li = rsample_and_log_prob(family(h[i:i + 1]), (2,))
        torch.testing.assert_close(z[i], zi, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(log_q[i], li, rtol=1e-5, atol=1e-5)
    log_q.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params.values())


def test_make_posterior_builds_every_name():
    for name in POSTERIORS:
        q = make_posterior(name, C, D)
        assert q.latent_features == D and q.context_features == C
    assert make_posterior("sylvester_triangular", C, D).kind == "triangular"
    assert make_posterior("realnvp", C, D, n_flows=5).n_flows == 5


def test_bad_input():
    with pytest.raises(ValueError, match=r"unknown posterior 'maf'; accepted: gaussian, planar, radial"):
        make_posterior("maf", C, D)
    for name in POSTERIORS[1:]:
        with pytest.raises(ValueError, match=r"n_flows must be an int >= 1, got 0"):
            make_posterior(name, C, D, n_flows=0)
    for name in ("realnvp", "af", "iaf", "nsf"):
        with pytest.raises(ValueError, match=r"hidden must be a list of positive integers, got \[16, -4\]"):
            make_posterior(name, C, D, hidden=[16, -4])
        with pytest.raises(ValueError, match="activation must be one of"):
            make_posterior(name, C, D, activation="swish")
    with pytest.raises(ValueError, match="latent_features must be an int >= 1, got 0"):
        PlanarFlow(C, 0)
    with pytest.raises(ValueError, match="kind must be one of"):
        SylvesterFlow(C, D, kind="cayley")
    with pytest.raises(ValueError, match="n_orthogonal must be <= latent_features=3, got 4"):
        SylvesterFlow(C, D, n_orthogonal=4)
    with pytest.raises(ValueError, match="n_householder must be an int >= 1, got 0"):
        SylvesterFlow(C, D, kind="householder", n_householder=0)
    with pytest.raises(ValueError, match="bins must be an int >= 2, got 1"):
        NeuralSplineFlow(C, D, bins=1)
    with pytest.raises(ValueError, match="bound must be a number > 0, got 0"):
        NeuralSplineFlow(C, D, bound=0)
    with pytest.raises(ValueError, match="aux_features must be an int >= 1, got 0"):
        AuxiliaryFlow(C, D, aux_features=0)


@pytest.mark.parametrize("name", ALL)
def test_wrong_context_is_a_clear_error(name):
    family = _make(name)
    with pytest.raises(ValueError, match=rf"expects context of shape \(\*batch, {C}\).*got \(4, {C + 1}\)"):
        family(torch.randn(4, C + 1))
    with pytest.raises(ValueError, match="needs the encoder features as context"):
        family()


def _vae(name: str) -> VAE:
    family = FAMILIES[name]()
    enc = MLP(20, C, hidden=[32], activation="elu", output_activation="elu")
    dec = MLP(family.latent_features, 20, hidden=[32], activation="elu")
    return VAE(enc, family, dec, Bernoulli(), [20])


@pytest.mark.parametrize("name", ALL)
def test_vae_trains_with_elbo_and_iwae(name):
    x = torch.bernoulli(torch.full((64, 20), 0.2), generator=torch.Generator().manual_seed(0))
    for objective in (ELBO(), IWAE(k=4)):
        torch.manual_seed(0)
        model = _vae(name)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for step in range(25):
            loss, _ = objective(model, x, step)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert all(torch.isfinite(torch.tensor(losses)))
        assert sum(losses[-5:]) < sum(losses[:5]), (type(objective).__name__, losses)


@pytest.mark.parametrize("name", ["planar", "af", "nsf"])
def test_vae_uses_the_family_log_q_and_monte_carlo_kl(name):
    model = _vae(name)
    x = torch.bernoulli(torch.full((6, 20), 0.3), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(3)
    terms = model.elbo_terms(x)
    torch.manual_seed(3)
    z, log_q = rsample_and_log_prob(model.encode(x)["z"])
    torch.testing.assert_close(terms.log_q["z"], log_q, rtol=0, atol=0)
    torch.testing.assert_close(terms.kl["z"], log_q - model.prior().log_prob(z), rtol=0, atol=1e-6)
    torch.manual_seed(4)
    lw = model.log_weights(x, 5)
    torch.manual_seed(4)
    z, log_q = rsample_and_log_prob(model.encode(x)["z"], (5,))
    torch.testing.assert_close(lw, model.decode(z).log_prob(x) + model.prior().log_prob(z) - log_q, rtol=0, atol=1e-5)


def test_vae_with_a_flow_rebuilds_from_its_yaml_config():
    from jsonargparse import ArgumentParser

    from vaekit.models.base import LatentVariableModel

    model = _vae("sylvester_householder")
    text = yaml.safe_dump(to_config(model))
    assert "kind: householder" in text and "n_householder: 3" in text
    parser = ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_subclass_arguments(LatentVariableModel, "model", required=True)
    rebuilt = parser.instantiate(parser.parse_object({"model": yaml.safe_load(text)})).model
    rebuilt.load_state_dict(model.state_dict())
    x = torch.bernoulli(torch.full((3, 20), 0.5), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    a = model.log_weights(x, 4)
    torch.manual_seed(0)
    torch.testing.assert_close(rebuilt.log_weights(x, 4), a, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["orthogonal", "householder"])
def test_sylvester_q_has_orthonormal_columns(kind):
    family = SylvesterFlow(C, 6, kind, n_flows=2, n_orthogonal=4 if kind == "orthogonal" else None).double()
    ctx = _context(50, dtype=torch.float64)
    q = torch.stack([step(ctx).q for step in family.transforms], dim=1)
    m = q.shape[-1]
    assert q.shape == (50, 2, 6, 4 if kind == "orthogonal" else 6)
    torch.testing.assert_close(q.mT @ q, torch.eye(m, dtype=torch.float64).expand(50, 2, m, m), rtol=0, atol=1e-10)
