"""Synthetic "writers" from MNIST: a grouped image benchmark with known group effects."""

from __future__ import annotations

import math
import numbers
import os
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vaekit.data._checks import InvalidArgumentError, check_int
from vaekit.data.download import locate
from vaekit.data.formats import load_npz, read_idx
from vaekit.data.grouped import GroupedData, GroupedSource

__all__ = ["MNISTWriters", "STYLE_RANGES", "draw_class_counts", "draw_styles", "draw_swaps", "render"]

#: Ranges of the writer styles (each drawn uniformly, once per writer).
STYLE_RANGES: dict[str, tuple[float, float]] = {
    "slant": (-0.4, 0.4),  # horizontal shear factor
    "rotation": (-15.0, 15.0),  # degrees
    "scale": (0.75, 1.15),
    "dx": (-3.0, 3.0),  # pixels
    "dy": (-3.0, 3.0),  # pixels
    "thickness": (-0.6, 1.0),  # blend towards a 3x3 erosion (< 0) or dilation (> 0)
}

def draw_styles(n_writers: int, seed: int) -> dict[str, Tensor]:
    """Draw each writer's style, deterministic in ``seed``.

    Returns
    -------
    dict of str to Tensor of shape (n_writers,), float32
        ``slant``, ``rotation``, ``scale``, ``dx``, ``dy``, ``thickness``.

    Examples
    --------
    >>> s = draw_styles(3, seed=0)
    >>> sorted(s), s["thickness"].shape
    (['dx', 'dy', 'rotation', 'scale', 'slant', 'thickness'], torch.Size([3]))
    """
    rng = np.random.default_rng([seed, 1])
    return {k: torch.from_numpy(rng.uniform(lo, hi, n_writers).astype(np.float32)) for k, (lo, hi) in STYLE_RANGES.items()}


def render(images: Tensor, styles: dict[str, Tensor]) -> Tensor:
    """Apply one style per image: an affine map (slant, rotation, scale, offset), then thickness.

    Thickness ``t`` blends the warped image towards its 3x3 dilation (``t > 0``, weight
    ``t``) or erosion (``t < 0``, weight ``-t``): a continuous stroke-width effect.

    Parameters
    ----------
    images : Tensor of shape (n, 1, H, W)
        Grey levels in [0, 1].
    styles : dict of str to Tensor of shape (n,)
        Per-image style (see :func:`draw_styles`).

    Returns
    -------
    Tensor of shape (n, 1, H, W), in [0, 1]

    Examples
    --------
    >>> x = torch.zeros(1, 1, 28, 28); x[0, 0, 10:18, 13:15] = 1.0
    >>> same = {"slant": torch.zeros(1), "rotation": torch.zeros(1), "scale": torch.ones(1),
    ...         "dx": torch.zeros(1), "dy": torch.zeros(1), "thickness": torch.ones(1)}
    >>> float(render(x, same).sum()) > float(x.sum())  # dilation thickens the stroke
    True
    """
    n, _, h, w = images.shape
    angle = styles["rotation"].double() * math.pi / 180
    cos, sin = torch.cos(angle), torch.sin(angle)
    shear, scale = styles["slant"].double(), styles["scale"].double()
    # forward map A = R @ Shear @ Scale on normalized coordinates, then offset b
    a = torch.stack([
        torch.stack([cos * scale, (cos * shear - sin) * scale], -1),
        torch.stack([sin * scale, (sin * shear + cos) * scale], -1),
    ], -2)  # fmt: skip
    b = torch.stack([2 * styles["dx"].double() / w, 2 * styles["dy"].double() / h], -1)
    inv = torch.linalg.inv(a)
    theta = torch.cat([inv, -(inv @ b.unsqueeze(-1))], -1).to(images.dtype)  # output -> input coordinates
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    t = styles["thickness"].to(images.dtype).view(-1, 1, 1, 1)
    dilated, eroded = F.max_pool2d(out, 3, 1, 1), -F.max_pool2d(-out, 3, 1, 1)
    out = out + t.clamp(min=0) * (dilated - out) + (-t).clamp(min=0) * (eroded - out)
    return out.clamp_(0.0, 1.0)


def draw_swaps(n_writers: int, n_pairs: int, seed: int) -> Tensor:
    """Per writer, ``n_pairs`` disjoint random pairs of digits, int64 (n_writers, n_pairs, 2).

    >>> draw_swaps(3, 2, 0).shape
    torch.Size([3, 2, 2])
    """
    g = torch.Generator().manual_seed(int(seed) * 7919 + 3)
    perms = torch.stack([torch.randperm(10, generator=g) for _ in range(n_writers)])
    return perms[:, : 2 * n_pairs].reshape(n_writers, n_pairs, 2)


