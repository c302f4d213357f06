"""A griffe extension: vaekit's docstrings use Sphinx roles; render them as links in MkDocs.

vaekit's docstrings are numpydoc, with cross-references written as Sphinx roles
(``:class:`~vaekit.models.VAE```, ``:meth:`fit```, ``:mod:`vaekit.trust```) and inline maths
as ``:math:`...```. mkdocstrings renders numpydoc sections but not Sphinx roles, so this
extension rewrites each docstring once the package is loaded:

- a role whose target names an object of the loaded packages (absolute, or relative to the
  docstring's object as Python would look it up: the object, its class, its module) becomes a
  cross-reference (``<autoref optional>``: a link where the object is rendered on some page,
  plain code where it is not, e.g. a private helper);
- a role whose target starts with a documented package's name (``vaekit.``) but names nothing
  there is a broken cross-reference: a warning, so ``mkdocs build --strict`` fails;
- a relative target that resolves nowhere is a warning too; targets in other libraries
  (``torch.``, ``numpy.``, ...) become code;
- an attribute documented by ``#:`` comment lines above it (Sphinx's convention) gets them
  as its docstring;
- ``:math:`...``` becomes code (no JavaScript, so the site reads the same offline);
- in a section title (``Attributes (after :meth:`setup`)`` over a line of dashes) a role
  becomes its plain name: mkdocstrings puts titles in HTML attributes.

Used from ``mkdocs.yml`` (``extensions: [docs/griffe_sphinx_roles.py:SphinxRoles]``; option
``packages``: the packages whose docstrings it rewrites, default ``[vaekit]``).
"""

from __future__ import annotations

import ast
import builtins
import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?P<role>class|func|meth|mod|data|attr|exc|obj|math|const):`(?P<body>[^`]+)`")
#: A numpydoc section title (a line underlined with dashes): its roles become plain words.
_SECTION_TITLE = re.compile(r"^(?P<title>[^\n]*:`[^\n]*)\n(?P<rule>[ \t]*-{3,}[ \t]*)$", re.M)
_TITLED = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^<>]+)>$")
#: Libraries whose names docstrings mention: rendered as code, never warned about.
EXTERNAL = ("torch", "numpy", "np", "scipy", "sklearn", "pandas", "lightning", "jsonargparse", "zuko", "yaml",
            "safetensors", "matplotlib", "tensorboard", "statsmodels", "pathlib", "typing", "collections",
            "dataclasses", "os", "io", "json", "csv", "warnings", "importlib", "contextlib", "functools",
            "itertools", "math", "enum", "abc", "tqdm", "pooch", "umap", "openTSNE", "hypothesis", "pytest")

_log = griffe.logger


def _plain_title(match: re.Match) -> str:
    title = _ROLE.sub(lambda m: m["body"].rsplit("<", 1)[0].strip() if "<" in m["body"] else
                      m["body"].lstrip("~!").rsplit(".", 1)[-1], match["title"])
    return f"{title}\n{match['rule']}"


def _comment_docstring(attr: griffe.Object) -> None:
    """Give an attribute the ``#:`` comment lines above it as its docstring (Sphinx's convention)."""
    module, lineno = attr.module, attr.lineno
    if module is None or not lineno or not module.lines:
        return
    lines, i = module.lines, lineno - 2
    comment: list[str] = []
    while i >= 0 and lines[i].strip().startswith("#:"):
        comment.insert(0, lines[i].strip()[2:].strip())
        i -= 1
    if comment:
        attr.docstring = griffe.Docstring("\n".join(comment), lineno=i + 2, endlineno=lineno - 1, parent=attr)


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if member.is_alias:
            continue
        yield from _walk(member)


class SphinxRoles(griffe.Extension):
    """Rewrites Sphinx roles in every docstring of a loaded package (see the module docstring)."""

    def __init__(self, packages: list[str] | None = None) -> None:
        self.packages = tuple(packages or ("vaekit",))
        self._loader: griffe.GriffeLoader | None = None
        self._lazy: dict[str, str] = {}

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name not in self.packages:
            return
        self._loader = loader
        self._lazy = self._lazy_names(pkg)
        for obj in _walk(pkg):
            if obj.is_attribute and obj.docstring is None:
                _comment_docstring(obj)
            if obj.docstring is not None and ":" in obj.docstring.value:
                text = _SECTION_TITLE.sub(_plain_title, obj.docstring.value)
                obj.docstring.value = _ROLE.sub(lambda m, obj=obj: self._replace(m, obj), text)

    # -- one role ------------------------------------------------------------------------------
    def _replace(self, match: re.Match, obj: griffe.Object) -> str:
        role, body = match["role"], match["body"]
        if role == "math":
            return f"`{body}`"
        titled = _TITLED.match(body)
        if titled:
            title, target = titled["title"], titled["target"]
        else:
            target = body.lstrip("~!")
            title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
        target = target.lstrip("~!.").removesuffix("()")
        code = f"<code>{html.escape(title)}{'()' if role in ('func', 'meth') and not titled else ''}</code>"
        path = self._resolve(target, obj)
        if path is None:
            if target.split(".", 1)[0] not in EXTERNAL and not hasattr(builtins, target.split(".", 1)[0]):
                _log.warning(f"{obj.relative_filepath}:{obj.lineno}: broken cross-reference :{role}:`{body}` "
                             f"in the docstring of {obj.path}: no such object")
            return code
        return f'<autoref optional identifier="{path}">{code}</autoref>'

    @staticmethod
    def _lazy_names(pkg: griffe.Module) -> dict[str, str]:
        """``{name: path}`` of a package's lazily imported names (its ``_LAZY = {name: module}`` dict)."""
        lazy = pkg.members.get("_LAZY")
        if lazy is None or lazy.is_alias or lazy.value is None:
            return {}
        return {f"{pkg.path}.{name}": f"{module}.{name}" for name, module in ast.literal_eval(str(lazy.value)).items()}

    def _exists(self, path: str) -> bool:
        try:
            self._loader.modules_collection.get_member(path)
        except (KeyError, ValueError, AttributeError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return False
        return True

    def _resolve(self, target: str, obj: griffe.Object) -> str | None:
        head, _, rest = target.partition(".")
        if head in self.packages:
            target = self._lazy.get(target, target)
            return target if self._exists(target) else None
        scope: griffe.Object | None = obj
        while scope is not None:                       # the object, its class, its module, ...
            candidate = f"{scope.path}.{target}"
            if self._exists(candidate):
                return candidate
            if scope.is_class:                         # an inherited member
                try:
                    inherited = scope.all_members.get(head)
                except (griffe.AliasResolutionError, griffe.CyclicAliasError, ValueError):
                    inherited = None
                if inherited is not None:
                    base = inherited.target_path if inherited.is_alias else inherited.path
                    return base + (f".{rest}" if rest else "")
            if scope.is_module and self._lazy.get(f"{scope.path}.{head}"):
                return self._lazy[f"{scope.path}.{head}"] + (f".{rest}" if rest else "")
            try:
                resolved = scope.resolve(head)       # an imported name
            except (griffe.NameResolutionError, ValueError, KeyError):
                resolved = None
            if resolved:
                full = f"{resolved}.{rest}" if rest else resolved
                if full.split(".", 1)[0] in self.packages and self._exists(full):
                    return full
            scope = scope.parent
        return None
