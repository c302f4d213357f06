r"""Learned IGR priors: Gaussian parameters whose relaxed samples average to a target categorical distribution.

The IGR analogue of a uniform (or any) categorical prior is not :math:`\mathcal N(0, I)`:
softmax++ treats the last category differently, and stick-breaking favours the first ones.
:func:`fit_igr_prior` finds :math:`(\mu, \xi)`, :math:`\sigma = e^{\xi}`, such that
:math:`\mathbb E_\epsilon[\psi] \approx \pi` (the target) by stochastic optimisation of
:math:`\mathrm{KL}(\pi\,\|\,\tfrac1S\sum_s\psi_s)` with Adam, fresh noise at every step. The
predecessor shipped these as pickles that went missing; here they are computed on first use and
cached as safetensors files under the user cache (``$VAEKIT_CACHE`` or the platform cache
folder), keyed by a hash of every argument.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Size, Tensor

from ..._cache import cache_dir
from ..._checks import check_float, check_int
from ._simplex import check_probabilities, check_temperature
from .igr import IGR
from .stick import IGRStickBreaking

__all__ = ["IGRPrior", "fit_igr_prior", "PRIOR_RELAXATIONS"]

PRIOR_RELAXATIONS = ("igr_i", "igr_sb")
_VERSION = 1  # bump when the fitting procedure changes: old cache files are then ignored


@dataclass(frozen=True)
class IGRPrior:
    """A fitted IGR prior (a :func:`fit_igr_prior` result), storable as plain numbers or a safetensors file.

    Any such prior can be the ``prior`` of :class:`~vaekit.distributions.relaxed.RelaxedCategorical`
    (the posterior of the discrete, joint and structured models): the object itself, its
    :meth:`to_dict` (plain lists and numbers, what a YAML config holds), or the path of a file
    written by :meth:`save`. Nothing but numbers is ever read back (no pickle, no code).

    Attributes
    ----------
    loc, scale : Tensor of shape (K-1,)
        :math:`\\mu` and :math:`\\sigma` of the Gaussian.
    tv_distance : float
        Total variation between the target and the mean of ``psi`` (a fresh 10x larger sample).
    relaxation : {"igr_i", "igr_sb"}
    temperature, delta : float
        The map the prior was fitted for (``delta`` is unused by ``"igr_sb"``).
    """

    loc: Tensor
    scale: Tensor
    tv_distance: float
    relaxation: str = "igr_i"
    temperature: float = 0.5
    delta: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers: ``{"loc": [...], "scale": [...], "tv_distance", "relaxation", "temperature", "delta"}``.

        Examples
        --------
        >>> IGRPrior(torch.tensor([0.5]), torch.tensor([2.0]), 0.01).to_dict()["scale"]
        [2.0]
        """
        return {"loc": [float(v) for v in self.loc.reshape(-1)], "scale": [float(v) for v in self.scale.reshape(-1)],
                "tv_distance": float(self.tv_distance) if math.isfinite(self.tv_distance) else None,
                "relaxation": self.relaxation,
                "temperature": float(self.temperature), "delta": float(self.delta)}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], name: str = "prior") -> IGRPrior:
        """The prior of :meth:`to_dict`'s output; only ``loc`` and ``scale`` are required.

        Raises
        ------
        ValueError, TypeError
            Unknown keys, ``loc``/``scale`` not equal-length lists of finite numbers (scale > 0,
            at least one: K >= 2), a relaxation other than ``"igr_i"``/``"igr_sb"``, a
            temperature or delta that is not positive; the message names ``name``.
        """
        if not isinstance(spec, Mapping):
            raise TypeError(f"{name} must be a mapping with 'loc' and 'scale', got {type(spec).__name__}")
        known = ("loc", "scale", "tv_distance", "relaxation", "temperature", "delta")
        unknown = sorted(set(spec) - set(known))
        if unknown or "loc" not in spec or "scale" not in spec:
            raise ValueError(f"{name} must have keys 'loc' and 'scale' (optional: {', '.join(known[2:])}); got keys "
                             f"{sorted(spec)}")
        try:
            loc = torch.as_tensor(spec["loc"], dtype=torch.float32)
            scale = torch.as_tensor(spec["scale"], dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name}['loc'] and {name}['scale'] must be lists of numbers, got {spec['loc']!r} and "
                            f"{spec['scale']!r}") from None
        if loc.dim() != 1 or loc.shape != scale.shape or loc.numel() == 0:
            raise ValueError(f"{name}['loc'] and {name}['scale'] must be lists of the same length K-1 >= 1, got shapes "
                             f"{tuple(loc.shape)} and {tuple(scale.shape)}")
        if not bool(loc.isfinite().all()) or not bool(scale.isfinite().all()) or not bool((scale > 0).all()):
            raise ValueError(f"{name}: loc must be finite and scale finite and > 0, got loc {loc.tolist()}, scale "
                             f"{scale.tolist()}")
        relaxation = spec.get("relaxation", "igr_i")
        if relaxation not in PRIOR_RELAXATIONS:
            raise ValueError(f"{name}['relaxation'] must be one of {PRIOR_RELAXATIONS}, got {relaxation!r}")
        temperature = check_float(f"{name}['temperature']", spec.get("temperature", 0.5), 0, low_open=True)
        delta = check_float(f"{name}['delta']", spec.get("delta", 1.0), 0, low_open=True)
        tv = spec.get("tv_distance", math.nan)
        tv = math.nan if tv is None or (isinstance(tv, float) and math.isnan(tv)) else check_float(f"{name}['tv_distance']", tv, 0)
        return cls(loc, scale, tv, relaxation, temperature, delta)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the prior as a safetensors file (``loc``, ``scale`` and the other fields as metadata); returns the path."""
        path = Path(path)
        meta = {k: repr(v) if isinstance(v, float) else str(v) for k, v in self.to_dict().items()
                if k not in ("loc", "scale") and v is not None}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_file({"loc": self.loc.detach().float().contiguous(), "scale": self.scale.detach().float().contiguous()},
                  str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], name: str = "prior") -> IGRPrior:
        """Read a file written by :meth:`save` (safetensors: numbers only), checked as :meth:`from_dict` checks.

        Raises
        ------
        FileNotFoundError
            No such file.
        ValueError
            Not a safetensors file with ``loc`` and ``scale``, or values that :meth:`from_dict` refuses.
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"{name}={os.fspath(path)!r} is neither 'standard' nor 'uniform_fit' nor an existing "
                                    f"IGR prior file (written by IGRPrior.save)")
        try:
            with safe_open(str(file), framework="pt") as f:
                spec: dict[str, Any] = {"loc": f.get_tensor("loc").tolist(), "scale": f.get_tensor("scale").tolist()}
                meta = f.metadata() or {}
        except Exception as err:  # noqa: BLE001 - any unreadable file is refused with its name
            raise ValueError(f"{name}={os.fspath(path)!r} is not an IGR prior file (safetensors with 'loc' and 'scale'): "
                             f"{type(err).__name__}: {err}") from None
        for key in ("tv_distance", "temperature", "delta"):
            if key in meta:
                try:
                    spec[key] = float(meta[key])
                except ValueError:
                    raise ValueError(f"{name}={os.fspath(path)!r}: metadata {key}={meta[key]!r} is not a number") from None
        if "relaxation" in meta:
            spec["relaxation"] = meta["relaxation"]
        return cls.from_dict(spec, f"{name} ({file})")

    def distribution(self, batch_shape: Size | tuple[int, ...] = ()) -> IGR | IGRStickBreaking:
        """The prior as a distribution of the given batch shape (IGR-SB untruncated, like its fit)."""
        shape = Size(batch_shape) + self.loc.shape
        loc, scale = self.loc.expand(shape), self.scale.expand(shape)
        if self.relaxation == "igr_sb":
            return IGRStickBreaking(loc, scale, self.temperature, truncate=False)
        return IGR(loc, scale, self.temperature, self.delta)


