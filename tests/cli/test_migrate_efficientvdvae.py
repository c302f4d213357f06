"""``vaekit migrate --preset hvae-efficientvdvae``: hVAE's EfficientVDVAE state dict -> vaekit, identical numbers.

``ForeignEfficientVDVAE`` re-implements the predecessor's module tree and arithmetic
(``lacykaltgr/hvae`` at commit 00583f6: ``models/EfficientVDVAE_migrate.py`` assembling an
``hVAE`` from the modules its ``migration/EfficientVDVAE_migration/migration_agent.py`` builds;
``src/elements/nets.py`` ``ConvNet``; ``src/elements/layers.py`` ``Conv2d`` with 'same'
padding by ``F.pad``, ``PoolLayer``, ``UnpooLayer`` with its lazily created ``scale_bias``;
``src/hvae/block.py`` ``SimpleBlock``, ``TopSimpleBlock``, ``ResidualGenBlock``; ``get_net``
wrapping a lone module in a ``SerializableSequential``; ``generate_distribution`` with
``'logstd'``, ``'var'`` and the gradient-smoothing beta), written from those files and not from
vaekit's blocks, so its state dict has the real keys and its numbers are the foreign model's.
Its bottom-up graph is ``_model``'s (``wiring="hvae"``: a level's skip projection reads the level's
input, and after a level without pooling the next level reads that skip projection); with
``wiring="efficient_vdvae"`` it is Efficient-VDVAE's, to check vaekit's option of that name and
that the equivalence test tells the two apart. Two places are not hVAE's code: ``trainable_h``
is repeated along the batch (hVAE's ``torch.tile(h, (N, 1))`` on a 4-d tensor stacks the batch
along the height instead), and the binarized-MNIST likelihood is Efficient-VDVAE's ``BernoulliLoss``
(Bernoulli logits, cropped to the image; hVAE at that commit routes its output through a mixture of
logistics without ``log_prob``).

With ``output="mol"`` the output is hVAE's mixture of logistics (its ImageNet-32 model,
``output_distribution='mol'``): ``output_conv`` to ``M (3 C + 1)`` channels scored by
``disc_mix_logistic_log_px``, hVAE's ``DiscMixLogistic.forward`` (``src/elements/losses.py``, from
Efficient-VDVAE's) transcribed, on images scaled by ``scale_pixels`` to [-1, 1]. Three places are not
hVAE's code. The encoder reads those [-1, 1] images too: that is Efficient-VDVAE's input
(``data/imagenet_data_loader.py``), on which the migrated weights were trained and the loss's edge
bins are defined, while hVAE's ImageNet loader (``data/imagenet/imagenet.py``) feeds ``x / 255 -
mean_image``. And two because hVAE's code at that commit cannot compute this likelihood: its
``OutputBlock`` passes only the first half of ``output_conv``'s channels (``split_mu_sigma``) to
``MixtureOfLogistics``, whose ``log_prob`` raises ``NotImplementedError``, and ``DiscMixLogistic``
unpacks ``h, w, c = data_shape`` from hVAE's ``shape=(3, 32, 32)`` (so ``c = 32`` and its reshape
fails); the loss here reads all ``M (3 C + 1)`` channels with ``C = 3``, what Efficient-VDVAE's
``DiscMixLogistic`` computes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence

import vaekit
from vaekit.cli import main
from vaekit.models.hierarchical.hvae_compat_evdvae import BINARIZED_MNIST, efficient_vdvae
from vaekit.models.hierarchical.migration_presets import get_preset

BETA = 0.6931472

# Layout A: 6x6 images padded to 8x8; level 0 pools by 2, level 1 keeps 4x4 (no pool); a block per resolution before
# level 0's, an extra top-down block in level 1. Layout B: 8x8, both levels pool (the last pool is computed, unused),
# two ConvNets per bottom-up block of level 1 and per residual block of top-down level 0. Layout C: levels 0 and 2 keep
# their size (no pool) and have no per-resolution blocks, so in hVAE's wiring level 1 reads level_up_0_skip (as in the
# binarized-MNIST layout) and level_up_0 and level_up_2 feed nothing.
LAYOUTS = {
    "A": {"data_shape": [1, 6, 6], "resolution": 8, "input_conv_filters": 4, "input_kernel_size": 3, "up_strides": [2, 1],
          "up_n_blocks_per_res": [1, 0], "up_n_blocks": [1, 1], "up_filters": [6, 6], "up_mid_filters_ratio": [0.5, 1.0],
          "up_kernel_size": [3, 1], "up_skip_filters": [4, 6], "down_strides": [1, 2], "down_n_blocks_per_res": [0, 1],
          "down_n_blocks": [1, 1], "down_filters": [6, 4], "down_mid_filters_ratio": [1.0, 0.5], "down_kernel_size": [1, 3],
          "down_latent_variates": [2, 3], "output_kernel_size": 1},
    "B": {"data_shape": [1, 8, 8], "resolution": 8, "input_conv_filters": 4, "input_kernel_size": 1, "up_strides": [2, 2],
          "up_n_blocks_per_res": [0, 1], "up_n_blocks": [1, 2], "up_filters": [6, 8], "up_mid_filters_ratio": [1.0, 0.5],
          "up_kernel_size": [3, 3], "up_skip_filters": [4, 6], "down_strides": [2, 2], "down_n_blocks_per_res": [1, 0],
          "down_n_blocks": [2, 1], "down_filters": [6, 4], "down_mid_filters_ratio": [0.5, 1.0], "down_kernel_size": [3, 3],
          "down_latent_variates": [2, 2], "output_kernel_size": 3},
    "C": {"data_shape": [1, 8, 8], "resolution": 8, "input_conv_filters": 4, "input_kernel_size": 3, "up_strides": [1, 2, 1],
          "up_n_blocks_per_res": [0, 0, 0], "up_n_blocks": [1, 1, 1], "up_filters": [4, 8, 8],
          "up_mid_filters_ratio": [1.0, 0.5, 1.0], "up_kernel_size": [3, 3, 1], "up_skip_filters": [4, 4, 6],
          "down_strides": [1, 2, 1], "down_n_blocks_per_res": [0, 0, 0], "down_n_blocks": [1, 1, 1], "down_filters": [6, 4, 4],
          "down_mid_filters_ratio": [1.0, 1.0, 0.5], "down_kernel_size": [1, 3, 3], "down_latent_variates": [2, 2, 3],
          "output_kernel_size": 1},
}
# Layouts D and E: RGB 8x8 images (no padding) with hVAE's mixture-of-logistics output (3 and 2 components); D pools at
# both levels with a per-resolution block on each side, E is C's graph (a level reading a skip projection).
LAYOUTS["D"] = {**LAYOUTS["B"], "data_shape": [3, 8, 8], "input_kernel_size": 3, "up_n_blocks_per_res": [1, 0],
                "down_n_blocks_per_res": [0, 1], "output_kernel_size": 1}
LAYOUTS["E"] = {**LAYOUTS["C"], "data_shape": [3, 8, 8], "output_kernel_size": 3}
MOL = {"D": 3, "E": 2}  # num_output_mixtures


# ---------------------------------------------------------------------- hVAE's modules
class Conv2d(nn.Conv2d):
    """layers.Conv2d: 'same' padding by F.pad ((k - s) split ceil/floor per side, width then height), then no padding."""

    def __init__(self, cin, cout, kernel_size, stride=1):
        super().__init__(cin, cout, kernel_size, stride=stride, padding=0)
        p = kernel_size - stride
        self.pad_values = (math.ceil(p / 2), p // 2) * 2

    def forward(self, x):
        return super().forward(F.pad(x, self.pad_values))


class ConvNet(nn.Module):
    """nets.ConvNet with n_layers=2, use_1x1=True, pool/unpool strides 0, SiLU."""

    def __init__(self, in_filters, bottleneck_ratio, kernel_size, residual=True, output_ratio=1.0):
        super().__init__()
        act = nn.SiLU()
        out, mid = int(in_filters * output_ratio), int(in_filters * bottleneck_ratio)
        convs = [act, nn.Conv2d(in_filters, mid, 1, padding="same")]
        for _ in range(2):
            convs += [act, Conv2d(mid, mid, kernel_size)]
        convs += [act, Conv2d(mid, out, 1)]
        self.convs, self.activation, self.residual = nn.Sequential(*convs), act, residual

    def forward(self, inputs):
        x = self.convs(inputs)
        return self.activation(inputs + x if self.residual else x)


class PoolLayer(nn.Module):
    def __init__(self, in_filters, filters, strides):
        super().__init__()
        self.ops = nn.Sequential(Conv2d(in_filters, filters, strides, stride=strides), nn.LeakyReLU(0.1))

    def forward(self, x):
        return self.ops(x)


class Interpolate(nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")


class UnpooLayer(nn.Module):
    def __init__(self, in_filters, filters, strides):
        super().__init__()
        self.ops = nn.Sequential(Conv2d(in_filters, filters, 1), nn.LeakyReLU(0.1), Interpolate((strides, strides)))
        self.scale_bias = None  # created at the first forward pass, as hVAE's

    def forward(self, x):
        x = self.ops(x)
        if self.scale_bias is None:
            self.scale_bias = nn.Parameter(torch.zeros(1, *x.shape[1:]))
        return x + self.scale_bias


def seq(*modules):
    return nn.Sequential(*modules)  # SerializableSequential


class OrderedModuleDict(nn.Module):
    def __init__(self):
        super().__init__()
        self._keys, self._values = [], nn.ModuleList()

    def add(self, key, module):
        self._keys.append(key)
        self._values.append(module)

    def items(self):
        return zip(self._keys, self._values)


class Part(nn.Module):
    def __init__(self, **modules):
        super().__init__()
        for k, m in modules.items():
            setattr(self, k, m)


def split_mu_sigma(x, chunks=2):
    return torch.chunk(x, chunks, dim=1)


def generate_distribution(mu, sigma):
    return Normal(mu, torch.sqrt(torch.exp(sigma * BETA)))  # distribution_base 'logstd', sigma_param 'var'


def scale_pixels(k):
    """hVAE's ``scale_pixels`` (``src/utils.py``, 8 bits) of integer levels: ``(k - 127.5) / 127.5`` in float64, as numpy."""
    return ((torch.as_tensor(k, dtype=torch.float64) - 127.5) / 127.5).float()


