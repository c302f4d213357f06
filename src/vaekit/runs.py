"""Reading run directories: rebuild a trained model, evaluate it, sample from it.

Everything here works from ``config.yaml`` and safetensors weights alone; nothing is
unpickled.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ._checks import check_int
from .analysis import save_image_grid
from .data import DataModule
from .distributions import point_estimate
from .distributions.flows import upgrade_state_dict
from .inference import iwae_log_likelihood
from .inference.budget import check_force, check_progress
from .models import LatentVariableModel
from .training import RunDir
from .training.checkpoint import CorruptFileError, load_weights, shape_mismatches
from .training.loggers import MetricsWriter, read_metrics

__all__ = ["load", "load_data", "evaluate_run", "sample_run", "reconstruct", "save_reconstructions"]

Checkpoint = Literal["best", "last"]


def _build(section: str, spec: Any, base: type, run: RunDir, *, trust_code: bool = False, allow: Iterable[Any] = ()) -> Any:
    """One section of a run's config, built after :func:`vaekit.trust.check_config_trust` accepted it."""
    from jsonargparse import ArgumentParser

    from .trust import UntrustedConfigError, building_from_run, check_config_trust

    if not spec:
        raise ValueError(f"{run.config_file} has no '{section}' section, so the {section} cannot be rebuilt "
                         f"(it was trained with objects that could not be written to a config)")
    allow = list(allow)
    check_config_trust({section: spec}, file=run.config_file, trust_code=trust_code, allow=allow)  # before any import
    parser = ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_subclass_arguments(base, section, required=True)
    try:  # the checked mapping itself, with no file behind it: no path in it is read relative to the run
        with building_from_run(run.config_file, trust_code=trust_code, allow=allow, where=section):
            cfg = parser.parse_object({section: spec})
            init = parser.instantiate(cfg) if hasattr(parser, "instantiate") else parser.instantiate_classes(cfg)
    except UntrustedConfigError:  # held back while building (see vaekit.trust.building_from_run)
        raise
    except Exception as e:  # jsonargparse wraps the constructor's own error
        raise ValueError(f"cannot rebuild the {section} from {run.config_file}: {e}") from e
    return getattr(init, section)


def load(run_dir: str | os.PathLike[str], *, checkpoint: Checkpoint = "best", device: str | torch.device = "cpu",
         trust_code: bool = False, allow: Iterable[Any] = ()) -> LatentVariableModel:
    """The trained model of a run directory, rebuilt from ``config.yaml`` + safetensors weights.

    Parameters
    ----------
    run_dir : path
        A directory written by ``vaekit fit`` / :meth:`vaekit.training.Trainer.fit`.
    checkpoint : {"best", "last"}
        Which weights: the best validation loss (falls back to last if there was no
        validation, and, with a warning, when ``best.safetensors`` is corrupt) or the
        last step. Files listed in ``checkpoints/manifest.json`` are checked against the
        SHA-256 recorded when they were written.
    device : str or torch.device
    trust_code : bool
        Build classes and ``from_python`` sources from outside vaekit's registry of
        constructible types (with a :class:`vaekit.trust.TrustWarning` naming them). Only
        for run directories whose author you trust: a config can name any code.
    allow : iterable of class, function or str
        Your own classes or factories (or their dotted paths) that the config may name;
        see :func:`vaekit.register_constructible`.

    Returns
    -------
    LatentVariableModel in eval mode.

    Raises
    ------
    vaekit.trust.UntrustedConfigError
        When ``config.yaml`` names code outside the registry and ``trust_code`` is false
        (nothing is imported or run).
    vaekit.training.checkpoint.CorruptFileError
        (a ``ValueError``) When the weights to use are truncated or corrupt (their SHA-256
        differs from the manifest's); the message names the file.

    Warns
    -----
    UserWarning
        When ``best.safetensors`` is corrupt and ``last.safetensors`` is used instead.
    """
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    run = RunDir.open(run_dir)
    model = _build("model", run.read_config().get("model"), LatentVariableModel, run, trust_code=trust_code, allow=allow)
    path = run.best_weights if checkpoint == "best" and run.best_weights.is_file() else run.last_weights
    if not path.is_file():
        raise FileNotFoundError(f"{run.path} has no saved weights ({path.name} is missing): the run never reached a checkpoint")
    try:
        state = load_weights(path)
    except CorruptFileError as e:
        if path != run.best_weights or not run.last_weights.is_file():
            raise
        warnings.warn(f"{e}. Using {run.last_weights} (the weights of the last checkpoint) instead", stacklevel=2)
        path = run.last_weights
        state = load_weights(path)
    state = upgrade_state_dict(model, state)  # flow weights saved before flows were lists of steps
    diff = shape_mismatches(model, state)
    if diff:
        raise ValueError(f"weights in {path} do not match the model in {run.config_file}: {', '.join(diff)}")
    model.load_state_dict(state)
    return model.to(device).eval()


