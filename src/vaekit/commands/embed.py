"""``vaekit embed``: fit a :class:`~vaekit.embedding.VAEEmbedder` and write the embedding, or embed new data with a saved one.

::

    vaekit embed DATA --n-components 2 --out Z.npy [--labels LABELS.npy --plot embedding.png] [--save MODEL_DIR]
    vaekit embed --model MODEL_DIR NEW_DATA --out Z.npy

``DATA`` is a ``.npy`` file (memory-mapped, streamed), a ``.npz`` archive with an ``x``
array (or a single array), a ``.csv`` file of numbers (a header line is skipped), or a
directory tree of ``.npy`` files with one example each (streamed). Whatever its kind, DATA is
checked as :class:`~vaekit.embedding.VAEEmbedder` checks every input
(:func:`~vaekit.embedding.inputs.validate_source`): a NaN, an infinity, non-numeric data or
the wrong number of features for ``--model`` stop the command with exit status 2 and a
message naming the file and the first bad example and feature, before anything is written.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "read_data"]


def read_data(path: str | os.PathLike[str]) -> Any:
    """What :meth:`VAEEmbedder.fit` gets for ``path``: a path to stream (``.npy``, directory) or an array source.

    Returns
    -------
    str or ArraySource
        The path of a ``.npy`` file or directory (streamed), or the array of an ``.npz`` or
        ``.csv`` file as an :class:`~vaekit.embedding.inputs.ArraySource` described by the
        file's path, so that the estimator's errors about its values name the file.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file, unknown suffix, an ``.npz`` without a usable array, unreadable CSV.
    """
    from ..cli import CLIError
    from ..embedding.inputs import ArraySource

    p = Path(path)
    if p.is_dir() or p.suffix == ".npy":
        if not p.exists():
            raise FileNotFoundError(f"DATA={os.fspath(path)!r} does not exist")
        return os.fspath(p)
    if not p.is_file():
        raise FileNotFoundError(f"DATA={os.fspath(path)!r} does not exist")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as archive:
                keys = list(archive.keys())
                key = "x" if "x" in keys else keys[0] if len(keys) == 1 else None
                if key is not None:
                    return ArraySource(archive[key], os.fspath(p))
        except (OSError, ValueError, EOFError) as e:  # not a zip archive, a damaged one, or an array of objects
            raise CLIError(f"cannot read {p} as an .npz archive of numeric arrays (no pickles are loaded): {e}") from None
        raise CLIError(f"{p} has arrays {keys}; name the examples 'x' (np.savez(path, x=X))")
    if p.suffix == ".csv":
        with open(p) as f:
            first = f.readline().split(",")
        try:
            [float(v) for v in first]
            skip = 0
        except ValueError:
            skip = 1
        try:
            return ArraySource(np.loadtxt(p, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64), os.fspath(p))
        except ValueError as e:
            raise CLIError(f"{p} is not a CSV file of numbers: {e}") from None
    raise CLIError(f"DATA={os.fspath(path)!r}: expected a .npy, .npz or .csv file or a directory of .npy files")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vaekit embed", description="Embed data with a VAE (like t-SNE/UMAP), or embed new "
                                "data with a saved model (--model).")
    p.add_argument("data", help=".npy, .npz (array 'x'), .csv, or a directory of .npy files (one example each)")
    p.add_argument("--out", required=True, help="where to write the embedding (.npy)")
    p.add_argument("--model", default=None, help="a saved embedder directory: only transform DATA with it")
    p.add_argument("--save", default=None, help="save the fitted embedder to this (new or empty) directory")
    p.add_argument("--labels", default=None, help=".npy of one label per example, to colour --plot")
    p.add_argument("--plot", default=None, help="write a scatter plot of the first two components (.png)")
    p.add_argument("--n-components", type=int, default=2)
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--posterior", default="iaf", choices=["iaf", "gaussian"])
    p.add_argument("--prior", default="mixture", choices=["mixture", "standard"])
    p.add_argument("--likelihood", default="gaussian", choices=["gaussian", "gaussian_predicted", "bernoulli"])
    p.add_argument("--neighbor-weight", type=float, default=0.4,
                   help="weight per feature of the k-NN neighbour term (0: the plain VAE; see VAEEmbedder)")
    p.add_argument("--n-neighbors", type=int, default=15, help="neighbours per example in the term's k-NN graph")
    p.add_argument("--no-normalization", action="store_true", help="do not standardise features (needed for bernoulli)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


def _check_paths(a: argparse.Namespace) -> None:
    """Every output-path and option problem, before any data are read or a model is trained."""
    from ..cli import CLIError

    if not a.out.endswith(".npy"):
        raise CLIError(f"--out {a.out!r} must end in .npy")
    for flag, value in (("--out", a.out), ("--plot", a.plot)):
        if value is not None and not Path(value).resolve().parent.is_dir():
            raise CLIError(f"{flag} {value!r}: directory {str(Path(value).resolve().parent)!r} does not exist")
    if a.model is not None and a.save is not None:
        raise CLIError("--save goes with fitting; with --model the embedder is already saved")
    if a.save is not None and Path(a.save).exists() and (not Path(a.save).is_dir() or any(Path(a.save).iterdir())):
        raise CLIError(f"--save {a.save!r} exists and is not empty; choose a new directory (nothing is overwritten)")
    if a.labels is not None and a.plot is None:
        raise CLIError("--labels only colours --plot; add --plot embedding.png")
    if a.plot is not None and a.n_components < 2 and a.model is None:
        raise CLIError(f"--plot needs --n-components >= 2, got {a.n_components}")


def main(argv: Sequence[str]) -> None:
    """Run ``vaekit embed`` (see the module docstring)."""
    from ..cli import CLIError
    from ..embedding import VAEEmbedder

    a = _parser().parse_args(list(argv))
    _check_paths(a)
    labels = None
    if a.labels is not None:
        if not Path(a.labels).is_file():
            raise FileNotFoundError(f"--labels {a.labels!r} does not exist")
        labels = np.load(a.labels, allow_pickle=False)
    X = read_data(a.data)
    if a.model is not None:
        est = VAEEmbedder.load(a.model, device=None if a.device == "auto" else a.device)
    else:
        est = VAEEmbedder(a.n_components, posterior=a.posterior, prior=a.prior, likelihood=a.likelihood,
                          feature_normalization=not a.no_normalization, batch_size=a.batch_size,
                          learning_rate=a.learning_rate, max_epochs=a.max_epochs, device=a.device, random_state=a.seed,
                          verbose=0 if a.quiet else 1, neighbor_weight=a.neighbor_weight, n_neighbors=a.n_neighbors)
    Z = est.transform(X) if a.model is not None else est.fit(X).transform(X)
    if labels is not None and len(labels) != len(Z):
        raise CLIError(f"--labels has {len(labels)} entries but DATA has {len(Z)} examples")
    np.save(a.out, Z)
    print(f"written: {a.out} (embedding of shape {Z.shape})")
    if a.model is None and a.save is not None:
        est.save(a.save)
        print(f"written: {a.save} (load with VAEEmbedder.load or vaekit embed --model {a.save} NEW_DATA --out Z.npy)")
    if a.plot is not None:
        _plot(Z, labels, a.plot)
        print(f"written: {a.plot}")


def _plot(Z: np.ndarray, labels: np.ndarray | None, path: str) -> None:
    from ..cli import CLIError

    try:
        from ..plot import embedding
    except ImportError as e:
        raise CLIError(f"--plot needs vaekit.plot, which cannot be imported here: {e}") from None
    import matplotlib

    matplotlib.use("Agg")
    ax = embedding(Z[:, :2], labels=labels)
    ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(ax.figure)
