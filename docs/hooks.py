"""MkDocs hooks for vaekit's site (``hooks:`` in ``mkdocs.yml``).

Cross-references in docstring types: docs/griffe_sphinx_roles.py turns a Sphinx role into an
``<autoref>`` element, which mkdocstrings escapes where it shows a type as code (``log_q : dict
(or :class:`LazyTerms`) ...``); :func:`on_page_content` turns those escaped elements back into
cross-references, which mkdocs-autorefs then resolves as everywhere else.

The guide pages in ``docs/`` are read on GitHub as well as on the site, so some of them link
to files beside ``docs/`` in the repository (``../benchmarks/README.md``, benchmark results).
Those files are not pages of the site: such a link becomes the file's repository path, in
code, when the file exists, and a warning (so ``mkdocs build --strict`` fails) when it does not.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path

log = logging.getLogger("mkdocs.plugins.vaekit")

_ESCAPED_AUTOREF = re.compile(r'&lt;autoref optional identifier=(?:&quot;|&#34;|")(?P<id>[\w.]+)(?:&quot;|&#34;|")&gt;'
                              r"&lt;code&gt;(?P<title>.*?)&lt;/code&gt;&lt;/autoref&gt;")

# [text](../path#anchor), not inside code (guide pages put no such link in code blocks)
_OUTSIDE_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<target>\.\./[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def on_page_markdown(markdown, page, config, files):
    docs_dir = Path(config["docs_dir"])
    page_dir = posixpath.dirname(page.file.src_uri)

    def replace(match: re.Match) -> str:
        target = posixpath.normpath(posixpath.join(page_dir, match["target"]))
        path = (docs_dir / target).resolve()
        if not path.exists():
            log.warning(f"Doc file '{page.file.src_uri}' links to '{match['target']}', which is not in the repository")
            return match[0]
        repo_path = path.relative_to(docs_dir.resolve().parent).as_posix()
        text = match["text"]
        return text if text.strip("`") == repo_path else f"{text} (`{repo_path}`)"

    return _OUTSIDE_LINK.sub(replace, markdown)


def on_page_content(html, page, config, files):
    return _ESCAPED_AUTOREF.sub(lambda m: f'<autoref optional identifier="{m["id"]}">{m["title"]}</autoref>', html)
