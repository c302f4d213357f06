"""Group statistics of a :class:`~vaekit.models.group.GroupPredictor`: variance components and group effects.

The classical summaries of a multilevel model (as ``lme4`` / ``statsmodels.MixedLM`` report them),
defined for any predictor and injection mode through the model's mean prediction
``m(x, z) = E[y | x, z]`` (the Gaussian mean, or the class probabilities of a categorical
likelihood), on the outcome's scale:

- **between-group variance** of level ``l``:
  :math:`\\tau_l^2 = \\mathbb E_x\\, \\mathrm{Var}_{z_l \\sim p(z_l)}\\, m(x, z_l)`, the variance of the
  mean prediction over groups drawn from the level's prior, averaged over reference inputs
  ``x`` (the training inputs); the other levels sit at their prior means. For a random-intercept
  model ``y = f(x) + b_g + e`` this is ``Var(b_g)``; when the group effect depends on ``x`` it
  is the average over ``x`` of the group-induced variance.
- **posterior effect variance**: the sample variance (``ddof=1``) over the fitted groups of
  their effect :math:`e_g = \\mathbb E_x[m(x, \\hat z_g) - m(x, \\mu_0)]` at the posterior mean
  :math:`\\hat z_g` (:func:`group_effects`; the analogue of the variance of MixedLM's BLUPs,
  which shrinkage makes smaller than :math:`\\tau^2`).
- **residual variance**: the likelihood's variance, ``scale**2`` of a Gaussian with a learned
  scale; 1 for ``likelihood="gaussian"`` (fixed, not estimated); for a categorical likelihood
  :math:`\\mathbb E \\sum_k p_k (1 - p_k)`, the variance of the one-hot outcome given ``(x, z)``.

With several outputs (or classes) each number is the trace: the sum over outputs. Targets
that the data module standardized (``target_std``) are mapped back: variances times
``target_std**2``, effects times ``target_std``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._checks import check_int
from ..nn.modes import eval_mode

if TYPE_CHECKING:
    from .group import GroupPredictor

__all__ = ["VarianceComponents", "variance_components", "group_effects"]


@dataclass(frozen=True)
class VarianceComponents:
    """Variance components of a group model on the outcome's scale (:func:`variance_components`).

    Attributes
    ----------
    between : dict of str to float
        Per latent level (by level name): the between-group variance under the level's prior.
    between_posterior : dict of str to float
        Per latent level: the sample variance of the fitted groups' posterior-mean effects.
    residual : float
        The likelihood's variance given ``(x, z)``.
    residual_source : {"learned", "fixed", "predicted"}
        ``"learned"``: the learned scale of ``likelihood="gaussian_learned"``; ``"fixed"``: the
        unit variance of ``likelihood="gaussian"`` (times ``target_std**2``), *not estimated*
        from the data; ``"predicted"``: implied by the class probabilities (categorical).
    icc : dict of str to float
        Per level: ``between[level] / (sum(between.values()) + residual)``.
    n_groups : dict of str to int
        Per level: fitted groups behind ``between_posterior``.
    likelihood : str
    units : {"outcome", "model"}
        ``"outcome"``: the data's own units (a standardization was undone, or there was none);
        ``"model"``: the units the model was trained in (no data module or ``target_std``
        was given, so a standardization could not be undone).
    n_draws, n_x : int
        Prior draws and reference inputs of the Monte Carlo estimate.
    """

    between: dict[str, float]
    between_posterior: dict[str, float]
    residual: float
    residual_source: str
    icc: dict[str, float]
    n_groups: dict[str, int]
    likelihood: str
    units: str
    n_draws: int
    n_x: int
    definitions: dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the fields."""
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"variance components ({self.units} units, likelihood {self.likelihood}):"]
        for name in self.between:
            lines.append(f"  between {name}: {self.between[name]:.4g} (prior); {self.between_posterior[name]:.4g} "
                         f"(posterior-mean effects of {self.n_groups[name]} groups); ICC {self.icc[name]:.3f}")
        how = {"learned": "learned", "fixed": "fixed at 1 by likelihood='gaussian', not estimated",
               "predicted": "implied by the predicted probabilities"}[self.residual_source]
        lines.append(f"  residual: {self.residual:.4g} ({how})")
        return "\n".join(lines)


