"""Image grids for samples and reconstructions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["as_images", "image_grid", "save_image_grid"]


def as_images(x: Tensor, data_shape: Sequence[int]) -> np.ndarray | None:
    """Examples of shape (n, *data_shape) as an (n, H, W) or (n, H, W, 3) array in [0, 1].

    Flat vectors whose length is a square (784 -> 28x28, 64 -> 8x8) are shown as square
    grey images; (1, H, W) and (3, H, W) as grey / RGB. Returns None for data that are
    not images (tabular vectors).

    >>> as_images(torch.zeros(2, 784), [784]).shape
    (2, 28, 28)
    >>> as_images(torch.zeros(2, 5), [5]) is None
    True
    """
    shape = tuple(int(d) for d in data_shape)
    x = x.detach().float().cpu()
    if len(shape) == 1:
        side = math.isqrt(shape[0])
        if side * side != shape[0] or side < 4:
            return None
        imgs = x.reshape(-1, side, side)
    elif len(shape) == 3 and shape[0] in (1, 3):
        imgs = x.reshape(-1, *shape)
        imgs = imgs[:, 0] if shape[0] == 1 else imgs.permute(0, 2, 3, 1)
    elif len(shape) == 2:
        imgs = x.reshape(-1, *shape)
    else:
        return None
    return imgs.clamp(0, 1).numpy()


def image_grid(images: np.ndarray, ncols: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile (n, H, W[, 3]) images into one (rows*(H+pad)+pad, cols*(W+pad)+pad[, 3]) array.

    >>> image_grid(np.ones((4, 2, 2)), ncols=2).shape
    (7, 7)
    """
    n = images.shape[0]
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    h, w = images.shape[1:3]
    grid = np.ones((nrows * (h + pad) + pad, ncols * (w + pad) + pad, *images.shape[3:]), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, ncols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[i]
    return grid


def save_image_grid(x: Tensor, path: str | Path, data_shape: Sequence[int], ncols: int | None = None,
                    title: str | None = None) -> Path:
    """Save examples as a PNG grid (images) or a heat map of the vectors (tabular data).

    Parameters
    ----------
    x : Tensor of shape (n, *data_shape)
    path : str or Path
        Output ``.png`` file (parent folders are created).
    data_shape : sequence of int
    ncols : int, optional
    title : str, optional

    Returns
    -------
    Path of the written file.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    imgs = as_images(x, data_shape)
    if imgs is not None:
        grid = image_grid(imgs, ncols)
        fig, ax = plt.subplots(figsize=(max(2.0, grid.shape[1] / 30), max(2.0, grid.shape[0] / 30)), dpi=100)
        ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    else:
        flat = x.detach().float().cpu().reshape(x.shape[0], -1).numpy()
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        im = ax.imshow(flat, aspect="auto", cmap="viridis")
        fig.colorbar(im, ax=ax)
        ax.set_xlabel("feature")
        ax.set_ylabel("example")
    ax.set_xticks([]) if imgs is not None else None
    ax.set_yticks([]) if imgs is not None else None
    if title:
        ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
