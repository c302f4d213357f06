"""Generation: samples from the prior at several temperatures, and their image grids."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import check_float, check_int
from ..nn import eval_mode
from ._common import distribution_mean
from .images import save_image_grid

__all__ = ["prior_centres", "sample_at_temperature", "samples_at_temperatures", "save_generation_grids"]


@torch.no_grad()
def prior_centres(model: Any, n_mc: int = 2048) -> dict[str, Tensor]:
    """Centre of the prior of every named latent, shape (*latent_event) each.

    The means of the model's :meth:`~vaekit.models.LatentVariableModel.prior_distributions`
    when it declares them (e.g. :class:`~vaekit.models.VAE`) and they have a mean, else the
    average of ``n_mc`` draws of ``sample_prior``.

    >>> from vaekit.models import mlp_vae
    >>> prior_centres(mlp_vae([6], 3, [4]))["z"]
    tensor([0., 0., 0.])
    """
    priors = model.prior_distributions()
    if priors is not None:
        try:
            return {name: priors[name].mean.detach() for name in model.latent_names}
        except NotImplementedError:  # a distribution without a closed-form mean
            pass
    return {name: z.mean(0) for name, z in model.sample_prior(check_int("n_mc", n_mc)).items()}


@torch.no_grad()
def sample_at_temperature(model: Any, n: int, temperature: float, *, mean: bool = True,
                          centres: dict[str, Tensor] | None = None) -> Tensor:
    r"""``n`` examples generated at one temperature.

    A model whose ``sample`` takes a ``temperature`` argument (hierarchical VAEs) does it
    itself. Otherwise every prior draw is pulled towards the prior's centre,
    :math:`z_t = c + t\,(z - c)`, and decoded: ``t = 0`` decodes the centre, ``t = 1``
    is ordinary sampling (for Gaussian priors this scales the standard deviation by ``t``).

    Parameters
    ----------
    model : LatentVariableModel
    n : int
    temperature : float
        ``>= 0``.
    mean : bool
        Return the mean of p(x | z) rather than a draw from it.
    centres : dict of str to Tensor, optional
        Prior centres (default :func:`prior_centres`).

    Returns
    -------
    Tensor of shape (n, *data_shape)

    Examples
    --------
    >>> from vaekit.models import mlp_vae
    >>> x = sample_at_temperature(mlp_vae([6], 3, [4]), 4, 0.0)
    >>> x.shape, bool((x == x[0]).all())
    (torch.Size([4, 6]), True)
    """
    n = check_int("n", n)
    t = check_float("temperature", temperature, 0)
    params = inspect.signature(model.sample).parameters
    if "temperature" in params:
        kw: dict[str, Any] = {"temperature": t}
        if "mean" in params:
            kw["mean"] = mean
        return model.sample(n, **kw)
    centres = prior_centres(model) if centres is None else centres
    z = {name: centres[name] + t * (v - centres[name]) for name, v in model.sample_prior(n).items()}
    px = model.decode(z)
    return distribution_mean(px, 1) if mean else px.sample()


def samples_at_temperatures(model: Any, n: int, temperatures: Sequence[float] = (0.0, 0.5, 0.75, 1.0), *,
                            mean: bool = True, seed: int | None = 0) -> dict[float, Tensor]:
    """``n`` samples at each temperature (see :func:`sample_at_temperature`).

    Returns
    -------
    dict of float to Tensor of shape (n, *data_shape), on the CPU

    >>> from vaekit.models import mlp_vae
    >>> sorted(samples_at_temperatures(mlp_vae([6], 3, [4]), 2, [1.0, 0.5]))
    [0.5, 1.0]
    """
    n = check_int("n", n)
    temps = [check_float("temperatures", t, 0) for t in temperatures]
    if not temps:
        raise ValueError("temperatures must name at least one temperature >= 0, got an empty list")
    if seed is not None:
        torch.manual_seed(check_int("seed", seed, 0))
    with eval_mode(model):
        centres = None if "temperature" in inspect.signature(model.sample).parameters else prior_centres(model)
        out = {t: sample_at_temperature(model, n, t, mean=mean, centres=centres).cpu() for t in temps}
    return out


def save_generation_grids(samples: dict[float, Tensor], out_dir: str | Path, data_shape: Sequence[int],
                          prefix: str = "samples") -> dict[float, Path]:
    """One PNG grid per temperature: ``<out_dir>/<prefix>_t<temperature>.png``.

    Returns
    -------
    dict of float to Path
    """
    out_dir = Path(out_dir)
    return {t: save_image_grid(x, out_dir / f"{prefix}_t{t:g}.png", data_shape, title=f"temperature {t:g}")
            for t, x in samples.items()}
