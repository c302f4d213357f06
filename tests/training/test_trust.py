"""A run directory is data: a crafted ``config.yaml`` runs nothing unless the caller trusts it.

Every crafted config below names code that would create a marker file when imported or run:
a ``from_python`` command source, a ``from_python`` file source, a ``class_path`` (top level,
nested, as a string shorthand, in the data section) to a module on ``sys.path``. Through
``vaekit.load``, ``load_data``, ``vaekit evaluate`` / ``sample`` / ``analyze`` / ``graph``
and ``vaekit fit --resume`` the marker is never created, the module is never imported,
nothing in the run directory changes, and the error names the class, its key, the file and
the flag. With ``trust_code=True`` / ``--trust-code`` (or the class allowed) it is built,
with a warning that names it.
"""

from __future__ import annotations

import copy
import re
import shutil
import sys
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

import vaekit
from vaekit.cli import main
from vaekit.models import VAE
from vaekit.runs import load, load_data
from vaekit.config import ConfigError, build_fit_parser
from vaekit.trust import (TORCH_LAYERS, TrustWarning, UntrustedConfigError, building_from_run, check_config_trust,
                          is_constructible, register_constructible)
from vaekit.trust._registry import _constructible_types
from vaekit.trust._types import _UNRESOLVED, _hints, _may_hold_class

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "model": {"class_path": "vaekit.models.VAE", "init_args": {
        "encoder": {"class_path": "vaekit.nn.MLP", "init_args": {"in_features": 64, "out_features": 16}},
        "posterior": {"class_path": "vaekit.distributions.DiagonalGaussian", "init_args": {"context_features": 16, "latent_features": 2}},
        "decoder": {"class_path": "vaekit.nn.MLP", "init_args": {"in_features": 2, "out_features": 64, "hidden": [16]}},
        "likelihood": {"class_path": "vaekit.distributions.Bernoulli"},
        "data_shape": [64],
    }},
    "data": {"class_path": "vaekit.data.Digits", "init_args": {"binarize": "threshold", "flatten": True, "test_fraction": 0.2}},
    "trainer": {"max_epochs": 1, "max_steps": 2, "batch_size": 32, "progress_bar": False, "seed": 0, "run_name": "tiny"},
}
EVALUATE = ["--iwae-k", "2", "--n-points", "4", "--no-progress"]


def _fit(root: Path, config: dict, name: str) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["fit", "--config", str(path), "--trainer.root_dir", str(root / "runs"), "--trainer.run_name", name]) == 0
    (run,) = (root / "runs" / name).iterdir()
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real 2-step runs: a VAE, and a model from a Python file through ``from_python``."""
    root = tmp_path_factory.mktemp("trust")
    (root / "ladder_model.py").write_text(
        "from vaekit.models.hierarchical import ladder_vae\n\n"
        "def model(data_shape, hidden, latent):\n    return ladder_vae(data_shape, hidden, latent)\n")
    from_file = copy.deepcopy(TINY)
    from_file["model"] = {"class_path": "vaekit.models.hierarchical.from_python", "init_args": {
        "source": f"{root}/ladder_model.py:model", "kwargs": {"data_shape": [64], "hidden": [8, 6], "latent": [4, 2]}}}
    return {"vae": _fit(root, TINY, "vae"), "from_file": _fit(root, from_file, "from_file")}


@dataclass
class Evil:
    """A module on sys.path and a Python file that create ``marker`` when imported / run, and the
    files a crafted run directory holds beside its ``config.yaml`` (``files``, filled by a case)."""

    marker: Path
    module: str
    file: Path
    files: dict = field(default_factory=dict)

    def imported(self) -> bool:
        return self.marker.exists() or self.module in sys.modules


@pytest.fixture
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Evil:
    marker = tmp_path / "MARKER"
    name = f"evilmod_{uuid.uuid4().hex[:8]}"  # a fresh name: never imported by another test
    touch = f"open({str(marker)!r}, 'w').close()\n"
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / f"{name}.py").write_text(
        touch + "from vaekit.data import Digits\nfrom vaekit.models import VAE\n\n"
        "class EvilVAE(VAE):\n    pass\n\n\nclass EvilData(Digits):\n    pass\n")
    (tmp_path / "evil.py").write_text(touch + "def model(**kwargs):\n    raise SystemExit(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    yield Evil(marker, name, tmp_path / "evil.py")
    sys.modules.pop(name, None)


def _craft(tmp_path: Path, source_run: Path, edit, files: dict | None = None) -> Path:
    """A copy of a real run whose config.yaml ``edit(config)`` changed, with ``files`` (name: text)
    written beside it after the edit."""
    run = tmp_path / "received" / source_run.name
    shutil.copytree(source_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    edit(cfg)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    for name, text in (files or {}).items():
        (run / name).write_text(text)
    return run


def _flow(value) -> str:
    """``value`` as one line of YAML flow style: a string jsonargparse parses back into it."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()


