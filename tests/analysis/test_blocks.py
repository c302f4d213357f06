"""Analysis on any block's output of a hierarchical VAE: receptive fields, probes and traversals of deterministic blocks.

The model is linear where the test needs a known answer: the encoder block ``h = A x + a``,
the top posterior mean ``m = B h + b`` (first half of a linear head), the generator block
``g = C z + c`` and the Bernoulli logits ``D g + d``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import vaekit
from vaekit.analysis import analyze_model, latent_traversal, probe_latents, spike_triggered_average
from vaekit.analysis.traversal import principal_directions
from vaekit.distributions import Bernoulli
from vaekit.models.hierarchical import HierarchicalVAE, InputBlock, OutputBlock, SimpleBlock, TopGenBlock
from vaekit.models.hierarchical.presets import small_vdvae


def linear_model(d: int = 8, h: int = 5, z: int = 3, g: int = 4, seed: int = 0) -> HierarchicalVAE:
    torch.manual_seed(seed)
    return HierarchicalVAE([
        InputBlock("x_in"),
        SimpleBlock("h", "x_in", nn.Linear(d, h)),
        TopGenBlock("z", "h", nn.Linear(h, 2 * z), z),
        SimpleBlock("g", "z", nn.Linear(z, g)),
        OutputBlock("x_out", "g", nn.Linear(g, d), Bernoulli()),
    ], [d]).eval()


def weights(model, name):
    net = model.blocks[name].net
    return net.weight.detach(), net.bias.detach()


def test_receptive_field_of_a_linear_encoder_block_is_its_weight_row():
    model = linear_model()
    a, _ = weights(model, "h")
    sta = spike_triggered_average(model, block="h", units=[0, 3], n_samples=40000, noise_std=0.5, seed=1)
    # STA -> A_d (scale included); 40000 draws: measured relative error 0.01-0.02 over 5 seeds
    rel = (sta - a[[0, 3]]).norm(dim=1) / a[[0, 3]].norm(dim=1)
    assert rel.max() < 0.05
    # the latent below it: its posterior mean is B (A x + a) + b, so its field is (B A)_d
    b, _ = weights(model, "z")
    sta_z = spike_triggered_average(model, "z", [1], n_samples=40000, noise_std=0.5, seed=1)
    want = (b[:3] @ a)[1]
    assert float((sta_z[0] - want).norm() / want.norm()) < 0.05


def test_traversal_of_a_generator_block_decodes_the_rest_of_the_graph_from_it():
    model = linear_model()
    x = torch.bernoulli(torch.full((1, 8), 0.5), generator=torch.Generator().manual_seed(0))
    (a, a0), (b, b0), (c, c0), (dd, d0) = (weights(model, k) for k in ("h", "z", "g", "x_out"))
    m = (b @ (a @ x[0] + a0) + b0)[:3]                       # posterior mean of z
    g = c @ m + c0
    offsets = torch.tensor([-2.0, 0.0, 1.5])
    t = latent_traversal(model, x, block="g", dims=[1, 3], offsets=offsets)
    for i, unit in enumerate([1, 3]):
        for j, o in enumerate(offsets):
            want = torch.sigmoid(dd @ (g + o * torch.eye(4)[unit]) + d0)
            torch.testing.assert_close(t[i, j], want, atol=1e-6, rtol=0)
    diff = latent_traversal(model, x, block="g", dims=[1, 3], offsets=offsets, differences=True)
    torch.testing.assert_close(diff, t - t[:, 1:2], atol=1e-6, rtol=0)
    assert float(diff[:, 1].abs().max()) < 1e-6 and float(diff[:, 0].abs().max()) > 1e-3


def test_traversal_of_an_encoder_block_moves_the_posterior_means_below_it():
    model = linear_model()
    x = torch.bernoulli(torch.full((1, 8), 0.5), generator=torch.Generator().manual_seed(1))
    (a, a0), (b, b0), (c, c0), (dd, d0) = (weights(model, k) for k in ("h", "z", "g", "x_out"))
    h = a @ x[0] + a0
    t = latent_traversal(model, x, block="h", dims=[2], offsets=[3.0])
    m = (b @ (h + 3.0 * torch.eye(5)[2]) + b0)[:3]          # the shifted h feeds q(z | h)
    torch.testing.assert_close(t[0, 0], torch.sigmoid(dd @ (c @ m + c0) + d0), atol=1e-6, rtol=0)


def test_principal_direction_traversal_steps_by_standard_deviations():
    model = linear_model()
    ref = torch.bernoulli(torch.full((64, 8), 0.5), generator=torch.Generator().manual_seed(2))
    x = ref[:1]
    (a, a0), (b, b0), (c, c0), (dd, d0) = (weights(model, k) for k in ("h", "z", "g", "x_out"))
    hs = ref @ a.T + a0
    gs = ((hs @ b.T + b0)[:, :3]) @ c.T + c0
    vecs, std = principal_directions(gs)
    assert torch.allclose(vecs @ vecs.T, torch.eye(4), atol=1e-5)
    torch.testing.assert_close(std**2, torch.linalg.eigvalsh(torch.cov(gs.T)).flip(0), atol=1e-5, rtol=1e-4)
    t = latent_traversal(model, x, block="g", dims=[0], offsets=[2.0], directions="pca", reference=ref)
    want = torch.sigmoid(dd @ (gs[0] + 2.0 * std[0] * vecs[0]) + d0)
    torch.testing.assert_close(t[0, 0], want, atol=1e-6, rtol=0)


def test_probe_of_blocks_reads_the_data_and_not_a_constant(clusters):
    x, y = clusters
    torch.manual_seed(0)
    model = small_vdvae([64], width=8, latent_features=2, n_layers=2, encoder_hidden=(16,)).eval()
    res = probe_latents(model, x, y, blocks=["x_in", "h0"])
    assert res["x_in"].linear_accuracy == 1.0                # the data: 3 well separated prototypes
    assert res["h0"].linear_accuracy == res["h0"].chance      # a constant start state carries nothing
    assert sorted(res) == ["all", "h0", "x_in"]


def test_bad_block_names_and_replacements_are_refused(tmp_path):
    model = linear_model()
    x = torch.zeros(4, 8)
    with pytest.raises(vaekit.InvalidArgumentError, match=r"block must be one of the model's latents \['z'\] or blocks "
                                                        r"\['x_in', 'h', 'g', 'x_out'\], got 'nope'"):
        latent_traversal(model, x[:1], block="nope", dims=[0])
    with pytest.raises(vaekit.InvalidArgumentError, match="exactly one of latent and block"):
        spike_triggered_average(model, "z", block="h")
    with pytest.raises(vaekit.InvalidArgumentError, match="needs reference examples"):
        latent_traversal(model, x[:1], block="g", dims=[0], directions="pca")
    with pytest.raises(vaekit.InvalidArgumentError, match="'z' is a latent"):
        latent_traversal(model, x[:1], block="z", dims=[0], directions="pca", reference=x)
    with pytest.raises(ValueError, match=r"replace names deterministic blocks of this model, got \['z'\]"):
        model.posterior_pass(x, replace={"z": torch.zeros(4, 3)})
    out = tmp_path / "analysis"
    with pytest.raises(vaekit.InvalidArgumentError, match="blocks must be one of the model's latents"):
        analyze_model(model, x, out_dir=out, blocks=["h", "nope"])
    assert not out.exists()                                   # refused before anything is written


def test_analyze_model_on_blocks_writes_traversals_and_their_differences(tmp_path, clusters):
    x, y = clusters
    torch.manual_seed(0)
    model = small_vdvae([64], width=8, latent_features=2, n_layers=2, encoder_hidden=(16,)).eval()
    res = analyze_model(model, x[:60], y[:60], tmp_path, which="probe,traversal,receptive,mei", blocks="enc,z1".split(","),
                        n_units=2, n_noise=64, mei_steps=3)
    assert res["blocks"] == {"enc": 8, "z1": 2} and res["latents"] == {"z1": 2, "z2": 2}
    assert sorted(res["probe"]) == ["all", "enc", "z1"]
    assert res["traversal"]["enc"]["principal_directions"] == [0, 1] and len(res["traversal"]["z1"]["units"]) == 2
    for name in ("enc", "z1"):
        change = torch.tensor(res["traversal"][name]["max_change"])  # (directions, offsets); offset 0 is column 3
        assert float(change[:, 3].max()) == 0.0 and float(change.max()) > 0  # offset 0: exactly no change
        assert {f"traversal_{name}.png", f"traversal_diff_{name}.png", f"receptive_{name}.png", f"mei_{name}.png"} <= set(res["files"])
    assert set(res["receptive"]) == set(res["mei"]) == {"enc", "z1"}


def test_unit_traversal_with_reference_steps_by_each_units_standard_deviation():
    model = linear_model()
    ref = torch.bernoulli(torch.full((32, 8), 0.5), generator=torch.Generator().manual_seed(3))
    x = ref[:1]
    (a, a0), (b, b0), (c, c0), (dd, d0) = (weights(model, k) for k in ("h", "z", "g", "x_out"))
    gs = (((ref @ a.T + a0) @ b.T + b0)[:, :3]) @ c.T + c0
    t = latent_traversal(model, x, block="g", dims=[3, 0], offsets=[-1.0, 2.0], reference=ref)
    for i, unit in enumerate([3, 0]):
        for j, o in enumerate([-1.0, 2.0]):
            want = torch.sigmoid(dd @ (gs[0] + o * gs[:, unit].std() * torch.eye(4)[unit]) + d0)
            torch.testing.assert_close(t[i, j], want, atol=1e-6, rtol=0)


def test_traversal_of_one_unit_of_a_large_block_builds_no_identity_matrix(monkeypatch):
    # a (64, 64, 64) block has 262,144 units: torch.eye of that size would be 275 GB (618 GB for a vdvae_cifar10 block)
    torch.manual_seed(0)
    model = HierarchicalVAE([
        InputBlock("x_in"), SimpleBlock("h", "x_in", nn.Conv2d(1, 64, 1)),
        TopGenBlock("z", "h", nn.Conv2d(64, 2, 1), [1, 64, 64]), OutputBlock("x_out", "z", nn.Conv2d(1, 1, 1), Bernoulli()),
    ], [1, 64, 64]).eval()
    x = torch.bernoulli(torch.full((3, 1, 64, 64), 0.5), generator=torch.Generator().manual_seed(0))

    def no_eye(*args, **kwargs):
        raise AssertionError(f"torch.eye{args} was built")

    monkeypatch.setattr(torch, "eye", no_eye)
    unit = 5 * 4096 + 17 * 64 + 9                 # channel 5, row 17, column 9
    for reference in (None, x):
        t = latent_traversal(model, x[:1], block="h", dims=[unit], offsets=[0.0, 2.0], reference=reference)
        assert t.shape == (1, 2, 1, 64, 64)
        h = model.blocks["h"].net(x).detach()
        scale = 1.0 if reference is None else float(h[:, 5, 17, 9].std())
        moved = h[:1].clone()
        moved[0, 5, 17, 9] += 2.0 * scale
        # the shifted unit feeds the posterior of z at pixel (17, 9) only (1x1 convolutions)
        post = model.blocks["z"].net(moved)[:, :1].detach()
        want = torch.sigmoid(model.blocks["x_out"].net(post))[0]
        torch.testing.assert_close(t[0, 1], want, atol=1e-6, rtol=0)
        assert float((t[0, 1] - t[0, 0]).abs().max()) == pytest.approx(float((t[0, 1] - t[0, 0])[0, 17, 9].abs()))


def test_principal_directions_of_more_units_than_examples_are_the_svds():
    f = torch.randn(6, 500, generator=torch.Generator().manual_seed(0)) * torch.linspace(3.0, 0.1, 500)
    vecs, std = principal_directions(f, 4)
    centred = (f - f.mean(0)).double()
    _, sv, vt = torch.linalg.svd(centred, full_matrices=False)
    torch.testing.assert_close(std, (sv[:4] / 5**0.5).float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close((vecs * vt[:4].float()).sum(1).abs(), torch.ones(4), atol=1e-5, rtol=0)
    assert torch.allclose(vecs @ vecs.T, torch.eye(4), atol=1e-5)
    assert principal_directions(f)[0].shape == (6, 500)


def test_decode_replaced_decodes_with_the_models_own_data_distribution():
    # a model whose p(x | ...) is not its output block's likelihood as is: decode_replaced must go through the model
    class Sharpened(HierarchicalVAE):
        def data_distribution(self, params, lead=None):
            return super().data_distribution(3.0 * params, lead)

    torch.manual_seed(0)
    blocks = linear_model().blocks.values()
    model = Sharpened(list(blocks), [8]).eval()
    x = torch.bernoulli(torch.full((3, 8), 0.5), generator=torch.Generator().manual_seed(4))
    value = torch.randn(3, 4, generator=torch.Generator().manual_seed(5))
    from vaekit.analysis import decode_replaced

    params = model.posterior_pass(x, mean=True, replace={"g": value}).params
    torch.testing.assert_close(decode_replaced(model, x, "g", value), torch.sigmoid(3.0 * params), atol=1e-6, rtol=0)


def test_most_exciting_input_of_a_block_by_keyword_and_a_block_that_ignores_the_input(tmp_path):
    from vaekit._checks import InvalidArgumentError
    from vaekit.analysis import NoInputDependence, most_exciting_input
    from vaekit.models.hierarchical import vdvae

    model = linear_model()
    a, _ = weights(model, "h")
    by_keyword = most_exciting_input(model, block="h", units=[0, 3], norm=2.0, steps=60, lr=0.3)
    # a linear block's most exciting input of norm 2 is 2 * its weight row, normalised
    torch.testing.assert_close(by_keyword.inputs, 2.0 * a[[0, 3]] / a[[0, 3]].norm(dim=1, keepdim=True), atol=1e-3, rtol=0)
    positional = most_exciting_input(model, "h", [0, 3], norm=2.0, steps=60, lr=0.3)
    assert torch.equal(positional.inputs, by_keyword.inputs)
    with pytest.raises(InvalidArgumentError, match="give exactly one of latent and block"):
        most_exciting_input(model, "z", block="h")
    torch.manual_seed(0)
    vd = vdvae([1, 8, 8], enc_blocks="8x1,8d2,4x1,4d4,1x1", dec_blocks="1x1,4m1,4x1,8m4", width=8, latent_channels=2,
               likelihood="bernoulli").eval()
    with pytest.raises(NoInputDependence, match="'bias4' does not depend on the input"):
        most_exciting_input(vd, block="bias4", units=[0], steps=3)
    frozen = copy.deepcopy(vd).requires_grad_(False)  # frozen weights: the start state has no graph at all
    with pytest.raises(NoInputDependence, match="'bias4' does not depend on the input"):
        most_exciting_input(frozen, block="bias4", units=[0], steps=3)
    assert most_exciting_input(frozen, block="z2", units=[0], steps=3).inputs.shape == (1, 1, 8, 8)
    x = torch.bernoulli(torch.full((40, 1, 8, 8), 0.3), generator=torch.Generator().manual_seed(1))
    res = analyze_model(vd, x, out_dir=tmp_path, which="mei", blocks=["bias4", "z2"], n_units=2, mei_steps=3)
    assert "does not depend on the input" in res["mei"]["bias4"]["skipped"]    # the start state: skipped, named
    assert len(res["mei"]["z2"]["activation"]) == 2 and "mei" not in res["skipped"]
