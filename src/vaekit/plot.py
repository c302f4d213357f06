"""Plots for 2-D embeddings and for the decoder of an embedder.

Three functions, each drawing into a matplotlib ``Axes`` (a new figure when ``ax`` is None)
and returning it; none calls ``plt.show()`` or changes the matplotlib backend, so they work
the same in scripts (Agg), notebooks and GUIs:

- :func:`embedding`: scatter of a 2-D embedding, coloured by discrete labels (legend) or by a
  continuous value (colourbar), or plain without labels.
- :func:`latent_grid`: decode a regular grid of latent points into one image mosaic.
- :func:`interpolate`: decode the straight line between two points (latent points, or data
  points embedded first) into a strip of images.

The embedder is anything with ``inverse_transform(Z)`` (and ``transform(X)`` for
``interpolate(..., space="data")``), such as :class:`vaekit.embedding.VAEEmbedder`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vaekit._checks import check_float, check_int
from vaekit.analysis.images import image_grid

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap

__all__ = ["embedding", "latent_grid", "interpolate"]


# ------------------------------------------------------------------------------------------ checks
def _as_array(name: str, value: Any) -> np.ndarray:
    """Numpy view of an array-like (numpy, list, pandas, torch tensor on any device)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch here
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except Exception as err:  # ragged lists and the like
        raise TypeError(f"{name} must be array-like, got {type(value).__name__}: {err}") from None


def _check_points(name: str, value: Any, ncols: int | None = None) -> np.ndarray:
    """A finite float array of shape (n, ncols) (or (n, d) with any d when ncols is None)."""
    arr = _as_array(name, value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] == 0 or (ncols is not None and arr.shape[1] != ncols):
        want = f"(n, {ncols})" if ncols is not None else "(n, d)"
        raise ValueError(f"{name} must have shape {want} with n >= 1, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(arr)).sum())} NaN or inf values")
    return arr


def _check_ax(ax: Any) -> Axes:
    """``ax`` itself, or the axes of a new figure when it is None."""
    from matplotlib.axes import Axes

    if ax is None:
        import matplotlib.pyplot as plt

        return plt.figure(layout="constrained").add_subplot()  # room for a legend beside the axes
    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax


def _check_shape(shape: Any) -> tuple[int, ...]:
    """Image shape (H, W) or (H, W, 3) / (H, W, 4)."""
    if not isinstance(shape, Sequence) or isinstance(shape, str) or len(shape) not in (2, 3):
        raise TypeError(f"shape must be a tuple (H, W) or (H, W, 3), got {shape!r}")
    dims = tuple(check_int("shape[i]", d) for d in shape)
    if len(dims) == 3 and dims[2] not in (3, 4):
        raise ValueError(f"shape must be (H, W), (H, W, 3) or (H, W, 4), got {shape!r}")
    return dims


