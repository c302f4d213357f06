"""ArrayData / ArrayFile: splits, dtypes, binarization and every bad input."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data import ArrayData, ArrayFile, DataModule
from vaekit.data.arrays import split_by_fraction


def _rows(n: int = 50, d: int = 3) -> np.ndarray:
    # row i holds the value i in every column, so each example is identifiable
    return np.repeat(np.arange(n, dtype=np.float64)[:, None], d, axis=1)


def test_split_sizes_partition_and_label_alignment() -> None:
    x, y = _rows(50), np.arange(50) % 7
    data = ArrayData(x, y, val_fraction=0.2, seed=3)
    data.setup()
    assert data.train.shape == (40, 3) and data.val.shape == (10, 3)
    assert data.train.dtype == torch.float32 and data.train_labels.dtype == torch.int64
    ids = torch.cat([data.train[:, 0], data.val[:, 0]]).long()
    assert sorted(ids.tolist()) == list(range(50))  # disjoint and complete
    assert torch.equal(data.train_labels, ids[:40] % 7)  # labels travel with their examples
    assert torch.equal(data.val_labels, ids[40:] % 7)
    assert torch.all(data.train[1:, 0] > data.train[:-1, 0])  # original order kept within a split
    assert data.test is None and data.test_labels is None and data.data_shape == (3,)


def test_split_is_seeded() -> None:
    def val_ids(seed: int) -> list[int]:
        d = ArrayData(_rows(100), val_fraction=0.1, seed=seed)
        d.setup()
        return d.val[:, 0].long().tolist()

    assert val_ids(0) == val_ids(0)
    assert val_ids(0) != val_ids(1)


def test_val_fraction_zero_gives_no_val_and_test_arrays_are_kept() -> None:
    test_x = torch.rand(4, 2, 2)
    data = ArrayData(torch.rand(6, 2, 2), val_fraction=0.0, test_x=test_x, test_labels=torch.arange(4))
    data.setup()
    assert data.val is None and data.val_labels is None
    assert data.train.shape == (6, 2, 2) and data.data_shape == (2, 2)
    assert torch.equal(data.test, test_x) and data.test_labels.tolist() == [0, 1, 2, 3]


def test_small_positive_fraction_holds_out_at_least_one() -> None:
    parts = split_by_fraction(torch.zeros(5, 1), None, (0.01, 0.2), seed=0)
    assert [len(p[0]) for p in parts] == [3, 1, 1]


def test_setup_is_idempotent_and_data_shape_needs_setup() -> None:
    data = ArrayData(np.random.rand(10, 2))
    with pytest.raises(RuntimeError, match="setup"):
        _ = data.data_shape
    data.setup()
    train = data.train
    data.setup()
    assert data.train is train


def test_threshold_and_dynamic_binarization() -> None:
    x = np.full((20, 4), 0.7)
    x[:10] = 0.2
    data = ArrayData(x, val_fraction=0.5, binarize="threshold")
    data.setup()
    assert set(torch.cat([data.train, data.val]).unique().tolist()) == {0.0, 1.0}
    assert float(torch.cat([data.train, data.val]).mean()) == 0.5

    dyn = ArrayData(np.full((1000, 10), 0.3), val_fraction=0.5, binarize="dynamic")
    dyn.setup()
    assert torch.all(dyn.train == 0.3)  # train keeps intensities; augment binarizes
    assert set(dyn.val.unique().tolist()) == {0.0, 1.0}
    assert abs(float(dyn.val.mean()) - 0.3) < 0.03
    again = ArrayData(np.full((1000, 10), 0.3), val_fraction=0.5, binarize="dynamic")
    again.setup()
    assert torch.equal(dyn.val, again.val)  # val fixed by eval_binarize_seed


def test_augment_is_identity_without_dynamic() -> None:
    data = ArrayData(np.random.rand(10, 2))
    x = torch.rand(3, 2)
    assert data.augment(x) is x


def test_dynamic_augment_mean_matches_intensity_and_uses_global_rng() -> None:
    data = ArrayData(np.random.rand(10, 2), binarize="dynamic")
    x = torch.linspace(0.0, 1.0, 11).repeat(20000, 1)  # 11 intensities, 20000 draws each
    torch.manual_seed(123)
    b = data.augment(x)
    assert set(b.unique().tolist()) == {0.0, 1.0}
    assert torch.allclose(b.mean(0), torch.linspace(0.0, 1.0, 11), atol=0.015)
    torch.manual_seed(123)
    assert torch.equal(data.augment(x), b)  # reproducible from the global torch RNG


BAD_ARRAYS = [
    (dict(x=np.zeros((0, 3))), ValueError, "empty"),
    (dict(x=np.array([[0.0, np.nan]] * 3)), ValueError, "non-finite"),
    (dict(x=np.array([[0.0, np.inf]] * 3)), ValueError, "non-finite"),
    (dict(x=np.full((3, 2), 1e300)), ValueError, "non-finite"),  # overflows float32
    (dict(x=np.zeros(5)), ValueError, "at least 2 dimensions"),
    (dict(x=np.array([["a", "b"]] * 3)), TypeError, "dtype <U1"),
    (dict(x=np.array([[object(), 1]] * 3, dtype=object)), TypeError, "dtype object"),
    (dict(x=[[1.0, 2.0]]), TypeError, "numpy array or a torch Tensor"),
    (dict(x=np.zeros((5, 2)), labels=np.zeros(4)), ValueError, r"labels must have shape \(5,\)"),
    (dict(x=np.zeros((5, 2)), labels=np.array([0.5] * 5)), ValueError, "non-integer"),
    (dict(x=np.zeros((5, 2)), labels=np.array(["a"] * 5)), TypeError, "labels"),
    (dict(x=np.zeros((5, 2)), val_fraction=1.0), ValueError, r"val_fraction=1.0 is outside \[0, 1\)"),
    (dict(x=np.zeros((5, 2)), val_fraction=-0.1), ValueError, "val_fraction=-0.1"),
    (dict(x=np.zeros((5, 2)), val_fraction="0.1"), TypeError, "val_fraction"),
    (dict(x=np.zeros((1, 2)), val_fraction=0.5), ValueError, "no training examples"),
    (dict(x=np.zeros((5, 2)), binarize="yes"), ValueError, r"binarize='yes'.*'dynamic'"),
    (dict(x=np.full((5, 2), 2.0), binarize="dynamic"), ValueError, r"\[0, 1\] to be binarized"),
    (dict(x=np.zeros((5, 2)), test_x=np.zeros((3, 4))), ValueError, "test_x examples have shape"),
    (dict(x=np.zeros((5, 2)), test_labels=np.zeros(3)), ValueError, "without test_x"),
    (dict(x=np.zeros((5, 2)), test_x=np.zeros((3, 2)), test_labels=np.zeros(2)), ValueError, "test_labels"),
    (dict(x=np.zeros((5, 2)), seed=-1), ValueError, "seed must be an int >= 0, got -1"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_ARRAYS)
def test_array_data_rejects_bad_input(kwargs: dict, error: type[Exception], match: str) -> None:
    x = kwargs.pop("x")
    with pytest.raises(error, match=match):
        ArrayData(x, **kwargs)


# ----------------------------------------------------------------------------- ArrayFile


def test_array_file_npy_and_npz(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", _rows(20))
    data = ArrayFile(str(tmp_path / "a.npy"), val_fraction=0.25)
    data.setup()
    assert data.train.shape == (15, 3) and data.val.shape == (5, 3) and data.train_labels is None

    np.savez(tmp_path / "b.npz", x=_rows(20), y=np.arange(20), tx=_rows(4, 3), ty=np.arange(4) + 1)
    data = ArrayFile(str(tmp_path / "b.npz"), labels_key="y", test_key="tx", test_labels_key="ty", val_fraction=0.0)
    data.setup()
    assert torch.equal(data.train_labels, torch.arange(20))
    assert data.test.shape == (4, 3) and data.test_labels.tolist() == [1, 2, 3, 4]

    np.savez(tmp_path / "single.npz", features=_rows(8, 2))  # only array: used without key
    data = ArrayFile(str(tmp_path / "single.npz"), val_fraction=0.0)
    data.setup()
    assert data.train.shape == (8, 2)


def test_array_file_reads_shared_tabular(shared_data: Path) -> None:
    data = ArrayFile(str(shared_data / "grouped_tabular" / "sleepstudy.npz"), key="x", labels_key="group")
    data.setup()
    assert data.data_shape == (2,)
    assert len(data.train) + len(data.val) == 180 and len(data.val) == 18
    assert int(torch.cat([data.train_labels, data.val_labels]).unique().numel()) == 18


def _corrupt_npz(tmp_path: Path) -> Path:
    good = tmp_path / "good.npz"
    np.savez(good, x=np.random.rand(100, 10))
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[:-200])  # truncated: the zip directory is gone
    return bad


def test_array_file_errors_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must end in .npy or .npz; got suffix '.csv'"):
        ArrayFile(str(tmp_path / "a.csv"))
    with pytest.raises(ValueError, match=r"\['key'\] need a .npz archive"):
        ArrayFile(str(tmp_path / "a.npy"), key="x")
    with pytest.raises(ValueError, match="without test_key"):
        ArrayFile(str(tmp_path / "a.npz"), test_labels_key="ty")
    with pytest.raises(ValueError, match="val_fraction=1.5"):
        ArrayFile(str(tmp_path / "a.npz"), val_fraction=1.5)
    with pytest.raises(TypeError, match="path must be a str"):
        ArrayFile(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        (lambda p: p / "missing.npz", {}, FileNotFoundError, "missing.npz' does not exist"),
        (_corrupt_npz, {}, ValueError, "cannot read .*bad.npz"),
        (lambda p: (np.savez(p / "o.npz", x=np.array([{}, {}], dtype=object)), p / "o.npz")[1], {}, ValueError,
         "o.npz.*pickled"),
        (lambda p: (np.savez(p / "s.npz", x=np.array([["a"]] * 3)), p / "s.npz")[1], {}, TypeError, "s.npz"),
        (lambda p: (np.savez(p / "two.npz", a=np.ones((3, 1)), b=np.ones((3, 1))), p / "two.npz")[1], {},
         ValueError, r"holds \['a', 'b'\]; choose the examples with key"),
        (lambda p: (np.savez(p / "k.npz", x=np.ones((3, 1))), p / "k.npz")[1], {"labels_key": "y"}, ValueError,
         r"no array named \['y'\]; it holds \['x'\]"),
        (lambda p: (np.savez(p / "l.npz", x=np.ones((3, 1)), y=np.ones(2)), p / "l.npz")[1], {"labels_key": "y"},
         ValueError, r"key 'y' of .*l.npz.*shape \(3,\)"),
        (lambda p: (np.save(p / "e.npy", np.ones((0, 4))), p / "e.npy")[1], {}, ValueError, "e.npy.*empty"),
        (lambda p: (np.save(p / "n.npy", np.array([[np.nan]])), p / "n.npy")[1], {}, ValueError, "n.npy.*non-finite"),
    ],
)
def test_array_file_errors_at_setup_change_nothing(tmp_path: Path, make, kwargs, error, match) -> None:
    data = ArrayFile(str(make(tmp_path)), **kwargs)
    with pytest.raises(error, match=match):
        data.setup()
    assert not data.is_setup and data.train is None and data.val is None


def test_corrupt_npz_is_a_zip_error_wrapped(tmp_path: Path) -> None:
    bad = _corrupt_npz(tmp_path)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(bad)  # the raw failure we turn into a ValueError naming the file


def test_subclass_must_implement_load() -> None:
    with pytest.raises(NotImplementedError, match="_load"):
        DataModule().setup()


def test_standardize_uses_training_statistics_only():
    import numpy as np
    import pytest
    import torch

    from vaekit.data import ArrayData

    rng = np.random.default_rng(0)
    x = rng.normal([5.0, -2.0, 0.0], [3.0, 0.5, 0.0], size=(200, 3))
    data = ArrayData(x, val_fraction=0.25, test_x=x[:10] * 2, standardize=True)
    data.setup()
    torch.testing.assert_close(data.train.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.train.std(0, unbiased=False)[:2], torch.ones(2), atol=1e-5, rtol=0)
    assert torch.all(data.train[:, 2] == 0)  # a constant feature is centred, not divided by zero
    torch.testing.assert_close(data.unstandardize(data.test), torch.as_tensor(x[:10] * 2, dtype=torch.float32), atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="standardize=True cannot be combined with binarize='dynamic'"):
        ArrayData(np.random.rand(10, 2), binarize="dynamic", standardize=True)
