"""Open the built site in headless Chromium and check that pages are rendered, not raw Markdown.

    make docs                                   # builds site/
    python docs/check_site.py --chromium PATH   # or $VAEKIT_CHROMIUM, or chromium on PATH

For the home page (``index.html``) and one API page (``api/models.html``) it takes a screenshot
(``--out``, default ``site-check/``) and dumps the DOM after the page's JavaScript ran, then
checks that

- the DOM has a rendered ``<h1>``, the navigation (``<nav``) and the page's text, and no raw
  Markdown: no line starting with ``#``/``##``/``###``, no unprocessed ``::: vaekit`` directive,
  no Sphinx role (``:class:``); the API page has the heading of ``vaekit.models.VAE``;
- the screenshot is not blank: many colours, no single colour covering almost all of it, and the
  theme's header bar (Material's indigo) across its top rows, which a page shown as plain text
  would not have.

Prints one line per check and writes ``report.json`` beside the screenshots; exits 1 when a
check fails and 2 when no Chromium is found. Chromium from Debian's packages without root:
``docs/get_chromium.sh`` unpacks it into ``.chromium/`` and writes the ``.chromium/chromium`` wrapper.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: (page of the site, strings its DOM must contain)
PAGES = [
    ("index.html", ["vaekit is a PyTorch library", "The model protocol in one screen"]),
    ("api/models.html", ['id="vaekit.models.VAE"', 'id="vaekit.models.LatentVariableModel"', "elbo_terms"]),
]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless_shell")
INDIGO = (63, 81, 181)  # Material's "indigo" primary colour (mkdocs.yml: palette.primary)


def find_chromium(given: str | None = None) -> str | None:
    """The Chromium to use: ``given``, else ``$VAEKIT_CHROMIUM``, else the first of CANDIDATES on PATH."""
    for path in (given, os.environ.get("VAEKIT_CHROMIUM")):
        if path:
            return path if Path(path).exists() or shutil.which(path) else None
    local = ROOT / ".chromium" / "chromium"
    if local.exists():
        return str(local)
    return next((shutil.which(name) for name in CANDIDATES if shutil.which(name)), None)


def _chromium(binary: str, profile: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,1000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_dom(dom: str, must: list[str]) -> list[str]:
    """The problems of a page's DOM (empty: rendered)."""
    problems = []
    if not re.search(r"<h1[^>]*>", dom):
        problems.append("no <h1>")
    if "<nav" not in dom:
        problems.append("no <nav>")
    body = re.sub(r"<(script|style|pre|code)\b.*?</\1>", "", dom, flags=re.S)   # text outside code
    if re.search(r"^\s*#{1,3} \S", body, re.M):
        problems.append("a raw Markdown heading ('# ...') in the text")
    if "::: vaekit" in body:
        problems.append("an unprocessed mkdocstrings directive ('::: vaekit')")
    if re.search(r":(class|func|meth|mod):`", body):
        problems.append("a raw Sphinx role (':class:`...`')")
    problems += [f"missing {s!r}" for s in must if s not in dom]
    return problems


def check_screenshot(path: Path) -> tuple[list[str], dict]:
    """The problems of a screenshot (empty: content drawn) and its statistics."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    flat = img.reshape(-1, 3)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    top = img[:40].reshape(-1, 3)
    header = float((np.abs(top - np.array(INDIGO)).sum(axis=1) < 60).mean())
    stats = {"size": list(img.shape[1::-1]), "colours": int(len(colours)),
             "largest_colour_share": round(float(counts.max() / counts.sum()), 3), "header_indigo_share": round(header, 3)}
    problems = []
    if stats["colours"] < 50:
        problems.append(f"only {stats['colours']} colours: blank or nearly")
    if stats["largest_colour_share"] > 0.97:
        problems.append(f"one colour covers {stats['largest_colour_share']:.0%} of it")
    if header < 0.5:
        problems.append(f"no theme header bar (indigo in {header:.0%} of the top 40 rows)")
    return problems, stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Check the built site in headless Chromium.")
    p.add_argument("--site", default=str(ROOT / "site"), help="the built site (default site/)")
    p.add_argument("--chromium", help="the Chromium binary (default $VAEKIT_CHROMIUM, .chromium/chromium or PATH)")
    p.add_argument("--out", default=str(ROOT / "site-check"), help="folder for screenshots and report.json")
    args = p.parse_args(argv)
    binary = find_chromium(args.chromium)
    if binary is None:
        print("no Chromium found: give --chromium, set VAEKIT_CHROMIUM, or run docs/get_chromium.sh", file=sys.stderr)
        return 2
    site, out = Path(args.site).resolve(), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    report: dict = {"chromium": version, "pages": {}}
    failed = False
    with tempfile.TemporaryDirectory() as profile:
        for page, must in PAGES:
            url = (site / page).as_uri()
            if not (site / page).exists():
                print(f"FAIL {page}: not built ({site / page} is missing)")
                failed = True
                continue
            shot = out / (page.replace("/", "_").removesuffix(".html") + ".png")
            r = _chromium(binary, profile, f"--screenshot={shot}", url)
            dom = _chromium(binary, profile, "--dump-dom", url).stdout
            problems = check_dom(dom, must)
            stats: dict = {}
            if shot.exists():
                shot_problems, stats = check_screenshot(shot)
                problems += shot_problems
            else:
                problems.append(f"no screenshot ({r.stderr.strip().splitlines()[-1:] or 'no output'})")
            report["pages"][page] = {"screenshot": shot.name, "dom_chars": len(dom), **stats, "problems": problems}
            failed |= bool(problems)
            print(f"{'FAIL' if problems else 'ok  '} {page}: " + ("; ".join(problems) if problems else
                  f"rendered ({len(dom)} characters of DOM, screenshot {shot} with {stats['colours']} colours)"))
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
