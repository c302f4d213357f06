"""SSIM against a direct numpy computation, and reconstruction statistics of a trained model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from analysis_helpers import cluster_data

from vaekit.analysis.reconstruction import gaussian_window, reconstruction_stats, save_reconstruction_grid, ssim
from vaekit.models import mlp_vae


def ssim_numpy(x: np.ndarray, y: np.ndarray, win: int = 11, sigma: float = 1.5, L: float = 1.0) -> float:
    """Wang et al.'s SSIM with a Gaussian window, one window at a time (scikit-image's formula, population moments)."""
    r = np.arange(win) - (win - 1) / 2
    g = np.exp(-r**2 / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    vals = []
    for i in range(x.shape[0] - win + 1):
        for j in range(x.shape[1] - win + 1):
            a, b = x[i:i + win, j:j + win], y[i:i + win, j:j + win]
            ma, mb = (w * a).sum(), (w * b).sum()
            va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
            cab = (w * (a - ma) * (b - mb)).sum()
            vals.append(((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_of_identical_images_is_one_and_of_different_ones_less():
    x = torch.rand(3, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ssim(x, x), torch.ones(3))
    assert (ssim(x, (x + 0.3 * torch.rand(x.shape)).clamp(0, 1)) < 0.99).all()


def test_ssim_matches_the_windowed_formula_computed_in_numpy():
    g = np.random.default_rng(0)
    x = g.random((2, 13, 14))
    y = np.clip(x + 0.2 * g.standard_normal(x.shape), 0, 1)
    got = ssim(torch.from_numpy(x), torch.from_numpy(y))
    want = [ssim_numpy(x[i], y[i]) for i in range(2)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
    # two channels average the per-channel values; another window and data range
    xy = torch.from_numpy(np.stack([x, y], 1))  # (2, 2, 13, 14): channel 0 = x, channel 1 = y
    yx = torch.from_numpy(np.stack([y, 2 * x], 1))
    got = ssim(xy, yx, window_size=7, sigma=1.0, data_range=2.0)
    want = [(ssim_numpy(x[i], y[i], 7, 1.0, 2.0) + ssim_numpy(y[i], 2 * x[i], 7, 1.0, 2.0)) / 2 for i in range(2)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)


def test_gaussian_window_and_ssim_reject_bad_arguments():
    torch.testing.assert_close(gaussian_window(11, 1.5).sum(), torch.tensor(1.0, dtype=torch.float64))
    x = torch.rand(1, 8, 8)
    with pytest.raises(ValueError, match="window_size must be odd, got 4"):
        ssim(x, x, window_size=4)
    with pytest.raises(ValueError, match=r"at most the image side min\(H, W\) = 8, got 11"):
        ssim(x, x)
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, x[:, :7])
    with pytest.raises(ValueError, match=r"\(batch, C, H, W\) or \(batch, H, W\)"):
        ssim(x[0], x[0])
    with pytest.raises(ValueError, match="data_range"):
        ssim(x, x, window_size=5, data_range=0.0)
    with pytest.raises(TypeError, match="tensors"):
        ssim(x.numpy(), x)


def test_reconstruction_stats_of_a_trained_model_beat_an_untrained_one(vae, clusters):
    x = clusters[0][:60]
    trained = reconstruction_stats(vae, x, batch_size=25)
    torch.manual_seed(0)
    fresh = reconstruction_stats(mlp_vae([64], 4, [32]), x)
    assert trained.nelbo.shape == trained.mse.shape == trained.ssim.shape == (60,)
    assert trained.reconstructions.shape == (60, 64) and trained.ssim_window == 7  # 8x8 images: largest odd window
    assert trained.mse.mean() < 0.12 < fresh.mse.mean()  # 10% flipped bits around 3 prototypes
    assert trained.ssim.mean() > fresh.ssim.mean() + 0.3
    assert trained.nelbo.mean() < fresh.nelbo.mean() - 10
    # the per-example MSE is that of the decoded posterior means
    torch.testing.assert_close(trained.mse, (trained.reconstructions - x).pow(2).mean(1))
    s = trained.summary()
    assert s["n"] == 60 and abs(s["ssim"] - float(trained.ssim.mean())) < 1e-6


def test_reconstruction_stats_of_tabular_data_have_no_ssim():
    x, _ = cluster_data(20, d=5)
    stats = reconstruction_stats(mlp_vae([5], 2, [8]), x)
    assert stats.ssim is None and stats.ssim_window is None and "ssim" not in stats.summary()
    with pytest.raises(ValueError, match=r"x has shape \(20, 6\) but this model expects \(batch, 5\)"):
        reconstruction_stats(mlp_vae([5], 2, [8]), torch.rand(20, 6))


def test_reconstruction_grid_pairs_rows(tmp_path, vae, clusters):
    import matplotlib.image

    x = clusters[0][:10]
    stats = reconstruction_stats(vae, x)
    path = save_reconstruction_grid(x, stats.reconstructions, tmp_path / "rec.png", [64], ncols=4)
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 30
    with pytest.raises(ValueError, match="same shape"):
        save_reconstruction_grid(x, stats.reconstructions[:5], tmp_path / "bad.png", [64])
