r"""Sylvester normalizing flows (van den Berg, Hasenclever, Tomczak & Welling 2018), amortized.

Each step is a planar flow with an :math:`M`-dimensional bottleneck,

.. math:: f(z) = z + Q R\,h(\tilde R Q^\top z + b),

where :math:`Q \in \mathbb R^{d\times M}` has orthonormal columns, :math:`R, \tilde R` are
upper-triangular :math:`M\times M` and :math:`h = \tanh`. By Sylvester's determinant
identity and the triangularity of :math:`\tilde R R`,

.. math:: \log\left|\det\frac{\partial f}{\partial z}\right|
          = \sum_{i=1}^M \log\left|1 + \tilde R_{ii} R_{ii}\,h'\big((\tilde R Q^\top z + b)_i\big)\right|.

The step is invertible when :math:`\tilde R_{ii} R_{ii} > -1/\|h'\|_\infty = -1`, enforced as
in the paper with :math:`R_{ii} = \tanh(\cdot)`, :math:`\tilde R_{ii} = \tanh(\cdot)`. All of
:math:`R, \tilde R` (their strict upper triangles are the upper and the transposed lower
triangle of one amortized :math:`M\times M` matrix), the diagonals, :math:`b` and :math:`Q`
come from the context for every datapoint. :math:`Q` is built three ways:

``"orthogonal"`` (O-SNF)
    an amortized :math:`d\times M` matrix, scaled to unit Frobenius norm and
    orthogonalised by the iteration of Björck & Bowie (1971),
    :math:`Q \leftarrow Q\,(I + \tfrac12(I - Q^\top Q))`, run until
    :math:`\max|Q^\top Q - I| < \sqrt{\varepsilon}` (checked every 4 steps) and then two
    more steps (quadratic convergence takes it to rounding level), at most
    ``bjorck_max_steps`` steps. Inside
    :func:`torch.func.vmap`, where a data-dependent stop is impossible, all
    ``bjorck_max_steps`` steps run.
``"householder"`` (H-SNF)
    :math:`M = d` and :math:`Q = H_1\cdots H_K`, a product of ``n_householder`` amortized
    reflections :math:`H_k = I - 2 v_k v_k^\top / \|v_k\|^2`.
``"triangular"`` (T-SNF)
    :math:`M = d` and :math:`Q` alternates between the identity and the reversal
    permutation from step to step.

The inverse has no closed form, so the returned distribution only scores its own samples
(``log_prob`` raises ``NotImplementedError``; use
:func:`~vaekit.distributions.rsample_and_log_prob`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..._checks import check_int
from ._base import FlowPosterior, StepTransform

__all__ = ["SylvesterFlow", "SylvesterFlowStep", "SylvesterTransform", "SYLVESTER_KINDS"]

SYLVESTER_KINDS = ("orthogonal", "householder", "triangular")


def _bjorck_step(q: Tensor, eye: Tensor) -> Tensor:
    return q @ (1.5 * eye - 0.5 * q.mT @ q)


def _orthogonalize(a: Tensor, max_steps: int) -> Tensor:
    """Björck-Bowie iteration towards the nearest matrix with orthonormal columns; (..., d, M)."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    q = a / a.flatten(-2).norm(dim=-1)[..., None, None].clamp_min(torch.finfo(a.dtype).tiny)
    tol, check = torch.finfo(a.dtype).eps ** 0.5, True
    for step in range(1, max_steps + 1):
        q = _bjorck_step(q, eye)
        if check and step % 4 == 0:  # a host sync every 4 steps, not every step
            try:
                done = bool(((q.mT @ q - eye).abs().amax() < tol).all())
            except RuntimeError:  # under torch.func.vmap: no data-dependent stop, run every step
                check, done = False, False
            if done:  # quadratic convergence: two more steps reach rounding level
                return _bjorck_step(_bjorck_step(q, eye), eye)
    return q


def _householder(v: Tensor) -> Tensor:
    """Product of the reflections ``I - 2 v v^T / |v|^2`` for v in (..., K, d); returns (..., d, d)."""
    d = v.shape[-1]
    q = torch.eye(d, dtype=v.dtype, device=v.device).expand(*v.shape[:-2], d, d)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
    for k in range(v.shape[-2]):
        vk = v[..., k, :]
        q = q - 2 * (q @ vk.unsqueeze(-1)) @ vk.unsqueeze(-2)
    return q


def _matvec(m: Tensor, x: Tensor) -> Tensor:
    """``m @ x`` for m (*batch, a, b) and x (*sample, *batch, b)."""
    return (x.unsqueeze(-2) @ m.mT).squeeze(-2)


