"""Relaxed categorical latent layers of a hierarchical VAE (latent_family "gs" and "igr_i")."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from contract_helpers import check_protocol
from torch import nn

import vaekit
from vaekit._recording import to_config
from vaekit.config import build_model_parser
from vaekit.distributions import IGR, Bernoulli, GumbelSoftmax, RelaxedCategorical, RelaxedLayer
from vaekit.inference import iwae_log_likelihood
from vaekit.models import DiscreteVAE
from vaekit.models.hierarchical import (GenBlock, HierarchicalVAE, InputBlock, OutputBlock, SimpleBlock, SimpleGenBlock, TopGenBlock,
                                      vdvae)
from vaekit.nn import MLP

F_IN, V, K, TAU = 6, 3, 4, 0.5


def binary(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, d), 0.4), generator=torch.Generator().manual_seed(seed))


def one_layer_pair(relaxation: str, tau: float = TAU, scale: float = 1.0) -> tuple[DiscreteVAE, HierarchicalVAE]:
    """A DiscreteVAE and a one-layer hierarchical VAE with the same posterior head (times ``scale``), prior and decoder."""
    torch.manual_seed(0)
    family = RelaxedCategorical(F_IN, V, K, relaxation=relaxation, temperature=tau)
    decoder = nn.Linear(V * K, F_IN)
    discrete = DiscreteVAE(nn.Identity(), family, decoder, Bernoulli(), [F_IN])
    block = TopGenBlock("z", "h", nn.Linear(F_IN, {"gs": V * K, "igr_i": 2 * V * (K - 1)}[relaxation]), V * K,
                        latent_family=relaxation, categories=K, relaxation_temperature=tau)
    with torch.no_grad():
        family.head.weight.mul_(scale)
        family.head.bias.mul_(scale)
    w, b = family.head.weight.detach(), family.head.bias.detach()
    if relaxation == "igr_i":  # the discrete head is per variable [loc (K-1), raw (K-1)]; a layer's is [all locs, all raws]
        order = torch.arange(V * 2 * (K - 1)).reshape(V, 2, K - 1).transpose(0, 1).flatten()
        w, b = w[order], b[order]
    with torch.no_grad():
        block.net.weight.copy_(w)
        block.net.bias.copy_(b)
    out = nn.Linear(V * K, F_IN)
    out.load_state_dict(decoder.state_dict())
    model = HierarchicalVAE([InputBlock("h"), block, OutputBlock("x_out", "z", out, Bernoulli())], [F_IN])
    return discrete, model


@pytest.mark.parametrize("relaxation", ["gs", "igr_i"])
def test_a_layer_gives_the_discrete_models_kl_and_reconstruction_for_the_same_parameters(relaxation):
    discrete, model = one_layer_pair(relaxation)
    x = binary(5, F_IN)
    torch.manual_seed(3)
    a = discrete.elbo_terms(x)
    torch.manual_seed(3)  # the same uniform (Gumbel) or normal noise: the same relaxed sample
    b = model.elbo_terms(x)
    # GS: the single-sample log q - log p (both in log space); IGR: the closed form
    torch.testing.assert_close(b.kl["z"], a.kl["z"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(b.rec, a.rec, rtol=1e-5, atol=1e-5)
    assert bool((a.kl["z"] != 0).all())


@pytest.mark.parametrize("relaxation", ["gs", "igr_i"])
def test_where_the_simplex_draw_underflows_q_and_p_are_scored_at_its_stable_coordinates(relaxation):
    # tau 0.1 and logits (IGR locations and raw scales) x20: most coordinates of z are exact zeros in float32.
    # The discrete model scores GS in log space (ExpConcrete) and IGR at lambda; the layer must give the same
    # log q, log p, single-sample KL and importance weight. Scored on the clamped simplex point, the GS KL was
    # off by up to hundreds of nats (even negative) and the IGR weights by thousands.
    discrete, model = one_layer_pair(relaxation, tau=0.1, scale=20.0)
    x = binary(5, F_IN)
    torch.manual_seed(3)
    a = discrete.elbo_terms(x)
    torch.manual_seed(3)
    b = model.elbo_terms(x)
    torch.manual_seed(3)
    lw = model.log_weights(x, 1)[0]
    assert int((model.posterior_pass(x).z["z"] == 0).sum()) > 5  # the regime of the bug: exact zeros on the simplex
    torch.testing.assert_close(b.log_q["z"], a.log_q["z"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(b.log_p["z"], a.log_p["z"], rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(b.kl["z"], a.kl["z"], rtol=1e-4, atol=1e-3)  # GS: one sample; IGR: the closed form
    torch.testing.assert_close(lw, a.rec + a.log_p["z"] - a.log_q["z"], rtol=1e-4, atol=1e-3)


def two_category_layer(relaxation: str, tau: float, prior: list[float], bias: list[float]) -> HierarchicalVAE:
    """One relaxed variable of 2 categories over a linear Bernoulli decoder, with a non-zero (trainable) prior."""
    torch.manual_seed(0)
    block = TopGenBlock("z", "h", nn.Linear(F_IN, 2), 2, prior_trainable=True, latent_family=relaxation, categories=2,
                        relaxation_temperature=tau)
    model = HierarchicalVAE([InputBlock("h"), block, OutputBlock("x_out", "z", nn.Linear(2, F_IN), Bernoulli())], [F_IN])
    with torch.no_grad():
        block.prior_params.copy_(torch.tensor(prior))
        block.net.bias.copy_(torch.tensor(bias))
        model.blocks["x_out"].net.weight.mul_(3)
    return model


def quadrature_log_px(model: HierarchicalVAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) of the relaxed model by 1-D quadrature (float64) over the variable's logit t, z = (sigmoid(t), sigmoid(-t)).

    Gumbel-Softmax: t = (l1 - l2 + g1 - g2) / tau with g1 - g2 standard logistic, so t is logistic with
    location (l1 - l2) / tau and scale 1 / tau. IGR-I (delta 1): z = softmax(lambda / tau, 0), lambda ~ N(mu, s^2): t = lambda / tau.
    """
    block = model.blocks["z"]
    params, tau = block.prior_params.detach().double(), block.relaxation_temperature
    if block.latent_family == "gs":
        loc, s = float(params[0] - params[1]) / tau, 1 / tau
        t = torch.linspace(loc - 60 * s, loc + 60 * s, 200001, dtype=torch.float64)
        u = (t - loc) / s
        log_density = -u - math.log(s) - 2 * torch.nn.functional.softplus(-u)
    else:
        mu, sd = float(params[0]), float(torch.nn.functional.softplus(params[1]) + block.min_scale)
        lam = torch.linspace(mu - 12 * sd, mu + 12 * sd, 200001, dtype=torch.float64)
        log_density, t = torch.distributions.Normal(mu, sd).log_prob(lam) + math.log(tau), lam / tau  # density of t
    z = torch.stack([torch.sigmoid(t), torch.sigmoid(-t)], -1)
    out = model.blocks["x_out"].net
    logits = z @ out.weight.detach().double().T + out.bias.detach().double()
    log_px_z = torch.distributions.Bernoulli(logits=logits[:, None, :]).log_prob(x.double()).sum(-1)
    return torch.logsumexp(log_density[:, None] + log_px_z, 0) + math.log(float(t[1] - t[0]))


