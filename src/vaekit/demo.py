"""``vaekit demo``: train a small VAE on MNIST, estimate log p(x), save pictures.

It goes through exactly the path of ``vaekit fit`` (a config dict -> jsonargparse ->
:class:`~vaekit.training.Trainer`), then ``vaekit evaluate`` and ``vaekit sample``, so the
run directory it leaves is an ordinary one. MNIST is looked up in ``root`` /
``$VAEKIT_DATA`` / the user cache and downloaded when possible; with no data and no
network it falls back to scikit-learn's bundled 8x8 digits and says so.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

__all__ = ["demo_config", "run_demo"]


def demo_config(dataset: str = "mnist", *, epochs: int | None = None, runs_dir: str = "runs") -> dict[str, Any]:
    """The demo's fit config: an MLP VAE (D-256-(16), ELU, Bernoulli) with dynamic binarization.

    Parameters
    ----------
    dataset : {"mnist", "digits"}
    epochs : int, optional
        Default 2 for MNIST (about a minute on 2 CPU cores), 60 for the digits.
    runs_dir : str

    >>> demo_config("digits")["model"]["init_args"]["data_shape"]
    [64]
    """
    if dataset not in ("mnist", "digits"):
        raise ValueError(f"dataset must be 'mnist' or 'digits', got {dataset!r}")
    d = 784 if dataset == "mnist" else 64
    data = ({"class_path": "vaekit.data.MNIST", "init_args": {"binarize": "dynamic", "flatten": True}}
            if dataset == "mnist" else
            {"class_path": "vaekit.data.Digits", "init_args": {"binarize": "dynamic", "flatten": True, "test_fraction": 0.2}})
    epochs = epochs if epochs is not None else (2 if dataset == "mnist" else 60)
    mlp = "vaekit.nn.MLP"
    return {
        "model": {"class_path": "vaekit.models.VAE", "init_args": {
            "encoder": {"class_path": mlp, "init_args": {"in_features": d, "out_features": 256, "activation": "elu",
                                                         "output_activation": "elu"}},
            "posterior": {"class_path": "vaekit.distributions.DiagonalGaussian",
                          "init_args": {"context_features": 256, "latent_features": 16}},
            "decoder": {"class_path": mlp, "init_args": {"in_features": 16, "out_features": d, "hidden": [256],
                                                         "activation": "elu"}},
            "likelihood": {"class_path": "vaekit.distributions.Bernoulli"},
            "data_shape": [d],
        }},
        "data": data,
        "objective": {"class_path": "vaekit.objectives.ELBO", "init_args": {"warmup_steps": 200}},
        "trainer": {"max_epochs": epochs, "batch_size": 100, "lr": 1e-3, "val_every_epochs": 1, "log_every_steps": 50,
                    "seed": 0, "root_dir": runs_dir, "run_name": "demo"},
    }


def _mnist_available() -> tuple[bool, str]:
    """MNIST found locally, or downloaded now (checked against its pinned SHA-256)."""
    from .data import DatasetNotFoundError, find_dataset, locate

    if find_dataset("mnist") is not None:
        return True, ""
    try:
        locate("mnist", download=True)
    except (DatasetNotFoundError, OSError, ValueError) as e:
        return False, str(e).splitlines()[0]
    return True, ""


def run_demo(runs_dir: str = "runs", epochs: int | None = None, iwae_k: int | None = None,
             force_digits: bool = False, n_eval: int = 1000) -> Path:
    """Train, evaluate and sample; print what happens; return the run directory."""
    from .config import fit_config
    from .data import search_dirs
    from .runs import evaluate_run, load, load_data, sample_run, save_reconstructions

    print("vaekit demo: training a small VAE (MLP encoder and decoder, 16 latent dimensions, Bernoulli pixels) on "
          "binarized MNIST (offline: scikit-learn's 8x8 digits), then estimating log p(x) with IWAE and saving samples "
          "and reconstructions as PNG (about 1-2 minutes on 2 CPU cores)", flush=True)
    dataset = "mnist"
    if force_digits:
        dataset = "digits"
        print("data: scikit-learn's bundled 8x8 digits (--offline-digits)")
    else:
        ok, why = _mnist_available()
        if not ok:
            dataset = "digits"
            places = ", ".join(f"{p} ({src})" for p, src in search_dirs())
            print(f"data: MNIST is not available ({why}); looked in: {places}. Falling back to scikit-learn's bundled "
                  "8x8 digits, which need no files and no network. Set VAEKIT_DATA to a folder holding mnist/mnist.npz "
                  "(or the official idx files) to use MNIST.")
        else:
            print("data: MNIST (50,000 train / 10,000 validation / 10,000 test), dynamically binarized")
    cfg = demo_config(dataset, epochs=epochs, runs_dir=runs_dir)
    t0 = time.perf_counter()
    result = fit_config(cfg)
    run = Path(result.run_dir)
    if result.failed:  # never evaluate or show a run that failed as if it were fine
        raise RuntimeError(f"the demo run failed ({result.stop_reason}): {result.message}; run directory: {run}")
    print(f"trained {result.global_step} steps in {time.perf_counter() - t0:.0f} s")
    k = iwae_k if iwae_k is not None else (200 if dataset == "mnist" else 500)
    out = evaluate_run(run, iwae_k=k, split="test", n_points=n_eval)
    print(f"test ({out['n']} examples): ELBO {out['elbo']:.2f} nats, IWAE log p(x) (k={k}) {out['iwae']:.2f} "
          f"± {out['iwae_stderr']:.2f} nats")
    samples = sample_run(run, n=64)
    data = load_data(run)
    data.setup()
    recon = save_reconstructions(load(run), data.test, run / "eval" / "reconstructions.png")
    print(f"samples: {samples}\nreconstructions: {recon}")
    print(f"run directory: {run}   (try: vaekit evaluate {run} --iwae-k 5000)")
    return run