class SylvesterTransform(StepTransform):
    r""":math:`z \mapsto z + Q R\,\tanh(\tilde R Q^\top z + b)` for one batch of parameters (see the module docstring).

    Parameters
    ----------
    q : Tensor of shape (*batch, d, M), or None
        Orthonormal columns; None for the triangular kind, whose :math:`Q` is the identity
        (``reverse=False``) or the reversal permutation (``reverse=True``).
    r, r_tilde : Tensor of shape (*batch, M, M)
        Upper triangular.
    b : Tensor of shape (*batch, M)
    diag : Tensor of shape (*batch, M)
        :math:`\tilde R_{ii} R_{ii}`.
    reverse : bool
    """

    def __init__(self, q: Tensor | None, r: Tensor, r_tilde: Tensor, b: Tensor, diag: Tensor,
                 reverse: bool = False) -> None:
        super().__init__()
        self.q, self.r, self.r_tilde, self.b, self.diag, self.reverse = q, r, r_tilde, b, diag, reverse

    def _to_bottleneck(self, z: Tensor) -> Tensor:  # Q^T z
        if self.q is None:
            return z.flip(-1) if self.reverse else z
        return _matvec(self.q.mT, z)

    def _from_bottleneck(self, v: Tensor) -> Tensor:  # Q v
        if self.q is None:
            return v.flip(-1) if self.reverse else v
        return _matvec(self.q, v)

    def call_and_ladj(self, z: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.tanh(_matvec(self.r_tilde, self._to_bottleneck(z)) + self.b)
        z = z + self._from_bottleneck(_matvec(self.r, h))
        return z, torch.log1p(self.diag * (1 - h.pow(2))).sum(-1)


class SylvesterFlowStep(nn.Module):
    r"""One amortized Sylvester step: linear layers map the context to :math:`R, \tilde R`, their diagonals, :math:`b`
    and (orthogonal, Householder) :math:`Q`; returns a :class:`SylvesterTransform`.

    Parameters
    ----------
    context_features, latent_features : int
    kind : {"orthogonal", "householder", "triangular"}
    bottleneck : int
        :math:`M` (``latent_features`` unless ``kind="orthogonal"``).
    n_householder : int
        Reflections (``kind="householder"``).
    reverse : bool
        For ``kind="triangular"``: :math:`Q` is the reversal permutation instead of the identity.
    """

    bjorck_max_steps: int = 100

    def __init__(self, context_features: int, latent_features: int, kind: str, bottleneck: int,
                 n_householder: int = 2, reverse: bool = False) -> None:
        super().__init__()
        c, d, m = context_features, latent_features, bottleneck
        self.kind, self.latent_features, self.bottleneck = kind, d, m
        self.n_householder, self.reverse = n_householder, reverse
        if kind == "orthogonal":
            self.amortize_q: nn.Linear | None = nn.Linear(c, d * m)
        elif kind == "householder":
            self.amortize_q = nn.Linear(c, n_householder * d)
        else:
            self.amortize_q = None
        self.amortize_r = nn.Linear(c, m * m)
        self.amortize_diag = nn.Linear(c, 2 * m)
        self.amortize_b = nn.Linear(c, m)

    def forward(self, context: Tensor) -> SylvesterTransform:
        m, d = self.bottleneck, self.latent_features
        full = self.amortize_r(context).unflatten(-1, (m, m))
        diag_r, diag_rt = torch.tanh(self.amortize_diag(context).unflatten(-1, (2, m))).unbind(-2)
        q = None
        if self.kind == "orthogonal":
            q = _orthogonalize(self.amortize_q(context).unflatten(-1, (d, m)), self.bjorck_max_steps)
        elif self.kind == "householder":
            q = _householder(self.amortize_q(context).unflatten(-1, (self.n_householder, d)))
        return SylvesterTransform(q, full.triu(1) + torch.diag_embed(diag_r), full.mT.triu(1) + torch.diag_embed(diag_rt),
                                  self.amortize_b(context), diag_r * diag_rt, self.reverse)


class SylvesterFlow(FlowPosterior):
    r"""Amortized Sylvester-flow posterior :math:`q(z_T|x)`: orthogonal, Householder or triangular.

    See the module docstring for the step, its log-determinant, the invertibility
    constraint and how each ``kind`` builds :math:`Q`. The base :math:`q_0(z_0|x)` is a
    :class:`~vaekit.distributions.DiagonalGaussian` of the context.

    Parameters
    ----------
    context_features : int
        Width ``C`` of the encoder features.
    latent_features : int
        Dimension ``d`` of ``z``.
    kind : {"orthogonal", "householder", "triangular"}
        How :math:`Q` is built.
    n_flows : int
        Number of Sylvester steps ``T`` (>= 1).
    n_orthogonal : int, optional
        Bottleneck :math:`M` of the orthogonal kind, ``1 <= M <= d`` (default ``d``).
        Only for ``kind="orthogonal"``.
    n_householder : int
        Reflections per step for ``kind="householder"`` (>= 1).

    Examples
    --------
    >>> q = SylvesterFlow(8, 4, kind="householder", n_flows=2, n_householder=3)
    >>> z, log_q = q(torch.randn(5, 8)).rsample_and_log_prob((2,))
    >>> z.shape, log_q.shape
    (torch.Size([2, 5, 4]), torch.Size([2, 5]))
    """

    _legacy_stacked = ("amortize_q", "amortize_r", "amortize_diag", "amortize_b")

    def __init__(self, context_features: int, latent_features: int,
                 kind: Literal["orthogonal", "householder", "triangular"] = "orthogonal", n_flows: int = 4,
                 n_orthogonal: int | None = None, n_householder: int = 2) -> None:
        if kind not in SYLVESTER_KINDS:
            raise ValueError(f"kind must be one of {list(SYLVESTER_KINDS)}, got {kind!r}")
        super().__init__(context_features, latent_features, n_flows)
        d = self.latent_features
        self.kind = kind
        m = d
        if kind == "orthogonal" and n_orthogonal is not None:
            m = check_int("n_orthogonal", n_orthogonal, 1)
            if m > d:
                raise ValueError(f"n_orthogonal must be <= latent_features={d}, got {n_orthogonal}")
        if kind == "householder":
            self.n_householder = check_int("n_householder", n_householder, 1)
        self.bottleneck = m
        self.transforms = nn.ModuleList(
            SylvesterFlowStep(self.context_features, d, kind, m, n_householder, reverse=t % 2 == 1)
            for t in range(self.n_flows))