def disc_mix_logistic_log_px(targets, logits, n, base="logstd", beta=BETA, min_log_scale=-250.0):
    """hVAE's ``DiscMixLogistic.forward`` (``src/elements/losses.py``), per image: ``-per_example_loss`` (nats).

    ``targets`` (B, C, H, W) in [-1, 1]; ``logits`` (B, M (3 C + 1), H, W): the M mixture logits, then per channel its
    M means, M raw log-scales, M raw coefficients (``_compute_inv_stdv``; ``tanh`` coefficients; RGB autoregression)."""
    num_classes = 2.0 ** 8 - 1.0
    min_pix_value, max_pix_value = scale_pixels(0.0), scale_pixels(255.0)
    B, C, H, W = targets.size()
    targets = targets.unsqueeze(2)  # B, C, 1, H, W
    logit_probs = logits[:, :n, :, :]
    l = logits[:, n:, :, :].reshape(B, C, 3 * n, H, W)
    means = l[:, :, :n, :, :]
    if base == "std":
        scales = torch.maximum(nn.Softplus(beta=beta)(l[:, :, n:2 * n]), torch.as_tensor(np.exp(min_log_scale)))
        inv_stdv, log_scales = 1.0 / scales, torch.log(scales)
    else:
        log_scales = torch.maximum(l[:, :, n:2 * n], torch.as_tensor(np.array(min_log_scale)))
        inv_stdv = torch.exp(-beta * log_scales)
    coeffs = torch.tanh(l[:, :, 2 * n:3 * n, :, :])
    mean1 = means[:, 0:1, :, :, :]
    mean2 = means[:, 1:2, :, :, :] + coeffs[:, 0:1, :, :, :] * targets[:, 0:1, :, :, :]
    mean3 = means[:, 2:3, :, :, :] + coeffs[:, 1:2, :, :, :] * targets[:, 0:1, :, :, :] \
        + coeffs[:, 2:3, :, :, :] * targets[:, 1:2, :, :, :]
    centered = targets - torch.cat([mean1, mean2, mean3], dim=1)
    plus_in = inv_stdv * (centered + 1.0 / num_classes)
    cdf_plus = torch.sigmoid(plus_in)
    min_in = inv_stdv * (centered - 1.0 / num_classes)
    cdf_min = torch.sigmoid(min_in)
    log_cdf_plus = plus_in - F.softplus(plus_in)
    log_one_minus_cdf_min = -F.softplus(min_in)
    cdf_delta = cdf_plus - cdf_min
    mid_in = inv_stdv * centered
    log_pdf_mid = mid_in - log_scales - 2.0 * F.softplus(mid_in)
    broadcast_targets = torch.broadcast_to(targets, size=[B, C, n, H, W])
    log_probs = torch.where(broadcast_targets == min_pix_value, log_cdf_plus,
                            torch.where(broadcast_targets == max_pix_value, log_one_minus_cdf_min,
                                        torch.where(cdf_delta > 1e-5, torch.log(torch.clamp(cdf_delta, min=1e-12)),
                                                    log_pdf_mid - np.log(num_classes / 2))))
    log_probs = torch.sum(log_probs, dim=1) + F.log_softmax(logit_probs, dim=1)  # B, M, H, W
    return torch.logsumexp(log_probs, dim=1).sum((1, 2))


