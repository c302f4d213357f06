"""``vaekit embed``: fit and write an embedding (npy, npz, csv, npy directory), save, embed new data with --model."""

from __future__ import annotations

import numpy as np
import pytest

from vaekit.cli import main
from vaekit.embedding import VAEEmbedder

X = np.random.default_rng(0).normal(size=(90, 6)).astype(np.float32)
FAST = ["--max-epochs", "2", "--quiet", "--seed", "3"]


def test_fit_save_then_embed_new_data(tmp_path, capsys):
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "labels.npy", np.arange(len(X)) % 3)
    code = main(["embed", str(tmp_path / "x.npy"), "--n-components", "2", "--out", str(tmp_path / "z.npy"), "--save",
                 str(tmp_path / "model"), "--labels", str(tmp_path / "labels.npy"), "--plot", str(tmp_path / "e.png"), *FAST])
    assert code == 0, capsys.readouterr().err
    Z = np.load(tmp_path / "z.npy")
    est = VAEEmbedder.load(tmp_path / "model")
    assert Z.shape == (90, 2) and np.array_equal(est.transform(X), Z)
    assert est.random_state == 3 and est.max_epochs == 2
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    new = X[:10] + 0.5
    np.save(tmp_path / "new.npy", new)
    assert main(["embed", "--model", str(tmp_path / "model"), str(tmp_path / "new.npy"), "--out", str(tmp_path / "zn.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "zn.npy"), est.transform(new))
    assert "written:" in capsys.readouterr().out


def test_transform_steps_when_fitting_and_with_a_saved_model(tmp_path, capsys):
    np.save(tmp_path / "x.npy", X)
    argv = ["embed", str(tmp_path / "x.npy"), "--out", str(tmp_path / "z.npy"), *FAST]
    assert main([*argv, "--save", str(tmp_path / "m"), "--transform-steps", "7"]) == 0
    est = VAEEmbedder.load(tmp_path / "m")
    assert est.transform_steps == 7 and np.array_equal(np.load(tmp_path / "z.npy"), est.transform(X))
    new = ["embed", "--model", str(tmp_path / "m"), str(tmp_path / "x.npy"), "--out", str(tmp_path / "z0.npy")]
    assert main([*new, "--transform-steps", "0"]) == 0
    assert np.array_equal(np.load(tmp_path / "z0.npy"), est.set_params(transform_steps=0).transform(X))
    assert not np.allclose(np.load(tmp_path / "z0.npy"), np.load(tmp_path / "z.npy"), atol=1e-4)
    capsys.readouterr()
    assert main([*new[:-1], str(tmp_path / "bad.npy"), "--transform-steps", "-1"]) == 2
    assert "transform_steps" in capsys.readouterr().err and not (tmp_path / "bad.npy").exists()


def test_neighbour_options_reach_the_estimator(tmp_path):
    np.save(tmp_path / "x.npy", X)
    argv = ["embed", str(tmp_path / "x.npy"), "--out", str(tmp_path / "z.npy"), *FAST]
    assert main([*argv, "--save", str(tmp_path / "m"), "--neighbor-weight", "0", "--n-neighbors", "4"]) == 0
    est = VAEEmbedder.load(tmp_path / "m")
    assert est.neighbor_weight == 0.0 and est.n_neighbors == 4
    assert VAEEmbedder(max_epochs=2, random_state=3, neighbor_weight=0.0).fit(X).transform(X) == pytest.approx(
        np.load(tmp_path / "z.npy"), abs=1e-6)
    assert main([*argv, "--save", str(tmp_path / "m2"), "--layout-steps", "20"]) == 0
    moved = VAEEmbedder.load(tmp_path / "m2")
    assert moved.layout_steps == 20 and np.array_equal(np.load(tmp_path / "z.npy"), moved.transform(X))
    assert np.array_equal(VAEEmbedder(max_epochs=2, random_state=3, layout_steps=20).fit(X).embedding_,
                          moved.embedding_)
    assert main([*argv, "--save", str(tmp_path / "m3"), "--neighbor-graph", "fuzzy"]) == 0
    fuzzy = VAEEmbedder.load(tmp_path / "m3")
    assert fuzzy.neighbor_graph == "fuzzy" and fuzzy._layout.graph == "fuzzy"
    assert np.array_equal(np.load(tmp_path / "z.npy"),
                          VAEEmbedder(max_epochs=2, random_state=3, neighbor_graph="fuzzy").fit_transform(X))


def test_npz_csv_and_directory_inputs_agree(tmp_path):
    np.savez(tmp_path / "x.npz", x=X, y=np.zeros(len(X)))
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header=",".join(f"f{i}" for i in range(6)), comments="", fmt="%.9g")
    (tmp_path / "dir").mkdir()
    for i, row in enumerate(X):
        np.save(tmp_path / "dir" / f"{i:03d}.npy", row)
    outs = []
    for name, src in (("npz", "x.npz"), ("csv", "x.csv"), ("dir", "dir")):
        assert main(["embed", str(tmp_path / src), "--out", str(tmp_path / f"{name}.npy"), *FAST]) == 0
        outs.append(np.load(tmp_path / f"{name}.npy"))
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


@pytest.mark.parametrize("args, match", [
    (["{x}", "--out", "{tmp}/z.txt"], "must end in .npy"),
    (["{x}", "--out", "{tmp}/missing/z.npy"], "does not exist"),
    (["{x}", "--out", "{tmp}/z.npy", "--save", "{tmp}"], "exists and is not empty"),
    (["{x}", "--out", "{tmp}/z.npy", "--labels", "{x}"], "--labels only colours --plot"),
    (["{tmp}/nothing.npy", "--out", "{tmp}/z.npy"], "does not exist"),
    (["{tmp}/bad.npz", "--out", "{tmp}/z.npy"], "name the examples 'x'"),
    (["{tmp}/x.npy", "--out", "{tmp}/z.npy", "--model", "{tmp}"],  # FAST's fitting settings come first
     "--max-epochs, --seed set(s) how a new embedder is fitted; with --model the embedder is already trained"),
    (["{x}", "--out", "{tmp}/z.npy", "--plot", "{tmp}/map.txt"], "--plot '{tmp}/map.txt': the file type must be one of"),
    (["{x}", "--out", "{tmp}/z.npy", "--latent-grid", "{tmp}/g"], "--latent-grid '{tmp}/g': the file type must be"),
    (["{x}", "--out", "{tmp}/z.npy", "--plot", "{tmp}/a.png", "--latent-grid", "{tmp}/a.png"],
     "--plot and --latent-grid name the same file"),
])
def test_errors_are_one_line_and_nothing_is_written(tmp_path, capsys, args, match):
    np.save(tmp_path / "x.npy", X)
    np.savez(tmp_path / "bad.npz", a=X, b=X)
    argv = [a.format(x=tmp_path / "x.npy", tmp=tmp_path) for a in args]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["embed", *argv, *FAST]) == 2
    assert match.format(tmp=tmp_path) in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("flag", [["--n-components", "3"], ["--neighbor-weight", "0"], ["--no-normalization"],
                                  ["--likelihood", "bernoulli"], ["--batch-size", "7"], ["--seed", "5"],
                                  ["--n-neighbors", "3"], ["--learning-rate", "0.1"], ["--layout-steps", "5"],
                                  ["--neighbor-graph", "fuzzy"]])
def test_fitting_settings_are_refused_with_a_saved_model(tmp_path, capsys, flag):
    np.save(tmp_path / "x.npy", X)
    assert main(["embed", str(tmp_path / "x.npy"), "--out", str(tmp_path / "z.npy"), "--save", str(tmp_path / "m"),
                 *FAST]) == 0
    capsys.readouterr()
    assert main(["embed", "--model", str(tmp_path / "m"), str(tmp_path / "x.npy"), "--out", str(tmp_path / "z2.npy"),
                 *flag]) == 2
    assert f"{flag[0]} set(s) how a new embedder is fitted" in capsys.readouterr().err
    assert not (tmp_path / "z2.npy").exists()


def test_a_model_directory_without_a_saved_embedder(tmp_path, capsys):
    np.save(tmp_path / "x.npy", X)
    assert main(["embed", str(tmp_path / "x.npy"), "--out", str(tmp_path / "z.npy"), "--model", str(tmp_path)]) == 2
    assert "holds no saved VAEEmbedder" in capsys.readouterr().err and not (tmp_path / "z.npy").exists()


def test_decode_with_latent_grid_is_refused_before_anything_is_done(tmp_path, capsys):
    VAEEmbedder(hidden_layers=(4,), n_flows=1, n_prior_modes=2, max_epochs=1, random_state=0).fit(X).save(tmp_path / "m")
    np.save(tmp_path / "z.npy", np.zeros((5, 2)))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["embed", "--model", str(tmp_path / "m"), "--decode", str(tmp_path / "z.npy"), "--out",
                 str(tmp_path / "back.npy"), "--latent-grid", str(tmp_path / "g.png"), "--image-shape", "2", "3"]) == 2
    err = capsys.readouterr().err
    assert f"--decode {str(tmp_path / 'z.npy')!r} and --latent-grid {str(tmp_path / 'g.png')!r} cannot be combined" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("kind", ["npy", "npz", "dir", "model"])
