"""Image datasets: the real files in the shared data folder, and small files in the official
formats (idx, amat, CIFAR-10 binary) written by the tests."""

from __future__ import annotations

import gzip
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vaekit.data import CIFAR10, MNIST, BinarizedMNIST, Digits, FashionMNIST
from vaekit.data.formats import read_amat, read_cifar10_binary, read_idx

# ------------------------------------------------------------------ real data (shared folder)


def _binary_with_both(x: torch.Tensor) -> bool:
    """Every value is 0 or 1, and both occur (cheaper than unique() on 40M values)."""
    return bool(((x == 0) | (x == 1)).all()) and bool((x == 0).any()) and bool((x == 1).any())


def test_mnist_real_splits_shapes_and_values(shared_data: Path) -> None:
    raw = np.load(shared_data / "mnist" / "mnist.npz")
    data = MNIST(str(shared_data), download=False)
    data.setup()
    assert data.files is not None and data.files.kind == "npz"
    assert data.data_shape == (1, 28, 28)
    assert (len(data.train), len(data.val), len(data.test)) == (50000, 10000, 10000)
    for x in (data.train, data.val, data.test):
        assert x.dtype == torch.float32 and float(x.min()) == 0.0 and float(x.max()) == 1.0
    # train = first 50000 of the official training set, val = the rest, test = official test
    assert torch.equal(data.train[123, 0], torch.from_numpy(raw["x_train"][123]).float() / 255)
    assert torch.equal(data.val[0, 0], torch.from_numpy(raw["x_train"][50000]).float() / 255)
    assert torch.equal(data.test[-1, 0], torch.from_numpy(raw["x_test"][-1]).float() / 255)
    assert data.train_labels[:5].tolist() == [5, 0, 4, 1, 9]  # the famous first MNIST digits
    assert torch.bincount(data.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(float(data.train.mean()) - 0.1307) < 0.001  # the standard MNIST pixel mean


def test_mnist_real_options(shared_data: Path) -> None:
    data = MNIST(str(shared_data), binarize="threshold", flatten=True, val_size=0, download=False)
    data.setup()
    assert data.train.shape == (60000, 784) and data.val is None and data.val_labels is None
    assert _binary_with_both(data.test) and _binary_with_both(data.train)

    dyn = MNIST(str(shared_data), binarize="dynamic", val_size=5000, download=False)
    dyn.setup()
    assert len(dyn.train) == 55000 and len(dyn.val) == 5000
    assert len(dyn.train[:100].unique()) > 2  # intensities kept for train
    assert _binary_with_both(dyn.val)
    torch.manual_seed(0)
    batch = dyn.augment(dyn.train[:2000])
    assert _binary_with_both(batch)
    assert abs(float(batch.mean()) - float(dyn.train[:2000].mean())) < 0.005


def test_fashion_mnist_real(shared_data: Path) -> None:
    data = FashionMNIST(str(shared_data), download=False)
    data.setup()
    assert data.files.paths[0].name == "fashion_mnist.npz"
    assert (len(data.train), len(data.val), len(data.test)) == (50000, 10000, 10000)
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10  # balanced classes
    assert abs(float(data.train.mean()) - 0.286) < 0.002  # Fashion-MNIST pixel mean


def test_binarized_mnist_real(shared_data: Path) -> None:
    data = BinarizedMNIST(str(shared_data), flatten=True, download=False)
    data.setup()
    assert (len(data.train), len(data.val), len(data.test)) == (50000, 10000, 10000)
    assert data.data_shape == (784,)
    assert all(_binary_with_both(x) for x in (data.train, data.val, data.test))
    assert data.train_labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert abs(float(data.train.mean()) - 0.1307) < 0.002  # Bernoulli(intensity) keeps the mean


# ------------------------------------------------------------------ official raw formats


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_from_idx_files(tmp_path: Path, writers: SimpleNamespace, gz: bool) -> None:
    fake = writers.make_fake_mnist(tmp_path, n_train=30, n_test=10, gz=gz)
    data = MNIST(str(tmp_path), val_size=5, download=False)
    data.setup()
    assert data.files.kind == "idx" and data.files.paths[0].name.endswith(".gz") == gz
    assert data.train.shape == (25, 1, 28, 28) and data.val.shape == (5, 1, 28, 28) and data.test.shape == (10, 1, 28, 28)
    assert torch.equal(data.val[2, 0] * 255, torch.from_numpy(fake.x_train[27]).float())
    assert data.test_labels.tolist() == fake.y_test.tolist() and data.test_labels.dtype == torch.int64


def test_fashion_mnist_from_idx_files(tmp_path: Path, writers: SimpleNamespace) -> None:
    fake = writers.make_fake_mnist(tmp_path, n_train=12, n_test=4, folder="fashion_mnist")
    data = FashionMNIST(str(tmp_path), val_size=2, flatten=True, download=False)
    data.setup()
    assert data.train.shape == (10, 784)
    assert torch.equal(data.test * 255, torch.from_numpy(fake.x_test.reshape(4, -1)).float())


def test_read_idx_dtypes_and_errors(tmp_path: Path, writers: SimpleNamespace) -> None:
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    f = writers.write_idx(tmp_path / "x-idx3-ubyte.gz", x)
    assert np.array_equal(read_idx(f), x)

    raw = writers.idx_bytes(x)
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match=r"short is corrupt or truncated.*needs 24 bytes of data, found 23"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x02" + raw[2:])
    with pytest.raises(ValueError, match="magic is not an idx file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw)[:20])
    with pytest.raises(ValueError, match="cannot read .*cut.gz: corrupt or truncated"):
        read_idx(tmp_path / "cut.gz")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        read_idx(tmp_path / "empty")


def test_mnist_with_corrupt_idx_names_the_file(tmp_path: Path, writers: SimpleNamespace) -> None:
    writers.make_fake_mnist(tmp_path)
    labels = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(gzip.decompress(labels.read_bytes())[:-3]))
    data = MNIST(str(tmp_path), val_size=5, download=False)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz is corrupt or truncated"):
        data.setup()
    assert not data.is_setup and data.train is None


def test_mnist_wrong_image_shape_and_label_count(tmp_path: Path, writers: SimpleNamespace) -> None:
    fake = writers.make_fake_mnist(tmp_path)
    writers.write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", fake.x_train[:, :27])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz holds images of shape \(30, 27, 28\)"):
        MNIST(str(tmp_path), val_size=5, download=False).setup()
    writers.write_idx(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", fake.x_train)
    writers.write_idx(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", fake.y_train[:-1])
    with pytest.raises(ValueError, match=r"labels in .*train-labels-idx1-ubyte.gz must have shape \(30,\)"):
        MNIST(str(tmp_path), val_size=5, download=False).setup()


def test_mnist_npz_corrupt_and_missing_keys(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    np.savez(tmp_path / "mnist" / "mnist.npz", x_train=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"mnist.npz has no array named \['y_train', 'x_test', 'y_test'\]"):
        MNIST(str(tmp_path), val_size=1, download=False).setup()
    (tmp_path / "mnist" / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match="cannot read .*mnist.npz"):
        MNIST(str(tmp_path), val_size=1, download=False).setup()


def test_val_size_must_leave_training_data(tmp_path: Path, writers: SimpleNamespace) -> None:
    writers.make_fake_mnist(tmp_path, n_train=30)
    data = MNIST(str(tmp_path), val_size=30, download=False)
    with pytest.raises(ValueError, match="val_size=30 leaves no training examples.*use val_size < 30"):
        data.setup()
    assert data.train is None


def test_binarized_mnist_from_amat(tmp_path: Path, writers: SimpleNamespace) -> None:
    rng = np.random.default_rng(0)
    splits = {s: rng.integers(0, 2, (n, 784), dtype=np.uint8) for s, n in (("train", 6), ("valid", 3), ("test", 2))}
    for s, x in splits.items():
        writers.write_amat(tmp_path / "binarized_mnist" / f"binarized_mnist_{s}.amat", x)
    np.savez(tmp_path / "binarized_mnist" / "binarized_mnist_seed0.npz", x_train=np.zeros((1, 28, 28)))  # ignored
    data = BinarizedMNIST(str(tmp_path), download=False)
    data.setup()
    assert data.files.kind == "amat"  # the official files are preferred
    assert (len(data.train), len(data.val), len(data.test)) == (6, 3, 2) and data.data_shape == (1, 28, 28)
    assert torch.equal(data.val.reshape(3, 784), torch.from_numpy(splits["valid"]).float())
    assert data.train_labels is None and data.test_labels is None


def test_read_amat_errors(tmp_path: Path) -> None:
    (tmp_path / "a.amat").write_text("0 1 1\n1 0\n")
    with pytest.raises(ValueError, match=r"a.amat is corrupt or truncated: expected 3 values on each of its 2"):
        read_amat(tmp_path / "a.amat", width=3)
    (tmp_path / "b.amat").write_text("0 0.5 1\n")
    with pytest.raises(ValueError, match=r"b.amat is not a binary .amat file: found the character b'\.'"):
        read_amat(tmp_path / "b.amat", width=3)


def test_binarized_mnist_npz_must_be_binary(tmp_path: Path) -> None:
    arrays = {f"x_{s}": np.full((2, 28, 28), 1, np.uint8) for s in ("train", "valid", "test")}
    arrays |= {f"y_{s}": np.zeros(2, np.int64) for s in ("train", "valid", "test")}
    arrays["x_test"] = np.full((2, 28, 28), 200, np.uint8)
    (tmp_path / "binarized_mnist").mkdir()
    np.savez(tmp_path / "binarized_mnist" / "binarized_mnist_seed0.npz", **arrays)
    with pytest.raises(ValueError, match="binarized_mnist_seed0.npz is not binarized"):
        BinarizedMNIST(str(tmp_path), download=False).setup()


@pytest.mark.parametrize("extracted", [False, True])
def test_cifar10_binary_format(tmp_path: Path, writers: SimpleNamespace, extracted: bool) -> None:
    tar = tmp_path / "cifar10" / "cifar-10-binary.tar.gz"
    x_train, y_train, x_test, y_test = writers.make_cifar_tar(tar, n_per_batch=4, n_test=3)
    if extracted:
        import tarfile

        with tarfile.open(tar) as t:
            t.extractall(tmp_path / "cifar10", filter="data")
        tar.unlink()
    data = CIFAR10(str(tmp_path), val_size=5, download=False)
    data.setup()
    assert data.files.kind == "cifar_binary" and data.files.paths[0].name.startswith("cifar-10-b")
    assert data.data_shape == (3, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (15, 5, 3)
    assert torch.equal(data.val[-1] * 255, torch.from_numpy(x_train[-1]).float())  # last record of batch 5
    assert torch.equal(data.train[4] * 255, torch.from_numpy(x_train[4]).float())  # first record of batch 2
    assert data.train_labels.tolist() == y_train[:15].tolist() and data.test_labels.tolist() == y_test.tolist()
    assert float(data.test.max()) <= 1.0 and data.test.dtype == torch.float32
    flat = CIFAR10(str(tmp_path), val_size=0, flatten=True, download=False)
    flat.setup()
    assert flat.train.shape == (20, 3072) and flat.val is None
    # pixel layout: first 1024 bytes red plane, row-major (as in the official description)
    assert torch.equal(flat.train[0, :1024] * 255, torch.from_numpy(x_train[0, 0].reshape(-1)).float())


def test_cifar10_corrupt_files(tmp_path: Path, writers: SimpleNamespace) -> None:
    good = writers.cifar_records(np.zeros((2, 3, 32, 32), np.uint8), np.array([1, 2]))
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for i in range(1, 6):
        (folder / f"data_batch_{i}.bin").write_bytes(good)
    with pytest.raises(ValueError, match="missing test_batch.bin"):
        read_cifar10_binary(folder)
    (folder / "test_batch.bin").write_bytes(good[:-10])
    with pytest.raises(ValueError, match=r"test_batch.bin is corrupt or truncated: 6136 bytes"):
        read_cifar10_binary(folder)
    (folder / "test_batch.bin").write_bytes(bytes([42]) + good[1:])
    with pytest.raises(ValueError, match="found label 42"):
        read_cifar10_binary(folder)
    tar = tmp_path / "cifar10" / "cifar-10-binary.tar.gz"
    writers.make_cifar_tar(tar)
    tar.write_bytes(tar.read_bytes()[:300])
    with pytest.raises(ValueError, match="cannot read .*cifar-10-binary.tar.gz: corrupt or truncated"):
        CIFAR10(str(tmp_path), download=False).setup()


# ------------------------------------------------------------------ Digits and argument checks


def test_digits_offline() -> None:
    data = Digits()
    data.setup()
    assert data.data_shape == (1, 8, 8) and data.test is None
    assert (len(data.train), len(data.val)) == (1617, 180)
    assert float(data.train.min()) == 0.0 and float(data.train.max()) == 1.0
    assert set(data.train_labels.unique().tolist()) == set(range(10))
    same = Digits()
    same.setup()
    assert torch.equal(same.val, data.val)
    other = Digits(seed=1, flatten=True, binarize="threshold", test_fraction=0.2)
    other.setup()
    assert other.data_shape == (64,) and len(other.test) == 359
    assert set(other.train.unique().tolist()) == {0.0, 1.0}


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: MNIST(binarize="sometimes"), ValueError, r"binarize='sometimes' is not accepted"),
        (lambda: FashionMNIST(val_size=-1), ValueError, "val_size must be an int >= 0, got -1"),
        (lambda: MNIST(val_size=True), TypeError, "val_size must be an int"),
        (lambda: MNIST(flatten="yes"), TypeError, "flatten must be a bool"),
        (lambda: CIFAR10(download=1), TypeError, "download must be a bool"),
        (lambda: BinarizedMNIST(root=5), TypeError, "root must be a str"),
        (lambda: Digits(val_fraction=1.0), ValueError, "val_fraction=1.0"),
        (lambda: Digits(val_fraction=0.5, test_fraction=0.5), ValueError, "leaves no training data"),
        (lambda: Digits(binarize="dyn"), ValueError, "binarize='dyn'"),
    ],
)
def test_bad_arguments(build, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()


@pytest.mark.parametrize("cls", [MNIST, FashionMNIST, BinarizedMNIST, CIFAR10])
def test_root_that_does_not_exist(tmp_path: Path, cls: type) -> None:
    missing = tmp_path / "nowhere"
    data = cls(str(missing))  # constructing reads nothing
    with pytest.raises(FileNotFoundError, match=f"root='{missing}' does not exist"):
        data.setup()
    assert not missing.exists() and data.train is None
