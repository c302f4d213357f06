"""benchmarks/step_overhead.py: every variant runs and is timed, the layered variants compute ELBO's loss, and a
bad count is refused before any work."""

from __future__ import annotations

import pytest
import torch


def test_every_variant_is_timed(tmp_path, capsys, load_benchmark):
    module = load_benchmark("step_overhead")
    module.main(["--rounds", "1", "--chunk", "1", "--threads", "1", "--data-root", str(tmp_path)])  # random images
    out = capsys.readouterr().out
    for row in ("hand model + hand update", "vaekit model + hand update", "hand model + TrainStep",
                "vaekit model + TrainStep", "hand model, 2-8-4-4-2", "vaekit's modules, hand arithmetic",
                "+ posterior distribution", "+ rsample and closed_form_kl", "+ decode and log_prob", "+ elbo_terms",
                "vaekit model, 2-8-4-4-2"):
        assert f"| {row} | " in out


def test_the_layered_variants_compute_the_vaekit_loss(load_benchmark):
    """Each layer adds code, not arithmetic: from one seed, every variant on vaekit's modules gives ELBO's loss."""
    losses, params = load_benchmark("step_overhead").tiny_losses()
    values = {}
    for name, loss_of in losses.items():
        torch.manual_seed(0)
        values[name] = loss_of()
    want = values.pop("vaekit model, 2-8-4-4-2")
    values.pop("hand model, 2-8-4-4-2")
    assert len(values) == 5
    for name, value in values.items():
        torch.testing.assert_close(value, want, rtol=1e-6, atol=1e-6, msg=name)
    assert params["hand model, 2-8-4-4-2"] is not params["+ elbo_terms"]


def test_bad_counts_are_refused(load_benchmark):
    module = load_benchmark("step_overhead")
    with pytest.raises(SystemExit):
        module.main(["--rounds", "0"])
