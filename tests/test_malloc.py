"""vaekit._malloc: the mmap threshold is fixed where glibc exists (in a child process: it changes the
allocator of the whole process), and only the estimating commands of the CLI fix it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vaekit import cli


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_threshold_is_fixed_in_a_child_process() -> None:
    out = subprocess.run([sys.executable, "-c", "from vaekit._malloc import pin_mmap_threshold as p; print(p())"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out in ("True", "False")  # False only off glibc (musl)
    libc = subprocess.run(["ldd", "--version"], capture_output=True, text=True)
    if "GNU" in libc.stdout + libc.stderr:
        assert out == "True"


def test_only_the_estimating_commands_fix_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    calls: list[str] = []
    monkeypatch.setattr(cli, "pin_mmap_threshold", lambda: calls.append("pin") or True)
    for name in ("evaluate", "analyze", "fit", "sample"):
        calls.clear()
        try:
            cli.main([name, "--help"])
        except SystemExit:
            pass
        assert calls == (["pin"] if name in cli.ESTIMATING_COMMANDS else []), name
    assert set(cli.ESTIMATING_COMMANDS) == {"evaluate", "analyze"}
