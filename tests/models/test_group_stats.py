"""Group statistics (variance components, group effects), the likelihood's scale, the linear predictor."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from vaekit.models.group import GroupPredictor
from vaekit.models.group_stats import VarianceComponents
from vaekit.nn.mlp import MLP
from vaekit.nn.predictors import LinearPredictor, MLPPredictor


def inv_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def intercept_model(likelihood: str = "gaussian_learned", out: int = 1) -> GroupPredictor:
    """A random-intercept model with hand-set parameters: b_g = c z_g, z_g ~ N(0.3, 1.5^2), residual sd 0.6."""
    torch.manual_seed(0)
    m = GroupPredictor(LinearPredictor(2, out), likelihood, 1, "bias", prior="learned", level_names=["school"],
                       group_names=[["a", "b", "c", "d", "e"]], group_counts=[[4, 3, 5, 0, 2]], n_train=14)
    with torch.no_grad():
        m.bias_maps["0"].weight.copy_(torch.linspace(0.8, 0.4, out)[:, None])
        m.latent.prior_loc[0].fill_(0.3)
        m.latent.prior_raw_scale[0].fill_(inv_softplus(1.5 - 1e-6))
        m.latent.loc[0][:, 0] = torch.tensor([1.0, -0.5, 0.2, 9.0, 2.0])  # group "d" is unseen: ignored
        if likelihood == "gaussian_learned":
            m.log_sigma.fill_(inv_softplus(0.6 - 1e-4))
    return m


def test_variance_components_of_a_random_intercept_model_by_hand():
    m = intercept_model()
    data = SimpleNamespace(train={"x": torch.randn(50, 2)}, target_std=torch.tensor(2.5))  # y was standardized, sd 2.5
    vc = m.variance_components(data)
    std2 = 2.5**2
    assert vc.between["school"] == pytest.approx((0.8 * 1.5) ** 2 * std2, rel=1e-6)
    assert vc.residual == pytest.approx(0.6**2 * std2, rel=1e-6) and vc.residual_source == "learned"
    fitted = 0.8 * torch.tensor([1.0, -0.5, 0.2, 2.0], dtype=torch.float64)
    assert vc.between_posterior["school"] == pytest.approx(float(fitted.var()) * std2, rel=1e-6)
    assert vc.n_groups == {"school": 4} and vc.units == "outcome" and vc.n_x == 50
    assert vc.icc["school"] == pytest.approx(1.44 / (1.44 + 0.36), rel=1e-6)
    effects = m.group_effects(data)
    assert effects.shape == (5, 1) and math.isnan(effects[3, 0])
    torch.testing.assert_close(effects[[0, 1, 2, 4], 0], (fitted - 0.8 * 0.3) * 2.5)  # relative to the prior mean
    saved = json.loads(json.dumps(vc.to_dict()))
    assert saved["between"] == vc.between and set(saved["definitions"]) == {"between", "between_posterior", "residual"}
    assert VarianceComponents(**saved) == vc
    text = str(vc)
    assert "between school: 9 (prior)" in text and "residual: 2.25 (learned)" in text
    # without a data module nothing says how y was scaled: model units, unless target_std is given
    vc_model = m.variance_components(x=data.train["x"])
    assert vc_model.units == "model" and vc_model.between["school"] == pytest.approx(1.44, rel=1e-6)
    assert m.variance_components(x=data.train["x"], target_std=2.5).residual == pytest.approx(0.36 * std2, rel=1e-6)


def test_fixed_scale_gaussian_says_its_residual_is_not_estimated():
    m = intercept_model("gaussian")
    vc = m.variance_components(SimpleNamespace(train={"x": torch.randn(20, 2)}, target_std=None))
    assert vc.residual == 1.0 and vc.residual_source == "fixed" and vc.units == "outcome"
    assert "fixed at 1 by likelihood='gaussian', not estimated" in str(vc)
    torch.testing.assert_close(m.scale, torch.ones(1))


def test_two_levels_each_get_their_own_component():
    torch.manual_seed(1)
    m = GroupPredictor(LinearPredictor(3), "gaussian_learned", [1, 2], ["bias", "factor"], prior="learned",
                       group_names=[["r1", "r2", "r3"], ["p1", "p2"]], level_names=["role", "play"], n_train=5)
    with torch.no_grad():
        m.latent.prior_raw_scale[1].copy_(torch.tensor([inv_softplus(0.5), inv_softplus(2.0)]))
    w = m.predictor.out.weight[0, 3:].detach()  # the play latent enters the linear output layer as extra features
    c = float(m.bias_maps["0"].weight.detach())
    s0 = [F.softplus(r.detach()) + 1e-6 for r in m.latent.prior_raw_scale]
    vc = m.variance_components(x=torch.randn(30, 3), n_draws=50)
    assert vc.between["role"] == pytest.approx(c**2 * float(s0[0][0]) ** 2, rel=1e-5)
    assert vc.between["play"] == pytest.approx(float((w**2 * s0[1] ** 2).sum()), rel=1e-5)


def test_between_is_the_x_average_of_the_variance_over_the_prior_for_a_nonlinear_effect():
    """E_x Var_z m(x, z), checked against plain Monte Carlo, and not Var_z E_x m(x, z) (the intercept part only)."""
    torch.manual_seed(1)
    m = GroupPredictor(MLPPredictor(2, 1, hidden=[16], activation="tanh"), "gaussian_learned", 2, "lower",
                       group_names=[["a", "b"]], n_train=4)
    x = torch.randn(40, 2) * 5
    vc = m.variance_components(x=x, n_draws=2000, max_x=40)
    with torch.no_grad():
        z = torch.randn(20000, 2)
        pred = torch.stack([m.outputs(x, [zi.expand(40, 2)])[:, 0] for zi in z[:20000:10]]).double()  # (2000, 40)
    brute = float(pred.var(0).mean())
    assert vc.between["0"] == pytest.approx(brute, rel=0.05)
    assert float(pred.mean(1).var()) < 0.3 * brute  # the effect depends on x: the two definitions differ


def test_categorical_components_decompose_the_variance_of_the_one_hot_outcome():
    torch.manual_seed(3)
    m = GroupPredictor(LinearPredictor(2, 3), "categorical", 1, "bias", group_names=[["a", "b", "c"]], n_train=6)
    with torch.no_grad():
        m.bias_maps["0"].weight.copy_(torch.tensor([[1.5], [-1.0], [0.0]]))
    x = torch.randn(25, 2)
    vc = m.variance_components(x=x, target_std=7.0, n_draws=3000)  # target_std does not apply to class probabilities
    with torch.no_grad():
        p = torch.stack([torch.softmax(m.outputs(x, [torch.full((25, 1), float(z))]), -1) for z in torch.randn(4000)]).double()
    assert vc.between["0"] == pytest.approx(float(p.var(0).sum(-1).mean()), rel=0.05)
    assert vc.residual == pytest.approx(float((p * (1 - p)).sum(-1).mean()), rel=0.02)
    assert vc.residual_source == "predicted" and vc.units == "outcome"
    with pytest.raises(ValueError, match="likelihood='categorical' has no residual scale"):
        m.scale


def test_bad_arguments_are_refused_with_the_value():
    m = intercept_model()
    with pytest.raises(ValueError, match=r"pass the set-up data module .* or reference inputs x=\.\.\."):
        m.variance_components()
    with pytest.raises(ValueError, match="n_draws must be an int >= 2, got 1"):
        m.variance_components(x=torch.randn(4, 2), n_draws=1)
    wide = GroupPredictor(LinearPredictor(2), "gaussian_learned", 3, "bias", group_names=[["a", "b"]], level_names=["school"],
                          n_train=2)
    with pytest.raises(ValueError, match=r"n_draws must exceed the latent dimension of level 'school' \(3\), got 3"):
        wide.variance_components(x=torch.randn(4, 2), n_draws=3)
    with pytest.raises(ValueError, match=r"target_std must hold 1 or 1 \(out_features\) finite numbers > 0, got \[-1.0\]"):
        m.variance_components(x=torch.randn(4, 2), target_std=-1.0)
    with pytest.raises(ValueError, match=r"level='play' has no group latent; levels with one: \['school'\]"):
        m.group_effects(x=torch.randn(4, 2), level="play")
    with pytest.raises(ValueError, match="x must be a non-empty tensor"):
        m.variance_components(x=torch.zeros(0, 2))


def test_scale_is_softplus_of_the_raw_parameter_and_old_checkpoints_load():
    m = intercept_model()
    torch.testing.assert_close(m.scale, F.softplus(m.log_sigma) + 1e-4)
    assert float(m.scale.detach()) == pytest.approx(0.6)
    out, y = torch.randn(7, 1), torch.randn(7)
    torch.testing.assert_close(m.log_likelihood(out, y), torch.distributions.Normal(out[:, 0], 0.6).log_prob(y), rtol=1e-5, atol=1e-6)
    state = m.state_dict()
    assert "log_sigma" in state  # the key of every saved gaussian_learned run
    fresh = intercept_model()
    with torch.no_grad():
        fresh.log_sigma.zero_()
    fresh.load_state_dict(state)
    assert float(fresh.scale.detach()) == pytest.approx(0.6)


def test_linear_predictor_and_identity_activation():
    torch.manual_seed(4)
    lin = MLPPredictor(3, 2, hidden=[])
    x = torch.randn(6, 3)
    torch.testing.assert_close(lin(x), x @ lin.out.weight.T + lin.out.bias)
    assert (lin.mid_features, lin.features, sum(p.numel() for p in lin.parameters())) == (3, 3, 8)
    for mode in ("double", "lower", "factor", "bias"):  # widen() grows the identity body with the lower latent
        m = GroupPredictor(LinearPredictor(3), "gaussian_learned", 2, mode, group_names=[["a", "b"]], n_train=2)
        z = [torch.randn(6, m.latent_dims["group/0"])]
        assert m.outputs(x, z).shape == (6, 1)
        assert m.predictor.out.in_features == 3 + {"double": 4, "lower": 2, "factor": 2, "bias": 0}[mode]
    net = MLP(3, 2, hidden=[5], activation="identity")
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(net(a + b), net(a) + net(b) - net(torch.zeros(4, 3)))
    with pytest.raises(TypeError, match=r"hidden must be a list of layer sizes \(\[\] for a linear model\), got 8"):
        MLPPredictor(3, 1, hidden=8)
