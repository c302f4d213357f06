"""Integrity of run directories: SHA-256 manifests, fallbacks, write errors, stale files, the lock, damaged side files."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training_helpers import ELBO, TinyVAE, make_data

import vaekit
from vaekit.models import mlp_vae
from vaekit.training import RunDir, Trainer, load_checkpoint, load_weights, read_metrics, save_checkpoint
from vaekit.training.checkpoint import CorruptFileError, verify_file
from vaekit.training.loggers import MetricsWriter, truncate_tables
from vaekit.training.rundir import METRICS_HEADER, FileWriteError, RunDirInUseError

# 64 examples, batch 16: 4 steps per epoch; validation (and last.ckpt) every epoch, step-N.ckpt every 4 steps
KW = dict(batch_size=16, lr=5e-3, log_every_steps=2, checkpoint_every_steps=4, progress_bar=False, seed=1)


def _trainer(root: Path, **kw) -> Trainer:
    return Trainer(**{**KW, "max_epochs": 2, "root_dir": str(root), **kw})


def _model() -> TinyVAE:
    torch.manual_seed(0)
    return TinyVAE()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run stopped at step 8: last.ckpt, best.ckpt, step-4.ckpt, step-8.ckpt and the safetensors."""
    res = _trainer(tmp_path_factory.mktemp("runs")).fit(_model(), make_data(n=64))
    assert res.global_step == 8
    return res.run_dir.path


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> RunDir:
    """A private copy of the trained run."""
    return RunDir.open(shutil.copytree(trained, tmp_path / "run"))


def _flip_middle(path: Path, n: int = 8) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _resume(run: RunDir, max_epochs: int = 3, **kw):
    return _trainer(run.path.parent / "ignored", max_epochs=max_epochs, **kw).fit(_model(), make_data(n=64),
                                                                                 resume=run.path)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


# ---------------------------------------------------------------------- manifest
def test_manifest_records_the_sha256_of_every_checkpoint_and_weights_file(run: RunDir) -> None:
    files = json.loads(run.manifest.read_text())["files"]
    names = sorted(p.name for p in run.checkpoints.iterdir() if p.name != "manifest.json")
    assert names == ["best.ckpt", "best.safetensors", "last.ckpt", "last.safetensors", "step-4.ckpt", "step-8.ckpt"]
    assert sorted(files) == names
    for name in names:
        data = (run.checkpoints / name).read_bytes()
        assert files[name] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        assert verify_file(run.checkpoints / name)


def test_runs_without_a_manifest_still_load_and_resume(run: RunDir) -> None:
    run.manifest.unlink()
    assert not verify_file(run.last_checkpoint)
    assert load_checkpoint(run.last_checkpoint)["loop"]["global_step"] == 8
    res = _resume(run)
    assert res.global_step == 12 and "cannot be used" not in run.log.read_text()


def test_manifest_matches_the_file_on_disk_if_a_write_stops_between_its_steps(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import vaekit.training.checkpoint as ck

    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"w": torch.zeros(3)}, manifest=True)
    # 1. the new hash is recorded (pending) but the rename never happens: the old file still verifies
    monkeypatch.setattr(ck, "atomic_write", _failing_replace(ck.atomic_write))
    with pytest.raises(OSError, match="Input/output error while writing .*last.ckpt"):
        save_checkpoint(path, {"w": torch.ones(3)}, manifest=True)
    monkeypatch.undo()
    assert verify_file(path) and torch.equal(torch.load(path, weights_only=True)["w"], torch.zeros(3))
    # 2. the file is renamed into place but the final manifest update fails: the new file verifies
    calls = {"n": 0}
    real = ck._write_manifest

    def second_fails(folder, files):
        calls["n"] += 1
        if calls["n"] == 2:
            raise FileWriteError(folder / "manifest.json", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        real(folder, files)

    monkeypatch.setattr(ck, "_write_manifest", second_fails)
    with pytest.raises(OSError, match="No space left on device while writing .*manifest.json"):
        save_checkpoint(path, {"w": torch.ones(3)}, manifest=True)
    monkeypatch.undo()
    assert verify_file(path) and torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "manifest.json"]


