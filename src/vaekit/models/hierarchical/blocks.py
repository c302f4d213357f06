"""Blocks of a hierarchical VAE: named nodes of a computation graph, each wrapping a network.

Every block has a ``name`` (the key of its output), ``inputs`` (names of earlier outputs;
``"x"`` is the data) and usually a ``net`` (any :class:`torch.nn.Module`, built from a
config). Deterministic blocks map their inputs to one tensor (:meth:`Block.forward`).
Generative blocks (``generative = True``) own one named latent vector: they give its
prior from their ``inputs`` and its posterior from a ``condition`` (an encoder output),
and emit a tensor that later blocks read (the latent itself, or VDVAE's residual state).

Networks see tensors of shape (N, features) (or whatever the previous block emits); the
model flattens any leading sample dimensions into N. Gaussian heads read a network output
of shape (N, 2 * latent_features): location, then a raw scale mapped through
``softplus(raw) + min_scale``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from ..._checks import check_float, check_int
from ..._recording import Configurable
from ...distributions import DiagonalNormal, Likelihood
from ...distributions.gaussian import _positive

__all__ = ["Block", "GenerativeBlock", "InputBlock", "SimpleBlock", "DualInputBlock", "TopSimpleBlock",
           "SimpleGenBlock", "GenBlock", "TopGenBlock", "ResidualGenBlock", "OutputBlock"]


def _names(arg: str, value: str | Sequence[str], block: str) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(v, str) and v for v in names):
        raise TypeError(f"{arg} of block {block!r} must be a block name or a list of names, got {value!r}")
    return names


def _module(arg: str, value: Any, block: str, optional: bool = True) -> nn.Module:
    if value is None and optional:
        return nn.Identity()
    if not isinstance(value, nn.Module):
        raise TypeError(f"{arg} of block {block!r} must be a torch.nn.Module (e.g. vaekit.nn.MLP), got {type(value).__name__}")
    return value


def _gaussian(params: Tensor, latent_features: int, min_scale: float, what: str) -> DiagonalNormal:
    if params.shape[-1] != 2 * latent_features:
        raise ValueError(f"{what} returned {params.shape[-1]} features but a Gaussian over {latent_features} latents needs "
                         f"2 * latent_features = {2 * latent_features} (location and raw scale)")
    loc, raw = params.chunk(2, dim=-1)
    return DiagonalNormal(loc, _positive(raw, "softplus", min_scale))


class Block(Configurable, nn.Module):
    """Base class of every block: a named node that reads earlier outputs.

    Subclass it for a custom deterministic block and implement :meth:`forward` (one
    argument per name in ``inputs``); subclass :class:`GenerativeBlock` for a custom
    latent layer. Constructor arguments are recorded, so a custom block in an importable
    module is written to ``config.yaml`` like the built-in ones.

    Parameters
    ----------
    name : str
        Name of this block's output (a Python identifier, not ``"x"``).
    inputs : str or sequence of str
        Names of earlier outputs this block reads; ``"x"`` is the data.
    net : nn.Module, optional
        The block's network (default: identity).

    Examples
    --------
    >>> import torch
    >>> class Double(Block):
    ...     def forward(self, h):
    ...         return 2 * self.net(h)
    >>> Double("d", "h")(torch.ones(1, 2))
    tensor([[2., 2.]])
    """

    generative: ClassVar[bool] = False

    def __init__(self, name: str, inputs: str | Sequence[str] = "x", net: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(name, str) or not name.isidentifier() or name == "x":
            raise ValueError(f"block name must be a Python identifier other than 'x' (the data), got {name!r}")
        self.name = name
        self.inputs = _names("inputs", inputs, name)
        self.net = _module("net", net, name)

    @property
    def references(self) -> tuple[str, ...]:
        """Every name this block reads (its inputs, plus the condition of generative blocks)."""
        return self.inputs

    def compute(self, computed: dict[str, Tensor], n: int) -> Tensor:
        """This block's output from the outputs computed so far (``n`` examples)."""
        return self(*[computed[i] for i in self.inputs])

    def forward(self, *inputs: Tensor) -> Tensor:
        """Apply ``net`` to the single input; subclasses with several inputs override this."""
        if len(inputs) != 1:
            raise ValueError(f"block {self.name!r} takes one input, got {len(inputs)}; override forward() for more")
        return self.net(inputs[0])

    def extra_repr(self) -> str:
        return f"name={self.name!r}, inputs={list(self.inputs)}"


