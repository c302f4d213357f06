"""Linear and MLP probes: perfect on separable data, near chance on random labels, well above chance on a trained model."""

from __future__ import annotations

import pytest
import torch

from vaekit.analysis.probes import probe_accuracy, probe_latents


def test_separable_features_are_decoded_perfectly_and_random_labels_are_not():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(300) % 3
    f = torch.randn(300, 5, generator=g) + 5 * torch.nn.functional.one_hot(y, 5).float()
    r = probe_accuracy(f, y, mlp=True)
    assert r.linear_accuracy == 1.0 and r.mlp_accuracy == 1.0
    assert r.n_train == 210 and r.n_test == 90 and r.n_classes == 3
    assert r.chance == pytest.approx(1 / 3)  # stratified split of balanced classes
    noise = probe_accuracy(torch.randn(300, 5, generator=g), torch.randint(0, 3, (300,), generator=g))
    assert noise.linear_accuracy < 0.5 and noise.mlp_accuracy is None


def test_trained_latents_decode_the_cluster_well_above_chance(vae, two, clusters):
    x, y = clusters
    res = probe_latents(vae, x, y, mlp=True)
    assert list(res) == ["z"]
    assert res["z"].linear_accuracy > res["z"].chance + 0.5 and res["z"].mlp_accuracy > res["z"].chance + 0.5
    res = probe_latents(two, x, y)
    assert list(res) == ["a", "b", "all"]
    assert res["all"].linear_accuracy > res["all"].chance + 0.5
    assert res["a"].to_dict()["n_classes"] == 3


def test_bad_labels_are_rejected(vae, clusters):
    x, y = clusters
    with pytest.raises(ValueError, match="labels has 299 entries but x has 300 examples"):
        probe_latents(vae, x, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        probe_accuracy(torch.randn(10, 2), torch.zeros(10, dtype=torch.long))
    with pytest.raises(ValueError, match="integer class labels"):
        probe_accuracy(torch.randn(4, 2), torch.tensor([0.5, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"features must have shape \(n, D\)"):
        probe_accuracy(torch.randn(4), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="test_fraction must be a finite number > 0 and < 1, got 1.0"):
        probe_accuracy(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]), test_fraction=1.0)
