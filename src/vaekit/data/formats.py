"""Readers for the file formats the dataset loaders accept.

All readers return numpy arrays, raise ``ValueError`` naming the file when it is corrupt or
truncated, and never unpickle anything.

- ``.npz`` / ``.npy`` archives (``allow_pickle=False``)
- idx files (MNIST, Fashion-MNIST), plain or gzip-compressed
- ``.amat`` text files (Larochelle & Murray's binarized MNIST)
- CIFAR-10's binary version (``data_batch_*.bin``, records of 1 label byte + 3072 pixels),
  read from ``cifar-10-binary.tar.gz`` without extracting it, or from the extracted folder
"""

from __future__ import annotations

import gzip
import os
import tarfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["load_npy", "load_npz", "npz_keys", "read_amat", "read_cifar10_binary", "read_idx"]

# idx type codes (http://yann.lecun.com/exdb/mnist/): third byte of the magic number.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CIFAR_RECORD = 1 + 3 * 32 * 32
_CIFAR_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR_TEST = "test_batch.bin"
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error, tarfile.TarError)


def _read_bytes(path: Path) -> bytes:
    """Whole file content, gunzipped when the name ends in ``.gz``."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"cannot read {path}: corrupt or truncated file ({exc})") from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (the format of the MNIST and Fashion-MNIST distributions).

    Parameters
    ----------
    path : str or path-like
        ``*-idx3-ubyte`` / ``*-idx1-ubyte`` file, optionally gzip-compressed (``.gz``).

    Returns
    -------
    ndarray of shape given by the file's header (e.g. (60000, 28, 28) uint8)

    Examples
    --------
    >>> import struct, tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "labels-idx1-ubyte"
    >>> _ = f.write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 3) + bytes([7, 2, 1]))
    >>> read_idx(f)
    array([7, 2, 1], dtype=uint8)
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file: bad magic number {raw[:4].hex() or '(empty file)'}")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: its header needs {header} bytes, the file has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path} is corrupt or truncated: header shape {shape} needs {expected} bytes of data, "
            f"found {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_amat(path: str | os.PathLike[str], *, width: int = 784) -> np.ndarray:
    """Read a binarized-MNIST ``.amat`` file: one example per line, ``width`` 0/1 values.

    Parameters
    ----------
    path : str or path-like
        e.g. ``binarized_mnist_train.amat`` (optionally ``.gz``).
    width : int
        Values per line.

    Returns
    -------
    ndarray of shape (n, width), uint8 in {0, 1}

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "tiny.amat"
    >>> _ = f.write_text("0 1 1\\n1 0 0\\n")
    >>> read_amat(f, width=3)
    array([[0, 1, 1],
           [1, 0, 0]], dtype=uint8)
    """
    path = Path(path)
    chars = np.frombuffer(_read_bytes(path), np.uint8)
    allowed = np.zeros(256, bool)
    allowed[list(b"01 \t\r\n")] = True
    if not allowed[chars].all():
        bad = bytes([int(chars[~allowed[chars]][0])])
        raise ValueError(f"{path} is not a binary .amat file: found the character {bad!r}; expected only 0/1")
    lines = [line for line in bytes(chars).splitlines() if line.strip()]
    digits = chars[(chars == ord("0")) | (chars == ord("1"))] - ord("0")
    if not lines or digits.size != len(lines) * width:
        raise ValueError(
            f"{path} is corrupt or truncated: expected {width} values on each of its {len(lines)} "
            f"non-empty lines, found {digits.size} values in all"
        )
    return digits.reshape(len(lines), width).astype(np.uint8)


def _parse_cifar(name: str, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    if not raw or len(raw) % _CIFAR_RECORD:
        raise ValueError(
            f"{name} is corrupt or truncated: {len(raw)} bytes is not a whole number of "
            f"{_CIFAR_RECORD}-byte CIFAR-10 records"
        )
    records = np.frombuffer(raw, np.uint8).reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise ValueError(f"{name} is not CIFAR-10: found label {int(labels.max())}, expected 0..9")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def read_cifar10_binary(
    source: str | os.PathLike[str],
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Read CIFAR-10's binary version.

    Parameters
    ----------
    source : str or path-like
        ``cifar-10-binary.tar.gz`` (read in place, only the ``.bin`` members are opened; no
        extraction, no unpickling) or the extracted ``cifar-10-batches-bin`` folder.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        ``x`` uint8 arrays of shape (n, 3, 32, 32) (channels R, G, B), ``y`` int64 of shape
        (n,). Training batches 1..5 are concatenated in order.
    """
    source = Path(source)
    names = (*_CIFAR_TRAIN, _CIFAR_TEST)
    raw: dict[str, bytes] = {}
    if source.is_dir():
        for name in names:
            file = source / name
            if not file.is_file():
                raise ValueError(f"{source} is missing {name}; expected {list(names)}")
            raw[name] = _read_bytes(file)
    else:
        try:
            with tarfile.open(source, "r:*") as tar:
                members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
                missing = [n for n in names if n not in members]
                if missing:
                    raise ValueError(f"{source} is missing {missing}; is it cifar-10-binary.tar.gz?")
                for name in names:
                    handle = tar.extractfile(members[name])
                    assert handle is not None  # regular files always have a handle
                    raw[name] = handle.read()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"cannot read {source}: corrupt or truncated archive ({exc})") from exc
    parts = [_parse_cifar(f"{source}/{name}", raw[name]) for name in _CIFAR_TRAIN]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return (x_train, y_train), _parse_cifar(f"{source}/{_CIFAR_TEST}", raw[_CIFAR_TEST])


def _open_npz(path: Path) -> np.lib.npyio.NpzFile:
    try:
        archive = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise ValueError(f"cannot read {path}: corrupt or truncated .npz ({exc})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} is a single .npy array, not a .npz archive")
    return archive


def npz_keys(path: str | os.PathLike[str]) -> list[str]:
    """Names of the arrays in a ``.npz`` archive (without reading them)."""
    with _open_npz(Path(path)) as archive:
        return list(archive.files)


def load_npz(path: str | os.PathLike[str], keys: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Read arrays from a ``.npz`` archive with ``allow_pickle=False``.

    Parameters
    ----------
    path : str or path-like
    keys : sequence of str, optional
        Arrays to read (all when ``None``); a missing key raises ``ValueError`` listing the
        archive's arrays.

    Returns
    -------
    dict of str to ndarray
    """
    path = Path(path)
    with _open_npz(path) as archive:
        available = list(archive.files)
        missing = [k for k in (keys or []) if k not in available]
        if missing:
            raise ValueError(f"{path} has no array named {missing}; it holds {available}")
        try:
            return {k: archive[k] for k in (keys if keys is not None else available)}
        except _READ_ERRORS as exc:
            raise ValueError(f"cannot read {path}: corrupt, truncated or pickled .npz ({exc})") from exc


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one ``.npy`` array with ``allow_pickle=False`` (errors name the file)."""
    path = Path(path)
    try:
        array = np.load(path, allow_pickle=False)
    except _READ_ERRORS as exc:
        raise ValueError(f"cannot read {path}: corrupt, truncated or pickled .npy ({exc})") from exc
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path} is a .npz archive, not a single .npy array")
    return array