@pytest.mark.parametrize("relaxation, tau, prior, bias", [
    ("gs", 0.05, [5.0, 0.0], [6.0, 0.0]),       # logit t near 100-120: z2 = sigmoid(-t) is an exact zero in float32
    ("igr_i", 0.05, [4.0, 0.5], [4.0, 1.5]),    # lambda / tau near 80: as often
])
def test_iwae_of_one_two_category_variable_converges_to_the_quadrature_log_likelihood(relaxation, tau, prior, bias):
    # the IWAE bound with 20000 samples is within a few hundredths of log p(x) (0.002-0.011 over 6 seeds); scored on the
    # clamped simplex, the weights were biased and IWAE missed it by 0.35-0.53 nats
    model = two_category_layer(relaxation, tau, prior, bias)
    x = binary(4, F_IN)
    torch.manual_seed(0)
    with torch.no_grad():
        lw = model.log_weights(x, 20000)
    iwae = torch.logsumexp(lw, 0) - math.log(lw.shape[0])
    assert bool(torch.isfinite(lw).all())
    torch.testing.assert_close(iwae.double(), quadrature_log_px(model, x), rtol=0, atol=0.03)


def test_ais_refuses_simplex_valued_latents_naming_the_layers_and_families():
    from vaekit.inference import ais_log_likelihood, bdmc, inference_gaps, reverse_ais

    model, x = relaxed_ladder("gs", "igr_i"), binary(3, 8)
    assert model.simplex_latents == {"z2": "gs", "z1": "igr_i"} and relaxed_ladder("igr_i", "gaussian").simplex_latents == {"z2": "igr_i"}
    message = r"latent\(s\) 'z2' \(gs\), 'z1' \(igr_i\) are relaxed categorical variables .* IWAE"
    for call in (lambda: ais_log_likelihood(model, x, n_chains=2, n_steps=2),
                 lambda: reverse_ais(model, x, model.sample_prior(3), n_chains=2, n_steps=2),
                 lambda: bdmc(model, 2, n_chains=2, n_steps=2),
                 lambda: inference_gaps(model, x, local_opt=(), ais={"n_chains": 2, "n_steps": 2}, iwae_k=2)):
        with pytest.raises(vaekit.InvalidArgumentError, match=message):
            call()
    discrete, _ = one_layer_pair("gs")  # the discrete models' relaxed latent too
    assert discrete.simplex_latents == {"z": "gs"}
    with pytest.raises(vaekit.InvalidArgumentError, match=r"DiscreteVAE: its latent\(s\) 'z' \(gs\)"):
        ais_log_likelihood(discrete, binary(2, F_IN), n_chains=2, n_steps=2)
    gaussian = HierarchicalVAE([
        InputBlock("x_in"), TopGenBlock("z", "x_in", MLP(8, 4), 2), OutputBlock("x_out", "z", MLP(2, 8), Bernoulli())], [8])
    assert gaussian.simplex_latents == {}
    assert math.isfinite(ais_log_likelihood(gaussian, x, n_chains=2, n_steps=2).mean)  # Gaussian layers still anneal


