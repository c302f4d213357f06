"""Migration: a ladder VAE written in plain PyTorch, loaded into the vaekit ladder, gives identical outputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vaekit.models.hierarchical.migration import Migration, concat, transpose
from vaekit.models.hierarchical.presets import ladder_vae

D, H1, H2, Z1, Z2 = 12, 8, 6, 4, 3


class PlainLadder(nn.Module):
    """Separate mean/scale heads, and a decoder input matrix stored as (in, out) for ``z @ W``."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(nn.Linear(D, H1), nn.Tanh(), nn.Linear(H1, H1), nn.Tanh())
        self.enc2 = nn.Sequential(nn.Linear(H1, H2), nn.Tanh(), nn.Linear(H2, H2), nn.Tanh())
        self.q2_mu, self.q2_sigma = nn.Linear(H2, Z2), nn.Linear(H2, Z2)
        self.q1_mu, self.q1_sigma = nn.Linear(H1, Z1), nn.Linear(H1, Z1)
        self.p1 = nn.Sequential(nn.Linear(Z2, H2), nn.Tanh(), nn.Linear(H2, H2), nn.Tanh(), nn.Linear(H2, 2 * Z1))
        self.dec_w = nn.Parameter(torch.randn(Z1, H1) / 2)
        self.dec_b = nn.Parameter(torch.randn(H1) / 2)
        self.dec = nn.Sequential(nn.Tanh(), nn.Linear(H1, H1), nn.Tanh(), nn.Linear(H1, D))

    @staticmethod
    def scale(raw: Tensor) -> Tensor:
        return F.softplus(raw) + 1e-4

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h1 = self.enc1(x)
        h2 = self.enc2(h1)
        return self.q2_mu(h2), self.scale(self.q2_sigma(h2)), self.q1_mu(h1), self.scale(self.q1_sigma(h1))

    def log_prior(self, z2: Tensor, z1: Tensor) -> Tensor:
        loc, raw = self.p1(z2).chunk(2, -1)
        normal = torch.distributions.Normal
        return normal(0.0, 1.0).log_prob(z2).sum(-1) + normal(loc, self.scale(raw)).log_prob(z1).sum(-1)

    def logits(self, z1: Tensor) -> Tensor:
        return self.dec(z1 @ self.dec_w + self.dec_b)


MAPPING = {
    "blocks.h1.net.": "enc1.",
    "blocks.h2.net.": "enc2.",
    "blocks.z2.net.0.weight": concat(["q2_mu.weight", "q2_sigma.weight"]),
    "blocks.z2.net.0.bias": concat(["q2_mu.bias", "q2_sigma.bias"]),
    "blocks.z1.posterior_net.0.weight": concat(["q1_mu.weight", "q1_sigma.weight"]),
    "blocks.z1.posterior_net.0.bias": concat(["q1_mu.bias", "q1_sigma.bias"]),
    "blocks.z1.prior_net.": "p1.",
    "blocks.x_out.net.0.weight": transpose("dec_w"),
    "blocks.x_out.net.0.bias": "dec_b",
    "blocks.x_out.net.2.weight": "dec.1.weight",
    "blocks.x_out.net.2.bias": "dec.1.bias",
    "blocks.x_out.net.4.weight": "dec.3.weight",
    "blocks.x_out.net.4.bias": "dec.3.bias",
}


def _models() -> tuple[PlainLadder, nn.Module]:
    torch.manual_seed(0)
    return PlainLadder(), ladder_vae([D], hidden=(H1, H2), latent=(Z1, Z2))


def test_migrated_ladder_gives_identical_outputs():
    plain, model = _models()
    report = Migration(MAPPING, keep=["blocks.z2.prior_"]).migrate(model, plain.state_dict())
    assert report.ok and len(report.loaded) == len(model.state_dict()) - 2
    x = torch.bernoulli(torch.full((5, D), 0.4))
    q = model.encode(x)
    m2, s2, m1, s1 = plain.posterior(x)
    for got, want in ((q["z2"].mean, m2), (q["z2"].stddev, s2), (q["z1"].mean, m1), (q["z1"].stddev, s1)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    z = {"z2": torch.randn(7, 5, Z2), "z1": torch.randn(7, 5, Z1)}
    torch.testing.assert_close(model.log_prior(z), plain.log_prior(z["z2"], z["z1"]), rtol=0, atol=1e-5)
    torch.testing.assert_close(model.decode(z).base_dist.logits, plain.logits(z["z1"]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("edit,strict_message", [
    (lambda m: m.pop("blocks.z1.prior_net."), "model keys with no mapping: blocks.z1.prior_net.0.bias"),
    (lambda m: m.pop("blocks.x_out.net.0.bias"), "foreign keys not used: dec_b"),
    (lambda m: m.update({"blocks.x_out.net.0.weight": "dec_w"}), "shape mismatches: blocks.x_out.net.0.weight: model (8, 4) vs foreign (4, 8)"),
    (lambda m: m.update({"blocks.x_out.net.0.bias": "dec_bias"}), "failed mappings: blocks.x_out.net.0.bias: \"foreign state dict has no key 'dec_bias'\""),
])
def test_strict_migration_names_bad_keys_and_changes_nothing(edit, strict_message):
    plain, model = _models()
    mapping = dict(MAPPING)
    edit(mapping)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as err:
        Migration(mapping, keep=["blocks.z2.prior_"]).migrate(model, plain.state_dict())
    assert strict_message in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    report = Migration(mapping, keep=["blocks.z2.prior_"]).migrate(model, plain.state_dict(), strict=False)
    assert not report.ok and report.loaded  # the rest loads when not strict


def test_bad_mapping_arguments():
    with pytest.raises(ValueError, match="a prefix \\(ending in '.'\\) must map to a prefix"):
        Migration({"blocks.h1.net.": "enc1"})
    with pytest.raises(TypeError, match="mapping\\['a'\\] must map a model key \\(str\\) to a foreign key \\(str\\) or a callable, got 3"):
        Migration({"a": 3})
    with pytest.raises(TypeError, match="mapping must be a dict"):
        Migration([("a", "b")])
