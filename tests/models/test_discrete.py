"""DiscreteVAE: the model contract over every relaxation, the discrete evaluation against exact
enumeration, the exact categorical KL, the temperature schedule and bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vaekit.distributions.relaxed import RelaxedCategorical
from vaekit.inference import iwae_log_likelihood
from vaekit.models.discrete import DiscreteVAE, categorical_kl, discrete_vae, temperature_at
from vaekit.objectives.elbo import logmeanexp

RELAXATIONS = ["gs", "igr_i", "igr_planar", "igr_sb"]
N, K, D = 2, 3, 10


def tiny(relaxation: str, **kw) -> DiscreteVAE:
    torch.manual_seed(0)
    return discrete_vae([D], n_variables=N, n_categories=K, hidden=[16], relaxation=relaxation, temperature=0.5, **kw)


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    proto = torch.bernoulli(torch.full((3, D), 0.5), generator=g)  # three prototypes, 10% pixel flips
    x = proto[torch.randint(0, 3, (48,), generator=g)]
    return (x + torch.bernoulli(torch.full_like(x, 0.1), generator=g)) % 2


@pytest.mark.parametrize("relaxation", RELAXATIONS)
def test_contract(relaxation, data):
    model = tiny(relaxation)
    x = data[:6]
    terms = model.elbo_terms(x)
    assert terms.rec.shape == (6,) and set(terms.kl) == {"z"} and terms.kl["z"].shape == (6,)
    assert torch.isfinite(terms.elbo).all() and (terms.elbo < 0).all()
    q = model.encode(x)["z"]
    assert q.batch_shape == (6, N) and q.event_shape == (K,)
    lw = model.log_weights(x, k=5)
    assert lw.shape == (5, 6) and torch.isfinite(lw).all()
    assert model.sample(4).shape == (4, D) and model.sample(4, discrete=False).shape == (4, D)
    assert model.sample_prior(3)["z"].shape == (3, N * K)
    assert model.latent_dims == {"z": N * K} and model.data_shape == (D,)
    # gradients of the relaxed ELBO reach every parameter
    (-terms.elbo.mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # the discrete KL is a proper KL
    kl = model.discrete_kl(x)
    assert kl.shape == (6,) and (kl >= -1e-6).all() and (kl <= N * math.log(K) + 1e-4).all()


def exact_log_px(model: DiscreteVAE, x: torch.Tensor) -> torch.Tensor:
    """log p(x) = logsumexp_c log p(x|c) + log p_cat(c) over all K^N one-hot configurations."""
    configs = torch.tensor(list(itertools.product(range(K), repeat=N)))  # (K^N, N)
    onehot = torch.nn.functional.one_hot(configs, K).float()  # (K^N, N, K)
    log_prior = (onehot * model.prior_probs().log()).sum((-2, -1))  # (K^N,)
    log_lik = model.decode(onehot.flatten(-2).unsqueeze(1)).log_prob(x)  # (K^N, batch)
    return torch.logsumexp(log_lik + log_prior[:, None], 0)


@pytest.mark.parametrize("relaxation", ["gs", "igr_i"])
def test_discrete_evaluation_orders_elbo_iwae_and_exact(relaxation, data):
    model = tiny(relaxation)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        (-model.elbo_terms(data).elbo.mean()).backward()
        opt.step()
    model.eval()
    x = data[:16]
    torch.manual_seed(2)
    with torch.no_grad():
        exact = exact_log_px(model, x).mean()
        elbo = model.log_weights(x, 4000).mean()  # discrete ELBO (k=1), averaged over 4000 draws
        iwae5 = logmeanexp(model.log_weights(x, 2000).reshape(400, 5, -1), 1).mean()  # 400 independent IWAE_5
        iwae_big = iwae_log_likelihood(model, x, k=2000).mean
    assert elbo < iwae5 - 0.005  # ELBO < IWAE_5 <= log p(x), beyond Monte Carlo error
    assert iwae5 <= exact + 0.005
    assert abs(iwae_big - float(exact)) < 0.02  # the generic estimator converges to the discrete log p(x)


@pytest.mark.parametrize("relaxation", ["igr_i", "igr_sb"])
def test_chunked_iwae_builds_the_implied_categorical_once_per_batch(relaxation, data, monkeypatch):
    """The Monte Carlo implied categorical (1000 relaxed draws per example) is the costly part of the
    proposal: a chunked IWAE estimate must build it once per batch, not once per chunk, and still
    converge to the exact discrete log p(x)."""
    model = tiny(relaxation)
    model.eval()
    x = data[:12]
    calls = _counting_implied(model, monkeypatch)
    torch.manual_seed(4)
    res = iwae_log_likelihood(model, x, k=3000, batch_size=5, chunk_size=100)  # 3 batches x 30 chunks
    assert calls == [5, 5, 2]
    with torch.no_grad():
        exact = exact_log_px(model, x)
    assert (res.per_example - exact.double()).abs().max() < 0.02
    # log_weights is one draw from the same sampler: the same numbers from the same seed
    torch.manual_seed(5)
    lw = model.log_weights(x, 7)
    torch.manual_seed(5)
    assert torch.equal(lw, model.importance_sampler(x)(7))


def _counting_implied(model, monkeypatch) -> list:
    calls = []
    implied = model.implied_probs
    monkeypatch.setattr(model, "implied_probs", lambda q: calls.append(q.batch_shape[0]) or implied(q))
    return calls


@pytest.mark.parametrize("which", ["joint", "structured"])
def test_the_other_relaxed_models_build_their_proposal_once_per_batch(which, monkeypatch):
    from vaekit.models.joint import joint_vae
    from vaekit.models.structured import structured_predictor

    torch.manual_seed(0)
    if which == "joint":
        model = joint_vae([D], continuous_features=2, n_variables=N, n_categories=K, hidden=[16], relaxation="igr_i")
    else:
        model = structured_predictor([16], n_variables=N, n_categories=K, hidden=[8], relaxation="igr_i")
    x = torch.bernoulli(torch.full((7, model.data_shape[0]), 0.4), generator=torch.Generator().manual_seed(0))
    calls = _counting_implied(model, monkeypatch)
    res = iwae_log_likelihood(model, x, k=40, batch_size=4, chunk_size=10)
    assert calls == [4, 3] and res.per_example.shape == (7,) and torch.isfinite(res.per_example).all()


def test_a_subclass_log_weights_is_what_iwae_uses(data):
    """A subclass that overrides log_weights (and not importance_sampler) is estimated through its own log_weights;
    one that has neither gets an error naming what to implement, not a recursion."""
    from vaekit.models import LatentVariableModel

    class Flat(DiscreteVAE):
        def log_weights(self, x, k=1):
            return torch.full((k, x.shape[0]), -3.0)

    model = tiny("igr_i")
    model.__class__ = Flat
    assert iwae_log_likelihood(model, data[:5], k=50, chunk_size=7).mean == pytest.approx(-3.0)

    class Bare(DiscreteVAE):
        importance_sampler = LatentVariableModel.importance_sampler

    model.__class__ = Bare
    with pytest.raises(NotImplementedError, match="Bare must implement importance_sampler"):
        model.log_weights(data[:5], 3)


@pytest.mark.parametrize("relaxation", ["gs", "igr_i"])
def test_discrete_kl_matches_enumeration(relaxation, data):
    model = tiny(relaxation)
    x = data[:5]
    torch.manual_seed(3)
    kl = model.discrete_kl(x)
    torch.manual_seed(3)
    q = model.implied_probs(model.encode(x)["z"])  # (5, N, K), the same draws
    p = model.prior_probs()
    configs = torch.tensor(list(itertools.product(range(K), repeat=N)))
    log_q = sum(q[:, n, configs[:, n]].clamp_min(1e-30).log() for n in range(N))  # (5, K^N)
    log_p = sum(p[n, configs[:, n]].log() for n in range(N))
    brute = (log_q.exp() * (log_q - log_p)).sum(-1)
    torch.testing.assert_close(kl, brute, atol=1e-5, rtol=1e-5)
    if relaxation == "gs":  # exact implied categorical of Gumbel-Softmax: softmax of the logits
        torch.testing.assert_close(q, model.encode(x)["z"].probs)
        torch.testing.assert_close(p, torch.full((N, K), 1 / K))


def test_categorical_kl_hand_computed():
    q = torch.tensor([[0.7, 0.3], [1.0, 0.0]])
    p = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    want = 0.7 * math.log(1.4) + 0.3 * math.log(0.6) + math.log(4.0)
    assert float(categorical_kl(q, p)) == pytest.approx(want, rel=1e-6)


def test_temperature_schedule_follows_steps_and_survives_reload(data):
    model = tiny("gs")
    model = DiscreteVAE(model.encoder, model.posterior, model.decoder, model.likelihood, [D],
                        temperature_schedule=(1.0, 0.25, 10))
    for _ in range(5):
        model.elbo_terms(data[:4]).elbo.mean().backward()
    assert int(model.train_step) == 5 and model.temperature == pytest.approx(0.5)
    with torch.no_grad():  # evaluation does not count as training
        model.elbo_terms(data[:4])
    assert int(model.train_step) == 5
    fresh = tiny("gs")
    fresh = DiscreteVAE(fresh.encoder, fresh.posterior, fresh.decoder, fresh.likelihood, [D],
                        temperature_schedule=(1.0, 0.25, 10))
    fresh.load_state_dict(model.state_dict())
    fresh.elbo_terms(data[:2])
    assert fresh.relaxed_family.temperature == pytest.approx(temperature_at(5, (1.0, 0.25, 10)))


def test_bad_input(data):
    model = tiny("igr_i")
    with pytest.raises(ValueError, match=r"shape \(4, 9\).*\(batch, 10\)"):
        model.log_weights(torch.zeros(4, 9), 2)
    with pytest.raises(ValueError, match="data_shape"):
        model.validate_data(torch.zeros(4, 3, 3))
    with pytest.raises(ValueError, match="n_categories"):
        discrete_vae([D], n_variables=2, n_categories=1)
    with pytest.raises(ValueError, match="temperature"):
        discrete_vae([D], temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        discrete_vae([D], temperature=-1.0)
    with pytest.raises(ValueError, match=r"temperature_schedule\[1\].*got 0"):
        DiscreteVAE(model.encoder, model.posterior, model.decoder, model.likelihood, [D], temperature_schedule=(1.0, 0.0, 5))
    with pytest.raises(ValueError, match="kl='gaussian' needs an IGR"):
        gs = tiny("gs")
        DiscreteVAE(gs.encoder, gs.posterior, gs.decoder, gs.likelihood, [D], kl="gaussian")
    with pytest.raises(ValueError, match="kl must be"):
        DiscreteVAE(model.encoder, model.posterior, model.decoder, model.likelihood, [D], kl="exact")
    with pytest.raises(TypeError, match="RelaxedCategorical"):
        DiscreteVAE(model.encoder, torch.nn.Linear(2, 2), model.decoder, model.likelihood, [D])
    with pytest.raises(ValueError, match="data_shape"):
        DiscreteVAE(model.encoder, model.posterior, model.decoder, model.likelihood, [0])
    with pytest.raises(ValueError, match="implied_samples"):
        DiscreteVAE(model.encoder, model.posterior, model.decoder, model.likelihood, [D], implied_samples=0)


def test_factory_builds_the_paper_architecture():
    model = discrete_vae([784])
    assert isinstance(model.posterior, RelaxedCategorical) and model.posterior.relaxation == "igr_i"
    linears = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512, 256]
    assert model.decoder.in_features == 200 and model.decoder.out_features == 784
