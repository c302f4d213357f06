"""Run directories: the one on-disk layout that every training or evaluation run writes.

::

    runs/<name>/<YYYYmmdd-HHMMSS>/
      config.yaml     resolved config, enough to rebuild everything
      checkpoints/    last.ckpt, best.ckpt, step-N.ckpt, last.safetensors, best.safetensors
      metrics.csv     long format: step,epoch,split,name,value
      tensorboard/    event files
      eval/           estimator outputs, tables, figures
      log.txt         what the console showed
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

__all__ = ["RunDir", "METRICS_HEADER"]

#: Header line of ``metrics.csv``.
METRICS_HEADER = "step,epoch,split,name,value"

_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


class RunDir:
    """A run directory (see the module docstring for its layout).

    Build one with :meth:`create` (a new, empty run) or :meth:`open` (an existing run,
    validated); the constructor itself only stores the path.

    Parameters
    ----------
    path : str or os.PathLike
        The run directory.

    Examples
    --------
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> run = RunDir.create(root, "vae", config={"seed": 0})
    >>> sorted(p.name for p in run.path.iterdir())
    ['checkpoints', 'config.yaml', 'eval', 'log.txt', 'metrics.csv', 'tensorboard']
    >>> RunDir.open(run.path).read_config()
    {'seed': 0}
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def create(cls, root: str | os.PathLike[str], name: str, config: dict[str, Any] | None = None,
               *, timestamp: datetime | None = None) -> RunDir:
        """Create ``<root>/<name>/<YYYYmmdd-HHMMSS>/`` with its full layout.

        An existing directory is never reused: when the timestamp is taken, ``-1``,
        ``-2``, ... is appended.

        Parameters
        ----------
        root : str or os.PathLike
            Parent of all runs, e.g. ``"runs"``.
        name : str
            Run name (letters, digits, ``_ . + -``), e.g. the model class name.
        config : dict, optional
            Resolved config written to ``config.yaml`` (``{}`` when omitted).
        timestamp : datetime, optional
            Time used for the directory name (default: now).

        Returns
        -------
        RunDir
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"run name must be a non-empty string of letters, digits, '_', '.', '+', '-', got {name!r}")
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"config must be a dict or None, got {type(config).__name__}")
        text = _dump_config(config if config is not None else {})  # fails before anything is created
        parent = Path(root) / name
        parent.mkdir(parents=True, exist_ok=True)
        stamp = (timestamp or datetime.now()).strftime("%Y%m%d-%H%M%S")
        for i in range(10_000):
            path = parent / (stamp if i == 0 else f"{stamp}-{i}")
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - ten thousand runs in one second
            raise FileExistsError(f"could not find a free run directory name under {parent}")
        return cls._init_layout(path, text)

    @classmethod
    def init(cls, path: str | os.PathLike[str], config: dict[str, Any] | None = None) -> RunDir:
        """Lay out a run directory at exactly ``path`` (which must not exist, or be empty).

        Raises
        ------
        ValueError
            When ``path`` exists and is not an empty directory.
        """
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"config must be a dict or None, got {type(config).__name__}")
        text = _dump_config(config if config is not None else {})
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ValueError(f"run directory {str(path)!r} already exists and is not empty; pass a new path")
        path.mkdir(parents=True, exist_ok=True)
        return cls._init_layout(path, text)

    @classmethod
    def _init_layout(cls, path: Path, config_text: str) -> RunDir:
        run = cls(path)
        run.checkpoints.mkdir()
        run.tensorboard.mkdir()
        run.eval.mkdir()
        run.metrics.write_text(METRICS_HEADER + "\n")
        run.log.touch()
        _atomic_write_text(run.config_file, config_text)
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDir:
        """Open an existing run directory, checking its layout.

        ``tensorboard/``, ``eval/`` and ``log.txt`` are recreated when missing;
        ``config.yaml``, ``checkpoints/`` and ``metrics.csv`` must exist.

        Raises
        ------
        FileNotFoundError
            When ``path`` does not exist.
        ValueError
            When ``path`` is not a vaekit run directory (the message names what is missing).
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"run directory {str(path)!r} does not exist")
        if not path.is_dir():
            raise ValueError(f"{str(path)!r} is not a vaekit run directory: it is a file, not a directory")
        run = cls(path)
        missing = [p.name + ("/" if d else "") for p, d in
                   ((run.config_file, False), (run.checkpoints, True), (run.metrics, False))
                   if not (p.is_dir() if d else p.is_file())]
        if missing:
            raise ValueError(f"{str(path)!r} is not a vaekit run directory: missing {', '.join(missing)} "
                             f"(a run directory holds config.yaml, checkpoints/, metrics.csv, tensorboard/, eval/, log.txt)")
        run.tensorboard.mkdir(exist_ok=True)
        run.eval.mkdir(exist_ok=True)
        run.log.touch(exist_ok=True)
        return run

    # ------------------------------------------------------------------ paths
    @property
    def config_file(self) -> Path:
        """``config.yaml``."""
        return self.path / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        """``checkpoints/``."""
        return self.path / "checkpoints"

    @property
    def metrics(self) -> Path:
        """``metrics.csv``."""
        return self.path / "metrics.csv"

    @property
    def tensorboard(self) -> Path:
        """``tensorboard/``."""
        return self.path / "tensorboard"

    @property
    def eval(self) -> Path:
        """``eval/``."""
        return self.path / "eval"

    @property
    def log(self) -> Path:
        """``log.txt``."""
        return self.path / "log.txt"

    @property
    def last_checkpoint(self) -> Path:
        """``checkpoints/last.ckpt``."""
        return self.checkpoints / "last.ckpt"

    @property
    def best_checkpoint(self) -> Path:
        """``checkpoints/best.ckpt``."""
        return self.checkpoints / "best.ckpt"

    @property
    def last_weights(self) -> Path:
        """``checkpoints/last.safetensors`` (inference weights, EMA when enabled)."""
        return self.checkpoints / "last.safetensors"

    @property
    def best_weights(self) -> Path:
        """``checkpoints/best.safetensors`` (inference weights, EMA when enabled)."""
        return self.checkpoints / "best.safetensors"

    def step_checkpoint(self, step: int) -> Path:
        """``checkpoints/step-<step>.ckpt``."""
        return self.checkpoints / f"step-{int(step)}.ckpt"

    # ------------------------------------------------------------------ config
    def read_config(self) -> dict[str, Any]:
        """The resolved config stored in ``config.yaml``."""
        with open(self.config_file, encoding="utf-8") as f:
            config = yaml.safe_load(f)
        return config if config is not None else {}

    def write_config(self, config: dict[str, Any]) -> None:
        """Replace ``config.yaml`` (atomically)."""
        _atomic_write_text(self.config_file, _dump_config(config))

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)


def _dump_config(config: dict[str, Any]) -> str:
    try:
        return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    except yaml.YAMLError as e:
        raise TypeError(f"config must hold only plain values (dict, list, str, int, float, bool, None): {e}") from None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
