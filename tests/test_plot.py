"""vaekit.plot: embedding scatter, latent grid and interpolation, on plain arrays and a linear fake embedder."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402

from vaekit.plot import embedding, interpolate, latent_grid  # noqa: E402


class LinearEmbedder:
    """z -> W z + c on 4x4 images (16 features); transform is its exact left inverse."""

    def __init__(self, d: int = 16, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(2, d))
        self.c = rng.normal(size=d)
        self.calls = 0

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.asarray(Z) @ self.W + self.c

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X) - self.c) @ np.linalg.pinv(self.W)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def Z() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(60, 2))


def _points(ax) -> PathCollection:
    (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    return points


# ------------------------------------------------------------------------------------- embedding()
def test_embedding_without_labels_draws_every_point_in_one_colour(Z: np.ndarray) -> None:
    ax = embedding(torch.as_tensor(Z), title="no labels")
    points = _points(ax)
    np.testing.assert_allclose(points.get_offsets(), Z)
    assert len(np.unique(points.get_facecolors(), axis=0)) == 1
    assert ax.get_legend() is None and len(ax.figure.axes) == 1
    assert ax.get_title() == "no labels"


def test_embedding_int_labels_get_one_colour_per_class_and_a_legend(Z: np.ndarray) -> None:
    labels = np.arange(60) % 4 * 3  # classes 0, 3, 6, 9
    ax = embedding(Z, labels)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "3", "6", "9"]
    colours = _points(ax).get_facecolors()
    assert colours.shape == (60, 4)
    for k in range(4):  # same class -> same colour; the four colours differ
        assert len(np.unique(colours[labels == 3 * k], axis=0)) == 1
    assert len(np.unique(colours, axis=0)) == 4
    handle_colours = [h.get_color() for h in ax.get_legend().legend_handles]
    np.testing.assert_allclose(matplotlib.colors.to_rgba_array(handle_colours)[:, :3],
                               colours[[0, 1, 2, 3], :3])


def test_embedding_categories_name_int_labels_and_order_string_labels(Z: np.ndarray) -> None:
    ax = embedding(Z, list(np.arange(60) % 3), categories=["zero", "one", "two", "three"], legend=True)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["zero", "one", "two"]  # only the present ones
    names = np.array(["cat", "dog", "ant"])[np.arange(60) % 3]
    ax = embedding(Z, names, categories=["dog", "cat", "ant"])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dog", "cat", "ant"]
    ax = embedding(Z, names)  # without categories: sorted
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ant", "cat", "dog"]


def test_embedding_float_labels_get_a_colourbar(Z: np.ndarray) -> None:
    values = np.linspace(-1.0, 3.0, 60)
    ax = embedding(Z, values, cmap="magma")
    assert ax.get_legend() is None
    assert len(ax.figure.axes) == 2  # the plot and its colourbar
    points = _points(ax)
    np.testing.assert_allclose(points.get_array(), values)
    assert points.get_cmap().name == "magma"
    assert len(embedding(Z, values, legend=False).figure.axes) == 1


def test_embedding_draws_into_the_given_axes_with_given_style(Z: np.ndarray) -> None:
    fig, (left, right) = plt.subplots(1, 2)
    out = embedding(Z, np.arange(60) % 2, ax=right, s=7.0, alpha=0.25, legend=False)
    assert out is right and len(left.collections) == 0
    points = _points(right)
    np.testing.assert_allclose(points.get_sizes(), [7.0])
    assert points.get_alpha() == 0.25
    assert right.get_legend() is None


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"Z": np.zeros((5, 3))}, ValueError, r"shape \(n, 2\).*\(5, 3\)"),
    ({"Z": np.zeros(10)}, ValueError, r"shape \(n, 2\).*\(10,\)"),
    ({"Z": np.zeros((0, 2))}, ValueError, "n >= 1"),
    ({"Z": np.array([[0.0, np.nan]])}, ValueError, "finite"),
    ({"Z": np.array([["a", "b"]])}, TypeError, "real numbers"),
    ({"labels": np.zeros(4)}, ValueError, r"labels must have shape \(5,\).*\(4,\)"),
    ({"labels": np.zeros((5, 1))}, ValueError, r"labels must have shape \(5,\)"),
    ({"labels": [1, "a", 2, 3, 4]}, TypeError, "mix"),
    ({"labels": np.array([0.0, 1.0, np.nan, 0.0, 1.0])}, ValueError, "labels must be finite"),
    ({"categories": ["a"]}, TypeError, "no labels"),
    ({"labels": np.linspace(0, 1, 5), "categories": ["a"]}, TypeError, "float labels"),
    ({"labels": np.arange(5), "categories": ["a", "b"]}, ValueError, r"0 <= label < 2.*\[0, 4\]"),
    ({"labels": np.array(list("aabbc")), "categories": ["a", "b"]}, ValueError, r"\['c'\] are not in categories"),
    ({"labels": np.arange(5), "categories": "ab"}, TypeError, "categories must be"),
    ({"s": 0.0}, ValueError, "s must be a finite number > 0"),
    ({"alpha": 1.5}, ValueError, "alpha must be a finite number >= 0 and <= 1"),
    ({"legend": "yes"}, TypeError, "legend must be True or False"),
    ({"ax": "axes"}, TypeError, "ax must be a matplotlib Axes"),
])
def test_embedding_rejects_bad_input_before_drawing(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"Z": np.zeros((5, 2)), **kwargs}
    figures = plt.get_fignums()
    with pytest.raises(error, match=match):
        embedding(**kwargs)
    assert plt.get_fignums() == figures  # no figure was created


# ----------------------------------------------------------------------------------- latent_grid()
def test_latent_grid_mosaic_tiles_the_decoded_grid_points() -> None:
    embedder = LinearEmbedder(d=28 * 28)
    ax = latent_grid(embedder, xy_range=(-4, 4), grid_size=20, shape=(28, 28))
    mosaic = np.asarray(ax.images[-1].get_array())
    assert mosaic.shape == (20 * 28, 20 * 28)
    assert embedder.calls == 1  # one batched decode
    xs = np.linspace(-4, 4, 20)
    for r, c in [(0, 0), (0, 19), (19, 0), (7, 12)]:  # row 0 is the top (y = +4), column 0 the left (x = -4)
        tile = mosaic[r * 28:(r + 1) * 28, c * 28:(c + 1) * 28]
        expected = embedder.inverse_transform(np.array([[xs[c], xs[::-1][r]]])).reshape(28, 28)
        np.testing.assert_allclose(tile, expected, rtol=1e-5, atol=1e-5)
    left, right, bottom, top = ax.images[-1].get_extent()
    half = 8 / 19 / 2
    np.testing.assert_allclose([left, right, bottom, top], [-4 - half, 4 + half, -4 - half, 4 + half])


def test_latent_grid_takes_separate_axis_ranges_and_rgb_shapes() -> None:
    embedder = LinearEmbedder(d=3 * 3 * 3)
    fig, ax = plt.subplots()
    out = latent_grid(embedder, xy_range=((0, 1), (-2, 2)), grid_size=4, shape=(3, 3, 3), ax=ax)
    assert out is ax
    assert np.asarray(ax.images[-1].get_array()).shape == (12, 12, 3)
    np.testing.assert_allclose(ax.images[-1].get_extent()[2:], [-2 - 2 / 3, 2 + 2 / 3])


def test_latent_grid_value_range_is_unit_for_unit_data_else_robust_or_given() -> None:
    class Constant:  # every pixel of the image decoded at z is z[0]
        def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
            return np.repeat(np.asarray(Z)[:, :1], 4, axis=1)

    inside = latent_grid(Constant(), xy_range=(0.2, 0.8), grid_size=3, shape=(2, 2)).images[-1]
    assert inside.get_clim() == (0.0, 1.0)

    class Outliers:  # grey levels in [0, 1] and two far outliers per image
        def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
            return np.tile(np.r_[np.linspace(0, 1, 398), -50.0, 50.0], (len(Z), 1))

    low, high = latent_grid(Outliers(), grid_size=2, shape=(20, 20)).images[-1].get_clim()
    assert 0.0 <= low < 0.01 and 0.99 < high <= 1.0  # the outliers do not wash the images out
    given = latent_grid(Constant(), grid_size=3, shape=(2, 2), vmin=-2, vmax=5).images[-1]
    assert given.get_clim() == (-2.0, 5.0)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"vmin": 1.0, "vmax": 0.0}, ValueError, "vmin must be < vmax"),
    ({"vmax": float("nan")}, ValueError, "vmax must be a finite number"),
    ({"shape": (8, 8)}, ValueError, r"shape \(8, 8\) holds 64 values but the embedder decodes 16"),
    ({"shape": 16}, TypeError, r"shape must be a tuple"),
    ({"shape": (4, 4, 2)}, ValueError, r"\(H, W, 3\)"),
    ({"xy_range": (1, -1)}, ValueError, "low < high"),
    ({"xy_range": (0, float("inf"))}, ValueError, "finite"),
    ({"xy_range": 4}, TypeError, "xy_range must be"),
    ({"grid_size": 1}, ValueError, "grid_size must be an int >= 2"),
    ({"embedder": object()}, TypeError, "lacks inverse_transform"),
    ({"embedder": type("Emb3", (LinearEmbedder,), {"n_components": 3})()}, ValueError,
     "2-D embedding, got embedder.n_components=3"),
])
def test_latent_grid_rejects_bad_input(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"embedder": LinearEmbedder(), "shape": (4, 4), **kwargs}
    with pytest.raises(error, match=match):
        latent_grid(**kwargs)


# ----------------------------------------------------------------------------------- interpolate()
def test_interpolate_latent_end_points_are_the_decoded_end_points() -> None:
    embedder = LinearEmbedder()
    a, b = np.array([-1.0, 2.0]), np.array([3.0, 0.5])
    images, ax = interpolate(embedder, a, b, n=5, shape=(4, 4))
    assert images.shape == (5, 4, 4)
    np.testing.assert_allclose(images[0], embedder.inverse_transform(a[None]).reshape(4, 4))
    np.testing.assert_allclose(images[-1], embedder.inverse_transform(b[None]).reshape(4, 4))
    np.testing.assert_allclose(images[2], embedder.inverse_transform((a + b)[None] / 2).reshape(4, 4))
    assert np.asarray(ax.images[-1].get_array()).shape == (4, 5 * 4)


def test_interpolate_data_points_are_embedded_first() -> None:
    embedder = LinearEmbedder()
    rng = np.random.default_rng(1)
    xa, xb = rng.normal(size=(4, 4)), rng.normal(size=16)  # any shape with 16 values
    images, _ = interpolate(embedder, xa, xb, n=3, shape=(4, 4), space="data")
    za, zb = embedder.transform(np.stack([xa.ravel(), xb]))
    np.testing.assert_allclose(images[0], embedder.inverse_transform(za[None]).reshape(4, 4))
    np.testing.assert_allclose(images[-1], embedder.inverse_transform(zb[None]).reshape(4, 4))
    # the data points themselves are not in the linear decoder's range: the ends are their projections
    assert not np.allclose(images[0], xa)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"space": "pixel"}, ValueError, "space must be 'latent' or 'data', got 'pixel'"),
    ({"n": 1}, ValueError, "n must be an int >= 2"),
    ({"a": np.zeros((1, 2))}, ValueError, r"a must be a latent point of shape \(n_components,\)"),
    ({"b": np.zeros(3)}, ValueError, "a and b must have the same shape"),
    ({"b": np.array([0.0, np.inf])}, ValueError, "b must be finite"),
    ({"space": "data", "embedder": type("Decoder", (), {"inverse_transform": lambda s, z: z})()}, TypeError,
     "lacks transform"),
])
def test_interpolate_rejects_bad_input(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"embedder": LinearEmbedder(), "a": np.zeros(2), "b": np.ones(2), "shape": (4, 4), **kwargs}
    with pytest.raises(error, match=match):
        interpolate(**kwargs)
