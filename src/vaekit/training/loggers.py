"""Where a run's numbers and messages go: ``metrics.csv``, TensorBoard, ``log.txt``, a progress bar."""

from __future__ import annotations

import csv
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .rundir import METRICS_HEADER, RunDir

__all__ = ["MetricsWriter", "append_table", "truncate_tables", "log_to_file", "read_metrics", "progress_bar", "LOGGER_NAME"]

#: Name of the logger every vaekit message goes through.
LOGGER_NAME = "vaekit"


class MetricsWriter:
    """Append metrics to ``metrics.csv`` (long format) and TensorBoard.

    Parameters
    ----------
    run : RunDir
        The run directory.
    resume_step : int, optional
        When resuming from a checkpoint taken at this step: rows of ``metrics.csv`` with a
        larger step (logged after that checkpoint, and about to be logged again) are
        dropped, and TensorBoard events from later steps are purged. Earlier rows are kept.
    tensorboard : bool
        Also write TensorBoard events to ``run.tensorboard``.

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
        elif not run.metrics.exists() or run.metrics.stat().st_size == 0:
            run.metrics.write_text(METRICS_HEADER + "\n")
        self._file = open(run.metrics, "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._tb: Any = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(log_dir=str(run.tensorboard), purge_step=purge)

    def log(self, metrics: Mapping[str, float], *, step: int, epoch: int, split: str) -> None:
        """Write one row per metric (flushed at once) and the matching TensorBoard scalars."""
        for name, value in metrics.items():
            self._csv.writerow([int(step), int(epoch), split, name, repr(float(value))])
            if self._tb is not None:
                self._tb.add_scalar(f"{split}/{name}", float(value), int(step))
        self._file.flush()

    def close(self) -> None:
        """Flush and close the files."""
        if not self._file.closed:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a ``metrics.csv`` as dicts with typed values (step and epoch int, value float)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{"step": int(r["step"]), "epoch": int(r["epoch"]), "split": r["split"], "name": r["name"],
                 "value": float(r["value"])} for r in csv.DictReader(f)]


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
    with open(path, "a", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        if new:
            w.writerow(header)
        w.writerows([[epoch, step, *(r[c] for c in columns)] for r in rows])


def truncate_tables(folder: str | os.PathLike[str], last_step: int) -> None:
    """Drop the rows past ``last_step`` from every ``epoch,step,...`` table in ``folder`` (on resume)."""
    for path in sorted(Path(folder).glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if not rows or rows[0][:2] != ["epoch", "step"]:
            continue
        kept = [r for r in rows[1:] if r and int(r[1]) <= last_step]
        if len(kept) == len(rows) - 1:
            continue
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerows([rows[0], *kept])
        os.replace(tmp, path)


def _truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the header and the rows with ``step <= last_step`` (rewritten atomically)."""
    if not path.exists():
        path.write_text(METRICS_HEADER + "\n")
        return
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    kept = [r for r in rows[1:] if r and int(r[0]) <= last_step]
    if len(kept) == len(rows) - 1 and rows and ",".join(rows[0]) == METRICS_HEADER:
        return
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        f.write(METRICS_HEADER + "\n")
        csv.writer(f, lineterminator="\n").writerows(kept)
    os.replace(tmp, path)


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
