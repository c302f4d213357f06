"""The training loop with dict batches, models sized from their data and the validation_report hook.

A stand-in grouped regression: y = w x + b_group + noise, with the per-group table sized from
the data before the model is built (``data_args`` / ``from_data``: what group-latent models do).
"""

from __future__ import annotations

import csv
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import vaekit
from vaekit.models import ElboTerms, LatentVariableModel
from vaekit.models.base import ValidationReport
from vaekit.training import Trainer
from vaekit.training.batches import IndexBatches, batch_len, take
from vaekit.training.evaluate import evaluate_objective
from vaekit.objectives import ELBO


class GroupBias(LatentVariableModel):
    """p(y | x, g) = N(w x + b[g], 0.1^2); the group table is sized from the data (data_args)."""

    def __init__(self, n_groups: int, n_train: int | None = None) -> None:
        super().__init__()
        self.data_shape = (1,)
        self.w = nn.Parameter(torch.zeros(1))
        self.n_groups, self.n_train = n_groups, n_train
        self.b = nn.Parameter(torch.zeros(n_groups))

    @classmethod
    def data_args(cls, data: Any) -> dict[str, Any]:
        return {"n_groups": int(data.train["g"].max()) + 1, "n_train": batch_len(data.train)}

    def validate_data(self, batch: Any, name: str = "x") -> Any:
        if set(batch) != {"x", "y", "g"}:
            raise ValueError(f"{name} must have keys x, y, g")
        return batch

    def elbo_terms(self, batch: dict[str, Tensor]) -> ElboTerms:
        mean = self.w * batch["x"][:, 0] + self.b[batch["g"]]
        rec = torch.distributions.Normal(mean, 0.1).log_prob(batch["y"])
        return ElboTerms(rec=rec, kl={})

    def log_weights(self, batch: dict[str, Tensor], k: int = 1) -> Tensor:  # no latent: log p(y | x, g) itself
        return self.elbo_terms(batch).rec.expand(k, -1)

    def validation_report(self, val: dict[str, Tensor], batch_size: int) -> ValidationReport:
        err = (self.w * val["x"][:, 0] + self.b[val["g"]] - val["y"]).abs()
        rows = [{"group": int(g), "metric": "mae", "value": float(err[val["g"] == g].mean())}
                for g in val["g"].unique()]
        return ValidationReport({"mae": float(err.mean())}, {"groups": rows})


class GroupedStandIn:
    def __init__(self, n: int = 120, n_groups: int = 4, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 1, generator=g)
        grp = torch.arange(n) % n_groups
        offsets = torch.linspace(-2, 2, n_groups)
        y = 0.5 * x[:, 0] + offsets[grp] + 0.1 * torch.randn(n, generator=g)
        full = {"x": x, "y": y, "g": grp}
        self.train, self.val = take(full, slice(0, 100)), take(full, slice(100, None))
        self.offsets = offsets

    def setup(self) -> None:
        pass

    def augment(self, batch: Any) -> Any:
        return batch


def test_index_batches_dict_same_order_as_tensor():
    x = torch.arange(10.0).unsqueeze(1)
    d = {"x": x, "y": torch.arange(10) * 2}
    a = [b[:, 0].tolist() for b in IndexBatches(x, 4, seed=3).epoch(1)]
    b = [(bd["x"][:, 0].tolist(), bd["y"].tolist()) for bd in IndexBatches(d, 4, seed=3).epoch(1)]
    assert a == [xs for xs, _ in b]
    assert all([2 * v for v in xs] == ys for xs, ys in b)


def test_evaluate_objective_dict_is_batching_invariant():
    data = GroupedStandIn()
    model = GroupBias(n_groups=4)
    full = evaluate_objective(ELBO(), model, data.val, batch_size=100)
    small = evaluate_objective(ELBO(), model, data.val, batch_size=3)
    assert full["rec"] == pytest.approx(small["rec"], rel=1e-5)


def test_fit_with_dict_batches_sizes_from_data_reports_and_reloads(tmp_path):
    data = GroupedStandIn()
    model = GroupBias.from_data(data)
    assert (model.n_groups, model.n_train) == (4, 100)
    res = Trainer(max_epochs=30, batch_size=25, lr=0.1, root_dir=str(tmp_path), progress_bar=False,
                  lr_schedule="constant").fit(model, data)
    # the table learned the group offsets
    assert torch.allclose(model.b.detach(), data.offsets, atol=0.15)
    cfg = res.run_dir.read_config()
    assert cfg["model"]["init_args"]["n_groups"] == 4 and cfg["model"]["init_args"]["n_train"] == 100
    with open(res.run_dir.eval / "groups.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "step", "group", "metric", "value"]
    assert len(rows) == 30 * 4  # one row per group per validation, all in one file
    assert float(rows[-1]["value"]) < float(rows[0]["value"])
    names = {r["name"] for r in vaekit.training.read_metrics(res.run_dir.metrics) if r["split"] == "val"}
    assert "mae" in names
    loaded = vaekit.load(res.run_dir, checkpoint="last", allow=[GroupBias])  # a class of this test: allowed by name
    assert torch.equal(loaded.b.detach(), model.b.detach().cpu())


def test_a_model_sized_for_other_data_is_refused(tmp_path):
    data = GroupedStandIn()
    with pytest.raises(ValueError, match=r"GroupBias: n_groups=3 does not fit the data, which gives n_groups=4"):
        GroupBias.from_data(data, n_groups=3)
    assert GroupBias.from_data(data, n_groups=4).n_groups == 4  # a given value equal to the data's is fine
    with pytest.raises(ValueError, match=r"was built for other data: its n_train=99 but the data give n_train=100"):
        Trainer(max_epochs=1, root_dir=str(tmp_path), progress_bar=False).fit(GroupBias(4, n_train=99), data)
    assert not any(tmp_path.iterdir())


def test_resume_truncates_tables(tmp_path):
    data = GroupedStandIn()
    t = dict(batch_size=25, lr=0.1, root_dir=str(tmp_path), progress_bar=False, lr_schedule="constant",
             checkpoint_every_steps=8)
    res = Trainer(max_epochs=4, **t).fit(GroupBias.from_data(data), data)
    # continue from step 8 (epoch 2): later validations' rows are dropped, then rewritten once
    model = GroupBias(n_groups=4, n_train=100)
    Trainer(max_epochs=4, **t).fit(model, data, resume=res.run_dir.checkpoints / "step-8.ckpt")
    with open(res.run_dir.eval / "groups.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == sorted(steps) and len(steps) == 4 * 4


def test_bad_dict_split_is_refused_before_anything_is_written(tmp_path):
    data = GroupedStandIn()
    data.train = {**data.train, "y": data.train["y"][:-1]}
    with pytest.raises(ValueError, match=r"data.train\['y'\] has 99 examples but data.train\['x'\] has 100"):
        Trainer(max_epochs=1, root_dir=str(tmp_path), progress_bar=False).fit(GroupBias(4), data)
    data = GroupedStandIn()
    data.train["x"][3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"data.train\['x'\] contains 1 NaN"):
        Trainer(max_epochs=1, root_dir=str(tmp_path), progress_bar=False).fit(GroupBias(4), data)
    assert not any(tmp_path.iterdir())
