"""Where dataset files are found, and how missing ones are downloaded.

Every file-backed loader resolves its files the same way:

1. the ``root`` argument, if given (it must exist);
2. otherwise the folder named by the ``VAEKIT_DATA`` environment variable, then the user
   cache (``$VAEKIT_CACHE``, else ``pooch.os_cache("vaekit")``, e.g. ``~/.cache/vaekit``).

Within a folder each dataset has a subfolder (``mnist/``, ``fashion_mnist/``,
``binarized_mnist/``, ``cifar10/``) holding either vaekit's ``.npz`` layout or the
official raw files (see :data:`LAYOUTS`). When nothing is found and downloading is allowed,
the official files are fetched with pooch, each checked against a pinned SHA-256, into
``root`` if it was given, else into the cache.
"""

from __future__ import annotations

import os
import shutil
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import pooch

from .._cache import cache_dir

__all__ = [
    "LAYOUTS",
    "REMOTE_FILES",
    "DatasetFiles",
    "DatasetNotFoundError",
    "Layout",
    "RemoteFile",
    "cache_dir",
    "find_dataset",
    "locate",
    "search_dirs",
]


@dataclass(frozen=True)
class Layout:
    """One accepted arrangement of a dataset's files: ``kind`` names the reader."""

    kind: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class DatasetFiles:
    """A dataset found on disk: which layout, in which folder, and the files' full paths."""

    name: str
    kind: str
    root: Path
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class RemoteFile:
    """An official file: mirror URLs (tried in order), pinned SHA-256, and its path in a root."""

    urls: tuple[str, ...]
    sha256: str
    path: str


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are neither on disk nor downloadable (the message says where it looked)."""


def _idx(folder: str, gz: bool) -> tuple[str, ...]:
    ext = ".gz" if gz else ""
    return tuple(
        f"{folder}/{split}-{kind}-ubyte{ext}"
        for split in ("train", "t10k")
        for kind in ("images-idx3", "labels-idx1")
    )


#: Accepted layouts inside a data folder, in order of preference.
LAYOUTS: dict[str, tuple[Layout, ...]] = {
    "mnist": (
        Layout("npz", ("mnist/mnist.npz",)),
        Layout("idx", _idx("mnist", gz=True)),
        Layout("idx", _idx("mnist", gz=False)),
    ),
    "fashion_mnist": (
        Layout("npz", ("fashion_mnist/fashion_mnist.npz",)),
        Layout("idx", _idx("fashion_mnist", gz=True)),
        Layout("idx", _idx("fashion_mnist", gz=False)),
    ),
    "binarized_mnist": (
        Layout("amat", tuple(f"binarized_mnist/binarized_mnist_{s}.amat" for s in ("train", "valid", "test"))),
        Layout("npz", ("binarized_mnist/binarized_mnist_seed0.npz",)),
    ),
    "cifar10": (
        Layout("cifar_binary", ("cifar10/cifar-10-binary.tar.gz",)),
        Layout("cifar_binary", ("cifar10/cifar-10-batches-bin",)),
    ),
}

_MNIST_MIRRORS = ("https://storage.googleapis.com/cvdf-datasets/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/")
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_LAROCHELLE = "www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"


def _remote(mirrors: tuple[str, ...], folder: str, fname: str, sha256: str) -> RemoteFile:
    return RemoteFile(tuple(m + fname for m in mirrors), sha256, f"{folder}/{fname}")


#: Official files and their SHA-256, all taken from tensorflow-datasets'
#: ``tensorflow_datasets/url_checksums/{mnist,fashion_mnist,binarized_mnist,cifar10}.txt``.
#: The MNIST mirror of torchvision serves the same bytes (same size, 9912422 for the
#: training images), so the same hash guards both URLs.
REMOTE_FILES: dict[str, tuple[RemoteFile, ...]] = {
    "mnist": (
        _remote(_MNIST_MIRRORS, "mnist", "train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        _remote(_MNIST_MIRRORS, "mnist", "train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        _remote(_MNIST_MIRRORS, "mnist", "t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        _remote(_MNIST_MIRRORS, "mnist", "t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    ),
    "fashion_mnist": (
        _remote((_FASHION,), "fashion_mnist", "train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        _remote((_FASHION,), "fashion_mnist", "train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
        _remote((_FASHION,), "fashion_mnist", "t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        _remote((_FASHION,), "fashion_mnist", "t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
    ),
    "binarized_mnist": (
        _remote(("https://" + _LAROCHELLE, "http://" + _LAROCHELLE), "binarized_mnist", "binarized_mnist_train.amat", "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
        _remote(("https://" + _LAROCHELLE, "http://" + _LAROCHELLE), "binarized_mnist", "binarized_mnist_valid.amat", "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
        _remote(("https://" + _LAROCHELLE, "http://" + _LAROCHELLE), "binarized_mnist", "binarized_mnist_test.amat", "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
    ),
    "cifar10": (
        _remote(("https://www.cs.toronto.edu/~kriz/",), "cifar10", "cifar-10-binary.tar.gz", "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"),
    ),
}  # fmt: skip


def search_dirs(root: str | os.PathLike[str] | None = None) -> list[tuple[Path, str]]:
    """Folders searched for datasets, in order, each with where it came from.

    Parameters
    ----------
    root : str or path-like, optional
        When given, it is the only folder searched.

    Returns
    -------
    list of (Path, str)
        e.g. ``[(Path("/data"), "VAEKIT_DATA"), (Path("~/.cache/vaekit"), "user cache")]``.

    Examples
    --------
    >>> search_dirs("/some/folder")
    [(PosixPath('/some/folder'), 'root argument')]
    """
    if root is not None:
        return [(Path(root).expanduser(), "root argument")]
    dirs = []
    env = os.environ.get("VAEKIT_DATA", "")
    if env:
        dirs.append((Path(env).expanduser(), "VAEKIT_DATA"))
    dirs.append((cache_dir(), "user cache"))
    return dirs


def _check_name(name: str) -> None:
    if name not in LAYOUTS:
        raise ValueError(f"unknown dataset name={name!r}; known: {sorted(LAYOUTS)}")


def _find_in(name: str, folder: Path) -> DatasetFiles | None:
    for layout in LAYOUTS[name]:
        paths = tuple(folder / p for p in layout.paths)
        if all(p.exists() for p in paths):
            return DatasetFiles(name, layout.kind, folder, paths)
    return None


def find_dataset(name: str, root: str | os.PathLike[str] | None = None) -> DatasetFiles | None:
    """Look for a dataset on disk without downloading and without raising.

    Parameters
    ----------
    name : {"mnist", "fashion_mnist", "binarized_mnist", "cifar10"}
    root : str or path-like, optional
        Search only this folder (see the module docstring for the order otherwise).

    Returns
    -------
    DatasetFiles or None
        The first complete layout found, or ``None``.

    Examples
    --------
    >>> find_dataset("mnist", root="/nonexistent") is None
    True
    """
    _check_name(name)
    for folder, _ in search_dirs(root):
        if folder.is_dir() and (found := _find_in(name, folder)) is not None:
            return found
    return None


def _copy_file_url(url: str, output_file: str, pooch_obj: object = None, check_only: bool = False) -> bool | None:
    """pooch downloader for ``file://`` URLs (local mirrors, tests)."""
    source = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))
    if check_only:
        return source.is_file()
    shutil.copyfile(source, output_file)
    return None


