"""Where the eager training step spends its time beyond a hand-written one: one process, variants timed in alternating chunks.

``benchmarks/train_throughput.py`` compares whole methods between runs of 300 steps; its
ratios move by 4-5% from run to run on a 2-core VM. This script separates the two halves
of the step and times them in one process, each variant in turn for ``--chunk`` steps,
``--rounds`` times in a shuffled order, so that drift of the machine hits every variant
alike. Variants (Cremer MNIST VAE, batch 100, data on the device, fused Adam):

- ``hand model + hand update``: ``PlainVAE`` of train_throughput.py, ``zero_grad``, ``backward``, ``Adam.step``
  (the ``plain-ondevice`` step, with the batches of vaekit's ``IndexBatches`` as in every variant);
- ``vaekit model + hand update``: ``mlp_vae([784])`` with ``ELBO`` under the same update;
- ``hand model + TrainStep``: ``PlainVAE`` under vaekit's eager :class:`~vaekit.training.step.TrainStep`
  (finite check, masked fused Adam, meter);
- ``vaekit model + TrainStep``: vaekit's eager step.

Then the same two models at 2-8-4-4-2 (forward and backward only), where tensor work is
negligible, so that their difference is the framework's own (operators and Python), with
vaekit's layers added one at a time to the hand-written arithmetic in between (the last
row is ``ELBO`` itself), and the top-level profiler events of one forward and backward
(forward operators and backward nodes).

Usage: ``python benchmarks/step_overhead.py [--threads 2] [--rounds 30] [--chunk 50]``;
prints median microseconds per step (lower is better).
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_throughput as tt  # noqa: E402  (a sibling benchmark: its hand-written model and data)


def interleaved(variants: dict[str, Callable[[], object]], rounds: int, chunk: int, warmup: int = 100) -> dict[str, float]:
    """Median seconds per call of each variant, timed in alternating chunks of ``chunk`` calls."""
    for f in variants.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    rng = random.Random(0)
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            f, out = variants[k], times[k]
            for _ in range(chunk):
                t0 = time.perf_counter()
                f()
                out.append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def step_variants(x: torch.Tensor) -> dict[str, Callable[[], object]]:
    from vaekit.models import mlp_vae
    from vaekit.objectives import ELBO
    from vaekit.training.batches import IndexBatches
    from vaekit.training.step import TrainStep

    def batches() -> itertools.chain:
        b = IndexBatches(x, 100, 0)
        return itertools.chain.from_iterable(b.epoch(e) for e in itertools.count())

    def adam(module: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.Adam(module.parameters(), lr=1e-3, eps=1e-4, fused=True)

    def hand_update(loss_of: Callable[[torch.Tensor], torch.Tensor], module: torch.nn.Module) -> Callable[[], None]:
        opt, gen = adam(module), batches()

        def step() -> None:
            loss = loss_of(next(gen))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return step

    def train_step(forward: Callable, module: torch.nn.Module) -> Callable[[], None]:
        stepper, gen = TrainStep(forward, list(module.parameters()), adam(module)), batches()
        return lambda: stepper(next(gen), 5)

    hand, hand2, vae, vae2, obj = tt.PlainVAE(784), tt.PlainVAE(784), mlp_vae([784]), mlp_vae([784]), ELBO()

    def hand_forward(b: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = hand2(b)
        return loss, {"loss": loss.detach()}

    return {"hand model + hand update": hand_update(hand, hand),
            "vaekit model + hand update": hand_update(lambda b: obj(vae, b, 5)[0], vae),
            "hand model + TrainStep": train_step(hand_forward, hand2),
            "vaekit model + TrainStep": train_step(lambda b, s: obj(vae2, b, s), vae2)}


def tiny_losses() -> tuple[dict[str, Callable[[], torch.Tensor]], dict[str, list[torch.Tensor]]]:
    """The losses of the 2-8-4-4-2 variants (name -> callable) and the parameters each trains: the hand-written
    model, vaekit's layers added one at a time to the hand-written arithmetic on vaekit's modules, and vaekit's
    model with ``ELBO`` (the same arithmetic in every vaekit row: each layer adds code, not operations)."""
    import torch.nn.functional as F

    from vaekit.distributions.kl import closed_form_kl
    from vaekit.models import mlp_vae
    from vaekit.objectives import ELBO

    xb = torch.bernoulli(torch.full((2, 8), 0.3), generator=torch.Generator().manual_seed(0))
    hand, vae, obj = tt.PlainVAE(8, hidden=4, latent=2), mlp_vae([8], latent_features=2, hidden=[4, 4]), ELBO()
    enc, post, dec = vae.encoder, vae.posterior, vae.decoder

    def bce(z: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(dec(z), xb, reduction="none").sum(-1)

    def kl(mu: torch.Tensor, sig: torch.Tensor) -> torch.Tensor:
        return 0.5 * (mu.square() + sig.square() - 1.0).sum(-1) - sig.log().sum(-1)

    def modules() -> torch.Tensor:
        mu, raw = post.linear(enc(xb)).chunk(2, -1)
        sig = F.softplus(raw) + post.min_scale
        return (bce(mu + torch.randn(sig.shape) * sig) + kl(mu, sig)).mean()

    def posterior() -> torch.Tensor:
        q = post(enc(xb))
        return (bce(q.loc + torch.randn(q.scale.shape) * q.scale) + kl(q.loc, q.scale)).mean()

    def sample_and_kl() -> torch.Tensor:
        q = post(enc(xb))
        return (bce(q.rsample()) + closed_form_kl(q, vae.prior())).mean()

    def likelihood() -> torch.Tensor:
        q = post(enc(xb))
        return (closed_form_kl(q, vae.prior()) - vae.decode(q.rsample()).log_prob(xb)).mean()

    def elbo_terms() -> torch.Tensor:
        t = vae.elbo_terms(xb)
        return (t.kl["z"] - t.rec).mean()

    losses = {"hand model, 2-8-4-4-2": lambda: hand(xb), "vaekit's modules, hand arithmetic": modules,
              "+ posterior distribution": posterior, "+ rsample and closed_form_kl": sample_and_kl,
              "+ decode and log_prob": likelihood, "+ elbo_terms": elbo_terms,
              "vaekit model, 2-8-4-4-2": lambda: obj(vae, xb, 5)[0]}
    params = {name: list((hand if name.startswith("hand") else vae).parameters()) for name in losses}
    return losses, params


def tiny_variants() -> tuple[dict[str, Callable[[], object]], dict[str, int]]:
    """:func:`tiny_losses` as forward-and-backward steps, and the top-level profiler events of one of each
    (forward operators and the backward's nodes)."""
    losses, params = tiny_losses()

    def fwd_bwd(loss_of: Callable[[], torch.Tensor], ps: list[torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            loss_of().backward()
            for p in ps:
                p.grad = None
        return run

    variants = {name: fwd_bwd(loss_of, params[name]) for name, loss_of in losses.items()}
    ops = {}
    for name, run in variants.items():
        with torch.profiler.profile() as prof:
            run()
        ops[name] = sum(1 for e in prof.events() if e.cpu_parent is None)
    return variants, ops


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=30, help="chunks per variant")
    p.add_argument("--chunk", type=int, default=50, help="steps per chunk")
    p.add_argument("--data-root", default=tt.parse_args([]).data_root)
    args = p.parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or args.chunk < 1:
        p.error(f"--threads, --rounds and --chunk must be >= 1, got {args.threads}, {args.rounds}, {args.chunk}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, source = tt.load_train(args.data_root, 50000, 0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {tt.device_name(torch.device('cpu'))}; "
          f"data: {source}; {args.rounds} x {args.chunk} steps per variant, in alternating chunks")
    step = interleaved(step_variants(x), args.rounds, args.chunk)
    base = step["hand model + hand update"]
    print("\n| step (batch 100, fused Adam) | us per step | vs hand model + hand update |\n|---|---|---|")
    for k, v in step.items():
        print(f"| {k} | {1e6 * v:.0f} | {1e6 * (v - base):+.0f} |")
    tiny, ops = tiny_variants()
    res = interleaved(tiny, args.rounds, 4 * args.chunk)
    print("\n| forward + backward | us | top-level profiler events (forward operators + backward nodes) |\n|---|---|---|")
    for k, v in res.items():
        print(f"| {k} | {1e6 * v:.0f} | {ops[k]} |")


if __name__ == "__main__":
    main()
