"""New groups for group-latent models: posterior inference from k labelled examples, the
amortized set encoder, the data-efficiency curve and the evaluation of a grouped run.

(a) :func:`infer_new_group` optimises a new group's mean-field Gaussian posterior with the
network frozen (the group's own ELBO: its k examples' log-likelihood minus its KL to the
prior). (b) :func:`amortized_new_group` maps the k examples to the posterior in one pass with
the model's :class:`~vaekit.nn.predictors.SetEncoder`, trained after the model by
:func:`fit_group_encoder`. :func:`data_efficiency_curve` scores both against the prior mean
(what the model predicts for a group it knows nothing about) on each group's other examples.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Normal, kl_divergence

from .._checks import check_float, check_int
from ..models.group import GroupModel
from ..nn.modes import eval_mode
from ..training.step import TrainStep, adam

__all__ = ["infer_new_group", "amortized_new_group", "fit_group_encoder", "data_efficiency_curve", "evaluate_groups",
           "FewGroupsWarning"]

Method = Literal["prior", "optimize", "amortized"]


def _latent_index(model: GroupModel, level: int) -> int:
    if not isinstance(model, GroupModel):
        raise TypeError(f"model must be a group-latent model (vaekit.models.group.GroupModel, e.g. a GroupPredictor), "
                        f"got {type(model).__name__}")
    if level not in model.latent_levels:
        raise ValueError(f"level {level} has no group latent (levels {model.level_names}); pick one of "
                         f"{model.latent_levels}")
    return model.latent_levels.index(level)


def _check_set(model: GroupModel, x: Tensor, y: Tensor, groups: Tensor | None) -> None:
    if x.shape[0] == 0 or x.shape[0] != y.shape[0] or (groups is not None and groups.shape[0] != x.shape[0]):
        raise ValueError(f"x, y (and groups) must have the same non-zero number of examples, got {x.shape[0]}, "
                         f"{y.shape[0]}{'' if groups is None else ', ' + str(groups.shape[0])}")
    model.check_targets(y, "y")


def _other_latents(model: GroupModel, n: int, groups: Tensor | None) -> list[Tensor]:
    """Posterior means of the known levels' groups (prior means without ids), each (n, d)."""
    if groups is not None:
        return [z.detach() for z in model.latents(groups, "mean", new_groups="prior")]
    return [model.latent.prior_params(i)[0].detach().expand(n, -1) for i in range(len(model.latent_levels))]


def _prior(model: GroupModel, i: int) -> tuple[Tensor, Tensor]:
    mu0, s0 = model.latent.prior_params(i)
    return mu0.detach(), s0.detach()


def _frozen_features(model: GroupModel, x: Tensor) -> tuple[Tensor, Tensor, str]:
    """Run the frozen layers before the first latent once: ``(trunk(x), inp, start)``, where
    ``model.outputs(inp, zs, start=start)`` equals ``model.outputs(x, zs)``.

    A new group's latent is optimised or scored many times on the same examples, and the
    layers before it do not change: the trunk (every injection mode enters after it) and,
    unless a level enters the body (``"double"``, ``"lower"``: the predictor's ``mid_extra``),
    the body too.
    """
    pred = model.predictor
    with torch.no_grad():
        h = pred.trunk(x)
        if pred.mid_extra:
            return h, h, "trunk"
        return h, pred.body(h), "body"


