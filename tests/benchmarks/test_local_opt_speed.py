"""benchmarks/local_opt_speed.py: its rows carry CPU time and resident memory at the first and the last step, and
a CSV written before those columns existed is rewritten under the new header with its old rows kept."""

from __future__ import annotations

import csv
import sys


def test_rows_have_cpu_time_and_memory_and_an_old_csv_is_upgraded(tmp_path, monkeypatch, load_benchmark):
    module = load_benchmark("local_opt_speed")
    out = tmp_path / "speed.csv"
    old_fields = module.FIELDS[:module.FIELDS.index("data") + 1]  # the columns before CPU time and memory
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=old_fields)
        writer.writeheader()
        writer.writerow({key: "old" for key in old_fields})
    monkeypatch.setattr(sys, "argv", ["local_opt_speed.py", "--n-points", "3", "--steps", "5", "--check-every", "2",
                                      "--k", "2", "--check-k", "3", "--eval-k", "4", "--threads", "1",
                                      "--out", str(out), "--md", str(tmp_path / "speed.md")])
    module.main()
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == module.FIELDS
        rows = list(reader)
    assert [r["family"] for r in rows] == ["old", "ffg", "af"]
    assert rows[0]["cpu_s"] == "" and rows[0]["n_points"] == "old"
    for r in rows[1:]:
        assert (r["n_points"], r["steps"], r["check_every"], r["check_k"], r["eval_k"]) == ("3", "5", "2", "3", "4")
        assert float(r["cpu_s"]) > 0 and int(r["cpu_point_steps_per_s"]) > 0
        mb = [float(r[key]) for key in ("rss_start_mb", "rss_first_step_mb", "rss_last_step_mb", "rss_peak_mb")]
        assert all(m > 10 for m in mb) and mb[3] >= max(mb[1], mb[2])
    assert "MiB after the last step" in (tmp_path / "speed.md").read_text()


def test_memory_trace_finds_the_reading_at_a_count_of_pairs(monkeypatch, load_benchmark):
    module = load_benchmark("local_opt_speed")
    readings = iter([100.0, 200.0, 300.0])
    monkeypatch.setattr(module, "resident_mb", lambda: next(readings))
    trace = module.MemoryTrace()
    for done in (0, 8, 14, 20):  # the first call (done=0) is not a reading
        trace(done, 20)
    assert (trace.after(8), trace.after(14), trace.after(20), trace.peak) == (100.0, 200.0, 300.0, 300.0)
