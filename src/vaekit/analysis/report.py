"""Run every analysis that applies to a model and write PNGs and ``analysis.json``.

:func:`analyze_model` works on a model and examples in memory; :func:`vaekit.runs.analyze_run` on a
run directory (``vaekit analyze RUN_DIR`` writes ``RUN_DIR/eval/analysis/``). Functions
appended to :data:`EXTRA_ANALYSES` run after the built-in tools.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import InvalidArgumentError, check_float, check_int
from ..nn import eval_mode
from ._common import block_outputs, check_block, check_labels, check_x, is_image, is_latent, posterior_means
from .divergence import kl_statistics, save_kl_plot
from .generation import TemperatureSetting, check_temperature, samples_at_temperatures, save_generation_grids
from .mei import NoInputDependence, most_exciting_input, unit_activation
from .probes import probe_latents
from .receptive import save_field_grid, spike_triggered_average
from .reconstruction import reconstruction_stats, save_reconstruction_grid
from .traversal import latent_traversal, save_traversal_grid

__all__ = ["ANALYSES", "EXTRA_ANALYSES", "TRAVERSAL_OFFSETS", "AnalysisFunction", "check_which", "analyze_model"]

#: Names of the built-in analyses, in the order they run.
ANALYSES: tuple[str, ...] = ("recon", "generation", "kl", "probe", "traversal", "receptive", "mei")

AnalysisFunction = Callable[[Any, Tensor, "Tensor | None", Path], "dict[str, Any] | None"]

#: Further analyses ``f(model, x, labels, out_dir) -> dict | None``, run by :func:`analyze_model`
#: after the built-in ones; ``None`` means "does not apply to this model". Their results go to
#: ``analysis.json`` under ``extra[f.__name__]`` (a ``"files"`` entry lists the names of files they
#: wrote in ``out_dir``); ``which`` selects them by that name or by ``"extra"``.
EXTRA_ANALYSES: list[AnalysisFunction] = []


def discrete(model: Any, x: Tensor, labels: Tensor | None, out_dir: Path) -> dict[str, Any] | None:
    """Relaxed-categorical diagnostics (simplex proximity per temperature, gradient variance,
    IGR-SB categories used) for models with a relaxed discrete latent; None for the others."""
    from .discrete import discrete_diagnostics, relaxed_family

    if relaxed_family(model) is None:
        return None
    out = discrete_diagnostics(model, x, out_dir)
    return None if out is None else {**out, "files": ["discrete.json", "discrete_proximity.png"]}


EXTRA_ANALYSES.append(discrete)


def check_which(which: Sequence[str] | str | None) -> list[str]:
    """The analyses to run: every one for None, else the named ones (built-in, ``"extra"`` or an extra's name).

    >>> check_which("kl,probe")
    ['kl', 'probe']
    >>> check_which(["recon", "ssim"])
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: unknown analysis 'ssim'; accepted: recon, generation, kl, probe, traversal, receptive, mei, extra...
    """
    accepted = [*ANALYSES, "extra", *(f.__name__ for f in EXTRA_ANALYSES)]
    if which is None:
        return accepted
    names = [w.strip() for w in which.split(",")] if isinstance(which, str) else list(which)
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise InvalidArgumentError(f"which must name at least one analysis; accepted: {', '.join(accepted)}")
    for n in names:
        if n not in accepted:
            raise InvalidArgumentError(f"unknown analysis {n!r}; accepted: {', '.join(accepted)}")
    return names


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return value.name
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


#: Offsets of the latent traversals (added to the posterior mean of the traversed unit).
TRAVERSAL_OFFSETS: tuple[float, ...] = (-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0)


@dataclass
class _Context:
    """What every built-in analysis of :func:`analyze_model` reads."""

    model: Any
    x: Tensor
    y: Tensor | None
    out: Path
    shape: tuple[int, ...]
    images: bool
    variance: dict[str, Tensor]  # activity of every unit, per latent (or per block analysed)
    centre: Tensor  # data mean: where white noise and most exciting inputs are placed
    spread: float  # data standard deviation: the white-noise level
    norm: float  # mean distance of the examples from the data mean: the norm of the MEI search
    settings: dict[str, Any]
    blocks: list[str] | None = None  # the blocks asked for (None: every latent)

    def units(self, latent: str) -> list[int]:
        """The ``n_units`` most active units of a latent, most active first."""
        var = self.variance[latent]
        return var.argsort(descending=True)[: min(self.settings["n_units"], var.numel())].tolist()


Outcome = tuple["dict[str, Any] | str", list[Path]]  # entries of analysis.json (or why skipped), files written


def _recon(c: _Context) -> Outcome:
    stats = reconstruction_stats(c.model, c.x, batch_size=c.settings["batch_size"])
    files = [stats.write_csv(c.out / "reconstruction.csv", c.y)]
    if c.images:
        k = min(c.settings["n_images"], c.x.shape[0])
        files.append(save_reconstruction_grid(c.x[:k].cpu(), stats.reconstructions[:k], c.out / "reconstructions.png", c.shape))
    return {"recon": stats.summary()}, files


def _generation(c: _Context) -> Outcome:
    if not c.images:
        return "data are not images", []
    n, temps = c.settings["n_images"], c.settings["temperatures"]
    paths = save_generation_grids(samples_at_temperatures(c.model, n, temps, seed=c.settings["seed"]), c.out, c.shape)
    return {"generation": {"temperatures": temps, "n": n, "files": [p.name for p in paths.values()]}}, list(paths.values())


def _kl(c: _Context) -> Outcome:
    kl = kl_statistics(c.model, c.x, batch_size=c.settings["batch_size"])
    entries = {"kl": {k: s.to_dict() for k, s in kl.items()}, "kl_total": sum(s.kl for s in kl.values()),
               "active_units": {k: s.active_units for k, s in kl.items()}}
    return entries, [save_kl_plot(kl, c.out / "kl_per_dim.png")]


def _probe(c: _Context) -> Outcome:
    if c.y is None:
        return "no labels", []
    if len(c.y.unique()) < 2:
        return "labels hold a single class", []
    probes = probe_latents(c.model, c.x, c.y, test_fraction=c.settings["probe_test_fraction"], mlp=c.settings["probe_mlp"],
                           seed=c.settings["seed"], batch_size=c.settings["batch_size"], blocks=c.blocks)
    return {"probe": {k: p.to_dict() for k, p in probes.items()}}, []


def _traversal(c: _Context) -> Outcome:
    if not c.images:
        return "data are not images", []
    entries, files = {}, []
    span = f"offsets {TRAVERSAL_OFFSETS[0]:g}..{TRAVERSAL_OFFSETS[-1]:g}"
    for name in c.variance:
        if is_latent(c.model, name):
            dims, kw, what = c.units(name), {}, "units"
        else:  # a deterministic block: its top principal directions over the examples, in standard deviations
            dims = list(range(min(c.settings["n_units"], c.variance[name].numel(), c.x.shape[0])))
            kw, what = {"directions": "pca", "reference": c.x}, "principal directions"
        t = latent_traversal(c.model, c.x[:1], block=name, dims=dims, offsets=TRAVERSAL_OFFSETS, **kw)
        d = latent_traversal(c.model, c.x[:1], block=name, dims=dims, offsets=TRAVERSAL_OFFSETS, differences=True, **kw)
        files.append(save_traversal_grid(t, c.out / f"traversal_{name}.png", c.shape, title=f"{name}: {what} {dims}, {span}"))
        files.append(save_traversal_grid(d, c.out / f"traversal_diff_{name}.png", c.shape, differences=True,
                                         title=f"{name}: change from the unshifted decode (grey: none), {span}"))
        entries[name] = {"units" if what == "units" else "principal_directions": dims, "offsets": list(TRAVERSAL_OFFSETS),
                         "max_change": d.flatten(2).abs().amax(2).tolist()}
    return {"traversal": entries}, files


def _receptive(c: _Context) -> Outcome:
    entries, files = {}, []
    for latent in c.variance:
        units = c.units(latent)
        sta = spike_triggered_average(c.model, block=latent, units=units, n_samples=c.settings["n_noise"], noise_std=c.spread,
                                      centre=c.centre, batch_size=c.settings["batch_size"], seed=c.settings["seed"])
        entries[latent] = {"units": units, "noise_std": c.spread, "n_noise": c.settings["n_noise"],
                           "field_norm": sta.flatten(1).norm(dim=1).tolist()}
        if c.images:
            files.append(save_field_grid(sta, c.out / f"receptive_{latent}.png", c.shape, title=f"{latent}: STA of units {units}"))
    return {"receptive": entries}, files


def _mei(c: _Context) -> Outcome:
    entries, files = {}, []
    g = torch.Generator().manual_seed(c.settings["seed"])
    centre = c.centre.cpu()
    for latent in c.variance:
        units = c.units(latent)
        try:
            m = most_exciting_input(c.model, block=latent, units=units, norm=c.norm, centre=c.centre,
                                    steps=c.settings["mei_steps"], seed=c.settings["seed"])
        except NoInputDependence as e:  # e.g. a hierarchical VAE's start state: the other blocks go on
            entries[latent] = {"units": units, "skipped": str(e)}
            continue
        rand = torch.randn(16, len(units), *c.shape, generator=g)  # 16 random inputs of the same norm per unit
        rand = centre + rand * (c.norm / rand.flatten(2).norm(dim=2)).view(16, len(units), *[1] * len(c.shape))
        with torch.no_grad():
            base = torch.stack([unit_activation(c.model, r.to(c.x.device), latent, units) for r in rand]).mean(0)
        entries[latent] = {"units": units, "norm": c.norm, "activation": m.activation.tolist(),
                           "random_activation": base.cpu().tolist()}
        if c.images:
            files.append(save_field_grid(m.inputs - centre, c.out / f"mei_{latent}.png", c.shape,
                                         title=f"{latent}: most exciting inputs (minus data mean) of units {units}"))
    return {"mei": entries}, files


_TOOLS: dict[str, Callable[[_Context], Outcome]] = {
    "recon": _recon, "generation": _generation, "kl": _kl, "probe": _probe, "traversal": _traversal,
    "receptive": _receptive, "mei": _mei,
}


def analyze_model(model: Any, x: Tensor, labels: Tensor | Sequence[int] | None = None,
                  out_dir: str | os.PathLike[str] = "analysis", *, which: Sequence[str] | str | None = None,
                  n_images: int = 32, temperatures: Sequence[TemperatureSetting] = (0.0, 0.5, 0.75, 1.0), n_units: int = 8,
                  n_noise: int = 4096, mei_steps: int = 100, probe_mlp: bool = False, probe_test_fraction: float = 0.3,
                  batch_size: int = 256, seed: int = 0, blocks: Sequence[str] | str | None = None) -> dict[str, Any]:
    """Run every analysis that applies and write its figures and ``analysis.json`` to ``out_dir``.

    Image figures (reconstructions, samples, traversals, receptive fields, most exciting
    inputs) are drawn when ``model.data_shape`` is an image or a square vector (784 ->
    28x28); the numbers are computed for any data. The probes need ``labels``.

    Parameters
    ----------
    model : LatentVariableModel
    x : Tensor of shape (n, *data_shape)
        Examples to analyse, ``n >= 2`` (e.g. the test split).
    labels : Tensor or sequence of int of shape (n,), optional
        Class labels of ``x`` for the probes.
    out_dir : str or path
        Created if needed.
    which : str or sequence of str, optional
        Subset of :data:`ANALYSES` (a comma-separated string or a list); default all.
    n_images : int
        Examples per reconstruction / sample grid.
    temperatures : sequence of temperature settings
        One sample grid per setting: a number (every latent), or for a model whose
        ``sample`` takes per-layer temperatures (a hierarchical VAE) a list with one number
        per latent layer in the model's order or a schedule ``"linear:START:END"``
        (:func:`vaekit.analysis.generation.check_temperature`).
    n_units : int
        Most active units (per latent) traversed and given a receptive field and an MEI.
    n_noise : int
        White-noise inputs for the receptive fields.
    mei_steps : int
        Gradient steps of the most-exciting-input search.
    probe_mlp : bool
        Also train MLP probes.
    probe_test_fraction : float
        Held-out fraction of the probes.
    batch_size : int
    seed : int
    blocks : str or sequence of str, optional
        What the probes, traversals, receptive fields and most exciting inputs look at
        (default: every latent): latent names, or for a hierarchical VAE any block's name
        (its output in the posterior pass at posterior means). A deterministic block is
        traversed along its top principal directions over ``x``; every traversal also
        writes its difference images (``traversal_diff_<name>.png``).

    Returns
    -------
    dict
        The contents of ``analysis.json``: one entry per analysis run, ``skipped``
        (analysis -> reason) and ``files`` (names written, relative to ``out_dir``).

    Raises
    ------
    ValueError, TypeError
        For bad arguments, before anything is written.
    """
    x = check_x(model, x)
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 examples, got {x.shape[0]}")
    y = None if labels is None else check_labels(labels, x.shape[0])
    names = check_which(which)
    n_images, n_units, n_noise = check_int("n_images", n_images), check_int("n_units", n_units), check_int("n_noise", n_noise, 2)
    mei_steps, batch_size, seed = check_int("mei_steps", mei_steps), check_int("batch_size", batch_size), check_int("seed", seed, 0)
    if isinstance(temperatures, (str, int, float)):
        raise InvalidArgumentError(f"temperatures must be a list of temperature settings (one sample grid each), "
                                   f"got {temperatures!r}; e.g. [0.5, 1.0] or [[1.0, 0.8, 0.6]]")
    temps = [check_temperature(model, t, f"temperatures[{i}]") for i, t in enumerate(temperatures)]
    check_float("probe_test_fraction", probe_test_fraction, 0, 1, low_open=True, high_open=True)
    targets = [blocks] if isinstance(blocks, str) else None if blocks is None else list(blocks)
    if targets is not None:
        if not targets:
            raise InvalidArgumentError("blocks must name at least one latent or block (or be None for every latent)")
        targets = list(dict.fromkeys(check_block(model, b, "blocks") for b in targets))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shape = tuple(model.data_shape)
    res: dict[str, Any] = {"model": type(model).__name__, "n": int(x.shape[0]), "data_shape": list(shape),
                           "images": is_image(shape), "skipped": {}, "files": []}
    files: list[Path] = []
    torch.manual_seed(seed)
    with eval_mode(model):
        with torch.no_grad():
            means = posterior_means(model, x, batch_size=batch_size)
        res["latents"] = {k: int(v.shape[1]) for k, v in means.items()}
        if targets is not None:
            with torch.no_grad():
                means = {b: means[b] if b in means else block_outputs(model, x, b, batch_size=batch_size).flatten(1)
                         for b in targets}
            res["blocks"] = {k: int(v.shape[1]) for k, v in means.items()}
        centre = x.mean(0)
        ctx = _Context(model, x, y, out, shape, res["images"], {k: v.double().var(0).float().cpu() for k, v in means.items()},
                       centre, float(x.std()) or 1.0, float((x - centre).flatten(1).norm(dim=1).mean()) or 1.0,
                       dict(n_images=n_images, temperatures=temps, n_units=n_units, n_noise=n_noise, mei_steps=mei_steps,
                            probe_mlp=probe_mlp, probe_test_fraction=probe_test_fraction, batch_size=batch_size, seed=seed),
                       targets)
        for name in ANALYSES:
            if name in names:
                entries, written = _TOOLS[name](ctx)
                if isinstance(entries, str):
                    res["skipped"][name] = entries
                else:
                    res.update(entries)
                files += written
    extras = [f for f in EXTRA_ANALYSES if which is None or "extra" in names or f.__name__ in names]
    if extras:
        res["extra"] = {}
    for f in extras:
        r = f(model, x, y, out)
        if r is None:
            res["skipped"][f.__name__] = "does not apply to this model"
        else:
            res["extra"][f.__name__] = r
            files += [out / name for name in r.get("files", [])]
    res["files"] = sorted({p.name for p in files})
    (out / "analysis.json").write_text(json.dumps(_jsonable(res), indent=2) + "\n")
    res["files"].append("analysis.json")
    res["out_dir"] = str(out)
    return res

