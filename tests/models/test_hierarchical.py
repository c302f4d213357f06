"""HierarchicalVAE: graph validation, the model protocol, training, serialization, sampling, custom blocks."""

from __future__ import annotations

import pytest
import torch
import yaml
from contract_helpers import check_protocol
from hierarchical_golden import Shift, custom_graph
from torch import Tensor

import vaekit
from vaekit._recording import to_config
from vaekit.config import build_model_parser
from vaekit.distributions import Bernoulli, DiagonalNormal
from vaekit.inference import iwae_log_likelihood
from vaekit.models.hierarchical.blocks import Block, DualInputBlock, InputBlock, OutputBlock, SimpleBlock
from vaekit.models.hierarchical.generative import GenBlock, GenerativeBlock, TopGenBlock
from vaekit.models.hierarchical.model import HierarchicalVAE
from vaekit.models.hierarchical.presets import ladder_blocks, ladder_vae, small_vdvae
from vaekit.nn import MLP
from vaekit.objectives import ELBO


MODELS = {
    "ladder": lambda: ladder_vae([1, 3, 4], hidden=(8, 6), latent=(4, 2)),
    "vdvae": lambda: small_vdvae([12], width=8, latent_features=2, n_layers=3, encoder_hidden=[10]),
    "custom": custom_graph,  # every block type but ResidualGenBlock (covered by small_vdvae), plus a custom block
}


def _x(model: HierarchicalVAE, n: int = 6) -> Tensor:
    torch.manual_seed(0)
    x = torch.rand(n, *model.data_shape)
    return torch.bernoulli(x) if isinstance(model.output_block.likelihood, Bernoulli) else x


# ---------------------------------------------------------------------------------------------- graph validation
def _ladder(**change) -> list[Block]:
    blocks = ladder_blocks([6], hidden=(4, 3), latent=(3, 2))
    for i, b in change.items():
        blocks[int(i[1:])] = b
    return blocks


GRAPH_ERRORS = {
    "empty": ([], "non-empty list"),
    "not_a_block": ([MLP(2, 2)], "blocks[0] must be a vaekit.models.hierarchical.Block, got MLP"),
    "first_reads_not_x": (_ladder(i0=SimpleBlock("x_in", "h1", MLP(6, 6))), "first block 'x_in' must read the data 'x'"),
    "last_not_output": (_ladder()[:-1], "last block must be an OutputBlock"),
    "missing_input": (_ladder(i2=SimpleBlock("h2", "h9", MLP(4, 3))), "block 'h2' reads 'h9', but no block is named 'h9'"),
    "missing_condition": (_ladder(i3=TopGenBlock("z2", "enc", MLP(3, 4), 2)), "block 'z2' reads 'enc', but no block is named 'enc'"),
    "later_input": (_ladder(i1=SimpleBlock("h1", "h2", MLP(3, 4))), "block 'h1' (index 1) reads 'h2', which comes later (index 2)"),
    "no_generative": ([InputBlock("x_in"), OutputBlock("o", "x_in", MLP(6, 6), Bernoulli())], "at least one generative block"),
    "duplicate": (_ladder(i2=SimpleBlock("h1", "h1", MLP(4, 3))), "block name 'h1' is used twice"),
    "generator_reads_encoder": (_ladder(i5=OutputBlock("x_out", "h1", MLP(4, 6), Bernoulli())),
                                "generator block 'x_out' reads the encoder output 'h1' as an input"),
    "generator_reads_x": (_ladder(i5=OutputBlock("x_out", "x", MLP(6, 6), Bernoulli())), "block 'x_out' in the generator reads the data 'x'"),
}


@pytest.mark.parametrize("case", GRAPH_ERRORS)
def test_graph_validation_names_block_and_missing_name(case):
    blocks, message = GRAPH_ERRORS[case]
    with pytest.raises((ValueError, TypeError)) as err:
        HierarchicalVAE(blocks, [6])
    assert message in str(err.value)


