"""Tiny models and data for the analysis tests: a trained one-latent VAE, a two-latent model, a linear encoder."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, Bernoulli

from vaekit.distributions import DiagonalGaussian, StandardNormal, rsample_and_log_prob
from vaekit.distributions.likelihoods import Bernoulli as BernoulliLikelihood
from vaekit.models import VAE, mlp_vae
from vaekit.models.base import ElboTerms, LatentVariableModel
from vaekit.nn import MLP


def cluster_data(n: int = 300, d: int = 64, k: int = 3, flip: float = 0.1, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Binary vectors near ``k`` random prototypes (8x8 images for d=64), and the prototype index as label."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.bernoulli(torch.full((k, d), 0.5), generator=g)
    y = torch.arange(n) % k
    noise = (torch.rand(n, d, generator=g) < flip).float()
    return (protos[y] + noise) % 2, y


def train(model: LatentVariableModel, x: Tensor, steps: int = 300, lr: float = 3e-3, seed: int = 0) -> LatentVariableModel:
    """Plain Adam on the negative ELBO (minibatches of 64), then eval mode."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr)
    for _ in range(steps):
        batch = x[torch.randint(0, len(x), (64,))]
        loss = -model.elbo_terms(batch).elbo.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def trained_vae(x: Tensor, latent: int = 4) -> VAE:
    torch.manual_seed(1)
    return train(mlp_vae([x.shape[1]], latent, [32]), x)


def linear_vae(d: int = 16, h: int = 12, latent: int = 3, seed: int = 0) -> tuple[VAE, Tensor, Tensor]:
    """A VAE whose posterior mean is linear in x: returns (model, W of shape (latent, d), b of shape (latent,))."""
    torch.manual_seed(seed)
    enc = MLP(d, h)  # no hidden layer: one linear map
    post = DiagonalGaussian(h, latent)
    model = VAE(enc, post, MLP(latent, d, [8]), BernoulliLikelihood(), [d]).eval()
    (lin,) = [m for m in enc.modules() if isinstance(m, nn.Linear)]
    w_mu, b_mu = post.linear.weight[:latent], post.linear.bias[:latent]
    return model, (w_mu @ lin.weight).detach(), (w_mu @ lin.bias + b_mu).detach()


class TwoLatent(LatentVariableModel):
    """Two independent named latents ``a`` (2 dims) and ``b`` (3 dims) with standard-normal priors.

    ``latent_pairs(x)`` gives ``{name: (prior, posterior)}``, as a hierarchical VAE's does
    (declared by the protocol; not through ``prior_distributions``, so the override is what is used).
    """

    def __init__(self, d: int = 64, hidden: int = 16, da: int = 2, db: int = 3) -> None:
        super().__init__()
        self.data_shape, self.latent_names = (d,), ("a", "b")
        self.latent_dims = {"a": da, "b": db}
        self.enc = MLP(d, hidden, [hidden], output_activation="elu")
        self.qa, self.qb = DiagonalGaussian(hidden, da), DiagonalGaussian(hidden, db)
        self.pa, self.pb = StandardNormal(da), StandardNormal(db)
        self.dec = MLP(da + db, d, [hidden])

    def encode(self, x: Tensor) -> dict[str, Distribution]:
        h = self.enc(x)
        return {"a": self.qa(h), "b": self.qb(h)}

    def decode(self, z: dict[str, Tensor]) -> Distribution:
        return Independent(Bernoulli(logits=self.dec(torch.cat([z["a"], z["b"]], -1)), validate_args=False), 1)

    def priors(self) -> dict[str, Distribution]:
        return {"a": self.pa(), "b": self.pb()}

    def elbo_terms(self, x: Tensor) -> ElboTerms:
        q, p = self.encode(x), self.priors()
        z, log_q = {}, {}
        for n in self.latent_names:
            z[n], log_q[n] = rsample_and_log_prob(q[n])
        kl = {n: torch.distributions.kl_divergence(q[n], p[n]) for n in self.latent_names}
        return ElboTerms(self.decode(z).log_prob(x), kl, log_q, {n: p[n].log_prob(z[n]) for n in self.latent_names})

    def log_weights(self, x: Tensor, k: int = 1) -> Tensor:
        q, p = self.encode(x), self.priors()
        out = 0
        z = {}
        for n in self.latent_names:
            z[n], lq = rsample_and_log_prob(q[n], (k,))
            out = out + p[n].log_prob(z[n]) - lq
        return out + self.decode(z).log_prob(x)

    def sample_prior(self, n: int) -> dict[str, Tensor]:
        return {k: p.sample((n,)) for k, p in self.priors().items()}

    def latent_pairs(self, x: Tensor) -> dict[str, tuple[Distribution, Distribution]]:
        q, p = self.encode(x), self.priors()
        return {n: (p[n], q[n]) for n in self.latent_names}


def two_latent(x: Tensor) -> TwoLatent:
    torch.manual_seed(2)
    return train(TwoLatent(x.shape[1]), x, steps=200)
