"""benchmarks/groups.py draws its models and batches in the random order of the script that wrote the
committed results (groups.py before c83c57b: ``train`` reseeded, then ``model.bind_data(data)`` widened
the layers and built the group tables). The expected first losses below are that old script's, run
(with the library of its time, 2f216af) on these tiny settings: the same initial weights, batch
order and ELBO draws give the same losses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("VAEKIT_DATA") or ROOT.parent / "shared" / "data")

#: section, mode, settings over groups.settings(short=True), the old script's first five losses
EXPECTED = [
    ("hsb", "factor", {}, [1.7388681173324585, 1.682590365409851, 1.7195638418197632, 1.5735529661178589, 1.6438579559326172]),
    ("hsb", "double", {}, [1.586296558380127, 1.5761632919311523, 1.4588202238082886, 1.5388782024383545, 1.5502184629440308]),
    ("new_hsb", None, {}, [1.7815617322921753, 1.5721207857131958, 1.517503023147583, 1.5864640474319458, 1.5388071537017822]),
    ("shakespeare", "bias", {"max_groups": 6, "max_windows_per_group": 12, "hidden": 16, "seeds": [1]},
     [4.384260654449463, 4.3342485427856445, 4.321793556213379, 4.282460689544678, 4.25828742980957]),
]


class _Stop(Exception):
    pass


@pytest.fixture
def groups(load_benchmark):
    return load_benchmark("groups")


@pytest.mark.parametrize("section, mode, settings, expected", EXPECTED, ids=[f"{s}-{m}" for s, m, _, _ in EXPECTED])
def test_first_losses_are_those_of_the_script_that_wrote_the_results(groups, monkeypatch, section, mode, settings, expected):
    folder = {"hsb": "grouped_tabular", "new_hsb": "grouped_tabular", "shakespeare": "shakespeare"}[section]
    if not (SHARED / folder).is_dir():
        pytest.skip(f"shared datasets not found at {SHARED} (set VAEKIT_DATA)")
    monkeypatch.setenv("VAEKIT_DATA", str(SHARED))
    losses: list[float] = []

    class Recording(groups.ELBO):
        def __call__(self, model, batch, step):
            loss, metrics = super().__call__(model, batch, step)
            losses.append(float(loss.detach()))
            if len(losses) == len(expected):
                raise _Stop
            return loss, metrics

    monkeypatch.setattr(groups, "ELBO", Recording)
    if mode is not None:
        monkeypatch.setattr(groups, "MODES", (mode,))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(_Stop):
            groups.run_section(section, {**groups.settings(True)[section], **settings})
    finally:
        torch.set_num_threads(threads)
    assert losses == pytest.approx(expected, rel=1e-5)
