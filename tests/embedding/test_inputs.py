"""Inputs of VAEEmbedder: npy directories and memory maps (streamed, same model as in memory) and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import torch

from vaekit.embedding import VAEEmbedder
from vaekit.embedding import inputs
from vaekit.embedding.inputs import NpyDirectorySource, feature_statistics


def tiny(**kw) -> VAEEmbedder:
    args = dict(hidden_layers=(8,), n_flows=1, n_prior_modes=2, max_epochs=2, batch_size=16, random_state=0, device="cpu")
    return VAEEmbedder(**{**args, **kw})


X = np.random.default_rng(0).normal(2.0, 3.0, size=(60, 2, 3)).astype(np.float32)  # examples of shape (2, 3)
FLAT = X.reshape(len(X), -1)


def write_tree(root, arrays) -> None:
    """One file per example in nested folders, named so that sorted relative paths follow the row order."""
    for i, a in enumerate(arrays):
        folder = root / f"part{i // 25}" / f"sub{i // 5 % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / f"{i:03d}.npy", a)


def test_npy_directory_gives_the_same_model_as_in_memory(tmp_path, monkeypatch):
    write_tree(tmp_path, X)
    source = NpyDirectorySource(tmp_path)
    assert len(source) == len(X) and source.n_features == 6
    assert np.array_equal(source.rows(np.arange(len(X))), FLAT)
    seen = []
    real_rows = NpyDirectorySource.rows
    monkeypatch.setattr(NpyDirectorySource, "rows", lambda self, idx: seen.append(len(idx)) or real_rows(self, idx))
    streamed = tiny().fit(tmp_path)
    assert max(seen) <= max(16, inputs.STAT_CHUNK)  # read in batches, never all at once beyond a chunk
    memory = tiny().fit(FLAT)
    assert np.array_equal(streamed.mean_, memory.mean_) and np.array_equal(streamed.scale_, memory.scale_)
    assert np.array_equal(streamed.transform(FLAT), memory.transform(FLAT))
    assert np.array_equal(streamed.transform(str(tmp_path)), memory.transform(FLAT))
    assert [h["val_loss"] for h in streamed.history_] == [h["val_loss"] for h in memory.history_]
    assert not hasattr(streamed, "feature_names_in_") and streamed.n_features_in_ == 6


def test_memmap_and_npy_path_give_the_same_model_as_in_memory(tmp_path):
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    memory = tiny().fit(FLAT).transform(FLAT)
    assert np.array_equal(tiny().fit(mm).transform(mm), memory)
    assert np.array_equal(tiny().fit(tmp_path / "x.npy").transform(FLAT), memory)


def test_feature_statistics_do_not_depend_on_chunking():
    src = inputs.ArraySource(FLAT)
    m1, s1 = feature_statistics(src, chunk=7)
    m2, s2 = feature_statistics(src, chunk=1000)
    assert np.allclose(m1, FLAT.mean(0), atol=1e-6) and np.allclose(s1, FLAT.astype(np.float64).std(0), atol=1e-6)
    assert np.allclose(m1, m2, atol=1e-12) and np.allclose(s1, s2, atol=1e-12)


def test_tensor_and_list_inputs():
    est = tiny().fit(torch.as_tensor(FLAT))
    assert np.array_equal(est.transform(FLAT.tolist()), est.transform(torch.as_tensor(FLAT)))


@pytest.mark.parametrize("bad, error, match", [
    (scipy.sparse.csr_matrix(FLAT), TypeError, "sparse csr_matrix of shape \\(60, 6\\); VAEEmbedder needs dense data"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, "X holds strings"),
    (np.array([[1.0, "b"], [2.0, "d"]], dtype=object), TypeError, "numeric features"),
    (np.where(np.arange(6) == 2, np.nan, FLAT), ValueError, "NaN"),
    (np.where(np.arange(6) == 2, np.inf, FLAT), ValueError, "infinity"),
    (np.zeros((0, 6)), ValueError, "0 sample"),
    (np.arange(6.0), ValueError, "1D"),
    (X, ValueError, r"expects a 2-D array .* X.reshape\(len\(X\), -1\)"),
    (np.zeros((3, 2)) + 1j, ValueError, "[Cc]omplex"),
])
def test_bad_in_memory_input(bad, error, match):
    est = tiny()
    with pytest.raises(error, match=match):
        est.fit(bad)
    assert not hasattr(est, "model_")


def test_wrong_feature_count_and_bad_input_at_transform(tmp_path):
    est = tiny().fit(FLAT)
    with pytest.raises(ValueError, match="X has 5 features, but VAEEmbedder is expecting 6 features"):
        est.transform(FLAT[:, :5])
    write_tree(tmp_path, X[:4, :1])  # examples of shape (1, 3)
    with pytest.raises(ValueError, match="X has 3 features, but VAEEmbedder is expecting 6 features"):
        est.transform(tmp_path)
    with pytest.raises(ValueError, match="NaN"):
        est.transform(np.full((2, 6), np.nan))
    with pytest.raises(TypeError, match="sparse"):
        est.transform(scipy.sparse.csr_matrix(FLAT))


def test_bad_npy_directories(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no .npy files"):
        tiny().fit(empty)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tiny().fit(tmp_path / "missing")
    mixed = tmp_path / "mixed"
    write_tree(mixed, X[:5])
    np.save(mixed / "zz.npy", np.zeros(4))
    with pytest.raises(ValueError, match=r"zz.npy holds an array of shape \(4,\) but the first file"):
        tiny().fit(mixed)
    nan = tmp_path / "nan"
    write_tree(nan, X[:5])
    np.save(nan / "zz.npy", np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="contains NaN or infinity \\(first at example 5"):
        tiny().fit(nan)
    strings = tmp_path / "strings"
    strings.mkdir()
    np.save(strings / "a.npy", np.array(["x", "y"]))
    with pytest.raises(TypeError, match="holds strings"):
        tiny().fit(strings)
    objects = tmp_path / "objects"
    objects.mkdir()
    np.save(objects / "a.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="no pickles are loaded"):
        tiny().fit(objects)


def test_bad_npy_files(tmp_path):
    np.save(tmp_path / "one.npy", np.arange(5.0))
    with pytest.raises(ValueError, match=r"has shape \(5,\): expected 2 or more dimensions"):
        tiny().fit(tmp_path / "one.npy")
    (tmp_path / "x.csv").write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="must be a .npy file or a directory"):
        tiny().fit(tmp_path / "x.csv")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match="found an empty array"):
        tiny().fit(np.load(tmp_path / "empty.npy", mmap_mode="r"))
