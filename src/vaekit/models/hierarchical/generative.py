"""Generative blocks: latent layers with a prior from their inputs and a posterior from a condition.

A latent layer takes part in every pass of :class:`~vaekit.models.hierarchical.HierarchicalVAE`
through one method per mode, each a few lines over the three a subclass writes
(:meth:`~GenerativeBlock.prior`, :meth:`~GenerativeBlock.posterior`, :meth:`~GenerativeBlock.output`):

- ``posterior_step``: the latent is a draw (or the mean) of q(z | condition, inputs);
  the model's ``posterior_pass`` (training, IWAE, ``encode``).
- ``latent_step``: the latent is given; ``latent_pass`` (``decode``, ``log_prior``,
  ``log_joint``).
- ``prior_step``: the latent is a draw of the prior with its scale tempered;
  ``prior_pass`` (``sample_prior``, ``sample``), and below the posterior layers in
  ``mixed_pass``.

Each returns a :class:`Layer`: the prior, the posterior (where one was computed), the
latent and what later blocks read under the layer's name.
"""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..._checks import InvalidArgumentError, check_choice, check_float
from ...distributions import DiagonalLaplace, DiagonalNormal, RelaxedLayer, point_estimate
from ._common import (LATENT_FAMILIES, RELAXED_FAMILIES, block_module, check_categories, gaussian_head, head_features,
                      latent_shape_of, relaxed_head)

LatentFamily = Literal["gaussian", "laplace", "gs", "igr_i"]
from .blocks import Block

__all__ = ["GenerativeBlock", "SimpleGenBlock", "GenBlock", "TopGenBlock", "ResidualGenBlock", "Layer"]


@dataclass
class Layer:
    """One latent layer's part of a pass through the blocks.

    Attributes
    ----------
    prior : Distribution
        p(z | inputs), batch shape (N,).
    posterior : Distribution or None
        q(z | condition, inputs) in the posterior pass (the prior itself for a layer
        without condition); ``None`` in the other passes.
    z : Tensor of shape (N, *latent_shape)
        The layer's latent in this pass.
    output : Tensor
        What later blocks read under the layer's name.
    coords : tuple of Tensor or None
        A relaxed categorical posterior draw's stable coordinates and their log-density under
        the posterior (:meth:`~vaekit.distributions.RelaxedLayer.rsample_with_coords`: ``log z``
        for Gumbel-Softmax, :math:`\\lambda` for IGR), where the model scores ``q`` and ``p``;
        ``None`` for every other latent.
    """

    prior: Distribution
    posterior: Distribution | None
    z: Tensor
    output: Tensor
    coords: tuple[Tensor, Tensor] | None = None