def load_data(run_dir: str | os.PathLike[str], *, trust_code: bool = False, allow: Iterable[Any] = ()) -> DataModule:
    """The (not yet set up) data module of a run, rebuilt from its ``config.yaml``.

    ``trust_code`` and ``allow`` are as in :func:`load`: a data module from outside
    vaekit's registry of constructible types is refused with
    :class:`vaekit.trust.UntrustedConfigError` unless allowed or trusted.
    """
    run = RunDir.open(run_dir)
    return _build("data", run.read_config().get("data"), DataModule, run, trust_code=trust_code, allow=allow)


def _split(data: DataModule, split: str) -> Tensor:
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    data.setup()
    x = getattr(data, split)
    if x is None:
        have = [s for s in ("train", "val", "test") if getattr(data, s) is not None]
        raise ValueError(f"{type(data).__name__} has no {split!r} split; available: {have}")
    if not isinstance(x, Tensor):
        raise TypeError(f"evaluation needs an in-memory {split} split (a Tensor), got {type(x).__name__}")
    return x


def evaluate_run(run_dir: str | os.PathLike[str], *, iwae_k: int = 5000, split: str = "test", n_points: int | None = None,
                 batch_size: int | None = None, checkpoint: Checkpoint = "best", device: str | None = None,
                 seed: int = 0, ais_chains: int | None = None, ais_steps: int | None = None,
                 local_opt: Sequence[str] = (), local_opt_steps: int = 10000,
                 progress: bool | Callable[[int, int], Any] = False, force: bool = False,
                 trust_code: bool = False, allow: Iterable[Any] = (), model: LatentVariableModel | None = None) -> dict[str, Any]:
    """ELBO and IWAE log-likelihood of a run's model on one split, optionally AIS and the gap table.

    ELBO and IWAE come from the same ``iwae_k`` log-weights per example: the IWAE estimate
    is their log-mean-exp, the ELBO their mean. Writes ``eval/evaluate-<split>-k<k>.json``
    and appends the numbers to ``metrics.csv`` (split ``"<split>"``). With ``ais_chains`` /
    ``ais_steps`` (AIS) or ``local_opt`` (families to optimise per datapoint, e.g.
    ``["ffg", "af"]``) it also computes the inference-gap decomposition
    (:func:`vaekit.inference.gaps.inference_gaps`) and writes ``eval/gaps-<split>.{md,json,csv}``.
    AIS works on every model with ``log_joint``/``log_prior``/``sample_prior`` (hierarchical VAEs
    included); ``local_opt`` needs a model that declares ``amortized`` (a single-latent VAE) and
    is refused otherwise, with a ``TypeError`` naming the model, before anything is written.

    ``progress`` (True, or a callable ``progress(done, total)``) reports every estimate as
    it runs, with the time left; ``force=True`` runs estimates beyond the work budget of
    :mod:`vaekit.inference.budget`, which are otherwise refused (all checked before
    anything runs or is written).

    ``trust_code`` and ``allow`` are as in :func:`load`, for the model and the data module.
    ``model``: the run's model already loaded by :func:`load` with this ``checkpoint`` (moved
    to ``device`` here; ``vaekit evaluate`` passes the one it built to choose the evaluation);
    default: loaded here.

    Returns
    -------
    dict with ``elbo``, ``elbo_stderr``, ``iwae``, ``iwae_stderr``, ``k``, ``n``, ``seconds``,
    and ``gaps`` (the gap column) when asked for.
    """
    check_int("iwae_k", iwae_k)
    for name, value in (("ais_chains", ais_chains), ("ais_steps", ais_steps), ("local_opt_steps", local_opt_steps),
                        ("n_points", n_points), ("batch_size", batch_size)):
        if value is not None:
            check_int(name, value)
    progress, force = check_progress(progress), check_force(force)
    local_opt = list(local_opt)
    if local_opt:
        from .distributions import POSTERIORS
        from .inference.gaps import LOCAL_ALIASES

        unknown = [f for f in local_opt if LOCAL_ALIASES.get(f, f) not in POSTERIORS]
        if unknown:
            raise ValueError(f"local_opt: unknown famil{'y' if len(unknown) == 1 else 'ies'} {unknown}; accepted: "
                             f"{', '.join([*LOCAL_ALIASES, *POSTERIORS])}")
    if n_points is not None and int(n_points) < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    run = RunDir.open(run_dir)
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if model is None:
        model = load(run.path, checkpoint=checkpoint, device=dev, trust_code=trust_code, allow=allow)
    else:
        model = model.to(dev).eval()
    x = _split(load_data(run.path, trust_code=trust_code, allow=allow), split)
    if n_points is not None:
        x = x[: int(n_points)]
    if local_opt:
        first = model.validate_data(x[:1]).to(dev)
        try:
            with torch.no_grad():  # fails before anything is written for models local optimisation cannot handle
                model.amortized(first)
        except TypeError as e:
            raise TypeError(f"{e}. local_opt={local_opt!r} needs it; leave local_opt out for the ELBO, IWAE, AIS "
                            "and the inference gap, without the approximation/amortization split (which needs L[q*])"
                            ) from e
    ais = None
    if ais_chains is not None or ais_steps is not None:
        ais = {"n_chains": int(ais_chains or 16), "n_steps": int(ais_steps or 1000)}
        from .inference import check_annealable

        check_annealable(model)  # before anything is written
    from .inference.gaps import check_budgets

    check_budgets(int(x.shape[0]), iwae_k=iwae_k, ais=ais, local_opt_kwargs={"max_steps": int(local_opt_steps)}
                  if local_opt else None, force=force)  # every estimate, before the first runs
    rows = read_metrics(run.metrics)  # a damaged metrics.csv stops here, naming its line, before anything is written
    step, epoch = (rows[-1]["step"], rows[-1]["epoch"]) if rows else (0, 0)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    res = iwae_log_likelihood(model, x, k=int(iwae_k), batch_size=batch_size, device=dev, progress=progress, force=force)
    seconds = time.perf_counter() - t0
    elbo = res.elbo_per_example
    out = {
        "split": split, "n": int(x.shape[0]), "k": int(iwae_k), "checkpoint": checkpoint, "device": str(dev),
        "iwae": res.mean, "iwae_stderr": res.stderr,
        "elbo": float(elbo.mean()), "elbo_stderr": float(elbo.std(unbiased=True) / math.sqrt(len(elbo))) if len(elbo) > 1 else 0.0,
        "seconds": seconds,
    }
    path = run.eval / f"evaluate-{split}-k{int(iwae_k)}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    writer = MetricsWriter(run, tensorboard=False)
    writer.log({"elbo": out["elbo"], f"iwae_k{int(iwae_k)}": out["iwae"]}, step=step, epoch=epoch, split=split)
    writer.close()
    out["path"] = str(path)
    if ais_chains is not None or ais_steps is not None or local_opt:
        from .inference.gaps import inference_gaps, write_gap_report

        col = inference_gaps(model, x, local_opt=local_opt, ais=ais, iwae=res, device=dev,
                             local_opt_kwargs={"max_steps": int(local_opt_steps)}, label=run.path.parent.name,
                             progress=progress, force=force)
        paths = write_gap_report([col], run.eval, stem=f"gaps-{split}")
        out["gaps"] = col.to_dict()
        out["gaps_path"] = str(paths["md"])
    return out


