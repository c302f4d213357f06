"""Grouped data: the GroupedData contract on in-memory arrays (ids, levels, splits, checks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaekit.data.grouped import GroupedArrays
from vaekit.data.grouped_ids import UnknownGroupError, split_indices


def _two_level(n_roles: int = 12, per_role: int = 10, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Roles (string ids, unique across plays) nested in plays (integer ids); 3 classes."""
    rng = np.random.default_rng(seed)
    role = np.repeat([f"r{i:02d}" for i in range(n_roles)], per_role)
    play = np.repeat(np.arange(n_roles) % 4 * 10 + 5, per_role)  # plays 5, 15, 25, 35
    x = rng.normal(size=(len(role), 3))
    y = rng.integers(0, 3, len(role))
    perm = rng.permutation(len(role))  # examples of a group are not contiguous
    return x[perm], [role[perm], play[perm]], y[perm]


def _all(data: GroupedArrays, key: str) -> torch.Tensor:
    return torch.cat([s[key] for s in (data.train, data.val, data.test) if s is not None])


def test_contract_shapes_dtypes_and_attributes() -> None:
    x, groups, y = _two_level()
    data = GroupedArrays(x, groups, y, level_names=["role", "play"], val_fraction=0.1, test_fraction=0.2, seed=1)
    data.setup()
    for split in (data.train, data.val, data.test):
        assert set(split) == {"x", "y", "groups"}
        assert split["x"].dtype == torch.float32 and split["x"].shape[1:] == (3,)
        assert split["y"].dtype == torch.int64 and split["y"].ndim == 1
        assert split["groups"].dtype == torch.int64 and split["groups"].shape == (len(split["y"]), 2)
    assert (len(data.train["y"]), len(data.val["y"]), len(data.test["y"])) == (84, 12, 24)
    assert data.data_shape == (3,) and data.y_shape == () and data.task == "classification" and data.n_classes == 3
    assert data.level_names == ["role", "play"]
    assert data.group_names == [[f"r{i:02d}" for i in range(12)], ["5", "15", "25", "35"]]  # numeric sort of ints
    assert data.group_parents == [[i % 4 for i in range(12)]]
    assert data.train_group_counts == [[7] * 12, [21] * 4]
    assert data.augment(data.train) is data.train
    # every example is in exactly one split, unchanged
    assert sorted(_all(data, "x")[:, 0].tolist()) == sorted(np.asarray(x, np.float32)[:, 0].tolist())


def test_split_by_example_keeps_every_group_in_training() -> None:
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 9, 40)  # includes one-example groups
    groups = np.repeat(np.arange(40) * 7, sizes)
    x = rng.normal(size=(len(groups), 2))
    data = GroupedArrays(x, groups, groups % 2, val_fraction=0.2, test_fraction=0.3, seed=0)
    data.setup()
    assert min(data.train_group_counts[0]) >= 1
    assert all(c == s for c, s in zip(data.train_group_counts[0], sizes) if s == 1)  # singletons stay in train
    held = len(data.val["y"]) + len(data.test["y"])
    assert 0.3 * len(groups) < held < 0.6 * len(groups)
    # deterministic in seed, different for another seed
    again = GroupedArrays(x, groups, groups % 2, val_fraction=0.2, test_fraction=0.3, seed=0)
    again.setup()
    other = GroupedArrays(x, groups, groups % 2, val_fraction=0.2, test_fraction=0.3, seed=1)
    other.setup()
    assert torch.equal(again.test["x"], data.test["x"]) and not torch.equal(other.test["x"], data.test["x"])


def test_split_by_group_holds_out_whole_groups() -> None:
    x, groups, y = _two_level(n_roles=20)
    data = GroupedArrays(x, groups, y, split="group", val_fraction=0.1, test_fraction=0.2, seed=0)
    data.setup()
    parts = {k: set(getattr(data, k)["groups"][:, 0].tolist()) for k in ("train", "val", "test")}
    assert (len(parts["train"]), len(parts["val"]), len(parts["test"])) == (14, 2, 4)
    assert not parts["train"] & parts["test"] and not parts["train"] & parts["val"] and not parts["val"] & parts["test"]
    assert len(data.group_names[0]) == 20  # unseen groups have ids too
    counts = data.train_group_counts[0]
    assert [g for g in range(20) if counts[g] == 0] == sorted(parts["val"] | parts["test"])
    # split_level=1 holds out whole plays
    plays = GroupedArrays(x, groups, y, split="group", split_level=1, val_fraction=0.0, test_fraction=0.25, seed=0)
    plays.setup()
    test_plays = set(plays.test["groups"][:, 1].tolist())
    assert len(test_plays) == 1 and not test_plays & set(plays.train["groups"][:, 1].tolist())
    assert plays.val is None


