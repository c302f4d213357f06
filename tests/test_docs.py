"""The user documentation in docs/ stays true.

Every ```python block of a page runs as written, in order, in one namespace per page, in a
fresh temporary working directory (offline, on the CPU). A ```yaml block whose first line
is ``# file: NAME`` is written to ``NAME`` in that directory when the page reaches it, so
configs shown in the docs are the configs the examples train from. ```bash blocks are not
run, but every ``vaekit`` command in them (also behind ``torchrun``/``srun`` ... ``-m
vaekit``) must name a real subcommand, real options and real example configs.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```([A-Za-z]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
FILE_MARK = re.compile(r"^#\s*file:\s*(\S+)\s*$")


def _blocks(page: Path) -> list[tuple[str, str, int]]:
    """``(language, code, first line number)`` of every fenced block of a page, in order."""
    text = page.read_text(encoding="utf-8")
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start(2)) + 1) for m in FENCE.finditer(text)]


def test_every_page_exists_and_has_runnable_examples() -> None:
    names = {p.name for p in PAGES}
    assert names >= {"index.md", "models.md", "training.md", "cli.md", "data.md", "estimators.md"}
    for page in PAGES:
        assert any(lang == "python" for lang, _, _ in _blocks(page)), f"{page.name} has no ```python block"


def test_pages_link_to_existing_files() -> None:
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


@pytest.fixture
def docs_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh working directory, a private cache, the real datasets only through VAEKIT_DATA
    (set by the Makefile when ../shared/data exists; unset, pages fall back or fail loudly);
    os.environ restored after.

    The examples train tiny models, for which one thread is fastest (and several threads
    slow down by an order of magnitude when other processes share the cores).
    """
    saved, threads = dict(os.environ), torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path / ".cache"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    torch.manual_seed(0)
    yield tmp_path
    os.environ.clear()
    os.environ.update(saved)
    torch.set_num_threads(threads)
    logging.getLogger("vaekit").handlers.clear()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_examples_run(page: Path, docs_env: Path) -> None:
    namespace: dict = {"__name__": "__main__"}
    for lang, code, line in _blocks(page):
        if lang == "yaml" and (m := FILE_MARK.match(code.splitlines()[0] if code else "")):
            (docs_env / m.group(1)).write_text(code, encoding="utf-8")
        elif lang == "python":
            # pad with newlines so a traceback points at the line of the .md file
            exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)


# ---------------------------------------------------------------------------------- shell commands
def _commands(page: Path) -> list[tuple[list[str], int]]:
    """The ``vaekit ...`` argument lists of every command line in the page's bash blocks."""
    out = []
    for lang, code, line in _blocks(page):
        if lang != "bash":
            continue
        pending, start = "", 0
        for i, text in enumerate(code.splitlines()):
            if not pending:
                start = line + i
            if text.rstrip().endswith("\\"):  # a continued command line
                pending += text.rstrip()[:-1] + " "
                continue
            text, pending = pending + text, ""
            try:
                words = shlex.split(text, comments=True)
            except ValueError:
                continue
            for j, w in enumerate(words):
                if w == "vaekit" and (j == 0 or words[j - 1] in ("-m", "srun", "exec")):
                    out.append((words[j + 1:], start))
                    break
    return out


def _options(command: str) -> set[str]:
    """Long and short options that ``vaekit <command> --help`` lists."""
    import contextlib
    import io

    from vaekit.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        main([command, "--help"])
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w.-]*)", buf.getvalue()))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_shell_commands_name_real_options(page: Path) -> None:
    import inspect

    from vaekit.cli import COMMANDS
    from vaekit.training import Trainer

    trainer_args = set(inspect.signature(Trainer).parameters)
    known: dict[str, set[str]] = {}
    for args, line in _commands(page):
        where = f"{page.name}:{line}"
        if not args:  # bare `vaekit`: the usage text
            continue
        cmd = args[0]
        assert cmd in COMMANDS or cmd in ("--help", "-h", "--version", "-V"), f"{where}: unknown command {cmd!r}"
        if cmd not in COMMANDS:
            continue
        if cmd not in known:
            known[cmd] = _options(cmd) | ({"--resume"} if cmd == "fit" else set())
        for arg in args[1:]:
            flag = arg.split("=", 1)[0]
            if flag.startswith("--trainer."):
                assert flag[len("--trainer."):] in trainer_args, f"{where}: {flag} is not a Trainer argument"
            elif flag.startswith(("--model.", "--data.", "--objective.")):
                continue  # nested constructor arguments, checked when the config is parsed
            elif flag.startswith("-"):
                assert flag in known[cmd], f"{where}: vaekit {cmd} has no option {flag}"
            elif arg.startswith("examples/"):
                assert (ROOT / arg).is_file(), f"{where}: {arg} does not exist"


@pytest.mark.slow
def test_documented_two_process_cpu_command_runs(tmp_path: Path) -> None:
    """The torch.distributed.run command of training.md, on the tiny config of cli.md, trains one run on 2 processes."""
    import subprocess
    import sys

    (config,) = [code for lang, code, _ in _blocks(DOCS / "cli.md")
                 if lang == "yaml" and code.startswith("# file: tiny_digits.yaml")]
    (tmp_path / "tiny_digits.yaml").write_text(config, encoding="utf-8")
    (command,) = [line for lang, code, _ in _blocks(DOCS / "training.md") if lang == "bash"
                  for line in re.sub(r"\\\n", " ", code).splitlines() if "torch.distributed.run" in line]
    words = shlex.split(command, comments=True)
    assert words[0] == "python"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("VAEKIT_DATA", None)
    proc = subprocess.run([sys.executable, *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on cpu x2" in proc.stdout + proc.stderr
    (run,) = (tmp_path / "runs" / "tiny_digits").iterdir()  # one run directory, written by rank 0 only
    from vaekit.training import read_metrics

    val_steps = [r["step"] for r in read_metrics(run / "metrics.csv") if r["split"] == "val" and r["name"] == "elbo"]
    assert val_steps == [10, 20]  # 1258 examples / 2 processes / batch 64 = 10 steps per epoch, 2 epochs


def test_the_gallery_states_the_duration_its_record_holds() -> None:
    """docs/gallery.py and docs/gallery.md give the script's run time as gallery.json recorded it, and nowhere another."""
    import json

    seconds = json.loads((DOCS / "gallery" / "gallery.json").read_text())["total_seconds"]
    for path in (DOCS / "gallery.py", DOCS / "gallery.md"):
        text = path.read_text()
        stated = [float(s) for s in re.findall(r"(\d+(?:\.\d+)?) s on one (?:CPU )?thread", text)]
        assert stated and all(abs(s - seconds) <= 0.5 for s in stated), (path.name, stated, seconds)
        assert not re.search(r"(about|~) ?\d+ min", text), f"{path.name} states another duration"
