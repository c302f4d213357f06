"""A table file as a dataset (:class:`Table`): CSV/TSV (``.gz`` too), Parquet or NPZ, columns by name.

With ``groups`` the table is grouped data (the contract of :mod:`vaekit.data.grouped`, for
:class:`~vaekit.models.group.GroupPredictor`); without, it is a plain numeric table for VAEs
(the :class:`~vaekit.data.DataModule` contract: float32 tensors of shape (n, d)).

Reading (no pandas needed for text files):

- ``.csv``, ``.tsv``, ``.tab`` (optionally ``.gz``): Python's :mod:`csv` module, UTF-8
  (a byte-order mark is skipped), the first row holds the column names; ``delimiter``
  defaults to ``","`` (``.csv``) or a tab (``.tsv``/``.tab``). A column is numeric when
  every value parses as a number.
- ``.parquet`` / ``.pq``: pandas with pyarrow (``pip install pandas pyarrow``); an error
  naming them when they are missing.
- ``.npz``: every array of length n is a column (read with ``allow_pickle=False``); a 2-D
  numeric array (n, k) used as a feature gives k columns ``name[0]`` ... ``name[k-1]``.

Missing values (an empty field, ``NA``, ``NaN``, ``null``, ``None``, ``N/A``, ``#N/A`` in a
text file, any case; NaN or null in NPZ/Parquet) and infinities in a column that is used are
refused, naming the column and the first such row (1-based data row and, for text files,
the line of the file); so are numbers beyond the float32 range. Fields of text files are
read with surrounding blanks stripped.
"""

from __future__ import annotations

import csv
import gzip
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vaekit.data._paths import PathGroupedData, absolute_path
from vaekit.data.arrays import split_by_fraction
from vaekit.data.base import DataModule, Splits
from vaekit.data.formats import load_npz
from vaekit.data.grouped import GroupedSource

__all__ = ["MISSING_TOKENS", "SUFFIXES", "Table"]

#: Text values read as missing (compared after stripping blanks, case-insensitive).
MISSING_TOKENS = ("", "na", "nan", "null", "none", "n/a", "#n/a")
#: Accepted file name endings, by reader.
SUFFIXES = {"text": (".csv", ".tsv", ".tab", ".csv.gz", ".tsv.gz", ".tab.gz"), "parquet": (".parquet", ".pq"),
            "npz": (".npz",)}
_TASKS = ("regression", "classification")


def _kind(path: str) -> str | None:
    name = path.lower()
    for kind, endings in SUFFIXES.items():
        if name.endswith(endings):
            return kind
    return None