class GenerativeBlock(Block, metaclass=ABCMeta):
    """Base class of latent layers: a prior from ``inputs``, a posterior from ``condition`` (both of ``latent_family``).

    Subclasses implement :meth:`prior` and (with a condition) :meth:`posterior`, and may
    override :meth:`output` (default: emit the latent ``z`` itself) and
    :meth:`tempered_sample` (default: a Gaussian's location plus the tempered noise). The
    per-mode steps (:meth:`posterior_step`, :meth:`latent_step`, :meth:`prior_step`)
    combine them; the model calls only those.

    Parameters
    ----------
    name : str
    inputs : str or sequence of str
        Generator-side names the prior depends on (empty for a top layer).
    condition : str, optional
        Name of the (encoder) output the posterior reads; ``None``: no posterior, the
        latent is drawn from its prior also during training (KL 0).
    latent_features : int or sequence of int
        Size of this layer's latent vector, or the shape of a spatial latent (``[C, H, W]``:
        its networks are convolutional and its Gaussian heads split the channel axis).
    min_scale : float
        Floor of the Gaussian scales.
    latent_family : {"gaussian", "laplace", "gs", "igr_i"}
        Family of the prior and the posterior: diagonal Gaussians (KL in closed form),
        diagonal Laplace distributions (:class:`~vaekit.distributions.DiagonalLaplace`,
        heavier tails; their KL is in closed form too), or relaxed categorical variables
        (:class:`~vaekit.distributions.RelaxedLayer`): Gumbel-Softmax (``"gs"``, KL by one
        sample) or IGR-I (``"igr_i"``, KL in closed form before softmax++), the discrete
        models' relaxations and estimators. For Gaussian and Laplace the heads give the
        location and ``softplus(raw) + min_scale`` as the scale; their sizes are in
        :attr:`head_features`.
    categories : int, optional
        ``K`` of a relaxed family: the latent's features (channels of a spatial latent) are
        ``features / K`` variables of ``K`` categories, variable ``v`` at features
        ``v * K ... v * K + K - 1``. Only for ``"gs"`` and ``"igr_i"``.
    relaxation_temperature : float
        :math:`\\tau > 0` of a relaxed family; a Gaussian or Laplace layer refuses any value
        but the default.

    Attributes
    ----------
    latent_shape : tuple of int
        Shape of the latent for one example: ``(latent_features,)`` or ``(C, H, W)``.
    latent_features : int
        The features of a latent vector, the channels ``C`` of a spatial latent.
    head_features : int
        The features (channels of a map) a network gives one distribution of this layer:
        ``2 * latent_features`` for Gaussian and Laplace, ``latent_features`` logits for
        ``"gs"``, ``2 * (latent_features / K) * (K - 1)`` for ``"igr_i"``.
    """

    generative: ClassVar[bool] = True

    def __init__(self, name: str, inputs: str | Sequence[str], condition: str | None, latent_features: int | Sequence[int],
                 min_scale: float = 1e-4, net: nn.Module | None = None, latent_family: LatentFamily = "gaussian",
                 categories: int | None = None, relaxation_temperature: float = 0.5) -> None:
        latent_family = check_choice("latent_family", latent_family, LATENT_FAMILIES)
        shape = latent_shape_of(latent_features, name)
        categories, relaxation_temperature = check_categories(latent_family, categories, shape, relaxation_temperature, name)
        super().__init__(name, inputs, net)
        self.latent_family, self.categories, self.relaxation_temperature = latent_family, categories, relaxation_temperature
        if condition is not None and (not isinstance(condition, str) or not condition):
            raise TypeError(f"condition of block {name!r} must be a block name or None, got {condition!r}")
        self.condition = condition
        self._latent_shape = shape
        self.latent_features = self._latent_shape[0]
        self.head_features = head_features(latent_family, self.latent_features, categories)
        self.min_scale = check_float("min_scale", min_scale, 0)

    @property
    def references(self) -> tuple[str, ...]:
        return self.inputs + ((self.condition,) if self.condition else ())

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """Shape of this layer's latent for one example: ``(latent_features,)``, or ``(C, H, W)`` for a spatial latent."""
        return self._latent_shape

    # ------------------------------------------------------------------ what a subclass writes
    @abstractmethod
    def prior(self, inputs: list[Tensor], n: int) -> tuple[Distribution, Any]:
        """``p(z | inputs)`` with batch shape (n,), and any state :meth:`output` needs."""

    def posterior(self, condition: Tensor, inputs: list[Tensor], state: Any) -> Distribution:
        """``q(z | condition, inputs)`` with batch shape (n,); a layer with a ``condition`` implements it."""
        raise NotImplementedError(f"{type(self).__name__} {self.name!r} has the condition {self.condition!r} "
                                  "but does not implement posterior(condition, inputs, state)")

    def output(self, z: Tensor, inputs: list[Tensor], state: Any) -> Tensor:
        """What later blocks read under this block's name (default: ``z``)."""
        return z

    @property
    def relaxed(self) -> bool:
        """Whether this layer's latents are relaxed categorical variables (``latent_family`` ``"gs"`` or ``"igr_i"``)."""
        return self.latent_family in RELAXED_FAMILIES

    def tempered_sample(self, prior: Distribution, temperature: float) -> Tensor:
        """A draw of ``prior`` with its scale multiplied by ``temperature`` (0: its location).

        A relaxed categorical layer multiplies its noise (Gumbel or Gaussian) by ``temperature``
        (:meth:`~vaekit.distributions.RelaxedLayer.tempered_sample`; 0: the draw at zero noise).
        """
        if isinstance(prior, RelaxedLayer):
            return prior.tempered_sample(temperature)
        if temperature > 0:
            if self.latent_family != "gaussian":  # the family's own noise, scaled about the location
                return prior.loc + temperature * (prior.sample() - prior.loc)
            return prior.loc + temperature * prior.scale * torch.randn_like(prior.loc)
        return prior.loc

    def head(self, params: Tensor, what: str) -> Distribution:
        """This layer's distribution (of its ``latent_family``) from a network output of :attr:`head_features` features.

        Gaussian and Laplace: location, then raw scale; relaxed categorical:
        the logits (``"gs"``), or the IGR locations then raw scales (``"igr_i"``).
        """
        if self.relaxed:
            return relaxed_head(params, self.latent_shape, self.latent_family, self.categories,  # type: ignore[return-value]
                                self.relaxation_temperature, self.min_scale, what)
        return gaussian_head(params, self.latent_shape, self.min_scale, what, self.latent_family)

    # ------------------------------------------------------------------ one method per mode
    def posterior_step(self, computed: dict[str, Tensor], n: int, *, mean: bool = False) -> Layer:
        """Inference: ``z ~ q(z | condition, inputs)`` (its mean, or point estimate, with ``mean=True``); q is the prior without a condition."""
        inputs = [computed[i] for i in self.inputs]
        prior, state = self.prior(inputs, n)
        q = self.posterior(computed[self.condition], inputs, state) if self.condition else prior
        coords = None
        if mean:
            z = point_estimate(q)
        elif isinstance(q, RelaxedLayer):  # keep log z (GS) or lambda (IGR): z itself may underflow to exact zeros
            z, *coords = q.rsample_with_coords()
        else:
            z = q.rsample()
        return Layer(prior, q, z, self.output(z, inputs, state), None if coords is None else tuple(coords))

    def latent_step(self, computed: dict[str, Tensor], n: int, z: Tensor) -> Layer:
        """Evaluation at a given latent ``z`` of shape (n, *latent_shape): the prior there and the output."""
        inputs = [computed[i] for i in self.inputs]
        prior, state = self.prior(inputs, n)
        return Layer(prior, None, z, self.output(z, inputs, state))

    def prior_step(self, computed: dict[str, Tensor], n: int, temperature: float = 1.0) -> Layer:
        """Generation: ``z`` from the prior with its scale tempered (see :meth:`tempered_sample`)."""
        inputs = [computed[i] for i in self.inputs]
        prior, state = self.prior(inputs, n)
        z = self.tempered_sample(prior, temperature)
        return Layer(prior, None, z, self.output(z, inputs, state))

    def extra_repr(self) -> str:
        size = self.latent_features if len(self.latent_shape) == 1 else list(self.latent_shape)
        family = "" if self.latent_family == "gaussian" else f", latent_family={self.latent_family!r}"
        if self.relaxed:
            family += f", categories={self.categories}, relaxation_temperature={self.relaxation_temperature:g}"
        return f"{super().extra_repr()}, condition={self.condition!r}, latent_features={size}{family}"


