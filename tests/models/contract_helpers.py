"""The model-protocol contract that every model test file checks on its own models."""

from __future__ import annotations

import torch
from torch import Tensor

from vaekit.models import LatentVariableModel


def check_protocol(model: LatentVariableModel, x: Tensor) -> None:
    """The protocol's shapes and identities on a batch ``x`` of ``n`` examples: log-weights, ELBO
    terms, encode/decode/sample_prior, and ``log_joint - log_prior = log p(x|z)``."""
    n = x.shape[0]
    assert model.log_weights(x, 5).shape == (5, n)
    terms = model.elbo_terms(x)
    assert terms.rec.shape == (n,) and set(terms.kl) == set(model.latent_names) == set(terms.log_q)
    assert all(v.shape == (n,) for v in terms.kl.values())
    q = model.encode(x)
    assert set(q) == set(model.latent_names)
    z = model.sample_prior(4)
    assert set(z) == set(model.latent_names)
    px = model.decode(z)
    assert px.batch_shape == (4,) and px.event_shape == tuple(model.data_shape)
    zq = {k: v.sample((2,)) for k, v in q.items()}
    lj = model.log_joint(x, zq)
    assert lj.shape == (2, n)
    torch.testing.assert_close(lj - model.log_prior(zq), model.decode(zq).log_prob(x))
    assert model.sample(3).shape == (3, *model.data_shape)
