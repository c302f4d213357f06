"""benchmarks/gpu_suite.sh, the script prepared for a short lease of a GPU machine, works before one is lent.

The dry run (``--device cpu``: tiny sizes, a temporary results folder) runs every step for real
on this CPU (about 25 s on 2 cores) and must write every table, each naming the device. A stand-in
interpreter checks how failed, missing and hanging steps are reported without running them, and
the wheel recipe (benchmarks/wheels.sh) never fetches torch: the GPU machine's CUDA build stays.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
WHEELS = ROOT / "benchmarks" / "wheels.sh"
TABLES = ["fit_throughput_cpu.md", "iwae_speed_cpu.md", "ais_speed_cpu.md", "local_opt_speed_cpu.md",
          "gpu_suite_cpu.md"]


def _data() -> Path | None:
    """The folder holding binarized_mnist/ that the suite would find, if any."""
    for d in (os.environ.get("VAEKIT_DATA"), ROOT.parent / "shared" / "data"):
        if d and (Path(d) / "binarized_mnist").is_dir():
            return Path(d)
    return None


def _suite(*args: str, python: str = sys.executable, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SUITE), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": python, **env})


# A stand-in interpreter: answers the import and device checks at once and fakes each benchmark
# script: train and IWAE write their table, AIS fails, local optimisation writes nothing (or hangs
# with FAKE_HANG set), and the `vaekit fit` step (a script on stdin) writes nothing.
FAKE = """#!/usr/bin/env bash
opt() { local want=$1; shift; while (($#)); do [[ $1 == "$want" ]] && { echo "$2"; return; }; shift; done; }
case $1 in
    -c) exit 0 ;;
    -) cat >/dev/null; (($# == 2)) && echo "2.0+fake Fake CPU"; exit 0 ;;
    benchmarks/train_throughput.py) echo "device: cpu (Fake CPU)" > "$(opt --out-dir "$@")/train_throughput_cpu_1threads.md" ;;
    benchmarks/iwae_speed.py) echo "device: cpu (Fake CPU)" > "$(opt --md "$@")" ;;
    benchmarks/ais_speed.py) echo "AIS broke" >&2; exit 3 ;;
    benchmarks/local_opt_speed.py) [[ -n ${FAKE_HANG:-} ]] && exec sleep 300; echo "wrote nothing" ;;
    *) exit 9 ;;
