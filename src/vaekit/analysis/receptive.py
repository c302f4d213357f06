"""White-noise analysis: receptive fields of latent units (or of any block's units) by spike-triggered averaging."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import InvalidArgumentError, check_float, check_int
from ..nn import eval_mode
from ._common import block_outputs, check_block, is_latent, model_device
from .images import save_image_grid

__all__ = ["check_units", "check_centre", "spike_triggered_average", "as_display", "save_field_grid"]


def check_units(model: Any, latent: str, units: Sequence[int] | None, name: str = "latent") -> list[int]:
    """Flattened unit indices of ``latent`` (a latent, or any block of a hierarchical VAE; all units for None), each in ``[0, D)``."""
    check_block(model, latent, name)
    with torch.no_grad(), eval_mode(model):
        x = torch.zeros(1, *model.data_shape, device=model_device(model))
        size = block_outputs(model, x, latent)[0].numel()
    if units is None:
        return list(range(size))
    units = [check_int("units", u, 0) for u in units]
    if not units or any(u >= size for u in units):
        what = "latent" if is_latent(model, latent) else "block"
        raise InvalidArgumentError(f"units must be a non-empty list of indices in [0, {size}) of {what} {latent!r}, got {units}")
    return units


def check_centre(model: Any, centre: float | Tensor) -> Tensor:
    """The input around which noise or an input is placed, as a tensor of shape data_shape."""
    shape = tuple(model.data_shape)
    if isinstance(centre, Tensor):
        if centre.shape != shape and centre.numel() != 1:
            raise InvalidArgumentError(f"centre must be a number or a tensor of shape {shape} (data_shape), got shape {tuple(centre.shape)}")
        if not torch.isfinite(centre).all():
            raise InvalidArgumentError("centre must be finite")
        return centre.float().expand(shape).to(model_device(model))
    return torch.full(shape, check_float("centre", centre), device=model_device(model))


@torch.no_grad()
def spike_triggered_average(model: Any, latent: str | None = None, units: Sequence[int] | None = None, *,
                            n_samples: int = 4096, noise_std: float = 1.0, centre: float | Tensor = 0.0,
                            batch_size: int = 1024, seed: int = 0, block: str | None = None) -> Tensor:
    r"""Receptive fields of latent units (or of any block's units) by spike-triggered averaging over white noise.

    Inputs :math:`x_i = c + \epsilon_i`, :math:`\epsilon_i \sim \mathcal N(0, s^2 I)`, go
    through the encoder; the response of unit ``d`` is its posterior mean
    :math:`r_{id} = \mathbb E_q[z_d | x_i]` (for a deterministic block of a hierarchical VAE,
    unit ``d`` of the block's output in the posterior pass at posterior means). The field is the response-weighted average of
    the noise (responses centred on their mean, divided by the noise variance):

    .. math:: \mathrm{STA}_d = \frac{1}{N s^2} \sum_i (r_{id} - \bar r_d)\, \epsilon_i .

    For a linear encoder :math:`r = W x + b` this converges to the weight row
    :math:`W_d` itself (scale included); for a nonlinear one it is the average gradient of
    the response over the noise (Stein's lemma).

    Parameters
    ----------
    model : LatentVariableModel
    latent : str
        One of ``model.latent_names`` (or, for a hierarchical VAE, any block name).
    units : sequence of int, optional
        Flattened unit indices (default: every unit of the latent).
    n_samples : int
        Noise inputs ``N``.
    noise_std : float
        ``s > 0``.
    centre : float or Tensor of shape data_shape
        ``c``; e.g. the data mean, so the noise stays near the data.
    batch_size : int
    seed : int
        Seed of the noise.
    block : str, optional
        The same as ``latent`` (give one of them).

    Returns
    -------
    Tensor of shape (len(units), *data_shape)

    Examples
    --------
    >>> from vaekit.models import mlp_vae
    >>> spike_triggered_average(mlp_vae([6], 3, [4]), "z", [1], n_samples=64).shape
    torch.Size([1, 6])
    >>> from vaekit.models.hierarchical import ladder_vae
    >>> spike_triggered_average(ladder_vae([6], hidden=(8, 4), latent=(3, 2)), block="h1", units=[0, 7], n_samples=64).shape
    torch.Size([2, 6])
    """
    if (latent is None) == (block is None):
        raise InvalidArgumentError(f"give exactly one of latent and block, got latent={latent!r}, block={block!r}")
    latent = latent if block is None else block
    units = check_units(model, latent, units, "latent" if block is None else "block")
    n_samples, batch_size = check_int("n_samples", n_samples, 2), check_int("batch_size", batch_size)
    noise_std = check_float("noise_std", noise_std, 0, low_open=True)
    c = check_centre(model, centre)
    g = torch.Generator().manual_seed(check_int("seed", seed, 0))
    shape = tuple(model.data_shape)
    noises, responses = [], []
    with eval_mode(model):
        for start in range(0, n_samples, batch_size):
            eps = torch.randn(min(batch_size, n_samples - start), *shape, generator=g).to(c.device) * noise_std
            r = block_outputs(model, c + eps, latent, batch_size=batch_size)
            noises.append(eps.flatten(1).double())
            responses.append(r.flatten(1)[:, units].double())
    eps, r = torch.cat(noises), torch.cat(responses)
    sta = (r - r.mean(0)).T @ eps / (n_samples * noise_std**2)
    return sta.float().reshape(len(units), *shape).cpu()


def as_display(fields: Tensor) -> Tensor:
    """Fields rescaled per unit to [0, 1] with zero at 0.5 (sign kept), for image grids.

    >>> as_display(torch.tensor([[-2.0, 0.0, 1.0]]))
    tensor([[0.0000, 0.5000, 0.7500]])
    """
    flat = fields.flatten(1)
    scale = flat.abs().amax(1).clamp_min(1e-12)
    return (0.5 + 0.5 * flat / scale[:, None]).reshape(fields.shape)


def save_field_grid(fields: Tensor, path: str | Path, data_shape: Sequence[int], title: str | None = None) -> Path:
    """PNG of receptive fields or most exciting inputs, each rescaled by :func:`as_display`."""
    return save_image_grid(as_display(fields), path, data_shape, title=title)
