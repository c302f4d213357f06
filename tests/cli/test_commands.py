"""The shape of the CLI: one module per command, no import back into vaekit.cli, dispatch on the config's class_path."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import vaekit.runs
from vaekit.cli import COMMANDS, main
from vaekit.models import LatentVariableModel

ROOT = Path(__file__).resolve().parents[2]
COMMANDS_DIR = ROOT / "src" / "vaekit" / "commands"


def _imported_modules(source: str) -> set[str]:
    """Every module that the imports of a module of ``vaekit.commands`` name (``from P import m`` names P.m too)."""
    package = ["vaekit", "commands"]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + (node.module.split(".") if node.module else []))
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def _imports_cli(source: str) -> bool:
    return any(n == "vaekit.cli" or n.startswith("vaekit.cli.") for n in _imported_modules(source))


def test_every_command_is_a_module_of_vaekit_commands_with_main():
    import importlib

    assert list(COMMANDS) == ["fit", "evaluate", "sample", "demo", "analyze", "graph", "embed", "new", "migrate"]
    for name in COMMANDS:
        assert (COMMANDS_DIR / f"{name}.py").is_file(), name
        assert callable(importlib.import_module(f"vaekit.commands.{name}").main), name


def test_no_module_under_commands_imports_vaekit_cli():
    files = sorted(COMMANDS_DIR.rglob("*.py"))
    assert {f.stem for f in files} >= set(COMMANDS) | {"__init__", "_common"}
    for line in ("from ..cli import CLIError", "from .. import cli", "import vaekit.cli", "from vaekit.cli import main",
                 "def f():\n    from ..cli import TRUST_HELP", "from vaekit import cli as c"):
        assert _imports_cli(line), line  # the check sees each form of such an import
    assert not _imports_cli("from ._common import CLIError\nfrom ..config import check_init_args")
    for f in files:
        assert not _imports_cli(f.read_text()), f
    # and importing every command module leaves vaekit.cli unimported
    code = ("import sys, importlib\n"
            f"for name in {list(COMMANDS)!r} + ['_common']:\n"
            "    importlib.import_module('vaekit.commands.' + name)\n"
            "assert 'vaekit.cli' not in sys.modules, 'imported vaekit.cli'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr


def _fake_run(path: Path, model: dict) -> Path:
    """A run directory whose config names ``model``; it has no weights, so building the model cannot succeed quietly."""
    (path / "checkpoints").mkdir(parents=True)
    (path / "metrics.csv").write_text("step,split,name,value\n")
    (path / "config.yaml").write_text(yaml.safe_dump({"model": model, "data": {"class_path": "vaekit.data.Digits"}}))
    return path


@pytest.fixture
def paths_taken(monkeypatch):
    """Replace both evaluations by recorders and refuse any model construction or load."""
    taken = []

    class Taken(Exception):
        pass

    def record(name):
        def evaluation(run_dir, **kwargs):
            taken.append(name)
            raise Taken(name)
        return evaluation

    def refuse(*args, **kwargs):
        raise AssertionError("a model was built to decide the path")

    monkeypatch.setattr(vaekit.runs, "evaluate_run", record("likelihood"))
    monkeypatch.setattr(vaekit.runs, "evaluate_group_run", record("groups"))
    monkeypatch.setattr(vaekit.runs, "load", refuse)
    monkeypatch.setattr(LatentVariableModel, "__init__", refuse)
    return taken


@pytest.mark.parametrize("class_path, path", [
    ("vaekit.models.group.GroupPredictor", "groups"),
    ("vaekit.models.GroupPredictor", "groups"),
    ("vaekit.models.VAE", "likelihood"),
    ("vaekit.models.hierarchical.ladder_vae", "likelihood"),  # a factory: its return annotation names the class
])
def test_evaluate_takes_its_path_from_the_class_path_without_building_the_model(tmp_path, capsys, paths_taken,
                                                                               class_path, path):
    run = _fake_run(tmp_path / "run", {"class_path": class_path, "init_args": {"no_such_argument": 1}})
    assert main(["evaluate", str(run), "--ks", "1", "--max-groups", "2"]) == 1
    assert paths_taken == [path]
    assert f"Taken: {path}" in capsys.readouterr().err


def test_evaluate_refuses_an_untrusted_class_path_before_importing_it(tmp_path, capsys, paths_taken):
    run = _fake_run(tmp_path / "run", {"class_path": "evilmod_never.Model"})
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "evilmod_never.Model" in err and "--trust-code" in err and "nothing was imported" in err
    assert paths_taken == [] and "evilmod_never" not in sys.modules
    assert main(["evaluate", str(tmp_path / "missing")]) == 2  # not a run directory: named, status 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_with_trust_code_resolves_a_class_of_your_own(tmp_path, monkeypatch, capsys, paths_taken):
    (tmp_path / "my_group_models_cli.py").write_text(
        "from vaekit.models import GroupPredictor\n\n\nclass MyPredictor(GroupPredictor):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    run = _fake_run(tmp_path / "run", {"class_path": "my_group_models_cli.MyPredictor"})
    assert main(["evaluate", str(run)]) == 2  # without --trust-code: refused, not imported
    assert "--trust-code" in capsys.readouterr().err and "my_group_models_cli" not in sys.modules
    assert main(["evaluate", str(run), "--trust-code"]) == 1
    assert paths_taken == ["groups"] and "my_group_models_cli" in sys.modules  # a GroupPredictor subclass
    del sys.modules["my_group_models_cli"]


@pytest.fixture
def constructions(monkeypatch):
    """Count the models constructed (every vaekit model's __init__ runs LatentVariableModel's)."""
    count = []
    original = LatentVariableModel.__init__

    def counting(self, *args, **kwargs):
        count.append(type(self).__name__)
        original(self, *args, **kwargs)

    monkeypatch.setattr(LatentVariableModel, "__init__", counting)
    return count


def test_evaluate_builds_a_vae_once(tiny_config, tmp_path, capsys, constructions):
    assert main(["fit", "--config", str(tiny_config), "--trainer.max_epochs", "1"]) == 0
    (run,) = list((tmp_path / "runs" / "tiny").glob("*"))
    constructions.clear()
    assert main(["evaluate", str(run), "--iwae-k", "5", "--n-points", "10", "--no-progress"]) == 0
    assert constructions == ["VAE"]
    assert "IWAE(k=5)" in capsys.readouterr().out


def test_evaluate_builds_a_group_model_once(tmp_path, monkeypatch, capsys, constructions):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scores.csv").write_bytes((ROOT / "examples" / "data" / "scores.csv").read_bytes())
    assert main(["fit", "--config", str(ROOT / "examples" / "configs" / "groups_table.yaml"), "--data.path", "scores.csv",
                 "--trainer.max_epochs", "1", "--trainer.progress_bar", "false"]) == 0
    (run,) = list((tmp_path / "runs" / "groups_table").glob("*"))
    constructions.clear()
    assert main(["evaluate", str(run), "--ks", "1", "--max-groups", "2", "--shuffles", "1", "--steps", "2",
                 "--checkpoint", "last"]) == 0
    assert constructions == ["GroupPredictor"]
    assert "test: rmse" in capsys.readouterr().out


_FACTORIES = '''
from __future__ import annotations

from typing import TYPE_CHECKING

from vaekit.distributions import Bernoulli, DiagonalGaussian
from vaekit.models import GroupPredictor, LatentVariableModel, VAE
from vaekit.nn import MLP
from vaekit.nn.predictors import MLPPredictor

if TYPE_CHECKING:  # names that typing.get_type_hints cannot resolve at run time
    from vaekit.models import GroupPredictor as TypingGroupPredictor, VAE as TypingVAE


def group_model(group_names: list[list[str]], group_counts: list[list[int]], n_train: int, level_names: list[str],
                data_shape: list[int]){group}:
    return GroupPredictor(MLPPredictor(2, 1, hidden=[32]), likelihood="gaussian_learned", latent_features=2,
                          prior="learned", group_names=group_names, group_counts=group_counts, n_train=n_train,
                          level_names=level_names, data_shape=data_shape)


def vae_model(data_shape: list[int]){vae}:
    return VAE(MLP(64, 32, output_activation="elu"), DiagonalGaussian(32, 4), MLP(4, 64, hidden=[32]), Bernoulli(),
               data_shape=data_shape)
'''


def _factory_run(run: Path, module: str, factory: str) -> None:
    """Make ``run``'s config name the factory ``module.factory`` (which builds the same model) instead of the class."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    args = config["model"]["init_args"]
    keep = ("group_names", "group_counts", "n_train", "level_names", "data_shape")
    config["model"] = {"class_path": f"{module}.{factory}", "init_args": {k: args[k] for k in keep if k in args}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture
def factory_runs(tiny_config, tmp_path, monkeypatch):
    """``write(module, group_annotation, vae_annotation)``: a group run and a VAE run whose configs name
    factories of ``module`` (a file in tmp_path) with those return annotations."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "scores.csv").write_bytes((ROOT / "examples" / "data" / "scores.csv").read_bytes())
    assert main(["fit", "--config", str(ROOT / "examples" / "configs" / "groups_table.yaml"), "--data.path", "scores.csv",
                 "--trainer.max_steps", "2", "--trainer.progress_bar", "false", "--trainer.run_name", "groups"]) == 0
    assert main(["fit", "--config", str(tiny_config), "--trainer.max_steps", "2", "--trainer.run_name", "vae"]) == 0
    (group_run,) = list((tmp_path / "runs" / "groups").glob("*"))
    (vae_run,) = list((tmp_path / "runs" / "vae").glob("*"))
    written = []

    def write(module: str, group: str, vae: str) -> tuple[Path, Path]:
        (tmp_path / f"{module}.py").write_text(_FACTORIES.replace("{group}", group).replace("{vae}", vae))
        _factory_run(group_run, module, "group_model")
        _factory_run(vae_run, module, "vae_model")
        written.append(module)
        return group_run, vae_run

    yield write
    for module in written:
        sys.modules.pop(module, None)


@pytest.mark.parametrize("group, vae", [(" -> TypingGroupPredictor", " -> TypingVAE"),
                                        (" -> LatentVariableModel", " -> LatentVariableModel")],
                         ids=["annotation-does-not-resolve", "annotation-names-a-base-class"])
def test_evaluate_of_a_factory_of_unknown_class_builds_the_model_once_to_decide(factory_runs, capsys, constructions,
                                                                                group, vae):
    """--trust-code with a factory whose return annotation does not tell the class: the model is built
    (once) and its class decides; a GroupPredictor takes the group path, a VAE the likelihood path."""
    group_run, vae_run = factory_runs(f"my_factories_{'typing' if 'Typing' in group else 'base'}", group, vae)
    capsys.readouterr()
    constructions.clear()
    with pytest.warns(Warning, match="group_model"):  # vaekit.trust.TrustWarning: the factory's code runs
        assert main(["evaluate", str(group_run), "--ks", "1", "--max-groups", "2", "--shuffles", "1", "--steps", "2",
                     "--checkpoint", "last", "--trust-code"]) == 0
    assert constructions == ["GroupPredictor"]
    assert "test: rmse" in capsys.readouterr().out  # the group path
    constructions.clear()
    with pytest.warns(Warning, match="vae_model"):
        assert main(["evaluate", str(vae_run), "--iwae-k", "5", "--n-points", "10", "--no-progress", "--checkpoint", "last",
                     "--trust-code"]) == 0
    assert constructions == ["VAE"]
    assert "IWAE(k=5)" in capsys.readouterr().out  # the likelihood path


def test_evaluate_of_a_factory_without_a_return_annotation_reports_that_it_cannot_be_built(factory_runs, capsys):
    """jsonargparse builds a factory only through its return annotation: without one the run cannot be
    rebuilt, and evaluate says so (rather than failing inside the wrong evaluation)."""
    group_run, _ = factory_runs("my_factories_bare", "", "")
    capsys.readouterr()
    with pytest.warns(Warning, match="group_model"):
        assert main(["evaluate", str(group_run), "--checkpoint", "last", "--trust-code"]) == 2
    err = capsys.readouterr().err
    assert "cannot rebuild the model" in err and "my_factories_bare.group_model" in err
