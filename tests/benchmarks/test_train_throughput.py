"""benchmarks/train_throughput.py: the lockstep mode (each method in its own process, blocks in turns)."""

from __future__ import annotations

import csv

import pytest


@pytest.fixture
def script(load_benchmark):
    return load_benchmark("train_throughput")


def test_lockstep_times_every_method_in_its_own_process_block_by_block(script, tmp_path, capsys):
    rows = script.main(["--methods", "plain-ondevice", "vaekit", "--n-train", "600", "--steps", "6", "--block", "3",
                        "--repeats", "2", "--warmup-steps", "1", "--profile-steps", "0", "--threads", "1",
                        "--data-root", str(tmp_path / "no-data"), "--out-dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "4 rounds of one 3-step block per method" in out  # 2 repeats x 6 steps / 3
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
    assert script.paired_ratios(blocks, []) == {"plain-ondevice": 1.0, "vaekit": 1.0}  # ratios 2, 0.5, 1
    assert script.paired_ratios({"vaekit": [1.0]}, []) == {}


def test_an_older_csv_gains_the_new_columns_and_keeps_its_rows(script, tmp_path):
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
    assert rows[0]["samples_per_s"] == "123" and rows[0]["isolation"] == "" and rows[0]["ratio_to_ondevice_rounds"] == ""
    with open(path, "w", newline="") as f:
        f.write("date,mystery\n1,2\n")
    with pytest.raises(SystemExit, match="mystery"):
        script.upgrade_csv(path)


def test_the_isolation_defaults_to_lockstep_on_a_cpu(script):
    assert script.parse_args(["--methods", "vaekit"]).isolation == "lockstep"
    assert script.parse_args(["--methods", "vaekit", "--isolation", "in-process"]).isolation == "in-process"
