"""What :class:`~vaekit.embedding.VAEEmbedder` accepts as ``X``, checked and read in batches.

In-memory inputs (numpy arrays, pandas DataFrames, torch tensors, lists) are checked with
scikit-learn's own validation (so feature names, feature counts and error messages follow
scikit-learn) and held as one float32 array. Out-of-core inputs are never loaded whole:

- a directory tree of ``.npy`` files, one example per file (any shape, flattened), nested
  folders allowed, read in the sorted order of their relative paths;
- a memory-mapped array (``np.load(path, mmap_mode="r")``) or the path of a ``.npy`` file,
  whose first axis indexes examples.

Every input ends up as a :class:`Source`: ``len(source)`` examples of ``n_features``
float32 numbers, read by sorted row indices. In-memory arrays are an :class:`ArraySource`
too, so statistics and training batches are computed by the very same code whichever way
the data arrive (same data and seed give the same model).

Every source, whatever it came from, is then checked by :func:`validate_source` (numeric
dtype, at least one example with one feature, the fitted model's feature count, finite
values read in chunks of :data:`STAT_CHUNK` examples), so a NaN is refused with the same
message naming the input and the first bad example and feature whether it came in memory,
memory-mapped, as a file or as a folder.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Source", "ArraySource", "NpyDirectorySource", "ConcatSource", "as_source", "check_array_input", "validate_source",
           "check_finite", "feature_statistics"]

#: Rows per chunk of the streaming passes (statistics); fixed so that results never depend on the input kind.
STAT_CHUNK = 4096


class Source:
    """``len(self)`` examples of ``n_features`` numbers, read in batches.

    Attributes
    ----------
    n_features : int
    description : str
        What the data are, for messages.
    """

    n_features: int
    description: str

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Examples ``index`` (sorted ints) as a float32 array of shape (len(index), n_features)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def locate(self, i: int) -> str:
        """Where example ``i`` is, for messages ("example 5", or its file)."""
        return f"example {i}"


class ArraySource(Source):
    """Rows of an array (in memory or memory-mapped); each example is flattened.

    Parameters
    ----------
    array : ndarray of shape (n_samples, *example_shape)
    description : str

    Examples
    --------
    >>> s = ArraySource(np.arange(12).reshape(3, 2, 2))
    >>> len(s), s.n_features, s.rows(np.array([0, 2])).shape
    (3, 4, (2, 4))
    """

    def __init__(self, array: np.ndarray, description: str = "X") -> None:
        self.array, self.description = array, description
        self.n_features = int(np.prod(array.shape[1:], dtype=np.int64))

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def rows(self, index: np.ndarray) -> np.ndarray:
        if len(index) and int(index[-1]) - int(index[0]) + 1 == len(index):  # contiguous: a slice, no fancy indexing
            block = self.array[int(index[0]):int(index[-1]) + 1]
        else:
            block = self.array[index]
        with np.errstate(over="ignore"):  # values beyond float32 become inf, which validate_source reports
            return np.array(block, dtype=np.float32).reshape(len(index), self.n_features)  # a writable copy


class NpyDirectorySource(Source):
    """A directory tree of ``.npy`` files, one example each, read file by file.

    Files are found recursively and ordered by their path relative to ``root`` (POSIX
    form, sorted), so the order is the same on every machine. Every file must hold a
    numeric array with the shape of the first one; shapes and values are checked when a
    file is read (the statistics pass reads each file once).

    Parameters
    ----------
    root : str or path-like

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "b").mkdir()
    >>> np.save(root / "b" / "1.npy", np.ones((2, 2))); np.save(root / "a.npy", np.zeros((2, 2)))
    >>> s = NpyDirectorySource(root)
    >>> len(s), s.n_features, s.rows(np.array([0, 1])).sum(axis=1).tolist()
    (2, 4, [0.0, 4.0])
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"X={os.fspath(root)!r} is not a directory of .npy files")
        files = sorted((p for p in self.root.rglob("*.npy") if p.is_file()),
                       key=lambda p: p.relative_to(self.root).as_posix())
        if not files:
            raise ValueError(f"X={os.fspath(root)!r} holds no .npy files (searched nested folders too); "
                             "save one example per file with np.save")
        self.files = files
        self.description = f"the .npy files under {os.fspath(root)!r}"
        self.example_shape = self._read(0).shape
        self.n_features = int(np.prod(self.example_shape, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, i: int) -> np.ndarray:
        path = self.files[i]
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"cannot read {path} as a numeric .npy array (no pickles are loaded): {e}") from None
        check_dtype(a.dtype, f"{path}")
        if hasattr(self, "example_shape") and a.shape != self.example_shape:
            raise ValueError(f"{path} holds an array of shape {a.shape} but the first file "
                             f"({self.files[0]}) has shape {self.example_shape}; every example must have the same shape")
        return a

    def rows(self, index: np.ndarray) -> np.ndarray:
        out = np.empty((len(index), self.n_features), dtype=np.float32)
        for row, i in enumerate(index):
            out[row] = self._read(int(i)).reshape(-1)
        return out

    def locate(self, i: int) -> str:
        return f"example {i} ({self.files[i]})"


