"""Data modules are built from YAML by jsonargparse (``class_path`` / ``init_args``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from jsonargparse import ArgumentParser

from vaekit._recording import to_config
from vaekit.data import MNIST, ArrayData, ArrayFile, DataModule, Digits, FashionMNIST


def _parser() -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--data", type=DataModule)
    return parser


def _build(yaml: str) -> DataModule:
    parser = _parser()
    cfg = parser.parse_string(yaml)
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # renamed in 4.49
    return instantiate(cfg).data


def test_mnist_from_yaml_reads_nothing() -> None:
    data = _build("data:\n  class_path: vaekit.data.MNIST\n  init_args: {binarize: dynamic, val_size: 5000}\n")
    assert isinstance(data, MNIST) and not data.is_setup
    assert (data.binarize, data.val_size, data.root, data.download) == ("dynamic", 5000, None, True)


def test_array_file_and_digits_from_yaml(tmp_path: Path) -> None:
    np.savez(tmp_path / "t.npz", x=np.random.rand(30, 4), y=np.arange(30) % 3)
    data = _build(f"data:\n  class_path: vaekit.data.ArrayFile\n  init_args: {{path: {tmp_path / 't.npz'}, labels_key: y}}\n")
    assert isinstance(data, ArrayFile)
    data.setup()
    assert data.train.shape == (27, 4) and data.val_labels.shape == (3,)
    digits = _build("data:\n  class_path: vaekit.data.Digits\n  init_args: {flatten: true, test_fraction: 0.2}\n")
    assert isinstance(digits, Digits) and digits.flatten and digits.test_fraction == 0.2


@pytest.mark.parametrize(
    ("init_args", "match"),
    [
        ("{binarize: sometimes}", "binarize"),
        ("{bogus: 1}", "bogus"),
        ("{val_size: many}", "val_size"),
    ],
)
def test_bad_yaml_names_the_key(init_args: str, match: str) -> None:
    with pytest.raises(Exception, match=match):
        _parser().parse_string(f"data:\n  class_path: vaekit.data.MNIST\n  init_args: {init_args}\n")


def test_python_built_modules_round_trip_through_config() -> None:
    original = FashionMNIST(binarize="threshold", flatten=True, val_size=123)
    cfg = to_config(original)
    assert cfg["init_args"] == {"root": None, "binarize": "threshold", "flatten": True, "val_size": 123, "download": True}
    rebuilt = _build(yaml.safe_dump({"data": cfg}))
    assert type(rebuilt) is FashionMNIST and (rebuilt.val_size, rebuilt.binarize, rebuilt.flatten) == (123, "threshold", True)
    with pytest.raises(TypeError, match="x is a ndarray, which cannot be written to a config"):
        to_config(ArrayData(np.zeros((3, 2))), "data")
