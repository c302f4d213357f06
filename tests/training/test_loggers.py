"""metrics.csv (long format, truncated on resume), TensorBoard, and the log file."""

from __future__ import annotations

import logging
from pathlib import Path

from vaekit.training import MetricsWriter, RunDir, read_metrics
from vaekit.training.loggers import log_to_file
from vaekit.training.rundir import METRICS_HEADER


def test_rows_are_flushed_at_once_and_resume_drops_later_rows(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "m")
    w = MetricsWriter(run)
    for step in (5, 10, 15):
        w.log({"loss": step / 10, "kl/z": 0.5}, step=step, epoch=step // 10, split="train")
        # readable before close: each write is flushed
        assert len(read_metrics(run.metrics)) == 2 * (step // 5)
    w.close()
    assert run.metrics.read_text().splitlines()[:2] == [METRICS_HEADER, "5,0,train,loss,0.5"]
    assert any(run.tensorboard.iterdir())
    w = MetricsWriter(run, resume_step=10, tensorboard=False)  # checkpoint at step 10: row 15 will come again
    assert [(r["step"], r["name"]) for r in read_metrics(run.metrics)] == [(5, "loss"), (5, "kl/z"), (10, "loss"),
                                                                           (10, "kl/z")]
    w.log({"loss": 1.25}, step=15, epoch=1, split="val")
    w.close()
    assert read_metrics(run.metrics)[-1] == {"step": 15, "epoch": 1, "split": "val", "name": "loss", "value": 1.25}


def test_log_file_handler_is_added_for_the_run_only(tmp_path: Path) -> None:
    logger = logging.getLogger("vaekit")
    before = list(logger.handlers)
    with log_to_file(tmp_path / "log.txt", console=False) as log:
        log.info("hello %d", 42)
        logging.getLogger("vaekit.sub").warning("from a child logger")
    logger.info("after the run")
    assert logger.handlers == before
    text = (tmp_path / "log.txt").read_text()
    assert "INFO hello 42" in text and "WARNING from a child logger" in text and "after the run" not in text