@pytest.mark.parametrize("make,message", [
    (lambda: SimpleBlock("x", "h", MLP(2, 2)), "block name must be a Python identifier other than 'x'"),
    (lambda: SimpleBlock("a.b", "h", MLP(2, 2)), "got 'a.b'"),
    (lambda: SimpleBlock("h", "x", None), "net of block 'h' must be a torch.nn.Module"),
    (lambda: DualInputBlock("h", ["a"]), "must name exactly 2 blocks, got ['a']"),
    (lambda: DualInputBlock("h", ["a", "b"], mode="max"), "must be 'concat' or 'sum', got 'max'"),
    (lambda: GenBlock("z", "h", "c", MLP(2, 2), MLP(2, 2), latent_features=0), "latent_features of block 'z' must be an int >= 1, got 0"),
    (lambda: OutputBlock("o", "z", MLP(2, 2), MLP(2, 2)), "likelihood of block 'o' must be a vaekit Likelihood"),
    (lambda: HierarchicalVAE(ladder_blocks([6]), [6, 0]), "data_shape must be a non-empty list of positive ints"),
    (lambda: HierarchicalVAE(ladder_blocks([6]), [6], kl="exact"), "kl must be 'auto', 'analytic' or 'mc', got 'exact'"),
])
def test_bad_block_arguments(make, message):
    with pytest.raises((ValueError, TypeError)) as err:
        make()
    assert message in str(err.value)


def test_split_and_latent_order():
    model = MODELS["custom"]()
    assert [b.name for b in model.encoder_blocks] == ["x_in", "h1", "h1s"]
    assert model.latent_names == ("z2", "z1", "z0") and model.latent_dims == {"z2": 3, "z1": 4, "z0": 2}
    vd = MODELS["vdvae"]()
    assert [b.name for b in vd.encoder_blocks] == ["x_in", "enc"] and vd.generator_blocks[0].name == "h0"


def test_wrong_network_size_is_named():
    blocks = ladder_blocks([6], hidden=(4, 3), latent=(3, 2))
    blocks[4] = GenBlock("z1", "z2", "h1", MLP(2, 5), MLP(4, 6), 3)
    with pytest.raises(ValueError, match=r"prior_net of 'z1' returned 5 features but a Gaussian over 3 latents needs .* = 6"):
        HierarchicalVAE(blocks, [6]).sample(2)


# ---------------------------------------------------------------------------------------------- protocol
@pytest.mark.parametrize("name", MODELS)
def test_protocol_shapes_and_identities(name):
    model = MODELS[name]()
    x = _x(model)
    check_protocol(model, x)
    computed, dists = model(x)
    assert set(dists) == set(model.latent_names) and set(computed) >= {b for b in model.blocks}
    assert list(model.encode(x)) == list(model.latent_names)
    z = model.sample_prior(4)
    assert {k: v.shape for k, v in z.items()} == {k: (4, d) for k, d in model.latent_dims.items()}
    assert model.sample_mixed(x, 1).shape == x.shape


@pytest.mark.parametrize("name", MODELS)
def test_elbo_terms_match_one_log_weight(name):
    """With Monte Carlo KL and the same noise, rec - sum(kl) from elbo_terms is the k=1 log-weight."""
    model = MODELS[name]()
    model.kl_method = "mc"
    x = _x(model)
    torch.manual_seed(3)
    elbo = model.elbo_terms(x).elbo
    torch.manual_seed(3)
    torch.testing.assert_close(elbo, model.log_weights(x, 1)[0])


def test_log_prior_is_the_sum_of_layer_priors():
    """log p(z) of the ladder = N(z2; 0, I) + N(z1; prior_net(z2)) computed by hand."""
    model = MODELS["ladder"]()
    z = model.sample_prior(5)
    z1_prior, _ = model.blocks["z1"].prior([z["z2"]], 5)
    std = torch.distributions.Normal(0.0, 1.0)
    want = std.log_prob(z["z2"]).sum(-1) + z1_prior.log_prob(z["z1"])
    torch.testing.assert_close(model.log_prior(z), want)


