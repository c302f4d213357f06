"""The hierarchical VAE: an ordered list of blocks, validated as a graph, implementing the model protocol."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..._checks import InvalidArgumentError, check_float, check_int
from ...distributions import RelaxedLayer, kl_divergence
from ..base import ElboTerms, LatentVariableModel
from ._common import latent_size
from ._validation import check_shapes, validate_graph
from .blocks import Block, OutputBlock
from .generative import GenerativeBlock, Layer

__all__ = ["HierarchicalVAE", "Trace", "Temperature", "layer_temperatures", "linear_temperatures"]

#: A temperature setting: one number for every latent layer, one number per layer (top first),
#: a schedule ``"linear:START:END"`` or a callable ``f(layer index) -> float``.
Temperature = float | Sequence[float] | str | Callable[[int], float]


def linear_temperatures(start: float, end: float, n_layers: int) -> list[float]:
    """``n_layers`` temperatures from ``start`` (the top layer, first in the model's order) to ``end`` (the bottom one).

    >>> linear_temperatures(0.6, 0.9, 4)
    [0.6, 0.7, 0.8, 0.9]
    >>> linear_temperatures(0.6, 0.9, 1)
    [0.6]
    """
    start, end = check_float("start", start, 0), check_float("end", end, 0)
    n_layers = check_int("n_layers", n_layers)
    if n_layers == 1:
        return [start]
    return [round(start + (end - start) * i / (n_layers - 1), 12) for i in range(n_layers)]


def layer_temperatures(temperature: Temperature, latent_names: Sequence[str], *, name: str = "temperature",
                       owner: str = "the model") -> list[float]:
    """One temperature per latent layer from any setting: the one check behind every ``temperature`` argument.

    Parameters
    ----------
    temperature : float, sequence of float, str or callable
        A number ``>= 0`` for every layer; a list with one number per layer in the order of
        ``latent_names`` (top first; a list of one number is that number for every layer);
        a schedule ``"linear:START:END"`` (:func:`~vaekit.models.hierarchical.linear_temperatures` from the top layer to
        the bottom one); or a callable ``f(layer index) -> float``.
    latent_names : sequence of str
        The latent layers, top first (``model.latent_names``).
    name : str
        The argument's name in error messages.
    owner : str
        What the layers belong to, in error messages (e.g. the model's class name).

    Returns
    -------
    list of float
        ``len(latent_names)`` temperatures, top layer first.

    Raises
    ------
    vaekit.InvalidArgumentError
        Naming ``name``, the value and what is accepted: a negative or non-finite number, a
        list whose length is not the number of layers (the message names the layers), an
        unknown or malformed schedule, or a value of another type.

    Examples
    --------
    >>> layer_temperatures("linear:1:0.5", ["z2", "z1"]), layer_temperatures(0.7, ["z2", "z1"])
    ([1.0, 0.5], [0.7, 0.7])
    >>> layer_temperatures([1.0, 0.8, 0.6], ["z2", "z1"])
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: temperature lists one value per latent layer of the model (2: z2, z1, top first), got 3 values [1.0, 0.8, 0.6]
    """
    names = list(latent_names)
    n = len(names)
    if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
        return [check_float(name, temperature, 0)] * n
    if isinstance(temperature, str):
        parts = temperature.split(":")
        if len(parts) != 3 or parts[0] != "linear":
            raise InvalidArgumentError(f"{name} must be a number, a list of numbers or a schedule 'linear:START:END', "
                                       f"got {temperature!r}")
        try:
            start, end = float(parts[1]), float(parts[2])
        except ValueError:
            raise InvalidArgumentError(f"{name} schedule {temperature!r} needs numbers: 'linear:START:END', e.g. 'linear:1:0.6'") from None
        return linear_temperatures(check_float(name, start, 0), check_float(name, end, 0), max(n, 1))[:n]
    if callable(temperature):
        values = [temperature(i) for i in range(n)]
    elif isinstance(temperature, (Sequence, Tensor)):
        values = [v.item() if isinstance(v, Tensor) else v for v in temperature]
        if not values:
            raise InvalidArgumentError(f"{name} must be a number or a non-empty list of numbers, got an empty list")
    else:
        raise InvalidArgumentError(f"{name} must be a number, a list of numbers (one per latent layer), a schedule "
                                   f"'linear:START:END' or a callable, got {type(temperature).__name__}")
    values = [check_float(name, v, 0) for v in values]
    if len(values) == 1 and not callable(temperature):
        values = values * n
    if len(values) != n:
        raise InvalidArgumentError(f"{name} lists one value per latent layer of {owner} ({n}: {', '.join(names)}, top first), "
                                   f"got {len(values)} values {values}")
    return values


@dataclass
class Trace:
    """What one pass through the blocks computed (see the ``*_pass`` methods of :class:`HierarchicalVAE`).

    Attributes
    ----------
    computed : dict of str to Tensor
        Output of every block that ran (and ``"x"`` where the encoder ran), leading dimension N.
    z : dict of str to Tensor of shape (N, *latent_shape)
        The latent of every generative block, top first.
    priors, posteriors : dict of str to Distribution
        Per generative block (a :class:`~vaekit.distributions.DiagonalNormal`,
        :class:`~vaekit.distributions.DiagonalLaplace` or
        :class:`~vaekit.distributions.RelaxedLayer`, by the block's ``latent_family``); a
        posterior only where one was computed (the posterior layers of ``posterior_pass`` and
        ``mixed_pass``).
    params : Tensor
        The likelihood's parameters from the output block, shape (N, params_per_dim * C, ...).
    coords : dict of str to (Tensor, Tensor)
        The stable coordinates of every relaxed categorical posterior draw of this pass and
        their log-density under the posterior
        (:meth:`~vaekit.distributions.RelaxedLayer.rsample_with_coords`), which
        :meth:`log_densities` scores.
    """

    computed: dict[str, Tensor]
    z: dict[str, Tensor] = field(default_factory=dict)
    priors: dict[str, Distribution] = field(default_factory=dict)
    posteriors: dict[str, Distribution] = field(default_factory=dict)
    params: Tensor | None = None
    coords: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)

    def add(self, name: str, layer: Layer) -> None:
        """Record latent layer ``name``; later blocks read its output from :attr:`computed`."""
        self.z[name], self.priors[name], self.computed[name] = layer.z, layer.prior, layer.output
        if layer.posterior is not None:
            self.posteriors[name] = layer.posterior
        if layer.coords is not None:
            self.coords[name] = layer.coords

    def log_densities(self, name: str) -> tuple[Tensor, Tensor]:
        r"""``(log q, log p)`` of layer ``name``'s posterior draw, each of shape (N,).

        A Gaussian or Laplace latent is scored where it is. A relaxed categorical draw is
        scored by both distributions at its stable coordinates (``log z`` for
        Gumbel-Softmax, :math:`\lambda` before softmax++ for IGR;
        :meth:`~vaekit.distributions.RelaxedLayer.log_prob_coords`): the densities of the
        same variable with respect to the same base measure, whose difference is
        :math:`\log q(z) - \log p(z)` and stays finite where coordinates of ``z`` underflow
        to exact zeros (small temperatures, large logits). A prior that does not share the
        posterior's coordinates (a custom block pairing other families) is scored on the simplex.
        """
        q, p, z = self.posteriors[name], self.priors[name], self.z[name]
        if name in self.coords and isinstance(q, RelaxedLayer) and q.shares_coordinates(p):
            coords, log_q = self.coords[name]
            return log_q, log_q if p is q else p.log_prob_coords(coords)  # type: ignore[attr-defined]
        return q.log_prob(z), p.log_prob(z)

    def log_prior(self) -> Tensor:
        """log p(z) of the latents of this pass: the sum over layers of each prior at its latent, shape (N,)."""
        return sum(self.priors[k].log_prob(z) for k, z in self.z.items())  # type: ignore[return-value]


class HierarchicalVAE(LatentVariableModel):
    """A hierarchical (ladder / VDVAE-style top-down) VAE composed of blocks.

    The blocks run in list order. Those before the first generative block (or the first
    block without inputs, such as a :class:`TopSimpleBlock`) form the encoder (bottom-up,
    from ``"x"``); the rest form the generator (top-down), which may
    read encoder outputs only as a generative block's ``condition``, so that it also runs
    without data (sampling). Latents are ``{block_name: tensor}`` in generative order
    (top first), one per generative block, each of shape (..., *latent_shape).

    The blocks run in one of four passes, one method per mode (as VDVAE's decoder has
    ``forward``, ``forward_uncond`` and ``forward_manual_latents``), each returning a
    :class:`Trace`; every protocol method is a few lines over one of them:

    - :meth:`posterior_pass` (x): inference, z ~ q top-down: ``elbo_terms``,
      ``log_weights``, ``encode``, ``forward``;
    - :meth:`latent_pass` (z): evaluation at given latents: ``decode``, ``log_prior``,
      ``log_joint``;
    - :meth:`prior_pass` (n, temperature): generation: ``sample_prior``, ``sample``;
    - :meth:`mixed_pass` (x, n_posterior_layers, temperature): the top layers from the
      posterior, the rest from the prior: ``sample_mixed``.

    Each pass runs the encoder (where it has ``x``), then the generator blocks in order;
    a latent layer runs through the matching step of its block
    (:meth:`GenerativeBlock.posterior_step`, ``latent_step``, ``prior_step``).

    Parameters
    ----------
    blocks : list of Block
        First block reads ``"x"``; last block is an :class:`OutputBlock`; each block reads
        only names of earlier blocks; at least one generative block; unique names.
    data_shape : sequence of int
        Shape of one example.
    kl : {"auto", "analytic", "mc"}
        KL per layer in :meth:`elbo_terms`: closed form (Gaussian pairs) or single sample.

    Raises
    ------
    ValueError
        When the graph breaks a rule; the message names the block and the missing name.

    Examples
    --------
    >>> import torch
    >>> from vaekit.models.hierarchical.presets import ladder_vae
    >>> model = ladder_vae([12], hidden=(8, 6), latent=(4, 2))
    >>> model.latent_names, model.latent_dims
    (('z2', 'z1'), {'z2': 2, 'z1': 4})
    >>> x = torch.bernoulli(torch.full((3, 12), 0.5))
    >>> model.log_weights(x, k=5).shape
    torch.Size([5, 3])
    >>> sorted(model.elbo_terms(x).kl)
    ['z1', 'z2']
    >>> trace = model.mixed_pass(x, n_posterior_layers=1, temperature=0)   # z2 from q(z2 | x), z1 the prior mean
    >>> list(trace.posteriors), torch.equal(trace.z["z1"], trace.priors["z1"].mean)
    (['z2'], True)
    """

    def __init__(self, blocks: list[Block], data_shape: Sequence[int], kl: Literal["auto", "analytic", "mc"] = "auto") -> None:
        super().__init__()
        data_shape = tuple(data_shape)
        if not data_shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in data_shape):
            raise ValueError(f"data_shape must be a non-empty list of positive ints, got {list(data_shape)}")
        if kl not in ("auto", "analytic", "mc"):
            raise ValueError(f"kl must be 'auto', 'analytic' or 'mc', got {kl!r}")
        blocks = list(blocks)
        split = validate_graph(blocks)
        if kl == "analytic":  # Gumbel-Softmax has no closed-form KL: refused here, not at the first elbo_terms
            gs = [b.name for b in blocks if b.generative and b.latent_family == "gs"]  # type: ignore[attr-defined]
            if gs:
                raise InvalidArgumentError(f"kl='analytic' needs a closed-form KL in every latent layer, but block(s) "
                                           f"{gs} have latent_family='gs' (Gumbel-Softmax, no closed form); use "
                                           "kl='auto' (closed form where there is one, else one sample) or 'mc'")
        self.blocks = nn.ModuleDict({b.name: b for b in blocks})
        self.split = split
        self.data_shape, self.kl_method = data_shape, kl
        gen = [b for b in blocks if b.generative]
        self.latent_names = tuple(b.name for b in gen)
        self.latent_dims = {b.name: latent_size(b.latent_shape) for b in gen}
        check_shapes(self)

    # ------------------------------------------------------------------ structure
    @property
    def encoder_blocks(self) -> list[Block]:
        """Blocks before the generator (they read ``x``, directly or not)."""
        return list(self.blocks.values())[: self.split]

    @property
    def generator_blocks(self) -> list[Block]:
        """Blocks from the first generative (or top) block on, ending with the output block."""
        return list(self.blocks.values())[self.split:]

    @property
    def output_block(self) -> OutputBlock:
        return list(self.blocks.values())[-1]  # type: ignore[return-value]

    # ------------------------------------------------------------------ the passes, one per mode
    def posterior_pass(self, x: Tensor, *, mean: bool = False, replace: Mapping[str, Tensor] | None = None) -> Trace:
        """Inference: the encoder bottom-up, then every layer top-down draws ``z ~ q(z | x, layers above)``.

        Parameters
        ----------
        x : Tensor of shape (N, *data_shape)
        mean : bool
            Take each posterior's mean instead of a draw (what :meth:`encode` conditions on).
        replace : dict of str to Tensor of shape (N, ...), optional
            Deterministic blocks whose output is taken as given instead of computed; the
            blocks after them read it (what the analysis tools perturb).

        Returns
        -------
        Trace
            With every layer's prior, posterior and latent.
        """
        self.check_batch_shape(x)  # (a wrong shape would fail deep inside a block, naming no data shape)
        replace = dict(replace or {})
        bad = [k for k in replace if k not in self.blocks or self.blocks[k].generative]
        if bad:
            raise ValueError(f"replace names deterministic blocks of this model, got {bad}; "
                             f"they are {[k for k, b in self.blocks.items() if not b.generative]}")
        computed, n = self._bottom_up(x, replace), x.shape[0]
        return self._top_down(computed, n, lambda block, layer: block.posterior_step(computed, n, mean=mean), replace)

    def latent_pass(self, z: dict[str, Tensor]) -> Trace:
        """Evaluation at given latents: every layer's prior at the latents above it, and the output.

        Parameters
        ----------
        z : dict of str to Tensor of shape (N, *latent_shape)
            One entry per latent layer.

        Returns
        -------
        Trace
            With every layer's prior (no posteriors); ``trace.z`` is ``z``.
        """
        lead = self._check_latents(z)
        if len(lead) != 1:
            raise ValueError(f"latent_pass takes latents of shape (N, *latent_shape), got leading dims {lead}; "
                             "decode, log_prior and log_joint take any")
        computed: dict[str, Tensor] = {}
        n = lead[0]
        return self._top_down(computed, n, lambda block, layer: block.latent_step(computed, n, z[block.name]))

    def prior_pass(self, n: int, temperature: Temperature = 1.0) -> Trace:
        """Generation: every layer top-down draws from its prior with its scale tempered.

        Parameters
        ----------
        n : int
            Number of examples.
        temperature : float, list of float (one per layer, top first), str or callable(layer index) -> float
            Any setting :func:`~vaekit.models.hierarchical.layer_temperatures` takes (e.g. ``"linear:1:0.5"``).
            Prior noise multiplier; 0 takes every prior's mean (a relaxed categorical layer's
            draw at zero noise, :meth:`~vaekit.distributions.RelaxedLayer.point_estimate`).

        Returns
        -------
        Trace
            With every layer's prior and latent (no posteriors).
        """
        n, temps = check_int("n", n), self._temperatures(temperature)
        computed: dict[str, Tensor] = {}
        return self._top_down(computed, n, lambda block, layer: block.prior_step(computed, n, temps[layer]))

    def mixed_pass(self, x: Tensor, n_posterior_layers: int, temperature: Temperature = 1.0) -> Trace:
        """Mixed sampling: the top ``n_posterior_layers`` layers draw from the posterior given ``x``, the rest from the prior.

        Parameters
        ----------
        x : Tensor of shape (N, *data_shape)
        n_posterior_layers : int
            0 ... number of latent layers.
        temperature : as in :meth:`prior_pass` (used by the prior layers)

        Returns
        -------
        Trace
            With posteriors for the top ``n_posterior_layers`` layers only.
        """
        n_post = check_int("n_posterior_layers", n_posterior_layers, 0)
        if n_post > len(self.latent_names):
            raise ValueError(f"n_posterior_layers must be <= the number of latent layers ({len(self.latent_names)}), got {n_post}")
        temps = self._temperatures(temperature)
        computed, n = self._bottom_up(x), x.shape[0]

        def step(block: GenerativeBlock, layer: int) -> Layer:
            if layer < n_post:
                return block.posterior_step(computed, n)
            return block.prior_step(computed, n, temps[layer])

        return self._top_down(computed, n, step)

    # ------------------------------------------------------------------ what the passes share
    def _bottom_up(self, x: Tensor, replace: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The encoder's outputs (and ``"x"``); blocks in ``replace`` output the tensor given there."""
        computed, replace = {"x": x}, replace or {}
        for block in self.encoder_blocks:
            computed[block.name] = replace[block.name] if block.name in replace else block.compute(computed, x.shape[0])
        return computed

    def _top_down(self, computed: dict[str, Tensor], n: int, step: Callable[[GenerativeBlock, int], Layer],
                  replace: Mapping[str, Tensor] | None = None) -> Trace:
        """Run the generator into ``computed``: deterministic blocks as they are (or as in ``replace``), latent layer ``i`` (top first) by ``step(block, i)``."""
        trace, replace = Trace(computed), replace or {}
        for block in self.generator_blocks:
            if block.generative:
                trace.add(block.name, step(block, len(trace.z)))  # type: ignore[arg-type]
            else:
                computed[block.name] = replace[block.name] if block.name in replace else block.compute(computed, n)
        trace.params = computed[self.output_block.name]
        return trace

    def _temperatures(self, temperature: Temperature) -> list[float]:
        return layer_temperatures(temperature, self.latent_names, owner=type(self).__name__)

    def data_distribution(self, params: Tensor, lead: tuple[int, ...] | None = None) -> Distribution:
        """``p(x | ...)`` from the output block's parameters: what every method decodes with.

        Parameters
        ----------
        params : Tensor of shape (N, ...)
            The output block's output for N examples (a :class:`Trace`'s ``params``).
        lead : tuple of int, optional
            The leading (sample, batch) shape of the distribution's batch, with product N
            (default ``(N,)``).

        Returns
        -------
        Distribution
            The likelihood with batch shape ``lead`` and event shape ``data_shape``.

        Raises
        ------
        ValueError
            When the output block's size does not fit the likelihood and ``data_shape``.

        Examples
        --------
        >>> from vaekit.models.hierarchical import ladder_vae
        >>> model = ladder_vae([6], hidden=(4, 3), latent=(3, 2))
        >>> px = model.data_distribution(model.posterior_pass(torch.zeros(2, 6), mean=True).params)
        >>> px.batch_shape, px.event_shape
        (torch.Size([2]), torch.Size([6]))
        """
        lead = (params.shape[0],) if lead is None else tuple(lead)
        lik = self.output_block.likelihood
        want = lik.params_per_dim * math.prod(self.data_shape)
        if params[0].numel() != want:
            raise ValueError(f"output block {self.output_block.name!r} returns {params[0].numel()} numbers per example but "
                             f"{type(lik).__name__} needs params_per_dim * prod(data_shape) = {want}")
        return lik(params.reshape(*lead, lik.params_per_dim * self.data_shape[0], *self.data_shape[1:]), len(self.data_shape))

    def _check_latents(self, z: dict[str, Tensor]) -> tuple[int, ...]:
        """The leading dims shared by every latent, or an error naming the missing or misshapen one."""
        if not isinstance(z, Mapping):
            raise TypeError(f"z must be a dict {{latent name: tensor}} with keys {list(self.latent_names)}, got {type(z).__name__}")
        missing = [k for k in self.latent_names if k not in z]
        if missing:
            raise ValueError(f"z lacks the latent(s) {missing}; this model's latents are {list(self.latent_names)}")
        extra = [k for k in z if k not in self.latent_names]
        if extra:  # (a typo, or latents of another model: ignoring them would hide it)
            raise ValueError(f"z has key(s) {extra} that are not latents of this model; its latents are "
                             f"{list(self.latent_names)}")
        leads = {}
        for k in self.latent_names:
            shape = self.blocks[k].latent_shape
            leads[k] = tuple(z[k].shape[: max(z[k].dim() - len(shape), 0)])
            if tuple(z[k].shape[len(leads[k]):]) != shape:
                raise ValueError(f"z[{k!r}] has shape {tuple(z[k].shape)}; latent {k!r} needs shape (..., {', '.join(map(str, shape))})")
        if len(set(leads.values())) > 1:
            raise ValueError(f"the latents must share their leading (sample, batch) dims, got {leads}")
        return leads[self.latent_names[0]]

    def _flat(self, z: dict[str, Tensor]) -> tuple[dict[str, Tensor], tuple[int, ...]]:
        """Latents with any leading (sample, batch) dims flattened into N, and those dims."""
        lead = self._check_latents(z)
        return {k: z[k].reshape(-1, *self.blocks[k].latent_shape) for k in self.latent_names}, lead

    def forward(self, x: Tensor) -> tuple[dict[str, Tensor], dict[str, tuple[Distribution, Distribution]]]:
        """Computed outputs of every block and ``{block_name: (prior, posterior)}`` per latent layer."""
        tr = self.posterior_pass(x)
        return tr.computed, {k: (tr.priors[k], tr.posteriors[k]) for k in self.latent_names}

    def latent_pairs(self, x: Tensor) -> dict[str, tuple[Distribution, Distribution]]:
        """Each layer's ``(prior, posterior)`` in one posterior pass: the prior given the draws above it."""
        return self(x)[1]

    # ------------------------------------------------------------------ protocol
    def validate_data(self, x, name: str = "x") -> Tensor:  # noqa: D102 - see base class
        x = super().validate_data(x, name)
        self.output_block.likelihood.validate(x, name)
        return x

    def elbo_terms(self, x: Tensor) -> ElboTerms:
        tr = self.posterior_pass(x)
        kl, log_q, log_p = {}, {}, {}
        for k in self.latent_names:
            log_q[k], log_p[k] = tr.log_densities(k)  # a relaxed layer's: at the draw's stable coordinates
            kl[k] = kl_divergence(tr.posteriors[k], tr.priors[k], tr.z[k], log_q[k], self.kl_method, log_p=log_p[k])
        rec = self.data_distribution(tr.params, (x.shape[0],)).log_prob(x)
        return ElboTerms(rec=rec, kl=kl, log_q=log_q, log_p=log_p)

    def log_weights(self, x: Tensor, k: int = 1) -> Tensor:
        self.check_batch_shape(x)
        k, b = check_int("k", k), x.shape[0]
        xk = x.unsqueeze(0).expand(k, *x.shape).reshape(k * b, *x.shape[1:])
        tr = self.posterior_pass(xk)
        lw = self.data_distribution(tr.params, (k * b,)).log_prob(xk)
        for name in self.latent_names:
            log_q, log_p = tr.log_densities(name)
            lw = lw + log_p - log_q
        return lw.reshape(k, b)

    @property
    def simplex_latents(self) -> dict[str, str]:
        """The relaxed categorical layers, ``{name: latent_family}`` (``"gs"`` or ``"igr_i"``): AIS refuses them."""
        return {k: self.blocks[k].latent_family for k in self.latent_names if self.blocks[k].relaxed}

    def encode(self, x: Tensor, *, sample: bool = False) -> dict[str, Distribution]:
        """Posterior of every layer, batch shape (batch,).

        A lower layer's posterior depends on the layers above: it is the one given their
        posterior means (default) or given one posterior draw (``sample=True``).
        """
        return dict(self.posterior_pass(x, mean=not sample).posteriors)

    def decode(self, z: dict[str, Tensor]) -> Distribution:
        """``p(x | z)`` with batch shape = the leading dims of the latents."""
        flat, lead = self._flat(z)
        return self.data_distribution(self.latent_pass(flat).params, lead)

    def log_prior(self, z: dict[str, Tensor]) -> Tensor:
        flat, lead = self._flat(z)
        return self.latent_pass(flat).log_prior().reshape(lead)

    def log_joint(self, x: Tensor, z: dict[str, Tensor]) -> Tensor:
        flat, lead = self._flat(z)
        tr = self.latent_pass(flat)
        return self.data_distribution(tr.params, lead).log_prob(x) + tr.log_prior().reshape(lead)

    def sample_prior(self, n: int, temperature: Temperature = 1.0) -> dict[str, Tensor]:
        """``n`` joint draws of every layer from the (tempered) prior, each of shape (n, *latent_shape)."""
        return self.prior_pass(n, temperature).z

    @torch.no_grad()
    def sample(self, n: int, *, mean: bool = True, temperature: Temperature = 1.0) -> Tensor:
        """Generate ``n`` examples, shape (n, *data_shape).

        Parameters
        ----------
        n : int
        mean : bool
            Mean of p(x | z) instead of a draw.
        temperature : float, list of float (one per layer, top first), str or callable(layer) -> float
            Any setting :func:`~vaekit.models.hierarchical.layer_temperatures` takes (e.g. ``"linear:1:0.5"``).
            Prior noise multiplier; 0 takes every prior's mean (a relaxed categorical layer's
            draw at zero noise, :meth:`~vaekit.distributions.RelaxedLayer.point_estimate`).
        """
        px = self.data_distribution(self.prior_pass(n, temperature).params, (n,))
        return px.mean if mean else px.sample()

    @torch.no_grad()
    def sample_mixed(self, x: Tensor, n_posterior_layers: int, *, temperature: Temperature = 1.0,
                     mean: bool = True) -> Tensor:
        """Posterior draws for the top ``n_posterior_layers`` layers given ``x``, the prior below.

        Parameters
        ----------
        x : Tensor of shape (batch, *data_shape)
        n_posterior_layers : int
            0 ... number of layers (0: unconditional samples, all: reconstructions).
        temperature : as in :meth:`sample` (used by the prior layers)
        mean : bool

        Returns
        -------
        Tensor of shape (batch, *data_shape)
        """
        px = self.data_distribution(self.mixed_pass(x, n_posterior_layers, temperature).params, (x.shape[0],))
        return px.mean if mean else px.sample()
