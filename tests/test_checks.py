"""One family of argument errors: every check raises InvalidArgumentError, a ValueError and a TypeError."""

from __future__ import annotations

import pytest

import vaekit
from vaekit._checks import InvalidArgumentError, check_choice, check_float, check_int
from vaekit.data import Digits
from vaekit.inference import HMCSettings
from vaekit.objectives import ELBO, IWAE


@pytest.mark.parametrize("make, message", [
    (lambda: check_int("k", 2.5), "k must be an int >= 1, got 2.5 of type float"),
    (lambda: check_int("k", 0), "k must be an int >= 1, got 0"),
    (lambda: check_float("lr", float("nan"), 0, low_open=True), "lr must be a finite number > 0, got nan"),
    (lambda: check_choice("mode", "x", ("a", "b")), r"mode must be one of \['a', 'b'\], got 'x'"),
    (lambda: vaekit.Trainer(batch_size=2.5), "batch_size must be an int >= 1, got 2.5 of type float"),
    (lambda: vaekit.Trainer(batch_size=0), "batch_size must be an int >= 1, got 0"),
    (lambda: vaekit.Trainer(lr=0.0), "lr must be a finite number > 0.0, got 0.0"),
    (lambda: vaekit.Trainer(optimizer="sgd"), r"optimizer must be one of \['adam', 'adamw', 'adamax', 'radam'\], got 'sgd'"),
    (lambda: Digits(val_fraction=1.5), r"val_fraction=1.5 is outside \[0, 1\)"),
    (lambda: Digits(seed=-1), "seed must be an int >= 0, got -1"),
    (lambda: Digits(binarize="sometimes"), "binarize='sometimes' is not accepted"),
    (lambda: IWAE(k=1.5), "k must be an int >= 1, got 1.5"),
    (lambda: ELBO(free_bits=-1.0), "free_bits must be >= 0, got -1.0"),
    (lambda: HMCSettings(leapfrog_steps=2.5), "leapfrog_steps must be an int >= 1, got 2.5"),
])
def test_every_argument_error_is_one_class_that_both_excepts_catch(make, message):
    with pytest.raises(InvalidArgumentError, match=message) as info:
        make()
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    assert vaekit.InvalidArgumentError is InvalidArgumentError
