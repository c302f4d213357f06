"""Latent traversal ("latent step"): move one direction of a latent or of any block's output around a test point and decode."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import InvalidArgumentError, check_choice, check_int
from ..nn import eval_mode
from ._common import block_outputs, check_block, check_x, decode_mean, decode_replaced, encode_means, is_latent
from .images import save_image_grid

__all__ = ["latent_traversal", "principal_directions", "save_traversal_grid"]


@torch.no_grad()
def principal_directions(features: Tensor, k: int | None = None) -> tuple[Tensor, Tensor]:
    """Top principal directions of features and the standard deviation along each.

    Parameters
    ----------
    features : Tensor of shape (n, D)
        ``n >= 2`` examples.
    k : int, optional
        How many (default all, at most ``min(n, D)``).

    Returns
    -------
    directions : Tensor of shape (k, D)
        Orthonormal rows, largest variance first.
    std : Tensor of shape (k,)
        Standard deviation of the features along each direction.

    Examples
    --------
    >>> f = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> d, s = principal_directions(f)
    >>> d.abs(), s
    (tensor([[1., 0.],
            [0., 1.]]), tensor([2.4495, 0.8165]))
    """
    f = features.double().flatten(1)
    n, size = f.shape
    if n < 2:
        raise InvalidArgumentError(f"principal directions need at least 2 examples, got {n}")
    k = min(n, size) if k is None else min(check_int("k", k), n, size)
    centred = f - f.mean(0)
    if size <= n:
        _, sv, vt = torch.linalg.svd(centred, full_matrices=False)
        vt, sv = vt[:k], sv[:k]
    else:  # D > n (a block's output has many units): the n x n Gram matrix C C^T = U S^2 U^T gives V^T = S^-1 U^T C
        eigvals, u = torch.linalg.eigh(centred @ centred.T)
        u = u[:, -k:].flip(1)
        sv = eigvals[-k:].flip(0).clamp_min(0).sqrt()
        vt = u.T @ centred
        vt = vt / vt.norm(dim=1, keepdim=True).clamp_min(torch.finfo(vt.dtype).tiny)
    return vt.to(features.dtype), (sv / (n - 1) ** 0.5).to(features.dtype)


@torch.no_grad()
def latent_traversal(model: Any, x: Tensor, latent: str | None = None, dims: Sequence[int] | None = None,
                     offsets: Sequence[float] | Tensor = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0), *,
                     block: str | None = None, directions: Literal["units", "pca"] = "units",
                     reference: Tensor | None = None, differences: bool = False) -> Tensor:
    """Decode one example with one direction of a latent, or of any block's output, shifted.

    **A latent** (``latent`` or ``block`` names one): every named latent sits at its
    posterior mean given ``x``; dimension ``d`` of the latent (flattened index) is set to
    ``mean_d + offset`` for each offset, and the mean of p(x | z) is decoded.

    **A deterministic block** of a hierarchical VAE: its output ``h`` in the posterior pass
    at posterior means is replaced by ``h + offset * s_d * v_d`` and the rest of the graph
    is computed from the replaced output (:func:`vaekit.analysis.decode_replaced`):
    later encoder blocks, the posterior means of the latent layers that read them or that
    lie below the block, and the output. ``v_d`` is unit ``d`` (``directions="units"``) or
    the ``d``-th principal direction of the block's outputs over ``reference``
    (``"pca"``), and ``s_d`` the standard deviation of the outputs along it over
    ``reference`` (1 without ``reference``, for units), so that offsets count standard
    deviations as they do for a standard-normal latent.

    Parameters
    ----------
    model : LatentVariableModel
    x : Tensor of shape (1, *data_shape)
        The test point.
    latent : str, optional
        One of ``model.latent_names`` (or, for a hierarchical VAE, any block name).
    dims : sequence of int
        Flattened unit indices (``[0, D)``) or principal directions (``[0, min(n, D))``).
    offsets : sequence of float or Tensor of shape (m,)
        Shifts added along each direction.
    block : str, optional
        The same as ``latent`` (give one of them).
    directions : {"units", "pca"}
        For a deterministic block: move units or principal directions. A latent moves units.
    reference : Tensor of shape (n, *data_shape), optional
        Examples whose block outputs give the principal directions and standard deviations
        (required with ``"pca"``).
    differences : bool
        Return each decoded image minus the decode of the unshifted point (what changed):
        the offset-0 image of the same direction when ``offsets`` holds 0 (so that column is
        exactly zero), else a separate decode of the unshifted point.

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
    >>> from vaekit.models.hierarchical import ladder_vae
    >>> ladder = ladder_vae([6], hidden=(8, 4), latent=(3, 2))
    >>> d = latent_traversal(ladder, torch.rand(1, 6), block="h1", dims=[0], offsets=[0.0, 1.0], differences=True)
    >>> d.shape, float(d[0, 0].abs().max())
    (torch.Size([1, 2, 6]), 0.0)
    """
    if (latent is None) == (block is None):
        raise InvalidArgumentError(f"give exactly one of latent and block, got latent={latent!r}, block={block!r}")
    name = check_block(model, latent if block is None else block, "latent" if block is None else "block")
    if dims is None:
        raise InvalidArgumentError("dims must be a non-empty list of indices (units or principal directions), got None")
    directions = check_choice("directions", directions, ("units", "pca"))
    x = check_x(model, x)
    if x.shape[0] != 1:
        raise ValueError(f"x must hold exactly one example (shape (1, *data_shape)), got {x.shape[0]} examples")
    offsets = torch.as_tensor(offsets, dtype=x.dtype, device=x.device).flatten()
    if offsets.numel() == 0 or not torch.isfinite(offsets).all():
        raise ValueError(f"offsets must be a non-empty list of finite numbers, got {offsets.tolist()}")
    latent_block = is_latent(model, name)
    if directions == "pca" and latent_block:
        raise InvalidArgumentError(f"directions='pca' moves a deterministic block's output; {name!r} is a latent: use 'units'")
    if directions == "pca" and reference is None:
        raise InvalidArgumentError("directions='pca' needs reference examples (their block outputs give the directions)")
    if reference is not None:
        reference = check_x(model, reference, "reference")
    with eval_mode(model):
        if latent_block:
            means = encode_means(model, x)
            base = means[name]
        else:
            base = block_outputs(model, x, name)
        size = base[0].numel()
        dims = [check_int("dims", d, 0) for d in dims]
        limit = size if directions == "units" else min(size, reference.shape[0])  # type: ignore[union-attr]
        bad = [d for d in dims if d >= limit]
        if bad or not dims:
            raise InvalidArgumentError(f"dims must be a non-empty list of indices in [0, {limit}) of {'latent' if latent_block else 'block'} "
                             f"{name!r}{'' if directions == 'units' else ' (principal directions)'}, got {dims}")
        m = offsets.numel()
        rows = len(dims) * m
        zeros = (offsets == 0).nonzero().flatten().tolist()
        zero = zeros[0] if zeros else None
        if latent_block:
            z = {k: v.expand(rows, *v.shape[1:]).clone() for k, v in means.items()}
            flat = z[name].view(rows, -1)
            for i, d in enumerate(dims):
                flat[i * m:(i + 1) * m, d] += offsets
            out = decode_mean(model, z)
            ref = decode_mean(model, means) if differences and zero is None else None
        else:
            steps = _block_steps(model, name, dims, directions, reference, base).to(base.dtype)  # (len(dims), size)
            shift = (offsets[None, :, None] * steps[:, None, :]).reshape(rows, *base.shape[1:])
            xs = x.expand(rows, *x.shape[1:])
            out = decode_replaced(model, xs, name, base.expand(rows, *base.shape[1:]) + shift)
            ref = decode_replaced(model, x, name, base) if differences and zero is None else None
        out = out.reshape(len(dims), m, *model.data_shape)
        if differences:  # against offset 0's own decode where there is one (exactly zero there), else a separate one
            out = out - (out[:, zero:zero + 1] if zero is not None else ref.reshape(1, 1, *model.data_shape))
    return out.cpu()


def _block_steps(model: Any, block: str, dims: list[int], directions: str, reference: Tensor | None,
                 base: Tensor) -> Tensor:
    """One row per traversed direction: the direction times the standard deviation along it over ``reference``.

    Units are built as ``len(dims)`` rows of the block's size on its device and dtype (never an
    identity matrix of that size: a VDVAE block has 10^5 or more units).
    """
    size = base[0].numel()
    if directions == "units":
        steps = torch.zeros(len(dims), size, dtype=base.dtype, device=base.device)
        steps[torch.arange(len(dims)), dims] = 1.0
        if reference is None:
            return steps
        feats = block_outputs(model, reference, block).flatten(1)
        return steps * feats[:, dims].std(0).to(steps)[:, None]
    feats = block_outputs(model, reference, block).flatten(1)  # type: ignore[arg-type]
    vecs, std = principal_directions(feats, max(dims) + 1)
    return vecs[dims] * std[dims, None]


def save_traversal_grid(traversal: Tensor, path: str | Path, data_shape: Sequence[int], title: str | None = None,
                        *, differences: bool = False) -> Path:
    """PNG with one row per traversed direction and one column per offset.

    Parameters
    ----------
    traversal : Tensor of shape (n_dims, m, *data_shape)
        From :func:`latent_traversal`.
    path : str or Path
    data_shape : sequence of int
    title : str, optional
    differences : bool
        The traversal holds difference images (``differences=True``): each is shown
        rescaled, with no change at mid-grey (as receptive fields are).

    Returns
    -------
    Path of the written file.
    """
    if traversal.dim() < 3:
        raise ValueError(f"traversal must have shape (n_dims, m, *data_shape), got {tuple(traversal.shape)}")
    m = traversal.shape[1]
    images = traversal.reshape(-1, *traversal.shape[2:])
    if differences:
        flat = images.flatten(1)
        scale = flat.abs().amax().clamp_min(1e-12)  # one scale for the grid: sizes of changes stay comparable
        images = (0.5 + 0.5 * flat / scale).reshape(images.shape)
    return save_image_grid(images, path, data_shape, ncols=m, title=title)
