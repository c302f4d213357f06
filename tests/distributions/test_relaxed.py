"""Relaxed categorical distributions: Gumbel-Softmax, ExpConcrete, IGR-I, IGR-Planar, IGR-SB, their KL terms.

The conditional family's contract test is parametrized over RELAXATION_FAMILIES: a new relaxation is one line.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd.functional import jacobian
from torch.distributions import Normal, RelaxedOneHotCategorical
from torch.distributions.relaxed_categorical import ExpRelaxedCategorical

from vaekit._recording import to_config
from vaekit.distributions.relaxed import (IGR, ExpConcrete, GumbelSoftmax, IGRStickBreaking, PlanarStep,
                                          RelaxedCategorical, relaxed_kl, softmax_pp, vertex_proximity)
from vaekit.distributions.relaxed._simplex import inverse_softmax_pp, log_stick_breaking

F64 = torch.float64
RELAXATION_FAMILIES = {
    "gs": lambda: RelaxedCategorical(6, n_variables=3, n_categories=4, relaxation="gs", temperature=0.5),
    "gs_hard": lambda: RelaxedCategorical(6, n_variables=3, n_categories=4, relaxation="gs", hard=True),
    "igr_i": lambda: RelaxedCategorical(6, n_variables=3, n_categories=4, relaxation="igr_i"),
    "igr_planar": lambda: RelaxedCategorical(6, n_variables=3, n_categories=4, relaxation="igr_planar", n_flows=2),
    "igr_sb": lambda: RelaxedCategorical(6, n_variables=3, n_categories=4, relaxation="igr_sb", threshold=0.9),
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------- softmax++
@settings(max_examples=40, deadline=None)
@given(k1=st.integers(1, 6), tau=st.floats(0.01, 5.0), delta=st.floats(0.1, 10.0), seed=st.integers(0, 1000),
       spread=st.floats(0.1, 20.0))
def test_softmax_pp_on_simplex_and_matches_formula(k1, tau, delta, seed, spread):
    lam = spread * torch.randn(3, k1, generator=_gen(seed), dtype=F64)
    psi = softmax_pp(lam, tau, delta)
    assert psi.shape == (3, k1 + 1)
    assert bool((psi >= 0).all()) and torch.allclose(psi.sum(-1), torch.ones(3, dtype=F64), atol=1e-12)
    # the definition, computed naively where it does not overflow
    m = (lam / tau).max(-1, keepdim=True).values.clamp_min(0)
    e = (lam / tau - m).exp()
    denom = e.sum(-1, keepdim=True) + delta * (-m).exp()
    assert torch.allclose(psi[..., :-1], e / denom, atol=1e-12)
    # the inverse recovers lambda wherever psi has not underflowed
    ok = (psi > 1e-200).all(-1)
    assert torch.allclose(inverse_softmax_pp(psi.log(), tau, delta)[ok], lam[ok], atol=1e-7 * max(spread, 1.0))


@pytest.mark.parametrize("make", [
    lambda tau: GumbelSoftmax(torch.tensor([1.0, 0.0, -0.5, 0.3]), tau),
    lambda tau: IGR(torch.tensor([0.5, -0.2, 0.1]), torch.full((3,), 0.8), tau),
    lambda tau: IGRStickBreaking(torch.tensor([-0.5, 0.2, -0.1]), torch.full((3,), 0.8), tau, truncate=False),
], ids=["gs", "igr_i", "igr_sb"])
def test_vertex_proximity_increases_as_temperature_decreases(make):
    grid = [2.0, 1.0, 0.5, 0.25, 0.1, 0.03]
    fractions = []
    for tau in grid:
        torch.manual_seed(0)  # common random numbers across temperatures
        fractions.append(float(vertex_proximity(make(tau).rsample((4000,)), 0.2)))
    assert all(b >= a for a, b in zip(fractions, fractions[1:])), fractions
    assert fractions[0] < 0.2 and fractions[-1] > 0.9, fractions


# --------------------------------------------------------------------------------------- Gumbel-Softmax
def test_gumbel_softmax_log_prob_matches_torch():
    torch.manual_seed(0)
    logits, tau = torch.randn(5, 6, dtype=F64), torch.tensor(0.4, dtype=F64)
    q, ref = GumbelSoftmax(logits, tau), RelaxedOneHotCategorical(tau, logits=logits)
    z = ref.rsample((3,))
    assert torch.allclose(q.log_prob(z), ref.log_prob(z), atol=1e-9)
    z, log_q = q.rsample_and_log_prob((3,))
    assert torch.allclose(log_q, ref.log_prob(z), atol=1e-6)
    e = ExpConcrete(logits, tau)
    y = e.rsample((3,))
    assert torch.allclose(e.log_prob(y), ExpRelaxedCategorical(tau, logits=logits).log_prob(y), atol=1e-9)
    assert torch.allclose(q.implied_probs(), logits.softmax(-1))


def test_exp_concrete_stable_at_small_temperature():
    torch.manual_seed(0)
    q = GumbelSoftmax(torch.randn(200, 10), 0.01)
    z, log_q = q.rsample_and_log_prob()
    assert bool((z == 0).any())  # the simplex sample underflows ...
    assert bool(log_q.isfinite().all())  # ... its log-density, computed in log space, does not
    kl = relaxed_kl(q, GumbelSoftmax(torch.zeros(10), 0.01))
    assert kl.shape == (200,) and bool(kl.isfinite().all())


def test_straight_through_is_one_hot_with_soft_gradient():
    logits = torch.randn(4, 5, requires_grad=True)
    w = torch.randn(5)
    torch.manual_seed(3)
    hard = GumbelSoftmax(logits, 0.5, hard=True).rsample()
    (hard * w).sum().backward()
    g_hard = logits.grad.clone()
    logits.grad = None
    torch.manual_seed(3)
    soft = GumbelSoftmax(logits, 0.5).rsample()
    (soft * w).sum().backward()
    assert torch.equal(hard.detach(), torch.nn.functional.one_hot(soft.argmax(-1), 5).float())
    assert torch.allclose(g_hard, logits.grad) and g_hard.abs().sum() > 0


# ---------------------------------------------------------------------------------------------- IGR
def _quadrature_argmax_probs(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """P(argmax of softmax++ = k) for delta = 1: P(lam_k = max(lam, 0)) by 1-d quadrature, P(K) = prod Phi_j(0)."""
    x = torch.linspace(0, 12, 200_001, dtype=F64)
    normal = Normal(loc.unsqueeze(-1), scale.unsqueeze(-1))  # (K-1, grid)
    pdf, cdf = normal.log_prob(x).exp(), normal.cdf(x)
    probs = [torch.trapezoid(pdf[k] * torch.cat([cdf[:k], cdf[k + 1:]]).prod(0), x) for k in range(len(loc))]
    return torch.stack(probs + [Normal(loc, scale).cdf(torch.zeros(1, dtype=F64)).prod()])


def test_igr_argmax_frequencies_match_quadrature():
    loc, scale = torch.tensor([0.3, -0.4, 0.8], dtype=F64), torch.tensor([1.0, 0.5, 1.5], dtype=F64)
    exact = _quadrature_argmax_probs(loc, scale)
    assert abs(float(exact.sum()) - 1) < 1e-6
    n = 40_000
    se = (exact * (1 - exact) / n).sqrt()
    q = IGR(loc, scale, temperature=0.3)
    assert (q.implied_probs(n, generator=_gen(1)) - exact).abs().max() < 4 * se.max()
    torch.manual_seed(2)
    z = IGR(loc, scale, temperature=2.0).rsample((n,))  # the argmax does not depend on tau (delta = 1)
    freq = torch.nn.functional.one_hot(z.argmax(-1), 4).to(F64).mean(0)
    assert (freq - exact).abs().max() < 4 * se.max()


def _change_of_variables(q, lam: torch.Tensor, simplex) -> torch.Tensor:
    """log q(psi) = log N(lam) - log|det d psi[:K-1] / d lam| with the Jacobian from autograd."""
    out = []
    for point in lam:
        jac = jacobian(lambda v: simplex(v)[:-1], point)
        out.append(q.base.log_prob(point) - torch.linalg.slogdet(jac).logabsdet)
    return torch.stack(out)


@pytest.mark.parametrize("tau,delta", [(0.5, 1.0), (1.3, 0.3)])
def test_igr_log_prob_is_change_of_variables(tau, delta):
    torch.manual_seed(0)
    q = IGR(torch.randn(4, dtype=F64), torch.rand(4, dtype=F64) + 0.5, tau, delta)
    lam, _ = q.rsample_gaussian((6,))
    expected = _change_of_variables(q, lam, lambda v: softmax_pp(v, tau, delta))
    assert torch.allclose(q.log_prob(q.to_simplex(lam)), expected, atol=1e-8)
    torch.manual_seed(5)
    z, log_q = q.rsample_and_log_prob((6,))
    torch.manual_seed(5)
    lam, _ = q.rsample_gaussian((6,))
    assert torch.allclose(log_q, expected * 0 + _change_of_variables(q, lam, lambda v: softmax_pp(v, tau, delta)))


def test_igr_sb_log_prob_is_change_of_variables():
    torch.manual_seed(0)
    q = IGRStickBreaking(torch.randn(4, dtype=F64), torch.rand(4, dtype=F64) + 0.5, 0.7, truncate=False)
    lam, _ = q.rsample_gaussian((6,))
    expected = _change_of_variables(q, lam, lambda v: log_stick_breaking(v, 0.7)[0].exp())
    assert torch.allclose(q.log_prob(q.to_simplex(lam)), expected, atol=1e-8)


def test_planar_log_det_matches_autograd_and_planar_density():
    torch.manual_seed(0)
    steps = torch.nn.ModuleList([PlanarStep(3), PlanarStep(3)]).double()
    with torch.no_grad():
        steps[0].u.copy_(torch.tensor([1.5, -2.0, 0.7]))  # large u: exercises the invertibility constraint
    z = torch.randn(5, 3, dtype=F64)
    for step in steps:
        out, logdet = step(z)
        for i in range(5):
            jac = jacobian(lambda v: step(v)[0], z[i])
            assert abs(float(torch.linalg.slogdet(jac).logabsdet - logdet[i].detach())) < 1e-9
        z = out
    q = IGR(torch.randn(3, dtype=F64), torch.ones(3, dtype=F64), 0.5, flows=steps)
    torch.manual_seed(1)
    z, log_q = q.rsample_and_log_prob((4,))
    torch.manual_seed(1)
    lam0 = q.loc + q.scale * torch.randn(4, 3, dtype=F64)
    expected = []
    for point in lam0:  # density of psi through the whole composite map lam0 -> lam_T -> psi
        jac = jacobian(lambda v: softmax_pp(steps[1](steps[0](v)[0])[0], 0.5)[:-1], point)
        expected.append(q.base.log_prob(point) - torch.linalg.slogdet(jac).logabsdet)
    assert torch.allclose(log_q, torch.stack(expected), atol=1e-8)
    with pytest.raises(NotImplementedError, match="rsample_and_log_prob"):
        q.log_prob(z)


# --------------------------------------------------------------------------------------------- KL
def test_closed_form_kl_equals_monte_carlo():
    torch.manual_seed(0)
    q = IGR(torch.randn(2, 3, dtype=F64), torch.rand(2, 3, dtype=F64) + 0.4, 0.8)
    p = IGR(torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64), 0.8)
    exact = relaxed_kl(q, p, "gaussian")
    assert torch.allclose(exact, torch.distributions.kl_divergence(q, p.expand((2,))))
    z, log_q = q.rsample_and_log_prob((20_000,))
    mc = relaxed_kl(q, p, "mc", z=z, log_q=log_q)  # densities on the simplex, p scored by inverting softmax++
    assert ((mc.mean(0) - exact).abs() < 4 * mc.std(0) / math.sqrt(20_000)).all()
    qs = IGRStickBreaking(q.loc, q.scale, 0.8, truncate=False)
    ps = IGRStickBreaking(p.loc, p.scale, 0.8, truncate=False)
    z, log_q = qs.rsample_and_log_prob((20_000,))
    mc = relaxed_kl(qs, ps, "mc", z=z, log_q=log_q)
    assert ((mc.mean(0) - relaxed_kl(qs, ps)).abs() < 4 * mc.std(0) / math.sqrt(20_000)).all()


def test_planar_and_gumbel_kl_estimators_agree():
    torch.manual_seed(0)
    steps = torch.nn.ModuleList([PlanarStep(2)]).double()
    q = IGR(torch.tensor([0.5, -0.3], dtype=F64).expand(20_000, 2), torch.full((20_000, 2), 0.7, dtype=F64), 0.6,
            flows=steps)
    p = IGR(torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64), 0.6)
    with torch.no_grad():
        g, m = relaxed_kl(q, p, "gaussian"), relaxed_kl(q, p, "mc")  # gaussian-space MC vs lambda-space MC
    assert abs(float(g.mean() - m.mean())) < 4 * float(g.std() + m.std()) / math.sqrt(20_000)
    assert float(g.mean()) > 0
    # Gumbel-Softmax: log-space estimate vs torch's densities on the simplex
    logits = torch.tensor([1.0, -1.0, 0.5], dtype=F64).expand(20_000, 3)
    q, p = GumbelSoftmax(logits, 0.7), GumbelSoftmax(torch.zeros(3, dtype=F64), 0.7)
    log_space = relaxed_kl(q, p)
    z = RelaxedOneHotCategorical(torch.tensor(0.7, dtype=F64), logits=logits).rsample()
    ref = (RelaxedOneHotCategorical(torch.tensor(0.7, dtype=F64), logits=logits).log_prob(z)
           - RelaxedOneHotCategorical(torch.tensor(0.7, dtype=F64), logits=torch.zeros(3, dtype=F64)).log_prob(z))
    assert abs(float(log_space.mean() - ref.mean())) < 4 * float(log_space.std() + ref.std()) / math.sqrt(20_000)


# ------------------------------------------------------------------------------------------- IGR-SB
def test_stick_breaking_truncation_and_reporting():
    torch.manual_seed(0)
    # the first coordinate far above 0: the stick is used up at once, one category
    q = IGRStickBreaking(torch.tensor([5.0, 0.0, 0.0, 0.0]), torch.full((4,), 0.1), 0.1)
    z = q.rsample((50,))
    assert bool((q.last_n_used == 1).all()) and not q.truncated
    assert torch.allclose(z[:, 0], torch.ones(50)) and bool((z[:, 1:] == 0).all())
    # every coordinate below 0: the stick is never used up within 4 categories
    q = IGRStickBreaking(torch.full((9,), -3.0), torch.full((9,), 0.1), 0.5, max_categories=4)
    z = q.rsample((50,))
    assert z.shape == (50, 4) and bool((q.last_n_used == 4).all()) and q.truncated
    assert torch.allclose(z.sum(-1), torch.ones(50))
    # in between: per-sample counts, zeros past them, the merged tail in the last kept category
    q = IGRStickBreaking(torch.randn(3, 7), torch.ones(3, 7), 0.3, threshold=0.9)
    z = q.rsample((200,))
    n = q.last_n_used
    assert n.shape == (200, 3) and bool((n >= 1).all()) and bool((n <= 8).all()) and len(n.unique()) > 2
    idx = torch.arange(8)
    assert bool((z[idx.expand_as(z) >= n.unsqueeze(-1)] == 0).all())
    assert torch.allclose(z.sum(-1), torch.ones(200, 3), atol=1e-5)
    kept = z.cumsum(-1).gather(-1, (n - 2).clamp_min(0).unsqueeze(-1)).squeeze(-1)
    assert bool((kept[n > 1] < 0.9).all())  # the threshold is reached only at the last kept category
    untruncated = IGRStickBreaking(q.loc, q.scale, 0.3, threshold=0.9, truncate=False)
    assert bool((untruncated.rsample((20,)) > 0).all())


@pytest.mark.parametrize("make", [
    lambda loc, tau: GumbelSoftmax(torch.cat([loc, torch.zeros_like(loc[:, :1])], -1), tau),
    lambda loc, tau: IGR(loc, torch.full_like(loc, 0.7), tau, delta=0.5),
    lambda loc, tau: IGRStickBreaking(loc, torch.full_like(loc, 0.7), tau, truncate=False),
], ids=["gs", "igr_i", "igr_sb"])
def test_batched_temperature_and_expand(make):
    torch.manual_seed(0)
    loc, taus = torch.randn(3, 2, dtype=F64), torch.tensor([0.3, 0.6, 1.2], dtype=F64)
    batched = make(loc, taus)
    z = batched.rsample((5,))
    assert z.shape == (5, 3, 3) and torch.allclose(z.sum(-1), torch.ones(5, 3, dtype=F64))
    per_row = torch.stack([make(loc[i:i + 1], float(taus[i])).log_prob(z[:, i:i + 1]) for i in range(3)], -1)
    assert torch.allclose(batched.log_prob(z), per_row.squeeze(-2), atol=1e-8)
    wide = batched.expand((4, 3))
    assert wide.batch_shape == (4, 3) and torch.allclose(wide.log_prob(z[:4]), batched.log_prob(z[:4]))


# ---------------------------------------------------------------------------------- conditional family
@pytest.mark.parametrize("name", list(RELAXATION_FAMILIES))
def test_family_shapes_and_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    family = RELAXATION_FAMILIES[name]()
    q = family(torch.randn(8, 6))
    assert q.batch_shape == (8, 3) and q.event_shape == (4,) and family.latent_features == 12
    z, log_q = q.rsample_and_log_prob((2,))
    assert z.shape == (2, 8, 3, 4) and log_q.shape == (2, 8, 3)
    assert torch.allclose(z.sum(-1), torch.ones(2, 8, 3), atol=1e-5) and bool(log_q.isfinite().all())
    prior = family.prior_distribution()
    assert prior.batch_shape == (3,) and prior.event_shape == (4,)
    kl = relaxed_kl(q, prior)
    assert kl.shape == (8, 3)
    (z * torch.randn(4)).sum().backward(retain_graph=True)
    kl.sum().backward()
    for pname, param in family.named_parameters():
        assert param.grad is not None and float(param.grad.abs().sum()) > 0, pname
    probs = q.implied_probs(200)
    assert probs.shape == (8, 3, 4) and torch.allclose(probs.sum(-1), torch.ones(8, 3), atol=1e-5)
    assert to_config(family)["init_args"]["relaxation"] == family.relaxation
    family.set_temperature(0.2)
    assert family(torch.randn(1, 6)).temperature == 0.2


# -------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("build,error,match", [
    (lambda: GumbelSoftmax(torch.zeros(3), 0.0), ValueError, "temperature"),
    (lambda: GumbelSoftmax(torch.zeros(3), -1.0), ValueError, "temperature"),
    (lambda: IGR(torch.zeros(2), torch.ones(2), torch.tensor([0.5, 0.0])), ValueError, "temperature"),
    (lambda: softmax_pp(torch.zeros(2), 0.0), ValueError, "temperature"),
    (lambda: RelaxedCategorical(4, 2, 3, temperature=0.0), ValueError, "temperature"),
    (lambda: GumbelSoftmax(torch.zeros(4, 1), 0.5), ValueError, "K >= 2"),
    (lambda: IGR(torch.zeros(4, 0), torch.ones(4, 0), 0.5), ValueError, "K >= 2"),
    (lambda: RelaxedCategorical(4, 2, 1), ValueError, "n_categories"),
    (lambda: IGR(torch.zeros(3), torch.ones(4), 0.5), ValueError, "loc and scale"),
    (lambda: IGRStickBreaking(torch.zeros(2, 3), torch.ones(3, 3), 0.5), ValueError, "loc and scale"),
    (lambda: IGR(torch.zeros(3), torch.ones(3), 0.5, delta=0.0), ValueError, "delta"),
    (lambda: IGRStickBreaking(torch.zeros(3), torch.ones(3), 0.5, threshold=1.0), ValueError, "threshold"),
    (lambda: IGRStickBreaking(torch.zeros(3), torch.ones(3), 0.5, threshold=0.0), ValueError, "threshold"),
    (lambda: RelaxedCategorical(4, 2, 3, relaxation="igr_sb", threshold=1.5), ValueError, "threshold"),
    (lambda: IGRStickBreaking(torch.zeros(3), torch.ones(3), 0.5, max_categories=1), ValueError, "max_categories"),
    (lambda: IGRStickBreaking(torch.zeros(3), torch.ones(3), 0.5, max_categories=5), ValueError, "max_categories"),
    (lambda: RelaxedCategorical(4, 2, 3, relaxation="vq"), ValueError, "relaxation"),
    (lambda: RelaxedCategorical(4, 2, 3, relaxation="igr_i", hard=True), ValueError, "hard"),
    (lambda: RelaxedCategorical(4, 2, 3, relaxation="gs", prior="uniform_fit"), ValueError, "prior"),
    (lambda: RelaxedCategorical(4, 2, 3, prior="flat"), ValueError, "prior"),
    (lambda: relaxed_kl(GumbelSoftmax(torch.zeros(3), 0.5), GumbelSoftmax(torch.zeros(3), 0.5), "exact"),
     ValueError, "method"),
    (lambda: relaxed_kl(GumbelSoftmax(torch.zeros(3), 0.5), GumbelSoftmax(torch.zeros(3), 0.5), "gaussian"),
     ValueError, "IGR"),
    (lambda: IGRStickBreaking(torch.zeros(3), torch.ones(3), 0.5).log_prob(torch.full((4,), 0.25)),
     NotImplementedError, "truncate=False"),
])
def test_bad_input(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_family_rejects_wrong_context():
    family = RELAXATION_FAMILIES["igr_i"]()
    with pytest.raises(ValueError, match=r"\(\*batch, 6\)"):
        family(torch.randn(2, 5))
    with pytest.raises(ValueError, match="temperature"):
        family.set_temperature(-0.1)
    assert family.temperature == 0.5
