"""The offline grouped datasets on the shared data folder, and the synthetic MNIST writers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser

from vaekit._recording import to_config
from vaekit.data import DataModule
from vaekit.data.grouped_sets import GroupedTable, HighSchoolBeyond, OlivettiFaces, ShakespeareRoles, find_file
from vaekit.data.grouped_writers import MNISTWriters, draw_styles, render
from vaekit.data.leaf import decode_text


def _check_contract(data: DataModule, n_levels: int) -> None:
    for split in (data.train, data.val, data.test):
        if split is None:
            continue
        n = len(split["y"])
        assert split["x"].shape == (n, *data.data_shape) and split["groups"].shape == (n, n_levels)
        assert split["groups"].dtype == torch.int64 and split["y"].shape[1:] == data.y_shape
        for level in range(n_levels):
            assert 0 <= int(split["groups"][:, level].min()) and int(split["groups"][:, level].max()) < len(data.group_names[level])
    assert [sum(c) for c in data.train_group_counts] == [len(data.train["y"])] * n_levels


def test_high_school_and_beyond(shared_data: Path) -> None:
    data = HighSchoolBeyond(str(shared_data), school_features=("meanses",), val_fraction=0.1, test_fraction=0.2)
    data.setup()
    _check_contract(data, 1)
    assert data.task == "regression" and data.level_names == ["school"] and len(data.group_names[0]) == 160
    assert min(data.train_group_counts[0]) >= 1 and data.data_shape == (4,)
    y = torch.cat([data.train["y"], data.val["y"], data.test["y"]])
    assert len(y) == 7185 and abs(float(y.mean()) - 12.748) < 0.001  # the classic mean math achievement
    # the school covariate is constant within a school
    x, g = data.train["x"], data.train["groups"][:, 0]
    assert all(float(x[g == s, 3].std()) < 1e-6 for s in range(5) if int((g == s).sum()) > 1)
    by_school = HighSchoolBeyond(str(shared_data), split="group", test_fraction=0.25, standardize=True, standardize_y=True)
    by_school.setup()
    assert sum(c == 0 for c in by_school.train_group_counts[0]) == 40 + 16  # 40 test and 16 validation schools
    assert abs(float(by_school.train["y"].mean())) < 1e-4 and by_school.target_std is not None
    with pytest.raises(ValueError, match=r"school_features=\('region',\) must be a tuple of"):
        HighSchoolBeyond(str(shared_data), school_features=("region",))
    with pytest.raises(ValueError, match=r"target='sex' is not a column .*\['minority', 'female', 'ses', 'mathach'\]"):
        HighSchoolBeyond(str(shared_data), target="sex").setup()


@pytest.mark.parametrize(("name", "n", "groups", "mean"), [("sleepstudy", 180, 18, 298.5079), ("orthodont", 108, 27, 24.0231)])
def test_grouped_tables(shared_data: Path, name: str, n: int, groups: int, mean: float) -> None:
    data = GroupedTable(name, str(shared_data), split="group", val_fraction=0.0, test_fraction=0.2)  # type: ignore[arg-type]
    data.setup()
    _check_contract(data, 1)
    y = torch.cat([data.train["y"], data.test["y"]])
    assert len(y) == n and len(data.group_names[0]) == groups and abs(float(y.mean()) - mean) < 1e-3
    assert not set(data.train["groups"][:, 0].tolist()) & set(data.test["groups"][:, 0].tolist())


def test_grunfeld_columns_and_errors(shared_data: Path) -> None:
    data = GroupedTable("grunfeld", str(shared_data), target="capital", val_fraction=0.0)
    data.setup()
    assert data.data_shape == (3,) and data.level_names == ["firm"] and len(data.group_names[0]) == 11  # all other columns
    with pytest.raises(ValueError, match=r"name='cars' is not accepted"):
        GroupedTable("cars")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"features=\('invest',\) must be distinct columns .* other than the target"):
        GroupedTable("grunfeld", str(shared_data), features=("invest",)).setup()
    with pytest.raises(FileNotFoundError, match=r"grouped_tabular/grunfeld.npz not found"):
        GroupedTable("grunfeld").setup()  # VAEKIT_DATA is unset by the fixture: nowhere to look
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_file("x.npz", str(shared_data / "nope"))


def test_shakespeare_roles(shared_data: Path) -> None:
    raw = np.load(shared_data / "shakespeare" / "shakespeare_lines.npz")
    data = ShakespeareRoles(str(shared_data), seq_len=20, max_groups=4, max_windows_per_group=30, val_fraction=0.0)
    data.setup()
    _check_contract(data, 2)
    top = np.argsort(-np.bincount(raw["group"]), kind="stable")[:4]
    assert data.group_names[0] == sorted(str(raw["group_names"][g]) for g in top)  # the roles with most lines
    assert [data.group_names[1][p] for p in data.group_parents[0]] == [r.split("/")[0] for r in data.group_names[0]]
    assert data.task == "classification" and data.n_classes == 80 and data.data_shape == (20,)
    assert sum(data.train_group_counts[0]) + len(data.test["y"]) == 4 * 30
    hamlet = data.group_names[0].index("hamlet/HAMLET")
    text = decode_text(data.train["x"][data.train["groups"][:, 0] == hamlet][0])
    first = raw["text"][raw["group"] == list(raw["group_names"]).index("hamlet/HAMLET")][0]
    assert text == str(first)[:20]  # the first window starts at the role's first line
    seq = ShakespeareRoles(str(shared_data), seq_len=20, target="sequence", max_groups=6, max_windows_per_group=10,
                           split="group", split_level=1, val_fraction=0.0, test_fraction=0.2)
    seq.setup()
    assert seq.task == "sequence" and seq.y_shape == (20,)
    assert torch.equal(seq.train["y"][:, :-1], seq.train["x"][:, 1:])  # y is x shifted by one character
    assert not set(seq.train["groups"][:, 1].tolist()) & set(seq.test["groups"][:, 1].tolist())  # unseen plays
    with pytest.raises(ValueError, match=r"split_level=2 is not accepted"):
        ShakespeareRoles(split_level=2)
    with pytest.raises(ValueError, match=r"no role of .* has min_lines=10 lines and seq_len \+ 1 = 100001 characters"):
        ShakespeareRoles(str(shared_data), seq_len=100000, max_groups=2).setup()
    with pytest.raises(TypeError, match=r"max_windows_per_group must be an int >= 1, got 2.5 of type float"):
        ShakespeareRoles(max_windows_per_group=2.5)  # type: ignore[arg-type]


def test_olivetti_faces(shared_data: Path) -> None:
    raw = np.load(shared_data / "olivetti_faces" / "olivetti_faces.npz")
    data = OlivettiFaces(str(shared_data), split_row=30, val_fraction=0.0, test_fraction=0.2)
    data.setup()
    _check_contract(data, 1)
    assert data.data_shape == (1, 30, 47) and data.y_shape == (27 * 47,) and data.train_group_counts == [[8] * 40]
    faces = torch.from_numpy(raw["x"].astype(np.float32) / 255)
    full = torch.cat([data.train["x"][:, 0], data.train["y"].reshape(-1, 27, 47)], dim=1)
    # top and bottom rows join into a real face ...
    distance = torch.cdist(full.flatten(1), faces.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    nearest = distance.argmin(1)
    assert float(distance.min(1).values.max()) < 1e-4
    assert torch.equal(torch.from_numpy(raw["group"])[nearest], data.train["groups"][:, 0])  # ... of that person
    person = OlivettiFaces(str(shared_data), target="person", val_fraction=0.0)
    person.setup()
    assert person.task == "classification" and person.n_classes == 40
    assert torch.equal(person.train["y"], person.train["groups"][:, 0])
    with pytest.raises(ValueError, match=r"split_row=57 must be in \[1, 56\]"):
        OlivettiFaces(split_row=57)


def test_render_identity_and_integer_shift() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 28, 28)
    style = {k: torch.zeros(2) for k in ("slant", "rotation", "dx", "dy", "thickness")}
    style["scale"] = torch.ones(2)
    assert torch.allclose(render(x, style), x, atol=1e-5)
    style["dx"] = torch.tensor([2.0, 0.0])
    shifted = render(x, style)
    assert torch.allclose(shifted[0, :, :, 2:], x[0, :, :, :-2], atol=1e-5) and float(shifted[0, :, :, :2].abs().max()) < 1e-5


def test_mnist_writers_deterministic_with_known_styles(shared_data: Path) -> None:
    kwargs = {"n_writers": 16, "digits_per_writer": 30, "val_fraction": 0.0, "test_fraction": 0.2, "download": False}
    a, b = MNISTWriters(str(shared_data), seed=3, **kwargs), MNISTWriters(str(shared_data), seed=3, **kwargs)
    a.setup()
    b.setup()
    _check_contract(a, 1)
    assert a.data_shape == (1, 28, 28) and a.n_classes == 10 and a.group_names == [[str(i) for i in range(16)]]
    assert torch.equal(a.train["x"], b.train["x"]) and torch.equal(a.test["y"], b.test["y"])
    assert all(torch.equal(a.writer_styles[k], draw_styles(16, 3)[k]) for k in a.writer_styles)
    c = MNISTWriters(str(shared_data), seed=4, **kwargs)
    c.setup()
    assert not torch.equal(c.train["x"], a.train["x"])
    assert float(a.train["x"].min()) >= 0.0 and float(a.train["x"].max()) <= 1.0
    # a known group effect: thicker strokes -> more ink per writer
    x = torch.cat([a.train["x"], a.test["x"]])
    g = torch.cat([a.train["groups"], a.test["groups"]])[:, 0]
    ink = torch.zeros(16).index_add_(0, g, x.mean((1, 2, 3))) / torch.bincount(g, minlength=16)
    assert np.corrcoef(ink.numpy(), a.writer_styles["thickness"].numpy())[0, 1] > 0.6
    assert float(ink.max() / ink.min()) > 1.5
    with pytest.raises(ValueError, match=r"n_writers \* digits_per_writer = 80000 exceeds the 70000 MNIST digits"):
        MNISTWriters(n_writers=800, digits_per_writer=100)


def test_grouped_sets_from_yaml_and_back(shared_data: Path) -> None:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--data", type=DataModule)
    text = ("data:\n  class_path: vaekit.data.grouped_sets.HighSchoolBeyond\n"
            f"  init_args: {{root: {shared_data}, features: [minority, ses], split: group, seed: 5}}\n")
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
    data = instantiate(parser.parse_string(text)).data
    assert isinstance(data, HighSchoolBeyond) and data.features == ("minority", "ses") and data.split == "group"
    config = to_config(data)
    assert config["class_path"] == "vaekit.data.grouped_sets.HighSchoolBeyond" and config["init_args"]["seed"] == 5
    writers = to_config(MNISTWriters(n_writers=5, digits_per_writer=2))
    assert writers["init_args"]["n_writers"] == 5 and writers["init_args"]["digits_per_writer"] == 2


def test_mnist_writers_glyph_swaps_change_labels_per_writer(shared_data: Path) -> None:
    kwargs = {"n_writers": 12, "digits_per_writer": 40, "val_fraction": 0.0, "test_fraction": 0.0, "download": False,
              "seed": 1}
    plain, swapped = MNISTWriters(str(shared_data), **kwargs), MNISTWriters(str(shared_data), glyph_swaps=2, **kwargs)
    plain.setup()
    swapped.setup()
    assert torch.equal(plain.train["x"], swapped.train["x"])  # same images and order, only labels differ
    g, y0, y1 = plain.train["groups"][:, 0], plain.train["y"], swapped.train["y"]
    assert swapped.writer_swaps.shape == (12, 2, 2) and len(set(swapped.writer_swaps[0].flatten().tolist())) == 4
    for w in range(12):
        mapping = {a: b for a, b in swapped.writer_swaps[w].tolist()}
        mapping.update({b: a for a, b in swapped.writer_swaps[w].tolist()})
        expected = torch.tensor([mapping.get(int(c), int(c)) for c in y0[g == w]])
        assert torch.equal(y1[g == w], expected)
    assert (y0 != y1).any()
    with pytest.raises(ValueError, match="glyph_swaps must be between 0 and 5"):
        MNISTWriters(glyph_swaps=6)