def _mean_psi(loc: Tensor, log_scale: Tensor, relaxation: str, temperature: float, delta: float, n: int,
              generator: torch.Generator) -> Tensor:
    dist = (IGRStickBreaking(loc, log_scale.exp(), temperature, truncate=False) if relaxation == "igr_sb"
            else IGR(loc, log_scale.exp(), temperature, delta))
    lam, _ = dist.rsample_gaussian((n,), generator=generator)
    return dist.to_simplex(lam).mean(0)


def _fit(target: Tensor, temperature: float, delta: float, relaxation: str, n_steps: int, num_samples: int,
         lr: float, seed: int) -> IGRPrior:
    generator = torch.Generator().manual_seed(seed)
    d = target.numel() - 1
    loc = torch.zeros(d, requires_grad=True)
    log_scale = torch.zeros(d, requires_grad=True)
    opt = torch.optim.Adam([loc, log_scale], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, n_steps)
    target = target.float()
    support = target > 0
    for _ in range(n_steps):
        mean = _mean_psi(loc, log_scale, relaxation, temperature, delta, num_samples, generator)
        loss = (target[support] * (target[support].log() - mean[support].clamp_min(1e-30).log())).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        mean = _mean_psi(loc, log_scale, relaxation, temperature, delta, 10 * num_samples, generator)
        tv = 0.5 * float((mean - target).abs().sum())
    return IGRPrior(loc.detach(), log_scale.detach().exp(), tv, relaxation, temperature, delta)


