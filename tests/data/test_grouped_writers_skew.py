"""MNISTWriters(label_skew=alpha): writer-specific class proportions, on a small fake MNIST."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vaekit.data.grouped_writers import MNISTWriters, draw_class_counts


@pytest.fixture
def fake(tmp_path: Path, writers: SimpleNamespace) -> SimpleNamespace:
    """2,000 random 28x28 images with random labels (~200 of each digit) in MNIST's idx files."""
    return writers.make_fake_mnist(tmp_path / "data", n_train=1500, n_test=500, seed=0)


@pytest.fixture
def mnist_root(fake: SimpleNamespace) -> Path:
    return fake.root


def _all(data: MNISTWriters) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    parts = [p for p in (data.train, data.val, data.test) if p is not None]
    return tuple(torch.cat([p[k] for p in parts]) for k in ("x", "y", "groups"))  # type: ignore[return-value]


def test_draw_class_counts_per_writer_seeding() -> None:
    probs, counts = draw_class_counts(6, 40, 0.3, seed=2)
    assert probs.dtype == torch.float32 and probs.shape == (6, 10) and counts.dtype == torch.int64
    assert torch.allclose(probs.sum(1), torch.ones(6)) and counts.sum(1).tolist() == [40] * 6
    more, _ = draw_class_counts(9, 40, 0.3, seed=2)
    assert torch.equal(more[:6], probs)  # writer w's proportions do not depend on n_writers
    assert not torch.equal(draw_class_counts(6, 40, 0.3, seed=3)[0], probs)
    # small alpha concentrates each writer on few digits, large alpha approaches uniform
    top3 = lambda p: float(p.sort(1, descending=True).values[:, :3].sum(1).mean())  # noqa: E731
    assert top3(draw_class_counts(200, 1, 0.2, 0)[0]) > 0.85 > 0.45 > top3(draw_class_counts(200, 1, 50.0, 0)[0])


def test_label_skew_labels_follow_writer_proportions(mnist_root: Path) -> None:
    kwargs = {"n_writers": 20, "digits_per_writer": 60, "test_fraction": 0.2, "val_fraction": 0.1, "download": False,
              "seed": 1, "label_skew": 0.5}
    a, b = MNISTWriters(str(mnist_root), **kwargs), MNISTWriters(str(mnist_root), **kwargs)
    a.setup()
    b.setup()
    assert torch.equal(a.train["x"], b.train["x"]) and torch.equal(a.test["y"], b.test["y"])  # deterministic in seed
    x, y, g = _all(a)
    g = g[:, 0]
    assert torch.bincount(g, minlength=20).tolist() == [60] * 20
    freq = torch.zeros(20, 10).index_put_((g, y), torch.ones(len(y)), accumulate=True) / 60
    probs = a.writer_class_probs
    assert probs is not None and probs.shape == (20, 10) and probs.dtype == torch.float32
    r = np.corrcoef(freq.flatten().numpy(), probs.flatten().numpy())[0, 1]
    assert r > 0.9
    # each writer's most frequent digit is far more frequent than in a uniform draw
    assert float(freq.max(1).values.mean()) > 0.3
    # distinct images across all writers: no image appears twice
    flat = x.flatten(1)
    assert len(torch.unique(flat, dim=0)) == len(flat)
    c = MNISTWriters(str(mnist_root), **{**kwargs, "seed": 2})
    c.setup()
    assert not torch.equal(c.writer_class_probs, probs) and not torch.equal(c.train["y"], a.train["y"])


def test_label_skew_off_keeps_the_plain_draw_and_combines_with_swaps(fake: SimpleNamespace, mnist_root: Path) -> None:
    kwargs = {"n_writers": 10, "digits_per_writer": 30, "test_fraction": 0.0, "val_fraction": 0.0, "download": False}
    plain = MNISTWriters(str(mnist_root), **kwargs)
    plain.setup()
    assert plain.writer_class_probs is None and plain.label_skew is None
    pick = np.random.default_rng([0, 2]).choice(2000, 300, replace=False)  # the draw without skew, unchanged
    labels = np.concatenate([fake.y_train, fake.y_test]).astype(np.int64)[pick]
    assert sorted(plain.train["y"].tolist()) == sorted(labels.tolist())
    skew = MNISTWriters(str(mnist_root), label_skew=0.3, **kwargs)
    both = MNISTWriters(str(mnist_root), label_skew=0.3, glyph_swaps=1, **kwargs)
    skew.setup()
    both.setup()
    assert torch.equal(skew.train["x"], both.train["x"])
    g = skew.train["groups"][:, 0]
    for w in range(10):  # swaps relabel the skewed digits
        (a, b), = both.writer_swaps[w].tolist()
        y0 = skew.train["y"][g == w]
        expected = torch.where(y0 == a, b, torch.where(y0 == b, a, y0))
        assert torch.equal(both.train["y"][g == w], expected)


def test_label_skew_errors(mnist_root: Path) -> None:
    for bad in (0, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=rf"label_skew must be None .* or a finite float > 0 .*; got {bad!r}"):
            MNISTWriters(label_skew=bad)
    for bad in ("0.5", True, [0.5]):
        with pytest.raises(TypeError, match="label_skew must be None"):
            MNISTWriters(label_skew=bad)  # type: ignore[arg-type]
    # 20 writers x 80 digits at alpha 0.05 ask for more images of some digit than 2,000 fake images hold
    data = MNISTWriters(str(mnist_root), n_writers=20, digits_per_writer=80, label_skew=0.05, download=False)
    with pytest.raises(ValueError, match=r"label_skew=0.05 with n_writers=20 and digits_per_writer=80 needs \d+ distinct "
                                         r"images of digit \d, but the MNIST files hold \d+"):
        data.setup()