def _decode(embedder: Any, Z: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``embedder.inverse_transform(Z)`` as float images of shape (len(Z), *shape)."""
    x = _as_array("embedder.inverse_transform(Z)", embedder.inverse_transform(Z)).astype(np.float64)
    if x.shape[0] != len(Z):
        raise ValueError(f"embedder.inverse_transform returned {x.shape[0]} rows for {len(Z)} latent points")
    size = x[0].size
    if size != math.prod(shape):
        raise ValueError(f"shape {shape} holds {math.prod(shape)} values but the embedder decodes {size} features "
                         f"per point; pass the image shape of your data")
    return x.reshape(len(Z), *shape)


def _check_embedder(embedder: Any, *methods: str) -> None:
    missing = [m for m in methods if not callable(getattr(embedder, m, None))]
    if missing:
        raise TypeError(f"embedder must have {' and '.join(methods)} methods (a fitted VAEEmbedder, for example); "
                        f"{type(embedder).__name__} lacks {', '.join(missing)}")


# --------------------------------------------------------------------------------------- embedding
def _labels(labels: Any, n: int) -> np.ndarray:
    if isinstance(labels, (list, tuple)):  # np.asarray would turn [1, "a"] into strings
        arr = np.empty(len(labels), dtype=object)
        arr[:] = [v.item() if isinstance(v, np.generic) else v for v in labels]
    else:
        arr = _as_array("labels", labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), one per row of Z, got shape {arr.shape}")
    if arr.dtype.kind == "O":  # Python lists, pandas object columns
        for kind, test in ((str, lambda v: isinstance(v, str)), (bool, lambda v: isinstance(v, bool)),
                           (np.int64, lambda v: isinstance(v, Integral) and not isinstance(v, bool)),
                           (np.float64, lambda v: isinstance(v, Real) and not isinstance(v, bool))):
            if all(test(v) for v in arr):
                arr = arr.astype(kind)
                break
        else:
            kinds = sorted({type(v).__name__ for v in arr})
            raise TypeError(f"labels must be all int, all str or all float, got a mix of {kinds}")
    if arr.dtype.kind not in "biufUS":
        raise TypeError(f"labels must be int, str or float values, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"labels must be finite, got {int((~np.isfinite(arr)).sum())} NaN or inf values")
    return arr


def _classes(labels: np.ndarray, categories: Sequence[Any] | None) -> tuple[np.ndarray, list[str]]:
    """Class index of every point and the class names, in legend order."""
    if categories is None:
        values, index = np.unique(labels, return_inverse=True)
        return index, [str(v) for v in values]
    if isinstance(categories, str) or not isinstance(categories, Sequence) or len(categories) == 0:
        raise TypeError(f"categories must be a non-empty sequence of class names, got {categories!r}")
    names = [str(c) for c in categories]
    if labels.dtype.kind in "US":
        order = {name: i for i, name in enumerate(names)}
        if len(order) != len(names):
            raise ValueError(f"categories must not repeat a name, got {names}")
        unknown = sorted(set(np.unique(labels).tolist()) - set(order))
        if unknown:
            raise ValueError(f"labels {unknown[:10]} are not in categories {names}")
        return np.array([order[v] for v in labels.tolist()], dtype=np.int64), names
    if labels.dtype.kind == "b" or labels.min() < 0 or labels.max() >= len(names):
        raise ValueError(f"with categories, integer labels must index them (0 <= label < {len(names)}), "
                         f"got labels in [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64), names


def _class_colours(k: int, cmap: str | Colormap | None) -> np.ndarray:
    """(k, 4) RGBA colours: the first k of a qualitative map when it has enough, else evenly spaced."""
    import matplotlib

    name = cmap if cmap is not None else ("tab10" if k <= 10 else "tab20" if k <= 20 else "turbo")
    colormap = matplotlib.colormaps[name] if isinstance(name, str) else name
    colours = getattr(colormap, "colors", None)
    if colours is not None and len(colours) >= k:
        return matplotlib.colors.to_rgba_array(colours[:k])
    return colormap(np.linspace(0.0, 1.0, k))


def embedding(Z: Any, labels: Any = None, categories: Sequence[Any] | None = None, ax: Axes | None = None, *,
              s: float | None = None, alpha: float | None = None, cmap: str | Colormap | None = None,
              legend: bool = True, title: str | None = None) -> Axes:
    """Scatter plot of a 2-D embedding.

    Parameters
    ----------
    Z : array-like of shape (n, 2)
        The embedding (numpy, pandas, list or torch tensor).
    labels : array-like of shape (n,), optional
        Colours the points. Integer, boolean or string labels are classes: one colour each and
        a legend. Float labels are a continuous value: a colour map and a colourbar. Cast float
        class labels to int to get a legend.
    categories : sequence of str, optional
        Class names. With integer labels, ``categories[i]`` names label ``i`` (labels must lie
        in ``[0, len(categories))``); with string labels, the order of the legend and colours
        (every label must be one of them).
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    s : float, optional
        Marker area in points^2; by default ``200 / sqrt(n)`` clipped to [0.2, 20].
    alpha : float in [0, 1], optional
        Marker opacity; by default 1 up to 2,000 points, else 0.5.
    cmap : str or Colormap, optional
        Colours: for classes ``tab10`` / ``tab20`` / ``turbo`` by their number, for float
        labels ``viridis``.
    legend : bool
        Draw the legend (classes) or colourbar (float labels).
    title : str, optional

    Returns
    -------
    matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> Z = np.random.default_rng(0).normal(size=(100, 2))
    >>> ax = embedding(Z, labels=np.arange(100) % 3, categories=["a", "b", "c"])
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['a', 'b', 'c']
    """
    Z = _check_points("Z", Z, 2)
    n = Z.shape[0]
    lab = None if labels is None else _labels(labels, n)
    if categories is not None and (lab is None or lab.dtype.kind == "f"):
        raise TypeError("categories names classes: it needs integer or string labels, got "
                        f"{'no labels' if lab is None else 'float labels'}")
    size = min(20.0, max(0.2, 200.0 / math.sqrt(n))) if s is None else check_float("s", s, 0, low_open=True)
    opacity = (1.0 if n <= 2000 else 0.5) if alpha is None else check_float("alpha", alpha, 0, 1)
    if not isinstance(legend, bool):
        raise TypeError(f"legend must be True or False, got {legend!r}")
    classes = None if lab is None or lab.dtype.kind == "f" else _classes(lab, categories)
    colours = None if classes is None else _class_colours(len(classes[1]), cmap)
    ax = _check_ax(ax)

    if lab is None:
        ax.scatter(Z[:, 0], Z[:, 1], s=size, alpha=opacity, c="C0", linewidths=0, rasterized=n > 10000)
    elif classes is None:
        points = ax.scatter(Z[:, 0], Z[:, 1], c=lab, cmap=cmap or "viridis", s=size, alpha=opacity, linewidths=0,
                            rasterized=n > 10000)
        if legend:
            ax.figure.colorbar(points, ax=ax)
    else:
        from matplotlib.lines import Line2D

        index, names = classes
        ax.scatter(Z[:, 0], Z[:, 1], c=colours[index], s=size, alpha=opacity, linewidths=0, rasterized=n > 10000)
        if legend:
            present = np.unique(index)
            handles = [Line2D([], [], linestyle="", marker="o", markersize=6, color=colours[i], label=names[i])
                       for i in present]
            ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                      ncols=1 + len(handles) // 25)
    ax.set_aspect("equal", adjustable="box")
    if title is not None:
        ax.set_title(str(title))
    return ax


# ------------------------------------------------------------------------------------- latent grid
def _xy_range(xy_range: Any) -> tuple[tuple[float, float], tuple[float, float]]:
    """((x_low, x_high), (y_low, y_high)) from (low, high) or a pair of such pairs."""
    if not isinstance(xy_range, Sequence) or isinstance(xy_range, str) or len(xy_range) != 2:
        raise TypeError(f"xy_range must be (low, high) or ((x_low, x_high), (y_low, y_high)), got {xy_range!r}")
    pairs = xy_range if all(isinstance(r, Sequence) for r in xy_range) else (xy_range, xy_range)
    out = []
    for axis, pair in zip("xy", pairs):
        if len(pair) != 2:
            raise TypeError(f"xy_range must be (low, high) or ((x_low, x_high), (y_low, y_high)), got {xy_range!r}")
        low, high = (check_float(f"xy_range ({axis} {w})", v) for w, v in zip(("low", "high"), pair))
        if not low < high:
            raise ValueError(f"xy_range must have low < high, got ({low}, {high}) for {axis}")
        out.append((low, high))
    return out[0], out[1]


def _value_range(vmin: float | None, vmax: float | None) -> tuple[float | None, float | None]:
    vmin = None if vmin is None else check_float("vmin", vmin)
    vmax = None if vmax is None else check_float("vmax", vmax)
    if vmin is not None and vmax is not None and not vmin < vmax:
        raise ValueError(f"vmin must be < vmax, got vmin={vmin}, vmax={vmax}")
    return vmin, vmax


def _show(ax: Axes, mosaic: np.ndarray, cmap: str | Colormap | None, vmin: float | None, vmax: float | None,
          **kwargs: Any) -> None:
    """``imshow`` on one value range for every image (see ``latent_grid``)."""
    if mosaic.min() >= 0.0 and mosaic.max() <= 1.0:
        auto = (0.0, 1.0)
    else:  # decoded values spill over [0, 1] (Gaussian likelihood): a robust range of their own
        auto = tuple(float(v) for v in np.percentile(mosaic, [0.5, 99.5]))
    vmin = auto[0] if vmin is None else vmin
    vmax = max(auto[1], vmin + 1e-12) if vmax is None else vmax
    if mosaic.ndim == 3:  # RGB(A): matplotlib wants [0, 1]
        mosaic = np.clip((mosaic - vmin) / max(vmax - vmin, 1e-12), 0.0, 1.0)
        ax.imshow(mosaic, interpolation="nearest", **kwargs)
    else:
        ax.imshow(mosaic, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest", **kwargs)


def latent_grid(embedder: Any, xy_range: Sequence[float] | Sequence[Sequence[float]] = (-4.0, 4.0),
                grid_size: int = 20, shape: Sequence[int] = (28, 28), ax: Axes | None = None,
                cmap: str | Colormap | None = "gray", *, vmin: float | None = None,
                vmax: float | None = None) -> Axes:
    """Decode a regular grid of 2-D latent points into one image mosaic.

    The image in row ``r``, column ``c`` is ``embedder.inverse_transform`` of the point
    ``(x_c, y_r)``, with ``x`` increasing to the right and ``y`` increasing upwards (as in the
    scatter plot of :func:`embedding`); the axes are labelled in latent coordinates.

    Parameters
    ----------
    embedder : object with ``inverse_transform(Z)``
        Maps an array of shape (m, 2) to decoded data of shape (m, prod(shape)).
    xy_range : (low, high) or ((x_low, x_high), (y_low, y_high))
        The latent region spanned (end points included).
    grid_size : int >= 2
        Images per row and per column.
    shape : (H, W) or (H, W, 3)
        Shape of one decoded image.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when None.
    cmap : str or Colormap, optional
        For grey images.
    vmin, vmax : float, optional
        Values shown as black and white. By default [0, 1] when every decoded value lies in
        it, else the 0.5th and 99.5th percentiles of the decoded values (a Gaussian decoder
        spills a little over the data range).

    Returns
    -------
    matplotlib Axes
        Its image (``ax.images[-1].get_array()``) is the mosaic, of shape
        (grid_size * H, grid_size * W[, 3]).

    Examples
    --------
    >>> import numpy as np
    >>> class Linear:  # decodes z to a 4x4 image
    ...     def inverse_transform(self, Z):
    ...         return np.tile(Z[:, :1], (1, 16))
    >>> latent_grid(Linear(), grid_size=5, shape=(4, 4)).images[-1].get_array().shape
    (20, 20)
    """
    _check_embedder(embedder, "inverse_transform")
    n_components = getattr(embedder, "n_components", 2)
    if isinstance(n_components, int) and n_components != 2:
        raise ValueError(f"latent_grid needs a 2-D embedding, got embedder.n_components={n_components}")
    vmin, vmax = _value_range(vmin, vmax)
    (x_low, x_high), (y_low, y_high) = _xy_range(xy_range)
    grid_size = check_int("grid_size", grid_size, minimum=2)
    shape = _check_shape(shape)
    xs = np.linspace(x_low, x_high, grid_size)
    ys = np.linspace(y_high, y_low, grid_size)  # first row at the top
    Z = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    images = _decode(embedder, Z, shape)
    mosaic = image_grid(images, ncols=grid_size, pad=0)
    ax = _check_ax(ax)
    dx, dy = (x_high - x_low) / (grid_size - 1) / 2, (y_high - y_low) / (grid_size - 1) / 2
    _show(ax, mosaic, cmap, vmin, vmax, extent=(x_low - dx, x_high + dx, y_low - dy, y_high + dy))
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    return ax


# ------------------------------------------------------------------------------------- interpolate
def interpolate(embedder: Any, a: Any, b: Any, n: int = 10, shape: Sequence[int] = (28, 28),
                space: Literal["latent", "data"] = "latent", ax: Axes | None = None,
                cmap: str | Colormap | None = "gray", *, vmin: float | None = None,
                vmax: float | None = None) -> tuple[np.ndarray, Axes]:
    """Decode the straight latent line from ``a`` to ``b`` into ``n`` images.

    Parameters
    ----------
    embedder : object with ``inverse_transform(Z)`` (and ``transform(X)`` for ``space="data"``)
    a, b : array-like
        The end points: latent points of shape (n_components,) when ``space="latent"``; data
        points (one example each, of any shape holding ``n_features`` values) when
        ``space="data"``, embedded with ``embedder.transform`` first.
    n : int >= 2
        Number of images, end points included (``t = 0, 1/(n-1), ..., 1``).
    shape : (H, W) or (H, W, 3)
        Shape of one decoded image.
    space : {"latent", "data"}
        What ``a`` and ``b`` are.
    ax : matplotlib Axes, optional
        Where to draw the strip of images; a new figure when None.
    cmap : str or Colormap, optional
    vmin, vmax : float, optional
        As for :func:`latent_grid`.

    Returns
    -------
    images : ndarray of shape (n, *shape)
        ``images[0]`` and ``images[-1]`` are the decoded end points.
    ax : matplotlib Axes

    Examples
    --------
    >>> import numpy as np
    >>> class Linear:
    ...     def inverse_transform(self, Z):
    ...         return np.repeat(Z, 8, axis=1)  # (m, 2) -> (m, 16): a 4x4 image
    >>> images, ax = interpolate(Linear(), [0.0, 0.0], [1.0, 2.0], n=3, shape=(4, 4))
    >>> images.shape, float(images[1].max())
    ((3, 4, 4), 1.0)
    """
    if space not in ("latent", "data"):
        raise ValueError(f"space must be 'latent' or 'data', got {space!r}")
    _check_embedder(embedder, "inverse_transform", *(("transform",) if space == "data" else ()))
    n = check_int("n", n, minimum=2)
    shape = _check_shape(shape)
    vmin, vmax = _value_range(vmin, vmax)
    ends = []
    for name, point in (("a", a), ("b", b)):
        arr = _as_array(name, point)
        if space == "latent" and arr.ndim != 1:
            raise ValueError(f"{name} must be a latent point of shape (n_components,), got shape {arr.shape}")
        ends.append(_check_points(name, arr.reshape(1, -1)))
    if ends[0].shape != ends[1].shape:
        raise ValueError(f"a and b must have the same shape, got {ends[0].shape[1:]} and {ends[1].shape[1:]}")
    if space == "data":
        za, zb = _check_points("embedder.transform([a, b])", embedder.transform(np.concatenate(ends)))
    else:
        za, zb = ends[0][0], ends[1][0]
    t = np.linspace(0.0, 1.0, n)[:, None]
    Z = (1.0 - t) * za + t * zb
    images = _decode(embedder, Z, shape)
    ax = _check_ax(ax)
    _show(ax, image_grid(images, ncols=n, pad=0), cmap, vmin, vmax)
    ax.set_xticks([])
    ax.set_yticks([])
    return images, ax