def _fetch(remote: RemoteFile, dest: Path) -> None:
    """Download one file into ``dest / remote.path`` (pooch checks its SHA-256)."""
    target = dest / remote.path
    errors = []
    for url in remote.urls:
        downloader = _copy_file_url if url.startswith("file://") else pooch.HTTPDownloader(progressbar=True)
        try:
            pooch.retrieve(
                url,
                known_hash=f"sha256:{remote.sha256}",
                fname=target.name,
                path=target.parent,
                downloader=downloader,
            )
            return
        except ValueError as exc:  # hash mismatch: the bytes are wrong (pooch deleted them); say so
            raise ValueError(f"{url} does not match its pinned SHA-256 {remote.sha256}: {exc}") from exc
        except Exception as exc:  # network errors of requests, ftp, os ...
            errors.append(f"{url}: {type(exc).__name__}: {exc}")
    raise OSError("download failed:\n    " + "\n    ".join(errors))


def _not_found(name: str, dirs: list[tuple[Path, str]], reason: str) -> DatasetNotFoundError:
    layouts = "\n".join(f"    {' + '.join(layout.paths)}" for layout in LAYOUTS[name])
    looked = "\n".join(
        f"    {folder} ({origin}){'' if folder.is_dir() else ' - does not exist'}" for folder, origin in dirs
    )
    return DatasetNotFoundError(
        f"dataset {name!r} not found. Looked in:\n{looked}\nfor any of:\n{layouts}\n{reason}\n"
        f"Fix: export VAEKIT_DATA=/path/to/data (a folder holding {LAYOUTS[name][0].paths[0]}), "
        "pass root=..., or allow download=True with network access. "
        "vaekit.data.Digits (scikit-learn's bundled 8x8 digits) works offline."
    )


def locate(name: str, root: str | os.PathLike[str] | None = None, *, download: bool = True) -> DatasetFiles:
    """Find a dataset's files, downloading the official ones if needed and allowed.

    Parameters
    ----------
    name : {"mnist", "fashion_mnist", "binarized_mnist", "cifar10"}
    root : str or path-like, optional
        Only folder searched; downloads go into it. Must exist.
    download : bool
        Fetch the official files (pinned SHA-256) when nothing is found.

    Returns
    -------
    DatasetFiles

    Raises
    ------
    FileNotFoundError
        ``root`` does not exist.
    DatasetNotFoundError
        Nothing found and downloading is disabled or failed; the message lists each folder
        searched and how to fix it.
    ValueError
        A downloaded file does not match its pinned SHA-256 (it is not kept).
    """
    _check_name(name)
    if root is not None and not Path(root).expanduser().is_dir():
        raise FileNotFoundError(f"root={os.fspath(root)!r} does not exist (or is not a folder)")
    env = os.environ.get("VAEKIT_DATA", "")
    if root is None and env and not Path(env).expanduser().is_dir():
        warnings.warn(f"VAEKIT_DATA={env!r} does not exist; looking in the user cache instead", stacklevel=2)
    found = find_dataset(name, root)
    if found is not None:
        return found
    dirs = search_dirs(root)
    if not download:
        raise _not_found(name, dirs, "Downloading is disabled (download=False).")
    dest = Path(root).expanduser() if root is not None else cache_dir()
    try:
        for remote in REMOTE_FILES[name]:
            _fetch(remote, dest)
    except OSError as exc:
        raise _not_found(name, dirs, f"Downloading into {dest} failed ({exc}).") from exc
    found = _find_in(name, dest)
    if found is None:  # pragma: no cover - REMOTE_FILES always completes a layout
        raise _not_found(name, dirs, f"Downloaded files into {dest} but they do not form a known layout.")
    return found
