"""Helpers shared by the analysis tools: argument checks, posterior means, decoding flat latents."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

from .._checks import check_int
from ..distributions import point_estimate
from .images import as_images

__all__ = ["model_device", "check_x", "check_labels", "check_latent", "check_block", "is_latent", "block_names",
           "is_image", "distribution_mean", "encode_means", "latent_shapes", "posterior_means", "decode_mean",
           "block_output", "block_outputs", "decode_replaced"]


def model_device(model: Any) -> torch.device:
    """Device of the model's first parameter or buffer (CPU for a model without any)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def check_x(model: Any, x: Any, name: str = "x") -> Tensor:
    """``x`` as a finite float tensor of shape (batch, *model.data_shape), on the model's device.

    Raises
    ------
    TypeError, ValueError
        Not a float tensor, wrong trailing shape, empty, or not finite (the message names ``name``).
    """
    from ..models.base import LatentVariableModel

    LatentVariableModel.validate_data(model, x, name)  # shape and finiteness only, not the likelihood's support
    return x.to(model_device(model))


def check_labels(labels: Any, n: int, name: str = "labels") -> Tensor:
    """Integer labels of shape (n,) as an int64 CPU tensor.

    >>> check_labels([0, 1, 1], 3)
    tensor([0, 1, 1])
    >>> check_labels([0, 1], 3)
    Traceback (most recent call last):
    ...
    ValueError: labels has 2 entries but x has 3 examples; pass one label per example
    """
    y = torch.as_tensor(labels).detach().cpu()
    if y.dim() != 1:
        raise ValueError(f"{name} must be one-dimensional (one label per example), got shape {tuple(y.shape)}")
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} entries but x has {n} examples; pass one label per example")
    if torch.is_floating_point(y):
        if not torch.equal(y, y.round()):
            raise ValueError(f"{name} must hold integer class labels, got non-integer values such as {y[y != y.round()][0].item()}")
    elif y.dtype == torch.bool or torch.is_complex(y):
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    return y.long()


def check_latent(model: Any, latent: str) -> str:
    """``latent`` if it names one of the model's latents, else a ValueError listing them."""
    names = tuple(model.latent_names)
    if latent not in names:
        raise ValueError(f"latent must be one of the model's latents {list(names)}, got {latent!r}")
    return latent


def _graph(model: Any) -> Any:
    """The model if it is built from blocks (a :class:`~vaekit.models.hierarchical.HierarchicalVAE`), else None."""
    from ..models.hierarchical import HierarchicalVAE

    return model if isinstance(model, HierarchicalVAE) else None


def block_names(model: Any) -> list[str]:
    """What the analysis tools accept as a ``block``: every latent, plus every block of a model built from blocks.

    >>> from vaekit.models.hierarchical import ladder_vae
    >>> block_names(ladder_vae([6], hidden=(4, 3), latent=(3, 2)))
    ['z2', 'z1', 'x_in', 'h1', 'h2', 'x_out']
    """
    names = list(model.latent_names)
    graph = _graph(model)
    return names + ([k for k in graph.blocks if k not in names] if graph is not None else [])


def is_latent(model: Any, block: str) -> bool:
    """Whether ``block`` names one of the model's latents (else a deterministic block)."""
    return block in tuple(model.latent_names)


def check_block(model: Any, block: str, name: str = "block") -> str:
    """``block`` if it names a latent or (for a model built from blocks) a block, else an error listing them.

    Raises
    ------
    vaekit.InvalidArgumentError
        Naming ``name``, the value and the accepted names.
    """
    from .._checks import InvalidArgumentError

    accepted = block_names(model)
    if not isinstance(block, str) or block not in accepted:
        latents = list(model.latent_names)
        others = [b for b in accepted if b not in latents]
        more = f" or blocks {others}" if others else ""
        raise InvalidArgumentError(f"{name} must be one of the model's latents {latents}{more}, got {block!r}")
    return block


def block_output(model: Any, x: Tensor, block: str, replace: dict[str, Tensor] | None = None) -> Tensor:
    """What the analysis tools read of ``block`` at inputs ``x`` (differentiable), shape (n, *block_shape).

    For a latent, its posterior point estimate (:func:`vaekit.distributions.point_estimate`:
    the mean, given the posterior means of the layers above); for a deterministic block of a
    hierarchical VAE, its output in the posterior pass at posterior means
    (:meth:`~vaekit.models.hierarchical.HierarchicalVAE.posterior_pass` with ``mean=True``),
    with the outputs in ``replace`` taken as given.
    """
    if is_latent(model, block) and not replace:
        return distribution_mean(model.encode(x)[block])
    trace = model.posterior_pass(x, mean=True, replace=replace)
    return trace.z[block] if is_latent(model, block) else trace.computed[block]