class ForeignEfficientVDVAE(nn.Module):
    """hVAE's EfficientVDVAE: input_block, encoder.blocks, generator.blocks, output_block, as _model(migration) builds it.

    ``wiring="hvae"`` is _model's bottom-up graph: every block reads the key added last to its ``_blocks``
    (``list(_blocks.keys())[-1]``), evaluated when the block is created; a level's block and its skip projection are
    created in one ``update({...})``, so both read the key before the level, and only the per-resolution blocks drop
    ``"_skip"`` from it; a pool reads its level's block. ``wiring="efficient_vdvae"`` is Efficient-VDVAE's
    ``BottomUp``: each level reads the running activation and the skip projects the level's output.
    """

    def __init__(self, a, wiring="hvae", mixtures=None):
        super().__init__()
        self.mixtures = mixtures  # hVAE's 'mol' output with this many components; None: Bernoulli
        levels = len(a["up_strides"])
        self.pad = (a["resolution"] - a["data_shape"][1]) // 2
        self.input_block = Part(net=seq(Conv2d(a["data_shape"][0], a["input_conv_filters"], a["input_kernel_size"])))
        enc, gen = OrderedModuleDict(), OrderedModuleDict()
        self.inputs = {}  # block -> (input, condition)
        keys = ["x"]  # hVAE's _blocks keys in order

        def add(blocks, name, module, src, cond=None):
            blocks.add(name, module)
            self.inputs[name] = (src, cond)
            keys.append(name)

        in_up = [a["input_conv_filters"], *a["up_filters"][:-1]]
        for i, stride in enumerate(a["up_strides"]):
            def convnets(i=i):
                return seq(*[ConvNet(in_up[i], a["up_mid_filters_ratio"][i], a["up_kernel_size"][i])
                             for _ in range(a["up_n_blocks"][i])])
            for n in range(a["up_n_blocks_per_res"][i]):
                add(enc, f"level_up_{i}_{n}", Part(net=convnets()), keys[-1].replace("_skip", ""))
            if wiring == "hvae":
                level_input = skip_input = keys[-1]
            else:
                level_input, skip_input = keys[-1].replace("_skip", ""), f"level_up_{i}"
            add(enc, f"level_up_{i}", Part(net=convnets()), level_input)
            add(enc, f"level_up_{i}_skip", Part(net=seq(Conv2d(in_up[i], a["up_skip_filters"][i], 1))), skip_input)
            if stride > 1:
                add(enc, f"level_up_{i}_pool", Part(net=seq(PoolLayer(in_up[i], a["up_filters"][i], stride))),
                    f"level_up_{i}")
        h = a["resolution"] // math.prod(a["up_strides"])
        trainable_h = nn.Parameter(torch.empty(1, a["down_filters"][0], h, h))
        nn.init.kaiming_uniform_(trainable_h, nonlinearity="linear")
        gen.add("top", Part(trainable_h=trainable_h, net=seq()))
        keys.append("top")
        in_down = [a["down_filters"][0], *a["down_filters"][:-1]]
        for d, stride in enumerate(a["down_strides"]):
            f, skip, ratio, k = a["down_filters"][d], f"level_up_{levels - 1 - d}_skip", a["down_mid_filters_ratio"][d], \
                a["down_kernel_size"][d]
            zc = a["down_latent_variates"][d]
            if stride > 1:
                add(gen, f"level_down_{d}_unpool", Part(net=seq(UnpooLayer(in_down[d], f, stride))), keys[-1])
            for name in [f"level_down_{d}"] + [f"level_down_{d}_{n}" for n in range(a["down_n_blocks_per_res"][d])]:
                add(gen, name, Part(
                    prior_net=seq(ConvNet(f, ratio, k, residual=False, output_ratio=2.0)),
                    posterior_net=seq(ConvNet(2 * f, ratio * 0.5, k, residual=False, output_ratio=0.5)),
                    input_transform=seq(), condition_transform=seq(),
                    net=seq(*[ConvNet(f, ratio, k) for _ in range(a["down_n_blocks"][d])]),
                    z_projection=seq(Conv2d(zc, f, 1)), prior_layer=seq(Conv2d(f, 2 * zc, 1)),
                    posterior_layer=seq(Conv2d(f, 2 * zc, 1))), keys[-1], skip)
        self.last = keys[-1]
        self.encoder, self.generator = Part(blocks=enc), Part(blocks=gen)
        c = a["data_shape"][0]
        out = c if mixtures is None else mixtures * (3 * c + 1)  # migration_agent.build_top_down's output_conv
        self.output_block = Part(prior_net=seq(Conv2d(a["down_filters"][-1], out, a["output_kernel_size"])))

    def forward(self, x, use_mean=False):
        """One posterior pass: the latents with their (prior, posterior), and log p(x | z) (Bernoulli, cropped; or the
        mixture of logistics of x in [-1, 1])."""
        p = self.pad
        computed = {"x": self.input_block.net(F.pad(x, (p,) * 4))}  # Efficient-VDVAE zero-pads MNIST to 32x32
        for name, block in self.encoder.blocks.items():
            computed[name] = block.net(computed[self.inputs[name][0]])
        layers = {}
        for name, block in self.generator.blocks.items():
            if name == "top":  # TopSimpleBlock, one copy of trainable_h per example
                computed[name] = block.net(block.trainable_h.repeat(x.shape[0], 1, 1, 1))
                continue
            src, cond = self.inputs[name]
            y = computed[src]
            if cond is None:  # SimpleBlock
                computed[name] = block.net(y)
                continue
            # ResidualGenBlock._sample, then forward
            kl_residual, y_prior = split_mu_sigma(block.prior_net(y), chunks=2)
            prior = generate_distribution(*split_mu_sigma(block.prior_layer(y_prior)))
            y_post = block.posterior_layer(block.posterior_net(torch.cat([y, computed[cond]], dim=1)))
            posterior = generate_distribution(*split_mu_sigma(y_post))
            z = posterior.mean if use_mean else posterior.sample()
            y = y + kl_residual
            y = y + block.z_projection(z)
            computed[name] = block.net(y)
            layers[name] = (z, prior, posterior)
        logits = self.output_block.prior_net(computed[self.last])
        if self.mixtures is not None:
            return layers, disc_mix_logistic_log_px(x, logits, self.mixtures)
        if p:
            logits = logits[:, :, p:-p, p:-p]  # BernoulliLoss's crop
        return layers, Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))