def test_latents_supplied_from_outside_with_exact_zeros_are_scored_finitely():
    model = relaxed_ladder("gs", "igr_i")
    z = {"z2": torch.nn.functional.one_hot(torch.tensor([[0, 3, 1]]), 4).float().flatten(1),  # vertices: exact zeros
         "z1": torch.tensor([[1.0, 0.0, 0.0, 1.0]])}
    assert bool(torch.isfinite(model.log_prior(z)).all()) and bool(torch.isfinite(model.log_joint(binary(1, 8), z)).all())


@pytest.mark.parametrize("family", ["gs", "igr_i"])
def test_a_relaxed_layer_without_a_posterior_has_kl_exactly_zero_also_by_one_sample(family):
    model = HierarchicalVAE([
        InputBlock("x_in"), TopGenBlock("z2", "x_in", MLP(8, 18), 12, latent_family="igr_i", categories=4),
        SimpleGenBlock("z1", "z2", MLP(12, 4, [6]), 4, latent_family=family, categories=2),
        OutputBlock("x_out", "z1", MLP(4, 8), Bernoulli())], [8], kl="mc")
    torch.manual_seed(0)
    terms = model.elbo_terms(binary(64, 8))
    assert bool((terms.kl["z1"] == 0).all()) and bool((terms.log_q["z1"] == terms.log_p["z1"]).all())