def _cache_path(target: Tensor, **kwargs: object) -> Path:

    key = json.dumps({"version": _VERSION, "target": target.tolist(), **kwargs}, sort_keys=True)
    return cache_dir() / "igr_priors" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"


def _load(path: Path, d: int, relaxation: str, temperature: float, delta: float) -> IGRPrior:
    with safe_open(str(path), framework="pt") as f:
        loc, scale = f.get_tensor("loc"), f.get_tensor("scale")
        tv = float((f.metadata() or {})["tv_distance"])
    ok = loc.shape == scale.shape == (d,) and bool(loc.isfinite().all()) and bool((scale > 0).all())
    if not ok or not math.isfinite(tv):
        raise ValueError("unexpected contents")
    return IGRPrior(loc, scale, tv, relaxation, temperature, delta)


def _save(path: Path, prior: IGRPrior) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"loc": prior.loc.contiguous(), "scale": prior.scale.contiguous()}, str(tmp),
              metadata={"tv_distance": repr(prior.tv_distance), "relaxation": prior.relaxation})
    os.replace(tmp, path)


def fit_igr_prior(target_probs: Tensor | Sequence[float], *, temperature: float = 0.5, delta: float = 1.0,
                  relaxation: Literal["igr_i", "igr_sb"] = "igr_i", n_steps: int = 2000, num_samples: int = 2000,
                  lr: float = 0.05, seed: int = 0, cache: bool = True) -> IGRPrior:
    r"""Fit :math:`(\mu, \sigma)` so that the mean IGR sample matches ``target_probs``.

    Parameters
    ----------
    target_probs : Tensor or sequence of float, shape (K,)
        Target categorical probabilities (non-negative, summing to 1, ``K >= 2``); for IGR-SB,
        the finite (truncated) version of e.g. a Poisson.
    temperature : float
        :math:`\tau > 0` of the relaxation the prior is for.
    delta : float
        :math:`\delta > 0` of softmax++ (``"igr_i"``).
    relaxation : {"igr_i", "igr_sb"}
        softmax++ (also the prior of IGR-Planar) or untruncated stick-breaking over K categories.
    n_steps, num_samples : int
        Adam steps and Monte Carlo samples per step.
    lr : float
        Initial Adam learning rate (cosine-annealed to 0).
    seed : int
        Seed of the noise, so a fit is reproducible.
    cache : bool
        Read and write the result under ``cache_dir() / "igr_priors"``. An unreadable cache
        file is recomputed (with a warning).

    Returns
    -------
    IGRPrior
        ``loc`` and ``scale`` of shape (K-1,), ``tv_distance`` of the fit.

    Examples
    --------
    >>> prior = fit_igr_prior([0.25, 0.25, 0.5], n_steps=60, num_samples=100, cache=False)
    >>> prior.loc.shape, prior.tv_distance < 0.05
    (torch.Size([2]), True)
    """
    target = check_probabilities(target_probs)
    temperature = check_temperature(temperature)
    if isinstance(temperature, Tensor):
        raise TypeError(f"temperature must be a float here, got a tensor {temperature}")
    delta = check_float("delta", delta, 0, low_open=True)
    if relaxation not in PRIOR_RELAXATIONS:
        raise ValueError(f"relaxation must be one of {PRIOR_RELAXATIONS}, got {relaxation!r}")
    n_steps, num_samples = check_int("n_steps", n_steps, 1), check_int("num_samples", num_samples, 1)
    lr = check_float("lr", lr, 0, low_open=True)
    seed = check_int("seed", seed, 0)
    if not isinstance(cache, bool):
        raise TypeError(f"cache must be a bool, got {cache!r} of type {type(cache).__name__}")
    settings = dict(temperature=temperature, delta=delta, relaxation=relaxation, n_steps=n_steps,
                    num_samples=num_samples, lr=lr, seed=seed)
    path = _cache_path(target, **settings) if cache else None
    if path is not None and path.exists():
        try:
            return _load(path, target.numel() - 1, relaxation, temperature, delta)
        except Exception as err:  # noqa: BLE001 - any unreadable file is recomputed
            warnings.warn(f"ignoring the corrupt IGR prior cache file {path} ({type(err).__name__}: {err}); "
                          "recomputing it", RuntimeWarning, stacklevel=2)
    prior = _fit(target, **settings)  # type: ignore[arg-type]
    if path is not None:
        try:
            _save(path, prior)
        except OSError as err:
            warnings.warn(f"could not write the IGR prior cache file {path}: {err}", RuntimeWarning, stacklevel=2)
    return prior