def foreign_model(layout, seed=0, wiring="hvae"):
    torch.manual_seed(seed)
    a = LAYOUTS[layout]
    model = ForeignEfficientVDVAE(a, wiring, MOL.get(layout)).eval()
    with torch.no_grad():
        model(torch.zeros(1, *a["data_shape"]), use_mean=True)  # the first pass creates UnpooLayer.scale_bias, as in hVAE
        for t in model.parameters():  # every tensor random, biases and scale_bias included: a swapped key shows
            if t.dim() == 4 and t.shape[0] > 1:  # a convolution's weight: unit gain, so x reaches the top
                t.normal_(0, 1 / math.sqrt(t[0].numel()))
            else:
                t.uniform_(-0.3, 0.3)
    return model


def ours(layout, foreign, **kwargs):
    if layout in MOL:
        kwargs = {"output_distribution": "mol", "num_output_mixtures": MOL[layout], **kwargs}
    model = efficient_vdvae(**LAYOUTS[layout], **kwargs).eval()
    report = get_preset("hvae-efficientvdvae").migration(model).migrate(model, foreign.state_dict())
    assert report.ok and len(report.loaded) == len(model.state_dict()) == len(foreign.state_dict())
    return model


def binary(layout, n, seed):
    return torch.bernoulli(torch.full((n, *LAYOUTS[layout]["data_shape"]), 0.4), generator=torch.Generator().manual_seed(seed))