class InputBlock(Block):
    """First block: reads the data ``x`` and preprocesses it.

    Parameters
    ----------
    name : str
    net : nn.Module, optional
        Preprocessing (default identity), applied after the optional flattening.
    flatten : bool
        Flatten each example to a vector (for MLPs on images).

    Examples
    --------
    >>> InputBlock("x_in", flatten=True)(torch.zeros(2, 1, 4, 4)).shape
    torch.Size([2, 16])
    """

    def __init__(self, name: str, net: nn.Module | None = None, flatten: bool = False) -> None:
        super().__init__(name, "x", net)
        self.flatten = bool(flatten)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1) if self.flatten else x)


class SimpleBlock(Block):
    """``net(input)``: a deterministic layer (encoder or generator side).

    >>> from vaekit.nn import MLP
    >>> SimpleBlock("h", "x_in", MLP(4, 3))(torch.zeros(2, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(self, name: str, inputs: str, net: nn.Module) -> None:
        super().__init__(name, inputs, _module("net", net, name, optional=False))


class DualInputBlock(Block):
    """``net(a ⊕ b)`` of two inputs, concatenated on the feature axis or summed.

    >>> DualInputBlock("h", ["a", "b"], mode="sum")(torch.ones(1, 2), torch.ones(1, 2))
    tensor([[2., 2.]])
    """

    def __init__(self, name: str, inputs: Sequence[str], net: nn.Module | None = None,
                 mode: Literal["concat", "sum"] = "concat") -> None:
        super().__init__(name, inputs, net)
        if len(self.inputs) != 2:
            raise ValueError(f"inputs of DualInputBlock {name!r} must name exactly 2 blocks, got {list(self.inputs)}")
        if mode not in ("concat", "sum"):
            raise ValueError(f"mode of DualInputBlock {name!r} must be 'concat' or 'sum', got {mode!r}")
        self.mode = mode

    def forward(self, a: Tensor, b: Tensor) -> Tensor:  # type: ignore[override]
        return self.net(torch.cat([a, b], 1) if self.mode == "concat" else a + b)


class TopSimpleBlock(Block):
    """A constant (trainable or fixed) starting state of the generator, ``net(h0)`` per example.

    Parameters
    ----------
    name : str
    shape : sequence of int
        Shape of ``h0`` for one example.
    net : nn.Module, optional
    trainable : bool
        Learn ``h0`` (else a fixed buffer).
    value : float
        Initial (or fixed) value of every entry of ``h0``.

    Examples
    --------
    >>> TopSimpleBlock("h0", [3], value=0.5).compute({}, 2)
    tensor([[0.5000, 0.5000, 0.5000],
            [0.5000, 0.5000, 0.5000]], grad_fn=<ExpandBackward0>)
    """

    def __init__(self, name: str, shape: Sequence[int], net: nn.Module | None = None, trainable: bool = True,
                 value: float = 0.0) -> None:
        super().__init__(name, (), net)
        shape = [check_int("shape", s) for s in shape]
        h0 = torch.full(shape, check_float("value", value))
        if trainable:
            self.h0 = nn.Parameter(h0)
        else:
            self.register_buffer("h0", h0)

    def compute(self, computed: dict[str, Tensor], n: int) -> Tensor:
        return self.net(self.h0.expand(n, *self.h0.shape))


class GenerativeBlock(Block):
    """Base class of latent layers: a Gaussian prior from ``inputs``, a posterior from ``condition``.

    Subclasses implement :meth:`prior` and :meth:`posterior`, and may override
    :meth:`output` (default: emit the latent ``z`` itself).

    Parameters
    ----------
    name : str
    inputs : str or sequence of str
        Generator-side names the prior depends on (empty for a top layer).
    condition : str, optional
        Name of the (encoder) output the posterior reads; ``None``: no posterior, the
        latent is drawn from its prior also during training (KL 0).
    latent_features : int
        Size of this layer's latent vector.
    min_scale : float
        Floor of the Gaussian scales.
    """

    generative: ClassVar[bool] = True

    def __init__(self, name: str, inputs: str | Sequence[str], condition: str | None, latent_features: int,
                 min_scale: float = 1e-4, net: nn.Module | None = None) -> None:
        super().__init__(name, inputs, net)
        if condition is not None and (not isinstance(condition, str) or not condition):
            raise TypeError(f"condition of block {name!r} must be a block name or None, got {condition!r}")
        self.condition = condition
        self.latent_features = check_int("latent_features", latent_features)
        self.min_scale = check_float("min_scale", min_scale, 0)

    @property
    def references(self) -> tuple[str, ...]:
        return self.inputs + ((self.condition,) if self.condition else ())

    def prior(self, inputs: list[Tensor], n: int) -> tuple[DiagonalNormal, Any]:
        """``p(z | inputs)`` with batch shape (n,), and any state :meth:`output` needs."""
        raise NotImplementedError

    def posterior(self, condition: Tensor, inputs: list[Tensor], state: Any) -> DiagonalNormal:
        """``q(z | condition, inputs)`` with batch shape (n,)."""
        raise NotImplementedError

    def output(self, z: Tensor, inputs: list[Tensor], state: Any) -> Tensor:
        """What later blocks read under this block's name (default: ``z``)."""
        return z

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, condition={self.condition!r}, latent_features={self.latent_features}"


