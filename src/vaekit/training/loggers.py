"""Where a run's numbers and messages go: ``metrics.csv``, TensorBoard, ``log.txt``, a progress bar."""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .rundir import METRICS_HEADER, FileWriteError, RunDir, atomic_write, read_utf8

__all__ = ["MetricsWriter", "append_table", "truncate_tables", "log_to_file", "read_metrics", "progress_bar", "LOGGER_NAME"]

#: Name of the logger every vaekit message goes through.
LOGGER_NAME = "vaekit"
_FIELDS = METRICS_HEADER.split(",")
log = logging.getLogger(LOGGER_NAME)


class MetricsWriter:
    """Append metrics to ``metrics.csv`` (long format) and TensorBoard.

    Parameters
    ----------
    run : RunDir
        The run directory.
    resume_step : int, optional
        When resuming from a checkpoint taken at this step: rows of ``metrics.csv`` with a
        larger step (logged after that checkpoint, and about to be logged again) are
        dropped, and TensorBoard events from later steps are purged. Earlier rows are kept;
        a torn last line and malformed lines (a crash while writing, a damaged disk) are
        dropped with a warning naming them. Only a resume, which holds the run's lock
        (:class:`~vaekit.training.rundir.RunLock`), rewrites the file this way.
    tensorboard : bool
        Also write TensorBoard events to ``run.tensorboard``.

    Notes
    -----
    Without ``resume_step`` (a new run, or ``vaekit evaluate`` adding its numbers, possibly
    while the run trains) the file is only appended to, never replaced: another process
    may hold it open for appending. A row is appended only after a newline. When the file
    ends in a torn line (no newline after it: another process writing that row right now,
    or a crash that cut it short), :meth:`log` waits up to a second for the line to end;
    if it does not, that call's rows are not written, with a warning naming the file (they
    would be glued to the torn line), and later calls skip at once while the file stays
    so. Resuming the run repairs the file.

    Examples
    --------
    >>> import tempfile
    >>> run = RunDir.create(tempfile.mkdtemp(), "demo")
    >>> w = MetricsWriter(run, tensorboard=False)
    >>> w.log({"loss": 1.5}, step=10, epoch=0, split="train"); w.close()
    >>> read_metrics(run.metrics)
    [{'step': 10, 'epoch': 0, 'split': 'train', 'name': 'loss', 'value': 1.5}]
    """

    def __init__(self, run: RunDir, *, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.run = run
        if resume_step is not None:
            _truncate_metrics(run.metrics, resume_step)
        self._file = open(run.metrics, "a+", newline="", encoding="utf-8")  # readable: see _row_boundary
        self._torn_at: int | None = None  # the size at which a torn last line was given up on
        try:
            if os.fstat(self._file.fileno()).st_size == 0:
                self._file.write(METRICS_HEADER + "\n")
                self._file.flush()
        except OSError as e:
            self._file.close()
            raise FileWriteError(run.metrics, e) from e
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._tb: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(log_dir=str(run.tensorboard), purge_step=purge)

    def log(self, metrics: Mapping[str, float], *, step: int, epoch: int, split: str) -> None:
        """Write one row per metric (flushed at once) and the matching TensorBoard scalars.

        OS errors (a full disk) are raised as ``FileWriteError`` naming ``metrics.csv``.
        Nothing is written after a torn last line (see the class notes).
        """
        try:
            if not self._row_boundary():
                log.warning(f"{self.run.metrics} ends in a torn line (a row cut short by a crash, or still being "
                            f"written by another process): the {split} rows of step {int(step)} "
                            f"({', '.join(map(str, metrics))}) were not appended, so as not to glue them to it. "
                            f"Resuming the run repairs the file")
                return
            for name, value in metrics.items():
                self._csv.writerow([int(step), int(epoch), split, name, repr(float(value))])
                if self._tb is not None:
                    self._tb.add_scalar(f"{split}/{name}", float(value), int(step))
            self._file.flush()
        except OSError as e:
            if isinstance(e, FileWriteError):
                raise
            raise FileWriteError(self.run.metrics, e) from e

    def _row_boundary(self) -> bool:
        """Whether the file ends with a newline (or is empty), waiting up to :data:`_TORN_WAIT_S`
        for a torn last line to end; False when it does not."""
        deadline = None
        while True:
            size = os.fstat(self._file.fileno()).st_size
            if size == 0 or _last_byte(self._file, size) == b"\n":
                self._torn_at = None
                return True
            if size == self._torn_at:  # given up on this torn line already: not waiting again
                return False
            now = time.monotonic()
            if deadline is None:
                deadline = now + _TORN_WAIT_S
            elif now >= deadline:
                self._torn_at = size
                return False
            time.sleep(0.01)

    def close(self) -> None:
        """Flush and close the files."""
        if not self._file.closed:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a ``metrics.csv`` as dicts with typed values (step and epoch int, value float).

    A last line without its newline (a write in progress, or cut short by a crash) is
    skipped with a warning, even when what was written of it parses (``1.5`` of ``1.53``);
    resuming the run removes it.

    Raises
    ------
    ValueError
        When the file is damaged: a wrong header, a line with the wrong number of fields,
        a step, epoch or value that is not a number, bytes that are not UTF-8. The message
        names the file and the line.

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "metrics.csv"
    >>> _ = p.write_text("step,epoch,split,name,value\\n10,0,train,loss,1.5\\n20,1,train,grad_norm\\n")
    >>> read_metrics(p)
    Traceback (most recent call last):
    ...
    ValueError: .../metrics.csv, line 3: expected 5 fields (step,epoch,split,name,value), got 4: '20,1,train,grad_norm'; ...
    """
    path = Path(path)
    text = read_utf8(path, _DAMAGED)
    lines = text.split("\n")
    if not text:
        return []
    if lines[0].rstrip("\r") != METRICS_HEADER:
        raise ValueError(f"{path}, line 1: the header is {lines[0][:80]!r}, expected {METRICS_HEADER!r}; {_DAMAGED}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        row = _parse_row(line)
        if number == len(lines):  # no newline after it: torn, or being written right now
            what = row if isinstance(row, str) else "no newline after it"
            log.warning(f"{path}, line {number}: skipped a torn last line ({what})")
            break
        if isinstance(row, str):
            raise ValueError(f"{path}, line {number}: {row}; {_DAMAGED}")
        rows.append(row)
    return rows


_DAMAGED = ("the file is damaged (a torn or edited line); resuming the run repairs it, or delete the line by hand")


def _parse_row(line: str) -> dict[str, Any] | str:
    """One line of ``metrics.csv`` as a typed row, or what is wrong with it."""
    line = line.rstrip("\r")
    if '"' not in line:  # csv.writer quotes only fields holding ',', '"' or a newline
        fields = line.split(",")
    else:
        try:
            fields = next(csv.reader([line]))
        except csv.Error as e:
            return f"not a CSV row ({e}): {line[:80]!r}"
    if len(fields) != len(_FIELDS):
        return f"expected {len(_FIELDS)} fields ({METRICS_HEADER}), got {len(fields)}: {line[:80]!r}"
    try:
        step, epoch = int(fields[0]), int(fields[1])
    except ValueError:
        return f"step and epoch must be integers, got {fields[0]!r}, {fields[1]!r}: {line[:80]!r}"
    try:
        value = float(fields[4])
    except ValueError:
        return f"value must be a number, got {fields[4]!r}: {line[:80]!r}"
    return {"step": step, "epoch": epoch, "split": fields[2], "name": fields[3], "value": value}


def append_table(path: str | os.PathLike[str], rows: list[Mapping[str, Any]], *, epoch: int, step: int) -> None:
    """Append long-format rows to a CSV table of the run (``eval/<name>.csv``), with ``epoch``
    and ``step`` columns in front; the header is written with the first rows.

    One file holds the whole run: a later call must give rows with the same columns.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "groups.csv"
    >>> append_table(p, [{"group": "a", "value": 0.5}], epoch=0, step=10)
    >>> append_table(p, [{"group": "a", "value": 0.75}], epoch=1, step=20)
    >>> p.read_text().splitlines()
    ['epoch,step,group,value', '0,10,a,0.5', '1,20,a,0.75']
    """
    if not rows:
        return
    path = Path(path)
    columns = list(rows[0])
    for r in rows:
        if list(r) != columns:
            raise ValueError(f"rows of table {path.name} must all have the columns {columns}, got {list(r)}")
    header = ["epoch", "step", *columns]
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, newline="", encoding="utf-8") as f:
            existing = next(csv.reader(f), [])
        if existing != header:
            raise ValueError(f"{path} has columns {existing}, but the new rows have {header}")
    try:
        with open(path, "a", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            if new:
                w.writerow(header)
            w.writerows([[epoch, step, *(r[c] for c in columns)] for r in rows])
    except OSError as e:
        raise FileWriteError(path, e) from e


def truncate_tables(folder: str | os.PathLike[str], last_step: int) -> None:
    """Drop the rows past ``last_step`` from every ``epoch,step,...`` table in ``folder`` (on resume).

    A torn last line, and rows with the wrong number of fields or a step that is not an
    integer, are dropped too (with a warning naming the file and the lines).
    """
    for path in sorted(Path(folder).glob("*.csv")):
        lines, torn = _complete_lines(path)
        rows = list(csv.reader(lines))
        if not rows or rows[0][:2] != ["epoch", "step"]:
            continue
        kept, bad = [], []
        for number, r in enumerate(rows[1:], start=2):
            if not r:
                continue
            if len(r) != len(rows[0]) or not _is_int(r[1]):
                bad.append(number)
            elif int(r[1]) <= last_step:
                kept.append(r)
        if len(kept) == len(rows) - 1 and not torn:
            continue
        _warn_damage(path, bad, torn)
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows([rows[0], *kept])
        _write_text(path, buf.getvalue())


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the header and the complete, well-formed rows with ``step <= last_step`` (rewritten
    atomically; the rows kept are copied byte for byte)."""
    if not path.exists():
        _write_text(path, METRICS_HEADER + "\n")
        return
    lines, torn = _complete_lines(path)
    header_ok = bool(lines) and lines[0].rstrip("\r") == METRICS_HEADER
    kept, bad = [], []
    for number, line in enumerate(lines[1:] if header_ok else lines, start=2 if header_ok else 1):
        if not line.strip():
            continue
        row = _parse_row(line)
        if isinstance(row, str):
            bad.append(number)
        elif row["step"] <= last_step:
            kept.append(line)
    if header_ok and not torn and not bad and len(kept) == len(lines) - 1:
        return
    _warn_damage(path, bad, torn)
    _write_text(path, "".join(line + "\n" for line in [METRICS_HEADER, *kept]))


def _complete_lines(path: Path) -> tuple[list[str], bool]:
    """The lines of a CSV file that end with a newline (undecodable bytes replaced), and whether a
    torn last line (no newline: a write cut short) followed them."""
    data = path.read_bytes()
    complete, _, tail = data.rpartition(b"\n")
    text = complete.decode("utf-8", errors="replace")
    return (text.split("\n") if complete or data.endswith(b"\n") else []), bool(tail)


#: How long :meth:`MetricsWriter.log` waits for a torn last line of ``metrics.csv`` to end (seconds).
_TORN_WAIT_S = 1.0


def _last_byte(f: Any, size: int) -> bytes:
    """The byte at ``size - 1`` of the open file ``f`` (read without moving its position)."""
    if hasattr(os, "pread"):
        return os.pread(f.fileno(), 1, size - 1)
    with open(f.name, "rb") as g:  # pragma: no cover - Windows
        g.seek(size - 1)
        return g.read(1)


def _warn_damage(path: Path, bad: list[int], torn: bool) -> None:
    parts = []
    if bad:
        shown = ", ".join(map(str, bad[:10])) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        parts.append(f"malformed line{'s' if len(bad) > 1 else ''} {shown}")
    if torn:
        parts.append("a torn last line (a write cut short)")
    if parts:
        log.warning(f"{path}: dropped {' and '.join(parts)}")


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _write_text(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data))