@torch.no_grad()
def block_outputs(model: Any, x: Tensor, block: str, *, batch_size: int = 256) -> Tensor:
    """:func:`block_output` in batches, without gradients, shape (n, *block_shape); a latent in its own shape."""
    if is_latent(model, block):
        return encode_means(model, x, batch_size=batch_size)[block]
    return torch.cat([block_output(model, chunk, block) for chunk in x.split(check_int("batch_size", batch_size))])


@torch.no_grad()
def decode_replaced(model: Any, x: Tensor, block: str, value: Tensor) -> Tensor:
    """Mean of p(x | ...) with deterministic ``block`` outputting ``value``, the rest of the graph computed from it.

    The posterior pass at posterior means (``x`` feeds the encoder blocks that do not depend
    on ``block``, and the posterior conditions), with ``block``'s output replaced: blocks
    after it, and the latent layers below it, are recomputed from the replaced value.

    Parameters
    ----------
    x : Tensor of shape (n, *data_shape)
    block : str
        A deterministic block of a hierarchical VAE.
    value : Tensor of shape (n, *block_shape)

    Returns
    -------
    Tensor of shape (n, *data_shape)
    """
    params = model.posterior_pass(x, mean=True, replace={block: value}).params
    return distribution_mean(model.data_distribution(params), 1)


def is_image(data_shape: Sequence[int]) -> bool:
    """Whether examples of this shape are shown as images (see :func:`vaekit.analysis.images.as_images`).

    >>> is_image([784]), is_image([1, 8, 8]), is_image([5])
    (True, True, False)
    """
    shape = tuple(int(d) for d in data_shape)
    return as_images(torch.zeros(1, *shape), shape) is not None


def distribution_mean(dist: Distribution, n_mc: int = 32) -> Tensor:
    """:func:`vaekit.distributions.point_estimate`: ``dist.mean``, for a flow the flow at its base mean.

    Distributions with neither (relaxed categoricals; likelihoods without a closed-form
    mean) give the average of ``n_mc`` draws.
    """
    return point_estimate(dist, n_mc=n_mc)


@torch.no_grad()
def encode_means(model: Any, x: Tensor, *, batch_size: int = 256, n_mc: int = 32) -> dict[str, Tensor]:
    """Posterior point estimate of every named latent (:func:`distribution_mean`), in the latent's own shape.

    Parameters
    ----------
    model : LatentVariableModel
    x : Tensor of shape (n, *data_shape)
    batch_size : int
    n_mc : int
        Draws averaged for posteriors with neither a mean nor a declared point estimate
        (relaxed categoricals; a flow gives the flow at its base mean, see
        :func:`vaekit.distributions.point_estimate`).

    Returns
    -------
    dict of str to Tensor of shape (n, *latent_event)
    """
    batch_size = check_int("batch_size", batch_size)
    parts: dict[str, list[Tensor]] = {}
    for chunk in x.split(batch_size):
        for name, q in model.encode(chunk).items():
            parts.setdefault(name, []).append(distribution_mean(q, n_mc))
    shapes = latent_shapes(model)
    out = {}
    for name, p in parts.items():
        m = torch.cat(p)
        shape = shapes.get(name)
        out[name] = m.reshape(m.shape[0], *shape) if shape is not None and m[0].numel() == math.prod(shape) else m
    return out


@torch.no_grad()
def latent_shapes(model: Any) -> dict[str, tuple[int, ...]]:
    """Shape of one example of every named latent as ``sample_prior`` gives it (what ``decode`` takes).

    The CPU random state is left as it was.

    >>> from vaekit.models import mlp_vae
    >>> latent_shapes(mlp_vae([6], 3, [4]))
    {'z': (3,)}
    """
    with torch.random.fork_rng(devices=[]):
        return {name: tuple(z.shape[1:]) for name, z in model.sample_prior(1).items()}


def posterior_means(model: Any, x: Tensor, *, batch_size: int = 256, n_mc: int = 32) -> dict[str, Tensor]:
    """Posterior mean of every named latent, flattened per example to shape (n, D_name).

    >>> from vaekit.models import mlp_vae
    >>> posterior_means(mlp_vae([6], 3, [4]), torch.rand(5, 6))["z"].shape
    torch.Size([5, 3])
    """
    return {name: m.reshape(m.shape[0], -1) for name, m in encode_means(model, x, batch_size=batch_size, n_mc=n_mc).items()}


@torch.no_grad()
def decode_mean(model: Any, z: dict[str, Tensor], *, batch_size: int = 256) -> Tensor:
    """Mean of p(x | z) (a draw where the mean has no closed form), shape (n, *data_shape)."""
    n = next(iter(z.values())).shape[0]
    out = []
    for i in range(0, n, batch_size):
        out.append(distribution_mean(model.decode({k: v[i:i + batch_size] for k, v in z.items()}), 1))
    return torch.cat(out)