class SimpleGenBlock(GenerativeBlock):
    """A latent drawn from a prior parameterised by ``net(input)``; no posterior (KL 0).

    >>> from vaekit.nn import MLP
    >>> b = SimpleGenBlock("z", "h", MLP(3, 4), latent_features=2)
    >>> b.prior([torch.zeros(5, 3)], 5)[0].batch_shape
    torch.Size([5])
    """

    def __init__(self, name: str, inputs: str, net: nn.Module, latent_features: int | Sequence[int], min_scale: float = 1e-4,
                 latent_family: LatentFamily = "gaussian", categories: int | None = None,
                 relaxation_temperature: float = 0.5) -> None:
        super().__init__(name, inputs, None, latent_features, min_scale, block_module("net", net, name, optional=False),
                         latent_family, categories, relaxation_temperature)

    def prior(self, inputs: list[Tensor], n: int) -> tuple[Distribution, Any]:
        return self.head(self.net(inputs[0]), f"net of {self.name!r}"), None


class GenBlock(GenerativeBlock):
    r"""Top-down latent layer: :math:`p(z | h) = \mathcal N(\text{prior\_net}(h))`,
    :math:`q(z | c, h) = \mathcal N(\text{posterior\_net}(c \,[\oplus\, h]))`.

    Parameters
    ----------
    name : str
    inputs : str
        Generator-side input ``h`` (e.g. the latent of the layer above).
    condition : str
        Encoder output ``c`` the posterior reads.
    prior_net : nn.Module
        ``h -> head_features`` (``2 * latent_features`` for a Gaussian).
    posterior_net : nn.Module
        ``c`` (or ``cat(c, h)`` with ``concat_posterior``) ``-> head_features``.
    latent_features : int or sequence of int
        A vector's size, or a spatial latent's shape ``[C, H, W]`` (networks then map (N, ., H, W) maps).
    concat_posterior : bool
        Concatenate the (transformed) input to the (transformed) condition.
    input_transform, condition_transform : nn.Module, optional
        Applied to ``h`` and ``c`` before the posterior network (default identity).
    min_scale : float

    Examples
    --------
    >>> from vaekit.nn import MLP
    >>> b = GenBlock("z1", "z2", "h1", MLP(2, 6), MLP(5, 6), latent_features=3, concat_posterior=True)
    >>> p, s = b.prior([torch.zeros(4, 2)], 4)
    >>> b.posterior(torch.zeros(4, 3), [torch.zeros(4, 2)], s).event_shape
    torch.Size([3])
    """

    def __init__(self, name: str, inputs: str, condition: str, prior_net: nn.Module, posterior_net: nn.Module,
                 latent_features: int | Sequence[int], concat_posterior: bool = False, input_transform: nn.Module | None = None,
                 condition_transform: nn.Module | None = None, min_scale: float = 1e-4,
                 latent_family: LatentFamily = "gaussian", categories: int | None = None,
                 relaxation_temperature: float = 0.5) -> None:
        super().__init__(name, inputs, condition, latent_features, min_scale, latent_family=latent_family,
                         categories=categories, relaxation_temperature=relaxation_temperature)
        self.prior_net = block_module("prior_net", prior_net, name, optional=False)
        self.posterior_net = block_module("posterior_net", posterior_net, name, optional=False)
        self.input_transform = block_module("input_transform", input_transform, name)
        self.condition_transform = block_module("condition_transform", condition_transform, name)
        self.concat_posterior = bool(concat_posterior)

    def prior(self, inputs: list[Tensor], n: int) -> tuple[Distribution, Any]:
        return self.head(self.prior_net(inputs[0]), f"prior_net of {self.name!r}"), None

    def posterior(self, condition: Tensor, inputs: list[Tensor], state: Any) -> Distribution:
        c = self.condition_transform(condition)
        if self.concat_posterior:
            c = torch.cat([c, self.input_transform(inputs[0])], 1)
        return self.head(self.posterior_net(c), f"posterior_net of {self.name!r}")