class ConcatSource(Source):
    """The rows of ``first`` followed by those of ``second`` (training rows, then validation rows).

    Parameters
    ----------
    first, second : Source
        With the same number of features.

    Examples
    --------
    >>> s = ConcatSource(ArraySource(np.zeros((2, 3))), ArraySource(np.ones((1, 3)), "V"))
    >>> len(s), s.rows(np.array([1, 2])).sum(axis=1).tolist(), s.locate(2)
    (3, [0.0, 3.0], 'V: example 0')
    """

    def __init__(self, first: Source, second: Source) -> None:
        if first.n_features != second.n_features:
            raise ValueError(f"{second.description} has {second.n_features} features but {first.description} has "
                             f"{first.n_features}")
        self.first, self.second, self.n_features = first, second, first.n_features
        self.description = f"{first.description} and {second.description}"

    def __len__(self) -> int:
        return len(self.first) + len(self.second)

    def rows(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index)
        n = len(self.first)
        a, b = index[index < n], index[index >= n] - n
        parts = [self.first.rows(a)] if len(a) else []
        parts += [self.second.rows(b)] if len(b) else []
        return np.concatenate(parts) if parts else np.empty((0, self.n_features), dtype=np.float32)

    def locate(self, i: int) -> str:
        n = len(self.first)
        return f"{self.first.description}: {self.first.locate(i)}" if i < n else \
            f"{self.second.description}: {self.second.locate(i - n)}"


def check_dtype(dtype: np.dtype, name: str) -> None:
    """Raise ``TypeError`` unless ``dtype`` is boolean, integer or real floating point."""
    if dtype.kind not in "biuf":
        kind = {"U": "strings", "S": "bytes", "O": "Python objects", "c": "complex numbers"}.get(dtype.kind, f"dtype {dtype}")
        raise TypeError(f"{name} holds {kind} (dtype {dtype}); VAEEmbedder needs numeric features "
                        "(encode categories as numbers first)")


