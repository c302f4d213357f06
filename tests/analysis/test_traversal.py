"""Latent traversals: the zero offset is the reconstruction; a dimension the decoder ignores changes nothing."""

from __future__ import annotations

import copy

import pytest
import torch

from vaekit.analysis.traversal import latent_traversal, save_traversal_grid


def test_zero_offset_is_the_posterior_mean_reconstruction(vae, clusters):
    x = clusters[0][:1]
    t = latent_traversal(vae, x, "z", [0, 3], [-2.0, 0.0, 2.0])
    assert t.shape == (2, 3, 64)
    rec = vae.decode({"z": vae.encode(x)["z"].mean}).mean.detach()
    torch.testing.assert_close(t[:, 1], rec.expand(2, 64))
    assert (t[:, 0] - t[:, 2]).abs().max() > 1e-3  # moving a latent changes the decoded image


def test_two_latent_traversal_moves_only_the_chosen_latent(two, clusters):
    model = copy.deepcopy(two)
    first = [m for m in model.dec.modules() if isinstance(m, torch.nn.Linear)][0]
    with torch.no_grad():  # the decoder ignores the last dimension of 'b' (its input column 2 + 2 = 4)
        first.weight[:, 4] = 0
    x = clusters[0][5:6]
    t_b = latent_traversal(model, x, "b", [2, 0])
    assert t_b.shape == (2, 7, 64)
    torch.testing.assert_close(t_b[0], t_b[0, 3:4].expand(7, 64))  # ignored dimension: all columns equal
    assert (t_b[1, 0] - t_b[1, -1]).abs().max() > 1e-3
    t_a = latent_traversal(model, x, "a", [1])
    torch.testing.assert_close(t_a[0, 3], t_b[0, 3])  # both centre columns are the same reconstruction


def test_grid_and_bad_arguments(vae, clusters, tmp_path):
    x = clusters[0][:1]
    path = save_traversal_grid(latent_traversal(vae, x, "z", [0, 1]), tmp_path / "t.png", [64])
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"dims must be a non-empty list of indices in \[0, 4\) of latent 'z', got \[4\]"):
        latent_traversal(vae, x, "z", [4])
    with pytest.raises(ValueError, match="exactly one example"):
        latent_traversal(vae, clusters[0][:2], "z", [0])
    with pytest.raises(ValueError, match=r"latent must be one of the model's latents \['z'\], got 'w'"):
        latent_traversal(vae, x, "w", [0])
    with pytest.raises(ValueError, match="offsets must be a non-empty list of finite numbers"):
        latent_traversal(vae, x, "z", [0], [float("nan")])
