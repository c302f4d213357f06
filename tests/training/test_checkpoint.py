"""Checkpoint files: atomic writes, clear errors, RNG states, safetensors weights."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from vaekit.training import get_rng_state, load_checkpoint, load_weights, save_checkpoint, save_weights, set_rng_state
from vaekit.training.checkpoint import CHECKPOINT_FORMAT, REQUIRED_KEYS, to_plain


def _ckpt(step: int) -> dict:
    state = {k: None for k in REQUIRED_KEYS}
    state.update(format=CHECKPOINT_FORMAT, format_version=1, vaekit_version="0", model={"w": torch.full((3,), float(step))},
                 loop={"global_step": step}, rng=[get_rng_state()], config={"a": [1, 2]})
    return state


def test_roundtrip_with_weights_only(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "a.ckpt", _ckpt(5))
    raw = torch.load(path, weights_only=True)  # plain containers only
    assert raw["loop"]["global_step"] == 5
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["w"], torch.full((3,), 5.0))
    assert [p.name for p in tmp_path.iterdir()] == ["a.ckpt"]


def test_failed_write_leaves_previous_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, _ckpt(1))
    before = path.read_bytes()
    real_save = torch.save

    def half_then_fail(obj: object, f: str) -> None:
        buf = io.BytesIO()
        real_save(obj, buf)
        with open(f, "wb") as fh:
            fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, _ckpt(2))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["loop"]["global_step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_missing_corrupt_and_foreign_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"checkpoint '.*nope.ckpt' does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")
    good = save_checkpoint(tmp_path / "good.ckpt", _ckpt(3))
    trunc = tmp_path / "trunc.ckpt"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"'.*trunc.ckpt' is truncated or corrupt"):
        load_checkpoint(trunc)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match=r"'.*foreign.ckpt' is not a vaekit checkpoint"):
        load_checkpoint(foreign)
    partial = tmp_path / "partial.ckpt"
    torch.save({"format": CHECKPOINT_FORMAT, "model": {}}, partial)
    with pytest.raises(ValueError, match=r"missing keys \['format_version'"):
        load_checkpoint(partial)
    with pytest.raises(ValueError, match="is not a file"):
        load_checkpoint(tmp_path)


def test_rng_state_restores_every_generator_and_survives_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.randn()  # a numpy state with a cached gaussian
    random.gauss(0, 1)
    state = get_rng_state()
    path = save_checkpoint(tmp_path / "r.ckpt", {"rng": state})
    first = (torch.rand(3), np.random.randn(3), np.random.rand(), random.random(), random.gauss(0, 1))
    set_rng_state(torch.load(path, weights_only=True)["rng"])
    second = (torch.rand(3), np.random.randn(3), np.random.rand(), random.random(), random.gauss(0, 1))
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1]) and first[2:] == second[2:]


def test_weights_roundtrip_and_tied_weights(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    model[1].weight = model[0].weight  # tied
    save_weights(tmp_path / "w.safetensors", model.state_dict())
    loaded = load_weights(tmp_path / "w.safetensors")
    assert sorted(loaded) == ["0.bias", "0.weight", "1.bias", "1.weight"]
    assert torch.equal(loaded["1.weight"], model[0].weight.detach())
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    fresh.load_state_dict(loaded)
    assert torch.equal(fresh[0].bias, model[0].bias)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_weights(tmp_path / "none.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"12345678")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_weights(tmp_path / "bad.safetensors")


def test_to_plain_converts_configs() -> None:
    from jsonargparse import Namespace

    cfg = Namespace(a=1, b=Namespace(c=(1, Path("p"))), d=np.int64(4), e=np.float32(0.5), f=None)
    assert to_plain(cfg) == {"a": 1, "b": {"c": [1, "p"]}, "d": 4, "e": 0.5, "f": None}