def test_wrong_label_count_is_refused_before_fitting_or_writing(tmp_path, capsys, kind):
    np.save(tmp_path / "labels.npy", np.arange(len(X) - 1) % 3)
    if kind == "dir":
        (tmp_path / "data").mkdir()
        for i, row in enumerate(X):
            np.save(tmp_path / "data" / f"{i:03d}.npy", row)
    elif kind == "npz":
        np.savez(tmp_path / "data.npz", x=X)
    else:
        np.save(tmp_path / "data.npy", X)
    data = tmp_path / {"dir": "data", "npz": "data.npz"}.get(kind, "data.npy")
    if kind == "model":
        VAEEmbedder(hidden_layers=(4,), n_flows=1, max_epochs=1, random_state=0).fit(X).save(tmp_path / "m")
        extra = ["--model", str(tmp_path / "m")]
    else:  # fitting: --logdir would get checkpoints and curves in the first epoch, --save a model
        extra = ["--logdir", str(tmp_path / "log"), "--save", str(tmp_path / "saved"), *FAST]
    outputs = [tmp_path / name for name in ("z.npy", "e.png", "log", "saved")]
    argv = ["embed", str(data), "--out", str(outputs[0]), "--labels", str(tmp_path / "labels.npy"), "--plot",
            str(outputs[1]), *extra]
    assert main(argv) == 2
    assert [p.name for p in outputs if p.exists()] == []
    err = capsys.readouterr().err
    assert f"--labels {str(tmp_path / 'labels.npy')!r} has 89 entries but DATA {str(data)!r} has 90 examples" in err
    np.save(tmp_path / "labels.npy", np.arange(len(X)) % 3)  # the right count: the same command runs
    assert main(argv) == 0
    assert np.load(outputs[0]).shape == (90, 2) and outputs[1].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("labels, match", [
    (np.zeros((90, 1)), "has shape (90, 1); expected one label per example, shape (n,)"),
    (np.where(np.arange(90) == 7, np.nan, 1.0), "has a non-finite value at example 7 (nan)"),
    (np.zeros(90, dtype=complex), "has dtype complex128; expected int, bool, str or float labels"),
])
def test_bad_label_values_are_refused_before_fitting(tmp_path, capsys, labels, match):
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "labels.npy", labels)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["embed", str(tmp_path / "x.npy"), "--out", str(tmp_path / "z.npy"), "--labels",
                 str(tmp_path / "labels.npy"), "--plot", str(tmp_path / "e.png"), "--logdir", str(tmp_path / "log"),
                 *FAST]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert match in capsys.readouterr().err