def levels(layout, n, seed):
    """Random 8-bit images as integer levels 0..255 (float64), a tenth of the entries at each of the edge levels 0 and 255."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randint(0, 256, (n, *LAYOUTS[layout]["data_shape"]), generator=g).double()
    u = torch.rand(k.shape, generator=g, dtype=torch.float64)
    return torch.where(u < 0.1, 0.0, torch.where(u > 0.9, 255.0, k))


def gaps(model, foreign, x, x_foreign=None):
    """The largest |vaekit - foreign| of each quantity compared (same noise, then the posterior means), and vaekit's terms.

    ``x_foreign``: the data as the foreign model reads them (default ``x``)."""
    xf = x if x_foreign is None else x_foreign
    with torch.no_grad():
        torch.manual_seed(3)
        layers, log_px = foreign(xf)
        torch.manual_seed(3)
        terms = model.elbo_terms(x)  # the same noise, drawn in the same order (top-down)
        assert list(terms.kl) == list(layers)
        out = {"rec": (terms.rec - log_px).abs().max(),
               "kl": max((terms.kl[name] - kl_divergence(q, p).sum((1, 2, 3))).abs().max()
                         for name, (_, p, q) in layers.items())}
        elbo_mc = log_px + sum(p.log_prob(z).sum((1, 2, 3)) - q.log_prob(z).sum((1, 2, 3)) for z, p, q in layers.values())
        torch.manual_seed(3)
        out["log_weights"] = (model.log_weights(x, k=1)[0] - elbo_mc).abs().max()
        # at the posterior means: every location and scale, and log p(x, z) at the foreign latents
        layers, log_px = foreign(xf, use_mean=True)
        q = model.encode(x)
        out["loc"] = max((q[name].mean - post.loc).abs().max() for name, (_, _, post) in layers.items())
        out["scale"] = max((q[name].stddev - post.scale).abs().max() for name, (_, _, post) in layers.items())
        log_prior = sum(p.log_prob(z).sum((1, 2, 3)) for z, p, _ in layers.values())
        out["log_joint"] = (model.log_joint(x, {k: v[0] for k, v in layers.items()}) - log_px - log_prior).abs().max()
    return {k: float(v) for k, v in out.items()}, terms


#: Tolerances of :func:`gaps`: rec and KL per example, locations and scales per entry, log-weights and log p(x, z) (sums of
#: the terms, 60-80 nats here, so a few float32 roundings of them) per example.
TOL = {"rec": 1e-5, "kl": 1e-5, "loc": 1e-5, "scale": 1e-5, "log_weights": 1e-4, "log_joint": 1e-4}


@pytest.mark.parametrize("wiring", ["hvae", "efficient_vdvae"])
@pytest.mark.parametrize("layout", ["A", "B", "C"])
def test_migrated_efficientvdvae_gives_the_foreign_numbers(layout, wiring):
    foreign = foreign_model(layout, wiring=wiring)
    model = ours(layout, foreign, **({} if wiring == "hvae" else {"wiring": wiring}))  # "hvae" is the default
    got, terms = gaps(model, foreign, binary(layout, 8, 1))
    assert all(got[k] < TOL[k] for k in TOL), got
    assert float(terms.rec.abs().min()) > 1.0 and all(float(v.min()) > 1e-3 for v in terms.kl.values())  # not trivial


@pytest.mark.parametrize("layout", ["A", "B", "C"])
def test_the_other_wiring_fails_the_equivalence(layout):
    """hVAE's weights run with Efficient-VDVAE's bottom-up wiring against vaekit's default: gaps far beyond the tolerances.

    So the equivalence test above tells the two wirings apart on every layout (B only through its skip projections)."""
    foreign = foreign_model(layout, wiring="efficient_vdvae")
    got, _ = gaps(ours(layout, foreign), foreign, binary(layout, 8, 1))
    assert got["kl"] > 100 * TOL["kl"] and got["log_weights"] > 100 * TOL["log_weights"], got


def test_the_binarized_mnist_graph_is_hvaes():
    """The default layout's bottom-up inputs where hVAE's _model and Efficient-VDVAE differ (levels 1, 2 keep 16x16)."""
    blocks = efficient_vdvae().blocks
    want = {"level_up_0": "x_in", "level_up_0_skip": "x_in", "level_up_0_pool": "level_up_0",
            "level_up_1": "level_up_0_pool", "level_up_1_skip": "level_up_0_pool",
            "level_up_2": "level_up_1_skip", "level_up_2_skip": "level_up_1_skip", "level_up_2_pool": "level_up_2",
            "level_up_3": "level_up_2_pool", "level_up_4": "level_up_3_skip", "level_up_22_skip": "level_up_21_skip"}
    assert {name: blocks[name].inputs[0] for name in want} == want
    assert (blocks["level_down_0"].inputs, blocks["level_down_0"].condition) == (("top",), "level_up_22_skip")
    read = {i for b in blocks.values() for i in (*b.inputs, getattr(b, "condition", None))}
    unused = [name for name in blocks if name not in read and name != "x_hat"]  # docs: "19 of its 23 levels"
    assert unused == [f"level_up_{i}" for i, s in enumerate(BINARIZED_MNIST["up_strides"]) if s == 1] and len(unused) == 19


def test_a_misplaced_tensor_changes_the_numbers():
    """Swapping two same-shaped foreign tensors, as a mapping bug would, moves the ELBO terms 100 times the tolerance."""
    foreign = foreign_model("A")
    model = ours("A", foreign)
    x = binary("A", 4, 2)

    def terms(m):
        torch.manual_seed(0)
        t = m.elbo_terms(x)
        return torch.stack([t.rec, *t.kl.values()])

    with torch.no_grad():
        want = terms(model)
        for key in ("generator.blocks._values.1.net.0.convs.3.weight",  # level_down_0's residual ConvNet: middle convs
                    "encoder.blocks._values.0.net.0.convs.3.weight",  # level_up_0_0's ConvNet
                    "generator.blocks._values.3.prior_net.0.convs.3.weight"):  # level_down_1's prior ConvNet
            sd = foreign.state_dict()
            other = key.replace("convs.3", "convs.5")
            sd[key], sd[other] = sd[other], sd[key]
            swapped = efficient_vdvae(**LAYOUTS["A"]).eval()
            get_preset("hvae-efficientvdvae").migration(swapped).migrate(swapped, sd)
            assert float((terms(swapped) - want).abs().max()) > 100 * TOL["kl"], key
        model.blocks["level_down_1_unpool"].net.scale_bias.zero_()  # the unpooling's bias (zeros until hVAE's first pass)
        assert float((terms(model) - want).abs().max()) > 100 * TOL["kl"]


#: Tolerances with the mixture-of-logistics output: log p(x | z) is about -1060 nats per 3x8x8 image, so rec,
#: log-weights and log p(x, z) (measured gaps up to 5e-4 nats: a few float32 roundings of 1060) get 2e-3 nats, 2e-6 of it.
TOL_MOL = {**TOL, "rec": 2e-3, "log_weights": 2e-3, "log_joint": 2e-3}


@pytest.mark.parametrize("layout", ["D", "E"])
def test_migrated_mixture_of_logistics_gives_the_foreign_numbers(layout):
    """hVAE's ImageNet-32-style output (M (3 C + 1) channels, RGB autoregression, [-1, 1] data): the same ELBO terms."""
    foreign = foreign_model(layout)
    model = ours(layout, foreign)
    k = levels(layout, 8, 1)
    got, terms = gaps(model, foreign, (k / 255).float(), scale_pixels(k))  # vaekit reads k / 255, hVAE (k - 127.5) / 127.5
    assert all(got[key] < TOL_MOL[key] for key in TOL_MOL), got
    assert float(terms.rec.max()) < -500 and all(float(v.min()) > 1e-3 for v in terms.kl.values())  # not trivial


def _mol_parameters(n, shape, seed, low=-9.0):
    """hVAE's output channels for ``n`` components with means in [-1, 1], raw log-scales in [``low``, 1] (by default
    sharp ones, below the clamp at -5 and far from most data, where hVAE's bin mass underflows to its density fallback)."""
    g = torch.Generator().manual_seed(seed)
    b, _, h, w = shape
    logits = torch.randn(b, n, h, w, generator=g)
    means = torch.rand(b, 3, n, h, w, generator=g) * 2 - 1
    raw = torch.rand(b, 3, n, h, w, generator=g) * (1 - low) + low
    coeffs = torch.randn(b, 3, n, h, w, generator=g)
    return torch.cat([logits, torch.cat([means, raw, coeffs], 2).flatten(1, 2)], 1)


