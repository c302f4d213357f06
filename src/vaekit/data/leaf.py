"""LEAF's federated datasets (FEMNIST, Shakespeare) read from the JSON files LEAF writes.

LEAF (Caldas et al., 2018, https://github.com/TalwalkarLab/leaf) stores each dataset as
JSON files with the keys ``users`` (list of user ids), ``num_samples`` (examples per user),
``user_data`` (``{user: {"x": [...], "y": [...]}}``) and, for Shakespeare, ``hierarchies``
(the play of each user). Its preprocessing writes ``data/<name>/data/all_data/*.json`` and
its split script ``data/<name>/data/train/*.json`` and ``test/*.json``. Pass the folder
that holds these subfolders as ``root`` (or place it at ``$VAEKIT_DATA/leaf/<name>``).

The character vocabulary is LEAF's ``ALL_LETTERS`` (80 characters, from
``models/utils/language_utils.py``). A character outside it maps to :data:`UNKNOWN_INDEX`
(79, ``"}"``): LEAF's ``letter_to_vec`` one-hot encodes ``ALL_LETTERS.find(c) == -1`` at
index -1, the last character, so this matches what LEAF's models were trained on.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vaekit.data.download import DatasetNotFoundError, search_dirs
from vaekit.data.grouped import GroupedData, GroupedSource

__all__ = ["ALL_LETTERS", "UNKNOWN_INDEX", "LEAFFemnist", "LEAFShakespeare", "decode_text", "encode_text", "read_leaf_json"]

#: LEAF's character vocabulary (``models/utils/language_utils.py``), 80 characters.
ALL_LETTERS = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
#: Index of characters outside :data:`ALL_LETTERS` (``"}"``, where LEAF's one-hot of index -1 lands).
UNKNOWN_INDEX = len(ALL_LETTERS) - 1

_LUT = np.full(128, UNKNOWN_INDEX, dtype=np.int64)
for _i, _c in enumerate(ALL_LETTERS):
    _LUT[ord(_c)] = _i


def encode_text(text: str) -> np.ndarray:
    """Token ids of a string in LEAF's vocabulary (unknown characters -> :data:`UNKNOWN_INDEX`).

    Parameters
    ----------
    text : str

    Returns
    -------
    ndarray of shape (len(text),), int64

    Examples
    --------
    >>> encode_text("Hi!\\u00e9").tolist()
    [32, 61, 2, 79]
    >>> decode_text(encode_text("to be"))
    'to be'
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    return np.where(codes < 128, _LUT[np.minimum(codes, 127)], UNKNOWN_INDEX)


def decode_text(ids: Any) -> str:
    """The string of token ids (array, list or tensor of ints in [0, 80))."""
    return "".join(ALL_LETTERS[int(i)] for i in np.asarray(ids).reshape(-1))


def read_leaf_json(paths: Sequence[Path]) -> tuple[list[str], dict[str, str] | None, dict[str, dict[str, list]]]:
    """Read LEAF JSON files and merge them by user.

    Parameters
    ----------
    paths : sequence of Path
        LEAF JSON files (read in the given order).

    Returns
    -------
    users : list of str
        User ids in order of first appearance.
    hierarchies : dict of str to str or None
        The ``hierarchies`` entry of each user (its play, for Shakespeare) where every file
        has a ``hierarchies`` list aligned with its ``users``; ``None`` otherwise.
    data : dict of str to {"x": list, "y": list}
        Each user's examples, concatenated over files.

    Raises
    ------
    ValueError
        A file is not LEAF JSON (missing keys, ``num_samples`` not matching ``x``/``y``);
        the message names the file and user.
    """
    users: list[str] = []
    data: dict[str, dict[str, list]] = {}
    hierarchies: dict[str, str] | None = {}
    for path in paths:
        try:
            content = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read {path} as JSON: {exc}") from exc
        missing = [k for k in ("users", "num_samples", "user_data") if not isinstance(content, dict) or k not in content]
        if missing:
            raise ValueError(f"{path} is not a LEAF JSON file: it lacks {missing} (needs users, num_samples, user_data)")
        file_users, counts = content["users"], content["num_samples"]
        if len(file_users) != len(counts):
            raise ValueError(f"{path}: {len(file_users)} users but {len(counts)} num_samples entries")
        hier = content.get("hierarchies")
        if hierarchies is not None and isinstance(hier, list) and len(hier) == len(file_users):
            hierarchies.update({str(u): str(h) for u, h in zip(file_users, hier)})
        else:  # absent, or misaligned (LEAF's split by sample keeps all hierarchies but drops users)
            hierarchies = None
        for user, count in zip(file_users, counts):
            entry = content["user_data"].get(user)
            if not isinstance(entry, dict) or "x" not in entry or "y" not in entry:
                raise ValueError(f"{path}: user {user!r} has no user_data entry with 'x' and 'y'")
            if not len(entry["x"]) == len(entry["y"]) == count:
                raise ValueError(
                    f"{path}: user {user!r} has num_samples={count} but {len(entry['x'])} x and {len(entry['y'])} y"
                )
            key = str(user)
            if key not in data:
                users.append(key)
                data[key] = {"x": [], "y": []}
            data[key]["x"].extend(entry["x"])
            data[key]["y"].extend(entry["y"])
    return users, hierarchies, data


