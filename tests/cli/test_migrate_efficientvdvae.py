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
Two places are not hVAE's code: ``trainable_h`` is repeated along the batch (hVAE's
``torch.tile(h, (N, 1))`` on a 4-d tensor stacks the batch along the height instead), and the
likelihood is Efficient-VDVAE's ``BernoulliLoss`` (Bernoulli logits, cropped to the image; hVAE
at that commit routes its output through a mixture of logistics without ``log_prob``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.distributions import Bernoulli, Normal, kl_divergence

import vaekit
from vaekit.cli import main
from vaekit.models.hierarchical.hvae_compat_evdvae import efficient_vdvae
from vaekit.models.hierarchical.migration_presets import get_preset

BETA = 0.6931472

# Layout A: 6x6 images padded to 8x8; level 0 pools by 2, level 1 keeps 4x4 (no pool); a block per resolution before
# level 0's, an extra top-down block in level 1. Layout B: 8x8, both levels pool (the last pool is computed, unused),
# two ConvNets per bottom-up block of level 1 and per residual block of top-down level 0.
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
}


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


class ForeignEfficientVDVAE(nn.Module):
    """hVAE's EfficientVDVAE: input_block, encoder.blocks, generator.blocks, output_block, as _model(migration) builds it."""

    def __init__(self, a):
        super().__init__()
        levels = len(a["up_strides"])
        self.pad = (a["resolution"] - a["data_shape"][1]) // 2
        self.input_block = Part(net=seq(Conv2d(a["data_shape"][0], a["input_conv_filters"], a["input_kernel_size"])))
        enc, gen = OrderedModuleDict(), OrderedModuleDict()
        self.inputs = {}  # block -> (input, condition)
        in_up = [a["input_conv_filters"], *a["up_filters"][:-1]]
        last = "x"
        for i, stride in enumerate(a["up_strides"]):
            def convnets(i=i):
                return seq(*[ConvNet(in_up[i], a["up_mid_filters_ratio"][i], a["up_kernel_size"][i])
                             for _ in range(a["up_n_blocks"][i])])
            for n in range(a["up_n_blocks_per_res"][i]):
                enc.add(f"level_up_{i}_{n}", Part(net=convnets()))
                self.inputs[f"level_up_{i}_{n}"], last = (last, None), f"level_up_{i}_{n}"
            enc.add(f"level_up_{i}", Part(net=convnets()))
            self.inputs[f"level_up_{i}"] = (last, None)
            enc.add(f"level_up_{i}_skip", Part(net=seq(Conv2d(in_up[i], a["up_skip_filters"][i], 1))))
            self.inputs[f"level_up_{i}_skip"], last = (f"level_up_{i}", None), f"level_up_{i}"
            if stride > 1:
                enc.add(f"level_up_{i}_pool", Part(net=seq(PoolLayer(in_up[i], a["up_filters"][i], stride))))
                self.inputs[f"level_up_{i}_pool"], last = (f"level_up_{i}", None), f"level_up_{i}_pool"
        h = a["resolution"] // math.prod(a["up_strides"])
        trainable_h = nn.Parameter(torch.empty(1, a["down_filters"][0], h, h))
        nn.init.kaiming_uniform_(trainable_h, nonlinearity="linear")
        gen.add("top", Part(trainable_h=trainable_h, net=seq()))
        in_down, last = [a["down_filters"][0], *a["down_filters"][:-1]], "top"
        for d, stride in enumerate(a["down_strides"]):
            f, skip, ratio, k = a["down_filters"][d], f"level_up_{levels - 1 - d}_skip", a["down_mid_filters_ratio"][d], \
                a["down_kernel_size"][d]
            zc = a["down_latent_variates"][d]
            if stride > 1:
                gen.add(f"level_down_{d}_unpool", Part(net=seq(UnpooLayer(in_down[d], f, stride))))
                self.inputs[f"level_down_{d}_unpool"], last = (last, None), f"level_down_{d}_unpool"
            for name in [f"level_down_{d}"] + [f"level_down_{d}_{n}" for n in range(a["down_n_blocks_per_res"][d])]:
                gen.add(name, Part(
                    prior_net=seq(ConvNet(f, ratio, k, residual=False, output_ratio=2.0)),
                    posterior_net=seq(ConvNet(2 * f, ratio * 0.5, k, residual=False, output_ratio=0.5)),
                    input_transform=seq(), condition_transform=seq(),
                    net=seq(*[ConvNet(f, ratio, k) for _ in range(a["down_n_blocks"][d])]),
                    z_projection=seq(Conv2d(zc, f, 1)), prior_layer=seq(Conv2d(f, 2 * zc, 1)),
                    posterior_layer=seq(Conv2d(f, 2 * zc, 1))))
                self.inputs[name], last = (last, skip), name
        self.last = last
        self.encoder, self.generator = Part(blocks=enc), Part(blocks=gen)
        self.output_block = Part(prior_net=seq(Conv2d(a["down_filters"][-1], a["data_shape"][0], a["output_kernel_size"])))

    def forward(self, x, use_mean=False):
        """One posterior pass: the latents with their (prior, posterior), and log p(x | z) (Bernoulli, cropped)."""
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
        if p:
            logits = logits[:, :, p:-p, p:-p]  # BernoulliLoss's crop
        return layers, Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))


