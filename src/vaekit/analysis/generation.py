"""Generation: samples from the prior at several temperatures, and their image grids.

A temperature is one number for every latent, or, for a model whose ``sample`` takes a
``temperature`` argument (a hierarchical VAE), one per latent layer: a list in the model's
order (``model.latent_names``, top first) or a schedule (``"linear:START:END"``, or a callable
of the layer index). :func:`check_temperature` turns any of these into what the model takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor

from .._checks import InvalidArgumentError, check_float, check_int
from ..models.hierarchical import layer_temperatures, linear_temperatures
from ..nn import eval_mode
from ._common import distribution_mean
from .images import save_image_grid

__all__ = ["TemperatureSetting", "check_temperature", "temperature_label", "linear_temperatures", "prior_centres",
           "sample_at_temperature", "samples_at_temperatures", "save_generation_grids"]

#: One temperature setting: a number (every latent), a list of numbers (one per latent layer, the
#: model's order), a schedule string ``"linear:START:END"`` or a callable ``f(layer index) -> float``.
TemperatureSetting = Union[float, Sequence[float], str, Callable[[int], float]]


def _per_layer(model: Any) -> bool:
    """Whether ``model.sample`` takes a ``temperature`` (then a list gives one per latent layer)."""
    sample = getattr(model, "sample", None)
    return sample is not None and "temperature" in inspect.signature(sample).parameters


def check_temperature(model: Any, temperature: TemperatureSetting, name: str = "temperature") -> float | list[float]:
    """One temperature setting as the model's ``sample`` takes it: a float, or one float per latent layer.

    Parameters
    ----------
    model : LatentVariableModel
    temperature : float, sequence of float, str or callable
        A number ``>= 0`` for every latent; a list with one number per latent layer in the
        model's order (``model.latent_names``, top first; a list of one is that number); a
        schedule ``"linear:START:END"`` (from the top layer to the bottom one, see
        :func:`linear_temperatures`) or a callable ``f(layer index) -> float``. Lists and
        schedules need a model whose ``sample`` takes a ``temperature`` (a hierarchical VAE);
        any other model takes one number.
    name : str
        The argument's name in error messages.

    Returns
    -------
    float or list of float

    Raises
    ------
    vaekit.InvalidArgumentError
        Naming ``name``, the value and what is accepted: a negative or non-finite number, a
        list whose length is not the number of latent layers (the message names the layers),
        an unknown schedule, or a list or schedule for a model that takes one number.

    Examples
    --------
    >>> from vaekit.models.hierarchical import ladder_vae
    >>> model = ladder_vae([6], hidden=(4, 3), latent=(3, 2))
    >>> check_temperature(model, 0.5), check_temperature(model, [1.0, 0.8]), check_temperature(model, "linear:1:0.5")
    (0.5, [1.0, 0.8], [1.0, 0.5])
    >>> check_temperature(model, [1.0, 0.8, 0.6])
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: temperature lists one value per latent layer of HierarchicalVAE (2: z2, z1, top first), got 3 values [1.0, 0.8, 0.6]
    """
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        return check_float(name, temperature, 0)
    names, kind = list(getattr(model, "latent_names", ())), type(model).__name__
    if not isinstance(temperature, str) and not callable(temperature) and _length(temperature) == 1:
        return layer_temperatures(temperature, names[:1] or ["z"], name=name, owner=kind)[0]  # a list of one number
    if not _per_layer(model):
        raise InvalidArgumentError(f"{name}: {kind} takes one temperature for all its latents, got {temperature!r}; per-layer "
                                   "temperatures (a list or a schedule) need a model whose sample() takes them, "
                                   "such as a hierarchical VAE")
    return layer_temperatures(temperature, names, name=name, owner=kind)


def _length(temperature: Any) -> int | None:
    try:
        return len(temperature)
    except TypeError:
        return None


def temperature_label(temperature: float | Sequence[float]) -> str:
    """A setting as text for file names and titles: ``0.5`` or ``1-0.8-0.6`` (one per layer).

    >>> temperature_label(0.5), temperature_label([1.0, 0.8, 0.6])
    ('0.5', '1-0.8-0.6')
    """
    if isinstance(temperature, (int, float)):
        return f"{temperature:g}"
    return "-".join(f"{t:g}" for t in temperature)


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
def sample_at_temperature(model: Any, n: int, temperature: TemperatureSetting, *, mean: bool = True,
                          centres: dict[str, Tensor] | None = None) -> Tensor:
    r"""``n`` examples generated at one temperature setting (see :func:`check_temperature`).

    A model whose ``sample`` takes a ``temperature`` argument (hierarchical VAEs) does it
    itself, with one temperature or one per latent layer. Otherwise every prior draw is pulled towards the prior's centre,
    :math:`z_t = c + t\,(z - c)`, and decoded: ``t = 0`` decodes the centre, ``t = 1``
    is ordinary sampling (for Gaussian priors this scales the standard deviation by ``t``).

    Parameters
    ----------
    model : LatentVariableModel
    n : int
    temperature : float, list of float, str or callable
        ``>= 0``; a list or schedule gives one per latent layer (:func:`check_temperature`).
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
    t = check_temperature(model, temperature)
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


def samples_at_temperatures(model: Any, n: int, temperatures: Sequence[TemperatureSetting] = (0.0, 0.5, 0.75, 1.0), *,
                            mean: bool = True, seed: int | None = 0) -> dict[float | tuple[float, ...], Tensor]:
    """``n`` samples at each temperature setting (see :func:`sample_at_temperature`).

    Returns
    -------
    dict of float (or tuple of float, one per latent layer) to Tensor of shape (n, *data_shape), on the CPU

    >>> from vaekit.models import mlp_vae
    >>> sorted(samples_at_temperatures(mlp_vae([6], 3, [4]), 2, [1.0, 0.5]))
    [0.5, 1.0]
    """
    n = check_int("n", n)
    temps = [check_temperature(model, t, f"temperatures[{i}]") for i, t in enumerate(temperatures)]
    temps = [tuple(t) if isinstance(t, list) else t for t in temps]
    if not temps:
        raise ValueError("temperatures must name at least one temperature >= 0, got an empty list")
    if seed is not None:
        torch.manual_seed(check_int("seed", seed, 0))
    with eval_mode(model):
        centres = None if "temperature" in inspect.signature(model.sample).parameters else prior_centres(model)
        out = {t: sample_at_temperature(model, n, list(t) if isinstance(t, tuple) else t, mean=mean,
                                        centres=centres).cpu() for t in temps}
    return out


def save_generation_grids(samples: dict[Any, Tensor], out_dir: str | Path, data_shape: Sequence[int],
                          prefix: str = "samples") -> dict[Any, Path]:
    """One PNG grid per temperature setting: ``<out_dir>/<prefix>_t<label>.png`` (:func:`temperature_label`).

    Returns
    -------
    dict of temperature setting to Path
    """
    out_dir = Path(out_dir)
    return {t: save_image_grid(x, out_dir / f"{prefix}_t{temperature_label(t)}.png", data_shape,
                               title=f"temperature {temperature_label(t).replace('-', ', ')}")
            for t, x in samples.items()}
