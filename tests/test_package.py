"""vaekit as a released package: one version, a changelog, and a wheel that installs and runs alone.

The slow test builds the wheel and the sdist with ``python -m build``, installs the wheel into a
fresh virtual environment (the CPU torch pinned in constraints.txt first, then the wheel and
its dependencies from the package index) and runs the console command and the library there,
outside the checkout. It needs the ``build`` package (in the ``test`` extra) and a package
index (PyPI or a local mirror).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

import pytest

import vaekit
from vaekit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_has_one_source_and_the_cli_prints_it() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.M)
    assert 'version = {attr = "vaekit.__version__"}' in pyproject
    assert not re.search(r"^version\s*=", pyproject.split("[project]", 1)[1].split("\n[", 1)[0], re.M)
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.dev\d+)?", vaekit.__version__)
    for flag in ("--version", "-V"):
        out = io.StringIO()
        with redirect_stdout(out):
            assert main([flag]) == 0
        assert out.getvalue() == f"vaekit {vaekit.__version__}\n"
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["--help"]) == 0
    assert "'vaekit --version' prints the version" in out.getvalue()



def test_docs_pins_marker_is_the_newest_python_floor_of_the_pinned_set() -> None:
    """constraints.txt pins the docs packages under one marker: the highest Requires-Python of the pinned releases
    (read from the installed ones), and the comment above the pins states that version."""
    from importlib import metadata

    text = (ROOT / "constraints.txt").read_text(encoding="utf-8")
    pins = re.findall(r'^([A-Za-z0-9_.-]+)==(\S+); python_full_version >= "([\d.]+)"$', text, re.M)
    assert pins, "constraints.txt has no docs pins under a python_full_version marker"
    (marker,) = {m for _, _, m in pins}
    floors = {}
    for name, version, _ in pins:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if dist.version == version:
            found = re.search(r">=\s*([\d.]+)", dist.metadata.get("Requires-Python") or "")
            floors[name] = tuple(int(p) for p in found.group(1).split(".")) if found else (0,)
    if not floors:
        pytest.skip("none of the pinned docs releases is installed")
    newest = max(floors.values())
    assert tuple(int(p) for p in marker.split(".")) == newest + (0,) * (3 - len(newest)), (marker, floors)
    comment = text.split("\n" + pins[0][0])[0]
    assert f"Python >= {marker}" in comment and "3.11 (" not in comment, comment

def test_changelog_has_the_current_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(vaekit.__version__)}\b", changelog, re.M), \
        f"CHANGELOG.md has no '## {vaekit.__version__}' section"


def _run(cmd: list[str], cwd: Path, timeout: float = 1200, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


@pytest.mark.slow
def test_wheel_installs_and_runs_in_a_fresh_environment(tmp_path: Path) -> None:
    pytest.importorskip("build", reason="python -m build needs the build package (pip install build)")
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=tmp_path)
    wheel = next(dist.glob("vaekit-*.whl"))
    sdist = next(dist.glob("vaekit-*.tar.gz"))
    assert wheel.name.startswith(f"vaekit-{vaekit.__version__}-py3-none-any")

    templates = {p.name for p in (ROOT / "src" / "vaekit" / "commands" / "templates").glob("*.tmpl")}
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = zf.read(f"vaekit-{vaekit.__version__}.dist-info/METADATA").decode()
    assert templates and {f"vaekit/commands/templates/{t}" for t in templates} <= names   # package data
    assert f"Version: {vaekit.__version__}\n" in metadata
    assert "Provides-Extra: docs" in metadata
    with tarfile.open(sdist) as tf:
        members = {m.split("/", 1)[1] for m in tf.getnames() if "/" in m}
    assert {"pyproject.toml", "CHANGELOG.md", "constraints.txt", "mkdocs.yml", "docs/index.md"} <= members
    assert {f"src/vaekit/commands/templates/{t}" for t in templates} <= members

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py, exe = venv / "bin" / "python", venv / "bin" / "vaekit"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    work = tmp_path / "work"          # outside the checkout: the installed vaekit, not src/
    work.mkdir()
    _run([str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), "torch"], cwd=work, env=env)
    _run([str(py), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)], cwd=work, env=env)

    assert "commands:" in _run([str(exe), "--help"], cwd=work, env=env).stdout
    assert _run([str(exe), "--version"], cwd=work, env=env).stdout == f"vaekit {vaekit.__version__}\n"
    code = ("import vaekit, pathlib; m = vaekit.mlp_vae([4], latent_features=2, hidden=[8]); "
            "print(pathlib.Path(vaekit.__file__).parent.parent.name, sum(p.numel() for p in m.parameters()))")
    where, n_params = _run([str(py), "-c", code], cwd=work, env=env).stdout.split()
    assert where == "site-packages" and int(n_params) > 0
    _run([str(exe), "new", "model", "mymodel"], cwd=work, env=env)      # reads the templates from the wheel
    template = (ROOT / "src" / "vaekit" / "commands" / "templates" / "model.py.tmpl").read_text()
    assert (work / "mymodel.py").read_text() == template.format(name="mymodel")