class _TqdmHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Console handler that prints above a running tqdm bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


@contextmanager
def log_to_file(path: str | os.PathLike[str] | None, *, console: bool = True) -> Iterator[logging.Logger]:
    """Mirror the ``"vaekit"`` logger to a file (and the console) for the duration of a run.

    A ``FileHandler`` on ``path`` is added and removed on exit. A console handler is added
    only when no handler is configured yet (neither on ``"vaekit"`` nor on the root
    logger), so applications that configure logging keep control of it. The logger's level
    is lowered to INFO meanwhile.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Log file (appended to); ``None`` adds no file handler.
    console : bool
        Whether to add a console handler when none is configured.
    """
    logger = logging.getLogger(LOGGER_NAME)
    added: list[logging.Handler] = []
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
    if path is not None:
        fh = logging.FileHandler(path, mode="a", encoding="utf-8")
        fh.setFormatter(fmt)
        added.append(fh)
    if console and not logger.handlers and not logging.getLogger().handlers:
        ch = _TqdmHandler()
        ch.setFormatter(logging.Formatter("%(message)s"))
        added.append(ch)
    old_level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    for h in added:
        logger.addHandler(h)
    try:
        yield logger
    finally:
        for h in added:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(old_level)


def progress_bar(total: int, initial: int, *, enabled: bool) -> Any:
    """A tqdm bar over optimizer steps (a no-op bar when disabled, or when stderr is not a terminal)."""
    return tqdm(total=total, initial=initial, disable=None if enabled else True, unit="step", dynamic_ncols=True,
                file=sys.stderr, leave=True)