def _json_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.is_file())


class _LEAFData(GroupedData):
    """Shared file handling of the LEAF loaders: root, the train/test/all_data folders."""

    _folder = ""

    def _init_leaf(self, root: str | None, split: str, val_fraction: float, test_fraction: float, seed: int) -> None:
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a str path or None; got {root!r} of type {type(root).__name__}")
        self._init_split(split, val_fraction, test_fraction, seed, splits=("leaf", "example", "group"))
        self.root = None if root is None else os.fspath(root)

    def _root(self) -> Path:
        if self.root is not None:
            path = Path(self.root).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"root={self.root!r} does not exist (or is not a folder)")
            return path
        dirs = search_dirs(None)
        for folder, _ in dirs:
            if (folder / "leaf" / self._folder).is_dir():
                return folder / "leaf" / self._folder
        looked = ", ".join(f"{folder / 'leaf' / self._folder} ({origin})" for folder, origin in dirs)
        raise DatasetNotFoundError(
            f"LEAF {self._folder} not found (looked in {looked}). Generate it with LEAF's preprocess.sh and pass "
            f"root=<leaf>/data/{self._folder}/data (the folder holding train/ and test/, or all_data/)"
        )

    def _files(self) -> tuple[list[Path], list[Path]]:
        """(files read as training data, files forming the predefined test split)."""
        root = self._root()
        train, test, everything = (_json_files(root / sub) for sub in ("train", "test", "all_data"))
        if self.split == "leaf":
            if not train or not test:
                raise FileNotFoundError(
                    f"split='leaf' reads LEAF's own split from {root}/train/*.json and {root}/test/*.json; found "
                    f"{len(train)} and {len(test)} files (use split='example' or 'group' to split all_data yourself)"
                )
            return train, test
        pooled = everything or train + test
        if not pooled:
            raise FileNotFoundError(f"no LEAF JSON files in {root}/all_data, {root}/train or {root}/test")
        return pooled, []

    def _read(self) -> tuple[list[str], dict[str, str] | None, dict[str, list], np.ndarray, np.ndarray]:
        """Users, hierarchies, examples ({"x", "y"} lists), each example's user, predefined-test mask."""
        train_files, test_files = self._files()
        users, hier, data = read_leaf_json(train_files)
        t_users, t_hier, t_data = read_leaf_json(test_files)
        mask = [np.zeros(len(data[u]["y"]), bool) for u in users] + [np.ones(len(t_data[u]["y"]), bool) for u in t_users]
        merged_users = [(u, data[u]) for u in users] + [(u, t_data[u]) for u in t_users]
        hier = {**hier, **t_hier} if hier is not None and t_hier is not None else None
        names = [u for u, _ in merged_users]
        if not names or sum(len(d["y"]) for _, d in merged_users) == 0:
            raise ValueError(f"{type(self).__name__}: the LEAF files hold no examples")
        data_list = {"x": [v for _, d in merged_users for v in d["x"]], "y": [v for _, d in merged_users for v in d["y"]]}
        user_of = np.concatenate([np.full(len(d["y"]), u, dtype=object) for u, d in merged_users])
        return names, hier, data_list, user_of.astype(str), np.concatenate(mask)


class LEAFFemnist(_LEAFData):
    """LEAF's FEMNIST: 28x28 handwritten characters of 62 classes, grouped by writer.

    ``x`` has shape (n, 1, 28, 28), float32 as LEAF stores it (grey levels / 255: white
    background near 1, dark strokes; ``invert=True`` gives MNIST's dark background).
    ``y`` holds LEAF's classes 0..61 (digits, then upper-case, then lower-case letters).
    One group level, ``"writer"``.

    Parameters
    ----------
    root : str, optional
        LEAF's ``data/femnist/data`` folder (holding ``train/`` and ``test/`` or
        ``all_data/``); default ``$VAEKIT_DATA/leaf/femnist``.
    split : {"leaf", "example", "group"}
        "leaf": LEAF's own train/test files (``test_fraction`` unused; validation is held
        out of ``train/`` within each writer). "example"/"group": all files pooled and split
        here (see :class:`~vaekit.data.grouped.GroupedData`).
    val_fraction, test_fraction : float
    seed : int
    invert : bool
        Use ``1 - x``.

    Examples
    --------
    >>> data = LEAFFemnist("leaf/data/femnist/data", split="leaf")  # doctest: +SKIP
    >>> data.setup(); data.train["x"].shape[1:], data.n_classes  # doctest: +SKIP
    (torch.Size([1, 28, 28]), 62)
    """

    _folder = "femnist"

    def __init__(
        self,
        root: str | None = None,
        *,
        split: Literal["leaf", "example", "group"] = "leaf",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        invert: bool = False,
    ) -> None:
        if not isinstance(invert, bool):
            raise TypeError(f"invert must be a bool; got {invert!r}")
        self._init_leaf(root, split, val_fraction, test_fraction, seed)
        self.invert = invert

    def _load_source(self) -> GroupedSource:
        _, _, data, users, mask = self._read()
        try:
            x = np.asarray(data["x"], dtype=np.float32)
            y = np.asarray(data["y"], dtype=np.int64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"LEAF FEMNIST x must be lists of 784 numbers and y integers: {exc}") from exc
        if x.ndim != 2 or x.shape[1] != 784:
            raise ValueError(f"LEAF FEMNIST images must have 784 values (28x28); got x of shape {x.shape}")
        x_t = torch.from_numpy(x).reshape(-1, 1, 28, 28)
        if self.invert:
            x_t = 1.0 - x_t
        return GroupedSource(x_t, torch.from_numpy(y), [users], ["writer"], "classification", 62,
                             mask if self.split == "leaf" else None)