def as_source(X: Any) -> Source | None:
    """A streaming :class:`Source` for out-of-core ``X``, or None for in-memory data.

    The source is not checked yet: pass it to :func:`validate_source`.

    Parameters
    ----------
    X : any
        A directory of ``.npy`` files or the path of a ``.npy`` file (str or path-like),
        or a ``numpy.memmap``: streamed. A :class:`Source` (e.g. an :class:`ArraySource`
        whose ``description`` names the file it was read from) is returned as it is.
        Anything else: None (check it with :func:`check_array_input`).

    Raises
    ------
    FileNotFoundError
        A path that does not exist.
    ValueError, TypeError
        A path that is not a ``.npy`` file or a directory, or a ``.npy`` file that cannot be
        memory-mapped (not an array file, or an array of Python objects).
    """
    if isinstance(X, Source):
        return X
    if isinstance(X, (str, os.PathLike)):
        path = Path(X)
        if path.is_dir():
            return NpyDirectorySource(path)
        if not path.exists():
            raise FileNotFoundError(f"X={os.fspath(X)!r} does not exist (expected a .npy file or a directory of .npy files)")
        if path.suffix != ".npy":
            raise ValueError(f"X={os.fspath(X)!r} must be a .npy file or a directory of .npy files; load other "
                             "formats (csv, npz) into an array first")
        try:
            X = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot memory-map {path} as a numeric .npy array: {e}") from None
        name = os.fspath(path)
    elif isinstance(X, np.memmap):
        name = f"X (memory-mapped array of {X.filename})" if getattr(X, "filename", None) else "X (memory-mapped array)"
    else:
        return None
    return ArraySource(X, name)


def validate_source(source: Source, n_features: int | None = None, chunk: int = STAT_CHUNK) -> Source:
    """The one check of every input of :class:`~vaekit.embedding.VAEEmbedder`, whatever its kind.

    In order: a numeric dtype and 2 or more dimensions (arrays and memory maps), at least one
    example with at least one feature, ``n_features`` features (the fitted model's count,
    when given), then every value finite, read in chunks of ``chunk`` examples (a memory
    map or a folder is never loaded whole; :func:`check_finite` on each chunk). Every error
    names ``source.description`` (the argument, or the file or folder it came from) and,
    for values, the first bad example and feature.

    Parameters
    ----------
    source : Source
    n_features : int or None
        The feature count the input must have (None: any, e.g. when fitting).
    chunk : int
        Examples per read.

    Returns
    -------
    Source
        ``source`` itself.

    Raises
    ------
    TypeError
        Non-numeric data (strings, objects, complex numbers).
    ValueError
        Fewer than 2 dimensions, no example or no feature, another feature count, or a NaN
        or infinite value (also a value beyond float32's range, which becomes infinite).

    Examples
    --------
    >>> validate_source(ArraySource(np.ones((3, 2)))).n_features
    2
    >>> validate_source(ArraySource(np.array([[1.0, 2.0], [3.0, np.nan]]), "X.npy"))
    Traceback (most recent call last):
    ...
    ValueError: X.npy contains NaN or infinity (first at example 1, feature 1: nan); VAEEmbedder needs finite values...
    """
    name = source.description
    if isinstance(source, ArraySource):
        array = source.array
        check_dtype(array.dtype, name)
        if array.ndim < 2:
            raise ValueError(f"{name} has shape {array.shape}: expected 2 or more dimensions (n_samples, n_features, ...); "
                             "reshape a single feature with X.reshape(-1, 1) or a single example with X.reshape(1, -1)")
        shape = f"shape {array.shape}"
    else:
        shape = f"{len(source)} examples of {source.n_features} features"
    if len(source) == 0 or source.n_features == 0:
        raise ValueError(f"{name} has {shape}: found an empty array, at least one example with one feature is needed")
    if n_features is not None and source.n_features != n_features:
        where = "" if name == "X" else f" ({name})"
        raise ValueError(f"X has {source.n_features} features, but VAEEmbedder is expecting {n_features} features as "
                         f"input{where}.")
    for start in range(0, len(source), chunk):
        check_finite(source.rows(np.arange(start, min(start + chunk, len(source)))), start, source)
    return source


def check_finite(block: np.ndarray, start: int, source: Source) -> None:
    """Raise ``ValueError`` naming the first NaN or infinity of ``block``, rows ``start..`` of ``source``.

    Parameters
    ----------
    block : ndarray of shape (n, n_features)
    start : int
        Index of ``block``'s first row in ``source``.
    source : Source
    """
    bad = ~np.isfinite(block)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        value = float(block[i, j])
        hint = "" if math.isnan(value) else " (values beyond float32's range, about 3.4e38, count as infinite)"
        raise ValueError(f"{source.description} contains NaN or infinity (first at {source.locate(start + i)}, feature "
                         f"{j}: {value}){hint}; VAEEmbedder needs finite values: impute or drop them first")


