"""Fixtures for the vaekit.data tests: isolated environment, the shared data folder, small files
written in the official formats (idx, amat, CIFAR-10 binary)."""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
# Captured before the autouse fixture below clears VAEKIT_DATA.
SHARED_DATA = Path(os.environ.get("VAEKIT_DATA") or REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the real user cache or the caller's VAEKIT_DATA."""
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "user-cache"))
    monkeypatch.delenv("VAEKIT_DATA", raising=False)


@pytest.fixture
def shared_data() -> Path:
    """The read-only real datasets (skip when this machine has none)."""
    if not (SHARED_DATA / "mnist" / "mnist.npz").is_file():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (set VAEKIT_DATA or place them at ../shared/data)")
    return SHARED_DATA


def idx_bytes(array: np.ndarray) -> bytes:
    """An array in the idx format of the MNIST distribution (uint8 data)."""
    assert array.dtype == np.uint8
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as an idx file, gzip-compressed when ``path`` ends in ``.gz``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def write_amat(path: Path, array: np.ndarray) -> Path:
    """Write (n, 784) 0/1 values as a Larochelle-style .amat text file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(" ".join(str(int(v)) for v in row) + "\n" for row in array))
    return path


def cifar_records(x: np.ndarray, y: np.ndarray) -> bytes:
    """CIFAR-10 binary records: 1 label byte then 3072 pixel bytes (R, G, B planes)."""
    rows = np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], axis=1)
    return rows.astype(np.uint8).tobytes()


@dataclass
class FakeMNIST:
    """Small MNIST-format data: arrays and the folder its idx files were written to."""

    root: Path
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def make_fake_mnist(root: Path, n_train: int = 30, n_test: int = 10, seed: int = 0,
                    folder: str = "mnist", gz: bool = True) -> FakeMNIST:
    """Write the four official idx files of an MNIST-like dataset under ``root/folder``."""
    rng = np.random.default_rng(seed)
    data = FakeMNIST(
        root,
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test, dtype=np.uint8),
    )
    ext = ".gz" if gz else ""
    write_idx(root / folder / f"train-images-idx3-ubyte{ext}", data.x_train)
    write_idx(root / folder / f"train-labels-idx1-ubyte{ext}", data.y_train)
    write_idx(root / folder / f"t10k-images-idx3-ubyte{ext}", data.x_test)
    write_idx(root / folder / f"t10k-labels-idx1-ubyte{ext}", data.y_test)
    return data


def make_cifar_tar(path: Path, n_per_batch: int = 4, n_test: int = 3, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Write a small cifar-10-binary.tar.gz; returns (x_train, y_train, x_test, y_test)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (5 * n_per_batch + n_test, 3, 32, 32), dtype=np.uint8)
    y = rng.integers(0, 10, len(x), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        members = [(f"data_batch_{i + 1}.bin", slice(i * n_per_batch, (i + 1) * n_per_batch)) for i in range(5)]
        members += [("batches.meta.txt", None), ("test_batch.bin", slice(5 * n_per_batch, None))]
        for name, sl in members:
            payload = b"airplane\nautomobile\n" if sl is None else cifar_records(x[sl], y[sl])
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    n = 5 * n_per_batch
    return x[:n], y[:n].astype(np.int64), x[n:], y[n:].astype(np.int64)


@pytest.fixture
def fake_mnist(tmp_path: Path) -> FakeMNIST:
    return make_fake_mnist(tmp_path / "data")


@pytest.fixture
def writers() -> SimpleNamespace:
    """The file writers above, for tests (conftest modules are not imported directly)."""
    return SimpleNamespace(
        idx_bytes=idx_bytes,
        write_idx=write_idx,
        write_amat=write_amat,
        cifar_records=cifar_records,
        make_fake_mnist=make_fake_mnist,
        make_cifar_tar=make_cifar_tar,
    )