def test_the_igr_layer_kl_is_the_gaussian_kl_before_softmax_pp_written_out():
    _, model = one_layer_pair("igr_i")
    x = binary(4, F_IN, seed=1)
    params = model.blocks["z"].net(x)
    loc, raw = params.chunk(2, -1)
    s = torch.nn.functional.softplus(raw) + 1e-4
    by_hand = (0.5 * (s**2 + loc**2 - 1) - s.log()).sum(-1)  # KL(N(loc, s) || N(0, 1)) summed over V * (K - 1)
    torch.testing.assert_close(model.elbo_terms(x).kl["z"], by_hand, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("relaxation", ["gs", "igr_i"])
def test_the_layer_distribution_scores_a_draw_as_the_sum_over_its_variables(relaxation):
    torch.manual_seed(0)
    base = GumbelSoftmax(torch.randn(4, V, K), TAU) if relaxation == "gs" else IGR(torch.randn(4, V, K - 1), torch.rand(4, V, K - 1) + 0.5, TAU)
    layer = RelaxedLayer(base)
    z = layer.rsample((2,))
    assert z.shape == (2, 4, V * K) and layer.event_shape == (V * K,)
    torch.testing.assert_close(layer.log_prob(z), base.log_prob(z.unflatten(-1, (V, K))).sum(-1))
    zz, log_q = layer.rsample_and_log_prob()
    torch.testing.assert_close(log_q, layer.log_prob(zz), rtol=1e-4, atol=1e-3)
    # the stable coordinates: z is exp(y) (GS) or softmax++(lambda) (IGR), log_q their density; against another layer
    # of the family, log q - log p at the coordinates is log q - log p on the simplex (no underflow at these logits)
    z, coords, log_q = layer.rsample_with_coords((2,))
    torch.testing.assert_close(z, layer.to_layer(coords.exp() if relaxation == "gs" else base.to_simplex(coords)))
    torch.testing.assert_close(log_q, layer.log_prob_coords(coords), rtol=1e-5, atol=1e-4)
    other = RelaxedLayer(GumbelSoftmax(torch.randn(4, V, K), TAU) if relaxation == "gs" else IGR(torch.randn(4, V, K - 1), torch.rand(4, V, K - 1) + 0.5, TAU))
    elsewhere = RelaxedLayer(IGR(torch.zeros(4, V, K - 1), torch.ones(4, V, K - 1), 0.7 if relaxation == "igr_i" else TAU))
    assert layer.shares_coordinates(other) and not layer.shares_coordinates(elsewhere)  # another family or temperature
    torch.testing.assert_close(log_q - other.log_prob_coords(coords), layer.log_prob(z) - other.log_prob(z), rtol=1e-4, atol=1e-3)


def relaxed_ladder(top: str = "gs", low: str = "igr_i", seed: int = 0) -> HierarchicalVAE:
    """A categorical top layer (3 variables of 4 categories) over a categorical (or Gaussian) lower layer."""
    torch.manual_seed(seed)
    low_args = {} if low == "gaussian" else {"categories": 2}
    hf = {"gs": 12, "igr_i": 18}
    low_hf = {"gaussian": 8, "gs": 4, "igr_i": 4}[low]
    return HierarchicalVAE([
        InputBlock("x_in"),
        SimpleBlock("h", "x_in", MLP(8, 10, [10])),
        TopGenBlock("z2", "h", MLP(10, hf[top]), 12, prior_trainable=True, latent_family=top, categories=4),
        GenBlock("z1", "z2", "h", MLP(12, low_hf, [10]), MLP(10, low_hf), 4, latent_family=low, **low_args),
        OutputBlock("x_out", "z1", MLP(4, 8, [10]), Bernoulli()),
    ], [8])


@pytest.mark.parametrize("families", [("gs", "igr_i"), ("igr_i", "gaussian"), ("gs", "gs")])
def test_protocol_and_iwae_at_least_elbo_with_categorical_layers(families):
    model = relaxed_ladder(*families)
    x = binary(16, 8)
    check_protocol(model, x[:3])
    torch.manual_seed(0)
    elbo = iwae_log_likelihood(model, x, k=1).mean
    torch.manual_seed(1)
    iwae = iwae_log_likelihood(model, x, k=200).mean
    # k samples are drawn and averaged (untrained: a wide gap, 0.8-3 nats seen); whether the weights are unbiased is
    # what test_iwae_of_one_two_category_variable_converges_to_the_quadrature_log_likelihood checks
    assert float(iwae) > float(elbo) + 0.3
    assert math.isfinite(float(iwae)) and float(iwae) < 0


def test_sampling_shapes_simplex_and_layer_temperatures():
    model = relaxed_ladder("gs", "igr_i")
    torch.manual_seed(0)
    tr = model.prior_pass(5, temperature=[1.0, 0.5])
    assert tr.z["z2"].shape == (5, 12) and tr.z["z1"].shape == (5, 4)
    torch.testing.assert_close(tr.z["z2"].unflatten(-1, (3, 4)).sum(-1), torch.ones(5, 3))
    torch.testing.assert_close(tr.z["z1"].unflatten(-1, (2, 2)).sum(-1), torch.ones(5, 2))
    # temperature 0: the zero-noise point, softmax(logits / tau) for GS, softmax++(mu) for IGR; deterministic.
    # Non-zero prior logits first: at all-zero logits any tau gives the uniform point, so a wrong tau went unseen
    with torch.no_grad():
        model.blocks["z2"].prior_params.copy_(torch.linspace(-1.5, 2.0, 12))
    cold = model.prior_pass(5, temperature=0)
    logits = model.blocks["z2"].prior_params.detach()
    torch.testing.assert_close(cold.z["z2"][0], (logits.unflatten(-1, (3, 4)) / 0.5).softmax(-1).flatten())
    again = model.prior_pass(5, temperature=0)
    assert torch.equal(cold.z["z1"], again.z["z1"])
    p1 = cold.priors["z1"].base
    torch.testing.assert_close(cold.z["z1"], p1.to_simplex(p1.loc).flatten(-2))
    # a temperature scales the noise: the spread about the zero-noise point shrinks with it
    torch.manual_seed(1)
    warm = model.prior_pass(2000, temperature=[1.0, 1.0]).z["z2"].detach()
    torch.manual_seed(1)
    cool = model.prior_pass(2000, temperature=[0.3, 1.0]).z["z2"].detach()
    centre = cold.z["z2"][0].detach()
    assert float((cool - centre).abs().mean()) < 0.6 * float((warm - centre).abs().mean().detach())
    assert model.sample(3, temperature=[0.5, 0.0]).shape == (3, 8)


def test_a_spatial_vdvae_with_categorical_latents_along_the_channel_axis():
    torch.manual_seed(0)
    model = vdvae([1, 8, 8], enc_blocks="8x1,8d2,4x1,4d4,1x1", dec_blocks="1x1,4m1,4x1,8m4", width=8, latent_channels=4,
                  bottleneck_multiple=0.5, likelihood="bernoulli", latent_family="gs", categories=2)
    block = model.blocks["z4"]
    assert block.latent_shape == (4, 8, 8) and block.head_features == 4
    x = torch.bernoulli(torch.full((8, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    tr = model.posterior_pass(x)
    q = tr.posteriors["z4"]
    assert isinstance(q, RelaxedLayer) and q.base.batch_shape == (8, 2, 8, 8) and q.event_shape == (4, 8, 8)
    # channels 0-1 are variable 0 at each position, channels 2-3 variable 1: each pair sums to one
    z = tr.z["z4"]
    torch.testing.assert_close(z.unflatten(1, (2, 2)).sum(2), torch.ones(8, 2, 8, 8))
    torch.testing.assert_close(q.log_prob(z), q.base.log_prob(z.unflatten(1, (2, 2)).movedim(2, -1)).sum((1, 2, 3)))
    torch.manual_seed(0)
    elbo = iwae_log_likelihood(model, x, k=1).mean
    torch.manual_seed(1)
    iwae = iwae_log_likelihood(model, x, k=100).mean
    assert float(iwae) > float(elbo) + 0.3
    assert model.sample(2, temperature=[1.0, 0.5, 0.0, 1.0]).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("kw, message", [
    ({"latent_family": "gs"}, r"latent_family='gs' of block 'z' needs categories"),
    ({"latent_family": "igr_i", "categories": 5}, r"categories of block 'z' must divide its latent features \(channels\) 12"),
    ({"latent_family": "gs", "categories": 1}, r"categories must be an int >= 2, got 1"),
    ({"categories": 4}, r"categories of block 'z' is for the relaxed categorical families"),
    ({"latent_family": "gs", "categories": 4, "relaxation_temperature": 0.0}, r"relaxation_temperature must be"),
    ({"relaxation_temperature": 0.1}, r"relaxation_temperature of block 'z' is for the relaxed categorical families .* "
                                      r"got relaxation_temperature=0.1 with latent_family='gaussian'"),
    ({"latent_family": "laplace", "relaxation_temperature": 2.0}, r"relaxation_temperature=2.0 with latent_family='laplace'"),
    ({"latent_family": "igr_i", "categories": 4, "min_scale": 1.0}, r"min_scale of block 'z' must be < 1 with "
                                                                      r"latent_family='igr_i'.* got min_scale=1.0"),
])
def test_bad_categorical_arguments_are_refused_naming_them(kw, message):
    with pytest.raises(vaekit.InvalidArgumentError, match=message):
        TopGenBlock("z", "h", MLP(10, 24), 12, **kw)


def test_the_fixed_igr_top_prior_is_a_unit_gaussian_before_softmax_pp_for_any_allowed_min_scale():
    for min_scale in (1e-4, 0.3, 0.99):
        prior = TopGenBlock("z", "h", MLP(10, 18), 12, min_scale=min_scale, latent_family="igr_i", categories=4).prior([], 2)[0]
        torch.testing.assert_close(prior.base.scale, torch.ones(2, 3, 3), rtol=1e-5, atol=1e-6)
        assert float(prior.base.loc.abs().max()) == 0
    assert TopGenBlock("z", "h", MLP(10, 24), 12, relaxation_temperature=0.5).latent_family == "gaussian"  # the default passes


def test_kl_analytic_with_a_gumbel_softmax_layer_is_refused_at_construction_naming_the_block():
    blocks = lambda top: [InputBlock("x_in"), TopGenBlock("z", "x_in", MLP(8, 12 if top == "gs" else 18), 12, latent_family=top,
                                                           categories=4), OutputBlock("x_out", "z", MLP(12, 8), Bernoulli())]
    with pytest.raises(vaekit.InvalidArgumentError, match=r"kl='analytic' .* block\(s\) \['z'\] have latent_family='gs'"):
        HierarchicalVAE(blocks("gs"), [8], kl="analytic")
    model = HierarchicalVAE(blocks("igr_i"), [8], kl="analytic")  # IGR has its closed form
    assert bool(torch.isfinite(model.elbo_terms(binary(3, 8)).kl["z"]).all())


def test_a_network_of_the_wrong_width_is_refused_at_construction_with_the_width_needed():
    with pytest.raises(vaekit.InvalidArgumentError, match=r"'igr_i' latent of shape \(12,\) \(3 variables of 4 categories\) needs 18 features"):
        HierarchicalVAE([InputBlock("x_in"), TopGenBlock("z", "x_in", MLP(8, 24), 12, latent_family="igr_i", categories=4),
                         OutputBlock("x_out", "z", MLP(12, 8), Bernoulli())], [8])


def test_a_yaml_config_trains_and_its_run_directory_loads_with_the_same_layers(tmp_path, capsys):
    from vaekit.config import fit_config
    from vaekit.training import load_checkpoint

    text = f"""
model:
  class_path: vaekit.models.hierarchical.vdvae
  init_args:
    data_shape: [1, 8, 8]
    enc_blocks: "8x1,8d2,4x1,4d4,1x1"
    dec_blocks: "1x1,4m1,4x1,8m4"
    width: 8
    latent_channels: 4
    bottleneck_multiple: 0.5
    likelihood: bernoulli
    latent_family: igr_i
    categories: 2
    relaxation_temperature: 0.7
data:
  class_path: vaekit.data.Digits
  init_args: {{binarize: threshold, flatten: false}}
trainer: {{max_steps: 2, batch_size: 32, progress_bar: false, root_dir: {str(tmp_path / "runs")!r}}}
"""
    res = fit_config(yaml.safe_load(text))
    assert res.global_step == 2 and not res.failed
    loaded = vaekit.load(res.run_dir, checkpoint="last")
    assert all((loaded.blocks[k].latent_family, loaded.blocks[k].categories, loaded.blocks[k].relaxation_temperature)
               == ("igr_i", 2, 0.7) for k in loaded.latent_names)
    saved = load_checkpoint(res.run_dir.last_checkpoint)["model"]
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in saved.items()) and set(saved) == set(loaded.state_dict())
    x = torch.bernoulli(torch.full((3, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    assert bool(torch.isfinite(loaded.log_weights(x, 2)).all())
    # vaekit evaluate --ais-chains refuses the run (exit status 2, one line naming the layers) before writing anything
    from vaekit.cli import main

    before = sorted(p.name for p in res.run_dir.path.rglob("*"))
    assert main(["evaluate", str(res.run_dir.path), "--ais-chains", "2", "--ais-steps", "2", "--n-points", "4", "--split", "val"]) == 2
    assert "'z1' (igr_i)" in capsys.readouterr().err
    assert sorted(p.name for p in res.run_dir.path.rglob("*")) == before


def test_a_python_built_model_saves_and_loads_with_identical_outputs(tmp_path):
    data = vaekit.data.ArrayData(torch.bernoulli(torch.full((64, 8), 0.3), generator=torch.Generator().manual_seed(1)))
    net = relaxed_ladder("gs", "igr_i")
    res = vaekit.Trainer(max_steps=3, batch_size=16, progress_bar=False).fit(net, data, run_dir=tmp_path / "run")
    loaded = vaekit.load(res.run_dir, checkpoint="last")
    assert [(loaded.blocks[k].latent_family, loaded.blocks[k].categories) for k in loaded.latent_names] == [("gs", 4), ("igr_i", 2)]
    xx = binary(5, 8)
    net.eval()
    torch.manual_seed(7)
    u = net.log_weights(xx, 4), net.sample(3, temperature=[0.5, 1.0])
    torch.manual_seed(7)
    v = loaded.log_weights(xx, 4), loaded.sample(3, temperature=[0.5, 1.0])
    for a, b in zip(u, v):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
