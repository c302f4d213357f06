"""The model protocol itself: what is abstract, what has a default, what consumers may read."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import torch

import vaekit.models
from vaekit.models import ElboTerms, LatentVariableModel, mlp_vae
from vaekit.objectives import ELBO


class OnlyTerms(LatentVariableModel):
    data_shape = (2,)

    def elbo_terms(self, x):
        return ElboTerms(rec=-(x**2).sum(-1), kl={"z": torch.ones(x.shape[0])})


class Complete(OnlyTerms):
    def log_weights(self, x, k=1):
        return self.elbo_terms(x).elbo.expand(k, -1)


def _model_classes() -> list[type]:
    seen: dict[str, type] = {}
    for info in pkgutil.walk_packages(vaekit.models.__path__, "vaekit.models."):
        for obj in vars(importlib.import_module(info.name)).values():
            if inspect.isclass(obj) and issubclass(obj, LatentVariableModel) and obj.__module__.startswith("vaekit."):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(seen.values(), key=lambda c: c.__qualname__)


def test_elbo_terms_and_log_weights_are_abstract():
    assert LatentVariableModel.__abstractmethods__ == frozenset({"elbo_terms", "log_weights"})
    with pytest.raises(TypeError, match="log_weights"):
        OnlyTerms()
    model = Complete()
    assert model.log_weights(torch.zeros(3, 2), 4).shape == (4, 3)


def test_every_model_of_vaekit_is_concrete_but_the_shared_relaxed_base():
    classes = _model_classes()
    assert {c.__name__ for c in classes} >= {"VAE", "HierarchicalVAE", "DiscreteVAE", "JointVAE",
                                             "StructuredPredictor", "GroupPredictor"}
    abstract = {c.__name__ for c in classes if inspect.isabstract(c)}
    assert abstract == {"LatentVariableModel", "RelaxedLatentModel"}


def test_the_optional_methods_are_documented_defaults():
    model = Complete()
    for call, name in ((lambda: model.encode(torch.zeros(1, 2)), "encode"), (lambda: model.decode({}), "decode"),
                       (lambda: model.log_joint(torch.zeros(1, 2), {}), "log_joint"),
                       (lambda: model.log_prior({}), "log_prior"), (lambda: model.sample_prior(2), "sample_prior"),
                       (lambda: model.sample(2), "sample_prior")):
        with pytest.raises(NotImplementedError, match=f"Complete does not implement {name} .*per example"):
            call()
    assert model.prior_distributions() is None
    assert dict(model.latent_dims) == {}
    with pytest.raises(TypeError):  # the class default is read-only: a model sets its own dict
        model.latent_dims["z"] = 1  # type: ignore[index]


def test_latent_dims_and_priors_are_declared_by_the_vae():
    vae = mlp_vae([6], 3, [4])
    assert vae.latent_dims == {"z": 3}
    priors = vae.prior_distributions()
    assert list(priors) == ["z"] and priors["z"].event_shape == (3,)
    torch.testing.assert_close(priors["z"].mean, torch.zeros(3))


def test_free_bits_reads_the_declared_latent_dims():
    model = Complete()
    with pytest.raises(ValueError, match=r"free_bits needs model.latent_dims\['z'\]"):
        ELBO(free_bits=0.5)(model, torch.zeros(2, 2))
    model.latent_dims = {"z": 4}  # 4 dims x 0.5 nats: the KL of 1 nat is raised to the floor of 2
    loss, metrics = ELBO(free_bits=0.5)(model, torch.ones(2, 2))
    torch.testing.assert_close(loss, torch.tensor(2.0 + 2.0))
    torch.testing.assert_close(metrics["kl/z"], torch.tensor(1.0))


def test_relaxed_models_declare_what_the_discrete_diagnostics_read():
    from vaekit.analysis.discrete import gradient_variance
    from vaekit.models import joint_vae
    from vaekit.models.structured import structured_predictor

    joint = joint_vae([12], continuous_features=2, n_variables=2, n_categories=3, hidden=[8])
    ids = {id(p) for p in joint.inference_parameters()}
    for part in (joint.encoder, joint.continuous_posterior, joint.discrete_posterior):
        assert {id(p) for p in part.parameters()} <= ids
    assert not {id(p) for p in joint.decoder.parameters()} & ids
    assert joint.discrete_kl(torch.rand(3, 12)).shape == (3,)
    assert structured_predictor().discrete_kl(torch.rand(2, 784)) is None  # no discrete prior to compare with
    with pytest.raises(ValueError, match="RelaxedLatentModel"):
        gradient_variance(mlp_vae([12], 2, [8]), torch.rand(4, 12), n_samples=2)


class Sized(Complete):
    """Sized by its data (``width``), with a constructor that passes other keywords on."""

    def __init__(self, scale: float = 1.0, width: int | None = None, **extra):
        super().__init__()
        self.scale, self.width, self.extra = scale, width, extra

    @classmethod
    def data_args(cls, data):
        return {"width": data.width}


class _Data:
    width = 7

    def setup(self):
        pass


@pytest.mark.parametrize("args, kwargs", [((), {}), ((2.0,), {}), ((), {"scale": 2.0, "tag": "a"}),
                                          ((2.0, 7), {"tag": "a"})])
def test_from_data_passes_positional_keyword_and_extra_arguments(args, kwargs):
    from vaekit._recording import recorded_args

    model = Sized.from_data(_Data(), *args, **kwargs)
    assert model.width == 7 and model.scale == (args[0] if args else kwargs.get("scale", 1.0))
    assert model.extra == {k: v for k, v in kwargs.items() if k != "scale"}
    assert recorded_args(model)["width"] == 7


def test_from_data_refuses_a_given_argument_the_data_contradict():
    with pytest.raises(ValueError, match=r"width=3 does not fit the data, which gives width=7"):
        Sized.from_data(_Data(), width=3)
    with pytest.raises(ValueError, match=r"width=3 does not fit the data"):
        Sized.from_data(_Data(), 1.0, 3)
