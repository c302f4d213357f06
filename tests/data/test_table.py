"""vaekit.data.Table (CSV/TSV/gz/NPZ/Parquet by column name), the stored arrays of in-memory runs, and the CLI route."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vaekit._recording import to_config
from vaekit.cli import main
from vaekit.data import ArrayData, GroupedArrays, Table
from vaekit.data.stored import GroupedArrayFile, stored_arrays
from vaekit.trust import is_constructible

ROOT = Path(__file__).resolve().parents[2]
ONE_EPOCH = ["--trainer.max_epochs", "1", "--trainer.progress_bar", "false"]

ROWS = [  # school, x1, sex, y
    ("A", 0.5, "f", 1.25), ("A", 1.5, "m", 2.0), ("A", -0.5, "f", 0.5), ("B", 0.1, "f", 0.25),
    ("B", 0.7, "m", 0.75), ("B", 2.0, "m", 3.0), ("C", 1.0, "f", 1.5), ("C", -1.0, "m", -0.5),
]


def write_csv(path: Path, rows=ROWS, header=("school", "x1", "sex", "y"), sep=",") -> Path:
    text = sep.join(header) + "\n" + "".join(sep.join(str(v) for v in r) + "\n" for r in rows)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def setup(data):
    data.setup()
    return data


def test_csv_grouped_exact_values(tmp_path):
    data = setup(Table(str(write_csv(tmp_path / "s.csv")), target="y", groups=["school"], val_fraction=0.0,
                       test_fraction=0.0))
    assert data.feature_names == ["x1", "sex=f", "sex=m"] and data.columns == ["school", "x1", "sex", "y"]
    assert data.level_names == ["school"] and data.group_names == [["A", "B", "C"]]
    assert data.task == "regression" and data.train["y"].dtype == torch.float32
    assert data.train["x"].tolist()[:2] == [[0.5, 1.0, 0.0], [1.5, 0.0, 1.0]]
    assert data.train["y"].tolist() == [r[3] for r in ROWS]
    assert data.train["groups"][:, 0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    assert data.train_group_counts == [[3, 3, 2]]
    assert is_constructible("vaekit.data.Table") and is_constructible("vaekit.data.GroupedArrayFile")


@pytest.mark.parametrize("name", ["s.tsv", "s.tsv.gz", "s.csv.gz", "s.npz", "s.parquet"])
def test_formats_read_the_same_table(tmp_path, name):
    reference = setup(Table(str(write_csv(tmp_path / "ref.csv")), target="y", groups=["school"], seed=3,
                            val_fraction=0.25, test_fraction=0.25))
    path = tmp_path / name
    if name.endswith(".npz"):
        cols = list(zip(*ROWS))
        np.savez(path, school=np.array(cols[0]), x1=np.array(cols[1]), sex=np.array(cols[2]), y=np.array(cols[3]))
    elif name.endswith(".parquet"):
        if importlib.util.find_spec("pyarrow") is None:
            pytest.skip("pyarrow is not installed")
        import pandas as pd

        pd.DataFrame(ROWS, columns=["school", "x1", "sex", "y"]).to_parquet(path)
    else:
        write_csv(path, sep="\t" if ".tsv" in name else ",")
    other = setup(Table(str(path), target="y", groups=["school"], seed=3, val_fraction=0.25, test_fraction=0.25))
    assert other.feature_names == reference.feature_names and other.group_names == reference.group_names
    for split in ("train", "val", "test"):
        for key in ("x", "y", "groups"):
            assert torch.equal(getattr(other, split)[key], getattr(reference, split)[key]), (split, key)


def test_parquet_without_pyarrow_names_the_package(tmp_path):
    if importlib.util.find_spec("pyarrow") is not None:
        pytest.skip("pyarrow is installed")
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    with pytest.raises(ImportError, match="needs pyarrow: pip install pyarrow"):
        Table(str(tmp_path / "t.parquet"), target="y", groups=["g"]).setup()


def test_column_selection_order_and_categorical(tmp_path):
    path = write_csv(tmp_path / "s.csv")
    data = setup(Table(str(path), target="y", features=["sex", "x1"], groups=["school"], val_fraction=0.0,
                       test_fraction=0.0))
    assert data.feature_names == ["sex=f", "sex=m", "x1"] and data.train["x"][0].tolist() == [1.0, 0.0, 0.5]
    rows = [(s, int(i), x, y) for (s, _, x, y), i in zip([(r[0], 0, r[1], r[3]) for r in ROWS], [3, 1, 3, 2, 1, 3, 2, 1])]
    coded = write_csv(tmp_path / "c.csv", rows, ("school", "level", "x1", "y"))
    onehot = setup(Table(str(coded), target="y", groups=["school"], categorical=["level"], val_fraction=0.0,
                         test_fraction=0.0))
    assert onehot.feature_names == ["level=1", "level=2", "level=3", "x1"]
    assert onehot.train["x"][:2, :3].tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    numeric = setup(Table(str(coded), target="y", groups=["school"], val_fraction=0.0, test_fraction=0.0))
    assert numeric.feature_names == ["level", "x1"] and numeric.train["x"][:3, 0].tolist() == [3.0, 1.0, 3.0]


def test_missing_values_name_the_column_and_row(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("school,x1,note,y\nA,0.5,,1\n\nA,NA,,2\nB,0.3,,1\nB,nan,,2\n")
    with pytest.raises(ValueError, match=r"column 'x1' of .*m\.csv has a missing value \('NA'\) at data row 2, "
                                         r"file line 4 \(2 such row\(s\) in all\)"):
        Table(str(path), target="y", features=["x1"], groups=["school"]).setup()
    npz = tmp_path / "m.npz"
    np.savez(npz, g=np.array([1, 1, 2]), x=np.array([0.0, 1.0, np.inf]), y=np.array([0.0, np.nan, 1.0]))
    with pytest.raises(ValueError, match=r"column 'y' of .*m\.npz has a missing value \(nan\) at data row 2 \("):
        Table(str(npz), target="y", features=["x"], groups=["g"]).setup()
    with pytest.raises(ValueError, match=r"column 'x' of .*m\.npz has a non-finite value \(inf\) at data row 3 \("):
        Table(str(npz), target="g", features=["x"]).setup()


def test_unused_columns_may_have_gaps_and_typos_are_refused(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("g,x1,note,y\nA,0.5,,1\nA,1.5,,2\nB,0.3,x,1\nB,oops,,2\n")
    data = setup(Table(str(path), target="y", features=["x1"], groups=["g"], val_fraction=0.0, test_fraction=0.0,
                       categorical=["x1"]))
    assert data.feature_names == ["x1=0.3", "x1=0.5", "x1=1.5", "x1=oops"]
    with pytest.raises(ValueError, match=r"column 'x1' of .*g\.csv looks numeric, but 'oops' at data row 4, file line 5 "
                                         r"is not a number \(1 such row\(s\)\); .* categorical=\[\.\.\.\]"):
        Table(str(path), target="y", features=["x1"], groups=["g"]).setup()


def test_unknown_columns_list_the_available_ones(tmp_path):
    path = write_csv(tmp_path / "s.csv")
    with pytest.raises(ValueError, match=r"has no column\(s\) \['sch', 'x9'\]; its columns are "
                                         r"\['school', 'x1', 'sex', 'y'\]"):
        Table(str(path), target="y", features=["x1", "x9"], groups=["sch"]).setup()


@pytest.mark.parametrize("ids, text, names", [
    (np.array(["b", "a", "b", "a"]), "b a b a", ["a", "b"]),
    (np.array([10, 2, 10, 2]), "10 2 10 2", ["2", "10"]),
    (np.array([10.0, 2.0, 10.0, 2.0]), "10 2 10 2", ["2", "10"]),  # integral floats are numeric ids
    (np.array([0.5, 1.25, 0.5, 1.25]), "0.5 1.25 0.5 1.25", ["0.5", "1.25"]),  # fractional: ids as text
    (np.array([-1, 3, -1, 3]), "-1 3 -1 3", ["-1", "3"]),  # negative: as text
    (np.array([-3.0, 2.0, -3.0, 2.0]), "-3 2 -3 2", ["-3", "2"]),  # one normalisation: -3.0 (NPZ) is -3 (CSV)
    (np.array([2.0**70, 1.0, 2.0**70, 1.0]), f"{2**70} 1 {2**70} 1", ["1", str(2**70)]),  # beyond int64: exact text
])
def test_group_columns_of_any_type(tmp_path, ids, text, names):
    path = tmp_path / "g.npz"
    np.savez(path, g=ids, x=np.arange(4.0), y=np.arange(4.0))
    data = setup(Table(str(path), target="y", groups=["g"], val_fraction=0.0, test_fraction=0.0))
    assert data.group_names == [names]
    csv_path = tmp_path / "g.csv"
    csv_path.write_text("g,x,y\n" + "".join(f"{i},{k},{k}\n" for k, i in enumerate(text.split())))
    from_csv = setup(Table(str(csv_path), target="y", groups=["g"], val_fraction=0.0, test_fraction=0.0))
    assert from_csv.group_names == [names] and torch.equal(from_csv.train["groups"], data.train["groups"])


def test_two_levels_and_split_by_group_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    student = np.arange(n) // 3
    school = student // 4  # 10 schools of 4 students of 3 scores
    path = tmp_path / "two.csv"
    path.write_text("student,school,x,y\n" + "".join(f"s{s},{c},{x:.3f},{y:.3f}\n" for s, c, x, y in
                                                     zip(student, school, rng.normal(size=n), rng.normal(size=n))))
    args = dict(target="y", groups=["student", "school"], split="group", split_level=1, val_fraction=0.1,
                test_fraction=0.2)
    a, b = setup(Table(str(path), seed=1, **args)), setup(Table(str(path), seed=1, **args))
    c = setup(Table(str(path), seed=2, **args))
    assert a.level_names == ["student", "school"] and len(a.group_names[1]) == 10
    assert torch.equal(a.test["groups"], b.test["groups"]) and not torch.equal(a.test["groups"], c.test["groups"])
    held = set(a.test["groups"][:, 1].tolist())
    assert len(held) == 2 and all(a.train_group_counts[1][g] == 0 for g in held)
    by_example = setup(Table(str(path), target="y", groups=["school"], features=["x"], seed=1, test_fraction=0.25))
    assert all(c > 0 for c in by_example.train_group_counts[0]) and len(by_example.test["y"]) == 30


def test_plain_table_labels_and_splits(tmp_path):
    path = write_csv(tmp_path / "s.csv")
    plain = setup(Table(str(path), target="sex", features=["x1", "y"], val_fraction=0.25, test_fraction=0.25, seed=0))
    assert plain.data_shape == (2,) and plain.class_names == ["f", "m"]
    assert (len(plain.train), len(plain.val), len(plain.test)) == (4, 2, 2)
    assert plain.train_labels.dtype == torch.int64 and plain.task is None
    everything = torch.cat([plain.train, plain.val, plain.test])
    assert sorted(everything[:, 0].tolist()) == pytest.approx(sorted(r[1] for r in ROWS))
    again = setup(Table(str(path), target="sex", features=["x1", "y"], val_fraction=0.25, test_fraction=0.25, seed=0))
    assert torch.equal(again.test, plain.test) and torch.equal(again.test_labels, plain.test_labels)
    std = setup(Table(str(path), features=["x1", "y"], val_fraction=0.0, test_fraction=0.0, standardize=True))
    assert torch.allclose(std.train.mean(0), torch.zeros(2), atol=1e-6)
    assert torch.allclose(std.unstandardize(std.train)[:, 0], torch.tensor([r[1] for r in ROWS]), atol=1e-6)
    with pytest.raises(ValueError, match=r"target 'y' .* not class labels \(integers in \[0, 2\*\*53\)\): '1.25' at "
                                         r"data row 1, "
                                         r"file line 2; leave target out"):
        Table(str(path), target="y", features=["x1"]).setup()


def test_bad_arguments_are_refused_before_reading(tmp_path):
    with pytest.raises(ValueError, match=r"accepted endings: \['.csv'"):
        Table("data.xlsx")
    with pytest.raises(TypeError, match=r"groups must be a list of column names such as \['x1', 'x2'\]; got 'school'"):
        Table("s.csv", target="y", groups="school")
    with pytest.raises(ValueError, match=r"column\(s\) \['y'\] are both in target and in features"):
        Table("s.csv", target="y", features=["x1", "y"])
    with pytest.raises(ValueError, match="groups=\\['school'\\] needs target="):
        Table("s.csv", groups=["school"])
    with pytest.raises(ValueError, match="split='group' needs group columns"):
        Table("s.csv", split="group")
    with pytest.raises(ValueError, match="val_fraction=1.5 is outside"):
        Table("s.csv", val_fraction=1.5)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Table(str(tmp_path / "none.csv")).setup()


def test_absolute_path_is_recorded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "s.csv")
    data = Table("s.csv", target="y", groups=["school"])
    assert data.path == str(tmp_path / "s.csv")
    assert to_config(data)["init_args"]["path"] == str(tmp_path / "s.csv")


def test_stored_arrays_give_the_same_splits(tmp_path):
    rng = np.random.default_rng(0)
    groups = np.array([3, "x", 3, "x", 7, 7, "x", 3] * 5, dtype=object)  # mixed raw ids: sorted as text
    grouped = GroupedArrays(rng.normal(size=(40, 2)), groups, rng.normal(size=40), task="regression", seed=4,
                            standardize=True, standardize_y=True, test_fraction=0.25)
    section = _store(grouped, tmp_path / "g.npz")
    assert section["class_path"] == "vaekit.data.GroupedArrayFile" and Path(section["init_args"]["path"]).is_absolute()
    back = setup(GroupedArrayFile(**section["init_args"]))
    grouped.setup()
    assert back.group_names == grouped.group_names == [["3", "7", "x"]]
    for split in ("train", "val", "test"):
        for key in ("x", "y", "groups"):
            assert torch.equal(getattr(back, split)[key], getattr(grouped, split)[key])
    assert torch.equal(back.target_std, grouped.target_std)
    plain = ArrayData(rng.random((30, 3)), np.arange(30) % 2, val_fraction=0.2, test_x=rng.random((5, 3)), seed=2)
    section = _store(plain, tmp_path / "p.npz")
    from vaekit.data import ArrayFile

    again = setup(ArrayFile(**section["init_args"]))
    plain.setup()
    assert torch.equal(again.val, plain.val) and torch.equal(again.val_labels, plain.val_labels)
    assert torch.equal(again.test, plain.test)
    assert stored_arrays(Table("s.csv"), tmp_path / "t.npz") is None


def _store(data, path):
    """Save the arrays as the trainer does; the section records their SHA-256."""
    arrays, section = stored_arrays(data, path)
    np.savez(path, **arrays)
    section["init_args"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return section


@pytest.mark.parametrize("cls", ["ArrayFile", "GroupedArrayFile"])
def test_a_stored_file_that_changed_is_refused_naming_it(tmp_path, cls):
    import vaekit.data

    rng = np.random.default_rng(0)
    data = (ArrayData(rng.random((20, 3))) if cls == "ArrayFile" else
            GroupedArrays(rng.normal(size=(20, 2)), np.repeat([0, 1], 10), rng.normal(size=20), task="regression"))
    section = _store(data, tmp_path / "a.npz")
    module = getattr(vaekit.data, cls)(**section["init_args"])
    content = bytearray((tmp_path / "a.npz").read_bytes())
    content[len(content) // 2] ^= 0xFF
    (tmp_path / "a.npz").write_bytes(bytes(content))
    with pytest.raises(ValueError, match=r"a\.npz' is corrupt or was replaced: its SHA-256 is [0-9a-f]{64}, but the config"):
        module.setup()
    with pytest.raises(ValueError, match="sha256 must be None or the 64 lowercase hex digits"):
        getattr(vaekit.data, cls)(**{**section["init_args"], "sha256": "abc"})


def test_cli_fit_on_a_csv_then_evaluate_from_elsewhere(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(1)
    work, other = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), other.mkdir()
    schools = np.repeat([f"S{i}" for i in range(8)], 12)
    x = rng.normal(size=(96, 2))
    y = x @ [0.5, -0.3] + np.repeat(rng.normal(0, 0.5, 8), 12) + rng.normal(0, 0.7, 96)
    (work / "scores.csv").write_text("school,x1,x2,y\n" + "".join(f"{s},{a:.4f},{b:.4f},{v:.4f}\n"
                                                                 for s, (a, b), v in zip(schools, x, y)))
    monkeypatch.chdir(work)
    cfg = ROOT / "examples" / "configs" / "groups_table.yaml"
    assert main(["fit", "--config", str(cfg), "--data.path", "scores.csv", "--data.target", "y",
                 "--data.features", "[x1, x2]", "--data.groups", "[school]", *ONE_EPOCH]) == 0
    (run,) = list((work / "runs" / "groups_table").glob("*"))
    section = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert section["class_path"] == "vaekit.data.Table" and section["init_args"]["path"] == str(work / "scores.csv")
    monkeypatch.chdir(other)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--ks", "1", "--max-groups", "2", "--checkpoint", "last"]) == 0
    assert "test: rmse" in capsys.readouterr().out
    assert json.loads((run / "eval" / "group_metrics.json").read_text())


def test_python_fitted_in_memory_run_evaluates_from_the_cli(tmp_path, monkeypatch, capsys):
    from vaekit.models.group import GroupPredictor
    from vaekit.nn.predictors import MLPPredictor
    from vaekit.training import Trainer

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    groups = np.repeat(np.array(["a", "b", "c", "d"]), 10)
    data = GroupedArrays(rng.normal(size=(40, 2)), groups, rng.normal(size=40), task="regression", test_fraction=0.2)
    model = GroupPredictor.from_data(data, MLPPredictor(2, 1, hidden=[4]), likelihood="gaussian_learned", latent_features=1)
    run = Trainer(max_epochs=1, batch_size=16, progress_bar=False).fit(model, data).run_dir.path
    section = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert section["class_path"] == "vaekit.data.GroupedArrayFile"
    assert section["init_args"]["path"] == str(run.absolute() / "data" / "arrays.npz")
    monkeypatch.chdir(tmp_path.parent)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / run), "--ks", "1", "--max-groups", "2", "--checkpoint", "last"]) == 0
    assert "test: rmse" in capsys.readouterr().out
    stored = tmp_path / run / "data" / "arrays.npz"
    content = bytearray(stored.read_bytes())
    content[200] ^= 1  # a changed file is caught by its recorded SHA-256
    stored.write_bytes(bytes(content))
    assert main(["evaluate", str(tmp_path / run), "--ks", "1", "--checkpoint", "last"]) != 0
    assert "its SHA-256 is" in capsys.readouterr().err


def test_new_table_template_trains_on_a_csv(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["new", "table", "scores"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.yaml"]  # a config only: no Python
    assert "--data.path FILE.csv" in capsys.readouterr().out
    (tmp_path / "scores.csv").write_bytes((ROOT / "examples" / "data" / "scores.csv").read_bytes())
    assert main(["fit", "--config", "scores.yaml", "--trainer.max_steps", "3", *ONE_EPOCH]) == 0
    (run,) = list((tmp_path / "runs" / "scores").glob("*"))
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["init_args"]["path"] == str(tmp_path / "scores.csv")
    assert config["model"]["init_args"]["group_names"][0][:2] == ["S01", "S02"]


def test_example_scores_csv_is_the_documented_simulation():
    data = setup(Table(str(ROOT / "examples" / "data" / "scores.csv"), target="y", features=["x1", "x2"],
                       groups=["school"], val_fraction=0.0, test_fraction=0.0))
    assert data.train["x"].shape == (750, 2) and len(data.group_names[0]) == 30
    assert set(data.train_group_counts[0]) == {25}
    assert (ROOT / "examples" / "data" / "scores.csv").stat().st_size < 100_000


def test_a_failed_setup_assigns_nothing(tmp_path):
    path = write_csv(tmp_path / "s.csv")
    data = Table(str(path), target="y", groups=["school"], split="group", val_fraction=0.34, test_fraction=0.5)
    with pytest.raises(ValueError, match="split='group' cannot hold out 2 test and 1 validation groups of 3") as err:
        data.setup()
    assert "no training group" in str(err.value)
    assert not data.is_setup and data.feature_names is None and data.train is None


@pytest.mark.parametrize("ids, names", [
    (["01", "1", "2", "02"], ["01", "02", "1", "2"]),  # leading zeros: distinct ids, as text
    (["1_0", "10", "+1", "1"], ["+1", "1", "10", "1_0"]),  # int() would accept 1_0 and +1
    (["3.0", "3", "-0", "0"], ["-0", "0", "3", "3.0"]),  # never read through float
    (["1", "12345678901234567890", "12345678901234567891", "01"],  # beyond int64: exact text, never floats
     ["01", "1", "12345678901234567890", "12345678901234567891"]),
])
def test_distinct_text_ids_stay_distinct_groups(tmp_path, ids, names):
    path = tmp_path / "g.csv"
    path.write_text("g,x,y\n" + "".join(f"{g},{k},{k}\n" for k, g in enumerate(ids)))
    data = setup(Table(str(path), target="y", groups=["g"], val_fraction=0.0, test_fraction=0.0))
    assert data.group_names == [names] and data.train_group_counts == [[1, 1, 1, 1]]
    assert [names[i] for i in data.train["groups"][:, 0].tolist()] == ids
    onehot = setup(Table(str(path), target="y", features=["g"], categorical=["g"], val_fraction=0.0, test_fraction=0.0))
    assert onehot.feature_names == [f"g={n}" for n in names]


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e999", "-1E400", "1e300"])
@pytest.mark.parametrize("column, grouped", [("x1", True), ("x1", False), ("y", True)])
def test_infinite_numbers_name_the_column_and_row(tmp_path, value, column, grouped):
    rows = [list(r) for r in ROWS]
    rows[2][1 if column == "x1" else 3] = value  # data row 3, file line 5 (after a blank line)
    path = tmp_path / "s.csv"
    path.write_text("school,x1,sex,y\n" + "".join(",".join(str(v) for v in r) + "\n" + ("\n" if i == 0 else "")
                                                for i, r in enumerate(rows)))
    what = r"a value beyond the float32 range \(\|v\| > 3\.4e38\)" if value == "1e300" else "a non-finite value"
    args = dict(target="y", groups=["school"]) if grouped else dict(features=["x1", "y"])
    with pytest.raises(ValueError, match=rf"column '{column}' of .*s\.csv has {what} \({value!r}\) at data row 3, "
                                         rf"file line 5 \(1 such row\(s\) in all\)"):
        Table(str(path), **args).setup()


def test_infinite_and_huge_numbers_in_npz_columns(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, g=np.array([0, 0, 1, 1]), x=np.array([[0.0, 1.0], [1.0, 1e39], [2.0, 0.0], [3.0, 1.0]]),
             y=np.array([0.0, 1.0, np.inf, 1.0]), label=np.array([0, 1, 2**53, 1]))
    with pytest.raises(ValueError, match=r"column 'x' of .*t\.npz has a value beyond the float32 range .* "
                                         r"\(\[1\.0, 1e\+39\]\) at data row 2 \("):
        Table(str(path), target="g", features=["x"]).setup()
    with pytest.raises(ValueError, match=r"column 'y' of .*t\.npz has a non-finite value \(inf\) at data row 3 \("):
        Table(str(path), target="y", features=["g"], groups=["label"]).setup()
    with pytest.raises(ValueError, match=r"target 'label' .* not class labels \(integers in \[0, 2\*\*53\)\): "
                                         r"9007199254740992 at data row 3;"):
        Table(str(path), target="label", features=["g"]).setup()


@pytest.mark.parametrize("label, shown, what", [
    ("inf", r"\('inf'\)", "has a non-finite value"), ("1e999", r"\('1e999'\)", "has a non-finite value"),
    ("-inf", r"\('-inf'\)", "has a non-finite value"), ("1e30", "'1e30'", r"holds numbers that are not"),
    ("9007199254740992", "'9007199254740992'", r"holds numbers that are not"),
    ("-1", "'-1'", r"holds numbers that are not"),
])
@pytest.mark.parametrize("grouped", [False, True])
def test_labels_must_be_finite_integers_below_2_53(tmp_path, label, shown, what, grouped):
    path = tmp_path / "l.csv"
    path.write_text(f"g,x,c\nA,0.5,1\nA,1.5,{label}\nB,0.2,0\n")
    args = dict(groups=["g"], task="classification") if grouped else {}
    with pytest.raises(ValueError, match=rf"'c' of .*l\.csv {what}.*{shown} at data row 2, file line 3"):
        Table(str(path), target="c", features=["x"], **args).setup()
    path.write_text(f"g,x,c\nA,0.5,1\nA,1.5,{2**53 - 1}\nB,0.2,0\n")  # the largest accepted label is kept exactly
    plain = setup(Table(str(path), target="c", features=["x"], val_fraction=0.0, test_fraction=0.0))
    assert plain.train_labels.tolist() == [1, 2**53 - 1, 0]


def test_split_level_beyond_the_group_columns_is_refused_in_the_constructor():
    with pytest.raises(ValueError, match=r"split_level=1 is out of range for the 1 group column\(s\) \['school'\]; "
                                         r"use a level in 0\.\.0"):
        Table("s.csv", target="y", groups=["school"], split="group", split_level=1)
    with pytest.raises(ValueError, match=r"split_level=3 is out of range for the 2 group column\(s\) "
                                         r"\['student', 'school'\]; use a level in 0\.\.1"):
        Table("s.csv", target="y", groups=["student", "school"], split_level=3)
    assert Table("s.csv", target="y", groups=["student", "school"], split="group", split_level=1).split_level == 1


def test_in_memory_data_above_the_cap_is_not_copied_into_the_run(tmp_path, monkeypatch, caplog):
    import logging

    import vaekit.training.loop as loop
    from vaekit.models import mlp_vae
    from vaekit.training import Trainer

    monkeypatch.setattr(loop, "STORE_DATA_MAX_BYTES", 1000)  # 40 x 8 float64 = 2,560 bytes
    data = ArrayData(np.random.default_rng(0).random((40, 8)), val_fraction=0.25)
    with caplog.at_level(logging.WARNING, logger="vaekit"):
        run = Trainer(max_epochs=1, batch_size=10, progress_bar=False, root_dir=str(tmp_path)).fit(
            mlp_vae([8], 2, [4], likelihood="gaussian"), data).run_dir.path
    assert "data" not in yaml.safe_load((run / "config.yaml").read_text()) and not (run / "data").exists()
    assert "is not copied into the run directory" in caplog.text


def test_cli_sizes_the_group_model_from_the_table_before_building_it(tmp_path, monkeypatch, capsys):
    """config.yaml holds what the constructor received: the sizes the data determine, a size the config gives must
    match the data's, and a resumed run checks them against the data again."""
    rng = np.random.default_rng(2)
    schools = np.repeat([f"S{i}" for i in range(5)], 10)
    x = rng.normal(size=(50, 2))
    (tmp_path / "scores.csv").write_text("school,x1,x2,y\n" + "".join(f"{s},{a:.4f},{b:.4f},{a + b:.4f}\n"
                                                                     for s, (a, b) in zip(schools, x)))
    monkeypatch.chdir(tmp_path)
    cfg = ROOT / "examples" / "configs" / "groups_table.yaml"
    args = ["fit", "--config", str(cfg), "--data.path", "scores.csv", "--data.target", "y", "--data.features", "[x1, x2]",
            "--data.groups", "[school]", *ONE_EPOCH]
    assert main([*args, "--model.init_args.data_shape", "[5]"]) == 2
    assert "data_shape=[5] does not fit the data, which gives data_shape=[2]" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    assert main(args) == 0
    (run,) = list((tmp_path / "runs" / "groups_table").glob("*"))
    model = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]
    assert model["group_names"] == [[f"S{i}" for i in range(5)]] and model["level_names"] == ["school"]
    assert model["data_shape"] == [2] and model["n_train"] == sum(model["group_counts"][0]) < 50
    assert main(["fit", "--resume", str(run), "--trainer.max_epochs", "2"]) == 0
    again = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]
    assert again == model
