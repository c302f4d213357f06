"""``vaekit embed``: fit a :class:`~vaekit.embedding.VAEEmbedder` and write the embedding, or embed new data with a saved one.

::

    vaekit embed DATA --n-components 2 --out Z.npy [--labels LABELS.npy --plot embedding.png] [--save MODEL_DIR]
                 [--hidden-layers 256 128 --n-flows 5 ...] [--validation VALID_DATA] [--logdir DIR]
                 [--latent-grid grid.png --image-shape 28 28]
    vaekit embed --model MODEL_DIR NEW_DATA --out Z.npy
    vaekit embed --model MODEL_DIR --decode Z.npy --out X.npy          # inverse_transform
    vaekit embed --model MODEL_DIR --latent-grid grid.png [--image-shape 28 28 --grid-range -4 4]

The architecture flags (``--hidden-layers``, ``--n-flows``, ``--n-prior-modes``,
``--activation``, ``--dropout``) and the training flags (``--validation``,
``--validation-fraction``, ``--logdir``, ``--no-early-stopping``) are the
:class:`~vaekit.embedding.VAEEmbedder` parameters of the same names (``--validation`` is
``validation_data``, read like DATA); they go with fitting, not with ``--model``.
``--latent-grid`` decodes a ``--grid-size`` x ``--grid-size`` grid over the 2-D latent space
(:func:`vaekit.plot.latent_grid`) into one image of decoded examples of shape
``--image-shape`` (default: square images when the feature count is a square number); the
grid spans ``--grid-range`` (default: the central 98% of the embedding of DATA, or
[-4, 4] without DATA).

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

from ._common import CLIError

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
    p.add_argument("data", nargs="?", default=None,
                   help=".npy, .npz (array 'x'), .csv, or a directory of .npy files (one example each)")
    p.add_argument("--out", default=None, help="where to write the embedding (.npy), or the decoded data with --decode")
    p.add_argument("--model", default=None, help="a saved embedder directory: only transform DATA with it")
    p.add_argument("--decode", default=None, metavar="Z.npy",
                   help="with --model: decode these embeddings (n, n_components) and write the data to --out")
    p.add_argument("--latent-grid", default=None, metavar="GRID.png",
                   help="draw the decoded images of a grid over the 2-D latent space (needs 2 components)")
    p.add_argument("--image-shape", type=int, nargs="+", default=None, metavar="N",
                   help="shape of one decoded image for --latent-grid: H W or H W 3 (default: square)")
    p.add_argument("--grid-size", type=int, default=20, help="images per row and column of --latent-grid")
    p.add_argument("--grid-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="latent range of --latent-grid on both axes (default: central 98%% of DATA's embedding, "
                        "or -4 4)")
    p.add_argument("--save", default=None, help="save the fitted embedder to this (new or empty) directory")
    p.add_argument("--labels", default=None, help=".npy of one label per example, to colour --plot")
    p.add_argument("--plot", default=None, help="write a scatter plot of the first two components (.png)")
    # fitting settings: default None here, so that --model can refuse them when given (defaults: SETTINGS)
    p.add_argument("--n-components", type=int, default=None, help="dimension of the embedding (default 2)")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="default 512")
    p.add_argument("--learning-rate", type=float, default=None, help="default 2e-3")
    p.add_argument("--posterior", default=None, choices=["iaf", "gaussian"], help="default iaf")
    p.add_argument("--prior", default=None, choices=["mixture", "standard"], help="default mixture")
    p.add_argument("--likelihood", default=None, choices=["gaussian", "gaussian_predicted", "bernoulli"],
                   help="default gaussian")
    p.add_argument("--neighbor-weight", type=float, default=None,
                   help="weight per feature of the k-NN neighbour term (default 0.4; 0: the plain VAE; see VAEEmbedder)")
    p.add_argument("--n-neighbors", type=int, default=None,
                   help="neighbours per example in the term's k-NN graph (default 15)")
    p.add_argument("--no-normalization", action="store_true", help="do not standardise features (needed for bernoulli)")
    p.add_argument("--transform-steps", type=int, default=None, metavar="N",
                   help="steps of the local optimisation that places each example among the training layout, from the "
                        "encoder's embedding (or, against a moved layout, its neighbours' median) (default 200, or "
                        "the saved embedder's; 0: the encoder's embedding alone); also with --model")
    arch = p.add_argument_group("architecture and training (VAEEmbedder parameters; not with --model)")
    arch.add_argument("--hidden-layers", type=int, nargs="+", default=None, metavar="N",
                      help="encoder hidden sizes, the decoder mirrors them (default: from the data's size)")
    arch.add_argument("--n-flows", type=int, default=None, help="IAF steps of the posterior (default 5)")
    arch.add_argument("--n-prior-modes", type=int, default=None, help="components of the mixture prior (default 16)")
    arch.add_argument("--activation", default=None, help="hidden activation (default elu)")
    arch.add_argument("--dropout", type=float, default=None, help="dropout after every hidden layer (default 0)")
    arch.add_argument("--validation", default=None, metavar="VALID_DATA",
                      help="validation examples (read like DATA); every row of DATA then trains")
    arch.add_argument("--validation-fraction", type=float, default=None,
                      help="rows of DATA held out for validation without --validation (default 0.1)")
    arch.add_argument("--logdir", default=None,
                      help="checkpoint after every epoch and TensorBoard curves here (a new or empty directory)")
    arch.add_argument("--layout-steps", type=int, default=None, metavar="N",
                      help="after training, steps (epochs for --layout-method umap) that move the whole training "
                           "layout (default: 500 below 10,000 rows, 100 from 10,000 on; 0: the encoder's layout; "
                           "see VAEEmbedder)")
    arch.add_argument("--layout-method", default=None, choices=["auto", "umap", "neighbor_loss"],
                      help="how --layout-steps move the layout: umap (UMAP's layout optimisation of its fuzzy graph), "
                           "neighbor_loss (the fit's neighbour loss), auto (umap below 10,000 rows, neighbor_loss from "
                           "them on; the default)")
    arch.add_argument("--neighbor-graph", default=None, choices=["knn", "fuzzy"],
                      help="how the term weighs each example's neighbours: knn (equally, the default) or fuzzy (UMAP's "
                           "memberships: the nearest more; for classes of a handful of examples; see VAEEmbedder)")
    arch.add_argument("--no-early-stopping", action="store_true", help="train all --max-epochs")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=None, help="seeds the fit (default 0)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    return p


#: Fitting settings outside the architecture group, refused with --model too: flag -> (attribute, default when fitting).
SETTINGS = {"--n-components": ("n_components", 2), "--max-epochs": ("max_epochs", None),
            "--batch-size": ("batch_size", 512), "--learning-rate": ("learning_rate", 2e-3),
            "--posterior": ("posterior", "iaf"), "--prior": ("prior", "mixture"), "--likelihood": ("likelihood", "gaussian"),
            "--neighbor-weight": ("neighbor_weight", 0.4), "--n-neighbors": ("n_neighbors", 15),
            "--no-normalization": ("no_normalization", False), "--seed": ("seed", 0)}
#: File types --plot and --latent-grid can write (matplotlib's savefig formats).
IMAGE_TYPES = ("avif", "eps", "gif", "jpeg", "jpg", "pdf", "pgf", "png", "ps", "raw", "rgba", "svg", "svgz", "tif", "tiff",
               "webp")

#: Flags that set VAEEmbedder parameters for fitting (refused with --model): flag -> (attribute, parameter).
FIT_FLAGS = {"--hidden-layers": ("hidden_layers", "hidden_layers"), "--n-flows": ("n_flows", "n_flows"),
             "--n-prior-modes": ("n_prior_modes", "n_prior_modes"), "--activation": ("activation", "activation"),
             "--dropout": ("dropout", "dropout"), "--validation-fraction": ("validation_fraction", "validation_fraction"),
             "--logdir": ("logdir", "logdir"), "--layout-steps": ("layout_steps", "layout_steps"),
             "--neighbor-graph": ("neighbor_graph", "neighbor_graph"),
             "--layout-method": ("layout_method", "layout_method")}


def _settings_given(a: argparse.Namespace) -> list[str]:
    """The fitting settings given on the command line; then fills the others with their defaults (in ``a``)."""
    given = [flag for flag, (attr, _) in SETTINGS.items()  # "is": 0 and 0.0 are given values, == False as they are
             if getattr(a, attr) is not None and getattr(a, attr) is not False]
    for attr, default in SETTINGS.values():
        if getattr(a, attr) is None:
            setattr(a, attr, default)
    return given


def _check_paths(a: argparse.Namespace, settings_given: Sequence[str] = ()) -> None:
    """Every output-path and option problem, before any data are read or a model is trained."""
    if a.decode is not None:
        if a.model is None:
            raise CLIError("--decode needs --model MODEL_DIR (the embedder whose decoder maps Z back to data)")
        if a.latent_grid is not None:
            raise CLIError(f"--decode {a.decode!r} and --latent-grid {a.latent_grid!r} cannot be combined: decode with "
                           "vaekit embed --model MODEL_DIR --decode Z.npy --out X.npy, then draw the grid with "
                           "vaekit embed --model MODEL_DIR --latent-grid GRID.png")
        if a.data is not None:
            raise CLIError(f"--decode takes the embeddings instead of DATA; drop {a.data!r} (or drop --decode)")
        if not Path(a.decode).is_file():
            raise CLIError(f"--decode {a.decode!r} does not exist (a .npy file of shape (n, n_components))")
        if a.out is None:
            raise CLIError("--decode needs --out X.npy (where to write the decoded data)")
    elif a.data is None:
        if a.model is None or a.latent_grid is None:
            raise CLIError("DATA is missing: vaekit embed DATA --out Z.npy, or with --model MODEL_DIR: NEW_DATA --out Z.npy, "
                           "--decode Z.npy --out X.npy, or --latent-grid GRID.png")
        if a.out is not None:
            raise CLIError("--out needs DATA to embed (or --decode Z.npy to decode)")
    elif a.out is None:
        raise CLIError("--out Z.npy is required: where to write the embedding of DATA")
    if a.out is not None and not a.out.endswith(".npy"):
        raise CLIError(f"--out {a.out!r} must end in .npy")
    if a.model is not None:
        given = [flag for flag, (attr, _) in FIT_FLAGS.items() if getattr(a, attr) is not None]
        given += [f for f, v in (("--validation", a.validation), ("--no-early-stopping", a.no_early_stopping)) if v]
        given += list(settings_given)
        if given:
            raise CLIError(f"{', '.join(given)} set(s) how a new embedder is fitted; with --model the embedder is "
                           "already trained")
    if a.plot is not None and a.data is None:
        raise CLIError("--plot draws the embedding of DATA; give DATA")
    if a.grid_size < 2:
        raise CLIError(f"--grid-size must be >= 2, got {a.grid_size}")
    if a.image_shape is not None and (len(a.image_shape) not in (2, 3) or min(a.image_shape) < 1):
        raise CLIError(f"--image-shape must be H W or H W C with positive sizes, got {a.image_shape}")
    if a.grid_range is not None and not a.grid_range[0] < a.grid_range[1]:
        raise CLIError(f"--grid-range must be LOW HIGH with LOW < HIGH, got {a.grid_range}")
    if (a.image_shape is not None or a.grid_range is not None) and a.latent_grid is None:
        raise CLIError("--image-shape and --grid-range shape the --latent-grid image; add --latent-grid GRID.png")
    if a.latent_grid is not None and a.model is None and a.n_components != 2:
        raise CLIError(f"--latent-grid needs --n-components 2, got {a.n_components}")
    outputs = (("--out", a.out), ("--plot", a.plot), ("--latent-grid", a.latent_grid))
    for flag, value in outputs:
        if value is not None and not Path(value).resolve().parent.is_dir():
            raise CLIError(f"{flag} {value!r}: directory {str(Path(value).resolve().parent)!r} does not exist")
    for flag, value in outputs[1:]:
        if value is not None and Path(value).suffix.lstrip(".").lower() not in IMAGE_TYPES:
            raise CLIError(f"{flag} {value!r}: the file type must be one of {', '.join('.' + t for t in IMAGE_TYPES)} "
                           "(an image)")
    named = [(flag, Path(value).resolve()) for flag, value in outputs if value is not None]
    for i, (flag, path) in enumerate(named):
        for other, path2 in named[:i]:
            if path == path2:
                raise CLIError(f"{other} and {flag} name the same file {str(path)!r}; give each its own")
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
    from ..embedding import VAEEmbedder

    a = _parser().parse_args(list(argv))
    _check_paths(a, _settings_given(a))
    labels = None
    if a.labels is not None:
        if not Path(a.labels).is_file():
            raise FileNotFoundError(f"--labels {a.labels!r} does not exist")
        try:
            labels = np.load(a.labels, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CLIError(f"cannot read --labels {a.labels!r} as a .npy array of one label per example (no pickles "
                           f"are loaded): {e}") from None
        if not isinstance(labels, np.ndarray):
            raise CLIError(f"--labels {a.labels!r} is a .npz archive; give a .npy array of one label per example")
    X = read_data(a.data) if a.data is not None else None
    if labels is not None:
        _check_labels(a, labels, X)
    if a.model is not None:
        est = VAEEmbedder.load(a.model, device=None if a.device == "auto" else a.device)
        if a.transform_steps is not None:
            est.set_params(transform_steps=a.transform_steps).check_params()
        if a.latent_grid is not None and est.n_components != 2:
            raise CLIError(f"--latent-grid needs a 2-D embedding; {a.model} has n_components={est.n_components}")
    else:
        options = {param: getattr(a, attr) for attr, param in FIT_FLAGS.values() if getattr(a, attr) is not None}
        if a.transform_steps is not None:
            options["transform_steps"] = a.transform_steps
        if a.validation is not None:
            options["validation_data"] = read_data(a.validation)
        est = VAEEmbedder(a.n_components, posterior=a.posterior, prior=a.prior, likelihood=a.likelihood,
                          feature_normalization=not a.no_normalization, batch_size=a.batch_size,
                          learning_rate=a.learning_rate, max_epochs=a.max_epochs, device=a.device, random_state=a.seed,
                          verbose=0 if a.quiet else 1, neighbor_weight=a.neighbor_weight, n_neighbors=a.n_neighbors,
                          early_stopping=False if a.no_early_stopping else "auto", **options)
        est.check_params()  # bad flag values (--n-flows 0, --activation foo) before any data are read
    shape = _grid_shape(a, est, X) if a.latent_grid is not None else None
    if a.decode is not None:
        _decode(a, est)
        return
    Z = None
    if X is not None:
        Z = est.transform(X) if a.model is not None else est.fit_transform(X)  # (= fit(X).transform(X))
        _write_embedding(a, est, Z, labels)
    if a.latent_grid is not None:
        _latent_grid(est, Z, shape, a)
        print(f"written: {a.latent_grid}")


def _check_labels(a: argparse.Namespace, labels: np.ndarray, X: Any) -> None:
    """``--labels``: one class or value per example of DATA, checked before anything is fitted or written.

    The example count is read without loading DATA again: a ``.npy`` file is memory-mapped
    and a directory listed (``.npz`` and ``.csv`` data are already in memory). The values
    follow :func:`vaekit.plot.embedding`'s rule: integer, boolean, string or finite float.
    """
    from ..embedding.inputs import ArraySource, as_source

    if labels.ndim != 1:
        raise CLIError(f"--labels {a.labels!r} has shape {labels.shape}; expected one label per example, shape (n,)")
    if labels.dtype.kind not in "biufUS":
        raise CLIError(f"--labels {a.labels!r} has dtype {labels.dtype}; expected int, bool, str or float labels")
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        bad = int(np.flatnonzero(~np.isfinite(labels))[0])
        raise CLIError(f"--labels {a.labels!r} has a non-finite value at example {bad} ({labels[bad]}); "
                       "expected finite values")
    source = as_source(X)
    if isinstance(source, ArraySource) and source.array.ndim < 2:
        return  # not a set of examples: fit or transform refuses DATA itself, naming its shape
    if len(labels) != len(source):
        raise CLIError(f"--labels {a.labels!r} has {len(labels)} entries but DATA {a.data!r} has {len(source)} "
                       "examples; give one label per example")


def _write_embedding(a: argparse.Namespace, est: Any, Z: np.ndarray, labels: np.ndarray | None) -> None:
    np.save(a.out, Z)
    print(f"written: {a.out} (embedding of shape {Z.shape})")
    if a.model is None and a.save is not None:
        est.save(a.save)
        print(f"written: {a.save} (load with VAEEmbedder.load or vaekit embed --model {a.save} NEW_DATA --out Z.npy)")
    if a.plot is not None:
        _plot(Z, labels, a.plot)
        print(f"written: {a.plot}")


def _grid_shape(a: argparse.Namespace, est: Any, X: Any) -> tuple[int, ...]:
    """The shape of one decoded image of ``--latent-grid``, checked against the feature count (before fitting)."""
    import math

    from ..embedding.inputs import as_source

    n = est.n_features_in_ if a.model is not None else (as_source(X) or X).n_features
    if a.image_shape is not None:
        if math.prod(a.image_shape) != n:
            raise CLIError(f"--image-shape {' '.join(map(str, a.image_shape))} holds {math.prod(a.image_shape)} values but "
                           f"the data have {n} features per example")
        return tuple(a.image_shape)
    side = math.isqrt(n)
    if side * side != n:
        raise CLIError(f"--latent-grid: the data have {n} features, not a square image; pass --image-shape H W")
    return side, side


def _decode(a: argparse.Namespace, est: Any) -> None:
    """``--decode Z.npy``: ``inverse_transform`` of the embeddings, written to ``--out``."""
    try:
        Z = np.load(a.decode, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CLIError(f"cannot read --decode {a.decode!r} as a numeric .npy array (no pickles are loaded): {e}") from None
    if Z.ndim != 2 or Z.shape[1] != est.n_components:
        raise CLIError(f"--decode {a.decode!r} has shape {Z.shape}; the embedder decodes arrays of shape "
                       f"(n, {est.n_components})")
    if not np.issubdtype(Z.dtype, np.number) or not np.isfinite(Z).all():
        raise CLIError(f"--decode {a.decode!r} must hold finite numbers (embeddings); it has "
                       + ("NaN or infinity" if np.issubdtype(Z.dtype, np.number) else f"dtype {Z.dtype}"))
    X = est.inverse_transform(Z)
    np.save(a.out, X)
    print(f"written: {a.out} (decoded data of shape {X.shape})")


def _latent_grid(est: Any, Z: np.ndarray | None, shape: tuple[int, ...], a: argparse.Namespace) -> None:
    """``--latent-grid``: :func:`vaekit.plot.latent_grid` over ``--grid-range`` (or Z's central 98%, or [-4, 4])."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plot import latent_grid

    if a.grid_range is not None:
        xy_range: Any = tuple(a.grid_range)
    elif Z is not None:
        low, high = np.percentile(Z[:, :2], [1, 99], axis=0)
        flat = high - low < 1e-6  # a collapsed axis still gets a range
        low, high = np.where(flat, low - 1.0, low), np.where(flat, high + 1.0, high)
        xy_range = ((float(low[0]), float(high[0])), (float(low[1]), float(high[1])))
    else:
        xy_range = (-4.0, 4.0)
    ax = latent_grid(est, xy_range=xy_range, grid_size=a.grid_size, shape=shape)
    ax.figure.savefig(a.latent_grid, dpi=120, bbox_inches="tight")
    plt.close(ax.figure)


def _plot(Z: np.ndarray, labels: np.ndarray | None, path: str) -> None:
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