def draw_class_counts(n_writers: int, digits_per_writer: int, label_skew: float, seed: int) -> tuple[Tensor, Tensor]:
    """Per writer, class proportions ~ Dirichlet(label_skew * 1_10) and the digit counts drawn from them.

    Writer ``w`` uses its own generator (``seed`` and ``w``), so its proportions do not depend on
    ``n_writers``. Small ``label_skew`` (e.g. 0.3) gives writers that write mostly a few digits;
    large values approach uniform proportions.

    Returns
    -------
    probs : Tensor of shape (n_writers, 10), float32
        Each row sums to 1.
    counts : Tensor of shape (n_writers, 10), int64
        Multinomial(digits_per_writer, probs[w]) digits of each class; rows sum to ``digits_per_writer``.

    Examples
    --------
    >>> p, c = draw_class_counts(3, 50, 0.5, seed=0)
    >>> p.shape, c.sum(1).tolist()
    (torch.Size([3, 10]), [50, 50, 50])
    """
    probs, counts = np.zeros((n_writers, 10)), np.zeros((n_writers, 10), dtype=np.int64)
    for w in range(n_writers):
        rng = np.random.default_rng([seed, 3, w])
        p = rng.dirichlet(np.full(10, label_skew))
        probs[w] = p / p.sum()
        counts[w] = rng.multinomial(digits_per_writer, probs[w])
    return torch.from_numpy(probs.astype(np.float32)), torch.from_numpy(counts)


def _check_skew(label_skew: object) -> float | None:
    accepted = "None (every writer writes MNIST's digits as drawn) or a finite float > 0 (Dirichlet concentration)"
    if label_skew is None:
        return None
    if isinstance(label_skew, bool) or not isinstance(label_skew, numbers.Real):
        raise InvalidArgumentError(f"label_skew must be {accepted}; got {label_skew!r} of type {type(label_skew).__name__}")
    if not (math.isfinite(float(label_skew)) and float(label_skew) > 0):
        raise InvalidArgumentError(f"label_skew must be {accepted}; got {label_skew!r}")
    return float(label_skew)


