"""Spatial latents in hierarchical VAEs: shape checks, reshape equivalence with flat latents, VDVAE blocks and layouts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import vaekit
from vaekit.analysis import kl_statistics
from vaekit.distributions import Bernoulli, DiagonalNormal
from vaekit.inference import ais_log_likelihood, iwae_log_likelihood
from vaekit.models.hierarchical import (LAYOUTS, GenBlock, HierarchicalVAE, InputBlock, OutputBlock, SimpleBlock,
                                        TopDownBlock, TopGenBlock, parse_layer_string, vdvae)
from vaekit.nn import BottleneckBlock, Resample, VectorToMap

SHAPE = (1, 4, 4)


def conv(i, o):
    return nn.Conv2d(i, o, 1)


def spatial_ladder(seed: int = 0) -> HierarchicalVAE:
    """Two spatial latent layers of shape (2, 4, 4) built from 1x1 convolutions."""
    torch.manual_seed(seed)
    return HierarchicalVAE([
        InputBlock("x_in"),
        SimpleBlock("h", "x_in", conv(1, 3)),
        TopGenBlock("z2", "h", conv(3, 4), [2, 4, 4], prior_trainable=True),
        GenBlock("z1", "z2", "h", conv(2, 4), conv(5, 4), [2, 4, 4], concat_posterior=True),
        OutputBlock("x_out", "z1", conv(2, 1), Bernoulli()),
    ], SHAPE)


class Dense1x1(nn.Module):
    """A 1x1 convolution applied to a channel-major flattened map: the same numbers, one Linear."""

    def __init__(self, c: nn.Conv2d, positions: int) -> None:
        super().__init__()
        w = c.weight.detach()[:, :, 0, 0]
        self.linear = nn.Linear(w.shape[1] * positions, w.shape[0] * positions)
        with torch.no_grad():
            self.linear.weight.copy_(torch.kron(w, torch.eye(positions)))
            self.linear.bias.copy_(c.bias.detach().repeat_interleave(positions))

    def forward(self, h):
        return self.linear(h)


def flat_twin(model: HierarchicalVAE) -> HierarchicalVAE:
    """The flat-latent model computing the same numbers: latents of 32 features = the (2, 4, 4) maps flattened."""
    b, p = model.blocks, 16
    top = TopGenBlock("z2", "h", Dense1x1(b["z2"].net, p), 32, prior_trainable=True)
    with torch.no_grad():
        top.prior_loc.copy_(b["z2"].prior_loc.flatten())
        top.prior_raw_scale.copy_(b["z2"].prior_raw_scale.flatten())
    return HierarchicalVAE([
        InputBlock("x_in", flatten=True),
        SimpleBlock("h", "x_in", Dense1x1(b["h"].net, p)),
        top,
        GenBlock("z1", "z2", "h", Dense1x1(b["z1"].prior_net, p), Dense1x1(b["z1"].posterior_net, p), 32,
                 concat_posterior=True),
        OutputBlock("x_out", "z1", Dense1x1(b["x_out"].net, p), Bernoulli()),
    ], SHAPE)


@pytest.fixture
def pair():
    model = spatial_ladder()
    with torch.no_grad():  # a prior away from N(0, I), so that its parameters matter
        model.blocks["z2"].prior_loc.normal_(0, 0.5)
        model.blocks["z2"].prior_raw_scale.normal_(0, 0.3)
    return model, flat_twin(model)


def data(n=6, seed=1):
    return torch.bernoulli(torch.full((n, *SHAPE), 0.4), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ shape validation at construction
def one_layer(h: int, head: int, latent, out: int) -> list:
    """x -> 1x1 conv (h channels) -> TopGenBlock z (head channels, latent_features=latent) -> 1x1 conv (out channels)."""
    return [InputBlock("x_in"), SimpleBlock("h", "x_in", conv(1, h)), TopGenBlock("z", "h", conv(h, head), latent),
            OutputBlock("x_out", "z", conv(2, out), Bernoulli())]


@pytest.mark.parametrize("blocks,message", [
    # the case: a convolutional TopGenBlock declared with a vector latent failed deep inside the output
    # convolution with a bare RuntimeError about channel counts; construction now names the block and both shapes
    (lambda: one_layer(8, 4, 2, 1), r"block 'z' \(TopGenBlock\) declares a latent of shape \(2,\).*its latent has shape "
                                    r"\(4, 4, 2\)"),
    (lambda: one_layer(3, 6, [2, 4, 4], 1), r"net of 'z' returned shape \(2, 6, 4, 4\) but a Gaussian over a latent of shape "
                                            r"\(2, 4, 4\) needs \(N, 4, 4, 4\)"),
    (lambda: one_layer(3, 4, [2, 4, 4], 2), r"output block 'x_out' returns 32 numbers.*returns shape \(2, 4, 4\); data_shape "
                                            r"is \(1, 4, 4\)"),
    (lambda: [InputBlock("x_in"), SimpleBlock("h", "x_in", conv(1, 3)), TopGenBlock("z2", "h", conv(3, 4), [2, 4, 4]),
              GenBlock("z1", "z2", "h", conv(3, 4), conv(3, 4), [2, 4, 4]),  # prior_net wants 3 channels, z2 has 2
              OutputBlock("x_out", "z1", conv(2, 1), Bernoulli())],
     r"block 'z1' \(GenBlock\) cannot run on what it reads.*\(shapes per example: \{'z2': \(2, 4, 4\), 'h': \(3, 4, 4\)\}\)"),
], ids=["vector-latent-from-conv", "head-size", "output-size", "input-channels"])
def test_shape_mismatches_are_refused_at_construction_naming_the_block_and_shapes(blocks, message):
    with pytest.raises(vaekit.InvalidArgumentError, match=message):
        HierarchicalVAE(blocks(), SHAPE)


def test_construction_leaves_the_random_state_and_batchnorm_statistics_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    model = HierarchicalVAE([
        InputBlock("x_in"), SimpleBlock("h", "x_in", nn.Sequential(conv(1, 3), nn.BatchNorm2d(3))),
        TopGenBlock("z", "h", conv(3, 4), [2, 4, 4]), OutputBlock("x_out", "z", conv(2, 1), Bernoulli())], SHAPE)
    bn = model.blocks["h"].net[1]
    assert int(bn.num_batches_tracked) == 0 and torch.equal(bn.running_mean, torch.zeros(3))
    assert model.training
    torch.manual_seed(5)
    assert torch.equal(torch.rand(3), expected)


class ActNorm(nn.Module):
    """A data-initialised normalisation (Glow's ActNorm): the first batch it sees sets its bias and log-scale.

    ``flag="attribute"`` keeps "initialised" as a Python attribute, ``flag="buffer"`` as a buffer (whose truth
    value cannot be read on the meta device, so the construction check falls back to real tensors).
    """

    def __init__(self, channels: int, flag: str) -> None:
        super().__init__()
        self.flag = flag
        self.bias = nn.Parameter(torch.full((1, channels, 1, 1), 0.25))
        self.log_scale = nn.Parameter(torch.full((1, channels, 1, 1), -0.5))
        if flag == "buffer":
            self.register_buffer("inited", torch.tensor(False))
        else:
            self.inited = False

    def forward(self, h):
        if not bool(self.inited):
            with torch.no_grad():
                self.bias.copy_(-h.mean(dim=(0, 2, 3), keepdim=True))
                self.log_scale.copy_(-torch.log(h.std(dim=(0, 2, 3), keepdim=True) + 1e-6))
            if self.flag == "buffer":
                self.inited.fill_(True)
            else:
                self.inited = True
        return (h + self.bias) * self.log_scale.exp()


@pytest.mark.parametrize("flag", ["attribute", "buffer"])
def test_construction_leaves_data_initialised_blocks_uninitialised(flag):
    # the construction check runs the blocks on zeros; it must not consume an ActNorm's data-dependent initialisation
    torch.manual_seed(0)
    norms = [ActNorm(3, flag), ActNorm(2, flag)]
    blocks = [InputBlock("x_in"), SimpleBlock("h", "x_in", nn.Sequential(conv(1, 3), norms[0])),
              TopGenBlock("z", "h", conv(3, 4), [2, 4, 4]),
              OutputBlock("x_out", "z", nn.Sequential(norms[1], conv(2, 1)), Bernoulli())]
    before = [{k: v.clone() for k, v in n.state_dict().items()} for n in norms]
    attrs = [dict(vars(n)) for n in norms]
    model = HierarchicalVAE(blocks, SHAPE)
    for norm, state, attr in zip(norms, before, attrs):
        assert not bool(norm.inited)
        assert vars(norm).keys() == attr.keys() and all(vars(norm)[k] is attr[k] for k in attr if k != "_parameters"
                                                         and k != "_buffers" and k != "_modules")
        after = norm.state_dict()
        assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in state)
    # the first real batch initialises them: the encoder's normalised features have mean 0 per channel
    x = data(16)
    model.elbo_terms(x)
    h = model.blocks["h"].net[0](x)
    assert bool(norms[0].inited)
    torch.testing.assert_close(norms[0].bias.detach().flatten(), -h.mean(dim=(0, 2, 3)).detach(), rtol=0, atol=1e-6)


# ------------------------------------------------------------------ the numbers: spatial = flat, reshaped
def test_spatial_latents_give_the_numbers_of_the_flat_model_with_the_same_parameters(pair):
    spatial, flat = pair
    assert spatial.latent_dims == flat.latent_dims == {"z2": 32, "z1": 32}
    assert spatial.blocks["z1"].latent_shape == (2, 4, 4) and flat.blocks["z1"].latent_shape == (32,)
    x = data()
    torch.manual_seed(3)
    a = spatial.elbo_terms(x)
    torch.manual_seed(3)
    b = flat.elbo_terms(x)
    torch.testing.assert_close(a.rec, b.rec, rtol=0, atol=1e-5)
    for k in ("z2", "z1"):
        torch.testing.assert_close(a.kl[k], b.kl[k], rtol=0, atol=1e-5)
        assert a.kl[k].shape == (6,) and float(a.kl[k].detach().min()) > 0.01
    torch.manual_seed(4)
    lw_a = spatial.log_weights(x, 5)
    torch.manual_seed(4)
    lw_b = flat.log_weights(x, 5)
    assert lw_a.shape == (5, 6)
    torch.testing.assert_close(lw_a, lw_b, rtol=2e-6, atol=1e-5)  # |log w| ~ 400: float32 rounding
    # AIS's members: log_joint / log_prior at (chains, batch, C, H, W) latents
    z = spatial.sample_prior(6)
    zs = {k: v.unsqueeze(0).expand(2, *v.shape) for k, v in z.items()}
    zf = {k: v.reshape(2, 6, 32) for k, v in zs.items()}
    torch.testing.assert_close(spatial.log_joint(x, zs), flat.log_joint(x, zf), rtol=2e-6, atol=1e-5)
    torch.testing.assert_close(spatial.log_prior(zs), flat.log_prior(zf), rtol=2e-6, atol=1e-5)


def test_kl_per_channel_is_the_flat_kl_per_dimension_summed_over_positions(pair):
    spatial, flat = pair
    x = data(12)
    torch.manual_seed(0)
    s = kl_statistics(spatial, x, batch_size=5)
    torch.manual_seed(0)
    f = kl_statistics(flat, x, batch_size=5)
    for k in ("z2", "z1"):
        assert s[k].dims == 2 and f[k].dims == 32
        assert s[k].kl_per_dim_method == "analytic"
        torch.testing.assert_close(s[k].kl_per_dim, f[k].kl_per_dim.reshape(2, 16).sum(1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s[k].unit_variance, f[k].unit_variance.reshape(2, 16).mean(1), rtol=1e-5, atol=1e-7)
        assert s[k].active_units == int((s[k].unit_variance > s[k].threshold).sum())
    # the top layer's prior does not depend on a draw: its KL per channel adds up to the model's own KL
    assert abs(float(s["z2"].kl_per_dim.sum()) - s["z2"].kl) < 1e-3 * s["z2"].kl


def test_latent_pairs_and_diagonal_normal_over_maps(pair):
    spatial, _ = pair
    pairs = spatial.latent_pairs(data())
    prior, q = pairs["z1"]
    assert prior.event_shape == q.event_shape == (2, 4, 4) and q.batch_shape == (6,)
    d = DiagonalNormal(q.loc, q.scale, event_dims=3)
    z, lp = d.rsample_and_log_prob()
    torch.testing.assert_close(lp, d.log_prob(z))
    flat = DiagonalNormal(q.loc.flatten(1), q.scale.flatten(1))
    torch.testing.assert_close(d.log_prob(z), flat.log_prob(z.flatten(1)))
    torch.testing.assert_close(torch.distributions.kl_divergence(d, prior),
                               torch.distributions.kl_divergence(flat, DiagonalNormal(prior.loc.flatten(1), prior.scale.flatten(1))))


# ------------------------------------------------------------------ VDVAE
def tiny_vdvae(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(enc_blocks="8x1,8d2,4x1,4d4,1x1", dec_blocks="1x1,4m1,4x1,8m4", width=8, latent_channels=2,
                bottleneck_multiple=0.5, likelihood="bernoulli")
    args.update(kw)
    return vdvae([1, 8, 8], **args)


def test_iwae_is_at_least_the_elbo_on_a_tiny_spatial_vdvae():
    model = tiny_vdvae()
    x = torch.bernoulli(torch.full((16, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    elbo = iwae_log_likelihood(model, x, k=1).mean
    torch.manual_seed(1)
    iwae = iwae_log_likelihood(model, x, k=200).mean
    assert float(iwae) > float(elbo) + 1.0  # untrained: a wide gap, far above the noise of 16 examples
    torch.manual_seed(2)
    ais = ais_log_likelihood(model, x[:4], n_chains=2, n_steps=5)
    assert ais.per_example.shape == (4,) and bool(torch.isfinite(ais.per_example).all())


def test_vdvae_structure_and_scaling():
    model = tiny_vdvae()
    assert model.latent_names == ("z1", "z2", "z3", "z4")
    assert [model.blocks[k].latent_shape for k in model.latent_names] == [(2, 1, 1), (2, 4, 4), (2, 4, 4), (2, 8, 8)]
    assert model.latent_dims == {"z1": 2, "z2": 32, "z3": 32, "z4": 128}
    # VDVAE: the posterior of a block reads the encoder's last output at its resolution (enc2 and enc4 pool)
    assert [model.blocks[k].condition for k in model.latent_names] == ["enc5", "enc3", "enc3", "enc1"]
    # the block after a resolution change adds the up-sampled coarser state to the new resolution's start state
    assert model.blocks["in2"].inputs == ("bias4", "up2") and model.blocks["z2"].inputs == ("in2",)
    block = model.blocks["z2"]
    assert float(block.prior_net.c4.weight.abs().sum()) == 0.0  # prior output zeroed at init
    torch.manual_seed(0)
    one = TopDownBlock("z", "h", "c", width=8, resolution=4, latent_channels=2, n_blocks=1)
    torch.manual_seed(0)
    four = TopDownBlock("z", "h", "c", width=8, resolution=4, latent_channels=2, n_blocks=4)
    torch.testing.assert_close(four.z_projection.weight, one.z_projection.weight / 2)
    torch.testing.assert_close(four.residual_net.c4.weight, one.residual_net.c4.weight / 2)
    torch.testing.assert_close(four.prior_net.c1.weight, one.prior_net.c1.weight)


def test_vdvae_block_skips_pair_each_decoder_block_with_its_own_encoder_block():
    model = tiny_vdvae(enc_blocks="8d2,4x1,4d4,1x2", dec_blocks="1x2,4m1,4x1,8m4", skips="block")
    # top-down k-th block at a resolution reads the k-th bottom-up block there, counted from the top
    assert [model.blocks[k].condition for k in model.latent_names] == ["enc5", "enc4", "enc3", "enc2", "enc1"]
    with pytest.raises(vaekit.InvalidArgumentError, match="resolution 1 has 1 encoder blocks"):
        tiny_vdvae(enc_blocks="8d2,4x1,4d4,1x1", dec_blocks="1x2,4m1,4x1,8m4", skips="block")


def test_vdvae_pads_mnist_to_the_first_resolution_and_crops_back():
    torch.manual_seed(0)
    model = vdvae([1, 6, 6], enc_blocks="8x1,8d4,2x1", dec_blocks="2x1,8m2", width=4, latent_channels=1,
                  likelihood="bernoulli")
    assert model.sample(3).shape == (3, 1, 6, 6)
    assert model.log_weights(torch.ones(2, 1, 6, 6), 2).shape == (2, 2)


@pytest.mark.parametrize("kw,message", [
    (dict(enc_blocks="8x1,8q2"), "enc_blocks item '8q2' is not VDVAE's"),
    (dict(dec_blocks="1x1,8m4"), "must mix in the resolution just above it"),
    (dict(dec_blocks="1x1,4m1"), "dec_blocks must end at the image resolution 8, ends at 4"),
    (dict(dec_blocks="1x1,2m1,8m2"), "encoder has no activation there"),
    (dict(skips="every"), "skips"),
    (dict(dec_blocks="1x1,4m1,4x0,8m4"), r"dec_blocks item '4x0': the number of blocks after 'x' must be >= 1, got 0"),
    (dict(enc_blocks="8x-1,8d2,4x1,4d4,1x1"), r"enc_blocks item '8x-1': the number of blocks after 'x' must be >= 1"),
    (dict(widths={16: 64, 4: 8}), r"widths names resolutions \[16\] that the layout does not have"),
])
def test_vdvae_layout_errors_name_the_item(kw, message):
    with pytest.raises(vaekit.InvalidArgumentError, match=message):
        tiny_vdvae(**kw)


def test_published_layouts():
    assert parse_layer_string(LAYOUTS["vdvae_cifar10"]["model"]["dec_blocks"]).__len__() == 43
    mnist = LAYOUTS["efficient_vdvae_binarized_mnist"]["model"]
    assert len(parse_layer_string(mnist["enc_blocks"])) == len(parse_layer_string(mnist["dec_blocks"])) == 23
    with pytest.raises(vaekit.InvalidArgumentError, match="vdvae needs a layout"):
        vdvae([1, 8, 8], enc_blocks="8x1")


@pytest.mark.slow
def test_vdvae_cifar10_has_vdvaes_parameter_count():
    """VDVAE reports 39M parameters for its CIFAR-10 model; ours, without its output gain/bias, 39,141,082."""
    model = vdvae([3, 32, 32], "vdvae_cifar10")
    assert sum(p.numel() for p in model.parameters()) == 39_141_082
    assert len(model.latent_names) == 43


def test_vector_and_spatial_latents_mix_in_one_graph():
    """A vector top latent, projected to a map, starts a spatial stack; the whole graph trains."""
    torch.manual_seed(0)
    model = HierarchicalVAE([
        InputBlock("x_in"),
        SimpleBlock("e8", "x_in", nn.Conv2d(1, 4, 3, padding=1)),
        SimpleBlock("e4", "e8", Resample(2, "down")),
        SimpleBlock("e_vec", "e4", nn.Flatten()),
        TopGenBlock("top", "e_vec", nn.Linear(64, 6), 3),
        SimpleBlock("h4", "top", VectorToMap(3, [4, 4, 4])),
        TopDownBlock("z4", "h4", "e4", width=4, resolution=4, latent_channels=2, n_blocks=2),
        SimpleBlock("h8", "z4", Resample(2, "bilinear")),
        TopDownBlock("z8", "h8", "e8", width=4, resolution=8, latent_channels=1, n_blocks=2),
        OutputBlock("x_out", "z8", nn.Conv2d(4, 1, 1), Bernoulli()),
    ], [1, 8, 8])
    assert model.latent_dims == {"top": 3, "z4": 32, "z8": 64}
    x = torch.bernoulli(torch.full((8, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        t = model.elbo_terms(x)
        loss = (sum(t.kl.values()) - t.rec).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 5
    assert model.sample(2, temperature=[1.0, 0.5, 0.0]).shape == (2, 1, 8, 8)


def test_bottleneck_block_is_vdvaes():
    torch.manual_seed(0)
    b = BottleneckBlock(4, 2, 4, residual=True, down_rate=2)
    h = torch.randn(3, 4, 6, 6)
    f = torch.nn.functional
    inner = b.c4(f.gelu(b.c3(f.gelu(b.c2(f.gelu(b.c1(f.gelu(h))))))))
    torch.testing.assert_close(b(h), f.avg_pool2d(h + inner, 2))
    assert math.isclose(float(Resample(2, "nearest")(torch.ones(1, 1, 1, 1)).sum()), 4.0)


# ------------------------------------------------------------------ Laplace latent layers
def laplace_ladder(family_top="laplace", family_low="laplace"):
    torch.manual_seed(0)
    return HierarchicalVAE([
        InputBlock("x_in"),
        SimpleBlock("h", "x_in", conv(1, 3)),
        TopGenBlock("z2", "h", conv(3, 4), [2, 4, 4], prior_trainable=True, latent_family=family_top),
        GenBlock("z1", "z2", "h", conv(2, 4), conv(5, 4), [2, 4, 4], concat_posterior=True, latent_family=family_low),
        OutputBlock("x_out", "z1", conv(2, 1), Bernoulli()),
    ], SHAPE)


def test_laplace_layers_have_laplace_priors_and_posteriors_with_the_closed_form_kl():
    model = laplace_ladder(family_low="gaussian")
    x = data(4)
    torch.manual_seed(1)
    tr = model.posterior_pass(x)
    q, p = tr.posteriors["z2"], tr.priors["z2"]
    assert isinstance(q, vaekit.distributions.DiagonalLaplace) and isinstance(p, vaekit.distributions.DiagonalLaplace)
    assert isinstance(tr.posteriors["z1"], DiagonalNormal) and q.event_shape == (2, 4, 4)
    # the closed form, written out: log(b2/b1) + |m1-m2|/b2 + b1/b2 exp(-|m1-m2|/b1) - 1, summed over the map
    m1, b1, m2, b2 = q.loc, q.scale, p.loc, p.scale
    d = (m1 - m2).abs()
    by_hand = ((b2 / b1).log() + d / b2 + b1 / b2 * torch.exp(-d / b1) - 1).sum((1, 2, 3))
    torch.manual_seed(1)
    kl = model.elbo_terms(x).kl["z2"]
    torch.testing.assert_close(kl, by_hand, rtol=1e-5, atol=1e-5)
    # and the Monte Carlo average of log q - log p agrees with it
    z = q.sample((20000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    assert torch.allclose(mc, by_hand.detach(), atol=0.15 + 0.02 * float(by_hand.abs().max()))


def test_a_laplace_vdvae_trains_and_its_iwae_exceeds_its_elbo():
    model = tiny_vdvae(latent_family="laplace")
    assert all(model.blocks[k].latent_family == "laplace" for k in model.latent_names)
    x = torch.bernoulli(torch.full((16, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    elbo = iwae_log_likelihood(model, x, k=1).mean
    torch.manual_seed(1)
    iwae = iwae_log_likelihood(model, x, k=200).mean
    assert float(iwae) > float(elbo) + 1.0
    stats = kl_statistics(model, x)
    assert stats["z4"].kl_per_dim.shape == (2,) and stats["z4"].kl_per_dim_method == "analytic"
    means = model.prior_pass(3, temperature=0).z
    torch.manual_seed(2)
    cool = model.prior_pass(3, temperature=0.5)
    assert torch.equal(means["z1"], model.prior_pass(3, temperature=0).z["z1"])
    assert not torch.equal(cool.z["z1"], cool.priors["z1"].loc)


def test_an_unknown_latent_family_is_refused_with_the_accepted_ones():
    with pytest.raises(vaekit.InvalidArgumentError, match=r"latent_family must be one of \['gaussian', 'laplace', 'gs', 'igr_i'\], got 'student'"):
        TopGenBlock("z", "h", conv(3, 4), [2, 4, 4], latent_family="student")


def test_a_wrong_data_shape_or_an_unknown_latent_is_refused_naming_the_shapes():
    model = tiny_vdvae()
    for call in (lambda x: model.elbo_terms(x), lambda x: model.log_weights(x, 2), lambda x: model.encode(x)):
        with pytest.raises(ValueError, match=r"x has shape \(5, 64\) but this model expects \(batch, 1, 8, 8\)"):
            call(torch.zeros(5, 64))
        with pytest.raises(ValueError, match=r"x has shape \(5, 1, 28, 28\) but this model expects"):
            call(torch.zeros(5, 1, 28, 28))
    z = {k: v.mean for k, v in model.encode(torch.zeros(3, 1, 8, 8)).items()}
    assert model.decode(z).batch_shape == (3,)
    with pytest.raises(ValueError, match=r"z has key\(s\) \['z9'\] that are not latents of this model"):
        model.decode({**z, "z9": z["z1"]})