def test_labels_that_are_not_a_npy_array_and_embeddings_with_nan_name_the_file(tmp_path, capsys):
    np.save(tmp_path / "x.npy", X)
    np.savetxt(tmp_path / "labels.csv", np.arange(len(X)) % 3)
    assert main(["embed", str(tmp_path / "x.npy"), "--out", str(tmp_path / "z.npy"), "--plot", str(tmp_path / "p.png"),
                 "--labels", str(tmp_path / "labels.csv"), *FAST]) == 2
    assert f"cannot read --labels {str(tmp_path / 'labels.csv')!r} as a .npy array" in capsys.readouterr().err
    assert not (tmp_path / "z.npy").exists()
    assert main(["embed", str(tmp_path / "x.npy"), "--out", str(tmp_path / "z.npy"), "--save", str(tmp_path / "m"),
                 *FAST]) == 0
    np.save(tmp_path / "znan.npy", np.array([[np.nan, 0.0]]))
    capsys.readouterr()
    assert main(["embed", "--model", str(tmp_path / "m"), "--decode", str(tmp_path / "znan.npy"), "--out",
                 str(tmp_path / "back.npy")]) == 2
    assert f"--decode {str(tmp_path / 'znan.npy')!r} must hold finite numbers" in capsys.readouterr().err
    assert not (tmp_path / "back.npy").exists()
    with pytest.raises(ValueError, match=r"X \(embeddings given to inverse_transform\) contains NaN"):
        VAEEmbedder.load(tmp_path / "m").inverse_transform(np.array([[np.nan, 0.0]]))
