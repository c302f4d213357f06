"""Shared fixture of the benchmark-script tests: a script of benchmarks/ loaded as a fresh module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def load_benchmark(monkeypatch):
    """``load_benchmark("name")``: ``benchmarks/name.py`` executed as a new module ``name_under_test``
    (registered in ``sys.modules`` for the test, as dataclasses need; ``benchmarks/`` on ``sys.path`` for
    the scripts' imports of each other)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"{name}_under_test", ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, f"{name}_under_test", module)
        spec.loader.exec_module(module)
        return module

    return load
