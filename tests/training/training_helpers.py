"""A tiny hand-written model, a stand-in data module and test objectives for the engine tests.

The engine is tested model-agnostically: nothing here comes from vaekit.models except the
protocol base class. :func:`fit_elbo`, the plain full-batch ELBO loop, also serves the model and
inference tests that train a small model without the engine.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal, kl_divergence
from torch.overrides import TorchFunctionMode

from vaekit.models import ElboTerms, LatentVariableModel
from vaekit.objectives import ELBO, Objective

__all__ = ["HostReads", "TinyVAE", "MeanTinyVAE", "StandInData", "NaNAt", "ReconMSE", "make_data", "weights", "same_weights"]


class TinyVAE(LatentVariableModel):
    """Linear Gaussian VAE: q(z|x) = N(A x + a, diag(exp(2 s(x)))), p(x|z) = N(W z + b, exp(2 log_sigma))."""

    def __init__(self, d_x: int = 6, d_z: int = 2) -> None:
        super().__init__()
        self.data_shape = (d_x,)
        self.latent_dims = {"z": d_z}
        self.enc = nn.Linear(d_x, 2 * d_z)
        self.dec = nn.Linear(d_z, d_x)
        self.log_sigma = nn.Parameter(torch.zeros(d_x))

    def encode(self, x: Tensor) -> dict[str, Independent]:
        mu, log_s = self.enc(x).chunk(2, -1)
        return {"z": Independent(Normal(mu, log_s.exp()), 1)}

    def decode(self, z: dict[str, Tensor]) -> Independent:
        return Independent(Normal(self.dec(z["z"]), self.log_sigma.exp()), 1)

    def prior(self, like: Tensor) -> Independent:
        return Independent(Normal(torch.zeros_like(like), torch.ones_like(like)), 1)

    def elbo_point(self, q: Independent) -> Tensor:
        """The z at which :meth:`elbo_terms` evaluates the ELBO: one draw from q."""
        return q.rsample()

    def elbo_terms(self, batch: Any) -> ElboTerms:
        q = self.encode(batch)["z"]
        z = self.elbo_point(q)
        p = self.prior(z)
        return ElboTerms(rec=self.decode({"z": z}).log_prob(batch), kl={"z": kl_divergence(q, p)},
                         log_q={"z": q.log_prob(z)}, log_p={"z": p.log_prob(z)})

    def log_weights(self, x: Tensor, k: int = 1) -> Tensor:
        q = self.encode(x)["z"]
        z = q.rsample((k,))
        return self.decode({"z": z}).log_prob(x) + self.prior(z).log_prob(z) - q.log_prob(z)

    def sample_prior(self, n: int) -> dict[str, Tensor]:
        return {"z": torch.randn(n, self.latent_dims["z"])}


class MeanTinyVAE(TinyVAE):
    """:class:`TinyVAE` whose ELBO terms take z at the posterior mean: a deterministic objective (no draws),
    so that a run can be repeated step by step from the batches it saw."""

    def elbo_point(self, q: Independent) -> Tensor:
        return q.mean


class StandInData:
    """The DataModule attributes the trainer consumes; ``augment`` adds noise from the global torch RNG."""

    def __init__(self, train: Any, val: Tensor | None = None, noise: float = 0.0) -> None:
        self.train, self.val, self.test, self.noise = train, val, None, noise
        self.setup_calls = 0

    @property
    def data_shape(self) -> tuple[int, ...]:
        return tuple(self.train[0].shape)

    def setup(self) -> None:
        self.setup_calls += 1

    def augment(self, x: Tensor) -> Tensor:
        return x + self.noise * torch.randn_like(x) if self.noise else x


def make_data(n: int = 64, n_val: int = 16, d_x: int = 6, seed: int = 0, noise: float = 0.0) -> StandInData:
    """Data from a linear-Gaussian model (so the tiny VAE can fit it)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d_x, 2, generator=g)
    x = torch.randn(n + n_val, 2, generator=g) @ w.T + 0.3 * torch.randn(n + n_val, d_x, generator=g)
    return StandInData(x[:n].contiguous(), x[n:].contiguous() if n_val else None, noise=noise)


class NaNAt(Objective):
    """ELBO whose training loss is NaN at chosen steps (and at every step from ``forever_from`` on)."""

    def __init__(self, steps: tuple[int, ...] = (), forever_from: int | None = None) -> None:
        self.inner, self.steps, self.forever_from = ELBO(), set(steps), forever_from
        self.calls: list[int] = []
        self.batches: list[tuple[int, Tensor]] = []  # (step, CPU copy of the batch) of every training step

    def __call__(self, model: Any, batch: Any, step: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        loss, metrics = self.inner(model, batch, step)
        training = model.training
        if training:
            self.calls.append(step)
            if torch.is_grad_enabled():  # not the loop's no-grad probe of the objective
                self.batches.append((step, batch.detach().cpu().clone()))
        if training and (step in self.steps or (self.forever_from is not None and step >= self.forever_from)):
            loss = loss * math.nan
            metrics = {**metrics, "loss": loss.detach()}
        return loss, metrics


class ReconMSE(Objective):
    """Deterministic objective (no sampling): squared error of decoding the posterior mean."""

    def __call__(self, model: Any, batch: Any, step: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        mu = model.encode(batch)["z"].mean
        loss = ((model.decode({"z": mu}).mean - batch) ** 2).mean()
        return loss, {"loss": loss.detach()}


def fit_elbo(model: nn.Module, batch: Any, optimizer: torch.optim.Optimizer, steps: int) -> nn.Module:
    """``steps`` steps of ``optimizer`` on the ELBO of the whole ``batch``; returns ``model``."""
    for step in range(steps):
        loss, _ = ELBO()(model, batch, step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def weights(model: nn.Module) -> dict[str, Tensor]:
    """A CPU copy of the model's state dict."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    """Bit-identical state dicts."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


#: Tensor methods that copy a value to the host (on a GPU: wait for the device).
HOST_READS = {"item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy", "cpu"}


class HostReads(TorchFunctionMode):
    """Counts the Tensor -> Python value reads made while it is active."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.reads.append(name)
        return func(*args, **(kwargs or {}))
