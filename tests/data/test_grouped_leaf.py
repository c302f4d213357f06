"""LEAF's FEMNIST and Shakespeare JSON loaders, on tiny files written in LEAF's exact format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.data.leaf import ALL_LETTERS, UNKNOWN_INDEX, LEAFFemnist, LEAFShakespeare, decode_text, encode_text


def _write(path: Path, users: list[str], user_data: dict, hierarchies: list[str] | None = None) -> None:
    """One LEAF JSON file, keys as LEAF's scripts write them."""
    content: dict = {"users": users}
    if hierarchies is not None:
        content["hierarchies"] = hierarchies
    content["num_samples"] = [len(user_data[u]["y"]) for u in users]
    content["user_data"] = user_data
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def _femnist(root: Path, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """train/ (two files) and test/ of 3 writers; returns the arrays written per (split, writer)."""
    rng = np.random.default_rng(seed)
    written: dict[str, dict[str, np.ndarray]] = {}
    for split, sizes in (("train", {"f0001_14": 5, "f0002_33": 3, "f0003_07": 4}), ("test", {"f0001_14": 2, "f0002_33": 1, "f0003_07": 1})):
        data = {}
        for user, n in sizes.items():
            x = rng.random((n, 784)).round(4)
            y = rng.integers(0, 62, n)
            data[user] = {"x": x.tolist(), "y": y.tolist()}
            written[f"{split}/{user}"] = {"x": x, "y": y}
        users = list(sizes)
        if split == "train":  # LEAF writes at most 50 (by user) or 100 writers per file: use two files
            _write(root / split / "all_data_0_niid_0_keep_0_train_9.json", users[:2], {u: data[u] for u in users[:2]})
            _write(root / split / "all_data_1_niid_0_keep_0_train_9.json", users[2:], {u: data[u] for u in users[2:]})
        else:
            _write(root / split / "all_data_niid_0_keep_0_test_9.json", users, data)
    return written


def test_femnist_leaf_split(tmp_path: Path) -> None:
    written = _femnist(tmp_path)
    data = LEAFFemnist(str(tmp_path), split="leaf", val_fraction=0.0, seed=0)
    data.setup()
    assert data.data_shape == (1, 28, 28) and data.n_classes == 62 and data.level_names == ["writer"]
    assert data.group_names == [["f0001_14", "f0002_33", "f0003_07"]]
    assert data.train["x"].dtype == torch.float32 and data.train["y"].dtype == torch.int64
    assert (len(data.train["y"]), data.val, len(data.test["y"])) == (12, None, 4)
    assert data.train_group_counts == [[5, 3, 4]]
    # the test split is exactly LEAF's test files, pixels in row-major 28x28 order
    first = data.test["groups"][:, 0] == 0
    expected = torch.from_numpy(written["test/f0001_14"]["x"].astype(np.float32)).reshape(-1, 1, 28, 28)
    assert torch.equal(data.test["x"][first], expected)
    assert data.test["y"][first].tolist() == written["test/f0001_14"]["y"].tolist()
    inverted = LEAFFemnist(str(tmp_path), split="leaf", val_fraction=0.0, invert=True)
    inverted.setup()
    assert torch.allclose(inverted.test["x"], 1.0 - data.test["x"])


def test_femnist_pooled_split_by_group(tmp_path: Path) -> None:
    _femnist(tmp_path)
    data = LEAFFemnist(str(tmp_path), split="group", val_fraction=0.0, test_fraction=0.34, seed=0)
    data.setup()
    test_writers = set(data.test["groups"][:, 0].tolist())
    assert len(test_writers) == 1 and not test_writers & set(data.train["groups"][:, 0].tolist())
    assert len(data.train["y"]) + len(data.test["y"]) == 16  # train/ and test/ pooled per writer


def test_femnist_bad_files(tmp_path: Path) -> None:
    (tmp_path / "bad" / "train").mkdir(parents=True)
    (tmp_path / "bad" / "train" / "a.json").write_text(
        json.dumps({"users": ["u"], "num_samples": [3], "user_data": {"u": {"x": [[0.0] * 784] * 2, "y": [1, 2]}}})
    )
    with pytest.raises(FileNotFoundError, match=r"split='leaf' reads LEAF's own split.*found 1 and 0 files"):
        LEAFFemnist(str(tmp_path / "bad")).setup()
    with pytest.raises(ValueError, match=r"a.json: user 'u' has num_samples=3 but 2 x and 2 y"):
        LEAFFemnist(str(tmp_path / "bad"), split="example").setup()
    (tmp_path / "keys" / "all_data").mkdir(parents=True)
    (tmp_path / "keys" / "all_data" / "b.json").write_text(json.dumps({"users": ["u"], "user_data": {}}))
    with pytest.raises(ValueError, match=r"b.json is not a LEAF JSON file: it lacks \['num_samples'\]"):
        LEAFFemnist(str(tmp_path / "keys"), split="example").setup()
    _write(tmp_path / "short" / "all_data" / "c.json", ["u"], {"u": {"x": [[0.5] * 100] * 2, "y": [1, 2]}})
    with pytest.raises(ValueError, match=r"784 values \(28x28\); got x of shape \(2, 100\)"):
        LEAFFemnist(str(tmp_path / "short"), split="example").setup()
    with pytest.raises(ValueError, match=r"split='random' is not accepted; use one of \['leaf', 'example', 'group'\]"):
        LEAFFemnist(str(tmp_path), split="random")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LEAFFemnist(str(tmp_path / "missing")).setup()


def test_vocabulary_is_leafs() -> None:
    assert len(ALL_LETTERS) == 80 and ALL_LETTERS[0] == "\n" and ALL_LETTERS[-1] == "}" and UNKNOWN_INDEX == 79
    ids = encode_text("Ay, my lord.\n\u00e6")
    assert ids.tolist() == [ALL_LETTERS.find(c) for c in "Ay, my lord.\n"] + [79]
    assert decode_text(torch.from_numpy(ids[:-1])) == "Ay, my lord.\n"


# user ids as LEAF's play_and_character writes them: re.sub(r"\W+", "_", (play + "_" + role).replace(" ", "_"))
_PLAYS = {"THE_TRAGEDY_OF_KING_LEAR_KING_LEAR": "THE TRAGEDY OF KING LEAR",
          "THE_TRAGEDY_OF_KING_LEAR_FOOL": "THE TRAGEDY OF KING LEAR",
          "HAMLET__PRINCE_OF_DENMARK_HAMLET": "HAMLET, PRINCE OF DENMARK"}


def _shakespeare(root: Path, hierarchies: bool) -> None:
    text = {u: (u.lower().replace("_", " ") + " speaks, and speaks again! " * 4) for u in _PLAYS}
    for split, (lo, hi) in (("train", (0, 6)), ("test", (6, 8))):
        data = {u: {"x": [t[i : i + 80] for i in range(lo, hi)], "y": [t[i + 80] for i in range(lo, hi)]} for u, t in text.items()}
        users = list(_PLAYS)
        _write(root / split / f"all_data_{split}_9.json", users, data, [_PLAYS[u] for u in users] if hierarchies else None)


def test_shakespeare_two_levels_from_hierarchies(tmp_path: Path) -> None:
    _shakespeare(tmp_path, hierarchies=True)
    data = LEAFShakespeare(str(tmp_path), val_fraction=0.0)
    data.setup()
    assert data.level_names == ["role", "play"] and data.task == "classification" and data.n_classes == 80
    assert data.train["x"].shape == (18, 80) and data.train["x"].dtype == torch.int64 and data.test["y"].shape == (6,)
    assert data.group_names == [sorted(_PLAYS), ["HAMLET, PRINCE OF DENMARK", "THE TRAGEDY OF KING LEAR"]]
    assert data.group_parents == [[0, 1, 1]]  # HAMLET_... -> Hamlet; both Lear roles -> Lear
    row = 0
    role = data.group_names[0][int(data.train["groups"][row, 0])]
    line = role.lower().replace("_", " ") + " speaks, and speaks again! " * 4
    assert decode_text(data.train["x"][row]) == line[:80] and decode_text(data.train["y"][row : row + 1]) == line[80]


def test_shakespeare_plays_derived_from_user_ids(tmp_path: Path) -> None:
    _shakespeare(tmp_path, hierarchies=False)
    with pytest.raises(ValueError, match=r"no 'hierarchies' list aligned with their users.*pass plays="):
        LEAFShakespeare(str(tmp_path)).setup()
    data = LEAFShakespeare(str(tmp_path), val_fraction=0.0, plays=["THE TRAGEDY OF KING LEAR", "HAMLET, PRINCE OF DENMARK"])
    data.setup()
    assert data.group_names[1] == ["HAMLET, PRINCE OF DENMARK", "THE TRAGEDY OF KING LEAR"]
    assert data.group_parents == [[0, 1, 1]]
    with pytest.raises(ValueError, match=r"user 'HAMLET__PRINCE_OF_DENMARK_HAMLET' starts with none of the 1 play titles"):
        LEAFShakespeare(str(tmp_path), plays=["THE TRAGEDY OF KING LEAR"]).setup()
    with pytest.raises(TypeError, match="plays must be a list of play titles"):
        LEAFShakespeare(str(tmp_path), plays="HAMLET")  # type: ignore[arg-type]


def test_shakespeare_misaligned_hierarchies_are_not_trusted(tmp_path: Path) -> None:
    """LEAF's split by sample keeps every user's hierarchy but drops users with < 2 samples."""
    _shakespeare(tmp_path, hierarchies=True)
    path = tmp_path / "test" / "all_data_test_9.json"
    content = json.loads(path.read_text())
    content["hierarchies"].append("THE TEMPEST")  # one more hierarchy than users
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="no 'hierarchies' list aligned"):
        LEAFShakespeare(str(tmp_path)).setup()
