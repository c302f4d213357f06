"""``vaekit migrate``: hVAE's TDVAE state dict -> a vaekit run directory with identical outputs, and the refusals.

``ForeignTDVAE`` re-implements the predecessor's module tree (``lacykaltgr/hvae`` at commit
00583f6: ``hVAE`` with ``input_block``, ``encoder``/``generator`` holding an
``OrderedModuleDict`` whose blocks sit in the ``ModuleList`` ``_values``, ``MLPNet`` with its
``mlp_layers``, nets wrapped in ``SerializableSequential``) and its computations
(``split_mu_sigma``; ``generate_distribution`` with ``distribution_base='logstd'``,
``distribution_sigma_param='var'`` and the gradient-smoothing beta; a Laplace ``y`` with a
fixed N/L(0, 1) prior; ``posterior.sample()``), so its state dict has the real keys.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from torch import nn
from torch.distributions import Laplace, Normal

import vaekit
from vaekit.cli import main

D, H, Y, Z, YH, CH, ZH, BETA = 64, 24, 5, 7, [16], [16], [20], 0.6931472


class MLPNet(nn.Module):
    def __init__(self, input_size, hidden_sizes, output_size, activate_output):
        super().__init__()
        sizes, layers = [input_size, *hidden_sizes, output_size], []
        for i in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < len(sizes) - 2 or activate_output:
                layers.append(nn.ReLU())
        self.mlp_layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.mlp_layers(x)


class OrderedModuleDict(nn.Module):
    def __init__(self, **modules):
        super().__init__()
        self._keys, self._values = [], nn.ModuleList()
        for k, m in modules.items():
            self._keys.append(k)
            self._values.append(m)

    def __getitem__(self, key):
        return self._values[self._keys.index(key)]


class Part(nn.Module):
    def __init__(self, **modules):
        super().__init__()
        for k, m in modules.items():
            setattr(self, k, m)


def seq(*modules):
    return nn.Sequential(*modules)


def split_mu_sigma(x):
    return torch.chunk(x, 2, dim=1)


def distribution(mu, raw, family):
    scale = torch.sqrt(torch.exp(raw * BETA))  # distribution_base 'logstd', sigma_param 'var'
    return (Normal if family == "normal" else Laplace)(mu, scale)


class ForeignTDVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_block = Part(net=seq(nn.Flatten(1)))
        self.encoder = Part(blocks=OrderedModuleDict(hiddens=Part(net=seq(MLPNet(D, [], H, True)))))
        self.generator = Part(blocks=OrderedModuleDict(
            y=Part(prior_net=seq(), posterior_net=seq(MLPNet(H, YH, 2 * Y, False)), input_transform=seq(), condition_transform=seq()),
            y_concat=Part(net=seq(MLPNet(Y, CH, H, True))),
            z=Part(prior_net=seq(MLPNet(H, ZH, 2 * Z, False)), posterior_net=seq(MLPNet(2 * H, [], 2 * Z, False)),
                   input_transform=seq(), condition_transform=seq()),
        ))
        self.output_block = Part(prior_net=seq(seq(MLPNet(Z, [], 2 * D, False)), seq(nn.Unflatten(1, (2, D)))))

    def forward(self, x, use_mean=False):
        """The distributions of one posterior pass and log p(x | z) (hVAE draws with .sample())."""
        enc, gen = self.encoder.blocks, self.generator.blocks
        hiddens = enc["hiddens"].net(self.input_block.net(x))
        p_y = distribution(*split_mu_sigma(torch.zeros(x.shape[0], 2 * Y)), "laplace")  # the fixed top prior
        q_y = distribution(*split_mu_sigma(gen["y"].posterior_net(hiddens)), "laplace")
        y = q_y.mean if use_mean else q_y.sample()
        y_concat = gen["y_concat"].net(y)
        p_z = distribution(*split_mu_sigma(gen["z"].prior_net(y_concat)), "normal")
        q_z = distribution(*split_mu_sigma(gen["z"].posterior_net(torch.cat([hiddens, y_concat], 1))), "normal")
        z = q_z.mean if use_mean else q_z.sample()
        mu, raw = (t.squeeze(1) for t in split_mu_sigma(self.output_block.prior_net(z)))  # (N, 1, D) -> (N, D)
        log_px = distribution(mu, raw, "normal").log_prob(x).sum(1)
        return {"y": (y, p_y, q_y), "z": (z, p_z, q_z)}, log_px

    def elbo(self, x):
        layers, log_px = self(x)
        return log_px + sum(p.log_prob(v).sum(1) - q.log_prob(v).sum(1) for v, p, q in layers.values())


CONFIG = {
    "model": {"class_path": "vaekit.models.hierarchical.hvae_compat.tdvae",
              "init_args": {"data_shape": [D], "hiddens": H, "y_features": Y, "z_features": Z, "y_hidden": YH,
                            "concat_hidden": CH, "z_prior_hidden": ZH}},
    "data": {"class_path": "vaekit.data.Digits", "init_args": {"flatten": True, "test_fraction": 0.2}},
    "trainer": {"max_epochs": 1, "batch_size": 64, "progress_bar": False, "run_name": "tdvae"},
}


@pytest.fixture
def foreign(migration_inputs):
    torch.manual_seed(0)
    model = ForeignTDVAE().eval()
    path, config = migration_inputs("tdvae", model.state_dict(), CONFIG)
    return model, path, config


def test_migrated_tdvae_gives_the_foreign_numbers(foreign, tmp_path, capsys):
    model, path, config = foreign
    out = tmp_path / "run"
    assert main(["migrate", str(path), "--preset", "hvae-tdvae", "--config", str(config), "--out", str(out)]) == 0
    assert "migrated 18 tensors of tdvae.pth with preset 'hvae-tdvae'" in capsys.readouterr().out
    record = json.loads((out / "migration.json").read_text())
    assert record["preset"] == "hvae-tdvae" and len(record["sha256"]) == 64 and len(record["loaded"]) == 18  # 9 linear layers
    ours = vaekit.load(out)  # from config.yaml and safetensors only: no trust_code
    x = torch.rand(16, D, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.manual_seed(5)
        want = model.elbo(x)
        torch.manual_seed(5)
        got = ours.log_weights(x, k=1)[0]  # the same noise, drawn in the same order (y, then z)
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-6)
        layers, log_px = model(x, use_mean=True)
        q = ours.encode(x)
        for name in ("y", "z"):
            torch.testing.assert_close(q[name].base_dist.loc, layers[name][2].loc, atol=1e-6, rtol=0)
            torch.testing.assert_close(q[name].base_dist.scale, layers[name][2].scale, atol=1e-6, rtol=1e-6)
        assert type(q["y"].base_dist).__name__ == "Laplace"
        zs = {k: v[0] for k, v in layers.items()}
        prior = sum(p.log_prob(v).sum(1) for v, p, _ in layers.values())
        torch.testing.assert_close(ours.log_joint(x, zs), log_px + prior, atol=2e-5, rtol=1e-6)
        assert float((ours.log_joint(x, zs) - (log_px + prior)).abs().max()) < 2e-5
    # the run directory is a run: evaluate and sample read it
    assert main(["evaluate", str(out), "--iwae-k", "5", "--n-points", "10", "--no-progress"]) == 0
    result = json.loads((out / "eval" / "evaluate-test-k5.json").read_text())
    assert math.isfinite(result["iwae"]) and result["iwae"] >= result["elbo"] - 1.0
    assert main(["sample", str(out), "-n", "4"]) == 0 and (out / "eval" / "samples.png").is_file()


@pytest.mark.parametrize("change, message", [
    (lambda sd: sd.update({"generator.blocks._values.3.net.0.weight": torch.zeros(2, 2)}),
     "foreign keys not used: generator.blocks._values.3.net.0.weight"),
    (lambda sd: sd.pop("generator.blocks._values.2.prior_net.0.mlp_layers.2.bias"),
     "blocks.z.prior_net.2.bias: \"foreign state dict has no key 'generator.blocks._values.2.prior_net.0.mlp_layers.2.bias'\""),
    (lambda sd: sd.update({"encoder.blocks._values.0.net.0.mlp_layers.0.bias": torch.zeros(H + 1)}),
     f"shape mismatches: blocks.hiddens.net.0.bias: model ({H},) vs foreign ({H + 1},)"),
])
def test_a_missing_extra_or_misshapen_tensor_is_refused_by_name(foreign, refused_migration, change, message):
    refused_migration(*foreign, "hvae-tdvae", change, message)


def test_bad_arguments_are_refused_before_anything_is_written(foreign, tmp_path, capsys):
    model, path, config = foreign
    out = tmp_path / "run"
    args = ["--config", str(config), "--out", str(out)]
    assert main(["migrate", str(path), "--preset", "vdvae", *args]) == 2
    assert "--preset: preset must be one of ['hvae-efficientvdvae', 'hvae-tdvae'], got 'vdvae'" in capsys.readouterr().err
    assert main(["migrate", str(tmp_path / "none.pth"), "--preset", "hvae-tdvae", *args]) == 2
    assert "none.pth' does not exist" in capsys.readouterr().err
    ladder = tmp_path / "ladder.yaml"
    ladder.write_text(yaml.safe_dump({**CONFIG, "model": {"class_path": "vaekit.models.hierarchical.ladder_vae",
                                                          "init_args": {"data_shape": [D]}}}))
    assert main(["migrate", str(path), "--preset", "hvae-tdvae", "--config", str(ladder), "--out", str(out)]) == 2
    assert "preset 'hvae-tdvae' maps onto a model with block 'hiddens'" in capsys.readouterr().err
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump({**CONFIG, "modle": {}}))
    assert main(["migrate", str(path), "--preset", "hvae-tdvae", "--config", str(typo), "--out", str(out)]) == 2
    assert "modle" in capsys.readouterr().err
    torch.save({"optimizer": {"lr": torch.tensor(1.0)}, "step": 3}, path)
    assert main(["migrate", str(path), "--preset", "hvae-tdvae", *args]) == 2
    assert "not a state dict" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["migrate", str(path), "--preset", "hvae-tdvae", *args]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