def test_split_indices_partition_and_rounding() -> None:
    g = np.repeat(np.arange(5), 10)
    train, val, test = split_indices(g, "example", 0.1, 0.2, seed=4)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(50))
    assert np.bincount(g[test]).tolist() == [2] * 5 and np.bincount(g[val]).tolist() == [1] * 5


@pytest.mark.parametrize(
    ("raw", "ids"),
    [(np.array(["bob", "al", "cy", "al"]), [1, 0, 2, 0]), (np.array([105, 7, 33, 7]), [2, 0, 1, 0]), ([105, 7, 33, 7], [2, 0, 1, 0])],
)
def test_id_mapping_round_trip(raw: object, ids: list[int]) -> None:
    x = np.arange(8.0).reshape(4, 2)
    data = GroupedArrays(x, raw, np.array([0, 1, 0, 1]), val_fraction=0.0, test_fraction=0.0)
    data.setup()
    names = data.group_names[0]
    assert names in (["al", "bob", "cy"], ["7", "33", "105"])  # sorted: strings as text, integers as numbers
    assert data.encode_groups(raw)[:, 0].tolist() == data.train["groups"][:, 0].tolist() == ids
    assert [names[i] for i in data.train["groups"][:, 0]] == [str(r) for r in raw]
    # group_names are raw ids: encoding them gives back 0..G-1
    back = np.array(names) if isinstance(raw[0], str) else np.array([int(n) for n in names])
    assert data.encode_groups(back)[:, 0].tolist() == [0, 1, 2]


def test_encode_groups_unknown_id_and_missing_level() -> None:
    x, groups, y = _two_level()
    data = GroupedArrays(x, {"role": groups[0], "play": groups[1]}, y)
    data.setup()
    assert data.level_names == ["role", "play"]
    ids = data.encode_groups([np.array(["r03", "r11"]), np.array([35, 35])])
    assert ids.tolist() == [[3, 3], [11, 3]]
    with pytest.raises(UnknownGroupError, match=r"'r99' at level 0 \('role'\)") as info:
        data.encode_groups([np.array(["r99"]), np.array([5])])
    assert (info.value.level, info.value.raw_id) == (0, "r99") and isinstance(info.value, ValueError)
    with pytest.raises(UnknownGroupError, match=r"'6' at level 1 \('play'\)"):
        data.encode_groups([np.array(["r01"]), np.array([6])])
    with pytest.raises(ValueError, match=r"1 level\(s\) but the dataset has 2.*missing or extra: \['play'\]"):
        data.encode_groups(np.array(["r01"]))