@pytest.mark.parametrize("base", ["logstd", "std"])
def test_the_mixture_likelihood_is_hvaes_disc_mix_logistic(base):
    """HVAEMixtureOfLogistics after HVAEMoLLayout against hVAE's DiscMixLogistic on random parameters: sharp and broad
    scales, the clamp of the log-scales, both edge levels and the density fallback.

    Both read the same [-1, 1] values (``2 x - 1``): hVAE's ``scale_pixels`` can differ from it by an ulp, which moves
    a bin's mass near hVAE's threshold 1e-5 (a difference of two sigmoids near 1) by up to 1 %."""
    from vaekit.models.hierarchical.hvae_compat_evdvae import HVAEMixtureOfLogistics, HVAEMoLLayout

    n = 3
    params = _mol_parameters(n, (16, 3, 4, 4), 5)
    k = levels("D", 16, 6)[..., :4, :4]
    x = (k / 255).float()
    lik = HVAEMixtureOfLogistics(n, min_log_scale=-5.0, base=base)
    got = lik(HVAEMoLLayout(n)(params), 3).log_prob(x)
    want = disc_mix_logistic_log_px(x * 2 - 1, params, n, base, BETA, -5.0)
    assert float(((got - want) / want).abs().max()) < 1e-6, (got - want).abs().max()
    assert float(want.max()) < -100
    unclamped = HVAEMixtureOfLogistics(n, base=base)(HVAEMoLLayout(n)(params), 3).log_prob(x)  # min_log_scale -250
    assert float((unclamped - got).abs().max()) > 1.0


@pytest.mark.parametrize("seed", [7, 11, 12])
def test_samples_of_the_mixture_follow_its_likelihood(seed):
    """One pixel, three components, raw log-scales in [-3, 1] (scales of 16 bins and more: no density fallback, the
    masses sum to one) and means anywhere in [-1, 1], so channels are often clipped: the frequencies of 400,000
    draws in 8 x 8 x 8 colour cells against the cells' masses summed from ``exp(log_prob)`` over all 256^3 colours
    (the likelihood checked against hVAE's above). Total variation measured with the sampler as it is: 0.009 to
    0.011 (sampling noise); with the blue coefficients swapped (in ``sample`` and ``mean``) 0.145 to 0.181, green
    chained on the unclipped red draw 0.088 to 0.122, the Gumbel noise's sign flipped 0.025 to 0.039 (with two
    components it would not show: a difference of two Gumbels is symmetric), the logistic noise times the inverse
    scale 0.11 to 0.55 or over the square root of the inverse scale 0.030 to 0.250."""
    from vaekit.models.hierarchical.hvae_compat_evdvae import HVAEMixtureOfLogistics, HVAEMoLLayout

    px = HVAEMixtureOfLogistics(3)(HVAEMoLLayout(3)(_mol_parameters(3, (1, 3, 1, 1), seed, low=-3.0)), 3)
    g = torch.arange(256.0) / 255
    gb = torch.cartesian_prod(g, g).T.reshape(2, -1, 1, 1)  # all (green, blue) pairs
    mass = torch.zeros(8, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        for i, r in enumerate(g):
            p = px.log_prob(torch.stack([r.expand(65536, 1, 1), *gb], 1)).double().exp().reshape(8, 32, 8, 32)
            mass[i // 32] += p.sum((1, 3))
    assert abs(float(mass.sum()) - 1) < 1e-4
    torch.manual_seed(seed)
    n = 400_000
    cells = (px.sample((n,)).reshape(n, 3) * 255).round().long() // 32
    freq = torch.zeros(8, 8, 8, dtype=torch.float64).index_put_(tuple(cells.T), torch.ones(n, dtype=torch.float64),
                                                                accumulate=True) / n
    assert 0.5 * float((freq - mass).abs().sum()) < 0.02


def test_the_mixture_likelihood_sums_to_one_and_samples_its_mean():
    """Over all 256^3 colours of one pixel the masses sum to one where hVAE's density fallback (for bin masses below
    1e-5) is not reached (scales of 30 bins or more); sharper components exceed one, because that fallback (hVAE's)
    divides the density by ``exp(raw)`` where the scale is ``exp(beta raw)``; samples of sharp components average to
    ``mean``."""
    from vaekit.models.hierarchical.hvae_compat_evdvae import HVAEMixtureOfLogistics, HVAEMoLLayout

    lik = HVAEMixtureOfLogistics(2)
    g = torch.arange(256.0) / 255
    gb = torch.cartesian_prod(g, g).T.reshape(2, -1, 1, 1)

    def log_total(params):
        px = lik(HVAEMoLLayout(2)(params), 3)
        return float(torch.logsumexp(torch.stack([px.log_prob(torch.stack([r.expand(65536, 1, 1), *gb], 1)).logsumexp(0)
                                                  for r in g]), 0))
    params = _mol_parameters(2, (1, 3, 1, 1), 7, low=-2.0)
    assert abs(log_total(params)) < 2e-5
    assert log_total(_mol_parameters(2, (1, 3, 1, 1), 7)) > 3e-4  # raw log-scales down to -9 (measured: 5.3e-4)
    sharp = params.clone()
    body = sharp[:, 2:].unflatten(1, (3, 3, 2))  # a view: image channel, (means, raw log-scales, coefficients), component
    body[:, :, 0].mul_(0.3)  # means in [-0.3, 0.3] and coefficients tanh(0.3 z): no clipping at -1 or 1
    body[:, :, 2].mul_(0.3)
    body[:, :, 1] = -6.0  # scales exp(-6 ln 2): two bins
    px = lik(HVAEMoLLayout(2)(sharp), 3)
    torch.manual_seed(0)
    draws = px.sample((20000,))
    assert draws.shape == (20000, 1, 3, 1, 1) and torch.equal(draws, torch.round(draws * 255) / 255)
    torch.testing.assert_close(draws.mean(0), px.mean, atol=0.01, rtol=0)


CONFIG = {
    "model": {"class_path": "vaekit.models.hierarchical.hvae_compat_evdvae.efficient_vdvae",
              "init_args": {**LAYOUTS["B"], "data_shape": [1, 8, 8]}},
    "data": {"class_path": "vaekit.data.Digits", "init_args": {"binarize": "threshold", "test_fraction": 0.2}},
    "trainer": {"max_epochs": 1, "batch_size": 64, "progress_bar": False, "run_name": "evdvae"},
}


@pytest.fixture
def foreign(migration_inputs):
    model = foreign_model("B")
    path, config = migration_inputs("evdvae", {"model_state_dict": model.state_dict(),
                                               "global_step": torch.tensor(150)}, CONFIG)
    return model, path, config


def _migrate_into_run(foreign, tmp_path, capsys):
    """``vaekit migrate`` of ``foreign`` (model, checkpoint, config) into ``tmp_path / "run"``: every tensor loaded; the
    run directory and the model ``vaekit.load`` reads from it (config.yaml and safetensors only)."""
    model, path, config = foreign
    out = tmp_path / "run"
    n = len(model.state_dict())
    assert main(["migrate", str(path), "--preset", "hvae-efficientvdvae", "--config", str(config), "--out", str(out)]) == 0
    assert f"migrated {n} tensors of {path.name} with preset 'hvae-efficientvdvae'" in capsys.readouterr().out
    record = json.loads((out / "migration.json").read_text())
    assert record["preset"] == "hvae-efficientvdvae" and len(record["loaded"]) == n
    return out, vaekit.load(out)


def _elbos(loaded, foreign, x, x_foreign):
    """The ELBOs of the migrated model on ``x`` and of the foreign model on ``x_foreign`` (the same data as it reads
    them), with the same noise."""
    with torch.no_grad():
        torch.manual_seed(7)
        layers, log_px = foreign(x_foreign)
        want = log_px - sum(kl_divergence(q, p).sum((1, 2, 3)) for _, p, q in layers.values())
        torch.manual_seed(7)
        return loaded.elbo_terms(x).elbo, want


def _evaluate_and_sample(out):
    """``vaekit evaluate`` (IWAE, k = 3) and ``vaekit sample`` of the migrated run ``out``."""
    assert main(["evaluate", str(out), "--iwae-k", "3", "--n-points", "8", "--no-progress"]) == 0
    result = json.loads((out / "eval" / "evaluate-test-k3.json").read_text())
    assert math.isfinite(result["iwae"]) and result["iwae"] >= result["elbo"] - 1.0
    assert main(["sample", str(out), "-n", "4"]) == 0 and (out / "eval" / "samples.png").is_file()


def test_cli_round_trip_into_a_run_directory(foreign, tmp_path, capsys):
    model = foreign[0]
    out, loaded = _migrate_into_run(foreign, tmp_path, capsys)
    x = binary("B", 6, 4)
    got, want = _elbos(loaded, model, x, x)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-6)
    _evaluate_and_sample(out)


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.pop("generator.blocks._values.1.net.0.scale_bias"),  # saved before hVAE's first forward pass
     "blocks.level_down_0_unpool.net.scale_bias: \"foreign state dict has no key "
     "'generator.blocks._values.1.net.0.scale_bias'\""),
    (lambda sd: sd.update({"generator.blocks._values.2.posterior_layer.0.extra": torch.zeros(2)}),
     "foreign keys not used: generator.blocks._values.2.posterior_layer.0.extra"),
    (lambda sd: sd.update({"generator.blocks._values.0.trainable_h": torch.zeros(1, 6, 4, 4)}),
     "shape mismatches: blocks.top.h0: model (6, 2, 2) vs foreign (6, 4, 4)"),
    (lambda sd: sd.update({"generator.blocks._values.0.trainable_h": torch.zeros(6, 2, 2)}),  # h0's shape, not hVAE's
     "failed mappings: blocks.top.h0: generator.blocks._values.0.trainable_h has shape (6, 2, 2), but hVAE's "
     "TopSimpleBlock stores trainable_h as (1, C, H, W)"),
    (lambda sd: sd.update({"output_block.prior_net.0.weight": torch.zeros(100, 4, 3, 3),  # a MoL output (10 components)
                           "output_block.prior_net.0.bias": torch.zeros(100)}),
     "blocks.x_hat.net.weight: model (1, 4, 3, 3) vs foreign (100, 4, 3, 3)"),
    (lambda sd: sd.update({"generator.blocks._values.0.trainable_h": torch.zeros(2, 6, 2, 2)}),
     "blocks.top.h0: generator.blocks._values.0.trainable_h has shape (2, 6, 2, 2)"),
])
def test_a_missing_extra_or_misshapen_tensor_is_refused_by_name(foreign, refused_migration, change, message):
    refused_migration(*foreign, "hvae-efficientvdvae", change, message)