def foreign_model(layout, seed=0):
    torch.manual_seed(seed)
    a = LAYOUTS[layout]
    model = ForeignEfficientVDVAE(a).eval()
    with torch.no_grad():
        model(torch.zeros(1, *a["data_shape"]), use_mean=True)  # the first pass creates UnpooLayer.scale_bias, as in hVAE
        for t in model.parameters():  # every tensor random, biases and scale_bias included: a swapped key shows
            if t.dim() == 4 and t.shape[0] > 1:  # a convolution's weight: unit gain, so x reaches the top
                t.normal_(0, 1 / math.sqrt(t[0].numel()))
            else:
                t.uniform_(-0.3, 0.3)
    return model


def ours(layout, foreign):
    model = efficient_vdvae(**LAYOUTS[layout]).eval()
    report = get_preset("hvae-efficientvdvae").migration(model).migrate(model, foreign.state_dict())
    assert report.ok and len(report.loaded) == len(model.state_dict()) == len(foreign.state_dict())
    return model


def binary(layout, n, seed):
    return torch.bernoulli(torch.full((n, *LAYOUTS[layout]["data_shape"]), 0.4), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("layout", ["A", "B"])
def test_migrated_efficientvdvae_gives_the_foreign_numbers(layout):
    foreign = foreign_model(layout)
    model = ours(layout, foreign)
    x = binary(layout, 8, 1)
    with torch.no_grad():
        torch.manual_seed(3)
        layers, log_px = foreign(x)
        torch.manual_seed(3)
        terms = model.elbo_terms(x)  # the same noise, drawn in the same order (top-down)
        assert list(terms.kl) == list(layers)
        torch.testing.assert_close(terms.rec, log_px, atol=1e-5, rtol=1e-6)
        for name, (_, prior, posterior) in layers.items():
            torch.testing.assert_close(terms.kl[name], kl_divergence(posterior, prior).sum((1, 2, 3)), atol=1e-5, rtol=1e-5)
        torch.manual_seed(3)
        elbo_mc = log_px + sum(p.log_prob(z).sum((1, 2, 3)) - q.log_prob(z).sum((1, 2, 3)) for z, p, q in layers.values())
        torch.manual_seed(3)
        assert float((model.log_weights(x, k=1)[0] - elbo_mc).abs().max()) < 2e-5
        # at the posterior means: every location and scale, and log p(x, z) at the foreign latents
        layers, log_px = foreign(x, use_mean=True)
        q = model.encode(x)
        for name, (z, prior, posterior) in layers.items():
            torch.testing.assert_close(q[name].mean, posterior.loc, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(q[name].stddev, posterior.scale, atol=1e-6, rtol=1e-5)
        zs = {k: v[0] for k, v in layers.items()}
        log_prior = sum(p.log_prob(z).sum((1, 2, 3)) for z, p, _ in layers.values())
        torch.testing.assert_close(model.log_joint(x, zs), log_px + log_prior, atol=2e-5, rtol=1e-6)
    assert float(terms.rec.abs().min()) > 1.0 and all(float(v.min()) > 1e-3 for v in terms.kl.values())  # not trivial


def test_a_misplaced_tensor_changes_the_numbers():
    """Swapping two same-shaped foreign tensors, as a mapping bug would, moves the ELBO terms far beyond the tolerance."""
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
                    "encoder.blocks._values.1.net.0.convs.3.weight",  # level_up_0's ConvNet
                    "generator.blocks._values.3.prior_net.0.convs.3.weight"):  # level_down_1's prior ConvNet
            sd = foreign.state_dict()
            other = key.replace("convs.3", "convs.5")
            sd[key], sd[other] = sd[other], sd[key]
            swapped = efficient_vdvae(**LAYOUTS["A"]).eval()
            get_preset("hvae-efficientvdvae").migration(swapped).migrate(swapped, sd)
            assert float((terms(swapped) - want).abs().max()) > 0.05, key
        model.blocks["level_down_1_unpool"].net.scale_bias.zero_()  # the unpooling's bias (zeros until hVAE's first pass)
        assert float((terms(model) - want).abs().max()) > 0.05


CONFIG = {
    "model": {"class_path": "vaekit.models.hierarchical.hvae_compat_evdvae.efficient_vdvae",
              "init_args": {**LAYOUTS["B"], "data_shape": [1, 8, 8]}},
    "data": {"class_path": "vaekit.data.Digits", "init_args": {"binarize": "threshold", "test_fraction": 0.2}},
    "trainer": {"max_epochs": 1, "batch_size": 64, "progress_bar": False, "run_name": "evdvae"},
}


@pytest.fixture
def foreign(tmp_path):
    model = foreign_model("B")
    path = tmp_path / "evdvae.pth"
    torch.save({"model_state_dict": model.state_dict(), "global_step": torch.tensor(150)}, path)
    config = tmp_path / "evdvae.yaml"
    config.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    return model, path, config


def test_cli_round_trip_into_a_run_directory(foreign, tmp_path, capsys):
    model, path, config = foreign
    out = tmp_path / "run"
    n = len(model.state_dict())
    assert main(["migrate", str(path), "--preset", "hvae-efficientvdvae", "--config", str(config), "--out", str(out)]) == 0
    assert f"migrated {n} tensors of evdvae.pth with preset 'hvae-efficientvdvae'" in capsys.readouterr().out
    record = json.loads((out / "migration.json").read_text())
    assert record["preset"] == "hvae-efficientvdvae" and len(record["loaded"]) == n
    loaded = vaekit.load(out)  # config.yaml and safetensors only
    x = binary("B", 6, 4)
    with torch.no_grad():
        torch.manual_seed(7)
        layers, log_px = model(x)
        want = log_px - sum(kl_divergence(q, p).sum((1, 2, 3)) for _, p, q in layers.values())
        torch.manual_seed(7)
        torch.testing.assert_close(loaded.elbo_terms(x).elbo, want, atol=2e-5, rtol=1e-6)
    assert main(["evaluate", str(out), "--iwae-k", "3", "--n-points", "8", "--no-progress"]) == 0
    result = json.loads((out / "eval" / "evaluate-test-k3.json").read_text())
    assert math.isfinite(result["iwae"]) and result["iwae"] >= result["elbo"] - 1.0
    assert main(["sample", str(out), "-n", "4"]) == 0 and (out / "eval" / "samples.png").is_file()


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.pop("generator.blocks._values.1.net.0.scale_bias"),  # saved before hVAE's first forward pass
     "blocks.level_down_0_unpool.net.scale_bias: \"foreign state dict has no key "
     "'generator.blocks._values.1.net.0.scale_bias'\""),
    (lambda sd: sd.update({"generator.blocks._values.2.posterior_layer.0.extra": torch.zeros(2)}),
     "foreign keys not used: generator.blocks._values.2.posterior_layer.0.extra"),
    (lambda sd: sd.update({"generator.blocks._values.0.trainable_h": torch.zeros(1, 6, 4, 4)}),
     "shape mismatches: blocks.top.h0: model (6, 2, 2) vs foreign (6, 4, 4)"),
])
def test_a_missing_extra_or_misshapen_tensor_is_refused_by_name(foreign, refused_migration, change, message):
    refused_migration(*foreign, "hvae-efficientvdvae", change, message)


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
    with pytest.raises(vaekit.InvalidArgumentError, match=r"kernel_size must be 1 or 3"):
        efficient_vdvae(**{**a, "down_kernel_size": [1, 5]})
    with pytest.raises(vaekit.InvalidArgumentError, match=r"resolution 8 must be at least the image size"):
        efficient_vdvae(**{**a, "data_shape": [1, 7, 7]})