def check_array_input(estimator: Any, X: Any, *, reset: bool) -> np.ndarray:
    """Validate in-memory ``X`` (ndarray, DataFrame, tensor, nested list) as scikit-learn does.

    Returns a C-contiguous float32 array of shape (n_samples, n_features). On ``reset``
    records ``n_features_in_`` (and ``feature_names_in_`` for DataFrames) on the
    estimator; otherwise checks them. Sparse matrices, non-numeric, complex, empty and 1-D
    data raise before anything else happens. Values are not checked here: NaN and infinity
    are refused by :func:`validate_source`, as for every other kind of input.
    """
    from scipy import sparse
    from sklearn.utils.validation import validate_data

    if sparse.issparse(X):
        raise TypeError(f"X is a sparse {type(X).__name__} of shape {X.shape}; VAEEmbedder needs dense data: pass "
                        "X.toarray() if it fits in memory, else save examples as .npy files and pass their directory")
    if _is_tensor(X):
        X = X.detach().cpu().numpy()
    dtype = getattr(X, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind in "US":  # object arrays of numbers are fine
        check_dtype(dtype, "X")
    if isinstance(X, np.ndarray) and X.ndim > 2:
        raise ValueError(f"X has shape {X.shape}; VAEEmbedder expects a 2-D array (n_samples, n_features): flatten the "
                         "examples with X.reshape(len(X), -1), or pass a memory-mapped array / .npy directory, "
                         "which are flattened per example")
    try:
        return validate_data(estimator, X, reset=reset, dtype=np.float32, order="C", ensure_min_samples=1,
                             ensure_all_finite=False)
    except ValueError as e:
        if "could not convert" in str(e) or "dtype='numeric'" in str(e):
            raise TypeError(f"X must hold numeric features: {e}") from None
        raise


def _is_tensor(X: Any) -> bool:
    mod = type(X).__module__
    return mod.startswith("torch") and hasattr(X, "detach")


def feature_statistics(source: Source, chunk: int = STAT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every feature in one streaming pass (float64).

    Also checks that every value is finite. Rows are read in fixed chunks of ``chunk``
    examples and accumulated with Chan's parallel update, so the result depends only on
    the values, not on how the source stores them.

    Parameters
    ----------
    source : Source
    chunk : int

    Returns
    -------
    mean, std : ndarray of shape (n_features,), float64

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(3.0, 2.0, size=(10000, 2))
    >>> m, s = feature_statistics(ArraySource(x), chunk=999)
    >>> np.allclose(m, x.mean(0)), np.allclose(s, x.std(0))
    (True, True)
    """
    n_total, mean, m2 = 0, np.zeros(source.n_features), np.zeros(source.n_features)
    for start in range(0, len(source), chunk):
        block = source.rows(np.arange(start, min(start + chunk, len(source)))).astype(np.float64)
        check_finite(block, start, source)
        n, bm = len(block), block.mean(0)
        bm2 = ((block - bm) ** 2).sum(0)
        delta = bm - mean
        total = n_total + n
        mean = mean + delta * (n / total)
        m2 = m2 + bm2 + delta ** 2 * (n_total * n / total)
        n_total = total
    return mean, np.sqrt(m2 / n_total)


def batches(n: int, batch_size: int, order: Sequence[int] | np.ndarray | None = None) -> list[np.ndarray]:
    """Split ``order`` (default ``range(n)``) into consecutive batches, each sorted ascending."""
    idx = np.arange(n) if order is None else np.asarray(order)
    return [np.sort(idx[i:i + batch_size]) for i in range(0, len(idx), batch_size)]