esac
"""


@pytest.fixture
def fake_python(tmp_path: Path) -> str:
    path = tmp_path / "python"
    path.write_text(FAKE)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize("script", [SUITE, WHEELS])
def test_scripts_parse_and_explain_themselves(script: Path) -> None:
    subprocess.run(["bash", "-n", str(script)], check=True)
    res = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "--help" not in res.stdout.splitlines()[0]  # the header comment, not an argument echo
    if script == SUITE:
        for option in ("--device cuda|cpu", "--quick", "--out DIR", "--wheels DIR", "--budget", "--archive"):
            assert option in res.stdout
    else:
        assert "--python-version" in res.stdout and "gpu_suite.sh" in res.stdout


def test_bad_arguments_are_refused_before_any_work() -> None:
    results = ROOT / "benchmarks" / "results"
    before = sorted(p.name for p in results.iterdir())
    for args, message in [(["--device", "gpu"], "--device must be cuda or cpu"),
                          (["--budget", "soon"], "--budget must be a whole number"),
                          (["--frobnicate"], "unknown argument"),
                          (["--quick", "--out", str(results)], "never write into benchmarks/results"),
                          (["--device", "cpu", "--data", "/nonexistent"], "holds no binarized_mnist")]:
        res = _suite(*args, timeout=30)
        assert res.returncode == 2 and message in res.stderr, (args, res.stderr)
    assert sorted(p.name for p in results.iterdir()) == before


def test_wheel_recipe_never_fetches_torch() -> None:
    text = WHEELS.read_text()
    needed = re.search(r"^NEEDED=\((.*?)^\)", text, re.S | re.M)
    assert needed, "wheels.sh lists its wheels in NEEDED=( ... )"
    names = [line.split("#")[0].strip() for line in needed.group(1).splitlines() if line.split("#")[0].strip()]
    assert {"zuko", "lightning-fabric", "jsonargparse", "docstring-parser", "typeshed-client", "pooch",
            "setuptools"} <= set(names)
    assert not [n for n in names if re.match(r"(torch|triton|nvidia)([-_].*)?$", n, re.I)]
    assert "--no-deps" in text  # one by one: no dependency of theirs (torch) comes along
    suite = SUITE.read_text()
    assert "--no-deps -e" in suite and "--no-index" in suite
    assert "--upgrade" not in suite and " -U " not in suite


def test_a_wheel_folder_with_torch_is_refused(tmp_path: Path) -> None:
    wheels = tmp_path / "whl"
    wheels.mkdir()
    (wheels / "torch-2.11.0-cp312-cp312-manylinux_2_28_x86_64.whl").touch()
    missing_vaekit = tmp_path / "python"
    missing_vaekit.write_text("#!/usr/bin/env bash\nexit 1\n")  # `import vaekit` fails, and nothing else may run
    missing_vaekit.chmod(0o755)
    res = _suite("--install-only", "--wheels", str(wheels), python=str(missing_vaekit), timeout=30)
    assert res.returncode == 1 and "refusing" in res.stdout and "torch-2.11.0" in res.stdout


def test_failed_and_missing_steps_are_reported_and_the_rest_runs(tmp_path: Path, fake_python: str) -> None:
    if _data() is None:
        pytest.skip("no binarized_mnist in $VAEKIT_DATA or ../shared/data")
    out = tmp_path / "out"
    res = _suite("--device", "cpu", "--out", str(out), python=fake_python, timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    summary = (out / "gpu_suite_cpu.md").read_text()
    rows = dict(re.findall(r"^\| (\w+) \| ([^|]+) \|", summary, re.M))
    assert rows == {"step": "status", "install": "ok", "train_throughput": "ok", "iwae": "ok",
                    "fit": "failed: wrote no fit_throughput_cpu.md", "ais": "failed (exit 3)",
                    "local_opt": "failed: wrote no local_opt_speed_cpu.md"}
    assert "3 step(s) failed: fit ais local_opt" in summary
    assert "## log of ais (failed (exit 3))" in summary and "AIS broke" in summary
    assert "device: cpu (Fake CPU)" in summary  # the tables that were written are in the summary


@pytest.mark.slow
def test_a_hanging_step_is_stopped_at_its_limit(tmp_path: Path, fake_python: str) -> None:
    if _data() is None:
        pytest.skip("no binarized_mnist in $VAEKIT_DATA or ../shared/data")
    out = tmp_path / "out"
    # a 36 s budget leaves the hanging step the shortest limit a step gets (20 s, 15 s kept in reserve)
    res = _suite("--device", "cpu", "--out", str(out), "--budget", "36", python=fake_python, timeout=90,
                 FAKE_HANG="1")
    assert res.returncode == 1
    summary = (out / "gpu_suite_cpu.md").read_text()
    assert re.search(r"^\| local_opt \| timed out after 2\ds \|", summary, re.M), summary


def test_the_cpu_dry_run_writes_every_table_naming_the_device(tmp_path: Path) -> None:
    if _data() is None:
        pytest.skip("no binarized_mnist in $VAEKIT_DATA or ../shared/data")
    if shutil.which("timeout") is None:
        pytest.skip("needs coreutils' timeout")
    out = tmp_path / "out"
    res = _suite("--device", "cpu", "--out", str(out), "--archive", str(tmp_path / "suite.tar.gz"))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    tables = [*TABLES, *(p.name for p in out.glob("train_throughput_cpu_*threads.md"))]
    assert len(tables) == len(TABLES) + 1, sorted(p.name for p in out.iterdir())
    for name in tables:
        assert re.search(r"device: cpu \(.+\)", (out / name).read_text()), name
    summary = (out / "gpu_suite_cpu.md").read_text()
    assert "0 step(s) failed" in summary and "QUICK sizes" in summary
    for step in ("install", "train_throughput", "iwae", "fit", "ais", "local_opt"):
        assert re.search(rf"^\| {step} \| ok \|", summary, re.M), step
    assert {"iwae_speed.csv", "ais_speed.csv", "local_opt_speed.csv", "train_throughput.csv"} <= {
        p.name for p in out.iterdir()}
    assert (tmp_path / "suite.tar.gz").stat().st_size > 0
