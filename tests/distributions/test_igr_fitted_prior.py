"""Any fit_igr_prior result as the prior of RelaxedCategorical (and so of the discrete models): the object,
its plain-number dict (YAML) or a safetensors file; recorded as numbers in config.yaml."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from vaekit._recording import to_config
from vaekit.distributions.relaxed import IGRPrior, IGRStickBreaking, RelaxedCategorical, fit_igr_prior
from vaekit.models.discrete import discrete_vae

POISSON = torch.tensor([math.exp(-1.5) * 1.5 ** k / math.factorial(k) for k in range(4)], dtype=torch.float64)
POISSON = POISSON / POISSON.sum()


@pytest.fixture(scope="module")
def poisson_prior() -> IGRPrior:
    return fit_igr_prior(POISSON, relaxation="igr_sb", n_steps=150, num_samples=300, cache=False)


def test_to_dict_save_and_load_round_trip_exactly(poisson_prior, tmp_path):
    spec = poisson_prior.to_dict()
    assert set(spec) == {"loc", "scale", "tv_distance", "relaxation", "temperature", "delta"}
    assert all(type(v) is float for v in spec["loc"] + spec["scale"])  # plain numbers, nothing to unpickle
    back = IGRPrior.from_dict(yaml.safe_load(yaml.safe_dump(spec)))
    path = poisson_prior.save(tmp_path / "poisson.safetensors")
    loaded = IGRPrior.load(path)
    for other in (back, loaded):
        assert torch.equal(other.loc, poisson_prior.loc.float()) and torch.equal(other.scale, poisson_prior.scale.float())
        assert (other.relaxation, other.temperature, other.delta) == ("igr_sb", 0.5, 1.0)
        assert other.tv_distance == pytest.approx(poisson_prior.tv_distance)


@pytest.mark.parametrize("form", ["object", "dict", "file"])
def test_the_family_uses_the_fitted_prior_in_any_form(poisson_prior, tmp_path, form):
    prior = {"object": poisson_prior, "dict": poisson_prior.to_dict(),
             "file": str(poisson_prior.save(tmp_path / "p.safetensors"))}[form]
    family = RelaxedCategorical(8, n_variables=3, n_categories=4, relaxation="igr_sb", prior=prior)
    p = family.prior_distribution()
    assert isinstance(p, IGRStickBreaking) and p.batch_shape == (3,)
    torch.testing.assert_close(p.loc, poisson_prior.loc.float().expand(3, 3))
    torch.testing.assert_close(p.scale, poisson_prior.scale.float().expand(3, 3))
    recorded = to_config(family)["init_args"]["prior"]  # what config.yaml holds: the numbers, whatever the form
    assert recorded == poisson_prior.to_dict()


def test_a_discrete_vae_with_a_poisson_prior_has_its_mean_and_its_discrete_prior(poisson_prior):
    torch.manual_seed(0)
    fitted = discrete_vae([6], n_variables=2, n_categories=4, hidden=[8], relaxation="igr_sb", prior=poisson_prior)
    standard = discrete_vae([6], n_variables=2, n_categories=4, hidden=[8], relaxation="igr_sb")
    torch.manual_seed(1)
    mean = fitted.sample_prior(20000)["z"].reshape(-1, 2, 4).double().mean(0)
    assert 0.5 * float((mean - POISSON).abs().sum(-1).max()) < 0.03  # the relaxed prior's mean is the Poisson target
    torch.manual_seed(1)
    mean_std = standard.sample_prior(20000)["z"].reshape(-1, 2, 4).double().mean(0)
    assert 0.5 * float((mean_std - POISSON).abs().sum(-1).max()) > 0.1  # N(0, I) is not
    probs = fitted.prior_probs()  # the exact discrete prior of the ELBO/IWAE evaluation: the fitted prior's argmax law
    assert probs.shape == (2, 4) and not torch.allclose(probs, standard.prior_probs(), atol=0.05)
    x = torch.bernoulli(torch.full((5, 6), 0.5))
    terms = fitted.elbo_terms(x)
    assert terms.rec.shape == (5,) and bool(torch.isfinite(terms.kl["z"]).all())


def test_a_yaml_config_with_a_fitted_prior_trains_and_reloads(poisson_prior, tmp_path, monkeypatch):
    import vaekit
    from vaekit.cli import main

    monkeypatch.chdir(tmp_path)
    path = poisson_prior.save(tmp_path / "poisson.safetensors")
    for name, prior in (("file", str(path)), ("numbers", poisson_prior.to_dict())):
        cfg = {
            "model": {"class_path": "vaekit.models.discrete.DiscreteVAE", "init_args": {
                "encoder": {"class_path": "vaekit.nn.MLP",
                            "init_args": {"in_features": 64, "out_features": 16, "output_activation": "relu"}},
                "posterior": {"class_path": "vaekit.distributions.relaxed.RelaxedCategorical",
                              "init_args": {"in_features": 16, "n_variables": 2, "n_categories": 4,
                                            "relaxation": "igr_sb", "prior": prior}},
                "decoder": {"class_path": "vaekit.nn.MLP", "init_args": {"in_features": 8, "out_features": 64}},
                "likelihood": {"class_path": "vaekit.distributions.Bernoulli"},
                "data_shape": [64]}},
            "data": {"class_path": "vaekit.data.Digits", "init_args": {"binarize": "threshold", "flatten": True}},
            "objective": {"class_path": "vaekit.objectives.ELBO"},
            "trainer": {"max_epochs": 1, "batch_size": 256, "progress_bar": False, "run_name": name},
        }
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        assert main(["fit", "--config", f"{name}.yaml"]) == 0
        (run,) = list((tmp_path / "runs" / name).glob("*"))
        saved = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["posterior"]["init_args"]
        assert saved["prior"] == prior  # the config as written (a CLI run keeps the file's path: it must stay readable)
        model = vaekit.load(run, checkpoint="last")
        torch.testing.assert_close(model.relaxed_prior().loc[0], poisson_prior.loc.float())


@pytest.mark.parametrize("prior, err, match", [
    ({"loc": [0.0, 0.1]}, ValueError, r"prior must have keys 'loc' and 'scale'"),
    ({"loc": [0.0, 0.1, 0.2], "scale": [1.0, 1.0, 1.0], "mean": 3}, ValueError, r"got keys \['loc', 'mean', 'scale'\]"),
    ({"loc": [0.0, 0.1, 0.2], "scale": [1.0, 0.0, 1.0]}, ValueError, "scale finite and > 0"),
    ({"loc": [0.0, 0.1], "scale": [1.0, 1.0, 1.0]}, ValueError, "the same length"),
    ({"loc": ["a", "b", "c"], "scale": [1.0, 1.0, 1.0]}, TypeError, "lists of numbers"),
    ({"loc": [0.0, 0.0], "scale": [1.0, 1.0]}, ValueError, "has 2 Gaussian dimensions .* needs 3"),
    ({"loc": [0.0] * 3, "scale": [1.0] * 3, "relaxation": "igr_sb"}, ValueError, "needs a prior fitted with relaxation='igr_i'"),
    ({"loc": [0.0] * 3, "scale": [1.0] * 3, "relaxation": "gs"}, ValueError, r"prior\['relaxation'\] must be one of"),
    ({"loc": [0.0] * 3, "scale": [1.0] * 3, "temperature": 0}, ValueError, r"prior\['temperature'\] must be"),
    ("prior.txt", ValueError, "path of a .safetensors file"),
    ("missing.safetensors", FileNotFoundError, "neither 'standard' nor 'uniform_fit' nor an existing IGR prior file"),
    (3, TypeError, "got int"),
])
def test_bad_priors_are_refused_naming_what_is_wrong(prior, err, match):
    with pytest.raises(err, match=match):
        RelaxedCategorical(8, n_variables=2, n_categories=4, relaxation="igr_i", prior=prior)


def test_gs_refuses_a_fitted_prior_and_a_damaged_file_is_named(poisson_prior, tmp_path):
    with pytest.raises(ValueError, match="'a fitted IGR prior' is for the IGR relaxations"):
        RelaxedCategorical(8, 2, 4, relaxation="gs", prior=poisson_prior)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="is not an IGR prior file"):
        RelaxedCategorical(8, 2, 4, relaxation="igr_sb", prior=str(bad))


def test_a_run_fitted_from_python_records_the_prior_as_numbers(poisson_prior, tmp_path):
    import vaekit
    from vaekit.data import Digits
    from vaekit.objectives import ELBO
    from vaekit.training import Trainer

    torch.manual_seed(0)
    model = discrete_vae([64], n_variables=2, n_categories=4, hidden=[16], relaxation="igr_sb",
                         prior=str(poisson_prior.save(tmp_path / "p.safetensors")))
    data = Digits(binarize="threshold", flatten=True)
    res = Trainer(max_epochs=1, batch_size=256, progress_bar=False).fit(model, data, ELBO(), run_dir=tmp_path / "run")
    (tmp_path / "p.safetensors").unlink()  # the run's config holds the numbers, not the file
    saved = yaml.safe_load((res.run_dir.path / "config.yaml").read_text())
    assert saved["model"]["init_args"]["posterior"]["init_args"]["prior"] == poisson_prior.to_dict()
    loaded = vaekit.load(res.run_dir, checkpoint="last")
    torch.testing.assert_close(loaded.relaxed_prior().loc[0], poisson_prior.loc.float())