class LEAFShakespeare(_LEAFData):
    """LEAF's Shakespeare: next-character prediction, grouped by role and play.

    Each example is LEAF's 80-character string ``x`` (token ids, shape (n, 80), int64)
    and the character that follows, ``y`` (int64 (n,)); 80 classes (:data:`ALL_LETTERS`).
    Two group levels, lowest first: ``"role"`` (LEAF's user id) and ``"play"``.

    The play of a user: LEAF names users ``re.sub(r"\\W+", "_", (play + "_" + role).replace(" ", "_"))``
    and writes each user's play to the ``hierarchies`` list. That list is used when every
    file has it aligned with its users; otherwise (LEAF's split by sample can misalign it)
    the play is the longest title in ``plays`` whose LEAF-normalized form + ``"_"`` starts
    the user id. Without either, :meth:`setup` raises and says so.

    Parameters
    ----------
    root : str, optional
        LEAF's ``data/shakespeare/data`` folder; default ``$VAEKIT_DATA/leaf/shakespeare``.
    split : {"leaf", "example", "group"}
        As for :class:`LEAFFemnist`.
    val_fraction, test_fraction : float
    seed : int
    split_level : int
        Level whose groups ``split="group"`` holds out (0 roles, 1 plays).
    plays : list of str, optional
        Play titles, to derive plays from user ids when the files have no usable
        ``hierarchies``.
    """

    _folder = "shakespeare"

    def __init__(
        self,
        root: str | None = None,
        *,
        split: Literal["leaf", "example", "group"] = "leaf",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        split_level: int = 0,
        plays: list[str] | None = None,
    ) -> None:
        if plays is not None and (not isinstance(plays, (list, tuple)) or not all(isinstance(p, str) for p in plays)):
            raise TypeError(f"plays must be a list of play titles (str) or None; got {plays!r}")
        self._init_leaf(root, split, val_fraction, test_fraction, seed)
        if split_level not in (0, 1):
            raise ValueError(f"split_level={split_level!r} is not accepted; use 0 (roles) or 1 (plays)")
        self.split_level, self.plays = split_level, None if plays is None else list(plays)

    def _play_of(self, users: list[str], hierarchies: dict[str, str] | None) -> dict[str, str]:
        if hierarchies is not None and all(u in hierarchies for u in users):
            return {u: hierarchies[u] for u in users}
        if self.plays is None:
            raise ValueError(
                "the LEAF Shakespeare files have no 'hierarchies' list aligned with their users, so the play of each "
                "role is unknown; pass plays=[...] (the play titles) to derive it from the user ids"
            )
        prefixes = sorted(((re.sub(r"\W+", "_", p.replace(" ", "_")) + "_", p) for p in self.plays), key=lambda t: -len(t[0]))
        out = {}
        for user in users:
            match = next((p for prefix, p in prefixes if user.startswith(prefix)), None)
            if match is None:
                raise ValueError(f"user {user!r} starts with none of the {len(self.plays)} play titles in plays")
            out[user] = match
        return out

    def _load_source(self) -> GroupedSource:
        names, hier, data, users, mask = self._read()
        plays = self._play_of(names, hier)
        lengths = {len(s) for s in data["x"] if isinstance(s, str)}
        if len(lengths) != 1 or not all(isinstance(s, str) for s in data["x"]):
            raise ValueError(f"LEAF Shakespeare x must be strings of one length (80); found lengths {sorted(lengths)[:5]}")
        if not all(isinstance(c, str) and len(c) == 1 for c in data["y"]):
            bad = next(c for c in data["y"] if not (isinstance(c, str) and len(c) == 1))
            raise ValueError(f"LEAF Shakespeare y must be single characters; found {bad!r}")
        x = encode_text("".join(data["x"])).reshape(len(data["x"]), -1)
        y = encode_text("".join(data["y"]))
        play = np.array([plays[u] for u in users], dtype=str)
        return GroupedSource(torch.from_numpy(x), torch.from_numpy(y), [users, play], ["role", "play"],
                             "classification", len(ALL_LETTERS), mask if self.split == "leaf" else None)
