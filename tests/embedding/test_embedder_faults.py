"""Faults and hostile files for VAEEmbedder: every input kind refuses NaN the same way; load checks its files first.

Part of issue 12 (trust and faults). Inputs: in memory, memory-mapped, a ``.npy`` path, a
folder of ``.npy`` files and ``vaekit embed`` all go through one check that names the input
and the first bad example and feature. Saved embedders: ``embedder.json`` is validated
(types, ranges, the model's size against a budget, computed without allocating) and
``model.safetensors`` is verified (recorded SHA-256, header, values) before the model is built.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import tracemalloc

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from vaekit.cli import main
from vaekit.embedding import VAEEmbedder, inputs
from vaekit.embedding._model import build_vae, state_size

X = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32) * [1, 2, 3, 1, 2, 3] + 5
BAD_ROW, BAD_COL = 17, 3


def tiny(**kw) -> VAEEmbedder:
    args = dict(hidden_layers=(8,), n_flows=1, n_prior_modes=2, max_epochs=2, batch_size=64, random_state=0,
                device="cpu", neighbor_weight=0.0)
    return VAEEmbedder(**{**args, **kw})


@pytest.fixture(scope="module")
def fitted() -> VAEEmbedder:
    return tiny().fit(X)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    return fitted.save(tmp_path_factory.mktemp("saved") / "model")


@pytest.fixture
def model_dir(saved, tmp_path):
    """A fresh copy of the saved embedder, free to damage."""
    return shutil.copytree(saved, tmp_path / "model")


def with_bad_value(value: float = np.nan, shape: tuple[int, ...] = X.shape) -> np.ndarray:
    a = X.copy()[:, :shape[1]]
    a[BAD_ROW, BAD_COL] = value
    return a


def write_folder(root, rows) -> None:
    root.mkdir()
    for i, row in enumerate(rows):
        np.save(root / f"{i:04d}.npy", row)


def as_kind(kind: str, a: np.ndarray, tmp_path):
    """``a`` as the given kind of input, and how messages name it."""
    if kind == "memory":
        return a, "X"
    np.save(tmp_path / "new.npy", a)
    if kind == "memmap":
        return np.load(tmp_path / "new.npy", mmap_mode="r"), f"X (memory-mapped array of {tmp_path / 'new.npy'})"
    if kind == "npy path":
        return str(tmp_path / "new.npy"), str(tmp_path / "new.npy")
    write_folder(tmp_path / "rows", a)
    return tmp_path / "rows", f"the .npy files under {str(tmp_path / 'rows')!r}"


# --------------------------------------------------------------------------- inputs: one check for every kind
@pytest.mark.parametrize("kind", ["memory", "memmap", "npy path", "folder"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_value_refused_the_same_way_by_every_input_kind(fitted, tmp_path, kind, value):
    data, name = as_kind(kind, with_bad_value(value), tmp_path)
    where = f"example {BAD_ROW}" + (f" ({tmp_path / 'rows' / f'{BAD_ROW:04d}.npy'})" if kind == "folder" else "")
    expected = f"{name} contains NaN or infinity (first at {where}, feature {BAD_COL}: {float(value)})"
    for method in (fitted.transform, fitted.score_samples):
        with pytest.raises(ValueError) as info:
            method(data)
        assert str(info.value).startswith(expected), str(info.value)


def test_value_beyond_float32_in_a_memmap_is_refused(fitted, tmp_path):
    np.save(tmp_path / "big.npy", with_bad_value(1e300).astype(np.float64))  # becomes inf in float32
    with pytest.raises(ValueError, match=rf"big.npy\) contains NaN or infinity \(first at example {BAD_ROW}, feature "
                                         rf"{BAD_COL}: inf\) \(values beyond float32's range"):
        fitted.transform(np.load(tmp_path / "big.npy", mmap_mode="r"))


def test_memmap_is_checked_in_chunks_up_to_its_last_row(fitted, tmp_path, monkeypatch):
    n = inputs.STAT_CHUNK + 900
    a = np.tile(X, (n // len(X) + 1, 1))[:n]
    a[-1, 0] = np.nan  # the very last value
    np.save(tmp_path / "long.npy", a)
    reads = []
    real_rows = inputs.ArraySource.rows
    monkeypatch.setattr(inputs.ArraySource, "rows", lambda self, idx: reads.append(len(idx)) or real_rows(self, idx))
    with pytest.raises(ValueError, match=rf"first at example {n - 1}, feature 0: nan"):
        fitted.transform(np.load(tmp_path / "long.npy", mmap_mode="r"))
    assert reads and max(reads) <= inputs.STAT_CHUNK  # never the whole memmap at once


@pytest.mark.parametrize("kind", ["memmap", "npy path", "folder"])
def test_wrong_feature_count_names_the_input(fitted, tmp_path, kind):
    data, name = as_kind(kind, X[:, :5], tmp_path)
    with pytest.raises(ValueError, match=re.escape(f"X has 5 features, but VAEEmbedder is expecting 6 features as "
                                                   f"input ({name})")):
        fitted.transform(data)


def test_refused_streamed_refit_leaves_the_fitted_embedder_intact(fitted, tmp_path):
    est = tiny().fit(X)
    Z = est.transform(X)
    np.save(tmp_path / "bad.npy", with_bad_value(np.nan, (len(X), 5)))
    for bad in (np.load(tmp_path / "bad.npy", mmap_mode="r"), tmp_path / "bad.npy"):
        with pytest.raises(ValueError, match="contains NaN"):
            est.fit(bad)
        assert est.n_features_in_ == 6
        assert np.array_equal(est.transform(X), Z)


# --------------------------------------------------------------------------- the CLI
def cli(args, capsys):
    code = main(["embed", *map(str, args)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".npz", ""])
def test_cli_with_model_refuses_nan_naming_the_file(saved, tmp_path, capsys, suffix):
    bad = with_bad_value()
    path = tmp_path / f"new{suffix}"
    if suffix == ".npy":
        np.save(path, bad)
    elif suffix == ".csv":
        np.savetxt(path, bad, delimiter=",")
    elif suffix == ".npz":
        np.savez(path, x=bad)
    else:
        write_folder(path, bad)
    code, err = cli(["--model", saved, path, "--out", tmp_path / "z.npy"], capsys)
    assert code != 0
    assert str(path) in err and f"contains NaN or infinity (first at example {BAD_ROW}" in err, err
    assert not (tmp_path / "z.npy").exists()


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_cli_with_model_refuses_wrong_feature_count_naming_the_file(saved, tmp_path, capsys, suffix):
    path = tmp_path / f"new{suffix}"
    np.save(path, X[:, :4]) if suffix == ".npy" else np.savetxt(path, X[:, :4], delimiter=",")
    code, err = cli(["--model", saved, path, "--out", tmp_path / "z.npy"], capsys)
    assert code != 0 and "X has 4 features, but VAEEmbedder is expecting 6 features" in err and str(path) in err, err
    assert not (tmp_path / "z.npy").exists()


def test_cli_fit_refuses_nan_in_a_csv_naming_it(tmp_path, capsys):
    np.savetxt(tmp_path / "x.csv", with_bad_value(), delimiter=",")
    code, err = cli([tmp_path / "x.csv", "--out", tmp_path / "z.npy", "--max-epochs", "1", "--quiet",
                     "--save", tmp_path / "m"], capsys)
    assert code != 0 and f"{tmp_path / 'x.csv'} contains NaN or infinity (first at example {BAD_ROW}" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]


# --------------------------------------------------------------------------- embedder.json
def edit_config(model_dir, edit) -> None:
    config = json.loads((model_dir / "embedder.json").read_text())
    edit(config)
    (model_dir / "embedder.json").write_text(json.dumps(config))


def set_key(dotted: str, value):
    def edit(config):
        section, key = dotted.split(".")
        config[section][key] = value
    return edit


def test_huge_hidden_layers_refused_at_once_without_allocating(model_dir):
    edit_config(model_dir, set_key("params.hidden_layers", [200000, 200000]))
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=r"embedder.json describes a model of 80,030,000,859 numbers .* more "
                                             r"than max_parameters=2,147,483,648; mostly because of "
                                             r"params.hidden_layers = \[200000, 200000\]"):
            VAEEmbedder.load(model_dir)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < 1.0 and peak < 20 * 2**20


@pytest.mark.parametrize("dotted, value, match", [
    ("params.hidden_layers", [10**12], r"params.hidden_layers\[0\] = 1000000000000 describes a model of more than "
                                       "max_parameters"),
    ("fitted.n_features_in_", 10**400, "fitted.n_features_in_ = 1000000000000"),
    ("params.n_components", 5 * 10**5, "mostly because of params.n_components = 500000"),
    ("params.n_prior_modes", 10**9, "mostly because of params.n_prior_modes = 1000000000"),
    ("params.n_flows", 100_000, "params.n_flows asks for 100000 layers, more than max_layers=1024"),
    ("params.hidden_layers", [1] * 5000, "params.hidden_layers asks for 5000 layers, more than max_layers=1024"),
], ids=["huge layer", "huge n_features_in_", "huge n_components", "huge n_prior_modes", "deep flow", "deep mlp"])
def test_models_above_the_budget_are_refused_quickly(model_dir, dotted, value, match):
    edit_config(model_dir, set_key(dotted, value))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        VAEEmbedder.load(model_dir)
    assert time.perf_counter() - start < 1.0


def test_budget_is_an_argument(model_dir, fitted):
    with pytest.raises(ValueError, match="more than max_parameters=100; mostly because of"):
        VAEEmbedder.load(model_dir, max_parameters=100)
    n = state_size(6, 2, (8,), "iaf", 1, "mixture", 2, "gaussian")
    assert np.array_equal(VAEEmbedder.load(model_dir, max_parameters=n).transform(X), fitted.transform(X))


@pytest.mark.parametrize("dotted, value, match", [
    ("params.hidden_layers", [-1], "hidden_layers must be None or a non-empty sequence of positive ints, got \\(-1,\\)"),
    ("params.hidden_layers", [0, 8], "hidden_layers must be None or a non-empty sequence of positive ints"),
    ("params.hidden_layers", ["8"], "hidden_layers must be None or a non-empty sequence of positive ints"),
    ("params.hidden_layers", [8.0], "hidden_layers must be None or a non-empty sequence of positive ints"),
    ("params.hidden_layers", "8", "'hidden_layers' parameter of VAEEmbedder must be an array-like or None"),
    ("params.n_components", 0, "'n_components' parameter of VAEEmbedder must be an int in the range \\[1, inf\\)"),
    ("params.n_flows", -2, "'n_flows' parameter of VAEEmbedder must be an int in the range \\[1, inf\\)"),
    ("params.n_prior_modes", "3", "'n_prior_modes' parameter of VAEEmbedder must be an int"),
    ("params.activation", "swish!", "'activation' parameter of VAEEmbedder must be a str among"),
    ("params.posterior", "maf", "'posterior' parameter of VAEEmbedder must be a str among"),
    ("params.dropout", 1.5, "'dropout' parameter of VAEEmbedder must be a float in the range \\[0.0, 1.0\\)"),
    ("fitted.n_features_in_", 0, "fitted.n_features_in_ must be an int >= 1, got 0"),
    ("fitted.n_features_in_", "6", "fitted.n_features_in_ must be an int >= 1, got '6'"),
    ("fitted.n_features_in_", 6.5, "fitted.n_features_in_ must be an int >= 1, got 6.5"),
    ("fitted.n_iter_", -1, "fitted.n_iter_ must be an int >= 0"),
    ("fitted.loop_lr", 0, "fitted.loop_lr must be a finite number > 0"),
    ("fitted.history_", [{"epoch": "one"}], "fitted.history_\\[0\\].epoch must be a number or null"),
    ("fitted.feature_names_in_", ["a", "b"], "fitted.feature_names_in_ must be null or a list of 6 strings"),
])
def test_bad_values_in_embedder_json_name_the_file_and_key(model_dir, dotted, value, match):
    edit_config(model_dir, set_key(dotted, value))
    with pytest.raises(ValueError, match=match) as info:
        VAEEmbedder.load(model_dir)
    assert str(model_dir / "embedder.json") in str(info.value)


@pytest.mark.parametrize("content, match", [
    (b"\x89\xff\x00garbage\xfe", "is not valid JSON: not UTF-8 text"),
    (b"[1, 2, 3]", "holds a JSON list, not the object a VAEEmbedder save writes"),
    (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON"),
    (b'{"format": ' + b"9" * 5000 + b"}", "is not valid JSON: Exceeds the limit"),
    (b"{not json", "is not valid JSON: Expecting property name"),
], ids=["binary", "a list", "deeply nested", "huge integer", "broken"])
def test_embedder_json_that_is_not_a_json_object(model_dir, content, match):
    (model_dir / "embedder.json").write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        VAEEmbedder.load(model_dir)
    assert str(model_dir / "embedder.json") in str(info.value)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.pop("params"), "'params' must be a JSON object, got None"),
    (lambda c: c["params"].pop("n_flows"), r"params lacks \['n_flows'\], which fix the model's shape"),
    (lambda c: c["fitted"].pop("n_features_in_"), "fitted.n_features_in_ is missing"),
    (lambda c: c.update(sha256={"model.safetensors": "abc"}), "'sha256' must map file names to 64 hex digits"),
])
def test_missing_or_malformed_sections(model_dir, edit, match):
    edit_config(model_dir, edit)
    with pytest.raises(ValueError, match=match):
        VAEEmbedder.load(model_dir)


# --------------------------------------------------------------------------- model.safetensors
def rewrite_weights(model_dir, change, record_hash: bool = True) -> None:
    """Change the tensors and save them again; record the new hash (a consistent save of bad values) or drop it."""
    tensors = load_file(str(model_dir / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(model_dir / "model.safetensors"))
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()
    edit_config(model_dir, lambda c: c.update(sha256={"model.safetensors": digest}) if record_hash else c.pop("sha256"))


def test_save_records_the_weights_sha256_and_load_verifies_it(saved, fitted, model_dir):
    config = json.loads((saved / "embedder.json").read_text())
    assert config["sha256"] == {"model.safetensors": hashlib.sha256((saved / "model.safetensors").read_bytes()).hexdigest()}
    data = bytearray((model_dir / "model.safetensors").read_bytes())
    data[-5] ^= 0x01  # one flipped mantissa bit in the last weights: no parser would notice
    (model_dir / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors does not match the SHA-256 recorded in embedder.json"):
        VAEEmbedder.load(model_dir)
    shutil.copy(saved / "model.safetensors", model_dir / "model.safetensors")
    edit_config(model_dir, lambda c: c.pop("sha256"))  # a save from before hashes were recorded still loads
    assert np.array_equal(VAEEmbedder.load(model_dir).transform(X), fitted.transform(X))


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "empty"])
@pytest.mark.parametrize("hashed", [True, False], ids=["hash recorded", "old save"])
def test_damaged_weights_file_names_it(model_dir, damage, hashed):
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"random bytes": os.urandom(len(data)), "truncated": data[:len(data) // 2], "empty": b""}[damage])
    if not hashed:
        edit_config(model_dir, lambda c: c.pop("sha256"))
    match = ("does not match the SHA-256 recorded" if hashed else "cannot read .* as a safetensors file, it is damaged")
    with pytest.raises(ValueError, match=match) as info:
        VAEEmbedder.load(model_dir)
    assert str(weights) in str(info.value)


def test_missing_weights_file(model_dir):
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        VAEEmbedder.load(model_dir)


@pytest.mark.parametrize("value, match", [
    (0.0, r"tensor 'normalization.scale' has 0.0 at feature 2; every entry must be finite and > 0"),
    (-1.0, r"tensor 'normalization.scale' has -1.0 at feature 2"),
    (np.nan, r"tensor 'normalization.scale' has nan at feature 2"),
    (np.inf, r"tensor 'normalization.scale' has inf at feature 2"),
])
def test_bad_normalization_scale(model_dir, value, match):
    rewrite_weights(model_dir, lambda t: t["normalization.scale"].__setitem__(2, value))
    with pytest.raises(ValueError, match=match):
        VAEEmbedder.load(model_dir)


@pytest.mark.parametrize("change, match", [
    (lambda t: t.__setitem__("normalization.scale", torch.ones(5, dtype=torch.float64)),
     r"tensor 'normalization.scale' has shape \(5,\); fitted.n_features_in_=6 in embedder.json needs shape \(6,\)"),
    (lambda t: t.pop("normalization.mean"), r"tensor 'normalization.mean' is missing"),
    (lambda t: t["normalization.mean"].__setitem__(0, np.nan), r"tensor 'normalization.mean' has nan at feature 0"),
    (lambda t: t.__setitem__("model.encoder.0.weight", torch.zeros(9, 6)),
     r"tensor 'model.encoder.0.weight' has shape \(9, 6\), the model embedder.json describes needs \(8, 6\)"),
    (lambda t: t.pop("model.decoder.0.bias"), r"tensor 'model.decoder.0.bias' is missing"),
    (lambda t: t.__setitem__("model.extra", torch.zeros(10**6)), r"holds tensors the model does not have: \['model.extra'\]"),
    (lambda t: t["model.encoder.0.weight"].__setitem__((0, 0), float("inf")),
     r"tensor 'model.encoder.0.weight' holds NaN or infinity"),
    (lambda t: t.__setitem__("model.encoder.0.bias", t["model.encoder.0.bias"].double()),
     r"tensor 'model.encoder.0.bias' has dtype torch.float64, the model needs torch.float32"),
])
def test_weights_that_do_not_fit_the_configuration_name_the_tensor(model_dir, change, match):
    rewrite_weights(model_dir, change)
    with pytest.raises(ValueError, match=match) as info:
        VAEEmbedder.load(model_dir)
    assert str(model_dir / "model.safetensors") in str(info.value)


def test_damaged_optimizer_state_of_a_logdir_checkpoint(tmp_path):
    logdir = tmp_path / "run"
    tiny(logdir=logdir, max_epochs=1).fit(X)
    assert set(json.loads((logdir / "embedder.json").read_text())["sha256"]) == {"model.safetensors", "optimizer.pt"}
    data = bytearray((logdir / "optimizer.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (logdir / "optimizer.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="optimizer.pt does not match the SHA-256 recorded"):
        tiny(logdir=logdir, warm_start=True).fit(X)


# --------------------------------------------------------------------------- the size arithmetic is exact
@pytest.mark.parametrize("posterior, prior, likelihood, hidden, n_flows", [
    ("iaf", "mixture", "gaussian", (8,), 1),
    ("iaf", "standard", "gaussian_predicted", (16, 8, 4), 3),
    ("gaussian", "mixture", "bernoulli", (5, 7), 1),
    ("gaussian", "standard", "gaussian", (3,), 2),
])
def test_state_size_counts_exactly_what_build_vae_allocates(posterior, prior, likelihood, hidden, n_flows):
    vae = build_vae(11, 3, hidden, posterior, n_flows, prior, 4, likelihood, "elu", 0.2)
    assert state_size(11, 3, hidden, posterior, n_flows, prior, 4, likelihood) == sum(
        v.numel() for v in vae.state_dict().values())


# --------------------------------------------------------------------------- transform's reference
@pytest.fixture(scope="module")
def saved_with_term(tmp_path_factory):
    est = tiny(neighbor_weight=0.4).fit(X)
    return est, est.save(tmp_path_factory.mktemp("term") / "model")


@pytest.fixture
def term_dir(saved_with_term, tmp_path):
    return shutil.copytree(saved_with_term[1], tmp_path / "model")


def test_the_reference_of_transform_is_saved_and_loaded(saved_with_term):
    est, path = saved_with_term
    config = json.loads((path / "embedder.json").read_text())
    assert config["fitted"]["reference"] == {"n_rows": 200, "n_coords": 6, "seed": est._layout.seed, "loss": "tsne",
                                             "n_neighbors": 15, "moved": True, "graph": "fuzzy"}
    loaded = VAEEmbedder.load(path)
    assert np.array_equal(loaded.embedding_, est.embedding_)
    assert np.array_equal(loaded.transform(X), est.transform(X))


@pytest.mark.parametrize("change, match", [
    (lambda t: t.__setitem__("reference.coords", torch.zeros(199, 6)),
     r"tensor 'reference.coords' has shape \(199, 6\), the model embedder.json describes needs \(200, 6\)"),
    (lambda t: t.pop("reference.embedding"), r"tensor 'reference.embedding' is missing"),
    (lambda t: t["reference.embedding"].__setitem__((3, 1), float("nan")), r"tensor 'reference.embedding' holds NaN"),
    (lambda t: t.__setitem__("reference.projection", t["reference.projection"].float()),
     r"tensor 'reference.projection' has dtype torch.float32, the model needs torch.float64"),
])
def test_bad_reference_tensors_name_the_tensor(term_dir, change, match):
    rewrite_weights(term_dir, change)
    with pytest.raises(ValueError, match=match) as info:
        VAEEmbedder.load(term_dir)
    assert str(term_dir / "model.safetensors") in str(info.value)


GOOD = {"n_rows": 200, "n_coords": 6, "seed": 1, "loss": "tsne", "n_neighbors": 15}


@pytest.mark.parametrize("value, match", [
    ({"n_rows": 200}, "fitted.reference must be null or an object with the keys loss, n_coords, n_neighbors, n_rows, "
                      "seed"),
    (dict(GOOD, n_rows=0), "fitted.reference.n_rows must be an int >= 1"),
    (dict(GOOD, moved=1), "fitted.reference.moved must be true or false, got 1 \\(int\\)"),
    (dict(GOOD, moved=False, extra=0), r"fitted.reference must be null or an object with the keys .*; missing: none, "
                                       r"unexpected: \['extra'\]"),
    ({k: v for k, v in GOOD.items() if k != "seed"}, r"missing: \['seed'\], unexpected: none"),
    (dict(GOOD, seed=-1), "fitted.reference.seed must be an int >= 0"),
    (dict(GOOD, seed=2**64), r"fitted.reference.seed = 18446744073709551616 is above 2\*\*31 - 1"),
    (dict(GOOD, loss="tsen"), "fitted.reference.loss must be one of"),
    (dict(GOOD, n_neighbors=201), "fitted.reference.n_neighbors = 201 is more than fitted.reference.n_rows = 200"),
    (dict(GOOD, n_coords=7), "fitted.reference.n_coords = 7 is more than fitted.n_features_in_ = 6"),
    (dict(GOOD, n_rows=10**12), r"the model and fitted.reference \(n_rows = 1000000000000, n_coords = 6: "
                                r"8,000,000,000,036 numbers\) describe [0-9,]+ numbers, more than max_parameters"),
])
def test_bad_reference_entry_in_embedder_json(term_dir, value, match):
    edit_config(term_dir, set_key("fitted.reference", value))
    with pytest.raises(ValueError, match=match) as info:
        VAEEmbedder.load(term_dir)
    assert str(term_dir / "embedder.json") in str(info.value)


def test_reference_tensors_without_their_entry_are_refused(term_dir):
    edit_config(term_dir, set_key("fitted.reference", None))
    with pytest.raises(ValueError, match=r"holds tensors the model does not have: \['reference.coords'"):
        VAEEmbedder.load(term_dir)


def test_a_save_from_before_the_reference_loads_and_transforms_with_the_encoder(saved_with_term, term_dir):
    rewrite_weights(term_dir, lambda t: [t.pop(k) for k in ("reference.projection", "reference.coords",
                                                            "reference.embedding")])
    edit_config(term_dir, lambda c: c["fitted"].pop("reference"))
    loaded = VAEEmbedder.load(term_dir)
    assert not hasattr(loaded, "embedding_")
    encoder = VAEEmbedder.load(saved_with_term[1]).set_params(transform_steps=0)
    assert np.array_equal(loaded.transform(X), encoder.transform(X))


def test_the_layout_and_the_model_share_one_budget(saved_with_term):
    from vaekit.embedding._fitting import model_size

    est, path = saved_with_term
    model = model_size(est, 6)
    with pytest.raises(ValueError, match="the model and fitted.reference"):
        VAEEmbedder.load(path, max_parameters=model + 10)  # the model alone fits, not with its layout
    layout = 200 * (6 + 2) + 6 * 6
    assert VAEEmbedder.load(path, max_parameters=model + layout)._has_layout()


# --------------------------------------------------------------------------- automatic sizes bounded by the rows
WIDE = np.random.default_rng(1).normal(size=(90, 400)).astype(np.float32)  # 81 training rows of 400 features


@pytest.fixture(scope="module")
def saved_wide(tmp_path_factory):
    est = tiny(hidden_layers=None, max_epochs=1).fit(WIDE)
    return est, est.save(tmp_path_factory.mktemp("wide") / "model")


def test_few_rows_bound_the_automatic_hidden_sizes_and_a_load_rebuilds_them(saved_wide):
    est, path = saved_wide
    # 400 features alone ask for 128 (8 * sqrt(400) = 160); 81 training rows allow 32 (the largest power of two
    # up to 40.5, at least 32)
    assert est._width_rows == 81 and est.model_.encoder[0].out_features == 32
    assert json.loads((path / "embedder.json").read_text())["fitted"]["width_rows"] == 81
    loaded = VAEEmbedder.load(path)
    assert loaded.model_.encoder[0].out_features == 32
    assert np.array_equal(loaded.transform(WIDE[:10]), est.transform(WIDE[:10]))
    more = tiny(hidden_layers=None, max_epochs=1).fit(np.tile(WIDE, (4, 1)))  # 324 training rows: 128 wide
    assert more.model_.encoder[0].out_features == 128


def test_a_save_from_before_the_row_bound_builds_the_sizes_of_the_features(saved_wide, tmp_path):
    path = shutil.copytree(saved_wide[1], tmp_path / "model")
    edit_config(path, lambda c: c["fitted"].pop("width_rows"))
    # these weights were built for 81 rows; without the entry load expects the sizes of 400 features (128) and
    # names the first tensor that does not fit, before allocating the model's values
    with pytest.raises(ValueError, match=r"'model\.encoder\.0\.weight' has shape \(32, 400\).*needs \(128, 400\)"):
        VAEEmbedder.load(path)
    older = tiny(hidden_layers=None, max_epochs=1).fit(X)  # 6 features: 32 wide with any number of rows
    old_path = older.save(tmp_path / "older")
    edit_config(old_path, lambda c: c["fitted"].pop("width_rows"))
    assert np.array_equal(VAEEmbedder.load(old_path).transform(X[:5]), older.transform(X[:5]))


@pytest.mark.parametrize("value", [0, -3, 2.5, "81", True])
def test_a_bad_width_rows_entry_is_refused(saved_wide, tmp_path, value):
    path = shutil.copytree(saved_wide[1], tmp_path / "model")
    edit_config(path, set_key("fitted.width_rows", value))
    with pytest.raises(ValueError, match="fitted.width_rows") as info:
        VAEEmbedder.load(path)
    assert str(path / "embedder.json") in str(info.value)


def test_a_logdir_continuation_keeps_the_row_bound_sizes(tmp_path):
    logdir = tmp_path / "run"
    tiny(hidden_layers=None, max_epochs=1, logdir=logdir).fit(WIDE)
    more = tiny(hidden_layers=None, max_epochs=2, logdir=logdir, warm_start=True).fit(WIDE)
    assert more._width_rows == 81 and more.n_iter_ == 3
    loaded = VAEEmbedder.load(more.save(tmp_path / "again"))
    assert loaded.model_.encoder[0].out_features == 32


def test_a_warm_start_on_more_rows_keeps_the_sizes_it_was_built_with(tmp_path):
    est = tiny(hidden_layers=None, max_epochs=1).fit(WIDE)
    est.set_params(warm_start=True).fit(np.tile(WIDE, (4, 1)))  # 324 rows would allow 128: the model stays 32 wide
    assert est._width_rows == 81 and est.model_.encoder[0].out_features == 32
    loaded = VAEEmbedder.load(est.save(tmp_path / "model"))
    assert np.array_equal(loaded.transform(WIDE[:5]), est.transform(WIDE[:5]))


def test_a_huge_width_rows_is_a_value_error_not_an_overflow(saved_wide, tmp_path):
    path = shutil.copytree(saved_wide[1], tmp_path / "model")
    text = (path / "embedder.json").read_text()
    (path / "embedder.json").write_text(text.replace('"width_rows": 81', '"width_rows": 1' + "0" * 400))
    with pytest.raises(ValueError, match="model.encoder.0.weight"):  # 10**400 rows allow 128: not these weights
        VAEEmbedder.load(path)
