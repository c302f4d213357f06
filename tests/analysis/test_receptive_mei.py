"""White-noise receptive fields and most exciting inputs: exact answers for a linear encoder."""

from __future__ import annotations

import pytest
import torch
from analysis_helpers import linear_vae

from vaekit.analysis.mei import most_exciting_input, unit_activation
from vaekit.analysis.receptive import as_display, save_field_grid, spike_triggered_average


def _cos(a, b):
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


def test_sta_of_a_linear_encoder_is_its_weight_row():
    model, w, _ = linear_vae(d=16, latent=3)
    sta = spike_triggered_average(model, "z", n_samples=20_000, noise_std=0.5, centre=0.3, seed=1)
    assert sta.shape == (3, 16)
    assert (_cos(sta, w) > 0.99).all()
    ratio = sta.norm(dim=1) / w.norm(dim=1)  # divided by the noise variance: the scale is the weight's own
    torch.testing.assert_close(ratio, torch.ones(3), atol=0.05, rtol=0)
    one = spike_triggered_average(model, "z", [2], n_samples=20_000, noise_std=0.5, centre=0.3, seed=1)
    torch.testing.assert_close(one[0], sta[2])


def test_sta_of_each_latent_of_a_two_latent_model(two, tmp_path):
    for name, dims in (("a", 2), ("b", 3)):
        sta = spike_triggered_average(two, name, n_samples=512, centre=torch.full((64,), 0.5), noise_std=0.3)
        assert sta.shape == (dims, 64) and torch.isfinite(sta).all() and (sta.norm(dim=1) > 0).all()
    shown = as_display(sta)
    assert shown.min() >= 0 and shown.max() <= 1 and ((shown - 0.5).abs().flatten(1).amax(1) == 0.5).all()
    assert save_field_grid(sta, tmp_path / "f.png", [64]).read_bytes()[:4] == b"\x89PNG"


def test_mei_of_a_linear_encoder_is_parallel_to_the_weight_row():
    model, w, b = linear_vae(d=16, latent=3)
    res = most_exciting_input(model, "z", norm=2.0, centre=0.0, steps=100, lr=0.3)
    assert res.inputs.shape == (3, 16) and res.units == [0, 1, 2]
    torch.testing.assert_close(res.inputs.norm(dim=1), torch.full((3,), 2.0))
    assert (_cos(res.inputs, w) > 0.999).all()
    torch.testing.assert_close(res.activation, b + 2.0 * w.norm(dim=1), rtol=1e-3, atol=1e-4)  # the maximum on the sphere


def test_mei_beats_random_inputs_of_the_same_norm(vae, clusters):
    x = clusters[0]
    centre = x.mean(0)
    res = most_exciting_input(vae, "z", [0, 2], norm=3.0, centre=centre, steps=60)
    torch.testing.assert_close((res.inputs - centre).norm(dim=1), torch.full((2,), 3.0))
    g = torch.Generator().manual_seed(0)
    rand = torch.randn(200, 64, generator=g)
    rand = centre + 3.0 * rand / rand.norm(dim=1, keepdim=True)
    with torch.no_grad():
        acts = torch.stack([unit_activation(vae, rand[i:i + 1].expand(2, 64), "z", [0, 2]) for i in range(200)])
    assert (res.activation > acts.max(0).values).all()


def test_bad_arguments_are_rejected(vae):
    with pytest.raises(ValueError, match=r"units must be a non-empty list of indices in \[0, 4\) of latent 'z', got \[7\]"):
        spike_triggered_average(vae, "z", [7])
    with pytest.raises(ValueError, match="noise_std must be a finite number > 0, got 0"):
        spike_triggered_average(vae, "z", noise_std=0)
    with pytest.raises(ValueError, match=r"centre must be a number or a tensor of shape \(64,\)"):
        spike_triggered_average(vae, "z", centre=torch.zeros(63))
    with pytest.raises(ValueError, match="latent must be one of"):
        most_exciting_input(vae, "q")
    with pytest.raises(ValueError, match="norm must be a finite number > 0, got -1"):
        most_exciting_input(vae, "z", norm=-1.0)
    with pytest.raises(TypeError, match="steps must be an int >= 1"):
        most_exciting_input(vae, "z", steps=2.5)