#: What each field of :class:`VarianceComponents` measures (written with it to JSON).
DEFINITIONS = {
    "between": "E_x Var_{z ~ prior} E[y | x, z]: variance over the level's prior of the mean prediction, averaged over "
               "reference inputs (other levels at their prior means)",
    "between_posterior": "sample variance (ddof=1) over fitted groups of E_x[E[y|x, z_g] - E[y|x, prior mean]] at the "
                         "posterior means z_g",
    "residual": "variance of y given (x, z): the Gaussian scale**2, or E sum_k p_k (1 - p_k) for a categorical likelihood "
                "(over the first latent level's prior draws)",
}


def _setup(model: GroupPredictor, data: Any, x: Tensor | None, target_std: Any, max_x: int,
           seed: int) -> tuple[Tensor, Tensor | None, bool]:
    """Reference inputs (at most ``max_x``, a seeded subset), the per-output std to undo (or None) and whether known."""
    from .group import GroupPredictor

    if not isinstance(model, GroupPredictor):
        raise TypeError(f"model must be a GroupPredictor, got {type(model).__name__}")
    max_x = check_int("max_x", max_x)
    if x is None:
        train = getattr(data, "train", None)
        if data is None or not isinstance(train, dict) or "x" not in train:
            raise ValueError("pass the set-up data module the model was trained on (data=..., its training inputs are the "
                             "reference inputs and its target_std undoes a standardization of y) or reference inputs x=...")
        x = train["x"]
    if not isinstance(x, Tensor) or x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty tensor of reference inputs (n, *x_shape), got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if x.shape[0] > max_x:
        x = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:max_x].sort().values]
    known = target_std is not None or data is not None
    if target_std is None and data is not None:
        target_std = getattr(data, "target_std", None)
    K = model.predictor.out_features
    std = None
    if target_std is not None and model.likelihood != "categorical":
        std = torch.as_tensor(target_std, dtype=torch.float64).reshape(-1)
        if std.numel() not in (1, K) or not bool(torch.isfinite(std).all()) or not bool((std > 0).all()):
            raise ValueError(f"target_std must hold 1 or {K} (out_features) finite numbers > 0, got {std.tolist()}")
        std = std.expand(K)
    device = next(model.parameters()).device
    return x.to(device), std, known


def _mean_prediction(model: GroupPredictor, out: Tensor) -> Tensor:
    """``E[y | x, z]`` from the outputs: (rows, -1, K) of Gaussian means or class probabilities."""
    K = model.predictor.out_features
    if model.likelihood == "categorical":
        return torch.softmax(out.double(), -1).reshape(out.shape[0], -1, K)
    return out.double().reshape(out.shape[0], -1, K)