def _hvae(blocks) -> dict:
    return {"class_path": "vaekit.models.hierarchical.HierarchicalVAE", "init_args": {"blocks": blocks, "data_shape": [64]}}


def _input_block(net: dict) -> dict:
    return {"class_path": "vaekit.models.hierarchical.blocks.InputBlock", "init_args": {"name": "x_in", "net": net}}


def _popen(e: "Evil") -> dict:
    """Runs a command that creates the marker, when built."""
    return {"class_path": "subprocess.Popen", "init_args": {"args": f"touch {e.marker}", "shell": True}}


def _transformer(custom_encoder: dict) -> dict:
    """torch.nn.Transformer, whose custom_encoder is typed Any (any class spec is built there)."""
    return {"class_path": "torch.nn.Transformer", "init_args": {"d_model": 4, "nhead": 1, "activation": "relu",
                                                               "custom_encoder": custom_encoder}}


def _file_beside(name: str, content):
    """An edit that writes the file ``name`` into the run directory: ``content(evil)``, as YAML unless a string."""
    def edit(c, e):
        text = content(e)
        e.files[name] = text if isinstance(text, str) else yaml.safe_dump(text)
    return edit


def _both(*edits):
    def edit(c, e):
        for one in edits:
            one(c, e)
    return edit


def _files(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# (what the crafted config does, its key, the name the error must give, the edit)
CASES = {
    "command_source": ("model", "subprocess:run", lambda c, e: c.update(model={
        "class_path": "vaekit.models.hierarchical.from_python",
        "init_args": {"source": "subprocess:run", "kwargs": {"args": [sys.executable, "-c", f"open({str(e.marker)!r}, 'w')"]}}})),
    "file_source": ("model", "evil.py:model", lambda c, e: c.update(model={
        "class_path": "vaekit.models.hierarchical.source.from_python", "init_args": {"source": f"{e.file}:model"}})),
    "class_path": ("model", "EvilVAE", lambda c, e: c["model"].update(class_path=f"{e.module}.EvilVAE")),
    "nested_class_path": ("model.init_args.encoder", "EvilVAE",
                          lambda c, e: c["model"]["init_args"]["encoder"].update(class_path=f"{e.module}.EvilVAE")),
    "string_for_a_class": ("model.init_args.likelihood", "EvilVAE",
                           lambda c, e: c["model"]["init_args"].update(likelihood=f"{e.module}.EvilVAE")),
    "data_class_path": ("data", "EvilData", lambda c, e: c["data"].update(class_path=f"{e.module}.EvilData")),
    # review of issue 12, finding 1: a YAML string at a list[Block] parameter smuggles class specs (t1, t2, t4)
    "yaml_string_class_path": ("model.init_args.blocks[0]", "EvilVAE",
                               lambda c, e: c.update(model=_hvae(f"[{{class_path: {e.module}.EvilVAE}}]"))),
    "yaml_string_command_source": ("model.init_args.blocks[0].init_args.net", "subprocess:run", lambda c, e: c.update(
        model=_hvae(_flow([_input_block({"class_path": "vaekit.models.hierarchical.from_python", "init_args": {
            "source": "subprocess:run", "kwargs": {"args": ["touch", str(e.marker)]}}})])))),
    "yaml_string_transformer_popen": ("model.init_args.blocks[0].init_args.net", "torch.nn.Transformer",
                                      lambda c, e: c.update(model=_hvae(_flow([_input_block(_transformer(_popen(e)))])))),
    # finding 2: a file in the run directory named like the class a string names is read as a config (t5)
    "file_named_like_a_class": ("model.init_args.encoder", "torch.nn.Identity", _both(
        lambda c, e: c["model"]["init_args"].update(encoder="torch.nn.Identity"),
        _file_beside("torch.nn.Identity", lambda e: _transformer(_popen(e))))),
    # further bypasses (the next three created the marker before this fix: through fit --resume, whose
    # config was read from the run directory, or vaekit.load from inside the run directory)
    "file_named_like_a_bare_class": ("model.init_args.encoder", "Identity", _both(
        lambda c, e: c["model"]["init_args"].update(encoder="Identity"),
        _file_beside("Identity", lambda e: {"class_path": f"{e.module}.EvilVAE"}))),
    "set_of_class_paths": ("model.init_args.blocks[0]", "EvilVAE",  # YAML !!set where a list of classes is expected
                           lambda c, e: c.update(model=_hvae({f"{e.module}.EvilVAE"}))),
    "file_of_class_paths": ("model.init_args.blocks", "blocks.txt", _both(  # a list read from a file's lines
        lambda c, e: c.update(model=_hvae("blocks.txt")), _file_beside("blocks.txt", lambda e: f"{e.module}.EvilVAE\n"))),
    # jsonargparse reads it as encoder: {class_path: ...} (refused before only where a class takes no **kwargs)
    "dotted_key": ("model.init_args.encoder.class_path", "encoder.class_path",
                   lambda c, e: c["model"]["init_args"].update({"encoder.class_path": f"{e.module}.EvilVAE"})),
}
ENTRIES = {
    "load": lambda run: load(run),
    "load_data": lambda run: load_data(run),
    "evaluate": lambda run: main(["evaluate", str(run), *EVALUATE]),
    "sample": lambda run: main(["sample", str(run), "-n", "2"]),
    "analyze": lambda run: main(["analyze", str(run), "--n-points", "4", "--only", "kl"]),
    "graph": lambda run: main(["graph", str(run)]),
    "resume": lambda run: main(["fit", "--resume", str(run), "--trainer.max_steps", "3"]),
}
MODEL_ENTRIES, DATA_ENTRIES = ("load", "evaluate", "sample", "analyze", "graph", "resume"), ("load_data", "evaluate", "resume")
PAIRS = [(c, e) for c in CASES for e in (DATA_ENTRIES if CASES[c][0] == "data" else MODEL_ENTRIES)]


@pytest.mark.parametrize("case,entry", PAIRS)
def test_crafted_config_runs_nothing(trained, evil, tmp_path, capsys, case, entry):
    where, name, edit = CASES[case]
    run = _craft(tmp_path, trained["vae"], lambda c: edit(c, evil), evil.files)
    before = _files(run)
    if entry in ("load", "load_data"):
        with pytest.raises(UntrustedConfigError) as err:
            ENTRIES[entry](run)
        message, flag = str(err.value), "trust_code=True"
        assert err.value.where == where and name in err.value.class_path
    else:
        assert ENTRIES[entry](run) == 2
        (message,) = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
        flag = "--trust-code"
    assert f"{run / 'config.yaml'}: {where}:" in message and name in message and flag in message
    assert "nothing was imported or run" in message
    assert not evil.imported()
    assert _files(run) == before


def test_trust_code_builds_a_class_from_outside_and_says_so(trained, evil, tmp_path, capsys):
    run = _craft(tmp_path, trained["vae"], lambda c: c["model"].update(class_path=f"{evil.module}.EvilVAE"))
    with pytest.warns(TrustWarning, match=rf"{run / 'config.yaml'}.*model: {evil.module}\.EvilVAE"):
        model = load(run, trust_code=True)
    assert type(model).__name__ == "EvilVAE" and evil.marker.exists()
    assert model.sample(2).shape == (2, 64)
    for command in (["evaluate", str(run), *EVALUATE], ["sample", str(run), "-n", "2"],
                    ["fit", "--resume", str(run), "--trainer.max_steps", "3"]):
        with pytest.warns(TrustWarning, match=rf"model: {evil.module}\.EvilVAE"):
            assert main([*command, "--trust-code"]) == 0
    assert (run / "eval" / "evaluate-test-k2.json").is_file() and (run / "eval" / "samples.png").is_file()
    assert load(run, checkpoint="last", allow=[type(model)]).sample(1).shape == (1, 64)


def test_trust_code_runs_a_command_source(trained, evil, tmp_path):
    _, _, edit = CASES["command_source"]
    run = _craft(tmp_path, trained["vae"], lambda c: edit(c, evil))
    with pytest.warns(TrustWarning, match="subprocess:run"), pytest.raises(ValueError, match="must return a HierarchicalVAE"):
        load(run, trust_code=True)  # subprocess.run ran: trusted code is run, not judged
    assert evil.marker.exists()


def test_python_file_model_needs_trust_code(trained, tmp_path, capsys):
    run = _craft(tmp_path, trained["from_file"], lambda c: None)
    with pytest.raises(UntrustedConfigError, match=r"ladder_model\.py:model"):
        load(run)
    with pytest.warns(TrustWarning, match=r"from_python\(source='.*ladder_model\.py:model'\)"):
        assert load(run, trust_code=True).latent_dims == {"z2": 2, "z1": 4}
    assert main(["evaluate", str(run), *EVALUATE]) == 2
    assert "--trust-code" in capsys.readouterr().err
    for command in (["evaluate", str(run), *EVALUATE], ["graph", str(run), "--out", str(tmp_path / "g.png")],
                    ["fit", "--resume", str(run), "--trainer.max_steps", "3"]):
        with pytest.warns(TrustWarning, match=r"ladder_model\.py:model"):
            assert main([*command, "--trust-code"]) == 0


@pytest.fixture
def user_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> type:
    """A VAE subclass of the user's, in an importable module of a fresh name."""
    name = f"usermod_{uuid.uuid4().hex[:8]}"
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / f"{name}.py").write_text("from vaekit.models import VAE\n\nclass MyVAE(VAE):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "user"))
    module = __import__(name)
    yield module.MyVAE
    sys.modules.pop(name, None)


def test_allowed_or_registered_user_class_loads_without_trust_code(trained, user_class, tmp_path, recwarn):
    path = f"{user_class.__module__}.MyVAE"
    run = _craft(tmp_path, trained["vae"], lambda c: c["model"].update(class_path=path))
    with pytest.raises(UntrustedConfigError, match=rf"class_path '{path}' is not in vaekit's registry"):
        load(run)
    assert type(load(run, allow=[user_class])) is user_class
    assert type(load(run, allow=[path])) is user_class
    assert not [w for w in recwarn if issubclass(w.category, TrustWarning)]
    assert register_constructible(user_class) is user_class
    assert type(vaekit.load(run)) is user_class and is_constructible(path)


def test_a_fresh_config_of_your_own_stays_trusted(user_class, tmp_path, capsys):
    cfg = copy.deepcopy(TINY)
    cfg["model"]["class_path"] = f"{user_class.__module__}.MyVAE"
    run = _fit(tmp_path, cfg, "mine")
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["class_path"] == f"{user_class.__module__}.MyVAE"
    assert main(["fit", "--config", str(tmp_path / "mine.yaml"), "--trust-code"]) == 2
    assert "--trust-code applies to --resume RUN_DIR only" in capsys.readouterr().err


def test_bare_class_names(trained, user_class, tmp_path):
    run = _craft(tmp_path, trained["vae"], lambda c: c["model"].update(class_path="VAE"))
    assert type(load(run)) is VAE  # resolves among imported subclasses to vaekit's own
    run = _craft(tmp_path / "b", trained["vae"], lambda c: c["model"].update(class_path="MyVAE"))
    with pytest.raises(UntrustedConfigError, match=r"class_path 'MyVAE' (resolves to|is a bare class name)"):
        load(run)


@pytest.mark.parametrize("config,where,message", [
    ({"model": {"class_path": "vaekit.distributions.flows.coupling.AffineCoupling",
                "init_args": {"activation": "evilmod_never.Act"}}},  # type[nn.Module]: jsonargparse imports the string
     "model.init_args.activation", "'evilmod_never.Act' would be imported as a class"),
    ({"model": {"class_path": "vaekit.models.VAE", "init_args": {"encoder": "extra.yaml"}}},
     "model.init_args.encoder", "'extra.yaml' would be read as a nested config file"),
    ({"config": "extra.yaml", "model": {"class_path": "vaekit.models.VAE"}}, "config", "would be read as a nested config file"),
    ({"model": "evilmod_never.Model"}, "model", "is not a class_path/init_args mapping"),
    ({"model": {"class_path": "vaekit.models.VAE", "init_args": {"no_such_key": "{class_path: evilmod_never.X}"}}},
     "model.init_args.no_such_key", "evilmod_never.X"),
    ({"model": {"class_path": "vaekit.models.VAE", "init_args": {"blocks": [{"class_path": "os.system"}]}}},
     "model.init_args.blocks[0]", "class_path 'os.system'"),
    ({"model": {"class_path": "vaekit.runs.load", "init_args": {"run_dir": "elsewhere"}}}, "model", "vaekit.runs.load"),
    ({"model": {"class_path": "vaekit.models.hierarchical.load_function", "init_args": {"source": "os:system"}}},
     "model", "imports and runs the code its source names (source='os:system')"),
    ({"model": {"class_path": "vaekit.models.__builtins__.eval"}}, "model", "is not in vaekit's registry"),
    # strings jsonargparse reads as YAML, and dotted keys it reads as nested keys
    ({"model": {"class_path": "vaekit.models.VAE", "init_args": {"encoder": "{class_path: evilmod_never.X}"}}},
     "model.init_args.encoder", "class_path 'evilmod_never.X'"),
    ({"model": {"class_path": "vaekit.models.VAE", "init_args": {"encoder": {"class_path": "torch.nn.Linear", "init_args": {
        "in_features": 2, "out_features": 2, "device": "{class_path: evilmod_never.X}"}}}}},  # device is untyped: Any
     "model.init_args.encoder.init_args.device", "class_path 'evilmod_never.X'"),
    ({"model.init_args.encoder": "evilmod_never.X", "model": {"class_path": "vaekit.models.VAE"}},
     "model.init_args.encoder", "holds a dot"),
    ({"model": {"class_path": "vaekit.models.VAE", "init_args.encoder": "evilmod_never.X"}},
     "model.init_args.encoder", "holds a dot"),
    ({"trainer": {"lr_multipliers.x": 1.0}}, "trainer.lr_multipliers.x", "holds a dot"),
    # strings jsonargparse reads as a config file: standard input, a URL
    ({"model": {"class_path": "vaekit.models.VAE", "init_args": {"encoder": "-"}}},
     "model.init_args.encoder", "'-' would be read as a nested config file"),
    ({"model": {"class_path": "vaekit.models.VAE", "init_args": {"encoder": "https://example.org/enc.yaml"}}},
     "model.init_args.encoder", "would be read as a nested config file"),
])
def test_every_way_to_name_code_is_refused(config, where, message):
    with pytest.raises(UntrustedConfigError, match="nothing was imported or run") as err:
        check_config_trust(config, file="run/config.yaml")
    assert err.value.where == where and message in str(err.value)
    assert "evilmod_never" not in sys.modules
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outside = check_config_trust(config, file="run/config.yaml", trust_code=True)
    assert outside and [w.category for w in caught] == [TrustWarning] and where in str(caught[0].message)


def test_registry_holds_the_documented_vocabulary_and_no_code_loader():
    for path in ("vaekit.models.VAE", "vaekit.models.vae.VAE", "vaekit.nn.MLP", "vaekit.data.Digits",
                 "vaekit.objectives.ELBO", "vaekit.models.hierarchical.ladder_vae", "vaekit.distributions.AuxiliaryFlow",
                 "torch.nn.Linear", "vaekit.VAE"):
        assert is_constructible(path), path
    for path in ("vaekit.models.hierarchical.from_python", "vaekit.models.hierarchical.source.load_function",
                 "vaekit.runs.load", "vaekit.cli.main", "vaekit.config.fit_config", "os.system", "subprocess.run",
                 "builtins.eval", "vaekit.trust.register_constructible",
                 # torch.nn containers and composite layers take modules (or Any) as arguments
                 "torch.nn.Transformer", "torch.nn.TransformerEncoder", "torch.nn.Sequential", "torch.nn.ModuleDict",
                 "torch.nn.ModuleList", "torch.nn.MultiheadAttention", "torch.nn.LSTM", "torch.nn.DataParallel"):
        assert not is_constructible(path), path
    configs = [*(ROOT / "examples" / "configs").glob("*.yaml"), *(ROOT / "examples" / "configs").glob("*/*.yaml")]
    assert configs
    for path in configs:
        cfg = yaml.safe_load(path.read_text())
        cfg.pop("trainer", None)
        check_config_trust(cfg, file=path)  # every example config would load back without trust_code
        with building_from_run(path):  # and jsonargparse reads it without importing anything else
            build_fit_parser().parse_object(cfg)
    for obj in {id(o): o for o in _constructible_types().values() if o.__module__.startswith("vaekit.")}.values():
        # the walk knows the types of every vaekit constructor (an unresolved one is checked strictly)
        hints, _ = _hints(obj)
        assert _UNRESOLVED not in hints.values(), obj


def test_torch_layers_of_the_registry_take_plain_arguments():
    """Sizes, rates and flags only: no argument of theirs holds a module, a class or anything at all
    (device and dtype, unannotated, are read as Any: a class spec there must be constructible)."""
    import torch.nn as nn

    assert all(is_constructible(f"torch.nn.{name}") for name in TORCH_LAYERS if hasattr(nn, name))
    for name in TORCH_LAYERS:
        if not hasattr(nn, name):
            continue
        hints, _ = _hints(getattr(nn, name))
        for arg, ann in hints.items():
            if arg not in ("device", "dtype") and not arg.startswith("_"):
                assert not _may_hold_class(ann) and ann is not Any, (name, arg, ann)


def test_bad_allow_and_registrations_are_refused():
    from vaekit.models.hierarchical import from_python

    with pytest.raises(TypeError, match="cannot be registered; pass trust_code=True"):
        register_constructible(from_python)
    with pytest.raises(TypeError, match="takes a class or a function, got 3"):
        register_constructible(3)
    with pytest.raises(TypeError, match="allow must be a list"):
        check_config_trust({}, allow="mypkg.Model")
    with pytest.raises(ValueError, match="allow: 'not a path' is not a dotted class path"):
        check_config_trust({}, allow=["not a path"])
    with pytest.raises(TypeError, match="allow: .*from_python runs the code its config names"):
        check_config_trust({}, allow=[from_python])


GUARDED = ["command_source", "file_source", "class_path", "yaml_string_class_path", "yaml_string_command_source",
           "yaml_string_transformer_popen", "file_named_like_a_class", "file_named_like_a_bare_class",
           "set_of_class_paths", "file_of_class_paths", "dotted_key"]


@pytest.mark.parametrize("case,entry", [(c, e) for c in GUARDED for e in ("load", "resume")])
def test_the_build_is_held_to_the_registry_even_past_the_check(trained, evil, tmp_path, monkeypatch, capsys, case, entry):
    """Second line of defence: with the config check switched off, jsonargparse (inside
    vaekit.trust.building_from_run) imports nothing outside the registry and reads no file, even
    from inside the run directory, where the files the run holds are found by their relative names."""
    import vaekit.trust

    _, name, edit = CASES[case]
    run = _craft(tmp_path, trained["vae"], lambda c: edit(c, evil), evil.files)
    monkeypatch.setattr(vaekit.trust, "check_config_trust", lambda *a, **k: [])  # what vaekit.runs and the CLI call
    monkeypatch.chdir(run)
    if entry == "load":
        with pytest.raises(UntrustedConfigError) as err:
            load(run)
        message = str(err.value)
    else:
        assert ENTRIES[entry](run) == 2
        message = capsys.readouterr().err
    assert f"{run / 'config.yaml'}: " in message and "nothing was imported or run" in message
    assert re.search(r"jsonargparse would (import|read) '[^']*'", message), message
    assert not evil.imported()


def test_code_loaders_refuse_inside_an_untrusted_build(evil):
    """Third line of defence: from_python refuses to run inside building_from_run (without trust_code)."""
    from vaekit.models.hierarchical import from_python

    with pytest.raises(UntrustedConfigError, match=rf"run/config.yaml: model: source '.*evil.py:model' would be imported"):
        with building_from_run("run/config.yaml", where="model"):
            from_python(f"{evil.file}:model")
    with pytest.raises(UntrustedConfigError, match="source 'subprocess:run' would be imported and run"):
        with building_from_run("run/config.yaml"):
            try:
                from_python("subprocess:run", {"args": ["touch", str(evil.marker)]})
            except UntrustedConfigError:
                pass  # caught by the code that called it: the build is refused all the same when it ends
    assert not evil.marker.exists()


@pytest.mark.parametrize("case", ["file_named_like_a_class", "file_named_like_a_bare_class", "file_of_class_paths"])
def test_load_from_inside_the_run_directory(trained, evil, tmp_path, monkeypatch, case):
    """vaekit.load('.') with the working directory inside the run: relative names are no way in either."""
    where, name, edit = CASES[case]
    run = _craft(tmp_path, trained["vae"], lambda c: edit(c, evil), evil.files)
    monkeypatch.chdir(run)
    with pytest.raises(UntrustedConfigError, match="would be read as a nested config file") as err:
        load(".")
    assert err.value.where == where and err.value.class_path == name
    assert not evil.imported()


def test_any_typed_arguments_take_only_constructible_classes(trained, evil, tmp_path, monkeypatch):
    """A class the user allows may take Any (torch.nn.Transformer's custom_encoder): a class spec given
    there, directly or as a YAML string, must itself be constructible."""
    import torch.nn as nn

    import vaekit.trust

    spec = _transformer(_popen(evil))
    for net in (spec, _flow(spec)):
        run = _craft(tmp_path / str(len(str(net))), trained["vae"], lambda c: c.update(model=_hvae([_input_block(net)])))
        with pytest.raises(UntrustedConfigError, match="class_path 'subprocess.Popen' is not in vaekit's registry") as err:
            load(run, allow=[nn.Transformer])
        assert err.value.where == "model.init_args.blocks[0].init_args.net.init_args.custom_encoder"
        monkeypatch.setattr(vaekit.trust, "check_config_trust", lambda *a, **k: [])
        with pytest.raises(UntrustedConfigError, match="jsonargparse would import 'subprocess.Popen'"):
            load(run, allow=[nn.Transformer])
        monkeypatch.undo()
    assert not evil.marker.exists()


def test_a_config_that_contains_itself_or_billions_of_values_is_refused(trained, tmp_path):
    """YAML aliases: one that contains itself (a RecursionError traceback before), and ten levels
    of ten aliases each (10**10 values from a file of a few lines), are refused at once."""
    run = _craft(tmp_path, trained["vae"], lambda c: None)
    (run / "config.yaml").write_text("model: &m {class_path: vaekit.models.VAE, init_args: {encoder: *m}}\n")
    with pytest.raises(ConfigError, match=r"config.yaml: model.init_args.encoder contains itself \(a YAML alias"):
        load(run)
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    (run / "config.yaml").write_text("model:\n  class_path: vaekit.models.VAE\n  init_args:\n    data_shape: [64]\n"
                                     "    encoder:\n      class_path: torch.nn.Identity\n      dict_kwargs:\n"
                                     + "".join(f"        {line}\n" for line in levels))
    with pytest.raises(ConfigError, match=r"holds more than 200,000 values"):
        load(run)


def test_resume_takes_the_run_config_only(trained, tmp_path, capsys):
    run = _craft(tmp_path, trained["vae"], lambda c: None)
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(TINY))
    assert main(["fit", "--resume", str(run), "--config", str(tmp_path / "other.yaml")]) == 2
    assert "--config cannot be given with it" in capsys.readouterr().err
    assert main(["fit", "--resume", str(run), "--trainer.max_steps", "3"]) == 0  # overrides still apply
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["max_steps"] == 3