def _sets_per_pass(rows_per_set: int, budget: int = 4096) -> int:
    """How many sets go into one batched pass of about ``budget`` rows."""
    return max(1, budget // rows_per_set)


def _infer_sets(model: GroupModel, x: Tensor, y: Tensor, groups: Tensor | None, i: int, *, steps: int, lr: float,
                samples: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Fit the posteriors of ``S`` new groups at once: ``x`` (S, k, *x_shape), ``y`` (S, k, ...), ``groups`` (S, k, L).

    The loss is the sum of the sets' negative ELBOs; each set's parameters get only its own
    gradient and Adam updates each coordinate on its own, so this is ``S`` independent fits.
    Returns ``loc, scale`` of shape (S, d).
    """
    S, k = x.shape[:2]
    n = S * k
    xf, yf = x.reshape(n, *x.shape[2:]), y.reshape(n, *y.shape[2:])
    zs = _other_latents(model, n, None if groups is None else groups.reshape(n, -1))
    mu0, s0 = _prior(model, i)
    loc = mu0.expand(S, -1).clone().requires_grad_(True)
    raw = torch.log(torch.expm1(0.5 * s0)).expand(S, -1).clone().requires_grad_(True)
    opt = torch.optim.Adam([loc, raw], lr=lr)
    rep = lambda t: t.repeat(samples, *([1] * (t.dim() - 1)))  # noqa: E731 - sample-major copies
    _, inp, start = _frozen_features(model, xf)
    h, yr, zr = rep(inp), rep(yf), [rep(z) for z in zs]
    for _ in range(steps):
        scale = F.softplus(raw) + 1e-6
        eps = torch.randn(samples, S, loc.shape[1], generator=g).to(loc)
        z = (loc + scale * eps).unsqueeze(2).expand(samples, S, k, loc.shape[1]).reshape(samples * n, -1)
        zz = list(zr)
        zz[i] = z
        rec = model.log_likelihood(model.outputs(h, zz, start=start), yr).sum() / samples
        loss = -rec + kl_divergence(Normal(loc, scale), Normal(mu0, s0)).sum()
        opt.zero_grad()
        loc.grad, raw.grad = torch.autograd.grad(loss, [loc, raw])
        opt.step()
    return loc.detach(), F.softplus(raw.detach()) + 1e-6


def infer_new_group(model: GroupModel, x: Tensor, y: Tensor, groups: Tensor | None = None, *, level: int = 0,
                    steps: int = 200, lr: float = 0.05, samples: int = 4, assign_to: int | None = None,
                    seed: int = 0) -> Normal:
    """Fit a new group's posterior ``q(z) = N(loc, scale)`` to its labelled examples, network frozen.

    Maximises ``E_q[sum_i log p(y_i | x_i, z)] - KL(q || prior)`` with Adam (``samples``
    reparameterised draws per step), starting at the prior mean.
    :func:`data_efficiency_curve` fits many groups in one batched pass of the same optimisation.

    Parameters
    ----------
    model : GroupModel
        A group-latent model, e.g. :class:`~vaekit.models.group.GroupPredictor`.
    x : Tensor of shape (k, *x_shape)
    y : Tensor of shape (k, ...)
    groups : Tensor of shape (k, n_levels), optional
        Ids at the *other* levels (used at their posterior means; column ``level`` ignored);
        without it every other level is at its prior mean.
    level : int
        The group level of the new group.
    steps, lr, samples : int, float, int
    assign_to : int, optional
        Write the result into the model's table at this group id (and mark it known).
    seed : int

    Returns
    -------
    torch.distributions.Normal with batch shape (d,)
    """
    i = _latent_index(model, level)
    steps, samples = check_int("steps", steps, 0), check_int("samples", samples)
    lr = check_float("lr", lr, 0, low_open=True)
    _check_set(model, x, y, groups)
    g = torch.Generator(device="cpu").manual_seed(seed)
    with eval_mode(model):
        loc, scale = _infer_sets(model, x[None], y[None], None if groups is None else groups[None], i, steps=steps,
                                 lr=lr, samples=samples, g=g)
    q = Normal(loc[0], scale[0])
    if assign_to is not None:
        model.latent.set_posterior(i, int(assign_to), q.loc, q.scale)
    return q


def _set_features(model: GroupModel, x: Tensor, y: Tensor, groups: Tensor | None = None,
                  batch_size: int = 4096) -> Tensor:
    """Per-example input of the set encoder, shape (n, mid_features + out_features).

    The trunk features (last step for sequences) and the score ``d log p(y | x, z) / d outputs``
    at the prior mean of the level-0 latent (other levels at their posterior means with
    ``groups``, else at their prior means), averaged over sequence steps: the residual
    ``(y - mean) / sigma^2`` for a Gaussian, ``onehot(y) - softmax`` for classes. It is what
    the examples say about the group beyond what the model predicts without it.
    """
    mu0 = _prior(model, 0)[0]
    feats = []
    for a in range(0, x.shape[0], batch_size):
        xs, ys = x[a:a + batch_size], y[a:a + batch_size]
        zs = _other_latents(model, xs.shape[0], None if groups is None else groups[a:a + batch_size])
        zs[0] = mu0.expand(xs.shape[0], -1)
        h, inp, start = _frozen_features(model, xs)
        with torch.enable_grad():
            out = model.outputs(inp, zs, start=start).detach().requires_grad_(True)
            (score,) = torch.autograd.grad(model.log_likelihood(out, ys).sum(), out)
        h = h[:, -1] if h.dim() == 3 else h
        feats.append(torch.cat([h.detach(), score.reshape(xs.shape[0], -1, score.shape[-1]).mean(1)], -1))
    return torch.cat(feats)


def _encoder(model: GroupModel) -> Any:
    enc = model.group_encoder
    if enc is None:
        raise ValueError("this model has no amortized group encoder: build it with new_group_encoder=True "
                         "(level 0 must have a latent)")
    return enc


def _encode(model: GroupModel, enc: Any, feats: Tensor) -> tuple[Tensor, Tensor]:
    """Posterior ``(loc, scale)`` (S, d) of sets of features (S, k, F): the prior times k examples' evidence.

    The set encoder's two outputs ``(u, s)`` are read as the evidence of one example of the set,
    in natural parameters: precision ``pi = 1 / s^2`` and precision-weighted mean ``u``. The k
    examples add theirs to the prior ``N(mu0, s0^2)``: precision ``P = 1 / s0^2 + k pi`` and
    ``loc = (mu0 / s0^2 + k u) / P``. For a random intercept with residual variance ``sigma^2``
    and ``tau^2 = s0^2`` the exact evidence is ``pi = 1 / sigma^2`` and ``u = mean residual / sigma^2``,
    and ``loc`` is the BLUP ``k tau^2 / (k tau^2 + sigma^2) * mean residual``: the posterior
    shrinks to the prior as k falls, and weak evidence leaves the prior mean. (``loc`` depends
    on ``u`` with slope ``k / P`` however small ``pi`` is, so training does not stall at the prior.)
    """
    u, s = enc(feats)
    mu0, s0 = _prior(model, 0)
    k = feats.shape[-2]
    p0 = s0.pow(-2)
    prec = p0 + k * s.pow(-2)
    return (p0 * mu0 + k * u) / prec, prec.rsqrt()


def amortized_new_group(model: GroupModel, x: Tensor, y: Tensor, groups: Tensor | None = None, *,
                        assign_to: int | None = None) -> Normal:
    """A new level-0 group's posterior from its labelled examples in one pass of the set encoder.

    The encoder (trained by :func:`fit_group_encoder`) reads each example's trunk features and
    how far its label is from the prediction at the prior mean; its Gaussian message is
    combined with the prior by precision (see :func:`fit_group_encoder`), so few or
    uninformative examples leave the posterior near the prior mean.

    Parameters
    ----------
    x : Tensor of shape (k, *x_shape)
    y : Tensor of shape (k, ...)
    groups : Tensor of shape (k, n_levels), optional
        Ids at the other levels (at their posterior means; column 0 ignored), as in
        :func:`infer_new_group`.
    assign_to : int, optional
        Write it into the model's level-0 table at this id.

    Returns
    -------
    torch.distributions.Normal with batch shape (d,)
    """
    _latent_index(model, 0)
    enc = _encoder(model)
    _check_set(model, x, y, groups)
    with eval_mode(model), torch.no_grad():
        loc, scale = _encode(model, enc, _set_features(model, x, y, groups)[None])
    loc, scale = loc[0], scale[0]
    if assign_to is not None:
        model.latent.set_posterior(0, int(assign_to), loc, scale)
    return Normal(loc, scale)


def fit_group_encoder(model: GroupModel, train: Mapping[str, Tensor], *, steps: int = 300, lr: float = 1e-3,
                      k_max: int = 20, sets_per_step: int = 16, target: Literal["posterior", "elbo"] = "posterior",
                      seed: int = 0) -> list[float]:
    """Train the model's set encoder on random subsets of training groups (network frozen).

    Each step draws ``sets_per_step`` level-0 groups and for each a random subset of
    ``1..k_max`` of its examples (every size down to 1, drawn uniformly), and fits the
    encoder's posterior ``r`` for that subset. ``r`` is the prior times the encoder's Gaussian
    message, combined by precision (a random intercept's BLUP has this form), so a subset the
    encoder finds uninformative stays at the prior mean and the shrinkage grows as k falls.
    Sets of the same size go through the encoder together.

    - ``target="posterior"`` (default): minimise ``KL(q_g || r)``, where ``q_g`` is the
      group's posterior learnt in training (its row of the model's table). Averaged over
      groups and subsets, the best ``r`` for a subset is the moment-matched mixture of the
      training groups' posteriors consistent with it: amortized inference learnt from the
      groups the model already knows. It keeps working when the network fits the training
      examples almost perfectly, which leaves their likelihood nothing to teach.
    - ``target="elbo"``: maximise the subset's own ELBO under ``r`` (the amortized version
      of :func:`infer_new_group`), per example.

    Every step is vaekit's training step (:class:`~vaekit.training.step.TrainStep`, fused
    Adam): a step whose loss or gradient is not finite leaves the encoder unchanged, and the
    losses are read from the device once, at the end.

    Returns
    -------
    list of float
        The loss of each step (a skipped step's non-finite loss included).
    """
    if target not in ("posterior", "elbo"):
        raise ValueError(f"target must be 'posterior' or 'elbo', got {target!r}")
    i = _latent_index(model, 0)
    enc = _encoder(model)
    steps, k_max, sets_per_step = check_int("steps", steps), check_int("k_max", k_max), check_int("sets_per_step", sets_per_step)
    lr = check_float("lr", lr, 0, low_open=True)
    model.validate_data(train, "train")  # keys, shapes, ids, NaN/inf: refused here, not trained on as NaN losses
    x, y, groups = model.split_batch(train)
    g = torch.Generator().manual_seed(seed)
    ids = groups[:, 0]
    known = torch.unique(ids)
    members = [torch.nonzero(ids == j).flatten() for j in known.tolist()]
    if not members:
        raise ValueError("train has no examples")
    params = list(enc.parameters())
    opt = adam(params, lr=lr)  # fused where available: the step's skip decision stays on the device
    with eval_mode(model):
        mu0, s0 = _prior(model, i)
        table = model.latent.posterior(i)
        table = Normal(table.loc.detach(), table.scale.detach())
        width = model.predictor.mid_features + model.predictor.out_features
        cached = None  # the network is frozen: every example's features once, unless they take > 256 MB
        if x.shape[0] * width <= 2**26:
            with torch.no_grad():
                cached = _set_features(model, x, y, groups)

        def subsets() -> Iterator[dict[int, list[tuple[int, Tensor]]]]:
            """Every step's random subsets of training groups, by size (the generator ``g``)."""
            while True:
                by_k: dict[int, list[tuple[int, Tensor]]] = {}
                for j in torch.randint(len(members), (sets_per_step,), generator=g).tolist():
                    m = members[j]
                    k = int(torch.randint(1, min(k_max, len(m)) + 1, (1,), generator=g))
                    by_k.setdefault(k, []).append((int(known[j]), m[torch.randperm(len(m), generator=g)[:k]]))
                yield by_k

        def forward(by_k: dict[int, list[tuple[int, Tensor]]], _: int) -> tuple[Tensor, dict[str, Tensor]]:
            flat = torch.cat([idx for sets in by_k.values() for _, idx in sets])
            if cached is not None:
                feats = cached[flat]
            else:
                with torch.no_grad():
                    feats = _set_features(model, x[flat], y[flat], groups[flat])
            loss: Any = 0.0
            at = 0
            for k, sets in by_k.items():
                n = len(sets) * k
                loc, scale = _encode(model, enc, feats[at:at + n].reshape(len(sets), k, -1))
                rows, idx = torch.tensor([r for r, _ in sets]), flat[at:at + n]
                at += n
                if target == "posterior":
                    loss = loss + kl_divergence(Normal(table.loc[rows], table.scale[rows]), Normal(loc, scale)).sum()
                    continue
                z = loc + scale * torch.randn(loc.shape, generator=g).to(loc)
                zs = _other_latents(model, n, groups[idx])
                zs[i] = z.repeat_interleave(k, 0)
                ll = model.log_likelihood(model.outputs(x[idx], zs), y[idx]).reshape(len(sets), k).sum(1)
                elbo = ll - kl_divergence(Normal(loc, scale), Normal(mu0, s0)).sum(-1)
                loss = loss - (elbo / k).sum()
            loss = loss / sets_per_step
            return loss, {"loss": loss.detach()}

        def encoder_backward(loss: Tensor) -> None:  # the network is frozen: gradients for the encoder only
            for p, grad in zip(params, torch.autograd.grad(loss, params)):
                p.grad = grad

        step = TrainStep(forward, params, opt, backward=encoder_backward)  # vaekit's one training step
        losses = [step(batch, t) for t, batch in zip(range(steps), subsets())]
    return torch.stack(losses).tolist()


def _per_example(model: GroupModel, out: Tensor, y: Tensor) -> tuple[str, Tensor]:
    """Per-example accuracy (mean over sequence steps) or squared error (mean over outputs)."""
    n = y.shape[0]
    if model.likelihood == "categorical":
        return "accuracy", (out.argmax(-1) == y).reshape(n, -1).double().mean(1)
    return "squared_error", (out.reshape(n, -1) - y.reshape(n, -1)).double().pow(2).mean(1)


class FewGroupsWarning(UserWarning):
    """The data-efficiency curve rests on fewer groups than ``min_groups``: its standard errors are unreliable."""


def _check_curve_args(model: GroupModel, ks: Sequence[int], methods: Sequence[str], level: int, steps: int,
                      lr: float, samples: int, max_groups: int | None, shuffles: int, min_groups: int) -> list[int]:
    if isinstance(ks, (int, str)) or not len(ks):
        raise ValueError(f"ks must be a non-empty list of positive ints, got {ks!r}")
    ks = sorted({check_int("ks[i]", k) for k in ks})
    if isinstance(methods, str) or not methods or any(m not in ("prior", "optimize", "amortized") for m in methods):
        raise ValueError(f"methods must be a non-empty list of 'prior', 'optimize', 'amortized', got "
                         f"{methods if isinstance(methods, str) else list(methods)!r}")
    check_int("steps", steps, 0), check_int("samples", samples)
    check_int("shuffles", shuffles), check_int("min_groups", min_groups)
    check_float("lr", lr, 0, low_open=True)
    if max_groups is not None:
        check_int("max_groups", max_groups)
    _latent_index(model, level)
    if "amortized" in methods:
        if level != 0:
            raise ValueError(f"the amortized encoder infers level-0 groups, got level={level}")
        _encoder(model)
    return ks


def data_efficiency_curve(model: GroupModel, data: Mapping[str, Tensor], ks: Sequence[int] = (1, 2, 5, 10, 20),
                          methods: Sequence[Method] = ("prior", "optimize"), *, level: int = 0, steps: int = 100,
                          lr: float = 0.05, samples: int = 4, max_groups: int | None = 50, shuffles: int = 5,
                          min_groups: int = 10, seed: int = 0) -> list[dict[str, Any]]:
    """Accuracy (RMSE for regression) on a group's other examples vs the k examples used to infer it.

    Every group of ``level`` in ``data`` with more than ``max(ks)`` examples qualifies and is
    treated as new (``max_groups`` of them drawn at random, all with None). In each of
    ``shuffles`` shuffles of each group's examples the first ``k`` infer its latent and the
    ones after the first ``max(ks)`` are scored (the same query set for every k and method).
    Methods: ``"prior"`` (the prior mean: the baseline without group information),
    ``"optimize"`` (:func:`infer_new_group`, all groups and shuffles of one k fitted in one
    batched optimisation of ``steps`` Adam steps) and ``"amortized"``
    (:func:`amortized_new_group`, level 0). With fewer than ``min_groups`` qualifying groups
    it warns (:class:`FewGroupsWarning`); the rows record ``n_groups``.

    Returns
    -------
    list of dict
        One row per method and k: ``method``, ``k``, ``metric``; ``value`` (the mean over
        groups and shuffles; RMSE per group and shuffle, then averaged); ``stderr`` (standard
        error over groups of their shuffle-averaged values: how much the level would move
        with other groups); ``shuffle_stderr`` (standard error over the shuffles' means: the
        noise of the choice of examples left after averaging); ``n_groups``, ``shuffles``;
        with ``"prior"`` among the methods, ``gain`` and ``gain_stderr``: the paired
        improvement over the prior mean (accuracy up or RMSE down; > 0 is better) and its
        standard error over groups.

    Examples
    --------
    >>> from vaekit.models.group import GroupPredictor
    >>> from vaekit.nn.predictors import MLPPredictor
    >>> m = GroupPredictor(MLPPredictor(1, 1, hidden=[4]), likelihood="gaussian", latent_features=1,
    ...                    group_names=[[str(j) for j in range(12)]], group_counts=[[0] * 12], n_train=1)
    >>> d = {"x": torch.randn(96, 1), "y": torch.randn(96), "groups": torch.arange(12).repeat_interleave(8)[:, None]}
    >>> rows = data_efficiency_curve(m, d, ks=(1, 2), steps=5, shuffles=3)
    >>> [(r["method"], r["k"], r["n_groups"], r["shuffles"]) for r in rows]
    [('optimize', 1, 12, 3), ('optimize', 2, 12, 3), ('prior', 1, 12, 3), ('prior', 2, 12, 3)]
    """
    ks = _check_curve_args(model, ks, methods, level, steps, lr, samples, max_groups, shuffles, min_groups)
    i = _latent_index(model, level)
    x, y, groups = model.split_batch(data)
    g = torch.Generator().manual_seed(seed)
    ids = groups[:, level]
    K = ks[-1]
    uniq, counts = torch.unique(ids, return_counts=True)
    chosen = uniq[counts > K].tolist()
    n_qualify = len(chosen)
    if max_groups is not None:
        chosen = [chosen[int(t)] for t in torch.randperm(len(chosen), generator=g)[:max_groups].sort().values]
    if not chosen:
        raise ValueError(f"no group of level {level} has more than max(ks)={K} examples in the data; lower ks")
    G, S = len(chosen), shuffles
    if G < min_groups:
        why = (f"only {n_qualify} group(s) of level {level} have more than max(ks)={K} examples" if n_qualify < min_groups
               else f"max_groups={max_groups} keeps {G} of {n_qualify} qualifying groups")
        warnings.warn(FewGroupsWarning(
            f"the data-efficiency curve uses {G} group(s) (fewer than min_groups={min_groups}): {why}, so its means and "
            f"standard errors rest on {G} group(s); lower ks, raise max_groups or use a split by group"), stacklevel=2)
    members = [torch.nonzero(ids == j).flatten() for j in chosen]
    perms = [m[torch.randperm(len(m), generator=g)] for _ in range(S) for m in members]  # set s * G + j
    support = torch.stack([p[:K] for p in perms])  # (S * G, K)
    q_idx = torch.cat([p[K:] for p in perms])
    q_set = torch.repeat_interleave(torch.arange(S * G), torch.tensor([len(p) - K for p in perms]))
    og = torch.Generator().manual_seed(seed)
    latents: dict[tuple[str, int], Tensor] = {}
    with eval_mode(model):
        prior_loc = _prior(model, i)[0].expand(S * G, -1)
        for k in ks:
            sup = support[:, :k]
            for method in methods:
                if method == "prior":
                    latents[(method, k)] = prior_loc
                    continue
                zs, step = [], _sets_per_pass(k * (samples if method == "optimize" else 1))
                for a in range(0, S * G, step):
                    idx = sup[a:a + step]
                    flat = idx.reshape(-1)
                    if method == "optimize":
                        shape = (*idx.shape, *x.shape[1:]), (*idx.shape, *y.shape[1:]), (*idx.shape, groups.shape[1])
                        zs.append(_infer_sets(model, x[flat].reshape(shape[0]), y[flat].reshape(shape[1]),
                                              groups[flat].reshape(shape[2]), i, steps=steps, lr=lr, samples=samples, g=og)[0])
                    else:
                        with torch.no_grad():
                            feats = _set_features(model, x[flat], y[flat], groups[flat])
                            zs.append(_encode(model, _encoder(model), feats.reshape(*idx.shape, -1))[0])
                latents[(method, k)] = torch.cat(zs)
        sums = {key: torch.zeros(S * G, dtype=torch.float64) for key in latents}
        metric = "accuracy"
        for a in range(0, len(q_idx), 4096):
            idx, sets = q_idx[a:a + 4096], q_set[a:a + 4096]
            other = _other_latents(model, len(idx), groups[idx])
            _, inp, start = _frozen_features(model, x[idx])
            with torch.no_grad():
                for key, z in latents.items():
                    zz = list(other)
                    zz[i] = z[sets]
                    metric, per = _per_example(model, model.outputs(inp, zz, start=start), y[idx])
                    sums[key].index_add_(0, sets, per.cpu())
    n_q = torch.bincount(q_set, minlength=S * G).double()
    values = {key: (s / n_q if metric == "accuracy" else (s / n_q).sqrt()).reshape(S, G) for key, s in sums.items()}
    metric = "accuracy" if metric == "accuracy" else "rmse"
    sign = 1.0 if metric == "accuracy" else -1.0

    def se(t: Tensor) -> float:
        return float(t.std() / math.sqrt(len(t))) if len(t) > 1 else float("nan")

    rows = []
    for (method, k), v in sorted(values.items()):
        row = {"method": method, "k": k, "metric": metric, "value": float(v.mean()), "stderr": se(v.mean(0)),
               "shuffle_stderr": se(v.mean(1)), "n_groups": G, "shuffles": S}
        if "prior" in methods:
            d = sign * (v - values[("prior", k)]).mean(0)
            row.update(gain=float(d.mean()), gain_stderr=se(d))
        rows.append(row)
    return rows


def evaluate_groups(model: GroupModel, data: Any, out_dir: str | os.PathLike[str], *, split: str = "test",
                    ks: Sequence[int] = (1, 2, 5, 10, 20), methods: Sequence[Method] | None = None, steps: int = 100,
                    lr: float = 0.05, samples: int = 4, max_groups: int | None = 50, shuffles: int = 5,
                    min_groups: int = 10, encoder_steps: int = 300, device: str = "cpu", seed: int = 0) -> dict[str, Any]:
    """Evaluate a trained group model on one split: overall and per-group metrics and the data-efficiency curve.

    Writes ``out_dir/group_metrics.json`` (metrics and curve), ``out_dir/groups_eval.csv`` (long
    format: split, level, group, metric, value), ``out_dir/data_efficiency.csv`` and
    ``out_dir/data_efficiency.png`` (``vaekit evaluate RUN`` of a group run: ``RUN/eval/``, through
    :func:`vaekit.runs.evaluate_group_run`). The curve treats the split's groups as new; when no
    group of the split has more than ``max(ks)`` examples (a split by example), it pools all splits
    (``data_efficiency_data = "all"``: those groups were seen in training, so the network knows
    them even though their table posterior is ignored). Methods default to prior + optimize
    (+ amortized when the model has a set encoder, which is then trained on the training split first).
    ``ks``, ``methods``, ``steps``, ``lr``, ``samples``, ``max_groups``, ``shuffles`` and
    ``min_groups`` are those of :func:`data_efficiency_curve` (checked before anything is
    trained or written); its :class:`FewGroupsWarning` is also recorded in ``warnings``.

    Parameters
    ----------
    model : GroupModel
        A group-latent model, e.g. :class:`~vaekit.models.group.GroupPredictor`.
    data : GroupedData
        Set up (its dict splits are read).

    Returns
    -------
    dict with ``metrics`` (dict of float), ``data_efficiency`` (rows), ``data_efficiency_data``
    (``split`` or ``"all"``) and ``warnings`` (list of str).
    """
    import csv

    if not isinstance(model, GroupModel):
        raise TypeError(f"model is a {type(model).__name__}, not a group-latent model (vaekit.models.group.GroupModel, e.g. "
                        f"a GroupPredictor); use vaekit.inference.iwae_log_likelihood")
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    batch = getattr(data, split)
    if batch is None:
        raise ValueError(f"{type(data).__name__} has no {split!r} split")
    batch = {k: v.to(device) for k, v in batch.items()}
    if methods is None:
        methods = ("prior", "optimize") + (("amortized",) if model.group_encoder is not None else ())
    if model.latent is not None:
        _check_curve_args(model, ks, methods, 0, steps, lr, samples, max_groups, shuffles, min_groups)
    if "amortized" in methods:
        fit_group_encoder(model, {k: v.to(device) for k, v in data.train.items()}, steps=encoder_steps, seed=seed)
    with eval_mode(model), torch.no_grad():
        report = model.validation_report(batch)
    curve, curve_data, notes = [], split, []
    if model.latent is not None:
        ids = batch["groups"][:, 0]
        if int(torch.bincount(ids).max()) <= max(ks):  # split by example: too few per group in one split
            parts = [getattr(data, s) for s in ("train", "val", "test") if getattr(data, s) is not None]
            batch, curve_data = {k: torch.cat([p[k].to(device) for p in parts]) for k in batch}, "all"
        largest = int(torch.bincount(batch["groups"][:, 0]).max())
        usable = [k for k in ks if k < largest]  # a k needs groups with more than k examples (k to infer, the rest to score)
        if len(usable) < len(ks):
            dropped = [k for k in ks if k >= largest]
            message = (f"the largest group has {largest} example(s), so the data-efficiency curve leaves out "
                       f"k={dropped} (each k needs a group with more than k examples)"
                       + ("" if usable else "; no curve is computed"))
            warnings.warn(FewGroupsWarning(message), stacklevel=2)
            notes.append(message)
            ks = usable
    if model.latent is not None and ks:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", FewGroupsWarning)
            curve = data_efficiency_curve(model, batch, ks, methods, steps=steps, lr=lr, samples=samples, max_groups=max_groups,
                                          shuffles=shuffles, min_groups=min_groups, seed=seed)
        for w in caught:  # recorded in the result, and shown as usual
            notes += [str(w.message)] if issubclass(w.category, FewGroupsWarning) else []
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {"split": split, "metrics": report.metrics, "data_efficiency": curve, "data_efficiency_data": curve_data,
              "warnings": notes}
    (out / "group_metrics.json").write_text(json.dumps(result, indent=2))
    for name, rows, cols in (("groups_eval.csv", [{"split": split, **r} for r in report.tables["groups"]],
                              ["split", "level", "group", "metric", "value"]),
                             ("data_efficiency.csv", curve, ["method", "k", "metric", "value", "stderr", "shuffle_stderr",
                                                             "n_groups", "shuffles", "gain", "gain_stderr"])):
        with open(out / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
    if curve:
        _plot_curve(curve, out / "data_efficiency.png")
    return result


def _plot_curve(rows: list[dict[str, Any]], path: os.PathLike[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in sorted({r["method"] for r in rows}):
        rs = [r for r in rows if r["method"] == method]
        ax.errorbar([r["k"] for r in rs], [r["value"] for r in rs], yerr=[0 if math.isnan(r["stderr"]) else r["stderr"] for r in rs],
                    marker="o", capsize=3, label=method)
    ax.set_xscale("log")
    ax.set_xlabel("k labelled examples of the new group")
    ax.set_ylabel(rows[0]["metric"])
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