def _predict(model: GroupPredictor, x: Tensor, level: int, z: Tensor, batch_size: int) -> Tensor:
    """Mean predictions for every (z row, x row) pair, latent level index ``level`` set to ``z``, shape (len(z), n_x, S, K)."""
    lat = model.latent
    n, m = x.shape[0], z.shape[0]
    means = [lat.prior_params(i)[0].detach() for i in range(len(model.latent_levels))]
    rows = []
    for start in range(0, m * n, batch_size):
        idx = torch.arange(start, min(start + batch_size, m * n), device=x.device)
        zs = [z[idx // n] if i == level else mu.expand(len(idx), -1) for i, mu in enumerate(means)]
        rows.append(_mean_prediction(model, model.outputs(x[idx % n], zs)))
    pred = torch.cat(rows)
    return pred.reshape(m, n, *pred.shape[1:])


def _matched_normals(m: int, d: int, seed: int) -> Tensor:
    """``m`` standard normal draws in ``d`` dimensions, moment-matched: sample mean 0 and sample covariance (ddof=1) I.

    Exact first and second moments make the Monte Carlo variance of an effect that is linear in
    ``z`` exact, and reduce the error of the others.
    """
    e = torch.randn(m, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    e = e - e.mean(0)
    chol = torch.linalg.cholesky(e.T @ e / (m - 1))
    return torch.linalg.solve_triangular(chol, e.T, upper=False).T


def _level_index(model: GroupPredictor, level: int | str) -> int:
    """Index among the latent levels of ``level`` (a level index or name)."""
    names = model.level_names
    l = names.index(level) if isinstance(level, str) and level in names else level
    if not isinstance(l, int) or l not in model.latent_levels:
        raise ValueError(f"level={level!r} has no group latent; levels with one: "
                         f"{[names[j] for j in model.latent_levels]} (indices {model.latent_levels})")
    return model.latent_levels.index(l)


@torch.no_grad()
def group_effects(model: GroupPredictor, data: Any = None, *, x: Tensor | None = None, level: int | str = 0,
                  target_std: Any = None, max_x: int = 256, seed: int = 0, batch_size: int = 8192) -> Tensor:
    """Each group's effect on the mean prediction, on the outcome's scale.

    ``effect_g = mean over x of (E[y | x, z_g] - E[y | x, mu_0])`` with ``z_g`` the group's
    posterior mean and ``mu_0`` the level's prior mean (other levels at their prior means); for a
    random-intercept model, the group's intercept (MixedLM's BLUP).

    Parameters
    ----------
    model : GroupPredictor
    data : GroupedData, optional
        The set-up data module the model was trained on: its training inputs are the reference
        inputs and its ``target_std`` (if it standardized ``y``) is undone.
    x : Tensor, optional
        Reference inputs instead of ``data.train["x"]``.
    level : int or str
        Level index or name.
    target_std : float or sequence of float, optional
        Standard deviation to undo instead of ``data.target_std``.
    max_x : int
        At most this many reference inputs (a seeded random subset).
    seed : int
    batch_size : int
        Rows per forward pass.

    Returns
    -------
    Tensor of shape (n_groups, out_features), float64
        NaN rows for groups with no fitted posterior (not seen in training, not inferred).

    Examples
    --------
    >>> from vaekit.models.group import GroupPredictor
    >>> from vaekit.nn.predictors import LinearPredictor
    >>> m = GroupPredictor(LinearPredictor(1), "gaussian_learned", 1, "bias", prior="learned",
    ...                    group_names=[["a", "b", "c"]], group_counts=[[2, 2, 0]], n_train=4)
    >>> with torch.no_grad():
    ...     m.latent.loc[0][:, 0] = torch.tensor([1.0, -1.0, 0.0]); _ = m.bias_maps["0"].weight.fill_(0.5)
    >>> group_effects(m, x=torch.zeros(4, 1), target_std=2.0)[:, 0].tolist()
    [1.0, -1.0, nan]
    """
    i = _level_index(model, level)
    x, std, _ = _setup(model, data, x, target_std, max_x, seed)
    with eval_mode(model):
        loc = model.latent.loc[i].detach()
        base = _predict(model, x, i, model.latent.prior_params(i)[0].detach()[None], batch_size).mean((1, 2))
        eff = _predict(model, x, i, loc, batch_size).mean((1, 2)) - base
    if std is not None:
        eff = eff * std.to(eff)
    active = model.latent.active(i).to(eff.device)
    return torch.where(active[:, None], eff, torch.full_like(eff, math.nan)).cpu()


@torch.no_grad()
def variance_components(model: GroupPredictor, data: Any = None, *, x: Tensor | None = None, target_std: Any = None,
                        n_draws: int = 256, max_x: int = 256, seed: int = 0, batch_size: int = 8192) -> VarianceComponents:
    """Between-group variance per level and residual variance on the outcome's scale (see the module docstring).

    Parameters
    ----------
    model : GroupPredictor
    data : GroupedData, optional
        The set-up data module the model was trained on (reference inputs: its training
        inputs; its ``target_std`` is undone). Give ``data`` or ``x``.
    x : Tensor, optional
        Reference inputs instead of ``data.train["x"]``.
    target_std : float or sequence of float, optional
        Standard deviation of ``y`` to undo instead of ``data.target_std``.
    n_draws : int
        Prior draws per level (moment-matched: exact for effects linear in ``z``), > latent dim.
    max_x : int
        At most this many reference inputs (a seeded random subset).
    seed : int
    batch_size : int
        Rows per forward pass (``n_draws * max_x`` rows in all per level).

    Returns
    -------
    VarianceComponents

    Examples
    --------
    >>> from vaekit.models.group import GroupPredictor
    >>> from vaekit.nn.predictors import LinearPredictor
    >>> m = GroupPredictor(LinearPredictor(1), "gaussian_learned", 1, "bias", prior="learned",
    ...                    group_names=[["a", "b", "c"]], group_counts=[[2, 2, 2]], n_train=6)
    >>> with torch.no_grad():   # intercepts b_g = 0.5 z_g, z_g ~ N(0, 2^2): tau^2 = 1; residual sd 0.5
    ...     _ = m.bias_maps["0"].weight.fill_(0.5), m.latent.prior_raw_scale[0].fill_(2.0 + math.log(-math.expm1(-2.0)))
    ...     _ = m.log_sigma.fill_(0.4999 + math.log(-math.expm1(-0.4999)))   # scale = softplus(.) + 1e-4
    >>> vc = m.variance_components(x=torch.randn(10, 1), target_std=3.0)   # y was standardized with sd 3
    >>> round(vc.between["0"], 3), round(vc.residual, 3), vc.units
    (9.0, 2.25, 'outcome')
    """
    n_draws = check_int("n_draws", n_draws, 2)
    batch_size = check_int("batch_size", batch_size)
    x, std, known = _setup(model, data, x, target_std, max_x, seed)
    cat = model.likelihood == "categorical"
    w = None if std is None else (std**2).to(x.device)
    between, posterior, counts = {}, {}, {}
    resid_cat = []
    with eval_mode(model):
        for i, l in enumerate(model.latent_levels):
            name = model.level_names[l]
            mu, sd = (t.detach().double() for t in model.latent.prior_params(i))
            d = mu.shape[0]
            if n_draws <= d:
                raise ValueError(f"n_draws must exceed the latent dimension of level {name!r} ({d}), got {n_draws}")
            z = (mu + sd * _matched_normals(n_draws, d, seed + i).to(mu.device)).to(model.latent.loc[i].dtype)
            pred = _predict(model, x, i, z, batch_size)  # (draws, n_x, S, K)
            var = pred.var(0, unbiased=True).mean((0, 1))  # (K,)
            between[name] = float((var * w).sum() if w is not None else var.sum())
            if cat:
                resid_cat.append(float((pred * (1 - pred)).sum(-1).mean()))
            eff = group_effects(model, x=x, level=l, target_std=None if std is None else std, max_x=x.shape[0],
                                seed=seed, batch_size=batch_size)
            eff = eff[~torch.isnan(eff[:, 0])]
            counts[name] = int(eff.shape[0])
            posterior[name] = float(eff.var(0, unbiased=True).sum()) if eff.shape[0] > 1 else math.nan
        if cat:
            if not resid_cat:  # no latent level: the residual at the (latent-free) predictions
                out = _mean_prediction(model, model.outputs(x, []))
                resid_cat.append(float((out * (1 - out)).sum(-1).mean()))
            residual = resid_cat[0]
        else:
            s2 = model.scale.detach().double().to(x.device) ** 2
            residual = float((s2 * w).sum() if w is not None else s2.sum())
    total = sum(between.values()) + residual
    return VarianceComponents(
        between=between, between_posterior=posterior, residual=residual,
        residual_source={"gaussian_learned": "learned", "gaussian": "fixed"}.get(model.likelihood, "predicted"),
        icc={k: v / total for k, v in between.items()}, n_groups=counts, likelihood=model.likelihood,
        units="outcome" if known or cat else "model", n_draws=n_draws, n_x=int(x.shape[0]))