def _names(name: str, value: Any, *, allow_none: bool = True) -> list[str] | None:
    """A list of column names (``None`` passes when allowed), checked: strings, distinct."""
    if value is None and allow_none:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{name} must be a list of column names such as ['x1', 'x2']; got {value!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{name}={list(value)!r} names a column twice")
    return list(value)


@dataclass
class _Frame:
    """A table as read: column names, their values, and the file line of every data row."""

    path: str
    names: list[str]
    columns: dict[str, np.ndarray]  # text columns: str arrays; otherwise numeric (or str) arrays
    text: bool  # True for CSV/TSV (every column is text until parsed)
    lines: np.ndarray | None = None

    def where(self, row: int) -> str:
        line = f", file line {int(self.lines[row])}" if self.lines is not None else ""
        return f"data row {row + 1}{line}"

    def column(self, name: str) -> np.ndarray:
        return self.columns[name]


def _read_text(path: Path, delimiter: str) -> _Frame:
    opener: Callable[..., Any] = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path} is empty; a table needs a first row of column names")
            names = [h.strip() for h in header]
            rows, lines = [], []
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue  # blank line
                if len(row) != len(names):
                    raise ValueError(
                        f"{path}, line {reader.line_num}: {len(row)} fields, but the header has {len(names)} "
                        f"({names}); check the delimiter (delimiter={delimiter!r}) and the quoting"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise ValueError(f"cannot read {path}: not UTF-8 text ({e})") from e
    except (OSError, EOFError, zlib.error, csv.Error) as e:
        raise ValueError(f"cannot read {path}: corrupt or truncated file ({e})") from e
    _check_unique(path, names)
    if not rows:
        raise ValueError(f"{path} has column names {names} but no data rows")
    columns = {n: np.array([r[j].strip() for r in rows], dtype=str) for j, n in enumerate(names)}
    return _Frame(str(path), names, columns, True, np.asarray(lines, dtype=np.int64))


def _read_parquet(path: Path) -> _Frame:
    try:
        import pandas as pd
    except ImportError as e:
        raise ImportError(f"reading {path} (Parquet) needs pandas and pyarrow: pip install pandas pyarrow "
                          f"(or save the table as CSV)") from e
    try:
        frame = pd.read_parquet(path)
    except ImportError as e:
        raise ImportError(f"reading {path} (Parquet) needs pyarrow: pip install pyarrow ({e})") from e
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path}: not a readable Parquet file ({e})") from e
    names = [str(c) for c in frame.columns]
    _check_unique(path, names)
    columns = {}
    for name, (_, series) in zip(names, frame.items()):
        if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
            columns[name] = series.to_numpy(dtype=np.float64, na_value=np.nan)
            if pd.api.types.is_integer_dtype(series.dtype) and not series.isna().any():
                columns[name] = series.to_numpy(dtype=np.int64)
        else:  # strings, categories, mixed objects: as text, nulls as missing
            values = series.astype(object)
            columns[name] = np.array(["" if v is None or (isinstance(v, float) and v != v) else str(v).strip()
                                      for v in values], dtype=str)
    return _Frame(str(path), names, columns, False)


def _read_npz(path: Path) -> _Frame:
    arrays = {k: v for k, v in load_npz(path).items() if v.ndim >= 1}
    names = list(arrays)
    columns = {}
    for name, array in arrays.items():
        if array.dtype.kind == "S":
            array = np.char.decode(array, "utf-8")
        if array.dtype.kind == "U":
            array = np.char.strip(array)
        columns[name] = array
    return _Frame(str(path), names, columns, False)


def _check_unique(path: Path, names: list[str]) -> None:
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise ValueError(f"{path} has duplicate column names {sorted(seen)}; give every column its own name")


def _is_text(values: np.ndarray) -> bool:
    return values.dtype.kind == "U"