def test_inconsistent_levels_are_rejected() -> None:
    role = np.array(["KING", "KING", "FOOL", "FOOL"])
    play = np.array(["lear", "hamlet", "lear", "lear"])  # one role name in two plays
    with pytest.raises(ValueError, match=r"group 'KING' of level 0 \('role'\) belongs to 2 groups of level 1 \('play'\)"):
        GroupedArrays(np.zeros((4, 1)), [role, play], np.zeros(4, int), level_names=["role", "play"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"x": np.zeros((5, 2))}, ValueError, r"x has 5 examples but y has 6"),
        ({"y": np.zeros(5, int)}, ValueError, r"x has 6 examples but y has 5"),
        ({"groups": np.array([0, 0, 1, 1, 2])}, ValueError, r"group level 0 \('level0'\) has 5 ids for 6 examples"),
        ({"groups": np.array([0, 0, 1, 1, 2, -1])}, ValueError, r"negative group id -1"),
        ({"groups": np.array([0.0, 0, 1, 1, 2, 2])}, TypeError, r"must be strings or integers"),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0, int), "groups": np.zeros(0, int)}, ValueError, r"x is empty"),
        ({"x": np.array([[np.nan, 0]] * 6)}, ValueError, r"x contains 6 non-finite values \(NaN or inf\)"),
        ({"y": np.array([0.5, 1, 2, 0, 1, 2]), "task": "regression", "y_nan": True}, ValueError, r"y contains 1 non-finite"),
        ({"level_names": ["role", "play"]}, ValueError, r"1 group level\(s\) given but level_names has 2.*level is missing"),
        ({"n_classes": 2}, ValueError, r"y must lie in \[0, n_classes=2\); it spans \[0, 2\]"),
        ({"y": np.array([0, 1, -1, 0, 1, 2])}, ValueError, r"class ids >= 0"),
        ({"split": "random"}, ValueError, r"split='random' is not accepted"),
        ({"split": "group", "split_level": 1}, ValueError, r"split_level=1 but the data has 1 group level"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, ValueError, r"leaves no training data"),
        ({"split": "group", "test_fraction": 0.5, "val_fraction": 0.4}, ValueError, r"no training group would be left"),
        ({"standardize_y": True}, ValueError, r"standardize_y=True needs task='regression'"),
        ({"task": "ranking"}, ValueError, r"task='ranking' is not accepted"),
        ({"groups": {"a": [0] * 6, "b": [[0, 1]] * 6}}, ValueError, r"level 1 must be 1-D"),
    ],
)
def test_bad_input_raises_clear_errors(kwargs: dict, error: type, match: str) -> None:
    args = {"x": np.zeros((6, 2)), "groups": np.array([0, 0, 1, 1, 2, 2]), "y": np.array([0, 1, 2, 0, 1, 2])}
    if kwargs.pop("y_nan", False):
        kwargs["y"] = kwargs["y"].copy()
        kwargs["y"][0] = np.nan
    args.update(kwargs)
    with pytest.raises(error, match=match):
        GroupedArrays(args.pop("x"), args.pop("groups"), args.pop("y"), **args)


def test_standardize_with_training_statistics_and_undo() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(10), 8)
    x = rng.normal(5.0, 3.0, size=(80, 2)) * np.array([1.0, 10.0])
    y = rng.normal(-2.0, 4.0, size=(80, 2))
    data = GroupedArrays(x, groups, y, task="regression", standardize=True, standardize_y=True, seed=2)
    data.setup()
    assert data.y_shape == (2,) and data.n_classes is None and data.train["y"].dtype == torch.float32
    assert torch.allclose(data.train["x"].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(data.train["x"].std(0, unbiased=False), torch.ones(2), atol=1e-5)
    assert torch.allclose(data.train["y"].mean(0), torch.zeros(2), atol=1e-5)
    raw = GroupedArrays(x, groups, y, task="regression", seed=2)  # same split, no scaling
    raw.setup()
    assert torch.allclose(data.feature_mean, raw.train["x"].mean(0)) and torch.allclose(data.target_std, raw.train["y"].std(0, unbiased=False))
    assert torch.allclose(data.unstandardize(data.test["x"]), raw.test["x"], atol=1e-4)
    assert torch.allclose(data.unstandardize_y(data.val["y"]), raw.val["y"], atol=1e-4)
    assert not torch.allclose(data.test["x"].mean(0), torch.zeros(2), atol=1e-3)  # test is not re-centred


def test_token_inputs_and_sequence_targets() -> None:
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 7, size=(30, 5))
    data = GroupedArrays(tokens[:, :4], np.repeat(["a", "b", "c"], 10), tokens[:, 1:], task="sequence", tokens=True,
                         n_classes=7, val_fraction=0.0)
    data.setup()
    assert data.train["x"].dtype == torch.int64 and data.train["y"].shape[1:] == (4,) and data.y_shape == (4,)
    assert data.task == "sequence" and data.n_classes == 7 and data.data_shape == (4,)
    with pytest.raises(ValueError, match="standardize=True needs float features"):
        GroupedArrays(tokens[:, :4], np.repeat(["a", "b", "c"], 10), tokens[:, 4], tokens=True, standardize=True)
    with pytest.raises(TypeError, match="x must hold integer token ids"):
        GroupedArrays(tokens[:, :4] + 0.5, np.repeat(["a", "b", "c"], 10), tokens[:, 4], tokens=True)