@pytest.fixture
def foreign_mol(migration_inputs, tmp_path):
    """hVAE's mixture-of-logistics model of layout D, saved, and a config reading 8-bit RGB images from a .npz."""
    model = foreign_model("D")
    data = tmp_path / "rgb.npz"
    np.savez(data, x=(levels("D", 40, 8) / 255).float().numpy(), test_x=(levels("D", 12, 9) / 255).float().numpy())
    config = {**CONFIG, "model": {**CONFIG["model"], "init_args": {**LAYOUTS["D"], "output_distribution": "mol",
                                                                   "num_output_mixtures": MOL["D"]}},
              "data": {"class_path": "vaekit.data.ArrayFile", "init_args": {"path": str(data), "test_key": "test_x"}}}
    path, config = migration_inputs("evdvae_mol", {"model_state_dict": model.state_dict()}, config)
    return model, path, config


def test_cli_migrates_the_mixture_of_logistics_output(foreign_mol, tmp_path, capsys):
    model = foreign_mol[0]
    out, loaded = _migrate_into_run(foreign_mol, tmp_path, capsys)
    k = levels("D", 6, 4)
    got, want = _elbos(loaded, model, (k / 255).float(), scale_pixels(k))
    assert float(((got - want) / want).abs().max()) < 2e-6 and float(want.max()) < -500, (got, want)
    _evaluate_and_sample(out)


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.update({"output_block.prior_net.0.weight": torch.zeros(20, 4, 1, 1),  # two components, not three
                           "output_block.prior_net.0.bias": torch.zeros(20)}),
     "shape mismatches: blocks.x_hat.net.0.weight: model (30, 4, 1, 1) vs foreign (20, 4, 1, 1)"),
    (lambda sd: sd.update({"output_block.prior_net.0.weight": torch.zeros(3, 4, 1, 1),  # a per-pixel output, not the MoL
                           "output_block.prior_net.0.bias": torch.zeros(3)}),
     "blocks.x_hat.net.0.bias: model (30,) vs foreign (3,)"),
    (lambda sd: sd.pop("output_block.prior_net.0.bias"),
     "blocks.x_hat.net.0.bias: \"foreign state dict has no key 'output_block.prior_net.0.bias'\""),
])
def test_a_wrong_mixture_output_is_refused_by_name(foreign_mol, refused_migration, change, message):
    refused_migration(*foreign_mol, "hvae-efficientvdvae", change, message)