class SimpleGenBlock(GenerativeBlock):
    """A latent drawn from a prior parameterised by ``net(input)``; no posterior (KL 0).

    >>> from vaekit.nn import MLP
    >>> b = SimpleGenBlock("z", "h", MLP(3, 4), latent_features=2)
    >>> b.prior([torch.zeros(5, 3)], 5)[0].batch_shape
    torch.Size([5])
    """

    def __init__(self, name: str, inputs: str, net: nn.Module, latent_features: int, min_scale: float = 1e-4) -> None:
        super().__init__(name, inputs, None, latent_features, min_scale, _module("net", net, name, optional=False))

    def prior(self, inputs: list[Tensor], n: int) -> tuple[DiagonalNormal, Any]:
        return _gaussian(self.net(inputs[0]), self.latent_features, self.min_scale, f"net of {self.name!r}"), None


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
        ``h -> 2 * latent_features``.
    posterior_net : nn.Module
        ``c`` (or ``cat(c, h)`` with ``concat_posterior``) ``-> 2 * latent_features``.
    latent_features : int
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
                 latent_features: int, concat_posterior: bool = False, input_transform: nn.Module | None = None,
                 condition_transform: nn.Module | None = None, min_scale: float = 1e-4) -> None:
        super().__init__(name, inputs, condition, latent_features, min_scale)
        self.prior_net = _module("prior_net", prior_net, name, optional=False)
        self.posterior_net = _module("posterior_net", posterior_net, name, optional=False)
        self.input_transform = _module("input_transform", input_transform, name)
        self.condition_transform = _module("condition_transform", condition_transform, name)
        self.concat_posterior = bool(concat_posterior)

    def prior(self, inputs: list[Tensor], n: int) -> tuple[DiagonalNormal, Any]:
        return _gaussian(self.prior_net(inputs[0]), self.latent_features, self.min_scale, f"prior_net of {self.name!r}"), None

    def posterior(self, condition: Tensor, inputs: list[Tensor], state: Any) -> DiagonalNormal:
        c = self.condition_transform(condition)
        if self.concat_posterior:
            c = torch.cat([c, self.input_transform(inputs[0])], 1)
        return _gaussian(self.posterior_net(c), self.latent_features, self.min_scale, f"posterior_net of {self.name!r}")


