"""Run directories: the one on-disk layout that every training or evaluation run writes.

::

    runs/<name>/<YYYYmmdd-HHMMSS>/
      config.yaml     resolved config, enough to rebuild everything
      checkpoints/    last.ckpt, best.ckpt, step-N.ckpt, last.safetensors, best.safetensors
      metrics.csv     long format: step,epoch,split,name,value
      tensorboard/    event files
      eval/           estimator outputs, tables, figures
      log.txt         what the console showed
      lock            while a process trains the run: its pid and host (see :meth:`RunDir.lock`)

``checkpoints/manifest.json`` records the SHA-256 of every checkpoint and weights file when
it is written (see :mod:`vaekit.training.checkpoint`). Every file is written to a temporary
``.<name>.tmp-<pid>`` beside it and renamed into place (:func:`atomic_write`); temporary
files that a crashed process left behind are removed when the run is resumed
(:meth:`RunDir.remove_stale_temp_files`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import yaml

from .._checks import InvalidArgumentError

__all__ = ["RunDir", "RunLock", "RunDirInUseError", "FileWriteError", "atomic_write", "read_yaml_mapping",
           "METRICS_HEADER"]

#: Header line of ``metrics.csv``.
METRICS_HEADER = "step,epoch,split,name,value"

_NAME = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9_.+-]+$")  # one path component, not '.' or '..'
#: Temporary files of :func:`atomic_write`: ``.<name>.tmp-<pid>``.
_TEMP = re.compile(r"^\..+\.tmp-(\d+)$")
#: Name of the lock file in a run directory.
LOCK_NAME = "lock"


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
            Run name: one folder name of letters, digits and ``_ . + -`` (not ``.`` or
            ``..``), e.g. the model class name.
        config : dict, optional
            Resolved config written to ``config.yaml`` (``{}`` when omitted).
        timestamp : datetime, optional
            Time used for the directory name (default: now).

        Returns
        -------
        RunDir
        """
        check_run_name(name, "run name")
        if config is not None and not isinstance(config, dict):
            raise TypeError(f"config must be a dict or None, got {type(config).__name__}")
        text = _dump_config(config if config is not None else {})  # fails before anything is created
        parent = Path(root) / name
        if Path(os.path.normpath(parent)).parent != Path(os.path.normpath(root)):  # pragma: no cover - check_run_name
            raise ValueError(f"run name {name!r} would put the run outside root {str(root)!r}")
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

    @property
    def manifest(self) -> Path:
        """``checkpoints/manifest.json``: the SHA-256 of every checkpoint and weights file."""
        return self.checkpoints / "manifest.json"

    @property
    def lock_file(self) -> Path:
        """``lock``: present while a process trains the run (see :meth:`lock`)."""
        return self.path / LOCK_NAME

    # ------------------------------------------------------------------ config
    def read_config(self) -> dict[str, Any]:
        """The resolved config stored in ``config.yaml``.

        Returns
        -------
        dict
            ``{}`` for an empty file.

        Raises
        ------
        ValueError
            When ``config.yaml`` is not UTF-8 text, not valid YAML, or does not hold a
            mapping at the top level (the message names the file, and the line for YAML
            syntax errors).
        """
        return read_yaml_mapping(self.config_file)

    def write_config(self, config: dict[str, Any]) -> None:
        """Replace ``config.yaml`` (atomically)."""
        _atomic_write_text(self.config_file, _dump_config(config))

    # ------------------------------------------------------------------ one process at a time
    def lock(self) -> RunLock:
        """The lock that keeps a second process from training this run directory.

        Use it as a context manager (``with run.lock() as lock: ...``); see :class:`RunLock`.
        """
        return RunLock(self)

    def remove_stale_temp_files(self) -> list[Path]:
        """Remove the temporary files (``.<name>.tmp-<pid>``) that crashed processes left behind.

        Only files whose process no longer runs on this machine are removed, in the run
        directory itself, ``checkpoints/`` and ``eval/``. The file name holds a pid, not a
        host: on a file system shared between hosts, a live process of another host is
        told apart only by the run's lock (whose host field makes :class:`RunLock` refuse),
        so call this while holding the lock, as :meth:`Trainer.fit <vaekit.training.Trainer.fit>` does.

        Returns
        -------
        list of Path
            The files removed.
        """
        removed = []
        for folder in (self.path, self.checkpoints, self.eval):
            if not folder.is_dir():
                continue
            for p in sorted(folder.iterdir()):
                m = _TEMP.match(p.name)
                if m is None or not p.is_file() or pid_alive(int(m.group(1))):
                    continue
                try:
                    p.unlink()
                except FileNotFoundError:  # removed meanwhile
                    continue
                removed.append(p)
        return removed

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)


