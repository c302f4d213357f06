"""``vaekit new model|dataset|table NAME``: write a working template to start from.

``model`` writes ``NAME.py`` (a hierarchical VAE in one file: blocks plus hyperparameters)
and ``NAME.yaml`` (a config that trains it through
:func:`vaekit.models.hierarchical.from_python`); ``dataset`` writes ``NAME.py`` (a
:class:`vaekit.data.DataModule` subclass) and ``NAME.yaml``; ``table`` writes only
``NAME.yaml``: a group-latent model of a table file read by :class:`vaekit.data.Table`
(CSV, Parquet, NPZ; no Python needed). Existing files are never overwritten: the command
refuses before writing anything.
"""

from __future__ import annotations

import argparse
import keyword
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

__all__ = ["main", "write_template", "KINDS"]

KINDS = ("model", "dataset", "table")
#: Kinds whose template is a config only (no Python module).
_CONFIG_ONLY = ("table",)


def write_template(kind: str, name: str, directory: str | Path = ".") -> list[Path]:
    """Write the ``kind`` template named ``name`` into ``directory``.

    Parameters
    ----------
    kind : {"model", "dataset", "table"}
    name : str
        A Python identifier: the file stem (and the class name of a dataset).
    directory : path
        Created if missing.

    Returns
    -------
    list of Path
        ``[NAME.py, NAME.yaml]`` (``[NAME.yaml]`` for ``table``).

    Raises
    ------
    ValueError
        For an unknown kind, a name that is not an identifier, or when a file exists.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"NAME must be a Python identifier (it becomes a module name), got {name!r}")
    directory = Path(directory)
    exts = ("yaml",) if kind in _CONFIG_ONLY else ("py", "yaml")
    paths = [directory / f"{name}.{ext}" for ext in exts]
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise ValueError(f"refusing to overwrite {', '.join(existing)}; choose another NAME or --dir")
    templates = resources.files("vaekit.commands") / "templates"
    texts = [(templates / f"{kind}.{ext}.tmpl").read_text().format(name=name) for ext in exts]
    directory.mkdir(parents=True, exist_ok=True)
    for path, text in zip(paths, texts):
        path.write_text(text)
    return paths


def main(argv: Sequence[str]) -> None:
    """Parse ``KIND NAME [--dir DIR]`` and write the template."""
    p = argparse.ArgumentParser(prog="vaekit new", description="Write a working model, dataset or table template to "
                                "start from (table: a config for your CSV/Parquet/NPZ file, no Python)")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("name", help="a Python identifier: NAME.yaml (and NAME.py for model/dataset) are written")
    p.add_argument("--dir", default=".", help="directory to write into (default: the current one)")
    a = p.parse_args(list(argv))
    paths = write_template(a.kind, a.name, a.dir)
    for path in paths:
        print(f"written: {path}")
    if a.kind == "table":
        print(f"train it:  cd {a.dir} && vaekit fit --config {a.name}.yaml --data.path FILE.csv --data.target COLUMN "
              f"--data.features '[COLUMN, ...]' --data.groups '[COLUMN]'")
        print("(set in_features/data_shape in the config to the number of features; a plain VAE on a numeric "
              "table: examples/configs/vae_table.yaml)")
        return
    prefix = "PYTHONPATH=. " if a.kind == "dataset" else ""
    print(f"train it:  cd {a.dir} && {prefix}vaekit fit --config {a.name}.yaml")
    if a.kind == "dataset":
        print(f"(a table file needs no Python: vaekit new table {a.name}, a config reading it with vaekit.data.Table)")