@pytest.mark.parametrize("name", ["ladder", "vdvae"])
def test_trains_and_iwae_bound_is_above_elbo(name):
    """A few ELBO steps on 4 repeated binary patterns; then IWAE_500 > ELBO (an independent 50-draw estimate)."""
    torch.manual_seed(0)
    model = MODELS[name]()
    x = torch.bernoulli(torch.full((4, *model.data_shape), 0.5)).repeat(8, *[1] * len(model.data_shape))
    objective, opt = ELBO(), torch.optim.Adam(model.parameters(), lr=2e-2)
    with torch.no_grad():
        before = model.elbo_terms(x).elbo.mean()
    for step in range(100):
        loss, metrics = objective(model, x, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert set(metrics) >= {f"kl/{k}" for k in model.latent_names}
    torch.manual_seed(1)
    with torch.no_grad():
        elbo = torch.stack([model.elbo_terms(x).elbo.mean() for _ in range(50)]).mean()
    iwae = iwae_log_likelihood(model, x, k=500).mean
    assert elbo > before + 1.0  # training improved the bound
    assert iwae > elbo + 0.1  # the k=500 bound is clearly tighter (the gaps seen are 0.3-1 nats)
    assert iwae < 0  # a log-probability of binary data


# ---------------------------------------------------------------------------------------------- serialization
@pytest.mark.parametrize("name", MODELS)
def test_config_round_trip_reproduces_outputs_exactly(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    text = yaml.safe_dump(to_config(model))
    parser = build_model_parser()
    rebuilt = parser.instantiate(parser.parse_object({"model": yaml.safe_load(text)})).model
    assert type(rebuilt) is HierarchicalVAE and list(rebuilt.blocks) == list(model.blocks)
    rebuilt.load_state_dict(model.state_dict())
    x = _x(model)
    torch.manual_seed(5)
    a = model.log_weights(x, 3), model.sample(2, temperature=0.7)
    torch.manual_seed(5)
    b = rebuilt.log_weights(x, 3), rebuilt.sample(2, temperature=0.7)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- sampling
def test_temperature_zero_gives_the_prior_means():
    model = MODELS["ladder"]()
    z = model.sample_prior(3, temperature=0)
    torch.testing.assert_close(z["z2"], torch.zeros(3, 2))
    means, _ = model.blocks["z1"].prior([torch.zeros(3, 2)], 3)
    torch.testing.assert_close(z["z1"], means.mean)
    torch.testing.assert_close(model.sample(3, temperature=0), model.decode(z).mean)
    # the means of the VDVAE stack: every layer's prior at the state of the means above it
    vd = MODELS["vdvae"]()
    zv = vd.sample_prior(2, temperature=[0, 0, 0])
    tr = vd.latent_pass(zv)
    for k in vd.latent_names:
        torch.testing.assert_close(zv[k], tr.priors[k].mean)


def test_temperature_per_layer_list_and_schedule():
    model = MODELS["vdvae"]()
    torch.manual_seed(0)
    z = model.sample_prior(4, temperature=lambda layer: 0.0 if layer < 2 else 1.0)
    assert torch.equal(z["z1"][0], z["z1"][1]) and torch.equal(z["z2"][0], z["z2"][3])
    assert not torch.equal(z["z3"][0], z["z3"][1])
    with pytest.raises(vaekit.InvalidArgumentError, match=r"temperature lists one value per latent layer of HierarchicalVAE "
                                                          r"\(3: z1, z2, z3, top first\), got 2 values \[1.0, 1.0\]"):
        model.sample(2, temperature=[1.0, 1.0])
    # a schedule string, as the CLI and the analysis take it, goes to the layers top first
    torch.manual_seed(0)
    scheduled = model.sample_prior(4, temperature="linear:0:1")
    torch.manual_seed(0)
    listed = model.sample_prior(4, temperature=[0.0, 0.5, 1.0])
    assert all(torch.equal(scheduled[k], listed[k]) for k in listed)
    for bad, message in (("linear:1", "a schedule 'linear:START:END', got 'linear:1'"), ("linear:1:-2", ">= 0, got -2"),
                         ({"z1": 1.0}, "a callable, got dict")):
        with pytest.raises(vaekit.InvalidArgumentError, match=message):
            model.sample(2, temperature=bad)
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        model.sample(2, temperature=-1.0)


def test_sample_mixed_layers():
    model = MODELS["ladder"]()
    x = _x(model, 3)
    # no posterior layer at temperature 0: the unconditional prior-mean sample for every x
    torch.testing.assert_close(model.sample_mixed(x, 0, temperature=0), model.sample(3, temperature=0))
    # posterior for the top layer only: z2 differs between examples, and z1 is the prior mean given z2
    tr = model.mixed_pass(x, 1, temperature=0)
    assert list(tr.posteriors) == ["z2"]
    torch.testing.assert_close(tr.z["z1"], tr.priors["z1"].mean)
    with pytest.raises(ValueError, match="n_posterior_layers must be <= the number of latent layers \\(2\\), got 3"):
        model.sample_mixed(x, 3)


def test_custom_block_trains_and_is_recorded():
    model = MODELS["custom"]()
    cfg = to_config(model)
    shift = cfg["init_args"]["blocks"][2]
    assert shift == {"class_path": f"{Shift.__module__}.Shift", "init_args": {"name": "h1s", "inputs": "h1", "offset": 0.5}}
    x = _x(model)
    loss, _ = ELBO()(model, x)
    loss.backward()
    assert model.blocks["h1s"].gain.grad is not None and model.blocks["h1s"].gain.grad.abs() > 0


def test_ais_over_all_layers_agrees_with_iwae():
    """AIS anneals both layers jointly through log_prior / log_joint; on an untrained tiny ladder it matches IWAE_2000."""
    from vaekit.inference import ais_log_likelihood

    torch.manual_seed(0)
    model = ladder_vae([12], hidden=(8, 6), latent=(4, 2))
    x = torch.bernoulli(torch.full((4, 12), 0.5))
    ais = ais_log_likelihood(model, x, n_chains=8, n_steps=50).mean
    iwae = iwae_log_likelihood(model, x, k=2000).mean
    assert abs(ais - iwae) < 0.05 and ais < 0


# ---------------------------------------------------------------------------------------------- the passes, one per mode
@pytest.mark.parametrize("name", MODELS)
def test_each_pass_is_its_mode(name):
    """posterior_pass: q for every layer; latent_pass: the given z, priors only; prior_pass and mixed_pass at the ends
    (0 or all posterior layers) are prior_pass and posterior_pass draw for draw."""
    model = MODELS[name]()
    x = _x(model)
    torch.manual_seed(1)
    post = model.posterior_pass(x)
    assert list(post.posteriors) == list(post.priors) == list(post.z) == list(model.latent_names)
    torch.manual_seed(1)
    every = model.mixed_pass(x, len(model.latent_names))
    for k in model.latent_names:
        assert torch.equal(every.z[k], post.z[k])
    torch.manual_seed(2)
    prior = model.prior_pass(6, temperature=0.7)
    assert not prior.posteriors and "x" not in prior.computed
    torch.manual_seed(2)
    none = model.mixed_pass(x, 0, temperature=0.7)
    assert not none.posteriors and torch.equal(none.params, prior.params)
    given = model.latent_pass(post.z)
    assert not given.posteriors and all(given.z[k] is post.z[k] for k in model.latent_names)
    # at the posterior's own latents, the priors and the output are those of the posterior pass
    for k in model.latent_names:
        torch.testing.assert_close(given.priors[k].mean, post.priors[k].mean, rtol=0, atol=0)
    torch.testing.assert_close(given.params, post.params, rtol=0, atol=0)
    lp = sum(post.priors[k].log_prob(post.z[k]) for k in model.latent_names)
    torch.testing.assert_close(model.log_prior(post.z), lp, rtol=0, atol=0)


def test_posterior_pass_mean_takes_every_posterior_mean():
    model = MODELS["vdvae"]()
    tr = model.posterior_pass(_x(model), mean=True)
    for k in model.latent_names:
        assert torch.equal(tr.z[k], tr.posteriors[k].mean)
    torch.manual_seed(0)
    a = model.posterior_pass(_x(model), mean=True).params
    torch.manual_seed(1)
    assert torch.equal(a, model.posterior_pass(_x(model), mean=True).params)  # no randomness left


@pytest.mark.parametrize("z,message", [
    (lambda z: torch.zeros(4, 2), "z must be a dict {latent name: tensor} with keys ['z2', 'z1'], got Tensor"),
    (lambda z: {"z2": z["z2"]}, "z lacks the latent(s) ['z1']; this model's latents are ['z2', 'z1']"),
    (lambda z: {**z, "z1": torch.zeros(4, 3)}, "z['z1'] has shape (4, 3); latent 'z1' needs shape (..., 4)"),
    (lambda z: {**z, "z1": torch.zeros(2, 4, 4)}, "the latents must share their leading (sample, batch) dims, got {'z2': (4,), 'z1': (2, 4)}"),
])
def test_latents_of_the_wrong_shape_are_named(z, message):
    model = MODELS["ladder"]()
    bad = z(model.sample_prior(4))
    for method in (model.decode, model.log_prior, model.latent_pass):
        with pytest.raises((TypeError, ValueError)) as err:
            method(bad)
        assert message in str(err.value)


def test_latent_pass_takes_one_leading_dim():
    model = MODELS["ladder"]()
    z = {k: v.expand(3, *v.shape) for k, v in model.sample_prior(4).items()}
    assert model.log_prior(z).shape == (3, 4)
    with pytest.raises(ValueError, match=r"latent_pass takes latents of shape \(N, \*latent_shape\), got leading dims \(3, 4\)"):
        model.latent_pass(z)


class Shifted(GenerativeBlock):
    """A custom latent layer written against the documented API: prior, posterior, output and a tempered draw."""

    def __init__(self, name: str, inputs: str, condition: str, features: int, latent_features: int) -> None:
        super().__init__(name, inputs, condition, latent_features)
        self.prior_net, self.posterior_net = MLP(features, 2 * latent_features), MLP(features, 2 * latent_features)

    def prior(self, inputs, n):
        loc, raw = self.prior_net(inputs[0]).chunk(2, -1)
        return DiagonalNormal(loc, torch.nn.functional.softplus(raw) + 1e-3), loc

    def posterior(self, condition, inputs, state):
        loc, raw = self.posterior_net(condition).chunk(2, -1)
        return DiagonalNormal(state + loc, torch.nn.functional.softplus(raw) + 1e-3)

    def output(self, z, inputs, state):
        return z - state

    def tempered_sample(self, prior, temperature):
        return prior.loc + temperature * prior.scale * torch.rand_like(prior.loc)  # uniform noise: a different family's draw


def test_custom_generative_block_runs_in_every_pass():
    blocks = ladder_blocks([6], hidden=(4, 3), latent=(3, 2))
    blocks.insert(5, Shifted("zs", "z1", "h2", 3, 3))
    blocks[-1] = OutputBlock("x_out", "zs", MLP(3, 6), Bernoulli())
    model = HierarchicalVAE(blocks, [6])
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    assert model.latent_names == ("z2", "z1", "zs") and model.log_weights(x, 3).shape == (3, 5)
    torch.manual_seed(0)
    tr = model.prior_pass(5, temperature=[1.0, 1.0, 0.5])
    offset = tr.z["zs"] - tr.priors["zs"].loc
    assert bool((offset >= 0).all()) and bool((offset <= 0.5 * tr.priors["zs"].scale).all())  # the block's own draw
    torch.testing.assert_close(tr.computed["zs"], tr.z["zs"] - tr.priors["zs"].loc)  # its output, from the prior's state
    assert model.sample_mixed(x, 2).shape == x.shape and model.encode(x)["zs"].batch_shape == (5,)


def test_generative_block_needs_a_prior_and_a_posterior_where_it_has_a_condition():
    class NoPrior(GenerativeBlock):
        pass

    with pytest.raises(TypeError, match="abstract"):
        NoPrior("z", "h", "c", 2)

    class NoPosterior(GenerativeBlock):
        def prior(self, inputs, n):
            return DiagonalNormal(torch.zeros(n, 2), torch.ones(n, 2)), None

    blocks = ladder_blocks([6], hidden=(4, 3), latent=(3, 2))
    blocks[3] = NoPosterior("z2", (), "h2", 2)
    model = HierarchicalVAE(blocks, [6])
    assert model.sample(2).shape == (2, 6)  # the prior pass needs no posterior
    with pytest.raises(NotImplementedError, match="NoPosterior 'z2' has the condition 'h2' but does not implement posterior"):
        model.log_weights(torch.zeros(2, 6))


def test_latent_pairs_are_each_layers_conditional_prior_and_posterior():
    """latent_pairs (what per-dimension KL statistics read) gives, at the same draws, the pairs whose
    closed-form KL is the model's own per-layer KL; the lower prior depends on the draw above it."""
    from torch.distributions import kl_divergence

    from vaekit.models.hierarchical import ladder_vae

    model = ladder_vae([20], hidden=[16, 8], latent=[4, 2])
    x = torch.bernoulli(torch.full((5, 20), 0.3))
    torch.manual_seed(0)
    pairs = model.latent_pairs(x)
    torch.manual_seed(0)
    terms = model.elbo_terms(x)
    assert list(pairs) == list(model.latent_names)
    for name, (prior, posterior) in pairs.items():
        torch.testing.assert_close(kl_divergence(posterior, prior), terms.kl[name], rtol=0, atol=1e-6)
    torch.manual_seed(1)
    other = model.latent_pairs(x)
    assert not torch.allclose(other["z1"][0].mean, pairs["z1"][0].mean)  # another draw of z2, another p(z1|z2)