def _dump_config(config: dict[str, Any]) -> str:
    try:
        return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
    except yaml.YAMLError as e:
        raise TypeError(f"config must hold only plain values (dict, list, str, int, float, bool, None): {e}") from None


def read_utf8(path: Path, hint: str) -> str:
    """The text of ``path``; bytes that are not UTF-8 raise a ValueError naming the file, line and ``hint``."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start}); "
                         f"{hint}") from None


def read_yaml_mapping(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A YAML file holding a mapping (``{}`` when empty), e.g. a run's ``config.yaml``.

    Raises
    ------
    ValueError
        When the file is not UTF-8 text, not valid YAML, or does not hold a mapping at the
        top level; the message names the file (and the line for the first two).
    """
    path = Path(path)
    text = read_utf8(path, "the file is damaged, or is not a YAML file")
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ValueError(f"{path}{where}: not valid YAML ({what})") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        shown = repr(config)
        raise ValueError(f"{path} must hold a mapping (key: value lines, e.g. model:, data:, trainer:) at the top "
                         f"level, got a {type(config).__name__}: {shown[:80]}{'...' if len(shown) > 80 else ''}")
    return config


def check_run_name(name: Any, what: str = "run_name") -> str:
    """Check that ``name`` is one safe folder name: letters, digits, ``_ . + -``, not ``.`` or ``..``.

    >>> check_run_name("..")
    Traceback (most recent call last):
    ...
    vaekit._checks.InvalidArgumentError: run_name must be one folder name of letters, digits, '_', '.', '+', '-' (not '.' or '..', no '/'), got '..'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgumentError(f"{what} must be one folder name of letters, digits, '_', '.', '+', '-' "
                                   f"(not '.' or '..', no '/'), got {name!r}")
    return name


# ---------------------------------------------------------------------- writing files
class FileWriteError(OSError):
    """An OS error while writing a file of a run, naming the file and the cause.

    ``errno``, ``strerror`` and ``filename`` are those of the error behind it, so
    ``except OSError`` and ``e.errno == errno.ENOSPC`` keep working.

    Examples
    --------
    >>> import errno
    >>> e = FileWriteError("runs/x/checkpoints/last.ckpt", OSError(errno.ENOSPC, "No space left on device"))
    >>> str(e), e.errno == errno.ENOSPC, isinstance(e, OSError)
    ('No space left on device while writing runs/x/checkpoints/last.ckpt', True, True)
    """

    def __init__(self, path: str | os.PathLike[str], cause: BaseException) -> None:
        code = getattr(cause, "errno", None)
        reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
        if code is not None:
            super().__init__(code, reason, os.fspath(path))
        else:
            super().__init__(reason)
            self.filename = os.fspath(path)
        self.path, self.reason = Path(path), reason

    def __str__(self) -> str:
        return f"{self.reason} while writing {self.path}"

    def __reduce__(self) -> tuple[Any, ...]:
        return FileWriteError, (self.path, OSError(self.errno, self.reason) if self.errno is not None else OSError(self.reason))


class _Sink:
    """A binary file for writers to write to: whole writes, a running SHA-256 and size, and the
    first OS error kept (libraries such as torch report it as their own error)."""

    def __init__(self, raw: IO[bytes]) -> None:
        import hashlib

        self.raw, self.sha256, self.size, self.error = raw, hashlib.sha256(), 0, None  # type: ignore[var-annotated]

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += self.raw.write(view[done:]) or 0
        except OSError as e:
            self.error = self.error or e
            raise
        self.sha256.update(view)
        self.size += len(view)
        return len(view)

    def flush(self) -> None:
        self.raw.flush()


def temp_path(path: str | os.PathLike[str]) -> Path:
    """The temporary file :func:`atomic_write` writes before renaming it onto ``path``: ``.<name>.tmp-<pid>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write(path: str | os.PathLike[str], write: Callable[[Any], Any], *, by_name: bool = False,
                 before_replace: Callable[[str, int], None] | None = None) -> tuple[str, int]:
    """Write a file atomically: ``write`` fills a temporary file beside ``path``, which is
    synced to disk and renamed onto ``path``.

    A failure anywhere leaves ``path`` as it was and removes the temporary file; OS errors
    are raised as :class:`FileWriteError` naming ``path`` and the cause (``No space left on
    device while writing .../last.ckpt``).

    Parameters
    ----------
    path : str or os.PathLike
        Destination.
    write : callable
        ``write(f)`` with a binary file object ``f`` (``f.write(bytes)``); with ``by_name``,
        first ``write(name)`` with the temporary file's name.
    by_name : bool
        For writers that prefer a file name (``torch.save``). When ``write(name)`` fails
        with anything but an ``OSError`` (torch reports a full disk as ``unexpected pos``),
        the file is written once more through a file object, which reports the OS error
        behind the failure (or succeeds, when the cause has gone).
    before_replace : callable, optional
        ``before_replace(sha256_hex, size)``, called once the temporary file is complete
        and synced, before the rename (e.g. to record the hash in a manifest).

    Returns
    -------
    tuple of (str, int)
        SHA-256 (hex) and size in bytes of what was written.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write(p, lambda f: f.write(b"hi"))[1], p.read_bytes(), len(list(p.parent.iterdir()))
    (2, b'hi', 1)
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        digest_size = None
        if by_name:
            try:
                write(str(tmp))
                digest_size = _sync_and_hash(tmp)
            except OSError:
                raise
            except Exception as first:
                try:
                    digest_size = _write_through_sink(tmp, write)
                except OSError as e:
                    raise e from first
                except Exception:
                    raise first from None
        if digest_size is None:
            digest_size = _write_through_sink(tmp, write)
        if before_replace is not None:
            before_replace(*digest_size)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - the next resume removes it (RunDir.remove_stale_temp_files)
            pass
        if isinstance(e, OSError) and not isinstance(e, FileWriteError):
            raise FileWriteError(path, e) from e
        raise
    return digest_size


def _write_through_sink(tmp: Path, write: Callable[[Any], Any]) -> tuple[str, int]:
    with open(tmp, "wb", buffering=0) as raw:
        sink = _Sink(raw)
        try:
            write(sink)
        except Exception:
            if sink.error is not None:  # the OS error behind a library's own message
                raise sink.error from None
            raise
        os.fsync(raw.fileno())
    return sink.sha256.hexdigest(), sink.size


def _sync_and_hash(tmp: Path) -> tuple[str, int]:
    import hashlib

    h, size = hashlib.sha256(), 0
    with open(tmp, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
        os.fsync(f.fileno())
    return h.hexdigest(), size


def _atomic_write_text(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


# ---------------------------------------------------------------------- one process per run
def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (on Windows: assumed, it is not checked)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # pragma: no cover - os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, owned by someone else
        return True
    return True


class RunDirInUseError(ValueError):
    """Another process holds the lock of a run directory (it is training it)."""


class RunLock:
    """The ``lock`` file of a run directory, held by the one process that trains it.

    The file holds the owner's pid, host and start time (JSON). It is created atomically
    (a second process finds it and is refused), removed by :meth:`release` (on exceptions
    too when used as a context manager), and taken over when the process that left it is
    no longer running on this host (a crash). :meth:`Trainer.fit <vaekit.training.Trainer.fit>`
    holds it on rank 0 for the whole fit: a new run's as soon as its directory is laid out,
    an existing run's (resume) before anything in it is read or written.

    Whether a lock is stale is decided by its pid on this host only: a lock written on
    another host (a shared file system) is never taken over, and must be deleted by hand
    once that host's process is known to be gone.

    Parameters
    ----------
    run : RunDir
        The run directory.

    Examples
    --------
    >>> import tempfile
    >>> run = RunDir.create(tempfile.mkdtemp(), "demo")
    >>> with run.lock():
    ...     with run.lock():
    ...         pass
    Traceback (most recent call last):
    ...
    vaekit.training.rundir.RunDirInUseError: ...
    >>> run.lock_file.exists()
    False
    """

    def __init__(self, run: RunDir) -> None:
        self.run, self.path = run, run.lock_file
        self.note: str | None = None
        self._token: str | None = None

    def acquire(self) -> RunLock:
        """Take the lock; ``self.note`` says when a stale lock was taken over.

        Raises
        ------
        RunDirInUseError
            When a running process (or one on another host) holds the lock.
        FileWriteError
            When the lock file cannot be written.
        """
        token = secrets.token_hex(8)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": datetime.now().isoformat(timespec="seconds"),
                 "token": token}
        tmp = temp_path(self.path)
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(owner, f)
                f.write("\n")
            for _ in range(5):
                try:
                    _link_or_create(tmp, self.path)
                    self._token = token
                    return self
                except FileExistsError:
                    pass
                holder = _read_lock(self.path)
                if holder is None:  # released meanwhile
                    continue
                if not self._stale(holder):
                    raise RunDirInUseError(self._held_message(holder))
                # a crashed process left it: move it aside, check it is still that one, and retry
                aside = self.path.with_name(f".{LOCK_NAME}.stale.tmp-{os.getpid()}")
                try:
                    os.replace(self.path, aside)
                except FileNotFoundError:
                    continue
                moved = _read_lock(aside)
                if moved is not None and moved.get("token") != holder.get("token"):  # a fresh lock: put it back
                    try:
                        _link_or_create(aside, self.path)
                    except FileExistsError:
                        pass
                    aside.unlink(missing_ok=True)
                    continue
                aside.unlink(missing_ok=True)
                self.note = (f"took over the stale lock {self.path} of process {holder.get('pid')} on "
                             f"{holder.get('host')} (started {holder.get('started')}), which no longer runs")
            raise RunDirInUseError(f"could not take the lock {self.path}: other processes keep taking it")
        except OSError as e:
            if isinstance(e, FileWriteError):
                raise
            raise FileWriteError(self.path, e) from e
        finally:
            tmp.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock file, if it is still this process's."""
        if self._token is None:
            return
        holder = _read_lock(self.path)
        if holder is not None and holder.get("token") == self._token:
            self.path.unlink(missing_ok=True)
        self._token = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    @staticmethod
    def _stale(holder: dict[str, Any]) -> bool:
        pid = holder.get("pid")
        return (holder.get("host") == socket.gethostname() and isinstance(pid, int) and not isinstance(pid, bool)
                and not pid_alive(pid))

    def _held_message(self, holder: dict[str, Any]) -> str:
        where = self.run.path
        if "pid" not in holder:
            return (f"run directory {str(where)!r} is locked: its lock file {self.path} cannot be read "
                    f"({holder.get('error')}); if no process is training this run, delete {self.path}")
        pid, host = holder.get("pid"), holder.get("host")
        since = f", since {holder['started']}" if holder.get("started") else ""
        if host == socket.gethostname():
            status = "which is still running"
        else:
            status = f"on another host, whose processes cannot be checked from {socket.gethostname()}"
        return (f"run directory {str(where)!r} is in use: process {pid} on host {host}{since} holds its lock "
                f"{self.path} ({status}). Two processes must not train one run directory; wait for that one to "
                f"finish or stop it. If no process is training this run, delete {self.path}")


def _link_or_create(src: Path, dst: Path) -> None:
    """Create ``dst`` with the content of ``src``, atomically and only if ``dst`` does not exist
    (``FileExistsError`` otherwise): a hard link, or ``O_EXCL`` where links are not supported."""
    try:
        os.link(src, dst)
        return
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system
        pass
    data = src.read_bytes()
    fd = os.open(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _read_lock(path: Path) -> dict[str, Any] | None:
    """The owner recorded in a lock file; None when it does not exist; ``{"error": ...}`` when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    try:
        holder = json.loads(text)
    except ValueError as e:
        return {"error": f"not JSON: {e}"}
    return holder if isinstance(holder, dict) else {"error": f"not a JSON object: {text[:60]!r}"}