class TopGenBlock(GenerativeBlock):
    """Top latent layer: a (trainable or fixed) prior of ``latent_family``, posterior ``net(condition)``.

    Parameters
    ----------
    name : str
    condition : str
    net : nn.Module
        ``condition -> head_features`` (``2 * latent_features`` for a Gaussian).
    latent_features : int or sequence of int
        A vector's size, or a spatial latent's shape ``[C, H, W]`` (networks then map (N, ., H, W) maps).
    prior_trainable : bool
        Learn the prior's parameters; else they stay at their initial values: N(0, I) (a
        Laplace layer: location 0, scale 1), uniform logits (``"gs"``), or
        :math:`\\mu = 0`, :math:`\\sigma = 1` before softmax++ (``"igr_i"``, whose scale is
        ``softplus(raw) + min_scale``: it refuses ``min_scale >= 1``, which cannot give
        :math:`\\sigma = 1`).
    min_scale : float

    Examples
    --------
    >>> from vaekit.nn import MLP
    >>> p, _ = TopGenBlock("z", "h", MLP(3, 4), 2, prior_trainable=False).prior([], 5)
    >>> p.mean.shape, float(p.stddev.max())
    (torch.Size([5, 2]), 1.0)
    """

    def __init__(self, name: str, condition: str, net: nn.Module, latent_features: int | Sequence[int], prior_trainable: bool = False,
                 min_scale: float = 1e-4, latent_family: LatentFamily = "gaussian", categories: int | None = None,
                 relaxation_temperature: float = 0.5) -> None:
        super().__init__(name, (), condition, latent_features, min_scale, block_module("net", net, name, optional=False),
                         latent_family, categories, relaxation_temperature)
        if self.relaxed:  # the head's input: uniform logits (GS), or mu = 0 and softplus(raw) + min_scale = 1 (IGR)
            params = torch.zeros(self.head_features, *self.latent_shape[1:])
            if self.latent_family == "igr_i":
                if self.min_scale >= 1:
                    raise InvalidArgumentError(f"min_scale of block {name!r} must be < 1 with latent_family='igr_i': its "
                                               f"prior's scale sigma = softplus(raw) + min_scale starts at 1 (fixed, "
                                               f"with prior_trainable=False), got min_scale={min_scale!r}")
                params[self.head_features // 2:] = math.log(math.expm1(1.0 - self.min_scale))
            if prior_trainable:
                self.prior_params = nn.Parameter(params)
            else:
                self.register_buffer("prior_params", params)
            return
        loc, raw = torch.zeros(self.latent_shape), torch.zeros(self.latent_shape)
        if prior_trainable:
            self.prior_loc, self.prior_raw_scale = nn.Parameter(loc), nn.Parameter(raw)
        else:
            self.register_buffer("prior_loc", loc)
            self.register_buffer("prior_raw_scale", raw)

    def prior(self, inputs: list[Tensor], n: int) -> tuple[Distribution, Any]:
        if self.relaxed:
            return self.head(self.prior_params.expand(n, *self.prior_params.shape), f"the prior of {self.name!r}"), None
        scale = torch.exp(self.prior_raw_scale)  # exp(0) = 1 at initialisation
        shape = (n, *self.latent_shape)
        family = DiagonalLaplace if self.latent_family == "laplace" else DiagonalNormal
        return family(self.prior_loc.expand(shape), scale.expand(shape), event_dims=len(self.latent_shape)), None

    def posterior(self, condition: Tensor, inputs: list[Tensor], state: Any) -> Distribution:
        return self.head(self.net(condition), f"net of {self.name!r}")


class ResidualGenBlock(GenerativeBlock):
    r"""The VDVAE top-down block (Child, 2021) on feature vectors.

    With state ``h`` (from ``inputs``) and encoder features ``c`` (``condition``):
    ``prior_net(h)`` is split into the prior's location, raw scale and a residual
    ``r`` (the remaining features); the posterior is ``posterior_net(cat(h, c))``;
    the emitted state is ``residual_net(h + r + z_projection(z))``.

    Parameters
    ----------
    name : str
    inputs : str
        The running state ``h`` (width W).
    condition : str
        Encoder features at this layer.
    prior_net : nn.Module
        ``h -> head_features + W`` (``head_features = 2 * latent_features`` for a Gaussian).
    posterior_net : nn.Module
        ``cat(h, c) -> head_features``.
    z_projection : nn.Module
        ``z -> W``.
    latent_features : int or sequence of int
        A vector's size, or a spatial latent's shape ``[C, H, W]`` (networks then map (N, ., H, W) maps).
    residual_net : nn.Module, optional
        Applied to the updated state (VDVAE's resnet block; default identity).
    min_scale : float

    Examples
    --------
    >>> from vaekit.nn import MLP
    >>> b = ResidualGenBlock("z", "h", "c", MLP(4, 2 * 2 + 4), MLP(4 + 3, 4), MLP(2, 4), latent_features=2)
    >>> h = torch.zeros(5, 4)
    >>> p, r = b.prior([h], 5)
    >>> q = b.posterior(torch.zeros(5, 3), [h], r)
    >>> b.output(q.rsample(), [h], r).shape
    torch.Size([5, 4])
    """

    def __init__(self, name: str, inputs: str, condition: str, prior_net: nn.Module, posterior_net: nn.Module,
                 z_projection: nn.Module, latent_features: int | Sequence[int], residual_net: nn.Module | None = None,
                 min_scale: float = 1e-4, latent_family: LatentFamily = "gaussian", categories: int | None = None,
                 relaxation_temperature: float = 0.5) -> None:
        super().__init__(name, inputs, condition, latent_features, min_scale, latent_family=latent_family,
                         categories=categories, relaxation_temperature=relaxation_temperature)
        self.prior_net = block_module("prior_net", prior_net, name, optional=False)
        self.posterior_net = block_module("posterior_net", posterior_net, name, optional=False)
        self.z_projection = block_module("z_projection", z_projection, name, optional=False)
        self.residual_net = block_module("residual_net", residual_net, name)

    def prior(self, inputs: list[Tensor], n: int) -> tuple[Distribution, Any]:
        h, out, d = inputs[0], self.prior_net(inputs[0]), self.head_features
        if out.dim() < 2 or out.shape[1] != d + h.shape[1]:
            raise ValueError(f"prior_net of {self.name!r} returned shape {tuple(out.shape)} but needs head_features + "
                             f"width = {d} + {h.shape[1]} = {d + h.shape[1]} features (channels of a map) on axis 1 "
                             f"(the prior's parameters, then the residual); the state {self.inputs[0]!r} has shape {tuple(h.shape)}")
        return self.head(out[:, :d], f"prior_net of {self.name!r}"), out[:, d:]

    def posterior(self, condition: Tensor, inputs: list[Tensor], state: Any) -> Distribution:
        return self.head(self.posterior_net(torch.cat([inputs[0], condition], 1)), f"posterior_net of {self.name!r}")

    def output(self, z: Tensor, inputs: list[Tensor], state: Any) -> Tensor:
        return self.residual_net(inputs[0] + state + self.z_projection(z))