class TopGenBlock(GenerativeBlock):
    """Top latent layer: a (trainable or fixed) Gaussian prior, posterior ``net(condition)``.

    Parameters
    ----------
    name : str
    condition : str
    net : nn.Module
        ``condition -> 2 * latent_features``.
    latent_features : int
    prior_trainable : bool
        Learn the prior's location and scale (initialised at N(0, I)); else N(0, I).
    min_scale : float

    Examples
    --------
    >>> from vaekit.nn import MLP
    >>> p, _ = TopGenBlock("z", "h", MLP(3, 4), 2, prior_trainable=False).prior([], 5)
    >>> p.mean.shape, float(p.stddev.max())
    (torch.Size([5, 2]), 1.0)
    """

    def __init__(self, name: str, condition: str, net: nn.Module, latent_features: int, prior_trainable: bool = False,
                 min_scale: float = 1e-4) -> None:
        super().__init__(name, (), condition, latent_features, min_scale, _module("net", net, name, optional=False))
        loc, raw = torch.zeros(self.latent_features), torch.zeros(self.latent_features)
        if prior_trainable:
            self.prior_loc, self.prior_raw_scale = nn.Parameter(loc), nn.Parameter(raw)
        else:
            self.register_buffer("prior_loc", loc)
            self.register_buffer("prior_raw_scale", raw)

    def prior(self, inputs: list[Tensor], n: int) -> tuple[DiagonalNormal, Any]:
        scale = torch.exp(self.prior_raw_scale)  # exp(0) = 1 at initialisation
        return DiagonalNormal(self.prior_loc.expand(n, -1), scale.expand(n, -1)), None

    def posterior(self, condition: Tensor, inputs: list[Tensor], state: Any) -> DiagonalNormal:
        return _gaussian(self.net(condition), self.latent_features, self.min_scale, f"net of {self.name!r}")


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
        ``h -> 2 * latent_features + W``.
    posterior_net : nn.Module
        ``cat(h, c) -> 2 * latent_features``.
    z_projection : nn.Module
        ``z -> W``.
    latent_features : int
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
                 z_projection: nn.Module, latent_features: int, residual_net: nn.Module | None = None,
                 min_scale: float = 1e-4) -> None:
        super().__init__(name, inputs, condition, latent_features, min_scale)
        self.prior_net = _module("prior_net", prior_net, name, optional=False)
        self.posterior_net = _module("posterior_net", posterior_net, name, optional=False)
        self.z_projection = _module("z_projection", z_projection, name, optional=False)
        self.residual_net = _module("residual_net", residual_net, name)

    def prior(self, inputs: list[Tensor], n: int) -> tuple[DiagonalNormal, Any]:
        h, out, d = inputs[0], self.prior_net(inputs[0]), 2 * self.latent_features
        if out.shape[1] != d + h.shape[1]:
            raise ValueError(f"prior_net of {self.name!r} returned {out.shape[1]} features but needs 2 * latent_features + "
                             f"width = {d} + {h.shape[1]} = {d + h.shape[1]} (prior location, raw scale, residual)")
        return _gaussian(out[:, :d], self.latent_features, self.min_scale, f"prior_net of {self.name!r}"), out[:, d:]

    def posterior(self, condition: Tensor, inputs: list[Tensor], state: Any) -> DiagonalNormal:
        return _gaussian(self.posterior_net(torch.cat([inputs[0], condition], 1)), self.latent_features, self.min_scale,
                         f"posterior_net of {self.name!r}")

    def output(self, z: Tensor, inputs: list[Tensor], state: Any) -> Tensor:
        return self.residual_net(inputs[0] + state + self.z_projection(z))


class OutputBlock(Block):
    """Last block: ``net(input)`` gives the parameters of ``likelihood`` over ``x``.

    ``net`` returns ``likelihood.params_per_dim * prod(data_shape)`` numbers per example
    (flat, or already shaped like the data with channels multiplied).

    >>> from vaekit.nn import MLP
    >>> from vaekit.distributions import Bernoulli
    >>> OutputBlock("x_out", "z", MLP(2, 6), Bernoulli()).likelihood
    Bernoulli()
    """

    def __init__(self, name: str, inputs: str, net: nn.Module, likelihood: Likelihood) -> None:
        super().__init__(name, inputs, _module("net", net, name, optional=False))
        if not isinstance(likelihood, Likelihood):
            raise TypeError(f"likelihood of block {name!r} must be a vaekit Likelihood (e.g. vaekit.distributions.Bernoulli), "
                            f"got {type(likelihood).__name__}")
        self.likelihood = likelihood