class _Killed(BaseException):
    """A kill -9 at a chosen point of a write."""


_CRASHES = ("none", "while writing", "before the rename", "after the rename")


def _write_or_crash(path: Path, data: bytes, crash: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Write ``path`` with its manifest as the trainer does, stopped at ``crash``; whether the new file is in place."""
    import vaekit.training.checkpoint as ck

    real, calls = ck._write_manifest, []

    def manifest(folder, files):  # call 1: the pending hash, before the rename; call 2: its confirmation
        calls.append(1)
        if crash == "after the rename" and len(calls) == 2:
            raise _Killed
        real(folder, files)
        if crash == "before the rename" and len(calls) == 1:
            raise _Killed

    def write(f):
        f.write(data[:3] if crash == "while writing" else data)
        if crash == "while writing":
            raise _Killed

    with monkeypatch.context() as m:
        m.setattr(ck, "_write_manifest", manifest)
        try:
            ck._atomic(path, write, manifest=True)
        except _Killed:
            pass
    return crash in ("none", "after the rename")


@pytest.mark.parametrize("start", ["no file", "a confirmed file"])
def test_the_manifest_verifies_the_file_on_disk_after_any_succession_of_crashes(tmp_path: Path, start: str,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import itertools

    monkeypatch.setattr(os, "fsync", lambda fd: None)  # 168 successions: no need to wait for the disk
    for n in (1, 2, 3):
        for crashes in itertools.product(_CRASHES, repeat=n):
            where = f"starting with {start}, writes stopped at {crashes}"
            folder = tmp_path / "-".join([start, *crashes]).replace(" ", "_")
            folder.mkdir()
            path, on_disk = folder / "last.ckpt", None
            if start == "a confirmed file":
                assert _write_or_crash(path, on_disk := b"write 0", "none", monkeypatch)
            for i, crash in enumerate(crashes, start=1):
                data = f"write {i};".encode() * i
                if _write_or_crash(path, data, crash, monkeypatch):
                    on_disk = data
            if on_disk is None:
                assert not path.exists(), where
                continue
            assert path.read_bytes() == on_disk and verify_file(path) is True, where  # intact: never blamed
            _flip_middle(path, 1)
            with pytest.raises(CorruptFileError, match="is truncated or corrupt"):  # damaged: always caught,
                verify_file(path)
            for crash in ("while writing", "before the rename"):  # also after more writes cut short
                _write_or_crash(path, b"never in place", crash, monkeypatch)
                with pytest.raises(CorruptFileError, match="is truncated or corrupt"):
                    verify_file(path)


def _failing_replace(atomic_write):
    def wrapped(path, write, **kw):
        before = kw.get("before_replace")
        if Path(path).name == "manifest.json":
            return atomic_write(path, write, **kw)

        def record_then_fail(digest, size):
            if before is not None:
                before(digest, size)
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        return atomic_write(path, write, **{**kw, "before_replace": record_then_fail})

    return wrapped


# ---------------------------------------------------------------------- resume falls back
@pytest.mark.parametrize("damage", ["flip", "truncate", "missing"])
def test_resume_falls_back_from_a_bad_last_ckpt_to_the_newest_intact_step_checkpoint(run: RunDir, damage: str,
                                                                                     caplog: pytest.LogCaptureFixture) -> None:
    if damage == "flip":
        _flip_middle(run.last_checkpoint)
    elif damage == "truncate":
        run.last_checkpoint.write_bytes(run.last_checkpoint.read_bytes()[:300])
    else:
        run.last_checkpoint.unlink()
    step8 = load_checkpoint(run.step_checkpoint(8))
    with caplog.at_level(logging.WARNING, logger="vaekit"):
        res = _resume(run)
    assert (res.global_step, res.stop_reason) == (12, "max_epochs")
    said = {"flip": "SHA-256 is", "truncate": "SHA-256 is", "missing": "missing"}[damage]
    for text in (caplog.text, run.log.read_text()):
        assert f"{run.last_checkpoint} cannot be used" in text and said in text
        assert f"resuming from {run.step_checkpoint(8)} (step 8) instead" in text
    assert f"Resuming from {run.step_checkpoint(8)} at step 8" in run.log.read_text()
    assert step8["loop"]["global_step"] == 8 and verify_file(run.last_checkpoint)  # rewritten, intact
    assert load_checkpoint(run.last_checkpoint)["loop"]["global_step"] == 12


def test_resume_uses_best_ckpt_when_it_is_the_newest_intact_checkpoint(run: RunDir) -> None:
    for p in (run.last_checkpoint, run.step_checkpoint(8), run.step_checkpoint(4)):
        _flip_middle(p)
    best = load_checkpoint(run.best_checkpoint)["loop"]["global_step"]
    res = _resume(run)
    text = run.log.read_text()
    assert f"resuming from {run.best_checkpoint} (step {best}) instead" in text
    assert "also unusable: step-8.ckpt" in text and res.global_step == 12


def test_resume_with_every_checkpoint_corrupt_is_a_clear_error(run: RunDir) -> None:
    for p in run.checkpoints.glob("*.ckpt"):
        _flip_middle(p)
    before = run.metrics.read_bytes()
    with pytest.raises(CorruptFileError, match="no intact checkpoint to resume from") as info:
        _resume(run)
    msg = str(info.value)
    for name in ("last.ckpt", "step-8.ckpt", "step-4.ckpt", "best.ckpt"):
        assert f"{name}: checkpoint '{run.checkpoints / name}' is truncated or corrupt: its SHA-256 is" in msg
    assert run.metrics.read_bytes() == before and not run.lock_file.exists()


# ---------------------------------------------------------------------- load falls back from best to last
@pytest.fixture(scope="module")
def vae_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vaekit VAE whose best weights (monitor_mode='max' on the loss: the first validation) differ from the last."""
    torch.manual_seed(0)
    res = Trainer(max_epochs=3, batch_size=16, lr=1e-2, monitor="loss", monitor_mode="max", progress_bar=False,
                  root_dir=str(tmp_path_factory.mktemp("vae"))).fit(mlp_vae([6], 2, [8], likelihood="gaussian"),
                                                                     make_data(n=64))
    return res.run_dir.path


def _flip_float_bit(path: Path, bit: int) -> None:
    """Flip one bit of the first float32 of the first tensor (bit 0: lowest mantissa bit, bit 30: top exponent bit)."""
    data = bytearray(path.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    name = sorted(k for k, v in header.items() if k != "__metadata__" and v["dtype"] == "F32")[0]
    at = 8 + n + header[name]["data_offsets"][0] + bit // 8
    data[at] ^= 1 << (bit % 8)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("bit", [0, 30], ids=["mantissa", "exponent"])
def test_load_warns_and_uses_last_when_best_safetensors_has_a_flipped_bit(vae_run: Path, tmp_path: Path, bit: int) -> None:
    run = RunDir.open(shutil.copytree(vae_run, tmp_path / "run"))
    best, last = load_weights(run.best_weights), load_weights(run.last_weights)
    assert any(not torch.equal(best[k], last[k]) for k in best)
    _flip_float_bit(run.best_weights, bit)
    with pytest.warns(UserWarning, match=r"best.safetensors' is truncated or corrupt: its SHA-256 is .* Using .*last"):
        model = vaekit.load(run.path)
    assert all(torch.equal(v, last[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("bit", [0, 30], ids=["mantissa", "exponent"])
def test_load_of_a_corrupt_last_safetensors_names_the_file(vae_run: Path, tmp_path: Path, bit: int) -> None:
    run = RunDir.open(shutil.copytree(vae_run, tmp_path / "run"))
    _flip_float_bit(run.last_weights, bit)
    with pytest.raises(CorruptFileError, match=rf"weights file '{run.last_weights}' is truncated or corrupt: its "
                                               rf"SHA-256 is [0-9a-f]{{64}}, but .*manifest.json recorded [0-9a-f]{{64}}"):
        vaekit.load(run.path, checkpoint="last")


# ---------------------------------------------------------------------- OS errors while writing
def test_full_disk_during_a_checkpoint_names_the_file_and_keeps_the_previous_one(run: RunDir,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = run.manifest.read_bytes()
    last = run.last_checkpoint.read_bytes()

    def full(obj, f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OSError, match=rf"^No space left on device while writing {run.last_checkpoint}$") as info:
        _resume(run)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC and isinstance(info.value, FileWriteError)
    assert run.last_checkpoint.read_bytes() == last and run.manifest.read_bytes() == manifest
    assert verify_file(run.last_checkpoint) and load_checkpoint(run.last_checkpoint)["loop"]["global_step"] == 8
    assert not [p for p in run.checkpoints.iterdir() if ".tmp-" in p.name]
    assert not run.lock_file.exists()  # released on the exception


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics")
def test_a_real_os_error_behind_torch_and_csv_writes_is_reported_with_its_errno(tmp_path: Path) -> None:
    """torch reports a failed write as '[enforce fail ...] unexpected pos'; the file and the OS cause are named instead."""
    import resource

    path = tmp_path / "last.ckpt"
    save_checkpoint(path, {"w": torch.zeros(4)}, manifest=True)
    run = RunDir.create(tmp_path, "m")
    writer = MetricsWriter(run, tensorboard=False)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, hard))
    try:
        with pytest.raises(OSError, match=rf"File too large while writing {path}") as info:
            save_checkpoint(path, {"w": torch.randn(100_000)}, manifest=True)
        with pytest.raises(OSError, match=rf"File too large while writing {run.metrics}"):
            writer.log({f"m{i}": float(i) for i in range(5000)}, step=1, epoch=0, split="train")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
        writer.close()
    assert info.value.errno == errno.EFBIG
    assert verify_file(path) and torch.equal(torch.load(path, weights_only=True)["w"], torch.zeros(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "m", "manifest.json"]


# ---------------------------------------------------------------------- stale temporary files
def test_stale_temp_files_are_removed_on_resume(run: RunDir, sleeper: subprocess.Popen) -> None:
    dead = _dead_pid()
    stale = [run.checkpoints / f".last.ckpt.tmp-{dead}", run.path / f".metrics.csv.tmp-{dead}",
             run.eval / f".groups.csv.tmp-{dead}"]
    live = run.checkpoints / f".best.ckpt.tmp-{sleeper.pid}"
    for p in [*stale, live]:
        p.write_bytes(b"half a checkpoint")
    _resume(run)
    assert not any(p.exists() for p in stale) and live.exists()
    assert "removed 3 temporary file(s) that crashed processes left" in run.log.read_text()


# ---------------------------------------------------------------------- the lock
def _write_lock(run: RunDir, pid: int, host: str | None = None) -> None:
    run.lock_file.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "2024-01-01T00:00:00",
                                         "token": "x"}))


def test_a_second_process_cannot_train_a_locked_run(run: RunDir, sleeper: subprocess.Popen) -> None:
    _write_lock(run, sleeper.pid)
    before = {p.name: p.read_bytes() for p in run.checkpoints.iterdir()}
    with pytest.raises(RunDirInUseError, match=rf"process {sleeper.pid} on host .* holds its lock .*still running"):
        _resume(run)
    assert {p.name: p.read_bytes() for p in run.checkpoints.iterdir()} == before
    assert json.loads(run.lock_file.read_text())["pid"] == sleeper.pid  # not taken, not removed


def test_the_lock_is_held_during_fit_and_released_after(run: RunDir) -> None:
    with run.lock():  # this process, through another RunDir object: a fit of the same directory is refused
        with pytest.raises(RunDirInUseError, match=rf"process {os.getpid()} on host"):
            _resume(run)
    seen = []

    class Peek(ELBO):
        def __call__(self, model, batch, step=0):
            seen.append(json.loads(run.lock_file.read_text())["pid"])
            return super().__call__(model, batch, step)

    _trainer(run.path.parent, max_epochs=3).fit(_model(), make_data(n=64), Peek(), resume=run.path)
    assert seen and set(seen) == {os.getpid()} and not run.lock_file.exists()


@pytest.mark.parametrize("where", ["root_dir", "run_dir"])
def test_a_new_run_is_locked_from_its_creation_until_fit_ends(tmp_path: Path, where: str) -> None:
    model, other, explicit = _model(), _model(), tmp_path / "explicit"
    seen: dict = {}

    class ResumeMeanwhile(ELBO):  # mid-training, after last.ckpt of step 4: a second fit of the same run
        def __call__(self, model, batch, step=0):
            if step == 5 and "error" not in seen:
                path = explicit if where == "run_dir" else next((tmp_path / "runs").glob("*/*"))
                seen["pid"] = json.loads((path / "lock").read_text())["pid"]
                with pytest.raises(RunDirInUseError) as e:
                    _trainer(tmp_path / "other").fit(other, make_data(n=64), resume=path)
                seen["error"] = str(e.value)
            return super().__call__(model, batch, step)

    res = _trainer(tmp_path / "runs").fit(model, make_data(n=64), ResumeMeanwhile(),
                                          **({"run_dir": explicit} if where == "run_dir" else {}))
    assert seen["pid"] == os.getpid() and f"process {os.getpid()} on host" in seen["error"]
    assert not res.run_dir.lock_file.exists() and not (tmp_path / "other").exists()
    assert _resume(res.run_dir).global_step == 12  # released: the run resumes


def test_a_new_runs_lock_is_released_when_training_fails(tmp_path: Path) -> None:
    held = []

    class Boom(ELBO):
        def __call__(self, model, batch, step=0):
            if step == 2:
                held.extend((tmp_path / "runs").glob("*/*/lock"))
                raise RuntimeError("boom at step 2")
            return super().__call__(model, batch, step)

    with pytest.raises(RuntimeError, match="boom at step 2"):
        _trainer(tmp_path / "runs").fit(_model(), make_data(n=64), Boom())
    assert len(held) == 1 and not held[0].exists()


def test_a_lock_on_another_host_is_refused(run: RunDir) -> None:
    _write_lock(run, 1, host="elsewhere.example")
    with pytest.raises(RunDirInUseError, match="on another host"):
        _resume(run)


def test_a_stale_lock_is_taken_over_with_a_note(run: RunDir) -> None:
    dead = _dead_pid()
    _write_lock(run, dead)
    res = _resume(run)
    assert res.global_step == 12 and not run.lock_file.exists()
    assert f"took over the stale lock {run.lock_file} of process {dead}" in run.log.read_text()


# ---------------------------------------------------------------------- metrics.csv
def test_a_torn_metrics_csv_is_repaired_on_resume(run: RunDir) -> None:
    data = run.metrics.read_bytes()
    run.metrics.write_bytes(data[:-7])  # the last row (a val row at step 8) loses its end
    complete = data[:-7].rsplit(b"\n", 1)[0].decode().splitlines()[1:]
    _resume(run)
    lines = run.metrics.read_text().splitlines()
    assert lines[0] == METRICS_HEADER and all(len(line.split(",")) == 5 for line in lines)
    rows = read_metrics(run.metrics)
    assert lines[1:len(complete) + 1] == complete  # every complete row before the checkpoint kept, byte for byte
    val_steps = sorted({r["step"] for r in rows if r["split"] == "val"})
    assert val_steps == [4, 8, 12]
    assert "metrics.csv: dropped a torn last line" in run.log.read_text()


def test_rows_after_the_checkpoint_and_malformed_rows_are_dropped_before_appending(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path, "m")
    run.metrics.write_text(f"{METRICS_HEADER}\n4,0,train,loss,1.0\n4,0,train,kl\n8,1,train,loss,0.5\n12,2,tr")
    MetricsWriter(run, resume_step=8, tensorboard=False).close()
    assert run.metrics.read_text() == f"{METRICS_HEADER}\n4,0,train,loss,1.0\n8,1,train,loss,0.5\n"


def test_a_writer_never_replaces_metrics_csv_nor_glues_a_row_to_a_torn_line(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           caplog: pytest.LogCaptureFixture) -> None:
    import vaekit.training.loggers as loggers

    monkeypatch.setattr(loggers, "_TORN_WAIT_S", 0.05, raising=False)  # a short wait for the torn line to end
    run = RunDir.create(tmp_path, "m")
    inode = os.stat(run.metrics).st_ino
    trainer = open(run.metrics, "a", newline="", encoding="utf-8")  # the training process's handle, mid-row
    trainer.write("4,0,train,loss,1.0\n8,1,tr")
    trainer.flush()
    before = run.metrics.read_bytes()
    w = MetricsWriter(run, tensorboard=False)  # vaekit evaluate, while the run trains
    with caplog.at_level(logging.WARNING, logger="vaekit"):
        w.log({"elbo": -3.0}, step=8, epoch=1, split="test")
    assert run.metrics.read_bytes() == before and os.stat(run.metrics).st_ino == inode
    assert (f"{run.metrics} ends in a torn line" in caplog.text
            and "the test rows of step 8 (elbo) were not appended" in caplog.text)
    trainer.write("ain,loss,0.5\n12,2,train,loss,0.25\n")  # the trainer goes on: its rows reach the file
    trainer.flush()
    w.log({"elbo": -2.5}, step=12, epoch=2, split="test")
    w.close()
    trainer.close()
    assert os.stat(run.metrics).st_ino == inode
    assert [(r["step"], r["split"], r["name"]) for r in read_metrics(run.metrics)] == [
        (4, "train", "loss"), (8, "train", "loss"), (12, "train", "loss"), (12, "test", "elbo")]


def test_a_writer_waits_for_a_row_being_written_and_writes_a_header_by_appending(tmp_path: Path) -> None:
    import threading

    run = RunDir.create(tmp_path, "m")
    run.metrics.write_text("")
    inode = os.stat(run.metrics).st_ino
    trainer = open(run.metrics, "a", newline="", encoding="utf-8")
    w = MetricsWriter(run, tensorboard=False)  # an empty file gets its header appended, not replaced
    assert run.metrics.read_text() == METRICS_HEADER + "\n"
    trainer.write("4,0,train,lo")
    trainer.flush()
    done = threading.Timer(0.2, lambda: (trainer.write("ss,1.0\n"), trainer.flush()))
    done.start()
    w.log({"elbo": -3.0}, step=4, epoch=0, split="test")  # waits for the trainer's row to end
    done.join()
    w.close()
    trainer.close()
    assert os.stat(run.metrics).st_ino == inode
    assert run.metrics.read_text() == f"{METRICS_HEADER}\n4,0,train,loss,1.0\n4,0,test,elbo,-3.0\n"


def test_eval_tables_with_a_torn_row_are_truncated_on_resume(tmp_path: Path) -> None:
    table = tmp_path / "groups.csv"
    table.write_text("epoch,step,group,value\n0,4,a,0.5\n1,8,a\n1,8,b,0.25\n2,12,a,0.1\n2,1")
    truncate_tables(tmp_path, 8)
    assert table.read_text() == "epoch,step,group,value\n0,4,a,0.5\n1,8,b,0.25\n"


@pytest.mark.parametrize("content, line, what", [
    ("10,0,train,loss,1.5\n20,1,train,grad_norm\n", 3, "expected 5 fields .* got 4: '20,1,train,grad_norm'"),
    ("50,2,train,grad_norm80,3,val,elbo,-1.5\n", 2, "expected 5 fields .* got 8"),
    ("10,0,train,loss,\n", 2, "value must be a number, got ''"),
    ("x,0,train,loss,1.0\n", 2, "step and epoch must be integers, got 'x'"),
])
def test_read_metrics_names_the_file_and_line_of_damage(tmp_path: Path, content: str, line: int, what: str) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(f"{METRICS_HEADER}\n{content}")
    with pytest.raises(ValueError, match=rf"{path}, line {line}: {what}"):
        read_metrics(path)


def test_read_metrics_skips_a_torn_last_line_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(f"{METRICS_HEADER}\n10,0,train,loss,1.5\n20,1,train,grad_norm")  # no newline: cut short
    with caplog.at_level(logging.WARNING, logger="vaekit"):
        rows = read_metrics(path)
    assert rows == [{"step": 10, "epoch": 0, "split": "train", "name": "loss", "value": 1.5}]
    assert f"{path}, line 3: skipped a torn last line (expected 5 fields" in caplog.text
    caplog.clear()
    path.write_text(f"{METRICS_HEADER}\n10,0,train,loss,1.5\n20,1,train,loss,1.2")  # parses, but "1.2" may be "1.25"
    with caplog.at_level(logging.WARNING, logger="vaekit"):
        assert read_metrics(path) == rows
    assert f"{path}, line 3: skipped a torn last line (no newline after it)" in caplog.text
    path.write_text(f"{METRICS_HEADER}\n10,0,train,loss,1.5\n\n")  # blank lines after the last row: nothing torn
    assert read_metrics(path) == rows


def test_read_metrics_names_a_bad_header_and_bytes_that_are_not_text(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("step;epoch\n1;2\n")
    with pytest.raises(ValueError, match=rf"{path}, line 1: the header is 'step;epoch'"):
        read_metrics(path)
    path.write_bytes(f"{METRICS_HEADER}\n1,0,train,loss,1.0\n".encode() + b"\xff\xfe\x00junk\n")
    with pytest.raises(ValueError, match=rf"{path}, line 3: not UTF-8 text"):
        read_metrics(path)


# ---------------------------------------------------------------------- config.yaml
@pytest.mark.parametrize("content, what", [
    (b"[1, 2]\n", r"must hold a mapping .* got a list: \[1, 2\]"),
    (b"\x89PNG\r\n\x1a\n\x00\xff\xfe\xfd random bytes", r"line 1: not UTF-8 text \(byte 0x89"),
    (b"model:\n  a: [\n", r"line 3, column 1: not valid YAML"),
    (b"just a string\n", r"must hold a mapping .* got a str"),
])
def test_a_damaged_config_yaml_is_named(run: RunDir, content: bytes, what: str) -> None:
    run.config_file.write_bytes(content)
    with pytest.raises(ValueError, match=rf"{run.config_file}.*{what}"):
        run.read_config()
    with pytest.raises(ValueError, match=rf"{run.config_file}.*{what}"):
        vaekit.load(run.path)


# ---------------------------------------------------------------------- run_name
@pytest.mark.parametrize("name", ["..", ".", "a/b", "../x", ""])
def test_run_names_that_are_not_one_folder_are_refused_before_anything_is_written(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=rf"run_name must be one folder name .* got {name!r}"):
        Trainer(root_dir=str(tmp_path / "runs"), run_name=name)
    with pytest.raises(ValueError, match="run name must be one folder name"):
        RunDir.create(tmp_path / "runs", name)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("env, rank", [({}, 0), ({"RANK": "0", "SLURM_PROCID": "3"}, 0), ({"RANK": "2"}, 2),
                                       ({"LOCAL_RANK": "1", "NODE_RANK": "0"}, 1), ({"SLURM_PROCID": "0"}, 0)])
def test_the_rank_that_decides_who_locks_comes_from_the_launchers_environment(monkeypatch: pytest.MonkeyPatch, env: dict, rank: int) -> None:
    from vaekit.training.trainer import _launch_rank

    for var in ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert _launch_rank() == rank


def test_evaluate_refuses_a_damaged_metrics_csv_before_writing_anything(tmp_path: Path) -> None:
    from vaekit.config import fit_config
    from vaekit.runs import evaluate_run

    cfg = {"model": {"class_path": "vaekit.models.mlp_vae", "init_args": {"data_shape": [64], "latent_features": 2,
                                                                           "hidden": [8]}},
           "data": {"class_path": "vaekit.data.Digits", "init_args": {"binarize": "threshold", "flatten": True}},
           "trainer": {"max_steps": 4, "batch_size": 64, "log_every_steps": 1, "progress_bar": False,
                       "root_dir": str(tmp_path / "runs")}}
    run = RunDir.open(fit_config(cfg).run_dir.path)
    lines = run.metrics.read_text().splitlines(keepends=True)
    lines[2] = "50,2,train,grad_norm80,3,val,elbo\n"  # a glued row in the middle
    run.metrics.write_text("".join(lines))
    before = run.metrics.read_bytes()
    with pytest.raises(ValueError, match=r"metrics.csv, line 3: expected 5 fields"):
        evaluate_run(run.path, iwae_k=4, split="val", n_points=4, progress=False)
    assert not any(run.eval.glob("evaluate-*.json")) and run.metrics.read_bytes() == before