@torch.no_grad()
def reconstruct(model: LatentVariableModel, x: Tensor) -> Tensor:
    """Mean of p(x | z) at the posterior's point estimate of every latent, shape (batch, *data_shape).

    The point estimate is :func:`vaekit.distributions.point_estimate`: the mean, for a flow
    the flow at its base mean (deterministic); a relaxed categorical, which has neither,
    gives the average of 32 draws (as the analysis tools do).
    """
    z = {name: point_estimate(q, n_mc=32) for name, q in model.encode(x).items()}
    return model.decode(z).mean


def save_reconstructions(model: LatentVariableModel, x: Tensor, path: str | os.PathLike[str], n: int = 32) -> Path:
    """PNG with originals and reconstructions interleaved row by row (images only; see
    :func:`vaekit.analysis.reconstruction.save_reconstruction_grid`)."""
    from .analysis.reconstruction import save_reconstruction_grid

    x = x[:n].to(next(model.parameters()).device)
    return save_reconstruction_grid(x, reconstruct(model, x), path, model.data_shape)

def sample_run(run_dir: str | os.PathLike[str], n: int = 64, out: str | os.PathLike[str] | None = None, *,
               checkpoint: Checkpoint = "best", seed: int = 0, mean: bool = True, trust_code: bool = False,
               allow: Iterable[Any] = (), temperature: Any = None) -> Path:
    """Draw ``n`` samples from a run's model and save them as a PNG grid (default ``eval/samples.png``).

    ``trust_code`` and ``allow`` are as in :func:`load`. ``temperature`` (default: the
    model's own sampling) is one setting of
    :func:`vaekit.analysis.generation.check_temperature`: a number, or for a hierarchical
    VAE one number per latent layer or a schedule; it is checked before anything is written.
    """
    from .analysis.generation import check_temperature, sample_at_temperature

    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    run = RunDir.open(run_dir)
    model = load(run.path, checkpoint=checkpoint, trust_code=trust_code, allow=allow)
    temperature = None if temperature is None else check_temperature(model, temperature)
    torch.manual_seed(seed)
    x = model.sample(int(n), mean=mean) if temperature is None else sample_at_temperature(model, int(n), temperature, mean=mean)
    return save_image_grid(x, Path(out) if out else run.eval / "samples.png", model.data_shape, title=f"{n} samples")


