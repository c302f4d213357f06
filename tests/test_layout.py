"""The package's layout rules (docs/design.md), checked on the source: imports flow one way, and no
module reaches into another package's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vaekit"

# Which top-level subpackages each layer may import (besides itself and vaekit's root modules).
LAYERS = {
    "distributions": {"nn"},
    "nn": set(),
    "data": set(),
    "objectives": {"distributions", "nn", "models"},
    "models": {"distributions", "nn", "data"},
    "inference": {"distributions", "nn", "models", "objectives", "data", "training"},  # new-group inference trains
    "analysis": {"distributions", "nn", "models", "objectives", "inference", "data"},
    "training": {"distributions", "nn", "models", "objectives", "data"},
}


def _modules() -> list[tuple[Path, list[str], ast.Module]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = ["vaekit", *path.relative_to(SRC).with_suffix("").parts]
        package = parts[:-1]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((path, package, ast.parse(path.read_text(), filename=str(path))))
    return out


def _imports(package: list[str], tree: ast.Module) -> list[tuple[int, list[str]]]:
    """(line, full dotted path as parts) of every `from X import name` and `import X` in vaekit."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = (node.module or "").split(".")
            if target[0] == "vaekit":
                found += [(node.lineno, target + [a.name]) for a in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")) for a in node.names if a.name.split(".")[0] == "vaekit"]
    return found


def test_no_private_name_imported_from_outside_its_package() -> None:
    """A private name (`_x`, module or attribute) may be imported only by modules inside the package
    that holds it: `vaekit.data.stored` may use `vaekit.data._checks`, `vaekit.models.structured`
    may not use `vaekit.models.discrete._helper`."""
    bad = []
    for path, package, tree in _modules():
        for line, full in _imports(package, tree):
            for i in range(1, len(full)):
                if full[i].startswith("_") and not full[i].startswith("__"):
                    owner = full[:i]
                    if package[: len(owner)] != owner:
                        bad.append(f"{path.relative_to(SRC.parent)}:{line}: {'.'.join(full)}")
                    break
    assert not bad, "private names imported from outside their package:\n" + "\n".join(bad)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_imports_flow_one_way(layer: str) -> None:
    """ARCHITECTURE.md: distributions, nn and data import nothing above them; nothing below the CLI
    imports the CLI or the commands."""
    allowed = LAYERS[layer] | {layer}
    bad = []
    for path, package, tree in _modules():
        if len(package) < 2 or package[1] != layer:
            continue
        for line, full in _imports(package, tree):
            sub = full[1] if len(full) > 1 else ""
            if sub in LAYERS and sub not in allowed or sub in {"cli", "commands", "embedding", "runs"}:
                bad.append(f"{path.relative_to(SRC.parent)}:{line}: imports {'.'.join(full[:2])}")
    assert not bad, f"{layer} imports what is above it:\n" + "\n".join(bad)