def test_the_mixture_output_needs_rgb():
    with pytest.raises(vaekit.InvalidArgumentError, match=r"output_distribution 'mol' .* needs RGB images, data_shape "
                                                          r"\[3, H, W\]; got data_shape \[1, 8, 8\]"):
        efficient_vdvae(**LAYOUTS["B"], output_distribution="mol")
    with pytest.raises(vaekit.InvalidArgumentError, match=r"output_distribution must be one of \['bernoulli', 'mol'\]"):
        efficient_vdvae(**LAYOUTS["D"], output_distribution="logistic")
    with pytest.raises(vaekit.InvalidArgumentError, match=r"num_output_mixtures"):
        efficient_vdvae(**LAYOUTS["D"], output_distribution="mol", num_output_mixtures=0)
    for key, value in (("num_output_mixtures", 3), ("min_mol_logscale", -7.0)):  # set, but the output is Bernoulli
        with pytest.raises(vaekit.InvalidArgumentError, match=rf"{key} = {value} applies to output_distribution 'mol' only, "
                                                              r"but output_distribution is 'bernoulli'"):
            efficient_vdvae(**LAYOUTS["B"], **{key: value})


def test_bad_mixture_data_is_refused_naming_the_likelihood():
    model = efficient_vdvae(**LAYOUTS["D"], output_distribution="mol", num_output_mixtures=MOL["D"])
    x = (levels("D", 2, 3) / 255).float()
    model.validate_data(x)
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\] \(8-bit levels k/255\) for HVAEMixtureOfLogistics, got "
                                         r"values in \[0, 1.5\]") as bad:
        model.validate_data(x * 1.5)
    with pytest.raises(ValueError, match=r"x is not on the grid of the 256 levels k/255 that HVAEMixtureOfLogistics scores "
                                         r"\(hVAE's 8-bit images; largest offset 0.25 levels\); quantise") as off:
        model.validate_data(x.clamp(max=0.5) + 0.25 / 255)
    assert "DiscretizedLogistic" not in str(bad.value) + str(off.value) and "n_bins" not in str(off.value)


def test_an_unpicked_component_with_an_infinite_inverse_scale_does_not_spoil_samples():
    """A component of logit -1e4 (never picked) and raw log-scale -300 (``exp(300 ln 2)`` overflows float32: an inverse
    scale of inf) beside a component of scale 1: the samples are those of the second component alone."""
    from vaekit.models.hierarchical.hvae_compat_evdvae import HVAEMixtureOfLogisticsDistribution

    logits = torch.tensor([-1e4, 0.0]).reshape(1, 2, 1, 1)
    loc, coeff = torch.zeros(1, 2, 3, 1, 1), torch.zeros(1, 2, 3, 1, 1)
    raw = torch.tensor([-300.0, 0.0]).reshape(1, 2, 1, 1, 1).expand(1, 2, 3, 1, 1)
    px = HVAEMixtureOfLogisticsDistribution(logits, loc, raw, coeff, min_log_scale=-400.0)
    assert torch.isinf(px.inv_scale[0, 0]).all()
    torch.manual_seed(0)
    draws = px.sample((4000,))
    assert not draws.isnan().any() and draws.std() > 0.1  # scale 1 in [-1, 1] units


def test_a_model_of_another_layout_is_refused(foreign, tmp_path, capsys):
    _, path, config = foreign
    tdvae = tmp_path / "tdvae.yaml"
    tdvae.write_text(yaml.safe_dump({**CONFIG, "model": {"class_path": "vaekit.models.hierarchical.hvae_compat.tdvae",
                                                         "init_args": {"data_shape": [64], "hiddens": 8}}}))
    out = tmp_path / "run"
    assert main(["migrate", str(path), "--preset", "hvae-efficientvdvae", "--config", str(tdvae), "--out", str(out)]) == 2
    assert "preset 'hvae-efficientvdvae' maps onto a model with a TopSimpleBlock 'top'" in capsys.readouterr().err
    assert not out.exists()


def test_bad_layouts_are_refused_naming_the_argument():
    a = LAYOUTS["A"]
    with pytest.raises(vaekit.InvalidArgumentError, match=r"down_strides must be up_strides reversed"):
        efficient_vdvae(**{**a, "down_strides": [2, 1]})
    with pytest.raises(vaekit.InvalidArgumentError, match=r"up_kernel_size must have one entry per level \(2"):
        efficient_vdvae(**{**a, "up_kernel_size": [3]})
    with pytest.raises(vaekit.InvalidArgumentError, match=r"up_skip_filters\[1\] = 5 feeds top-down level 0 of 6 channels"):
        efficient_vdvae(**{**a, "up_skip_filters": [4, 5]})
    with pytest.raises(vaekit.InvalidArgumentError, match=r"down_kernel_size\[1\] must be 1 or 3 .*, got 5"):
        efficient_vdvae(**{**a, "down_kernel_size": [1, 5]})
    with pytest.raises(vaekit.InvalidArgumentError, match=r"up_kernel_size\[0\] must be 1 or 3 .*, got 2"):
        efficient_vdvae(**{**a, "up_kernel_size": [2, 1]})
    c = {**LAYOUTS["C"], "up_skip_filters": [6, 6, 6], "down_filters": [6, 6, 6]}
    with pytest.raises(vaekit.InvalidArgumentError, match=r"up_skip_filters\[0\] = 6 but level 1 reads level_up_0_skip"):
        efficient_vdvae(**c)
    assert efficient_vdvae(**c, wiring="efficient_vdvae").blocks["level_up_1"].inputs == ("level_up_0",)
    with pytest.raises(vaekit.InvalidArgumentError, match=r"wiring must be one of \['hvae', 'efficient_vdvae'\], got 'vdvae'"):
        efficient_vdvae(**a, wiring="vdvae")
    with pytest.raises(vaekit.InvalidArgumentError, match=r"resolution 8 must be at least the image size"):
        efficient_vdvae(**{**a, "data_shape": [1, 7, 7]})