def evaluate_group_run(run_dir: str | os.PathLike[str], *, split: str = "test", ks: Sequence[int] = (1, 2, 5, 10, 20),
                       checkpoint: Checkpoint = "best", device: str = "cpu", seed: int = 0, trust_code: bool = False,
                       allow: Iterable[Any] = (), model: LatentVariableModel | None = None, **options: Any) -> dict[str, Any]:
    """``vaekit evaluate`` of a group-latent run: per-group metrics and the new-group
    data-efficiency curve, written to ``RUN_DIR/eval/`` (see
    :func:`vaekit.inference.groups.evaluate_groups`, which takes the other ``options``;
    ``trust_code`` and ``allow`` are as in :func:`load`; ``model`` is the run's model already
    loaded with this ``checkpoint``, as in :func:`evaluate_run`). For a Gaussian likelihood with group
    latents also the variance components on the outcome's scale
    (:meth:`~vaekit.models.group.GroupPredictor.variance_components`), returned under
    ``"variance_components"`` and written to ``RUN_DIR/eval/variance_components.json``."""
    from .inference.groups import evaluate_groups

    run = RunDir.open(run_dir)
    if model is None:
        model = load(run.path, checkpoint=checkpoint, device=device, trust_code=trust_code, allow=allow)
    else:
        model = model.to(device).eval()
    data = load_data(run.path, trust_code=trust_code, allow=allow)
    data.setup()
    result = evaluate_groups(model, data, run.eval, split=split, ks=ks, device=device, seed=seed, **options)
    if model.latent is not None and model.likelihood != "categorical":
        components = model.variance_components(data, seed=seed).to_dict()
        (run.eval / "variance_components.json").write_text(json.dumps(components, indent=2))
        result["variance_components"] = components
    return result

def analyze_run(run_dir: str | os.PathLike[str], split: Literal["train", "val", "test"] = "test", n_points: int = 1000,
                checkpoint: Literal["best", "last"] = "best", which: Sequence[str] | str | None = None,
                device: str | None = None, trust_code: bool = False, allow: Iterable[Any] = (),
                **kwargs: Any) -> dict[str, Any]:
    """Analyse a trained run: its model on the first ``n_points`` examples of a split.

    Writes ``RUN_DIR/eval/analysis/`` (PNGs and ``analysis.json``); the labels of the split,
    when the data module has them, feed the probes.

    Parameters
    ----------
    run_dir : path
        A run directory written by ``vaekit fit`` or :meth:`vaekit.training.Trainer.fit`.
    split : {"train", "val", "test"}
    n_points : int
        Examples analysed (the first ones of the split), ``>= 2``.
    checkpoint : {"best", "last"}
    which : str or sequence of str, optional
        Subset of :data:`vaekit.analysis.ANALYSES`.
    device : str, optional
        Default CPU.
    trust_code : bool
    allow : iterable of class, function or str
        As in :func:`load`.
    **kwargs
        Passed to :func:`vaekit.analysis.analyze_model`.

    Returns
    -------
    dict, as :func:`vaekit.analysis.analyze_model`.
    """
    from .analysis.report import analyze_model, check_which

    n_points = check_int("n_points", n_points, 2)
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    check_which(which)
    model = load(run_dir, checkpoint=checkpoint, device=device or "cpu", trust_code=trust_code, allow=allow)
    data = load_data(run_dir, trust_code=trust_code, allow=allow)
    x = _split(data, split)[:n_points]
    labels = getattr(data, f"{split}_labels", None)
    labels = None if labels is None else labels[:n_points]
    return analyze_model(model, x, labels, RunDir.open(run_dir).eval / "analysis", which=which, **kwargs)