class MNISTWriters(GroupedData):
    """Deterministic synthetic writers: MNIST digits rendered in per-writer styles.

    Each of ``n_writers`` writers gets a fixed style (:data:`STYLE_RANGES`: slant, rotation,
    scale, offset, stroke thickness by erosion/dilation) and ``digits_per_writer`` distinct
    MNIST digits (drawn without replacement from the 70,000 training and test images),
    which it "writes" in its style (:func:`render`). ``x`` has shape (n, 1, 28, 28) in
    [0, 1], ``y`` is the digit (10 classes), the group level is ``"writer"`` (raw ids
    0..n_writers-1, so ids equal writer numbers). The styles, the known group effects,
    are in ``writer_styles`` (``writer_styles[name][writer_id]``). Everything is a
    function of ``seed`` (which also seeds the split).

    Styles change the pixels only: the digit can still be read from the image alone. With
    ``glyph_swaps > 0`` each writer also has a personal convention that changes the
    *labels*: for ``glyph_swaps`` random pairs of digits (a, b) it writes a with the
    glyph of b and b with the glyph of a (an MNIST image of class b is labelled a). From
    the image alone such a digit is ambiguous; knowing the writer resolves it, which is the
    group effect that group-latent predictors can learn. The pairs are in
    ``writer_swaps`` (int64, shape (n_writers, glyph_swaps, 2)).

    With ``label_skew=alpha`` each writer also writes the ten digits in its own proportions,
    drawn from Dirichlet(alpha * 1_10) (:func:`draw_class_counts`; small alpha: mostly a few
    digits per writer), the label-distribution skew across clients of federated benchmarks
    such as LEAF's FEMNIST. It is a group effect on the labels that a writer latent added to
    the logits (``bias``/``factor``) expresses exactly, and that a few labelled digits of a
    new writer reveal. The proportions are in ``writer_class_probs`` (float32, shape
    (n_writers, 10)); the digits are still distinct MNIST images.

    Parameters
    ----------
    root : str, optional
        Folder holding MNIST (see :class:`vaekit.data.MNIST`).
    n_writers : int
    digits_per_writer : int
        ``n_writers * digits_per_writer`` must not exceed 70,000.
    seed : int
    split, val_fraction, test_fraction
        See :class:`~vaekit.data.grouped.GroupedArrays` (``split="group"``: unseen writers).
    download : bool
        Download MNIST when it is not found.
    glyph_swaps : int
        Pairs of digits whose glyphs each writer exchanges (0 to 5; 0 = labels are the
        MNIST classes).
    label_skew : float, optional
        Dirichlet concentration of each writer's class proportions (> 0); None (default):
        digits drawn uniformly from MNIST, so classes follow MNIST's frequencies.

    Examples
    --------
    >>> data = MNISTWriters(n_writers=20, digits_per_writer=50)  # doctest: +SKIP
    >>> data.setup(); data.train["x"].shape[1:], data.writer_styles["slant"].shape  # doctest: +SKIP
    (torch.Size([1, 28, 28]), torch.Size([20]))
    """

    def __init__(
        self,
        root: str | None = None,
        *,
        n_writers: int = 100,
        digits_per_writer: int = 100,
        seed: int = 0,
        split: Literal["example", "group"] = "example",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        download: bool = True,
        glyph_swaps: int = 0,
        label_skew: float | None = None,
    ) -> None:
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a str path or None; got {root!r} of type {type(root).__name__}")
        if not isinstance(download, bool):
            raise TypeError(f"download must be a bool; got {download!r}")
        n_writers = check_int("n_writers", n_writers, minimum=1)
        digits_per_writer = check_int("digits_per_writer", digits_per_writer, minimum=1)
        if n_writers * digits_per_writer > 70000:
            raise ValueError(
                f"n_writers * digits_per_writer = {n_writers * digits_per_writer} exceeds the 70000 MNIST digits"
            )
        glyph_swaps = check_int("glyph_swaps", glyph_swaps, minimum=0)
        if glyph_swaps > 5:
            raise ValueError(f"glyph_swaps must be between 0 and 5 (disjoint pairs of the 10 digits), got {glyph_swaps}")
        label_skew = _check_skew(label_skew)
        self._init_split(split, val_fraction, test_fraction, seed)
        self.root = None if root is None else os.fspath(root)
        self.n_writers, self.digits_per_writer, self.download = n_writers, digits_per_writer, download
        #: Style of each writer id: dict of str to Tensor of shape (n_writers,).
        self.writer_styles = draw_styles(n_writers, seed)
        self.glyph_swaps = glyph_swaps
        #: Digit pairs each writer writes with each other's glyphs: int64 (n_writers, glyph_swaps, 2).
        self.writer_swaps = draw_swaps(n_writers, glyph_swaps, seed)
        self.label_skew = label_skew
        #: Class proportions of each writer, float32 (n_writers, 10); None without label_skew.
        self.writer_class_probs: Tensor | None = None
        self._class_counts: Tensor | None = None
        if label_skew is not None:
            self.writer_class_probs, self._class_counts = draw_class_counts(n_writers, digits_per_writer, label_skew, seed)

    def _mnist(self) -> tuple[np.ndarray, np.ndarray]:
        files = locate("mnist", self.root, download=self.download)
        if files.kind == "npz":
            a = load_npz(files.paths[0], ["x_train", "y_train", "x_test", "y_test"])
            parts = [a["x_train"], a["y_train"], a["x_test"], a["y_test"]]
        else:
            parts = [read_idx(p) for p in files.paths]
        x, y = np.concatenate([parts[0], parts[2]]), np.concatenate([parts[1], parts[3]])
        if x.shape[1:] != (28, 28) or len(x) != len(y):
            raise ValueError(f"MNIST files in {files.root} hold images {x.shape} and labels {y.shape}")
        return x, y.astype(np.int64)

    def _load_source(self) -> GroupedSource:
        images, labels = self._mnist()
        n = self.n_writers * self.digits_per_writer
        if n > len(images):
            raise ValueError(f"{n} digits requested but the MNIST files hold {len(images)}")
        if self._class_counts is None:
            pick = np.random.default_rng([self.seed, 2]).choice(len(images), n, replace=False)
        else:
            pick = self._skewed_pick(labels)
        writer = np.repeat(np.arange(self.n_writers), self.digits_per_writer)
        x = torch.from_numpy(images[pick].astype(np.float32) / 255.0).unsqueeze(1)
        per_image = {k: v[torch.from_numpy(writer)] for k, v in self.writer_styles.items()}
        y = torch.from_numpy(labels[pick])
        if self.glyph_swaps:  # an image of class b by a writer who swaps (a, b) means the digit a
            table = torch.arange(10).repeat(self.n_writers, 1)
            for w in range(self.n_writers):
                for a, b in self.writer_swaps[w].tolist():
                    table[w, a], table[w, b] = b, a
            y = table[torch.from_numpy(writer), y]
        return GroupedSource(render(x, per_image), y, [writer], ["writer"], "classification", 10)

    def _skewed_pick(self, labels: np.ndarray) -> np.ndarray:
        """Indices of distinct images, writer by writer, with each writer's class counts (in random order)."""
        counts = self._class_counts.numpy()
        rng = np.random.default_rng([self.seed, 4])
        pools = [rng.permutation(np.flatnonzero(labels == c)) for c in range(10)]
        need = counts.sum(0)
        short = [c for c in range(10) if need[c] > len(pools[c])]
        if short:
            c = short[0]
            raise ValueError(
                f"label_skew={self.label_skew} with n_writers={self.n_writers} and digits_per_writer="
                f"{self.digits_per_writer} needs {int(need[c])} distinct images of digit {c}, but the MNIST files hold "
                f"{len(pools[c])}; lower n_writers or digits_per_writer, or raise label_skew (more even proportions)")
        start = np.concatenate([np.zeros((1, 10), dtype=np.int64), np.cumsum(counts, 0)])
        picks = []
        for w in range(self.n_writers):
            mine = np.concatenate([pools[c][start[w, c]: start[w + 1, c]] for c in range(10)])
            picks.append(np.random.default_rng([self.seed, 5, w]).permutation(mine))
        return np.concatenate(picks)
