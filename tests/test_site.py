"""The documentation site (mkdocs.yml) builds strictly and its API reference covers every public name.

``mkdocs build --strict`` fails on any warning: a link or anchor between pages that does not
exist, a guide left out of the navigation, a cross-reference in a docstring (a Sphinx role,
rewritten by docs/griffe_sphinx_roles.py) to a name that does not exist, a docstring that
griffe cannot parse (e.g. a parameter documented that the signature does not have). The build
reads the docstrings statically (no torch import) and takes seconds, so it runs in the default
suite; it needs the ``docs`` extra (part of ``test``), and skips when that is not installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed (pip install -e '.[docs]')")
yaml = pytest.importorskip("yaml")

import vaekit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def _mkdocs_build(config: Path, site_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site_dir)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = _mkdocs_build(ROOT / "mkdocs.yml", out, ROOT)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return out


def _reference_pages() -> dict[str, Path]:
    """``{module: page}`` of the API reference: docs/api/<name>.md documents ``vaekit.<name>``."""
    return {f"vaekit.{p.stem}": p for p in sorted((DOCS / "api").glob("*.md")) if p.stem != "index"}


def _public_subpackages() -> list[str]:
    """Every package under vaekit whose dotted name has no private part, and the public top-level modules."""
    found = [m.name for m in pkgutil.walk_packages(vaekit.__path__, "vaekit.")
             if m.ispkg and not any(part.startswith("_") for part in m.name.split("."))]
    modules = [f"vaekit.{name}" for name in vaekit.__all__ if isinstance(getattr(vaekit, name), types.ModuleType)]
    return sorted(set(found + modules))


def test_every_public_subpackage_has_a_reference_page() -> None:
    pages = _reference_pages()
    missing = [name for name in _public_subpackages() if name not in pages]
    assert not missing, f"no docs/api/<name>.md for {missing}"
    for module, page in pages.items():
        assert f"::: {module}\n" in page.read_text(encoding="utf-8"), f"{page} does not render {module}"


def test_nav_lists_every_page() -> None:
    """Every guide (docs/*.md) and every reference page is in the navigation of mkdocs.yml."""

    def files(node) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, dict):
            return [f for v in node.values() for f in files(v)]
        return [f for v in node for f in files(v)]

    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    nav = set(files(config["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages - nav == set(), f"pages missing from the nav of mkdocs.yml: {sorted(pages - nav)}"
    assert {"design.md", "gallery.md", "api/index.md"} <= nav


def test_site_builds_with_every_page_rendered(site: Path) -> None:
    for page in [*DOCS.glob("*.md"), *(DOCS / "api").glob("*.md")]:
        html = (site / page.relative_to(DOCS).with_suffix(".html")).read_text(encoding="utf-8")
        assert re.search(r"<h1[^>]*>", html), f"{page.name}: no <h1> in the built page"
        assert "<nav" in html
        assert not re.search(r"^#{1,3} ", html, re.M), f"{page.name}: raw markdown heading in the HTML"
    for png in (DOCS / "gallery").glob("*.png"):
        assert (site / "gallery" / png.name).stat().st_size == png.stat().st_size


@pytest.mark.parametrize("module", sorted(_reference_pages()))
def test_reference_renders_every_name_in_all(site: Path, module: str) -> None:
    html = (site / "api" / f"{module.removeprefix('vaekit.')}.html").read_text(encoding="utf-8")
    names = importlib.import_module(module).__all__
    missing = [name for name in names if f'id="{module}.{name}"' not in html]
    assert not missing, f"{module}: these names of __all__ are not rendered on its reference page: {missing}"


def test_top_level_names_are_listed_and_linked(site: Path) -> None:
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    for name in vaekit.__all__:
        row = re.search(rf"<tr>\s*<td><code>vaekit\.{re.escape(name)}</code></td>\s*<td>.*?</td>\s*<td>(.*?)</td>",
                        html, re.S)
        assert row, f"vaekit.{name} (in vaekit.__all__) has no row in docs/api/index.md"
        if name != "__version__":
            assert "<a " in row.group(1) and "href=" in row.group(1), f"vaekit.{name}: no link to its documentation"


def test_docstring_roles_become_links(site: Path) -> None:
    """``:class:`~vaekit.models.LatentVariableModel``` in vaekit.training's docstring links to the models page."""
    html = (site / "api" / "training.html").read_text(encoding="utf-8")
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*href="models\.html#vaekit\.models\.LatentVariableModel"',
                     html)
    for page in (site / "api").glob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "&lt;autoref" not in text, f"{page.name}: an escaped cross-reference"
        assert not re.search(r":(class|func|meth|mod|attr|data|exc|math):`", text), f"{page.name}: a raw Sphinx role"


def test_strict_build_fails_on_broken_references_and_bad_docstrings(tmp_path: Path) -> None:
    """The checks the build makes, on a tiny package: each fault is reported and fails the build."""
    (tmp_path / "src" / "sitecheck").mkdir(parents=True)
    (tmp_path / "src" / "sitecheck" / "__init__.py").write_text(textwrap.dedent('''
        """A package: see :func:`sitecheck.f`, :class:`sitecheck.Missing` and :meth:`nowhere`."""

        __all__ = ["f"]


        def f(a: int) -> int:
            """Double.

            Parameters
            ----------
            b : int
                Not a parameter of f.
            """
            return 2 * a
        '''))
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text("# T\n\n::: sitecheck\n\nSee [g][sitecheck.g] and [other](other.md).\n")
    ext = (DOCS / "griffe_sphinx_roles.py").as_posix()
    (tmp_path / "mkdocs.yml").write_text(textwrap.dedent(f"""
        site_name: t
        theme: {{name: mkdocs}}
        plugins:
          - mkdocstrings:
              handlers:
                python:
                  paths: [src]
                  options:
                    docstring_style: numpy
                    extensions:
                      - {ext}:SphinxRoles:
                          packages: [sitecheck]
        """))
    result = _mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site", tmp_path)
    log = result.stdout + result.stderr
    assert result.returncode != 0, log
    assert "broken cross-reference :class:`sitecheck.Missing`" in log, log
    assert "broken cross-reference :meth:`nowhere`" in log, log
    assert "broken cross-reference :func:`sitecheck.f`" not in log, log         # this one exists
    assert "Parameter 'b' does not appear in the function signature" in log, log
    assert "sitecheck.g" in log and "other.md" in log, log                      # Markdown link and page


def _check_site_module():
    spec = importlib.util.spec_from_file_location("check_site", DOCS / "check_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_site_renders_in_headless_chromium(site: Path, tmp_path: Path) -> None:
    """docs/check_site.py: the home page and an API page, screenshotted and dumped by Chromium, are rendered."""
    chromium = _check_site_module().find_chromium()
    if chromium is None:
        pytest.skip("no Chromium: set VAEKIT_CHROMIUM or run docs/get_chromium.sh")
    result = subprocess.run([sys.executable, str(DOCS / "check_site.py"), "--site", str(site), "--chromium", chromium,
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["pages"]) == {"index.html", "api/models.html"}
    for page, entry in report["pages"].items():
        assert entry["problems"] == [] and entry["colours"] >= 50, (page, entry)
        assert (tmp_path / entry["screenshot"]).stat().st_size > 10_000


def test_check_site_flags_raw_markdown() -> None:
    """The DOM check of docs/check_site.py tells a rendered page from Markdown shown as text."""
    check = _check_site_module().check_dom
    rendered = '<html><nav class="md-nav"></nav><h1 id="vaekit">vaekit</h1><p>text</p></html>'
    assert check(rendered, ["text"]) == []
    raw = "<html><body><pre># vaekit</pre>\n# vaekit\n\n::: vaekit.models\nsee :class:`VAE`</body></html>"
    problems = check(raw, ["text"])
    assert {"no <h1>", "no <nav>", "a raw Markdown heading ('# ...') in the text",
            "an unprocessed mkdocstrings directive ('::: vaekit')", "a raw Sphinx role (':class:`...`')",
            "missing 'text'"} == set(problems)
