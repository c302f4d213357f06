"""Reconstruction quality: per-example negative ELBO, mean squared error, SSIM, and an image grid."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_float, check_int
from ..nn import eval_mode
from ._common import check_x, decode_mean, encode_means, is_image
from .images import save_image_grid

__all__ = ["gaussian_window", "ssim", "as_bchw", "ReconstructionStats", "reconstruction_stats", "save_reconstruction_grid"]


def gaussian_window(size: int, sigma: float) -> Tensor:
    """Normalised 2-D Gaussian window, the outer product of a 1-D one.

    Parameters
    ----------
    size : int
        Odd side length.
    sigma : float
        Standard deviation in pixels.

    Returns
    -------
    Tensor of shape (size, size), float64, summing to 1.

    >>> w = gaussian_window(3, 1.0)
    >>> w.shape, round(float(w.sum()), 6), bool(w[1, 1] == w.max())
    (torch.Size([3, 3]), 1.0, True)
    """
    size = check_int("window_size", size)
    if size % 2 == 0:
        raise ValueError(f"window_size must be odd, got {size}")
    sigma = check_float("sigma", sigma, 0, low_open=True)
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-r.pow(2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: Tensor, y: Tensor, *, data_range: float = 1.0, window_size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> Tensor:
    r"""Structural similarity (Wang et al., 2004) per image, with a Gaussian window.

    Local means, variances and the covariance come from a Gaussian-weighted window
    (population moments); the SSIM map

    .. math:: \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}{(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},
       \quad C_i = (k_i L)^2,

    is averaged over every window that lies inside the image and over channels. This is
    scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=L)`` (its 11-pixel window at sigma 1.5).

    Parameters
    ----------
    x, y : Tensor of shape (batch, C, H, W) or (batch, H, W)
    data_range : float
        ``L``, the range of the pixel values (1 for images in [0, 1]).
    window_size : int
        Odd side of the window, at most ``min(H, W)``.
    sigma : float
        Width of the Gaussian window in pixels.
    k1, k2 : float
        Stabilising constants.

    Returns
    -------
    Tensor of shape (batch,) in [-1, 1], computed in float64 and returned in ``x``'s dtype.

    Examples
    --------
    >>> x = torch.rand(2, 1, 12, 12)
    >>> ssim(x, x)
    tensor([1., 1.])
    >>> bool((ssim(x, 1 - x) < 0.5).all())
    True
    """
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() == 3:
        x, y = x.unsqueeze(1), y.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"x must have shape (batch, C, H, W) or (batch, H, W), got {tuple(x.shape)}")
    data_range = check_float("data_range", data_range, 0, low_open=True)
    window = gaussian_window(window_size, sigma)
    if window_size > min(x.shape[-2:]):
        raise ValueError(f"window_size must be at most the image side min(H, W) = {min(x.shape[-2:])}, got {window_size}")
    c = x.shape[1]
    weight = window.to(x.device).expand(c, 1, window_size, window_size)
    xd, yd = x.double(), y.double()

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(t, weight, groups=c)

    mx, my = filt(xd), filt(yd)
    vx, vy, cxy = filt(xd * xd) - mx * mx, filt(yd * yd) - my * my, filt(xd * yd) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    smap = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return smap.mean(dim=(1, 2, 3)).to(x.dtype)


def as_bchw(x: Tensor, data_shape: Sequence[int]) -> Tensor | None:
    """Examples as (n, C, H, W) images, or None for data that are not images.

    Square flat vectors (784 -> 1x28x28) become one-channel images.

    >>> as_bchw(torch.zeros(2, 64), [64]).shape
    torch.Size([2, 1, 8, 8])
    """
    shape = tuple(int(d) for d in data_shape)
    if not is_image(shape):
        return None
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        return x.reshape(-1, 1, side, side)
    if len(shape) == 2:
        return x.reshape(-1, 1, *shape)
    return x.reshape(-1, *shape)


@dataclass
class ReconstructionStats:
    """Per-example reconstruction quality.

    Attributes
    ----------
    nelbo : Tensor of shape (n,)
        Negative ELBO in nats (one posterior sample per example).
    mse : Tensor of shape (n,)
        Mean squared error per entry between ``x`` and the reconstruction (mean of
        p(x | z) at the posterior means).
    ssim : Tensor of shape (n,) or None
        SSIM of each reconstruction (images only).
    reconstructions : Tensor of shape (n, *data_shape)
    ssim_window : int or None
        Window side used for SSIM (11, or the largest odd side that fits smaller images).
    """

    nelbo: Tensor
    mse: Tensor
    ssim: Tensor | None
    reconstructions: Tensor
    ssim_window: int | None = None

    def write_csv(self, path: str | Path, labels: Tensor | None = None) -> Path:
        """One row per example: ``index, [label,] nelbo, mse[, ssim]``.

        >>> import tempfile
        >>> s = ReconstructionStats(torch.tensor([3.0]), torch.tensor([0.25]), None, torch.zeros(1, 2))
        >>> print(s.write_csv(Path(tempfile.mkdtemp()) / "r.csv").read_text().strip())
        index,nelbo,mse
        0,3,0.25
        """
        cols = {"nelbo": self.nelbo, "mse": self.mse, **({"ssim": self.ssim} if self.ssim is not None else {})}
        if labels is not None:
            cols = {"label": labels, **cols}
        lines = [",".join(["index", *cols])]
        for i in range(self.nelbo.shape[0]):
            lines.append(",".join([str(i), *(f"{v[i].item():.7g}" for v in cols.values())]))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return path

    def summary(self) -> dict[str, Any]:
        """Means and standard deviations as plain floats (what ``analysis.json`` stores)."""
        out: dict[str, Any] = {"n": int(self.nelbo.shape[0])}
        for name in ("nelbo", "mse", "ssim"):
            v = getattr(self, name)
            if v is not None:
                out[name] = float(v.mean())
                out[f"{name}_std"] = float(v.std()) if v.numel() > 1 else 0.0
        if self.ssim_window is not None:
            out["ssim_window"] = self.ssim_window
        return out


@torch.no_grad()
def reconstruction_stats(model: Any, x: Tensor, *, batch_size: int = 256, data_range: float = 1.0) -> ReconstructionStats:
    """Negative ELBO, MSE and SSIM of every example of ``x``.

    Parameters
    ----------
    model : LatentVariableModel
    x : Tensor of shape (n, *data_shape)
    batch_size : int
    data_range : float
        Pixel range for SSIM.

    Returns
    -------
    ReconstructionStats

    Examples
    --------
    >>> from vaekit.models import mlp_vae
    >>> stats = reconstruction_stats(mlp_vae([64], 2, [8]), torch.bernoulli(torch.full((3, 64), 0.5)))
    >>> stats.nelbo.shape, stats.ssim.shape, stats.ssim_window
    (torch.Size([3]), torch.Size([3]), 7)
    """
    x = check_x(model, x)
    batch_size = check_int("batch_size", batch_size)
    check_float("data_range", data_range, 0, low_open=True)
    with eval_mode(model):
        nelbo = torch.cat([-model.elbo_terms(chunk).elbo for chunk in x.split(batch_size)])
        rec = decode_mean(model, encode_means(model, x, batch_size=batch_size), batch_size=batch_size)
    rec = rec.reshape(x.shape).to(x.dtype)
    mse = (rec - x).pow(2).flatten(1).mean(1)
    imgs, recs = as_bchw(x, model.data_shape), as_bchw(rec, model.data_shape)
    s, window = None, None
    if imgs is not None:
        side = min(11, *imgs.shape[-2:])
        window = side if side % 2 else side - 1
        s = ssim(imgs, recs, data_range=data_range, window_size=window)
    return ReconstructionStats(nelbo.cpu(), mse.cpu(), None if s is None else s.cpu(), rec.cpu(), window)


def save_reconstruction_grid(x: Tensor, reconstructions: Tensor, path: str | Path, data_shape: Sequence[int],
                             ncols: int = 8) -> Path:
    """PNG with rows of originals followed by rows of their reconstructions.

    Parameters
    ----------
    x, reconstructions : Tensor of shape (n, *data_shape)
    path : str or Path
        Output ``.png``.
    data_shape : sequence of int
    ncols : int
        Examples per row.

    Returns
    -------
    Path of the written file.
    """
    ncols = check_int("ncols", ncols)
    if x.shape != reconstructions.shape:
        raise ValueError(f"x and reconstructions must have the same shape, got {tuple(x.shape)} and {tuple(reconstructions.shape)}")
    cols = min(ncols, x.shape[0])
    rows = []
    for i in range(0, x.shape[0], cols):
        rows += [x[i:i + cols], reconstructions[i:i + cols]]
    if x.shape[0] % cols:  # pad the last pair of rows so originals and reconstructions stay aligned
        pad = torch.ones(cols - x.shape[0] % cols, *x.shape[1:], dtype=x.dtype, device=x.device)
        rows[-2:] = [torch.cat([rows[-2], pad]), torch.cat([rows[-1], pad])]
    return save_image_grid(torch.cat(rows), path, data_shape, ncols=cols,
                           title="data (odd rows) / reconstruction (even rows)")
