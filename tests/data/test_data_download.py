"""Where files are found (root > VAEKIT_DATA > user cache) and the pooch download path
(served from file:// URLs: no network in tests)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import vaekit.data.download as dl
from vaekit.data import MNIST, DatasetNotFoundError, cache_dir, find_dataset, locate, search_dirs


def _n_train(root: str | None = None) -> int:
    data = MNIST(root, val_size=0, download=False)
    data.setup()
    return len(data.train)


def test_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writers: SimpleNamespace) -> None:
    # three folders with distinguishable MNIST copies (11, 12 and 13 training images)
    for name, n in (("arg", 11), ("env", 12), ("cache", 13)):
        writers.make_fake_mnist(tmp_path / name, n_train=n, n_test=2)
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    assert _n_train() == 13  # only the cache
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "env"))
    assert _n_train() == 12  # VAEKIT_DATA before the cache
    assert _n_train(str(tmp_path / "arg")) == 11  # root before everything
    assert [origin for _, origin in search_dirs()] == ["VAEKIT_DATA", "user cache"]
    assert search_dirs(tmp_path / "arg") == [(tmp_path / "arg", "root argument")]


def test_env_folder_without_the_dataset_falls_through_to_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writers: SimpleNamespace
) -> None:
    writers.make_fake_mnist(tmp_path / "cache", n_train=13, n_test=2)
    writers.make_fake_mnist(tmp_path / "env", n_train=12, n_test=2, folder="fashion_mnist")
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "env"))
    assert _n_train() == 13
    assert find_dataset("fashion_mnist").root == tmp_path / "env"
    monkeypatch.setenv("VAEKIT_DATA", "")  # empty means unset (what the Makefile exports without data)
    assert [origin for _, origin in search_dirs()] == ["user cache"]


def test_root_is_exclusive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writers: SimpleNamespace) -> None:
    writers.make_fake_mnist(tmp_path / "cache", n_train=13, n_test=2)
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "empty").mkdir()
    assert find_dataset("mnist", tmp_path / "empty") is None
    with pytest.raises(DatasetNotFoundError, match="root argument"):
        _n_train(str(tmp_path / "empty"))


def test_missing_vaekit_data_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writers: SimpleNamespace) -> None:
    writers.make_fake_mnist(tmp_path / "cache", n_train=13, n_test=2)
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path / "typo"))
    with pytest.warns(UserWarning, match="VAEKIT_DATA=.*typo' does not exist"):
        assert _n_train() == 13


def test_find_dataset_never_raises_for_missing_data(shared_data: Path) -> None:
    assert find_dataset("cifar10", shared_data) is None
    found = find_dataset("binarized_mnist", shared_data)
    assert found is not None and found.kind == "npz" and found.paths[0].is_file()
    with pytest.raises(ValueError, match=r"unknown dataset name='svhn'; known: \['binarized_mnist'"):
        find_dataset("svhn")


def test_not_found_message_lists_paths_and_fixes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAEKIT_DATA", str(tmp_path))
    data = MNIST(download=False)
    with pytest.raises(DatasetNotFoundError) as info:
        data.setup()
    msg = str(info.value)
    assert f"{tmp_path} (VAEKIT_DATA)" in msg
    assert f"{tmp_path / 'user-cache'} (user cache) - does not exist" in msg
    assert "mnist/mnist.npz" in msg and "download=False" in msg
    assert "export VAEKIT_DATA=" in msg and "vaekit.data.Digits" in msg
    assert isinstance(info.value, FileNotFoundError) and not data.is_setup


# ------------------------------------------------------------------ downloads (pooch)


@pytest.fixture
def served_mnist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writers: SimpleNamespace) -> SimpleNamespace:
    """Fake official MNIST files served from file:// URLs, with their true SHA-256 pinned."""
    fake = writers.make_fake_mnist(tmp_path / "server", n_train=14, n_test=3)
    remotes = []
    for remote in dl.REMOTE_FILES["mnist"]:
        source = tmp_path / "server" / remote.path
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        remotes.append(dl.RemoteFile((source.as_uri(),), digest, remote.path))
    monkeypatch.setitem(dl.REMOTE_FILES, "mnist", tuple(remotes))
    return SimpleNamespace(fake=fake, remotes=remotes)


def test_download_into_cache_then_reuse(served_mnist: SimpleNamespace, tmp_path: Path) -> None:
    data = MNIST(val_size=4)
    data.setup()
    cache = tmp_path / "user-cache"
    assert data.files.root == cache and data.files.kind == "idx"
    assert (cache / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert torch.equal(data.test * 255, torch.from_numpy(served_mnist.fake.x_test[:, None]).float())
    # a second load finds the cached files even with downloads disabled
    assert _n_train() == 14


def test_download_into_root_when_given(served_mnist: SimpleNamespace, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    found = locate("mnist", tmp_path / "mine")
    assert found.root == tmp_path / "mine" and len(found.paths) == 4
    assert not (tmp_path / "user-cache").exists()


def test_wrong_hash_is_rejected_and_not_kept(
    served_mnist: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = served_mnist.remotes[0]
    bad = dl.RemoteFile(first.urls, "0" * 64, first.path)
    monkeypatch.setitem(dl.REMOTE_FILES, "mnist", (bad, *served_mnist.remotes[1:]))
    data = MNIST(val_size=4)
    with pytest.raises(ValueError, match="(?i)hash"):
        data.setup()
    assert not (tmp_path / "user-cache" / first.path).exists()
    assert not data.is_setup and data.train is None


def test_mirrors_are_tried_in_order(served_mnist: SimpleNamespace, tmp_path: Path, monkeypatch) -> None:
    dead = (tmp_path / "no-such-mirror" / "x.gz").as_uri()
    remotes = tuple(dl.RemoteFile((dead, *r.urls), r.sha256, r.path) for r in served_mnist.remotes)
    monkeypatch.setitem(dl.REMOTE_FILES, "mnist", remotes)
    assert locate("mnist").kind == "idx"


def test_failed_download_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = dl.RemoteFile(((tmp_path / "offline" / "f.gz").as_uri(),), "0" * 64, "mnist/train-images-idx3-ubyte.gz")
    monkeypatch.setitem(dl.REMOTE_FILES, "mnist", (dead,))
    with pytest.raises(DatasetNotFoundError, match=r"(?s)user cache.*Downloading into .* failed.*offline/f.gz"):
        MNIST().setup()


def test_pinned_hashes_are_sha256_and_complete_a_layout() -> None:
    for name, remotes in dl.REMOTE_FILES.items():
        assert all(re.fullmatch(r"[0-9a-f]{64}", r.sha256) for r in remotes), name
        assert all(url.startswith(("https://", "http://")) for r in remotes for url in r.urls), name
        layouts = [set(layout.paths) for layout in dl.LAYOUTS[name]]
        assert {r.path for r in remotes} in layouts, name
    assert set(dl.REMOTE_FILES) == set(dl.LAYOUTS)
