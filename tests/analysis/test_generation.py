"""Samples at temperatures: temperature 0 decodes the prior centre; models with their own temperature are asked."""

from __future__ import annotations

import pytest
import torch

from vaekit.analysis.generation import prior_centres, sample_at_temperature, samples_at_temperatures, save_generation_grids


def test_temperature_zero_decodes_the_prior_mean_and_one_spreads(vae):
    s = samples_at_temperatures(vae, 6, [0.0, 1.0], seed=0)
    assert set(s) == {0.0, 1.0} and s[0.0].shape == (6, 64)
    want = vae.decode({"z": torch.zeros(1, 4)}).mean  # standard-normal prior: centre 0
    torch.testing.assert_close(s[0.0], want.expand(6, 64))
    assert s[1.0].std(0).mean() > 0.05  # different latents give different images
    again = samples_at_temperatures(vae, 6, [0.0, 1.0], seed=0)
    torch.testing.assert_close(again[1.0], s[1.0])  # seeded


def test_scaling_moves_draws_towards_the_centre(vae):
    torch.manual_seed(0)
    z = vae.sample_prior(500)["z"]
    torch.manual_seed(0)
    # at temperature 0.5 a standard-normal draw has standard deviation 0.5: check via the decoder's input
    seen = []
    orig = vae.decode
    vae.decode = lambda zz: seen.append(zz["z"]) or orig(zz)
    try:
        sample_at_temperature(vae, 500, 0.5)
    finally:
        del vae.decode
    torch.testing.assert_close(seen[0], 0.5 * z)


def test_two_latent_model_uses_empirical_centres(two):
    c = prior_centres(two, n_mc=4000)
    assert set(c) == {"a", "b"} and c["a"].shape == (2,) and c["b"].shape == (3,)
    assert c["a"].abs().max() < 0.1 and c["b"].abs().max() < 0.1  # standard-normal priors, 4000 draws
    x = sample_at_temperature(two, 5, 0.0, centres=c)
    assert torch.equal(x, x[:1].expand(5, 64))


def test_a_model_with_its_own_temperature_argument_is_delegated_to():
    calls = []

    class Tempered(torch.nn.Module):
        latent_names = ("z",)

        def sample(self, n, *, temperature=1.0, mean=True):
            calls.append((n, temperature, mean))
            return torch.full((n, 64), temperature)

    out = samples_at_temperatures(Tempered(), 3, [0.25, 0.75], mean=False)
    assert calls == [(3, 0.25, False), (3, 0.75, False)]
    assert float(out[0.25][0, 0]) == 0.25 and out[0.75].shape == (3, 64)


def test_grids_and_bad_arguments(vae, tmp_path):
    paths = save_generation_grids(samples_at_temperatures(vae, 4, [0.0, 0.5]), tmp_path, [64])
    assert sorted(p.name for p in paths.values()) == ["samples_t0.5.png", "samples_t0.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths.values())
    with pytest.raises(ValueError, match=r"temperatures\[1\] must be a finite number >= 0, got -1"):
        samples_at_temperatures(vae, 4, [0.5, -1.0])
    with pytest.raises(ValueError, match="empty"):
        samples_at_temperatures(vae, 4, [])
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        samples_at_temperatures(vae, 0)


def _ladder():
    from vaekit.models.hierarchical import ladder_vae

    torch.manual_seed(0)
    return ladder_vae([64], hidden=(16, 8), latent=(4, 2)).eval()


def test_per_layer_temperatures_go_to_the_layers_in_the_models_order():
    model = _ladder()  # layers z2 (top), z1
    s = samples_at_temperatures(model, 5, ["linear:0:1", [0.0, 0.0], [1.0, 0.0]], seed=0)
    assert set(s) == {(0.0, 0.0), (0.0, 1.0), (1.0, 0.0)}  # the schedule 0 -> 1 over 2 layers is [0, 1]
    assert torch.equal(s[(0.0, 0.0)], s[(0.0, 0.0)][:1].expand(5, 64))  # every layer at its prior mean
    torch.manual_seed(0)
    torch.testing.assert_close(s[(0.0, 1.0)], model.sample(5, temperature=[0.0, 1.0]))
    # z2 at its mean, z1 drawn: z1's prior mean is the same for every row, so the spread comes from z1 alone
    trace = model.prior_pass(5, [0.0, 1.0])
    assert torch.equal(trace.z["z2"], trace.priors["z2"].mean) and not torch.equal(trace.z["z1"], trace.priors["z1"].mean)
    assert s[(0.0, 1.0)].std(0).mean() > 1e-3 and not torch.allclose(s[(0.0, 1.0)], s[(1.0, 0.0)])


def test_temperature_settings_are_checked_against_the_model():
    from vaekit import InvalidArgumentError
    from vaekit.analysis.generation import check_temperature, linear_temperatures

    model = _ladder()
    assert check_temperature(model, [0.7]) == 0.7 and check_temperature(model, "linear:1:0.5") == [1.0, 0.5]
    assert check_temperature(model, lambda i: 1.0 - 0.25 * i) == [1.0, 0.75]
    assert linear_temperatures(1.0, 0.4, 4) == [1.0, 0.8, 0.6, 0.4]
    with pytest.raises(InvalidArgumentError, match=r"temperature lists one value per latent layer of HierarchicalVAE "
                                                   r"\(2: z2, z1, top first\), got 3 values \[1.0, 0.8, 0.6\]"):
        check_temperature(model, [1.0, 0.8, 0.6])
    with pytest.raises(InvalidArgumentError, match="temperature must be a finite number >= 0, got -0.5"):
        check_temperature(model, [1.0, -0.5])
    with pytest.raises(InvalidArgumentError, match="schedule 'linear:1:x' needs numbers"):
        check_temperature(model, "linear:1:x")
    with pytest.raises(InvalidArgumentError, match="a schedule 'linear:START:END', got 'cosine:1:0'"):
        check_temperature(model, "cosine:1:0")


def test_a_model_without_per_layer_temperatures_takes_one_number(vae, two):
    from vaekit import InvalidArgumentError

    assert samples_at_temperatures(vae, 2, [[0.5]], seed=0)[0.5].shape == (2, 64)  # a list of one is that number
    for model, setting in ((vae, [1.0, 0.5]), (two, [1.0, 0.5]), (vae, "linear:1:0.5")):
        with pytest.raises(InvalidArgumentError, match=rf"temperatures\[0\]: {type(model).__name__} takes one temperature for all "
                                                       "its latents.*need a model whose sample\\(\\) takes them"):
            samples_at_temperatures(model, 2, [setting])
