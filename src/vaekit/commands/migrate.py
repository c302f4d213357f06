"""``vaekit migrate SRC --preset NAME --config C.yaml --out RUN_DIR``: a foreign checkpoint as a vaekit run directory.

The model is built from the ``model`` section of a ``vaekit fit`` config; the foreign state
dict (``torch.save`` file read with ``weights_only=True``, or ``.safetensors``) is mapped
onto it by a preset of :mod:`vaekit.models.hierarchical.migration_presets`, strictly: a
model tensor no foreign tensor fills, a foreign tensor left over, a shape that differs, each
is refused with its name before anything is written. The run directory then holds the
config (``config.yaml``), the weights (``checkpoints/last.safetensors``) and
``migration.json`` (the source, its SHA-256, the preset), and ``vaekit.load``,
``vaekit evaluate`` and ``vaekit sample`` read it like a trained run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from ._common import CLIError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vaekit migrate``."""
    from ..models.hierarchical.migration_presets import PRESETS

    p = argparse.ArgumentParser(
        prog="vaekit migrate",
        description="Load a checkpoint trained elsewhere into the model of a vaekit config and write a run directory "
                    "that vaekit evaluate / sample / analyze read",
        epilog="presets: " + "; ".join(f"{k}: {v.summary}" for k, v in sorted(PRESETS.items())))
    p.add_argument("source", help="the foreign checkpoint (.pt/.pth via torch.save, or .safetensors)")
    p.add_argument("--preset", required=True, help=f"the foreign naming: {', '.join(sorted(PRESETS))}")
    p.add_argument("--config", required=True, help="a vaekit fit config (model and data sections) of the same architecture")
    p.add_argument("--out", required=True, help="the run directory to write (must not exist, or be empty)")
    return p


def _model_and_config(config: str) -> tuple[object, dict]:
    """The config's model, built, and the resolved config (what ``vaekit fit`` would write to config.yaml)."""
    import warnings

    import yaml

    from ..config import ConfigError, build_fit_parser, build_model_parser, check_config_keys, error_lines, instantiate
    from ..training.rundir import read_yaml_mapping

    try:  # names the file, the line and the unknown key, as vaekit fit does
        check_config_keys(read_yaml_mapping(config))
    except (ConfigError, ValueError) as e:
        raise CLIError(f"--config {config}: {e}") from None
    parser = build_fit_parser("vaekit migrate")
    try:
        cfg = parser.parse_args(["--config", config])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            resolved = yaml.safe_load(parser.dump(cfg, skip_none=False))
        resolved.pop("config", None)
        model_parser = build_model_parser()
        model = instantiate(model_parser, model_parser.parse_object({"model": resolved["model"]})).model
    except SystemExit:
        raise
    except Exception as e:  # jsonargparse errors and the constructors' own
        raise CLIError(f"--config {config}: cannot build the model: {error_lines(e) or type(e).__name__}") from None
    return model, resolved


def main(argv: Sequence[str]) -> None:
    """Run ``vaekit migrate`` with the arguments ``argv`` (after the subcommand)."""
    from ..models.hierarchical.migration_presets import get_preset, read_foreign_state_dict
    from ..training import RunDir
    from ..training.checkpoint import save_weights

    a = build_parser().parse_args(list(argv))
    try:
        preset = get_preset(a.preset)
    except ValueError as e:
        raise CLIError(f"--preset: {e}") from None
    out, source = Path(a.out), Path(a.source)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CLIError(f"--out: {str(out)!r} already exists and is not empty; pass a new directory")
    if not source.is_file():
        raise CLIError(f"source checkpoint {str(source)!r} does not exist")
    if not Path(a.config).is_file():
        raise CLIError(f"--config: file {a.config!r} does not exist")
    model, resolved = _model_and_config(a.config)
    try:
        foreign = read_foreign_state_dict(source)
        migration = preset.migration(model)  # type: ignore[arg-type]
        report = migration.migrate(model, foreign, strict=True)  # type: ignore[arg-type]
    except ValueError as e:
        raise CLIError(f"{source}: {e}") from None
    # every check passed: now the run directory
    run = RunDir.init(out, config=resolved)
    save_weights(run.last_weights, model.state_dict(), manifest=True)  # type: ignore[attr-defined]
    record = {"source": str(source.resolve()), "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
              "preset": preset.name, "loaded": report.loaded, "model": resolved["model"].get("class_path")}
    (run.path / "migration.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"migrated {len(report.loaded)} tensors of {source.name} with preset {preset.name!r} into {run.path}")
    print(f"written: {run.config_file}\nwritten: {run.last_weights}\nwritten: {run.path / 'migration.json'}")
