"""benchmarks/train_throughput.py: the lockstep mode (each method in its own process, blocks in turns)."""

from __future__ import annotations

import csv

import pytest


@pytest.fixture
def script(load_benchmark):
    return load_benchmark("train_throughput")


def test_lockstep_times_every_method_in_its_own_process_block_by_block(script, tmp_path, capsys, monkeypatch):
    seen = {}
    real = script.lockstep

    def spy(*a, **k):
        seen["out"] = real(*a, **k)
        return seen["out"]

    monkeypatch.setattr(script, "lockstep", spy)
    rows = script.main(["--methods", "plain-ondevice", "vaekit", "--n-train", "600", "--steps", "6", "--block", "3",
                        "--repeats", "2", "--warmup-steps", "1", "--profile-steps", "0", "--threads", "1",
                        "--data-root", str(tmp_path / "no-data"), "--out-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "4 rounds of one 3-step block per method" in out  # 2 repeats x 6 steps / 3
    blocks, windows, notes = seen["out"]
    assert notes == {} and {m: len(b) for m, b in blocks.items()} == {"plain-ondevice": 4, "vaekit": 4}
    # each block ran inside the coordinator's window for it (between its "go" and its "@@block")
    assert all(0 < t <= w for m in blocks for t, w in zip(blocks[m], windows[m]))
    by = {r["method"]: r for r in rows}
    assert set(by) == {"plain-ondevice", "vaekit"}
    assert all(r["isolation"] == "lockstep" and float(r["samples_per_s"]) > 0 for r in rows)
    assert by["plain-ondevice"]["ratio_to_ondevice_rounds"] == "1.000" and float(by["vaekit"]["ratio_to_ondevice_rounds"]) > 0
    md = (tmp_path / "out" / "train_throughput_cpu_1threads.md").read_text()
    assert "`--isolation lockstep`" in md and "vs plain-ondevice, median of rounds" in md
    with open(tmp_path / "out" / "train_throughput.csv", newline="") as f:
        saved = list(csv.DictReader(f))
    assert [r["method"] for r in saved] == ["plain-ondevice", "vaekit"] and saved[1]["isolation"] == "lockstep"


def test_paired_ratios_are_medians_of_per_round_ratios(script):
    blocks = {"plain-ondevice": [1.0, 2.0, 1.0], "vaekit": [0.5, 4.0, 1.0]}
    assert script.paired_ratios(blocks) == {"plain-ondevice": 1.0, "vaekit": 1.0}  # ratios 2, 0.5, 1
    assert script.paired_ratios({"vaekit": [1.0]}) == {}


# A stand-in worker speaking the lockstep protocol: argv = method, mode (ok, die, die-late, hang).
FAKE = r"""
import sys, time
m, mode = sys.argv[1], sys.argv[2]
def say(s):
    print(s, flush=True)
say("warming up " + m)
if mode == "die":
    sys.exit(3)
say("@@wait")
n = 0
while True:
    word = sys.stdin.readline().strip()
    if word == "end":
        if mode == "hang-exit":
            time.sleep(30)
        sys.exit(0)
    if mode == "hang":
        time.sleep(30)
    n += 1
    t = time.perf_counter(); time.sleep(0.005); say(f"@@block {time.perf_counter() - t!r}")
    if mode == "die-late" and n == 2:
        sys.exit(4)
    say("@@wait")
"""


def _coordinate(script, modes, timeout=60.0):
    import argparse
    import sys

    args = argparse.Namespace(methods=list(modes), seed=0, repeats=1, steps=3, block=1)
    return script.lockstep(args, [], command=lambda m: [sys.executable, "-c", FAKE, m, modes[m]], timeout=timeout)


def test_lockstep_coordinator_takes_turns_and_forwards_other_output(script, capsys):
    blocks, windows, notes = _coordinate(script, {"plain-ondevice": "ok", "vaekit": "ok"})
    assert notes == {} and {m: len(b) for m, b in blocks.items()} == {"plain-ondevice": 3, "vaekit": 3}
    assert all(0 < t <= w for m in blocks for t, w in zip(blocks[m], windows[m]))
    assert "[vaekit] warming up vaekit" in capsys.readouterr().out


def test_a_failed_compiled_worker_becomes_a_note_and_the_others_go_on(script):
    blocks, _, notes = _coordinate(script, {"plain-ondevice": "ok", "vaekit-compile": "die"})
    assert set(blocks) == {"plain-ondevice"} and len(blocks["plain-ondevice"]) == 3
    assert notes["vaekit-compile"].startswith("failed: worker exit 3")


def test_a_failed_or_silent_eager_worker_stops_the_run_naming_it(script):
    with pytest.raises(RuntimeError, match="vaekit failed: worker exit 4"):
        _coordinate(script, {"plain-ondevice": "ok", "vaekit": "die-late"})
    with pytest.raises(RuntimeError, match="worker vaekit said nothing for 1 s"):
        _coordinate(script, {"plain-ondevice": "ok", "vaekit": "hang"}, timeout=1.0)
    with pytest.raises(RuntimeError, match="vaekit failed: worker exit -9"):  # hangs after its last block
        _coordinate(script, {"plain-ondevice": "ok", "vaekit": "hang-exit"}, timeout=1.0)


def test_a_hanging_compiled_worker_becomes_a_note(script):
    blocks, _, notes = _coordinate(script, {"plain-ondevice": "ok", "vaekit-compile": "hang"}, timeout=1.0)
    assert set(blocks) == {"plain-ondevice"} and notes["vaekit-compile"].startswith("failed: worker exit -9")


def test_an_older_csv_gains_the_new_columns_and_keeps_its_rows(script, tmp_path, monkeypatch):
    path = tmp_path / "train_throughput.csv"
    old = script.FIELDS[:-2]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=old)
        w.writeheader()
        w.writerow({k: "x" for k in old} | {"method": "vaekit", "samples_per_s": "123"})
    script.upgrade_csv(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == script.FIELDS
    assert rows[0]["samples_per_s"] == "123" and rows[0]["isolation"] == "in-process"
    assert rows[0]["ratio_to_ondevice_rounds"] == ""
    with open(path, "w", newline="") as f:
        f.write("date,mystery\n1,2\n")
    with pytest.raises(SystemExit, match="mystery"):
        script.upgrade_csv(path)
    # the benchmark refuses such a file before it reads data or measures anything
    def never(*_a, **_k):
        raise AssertionError("measured before the CSV was checked")

    monkeypatch.setattr(script, "load_train", never)
    monkeypatch.setattr(script, "lockstep", never)
    with pytest.raises(SystemExit, match="mystery"):
        script.main(["--methods", "vaekit", "--out-dir", str(tmp_path), "--steps", "1", "--repeats", "1"])


def test_upgrade_fills_only_columns_the_file_lacked(load_benchmark, tmp_path):
    iwae_speed = load_benchmark("iwae_speed")
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,\n")
    iwae_speed.upgrade_csv(path, ["a", "b", "c"], {"b": "B", "c": "C"})
    assert path.read_text().splitlines() == ["a,b,c", "1,,C"]


def test_the_worker_clock_waits_at_every_block_edge_and_ends_only_after_the_last(script):
    import io

    import torch

    out = io.StringIO()
    clock = script.LockstepClock(torch.device("cpu"), 2, 6, 2, False, io.StringIO("go\ngo\nend\n"), out)
    for _ in range(7):  # hook calls after steps 1..7: edges at 2, 4, 6
        clock()
    lines = [ln.split()[0] for ln in out.getvalue().splitlines()]
    assert lines == ["@@wait", "@@block", "@@wait", "@@block", "@@wait"] and len(clock.blocks) == 2
    early = script.LockstepClock(torch.device("cpu"), 2, 6, 2, False, io.StringIO("end\n"), io.StringIO())
    early()
    with pytest.raises(SystemExit, match="got 'end' after step 2"):
        early()


def test_the_isolation_defaults_to_lockstep_on_a_cpu(script):
    assert script.parse_args(["--methods", "vaekit"]).isolation == "lockstep"
    assert script.parse_args(["--methods", "vaekit", "--isolation", "in-process"]).isolation == "in-process"


def test_the_nocpp_method_fits_with_the_wrapper_off_and_leaves_the_environment_as_it_was(script, monkeypatch):
    import os

    import torch

    from vaekit.training import Trainer
    from vaekit.training.step import CPP_WRAPPER_ENV

    seen = []
    monkeypatch.setattr(Trainer, "fit", lambda self, *a, **k: seen.append(os.environ.get(CPP_WRAPPER_ENV)))
    x = torch.zeros(8, 784)
    for before in (None, "1"):
        if before is None:
            monkeypatch.delenv(CPP_WRAPPER_ENV, raising=False)
        else:
            monkeypatch.setenv(CPP_WRAPPER_ENV, before)
        script.runners_for(x, torch.device("cpu"), 4)["vaekit-compile-nocpp"](2)
        script.runners_for(x, torch.device("cpu"), 4)["vaekit-compile"](2)
        assert os.environ.get(CPP_WRAPPER_ENV) == before
    assert seen == ["0", None, "0", "1"]
