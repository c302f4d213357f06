"""The README's Python example and its first lines (the two commands) are true."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(), re.S)


def test_readme_starts_with_the_two_commands():
    first = _blocks("bash")[0].strip().splitlines()
    assert [ln.split("#")[0].strip() for ln in first] == ["make demo", "make test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _blocks("python")[0]
    assert len([ln for ln in code.strip().splitlines() if ln.strip()]) <= 12
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["x"].shape == (16, 64)
    assert -60 < namespace["ll"].mean < 0
    rebuilt, model = namespace["same"], namespace["model"]
    for (k, a), b in zip(model.state_dict().items(), rebuilt.state_dict().values()):
        assert (a.cpu() == b.cpu()).all(), k
    assert list(tmp_path.glob("runs/*/*/config.yaml"))


def test_cli_example_commands_exist():
    from vaekit.cli import COMMANDS

    for line in _blocks("bash")[1].strip().splitlines():
        words = line.split()
        assert words[0] == "vaekit" and words[1] in COMMANDS, line
        for arg in words:
            if arg.startswith("examples/"):
                assert (README.parent / arg).is_file(), arg