def _check_present(frame: _Frame, name: str, values: np.ndarray, raw: np.ndarray | None = None) -> None:
    """Refuse missing and non-finite values, naming the column, the first row and the count.

    ``raw`` (the column as read) is what the message shows when ``values`` are numbers parsed from it.
    """
    if _is_text(values):
        bad = np.isin(np.char.lower(values), MISSING_TOKENS)
    elif values.dtype.kind == "f":
        bad = ~np.isfinite(values)
    else:
        return
    if bad.ndim > 1:
        bad = bad.reshape(len(bad), -1).any(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = (values if raw is None else raw)[row].tolist()  # a Python value (or list): repr without numpy types
        what = "a missing value" if _is_text(values) or np.isnan(values[row]).any() else "a non-finite value"
        raise ValueError(
            f"column {name!r} of {frame.path} has {what} ({shown!r}) at {frame.where(row)} "
            f"({int(bad.sum())} such row(s) in all); fill or drop those rows first (vaekit does not impute)"
        )


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    """Float64 values of a column, or None when some value is not a number."""
    if not _is_text(values):
        return values.astype(np.float64) if values.dtype.kind in "biuf" else None
    try:
        return np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return None


def _finite_numbers(frame: _Frame, name: str, values: np.ndarray) -> np.ndarray | None:
    """:func:`_as_numbers`, with infinities (``inf``, an overflow such as ``1e999``) and values beyond the
    float32 range (infinite once in a tensor) refused by column and row."""
    numbers = _as_numbers(values)
    if numbers is None:
        return None
    _check_present(frame, name, numbers, raw=values)
    big = np.abs(numbers) > np.finfo(np.float32).max
    if big.ndim > 1:
        big = big.reshape(len(big), -1).any(axis=1)
    if big.any():
        row = int(np.flatnonzero(big)[0])
        raise ValueError(
            f"column {name!r} of {frame.path} has a value beyond the float32 range (|v| > 3.4e38) "
            f"({values[row].tolist()!r}) at {frame.where(row)} ({int(big.sum())} such row(s) in all); "
            f"rescale the column"
        )
    return numbers


def _as_int(value: str) -> int | None:
    """The integer a text id writes exactly (``str(int(value)) == value``: not ``01``, ``+1``, ``1_0``), else None."""
    try:
        number = int(value)
    except ValueError:
        return None
    return number if str(number) == value else None


def _as_keys(values: np.ndarray) -> np.ndarray:
    """Ids or categories of a column: int64 when every value is an integer in [0, 2**63), else str.

    One normalisation for every format: a number is named by its canonical text, ``str(int(v))``
    for an integer or an integral float (``-3`` and ``-3.0`` both give ``"-3"``), ``repr(v)``
    for any other float (``"0.5"``). A text value (CSV/TSV, or a text column of NPZ/Parquet) is
    an integer only when it is one written canonically (``"7"``, ``"-3"``); any other text,
    such as ``"07"``, ``"7.0"``, ``"+7"`` or ``"7_0"``, is kept as it is, so distinct values
    always stay distinct. Integer ids that do not fit int64 are kept as their exact text.

    Examples
    --------
    >>> _as_keys(np.array(["10", "2", "10"])).tolist()
    [10, 2, 10]
    >>> _as_keys(np.array(["01", "1", "1_0", "10"])).tolist()
    ['01', '1', '1_0', '10']
    >>> _as_keys(np.array([-3.0, 2.0])).tolist(), _as_keys(np.array(["-3", "2"])).tolist()
    (['-3', '2'], ['-3', '2'])
    """
    if _is_text(values):
        ints = [_as_int(v) for v in values.tolist()]
        if ints and all(i is not None and 0 <= i < 2**63 for i in ints):
            return np.array(ints, dtype=np.int64)
        return values
    if values.dtype.kind in "biu":
        if not len(values) or (int(values.min()) >= 0 and int(values.max()) < 2**63):
            return values.astype(np.int64)
        return np.array([str(int(v)) for v in values.tolist()], dtype=str)
    if values.dtype.kind == "f":
        if len(values) and (values == np.round(values)).all() and values.min() >= 0 and values.max() < 2**53:
            return values.astype(np.int64)
        return np.array([str(int(v)) if v.is_integer() else repr(v) for v in values.astype(np.float64).tolist()],
                        dtype=str)
    return values.astype(str)


class Table(PathGroupedData):
    """A dataset read from a table file, its columns chosen by name.

    With ``groups`` (one or more columns, lowest level first) it is grouped data as
    :class:`~vaekit.data.grouped.GroupedArrays` builds it: batch dicts ``{"x", "y", "groups"}``
    for :class:`~vaekit.models.group.GroupPredictor`, with the same id mapping, splits (by
    example within groups, or by whole groups) and standardization. Without ``groups`` it
    is a plain numeric table for VAEs: ``train``/``val``/``test`` are float32 tensors of
    shape (n, d) and ``target``, if given, becomes the class labels (``train_labels``...).

    Columns:

    - ``features`` (default: every column but the target and the group columns) form ``x``,
      in the order given. A numeric column is one float32 feature. A non-numeric column (or
      one listed in ``categorical``) is one-hot encoded: one 0/1 feature per category, the
      categories sorted (integers numerically, anything else as text) over the whole file,
      named ``"column=category"`` in :attr:`feature_names`. A column whose values are
      mostly numbers but not all is refused (a typo would otherwise become categories),
      unless it is listed in ``categorical``.
    - ``target``: with groups and ``task="regression"`` a numeric column (float32 ``y``);
      with ``task="classification"``, or without groups, class ids: integers >= 0 are kept,
      anything else (text) is numbered in sorted order and the names kept in
      :attr:`class_names`.
    - ``groups``: any type, named the same way in every format. Integers >= 0 are ids as
      numbers: integer and integral float numbers (``3``, ``3.0`` in NPZ/Parquet) and text
      written as a plain integer (``"3"``); anything else is an id as text: other text kept
      exactly as it is (``"03"``, ``"3.0"``, ``"+3"``, ``"3_0"`` and ``"3"`` are five ids),
      negative or integral numbers beyond int64 as their integer text (``-3.0`` and ``"-3"``
      are both ``"-3"``), fractional ones as ``repr`` (``"0.5"``). The raw ids are mapped as
      in :mod:`vaekit.data.grouped_ids` (``group_names``); the level names are the column
      names.

    Parameters
    ----------
    path : str
        ``.csv``/``.tsv``/``.tab`` (optionally ``.gz``), ``.parquet``/``.pq`` or ``.npz``. It is
        made absolute when the object is built (and recorded so in a run's ``config.yaml``),
        so a run can be evaluated from any directory. Nothing is read before :meth:`setup`.
    target : str, optional
        The column predicted (grouped), or the labels (without groups).
    features : list of str, optional
        Columns of ``x``; default every column but ``target`` and ``groups``.
    groups : list of str, optional
        Group columns, lowest level first (e.g. ``["student", "school"]``); none: a plain table.
    categorical : list of str, optional
        Feature columns to one-hot encode even when numeric (non-numeric ones always are).
    task : {"regression", "classification"}
        What ``y`` holds (grouped tables only; needs ``target``).
    delimiter : str, optional
        Field separator of a text file; default ``","`` for ``.csv``, a tab for ``.tsv``/``.tab``.
    split : {"example", "group"}
        Hold out examples within every group, or whole groups of level ``split_level``
        (grouped tables); a plain table is split by example.
    split_level : int
        Level whose groups ``split="group"`` holds out, in ``0..len(groups) - 1``.
    val_fraction, test_fraction : float
        Fractions in [0, 1) held out for validation and test.
    seed : int
        Seed of the split.
    standardize : bool
        Standardize ``x`` (one-hot columns included) with the training split's mean and std.
    standardize_y : bool
        Standardize a regression ``y`` likewise (grouped tables).

    Raises
    ------
    ValueError, TypeError
        In the constructor, for bad arguments (an unknown suffix, a column named twice or in
        two roles, a fraction outside [0, 1), a ``split_level`` beyond the group columns); in
        :meth:`setup`, for an unknown column (the message lists the columns), a missing or
        infinite value in a column used (naming the column and the row) or a target that does
        not fit the task (class labels must be integers in [0, 2**53)).
    FileNotFoundError
        In :meth:`setup`, when ``path`` does not exist.
    ImportError
        In :meth:`setup`, for Parquet without pandas and pyarrow.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "scores.csv"
    >>> _ = path.write_text("school,x1,sex,y\\nA,0.5,f,1.2\\nA,1.5,m,2.0\\nB,0.1,f,0.3\\nB,0.7,m,0.9\\n")
    >>> data = Table(str(path), target="y", groups=["school"], val_fraction=0.0, test_fraction=0.0)
    >>> data.setup()
    >>> data.feature_names, data.group_names, data.train["x"].tolist()[0]
    (['x1', 'sex=f', 'sex=m'], [['A', 'B']], [0.5, 1.0, 0.0])
    >>> plain = Table(str(path), features=["x1"], val_fraction=0.0, test_fraction=0.5)
    >>> plain.setup()
    >>> plain.train.shape, plain.test.shape
    (torch.Size([2, 1]), torch.Size([2, 1]))
    """

    #: Names of the columns of ``x`` after one-hot encoding (set by :meth:`setup`).
    feature_names: list[str] | None = None
    #: Names of the classes when the target was text (``class_names[id]``), else None.
    class_names: list[str] | None = None
    #: Every column of the file (set by :meth:`setup`).
    columns: list[str] | None = None

    def __init__(
        self,
        path: str,
        target: str | None = None,
        features: list[str] | None = None,
        groups: list[str] | None = None,
        *,
        categorical: list[str] | None = None,
        task: Literal["regression", "classification"] = "regression",
        delimiter: str | None = None,
        split: Literal["example", "group"] = "example",
        split_level: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        standardize: bool = False,
        standardize_y: bool = False,
    ) -> None:
        absolute = absolute_path(path)
        kind = _kind(absolute)
        if kind is None:
            accepted = [e for endings in SUFFIXES.values() for e in endings]
            raise ValueError(f"path={os.fspath(path)!r} is not a table file this reader knows; accepted endings: {accepted}")
        if target is not None and not isinstance(target, str):
            raise TypeError(f"target must be a column name (str) or None; got {target!r}")
        features, groups = _names("features", features), _names("groups", groups)
        categorical = _names("categorical", categorical) or []
        if features is not None and not features:
            raise ValueError("features=[] selects no column; name at least one (or leave features out: every other column)")
        if groups is not None and not groups:
            raise ValueError("groups=[] names no group column; leave groups out for a plain table")
        roles = [("target", [target] if target is not None else []), ("groups", groups or []), ("features", features or [])]
        for i, (a, names_a) in enumerate(roles):
            for b, names_b in roles[i + 1:]:
                both = sorted(set(names_a) & set(names_b))
                if both:
                    raise ValueError(f"column(s) {both} are both in {a} and in {b}; a column has one role")
        if features is not None and not set(categorical) <= set(features):
            raise ValueError(f"categorical={categorical!r} names columns that are not features {features}: "
                             f"{sorted(set(categorical) - set(features))}")
        if set(categorical) & ({target} | set(groups or [])):
            raise ValueError(f"categorical={categorical!r} may name feature columns only, not the target or a group column")
        if task not in _TASKS:
            raise ValueError(f"task={task!r} is not accepted; use one of {list(_TASKS)}")
        if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
            raise ValueError(f"delimiter must be one character such as ',' or ';'; got {delimiter!r}")
        if delimiter is not None and kind != "text":
            raise ValueError(f"delimiter={delimiter!r} applies to text files only; path={absolute!r} is {kind}")
        if groups is None:
            for name, value, default in (("split", split, "example"), ("split_level", split_level, 0),
                                         ("standardize_y", standardize_y, False)):
                if value != default:
                    raise ValueError(f"{name}={value!r} needs group columns: pass groups=[...] (a plain table is "
                                     f"split by example and its target is the class labels)")
        elif target is None:
            raise ValueError(f"groups={groups!r} needs target=...: a grouped table predicts a target column")
        self._init_split(split, val_fraction, test_fraction, seed, split_level, standardize, standardize_y)
        if groups is not None and self.split_level >= len(groups):
            raise ValueError(f"split_level={self.split_level!r} is out of range for the {len(groups)} group column(s) "
                             f"{groups}; use a level in 0..{len(groups) - 1} (lowest level first)")
        self.path, self.target, self.features, self.groups = absolute, target, features, groups
        self.categorical, self.task_name, self.delimiter = categorical, task, delimiter

    # ------------------------------------------------------------------ reading
    def _read(self) -> _Frame:
        path = Path(self.path)
        if not path.is_file():
            raise FileNotFoundError(f"path={self.path!r} does not exist (or is not a file)")
        kind = _kind(self.path)
        if kind == "text":
            default = "\t" if self.path.lower().removesuffix(".gz").endswith((".tsv", ".tab")) else ","
            return _read_text(path, self.delimiter or default)
        return _read_parquet(path) if kind == "parquet" else _read_npz(path)

    def _select(self, frame: _Frame) -> tuple[list[str], dict[str, np.ndarray], int]:
        """The feature names chosen and the used columns, checked for names, lengths and missing values."""
        available = frame.names
        named = [*([self.target] if self.target else []), *(self.groups or []), *(self.features or []),
                 *self.categorical]
        unknown = [n for n in dict.fromkeys(named) if n not in available]
        if unknown:
            hint = (f" (one column only: is the delimiter right? pass delimiter=..., e.g. ';')"
                    if frame.text and len(available) == 1 else "")
            raise ValueError(f"{frame.path} has no column(s) {unknown}; its columns are {available}{hint}")
        features = self.features
        if features is None:
            taken = {self.target, *(self.groups or [])}
            features = [n for n in available if n not in taken]
            if not features:
                raise ValueError(f"{frame.path} has no column left for the features (columns {available}, target "
                                 f"{self.target!r}, groups {self.groups}); a table needs at least one feature")
            outside = sorted(set(self.categorical) - set(features))
            if outside:
                raise ValueError(f"categorical={self.categorical!r} names columns that are not features: {outside}")
        used = [*([self.target] if self.target else []), *(self.groups or []), *features]
        lengths = {n: len(frame.column(n)) for n in used}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the columns of {frame.path} used here have different lengths {lengths}; choose arrays "
                             f"of one length with features=[...] (every column needs one value per row)")
        for n in used:
            values = frame.column(n)
            most = 2 if n in features or (n == self.target and self.groups is not None) else 1
            if values.ndim > most:
                raise ValueError(f"column {n!r} of {frame.path} has shape {values.shape}; a column is 1-D "
                                 f"(or 2-D (n, k): a block of k features, or a regression target of k outputs)")
            _check_present(frame, n, values)
        n_rows = lengths[used[0]]
        if n_rows == 0:
            raise ValueError(f"{frame.path} has no rows")
        return features, {n: frame.column(n) for n in used}, n_rows

    def _features(self, frame: _Frame, features: list[str], columns: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str]]:
        blocks, names = [], []
        for name in features:
            values = columns[name]
            numbers = None if name in self.categorical else _finite_numbers(frame, name, values)
            if numbers is not None:
                blocks.append(numbers.reshape(len(numbers), -1))
                names += [name] if values.ndim == 1 else [f"{name}[{j}]" for j in range(blocks[-1].shape[1])]
                continue
            if values.ndim != 1:
                raise ValueError(f"column {name!r} of {frame.path} has shape {values.shape}; only 1-D columns can be "
                                 f"one-hot encoded")
            if name not in self.categorical and _is_text(values):
                parsed = [_float_or_none(v) for v in values]
                n_numbers = sum(p is not None for p in parsed)
                if n_numbers * 2 >= len(values):
                    row = next(i for i, p in enumerate(parsed) if p is None)
                    raise ValueError(
                        f"column {name!r} of {frame.path} looks numeric, but {values[row].tolist()!r} at {frame.where(row)} is "
                        f"not a number ({len(values) - n_numbers} such row(s)); fix the value(s), or list the column in "
                        f"categorical=[...] to one-hot encode it"
                    )
            keys = _as_keys(values)
            categories, codes = np.unique(keys, return_inverse=True)
            blocks.append(np.eye(len(categories), dtype=np.float64)[codes.reshape(-1)])
            names += [f"{name}={c}" for c in categories.tolist()]
        return np.concatenate(blocks, axis=1), names

    def _labels(self, frame: _Frame, values: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
        """Class ids of the target: integers in [0, 2**53) kept; text numbered in sorted order (names returned)."""
        numbers = _finite_numbers(frame, self.target, values)
        if numbers is not None:
            bad = np.flatnonzero((numbers != np.round(numbers)) | (numbers < 0) | (numbers >= 2**53))
            if len(bad):
                row = int(bad[0])
                what = "class labels" if self.groups is None else "class ids (task='classification')"
                hint = ("leave target out (a plain table has no y), or add the column to features" if self.groups is None
                        else "use task='regression' for a continuous target")
                raise ValueError(f"target {self.target!r} of {frame.path} holds numbers that are not {what} (integers "
                                 f"in [0, 2**53)): {values[row].tolist()!r} at {frame.where(row)}; {hint}")
            return numbers.astype(np.int64), None
        names, ids = np.unique(values, return_inverse=True)
        return ids.reshape(-1).astype(np.int64), [str(n) for n in names.tolist()]

    # ------------------------------------------------------------------ DataModule / GroupedData
    def setup(self) -> None:
        """Read the file, check the columns, split and standardize (a second call does nothing).

        Raises
        ------
        FileNotFoundError, ImportError, ValueError, TypeError
            See the class docstring; nothing is assigned in that case.
        """
        if self.is_setup:
            return
        if self.groups is None:
            splits, info = self._plain()
            self._assign(self._finalize(splits))
        else:
            source, info = self._grouped()
            self._assign_built(source, self._build(source))
        self.feature_names, self.class_names, self.columns = info

    def _parse(self) -> tuple[_Frame, np.ndarray, list[str], dict[str, np.ndarray]]:
        frame = self._read()
        features, columns, _ = self._select(frame)
        x, names = self._features(frame, features, columns)
        return frame, x, names, columns

    def _plain(self) -> tuple[Splits, tuple[list[str], list[str] | None, list[str]]]:
        """The splits of a plain table, and (feature names, class names, columns); assigns nothing."""
        frame, x, names, columns = self._parse()
        labels, class_names = (None, None) if self.target is None else self._labels(frame, columns[self.target])
        x_t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        y_t = None if labels is None else torch.from_numpy(labels)
        parts = split_by_fraction(x_t, y_t, (self.val_fraction, self.test_fraction), self.seed)
        (train, train_y), (val, val_y), (test, test_y) = parts
        splits = Splits(train, train_y, *((val, val_y) if len(val) else (None, None)),
                        *((test, test_y) if len(test) else (None, None)))
        return splits, (names, class_names, list(frame.names))

    def _grouped(self) -> tuple[GroupedSource, tuple[list[str], list[str] | None, list[str]]]:
        """The source of a grouped table, and (feature names, class names, columns); assigns nothing."""
        assert self.groups is not None and self.target is not None
        frame, x, names, columns = self._parse()
        target = columns[self.target]
        class_names = None
        if self.task_name == "regression":
            numbers = _finite_numbers(frame, self.target, target)
            if numbers is None:
                row = next(i for i, v in enumerate(target) if _float_or_none(v) is None)
                raise ValueError(f"target {self.target!r} of {frame.path} is not numeric ({target[row].tolist()!r} at "
                                 f"{frame.where(row)}); a regression target holds numbers (task='classification' "
                                 f"for classes)")
            y, n_classes = torch.from_numpy(np.ascontiguousarray(numbers, dtype=np.float32)), None
        else:
            labels, class_names = self._labels(frame, target)
            n_classes = len(class_names) if class_names is not None else int(labels.max()) + 1
            y = torch.from_numpy(labels)
        levels = [_as_keys(columns[g]) for g in self.groups]
        source = GroupedSource(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), y, levels,
                               list(self.groups), self.task_name, n_classes)
        return source, (names, class_names, list(frame.names))

    def _load(self) -> Splits:  # DataModule's hook (a plain table)
        return self._plain()[0]

    def _load_source(self) -> GroupedSource:  # GroupedData's hook (a grouped table)
        return self._grouped()[0]

    def __repr__(self) -> str:
        if self.groups is None:
            return DataModule.__repr__(self)
        return super().__repr__()


def _float_or_none(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
