"""Latent traversal ("latent step"): move one dimension of one named latent around a test point and decode."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import check_int
from ..nn import eval_mode
from ._common import check_latent, check_x, decode_mean, encode_means
from .images import save_image_grid

__all__ = ["latent_traversal", "save_traversal_grid"]


@torch.no_grad()
def latent_traversal(model: Any, x: Tensor, latent: str, dims: Sequence[int],
                     offsets: Sequence[float] | Tensor = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)) -> Tensor:
    """Decode the posterior means of one example with one latent dimension shifted.

    Every named latent sits at its posterior mean given ``x``; dimension ``d`` of
    ``latent`` (flattened index) is set to ``mean_d + offset`` for each offset, and the
    mean of p(x | z) is decoded.

    Parameters
    ----------
    model : LatentVariableModel
    x : Tensor of shape (1, *data_shape)
        The test point.
    latent : str
        One of ``model.latent_names``.
    dims : sequence of int
        Flattened indices into the latent, each in ``[0, D)``.
    offsets : sequence of float or Tensor of shape (m,)
        Shifts added to the posterior mean (prior standard deviations, for a standard-normal prior).

    Returns
    -------
    Tensor of shape (len(dims), m, *data_shape)

    Examples
    --------
    >>> from vaekit.models import mlp_vae
    >>> model = mlp_vae([6], 3, [4])
    >>> t = latent_traversal(model, torch.rand(1, 6), "z", [0, 2], [-1.0, 0.0, 1.0])
    >>> t.shape
    torch.Size([2, 3, 6])
    """
    x = check_x(model, x)
    if x.shape[0] != 1:
        raise ValueError(f"x must hold exactly one example (shape (1, *data_shape)), got {x.shape[0]} examples")
    check_latent(model, latent)
    offsets = torch.as_tensor(offsets, dtype=x.dtype, device=x.device).flatten()
    if offsets.numel() == 0 or not torch.isfinite(offsets).all():
        raise ValueError(f"offsets must be a non-empty list of finite numbers, got {offsets.tolist()}")
    with eval_mode(model):
        means = encode_means(model, x)
        size = means[latent][0].numel()
        dims = [check_int("dims", d, 0) for d in dims]
        bad = [d for d in dims if d >= size]
        if bad or not dims:
            raise ValueError(f"dims must be a non-empty list of indices in [0, {size}) of latent {latent!r}, got {dims}")
        m = offsets.numel()
        rows = len(dims) * m
        z = {name: v.expand(rows, *v.shape[1:]).clone() for name, v in means.items()}
        flat = z[latent].view(rows, -1)
        for i, d in enumerate(dims):
            flat[i * m:(i + 1) * m, d] += offsets
        out = decode_mean(model, z)
    return out.reshape(len(dims), m, *model.data_shape).cpu()


def save_traversal_grid(traversal: Tensor, path: str | Path, data_shape: Sequence[int], title: str | None = None) -> Path:
    """PNG with one row per traversed dimension and one column per offset.

    Parameters
    ----------
    traversal : Tensor of shape (n_dims, m, *data_shape)
        From :func:`latent_traversal`.
    path : str or Path
    data_shape : sequence of int
    title : str, optional

    Returns
    -------
    Path of the written file.
    """
    if traversal.dim() < 3:
        raise ValueError(f"traversal must have shape (n_dims, m, *data_shape), got {tuple(traversal.shape)}")
    m = traversal.shape[1]
    return save_image_grid(traversal.reshape(-1, *traversal.shape[2:]), path, data_shape, ncols=m, title=title)
