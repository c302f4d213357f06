"""Synthetic grouped data with known group effects (helpers for the group-model tests) and
the recovery tests: posterior means track the true offsets, uncertainty shrinks with size."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vaekit.models.group import GroupPredictor
from vaekit.nn.predictors import MLPPredictor
from vaekit.objectives import ELBO


def grouped_regression(n_groups: int = 40, seed: int = 0, noise: float = 0.3, levels: int = 1,
                       min_size: int = 3, max_size: int = 40) -> tuple[dict[str, Tensor], list[Tensor], Tensor]:
    """y = x @ w + sum_l offset_l[group_l] + noise; level l+1 groups pool 4 level-l groups."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(min_size, max_size + 1, (n_groups,), generator=g)
    ids0 = torch.repeat_interleave(torch.arange(n_groups), sizes)
    cols, offsets = [ids0], [torch.randn(n_groups, generator=g)]
    for _ in range(1, levels):
        cols.append(cols[-1] // 4)
        offsets.append(torch.randn(int(cols[-1].max()) + 1, generator=g))
    n = ids0.shape[0]
    x = torch.randn(n, 2, generator=g)
    y = x @ torch.tensor([1.0, -0.5]) + sum(o[c] for o, c in zip(offsets, cols)) + noise * torch.randn(n, generator=g)
    return {"x": x, "y": y, "groups": torch.stack(cols, 1)}, offsets, sizes


def split_by_example(batch: dict[str, Tensor], frac: float = 0.25, seed: int = 0) -> tuple[dict, dict]:
    """Hold out ``frac`` of each level-0 group's examples (at least one kept for training)."""
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(batch["y"].shape[0], generator=g)
    test = u < frac
    first = torch.ones_like(test)
    first[1:] = batch["groups"][1:, 0] != batch["groups"][:-1, 0]
    test &= ~first
    return ({k: v[~test] for k, v in batch.items()}, {k: v[test] for k, v in batch.items()})


def make_model(batch: dict[str, Tensor], injection: str | list[str] = "bias", latent_features: int = 1,
               **kw) -> GroupPredictor:
    torch.manual_seed(0)
    L = batch["groups"].shape[1]
    names = [[f"g{i}" for i in range(int(batch["groups"][:, l].max()) + 1)] for l in range(L)]
    counts = [torch.bincount(batch["groups"][:, l], minlength=len(names[l])).tolist() for l in range(L)]
    return GroupPredictor(MLPPredictor(2, 1, hidden=[16]), likelihood="gaussian_learned", latent_features=latent_features,
                          injection=injection, group_names=names, group_counts=counts, n_train=batch["y"].shape[0], **kw)


def fit(model: GroupPredictor, batch: dict[str, Tensor], steps: int = 300, lr: float = 0.03) -> list[float]:
    torch.manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    obj, losses = ELBO(), []
    for s in range(steps):
        loss, _ = obj(model, batch, s)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def pearson(a: Tensor, b: Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def test_synthetic_generator_is_deterministic_and_grouped():
    a, off_a, _ = grouped_regression(seed=3, levels=2)
    b, off_b, _ = grouped_regression(seed=3, levels=2)
    assert torch.equal(a["y"], b["y"]) and torch.equal(off_a[1], off_b[1])
    assert a["groups"].shape[1] == 2 and bool((a["groups"][:, 1] == a["groups"][:, 0] // 4).all())


def test_posterior_means_recover_true_offsets_and_scales_shrink_with_size():
    batch, (offsets,), sizes = grouped_regression()
    model = make_model(batch)
    fit(model, batch)
    with torch.no_grad():
        effect = model.bias_maps["0"](model.latent.loc[0]).squeeze(-1)  # the offset each group adds to y
        scale = model.latent.posterior(0).scale.squeeze(-1)
    assert pearson(effect, offsets) > 0.9
    # posterior sd ~ 1/sqrt(n): strongly anti-correlated with group size on the log scale
    assert pearson(scale.log(), sizes.double().log()) < -0.9
    small, large = sizes <= 10, sizes >= 30
    assert float(scale[small].mean()) > 1.5 * float(scale[large].mean())


def test_latent_model_beats_none_on_held_out_examples_of_seen_groups():
    batch, _, _ = grouped_regression(seed=1)
    train, test = split_by_example(batch)
    rmse = {}
    for mode in ("none", "bias", "factor"):
        model = make_model(train, mode)
        fit(model, train)
        pred = model.predict(test["x"], test["groups"])
        rmse[mode] = float((pred - test["y"]).pow(2).mean().sqrt())
    # true noise is 0.3; ignoring the unit-variance school offsets costs ~1.0
    assert rmse["bias"] < 0.45 and rmse["factor"] < 0.45
    assert rmse["none"] > 0.8
    assert math.isfinite(rmse["none"])


def test_two_levels_recover_both_effects():
    batch, offsets, _ = grouped_regression(n_groups=48, seed=2, levels=2)
    model = make_model(batch, ["bias", "bias"])
    assert model.latent_names == ("group/0", "group/1")
    fit(model, batch, steps=400)
    with torch.no_grad():
        e0 = model.bias_maps["0"](model.latent.loc[0]).squeeze(-1)
        e1 = model.bias_maps["1"](model.latent.loc[1]).squeeze(-1)
    # the sum over levels is identified per level-0 group; level-1 effects from its 4 children
    total = e0 + e1[torch.arange(48) // 4]
    truth = offsets[0] + offsets[1][torch.arange(48) // 4]
    assert pearson(total, truth) > 0.95
    assert pearson(e1, offsets[1]) > 0.6
