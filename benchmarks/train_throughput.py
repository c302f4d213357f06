"""Training throughput of the Cremer et al. MNIST VAE: vaekit's ``Trainer.fit`` against plain PyTorch.

Model (every method): 784-200-200-(50) ELU encoder and 50-200-200-784 ELU decoder, factorized
Gaussian posterior (scale ``softplus + 1e-5``), standard normal prior, Bernoulli likelihood,
negative ELBO with the analytic KL, Adam (lr 1e-3, eps 1e-4), batch 100, float32. Data: the
binarized MNIST training split (``vaekit.data.BinarizedMNIST`` from ``--data-root``,
``VAEKIT_DATA`` or ``../shared/data``), or random binary images of the same shape when it is
not found (said in the output and in the ``data`` column).

Methods, on the same data (each in its own process by default on a CPU, see ``--isolation`` below):

``plain``
    What every user would write first: a hand-written ``nn.Module`` (``PlainVAE``),
    ``DataLoader(TensorDataset(x), batch_size=100, shuffle=True)``, default ``torch.optim.Adam``,
    batches moved to the device one by one.
``plain-ondevice``
    The same model with the data moved to the device once and batched by a random permutation,
    and ``Adam(fused=True)``: the "data on device + fused Adam" reference point of issue 2.
``vaekit``
    ``vaekit.training.Trainer(...).fit(mlp_vae([784]), ArrayData(x, val_fraction=0))``: the
    normal ``vaekit fit`` path, with validation off (``val_every_epochs=None``, no ``val``
    split), no periodic checkpoints (``checkpoint_every_steps=None``; ``fit`` still writes
    ``last.ckpt`` once, after the timed window), progress bar off, and everything else at its
    default (``metrics.csv`` + TensorBoard rows every 50 steps, the per-step gradient norm and
    non-finite check).
``vaekit-compile``
    The same with ``Trainer(compile=True)`` (``torch.compile`` of the whole step: the
    objective with its backward, and the update; ``torch._dynamo.reset()`` before each fit,
    so every repeat compiles afresh).
``vaekit-compile-nocpp`` (only when named in ``--methods``)
    ``vaekit-compile`` with ``VAEKIT_CPP_WRAPPER=0`` while it runs: the compiled step without
    inductor's C++ wrapper (the default before it was turned on for CPUs), to measure what the
    wrapper gives.
``vaekit-graph``
    The same with ``Trainer(compile="reduce-overhead")``: the compiled step captured in CUDA
    graphs (CUDA only; skipped on a CPU).

How time is measured (the same for every method): a hook runs after every training step
(for ``plain*`` a global optimizer hook, ``torch.optim.optimizer.register_optimizer_step_post_hook``,
after every ``optimizer.step()``; for ``vaekit*`` a wrapper of
``vaekit.training.step.TrainStep.__call__``, outside any compiled code) and records ``time.perf_counter()`` after step ``warmup`` and then after
every ``--block`` steps (50, vaekit's ``log_every_steps``) up to step ``warmup + steps``; each
run takes ``warmup + steps + 1`` steps. So the timed window holds whole training steps in
steady state (data fetch, forward, backward, optimizer, and for vaekit the loop's per-step work
plus exactly one ``metrics.csv``/TensorBoard row per block) and excludes set-up, the warm-up
(allocator, ``torch.compile``, cuBLAS heuristics) and ``fit``'s final checkpoint. On CUDA the
hook synchronises before each timestamp (once per block). Each method runs ``--repeats``
times, the methods interleaved run by run, so that a change of machine load hits all of them
alike. ``samples_per_s`` (and ``ms_per_step``, ``ratio_to_plain``) come from the median block
time over all blocks of all runs: on a shared CPU, bursts of other processes only ever add
time, and the median block ignores them where a whole-window mean would not; the whole-window
throughput of the median run and of the best run are reported beside it
(``samples_per_s_runs``, ``samples_per_s_best``). ``load_avg`` is the 1-minute load average
at the start and the end.

``--isolation lockstep`` (the default on a CPU): every method trains in its own process, and
the processes take turns block by block. Each worker runs its warm-up, then stops at every
block edge until the coordinator tells it to run the next block; in each of the ``repeats x
steps / block`` rounds the coordinator lets every method run one block, in a shuffled order,
while the others wait idle. So no method's allocations, threads or compiled code share a
process with another's, and the blocks of all methods are measured seconds apart, not a run
apart, so a change of machine speed hits them alike. Each method is one run
of ``repeats x steps`` timed steps (``samples_per_s_runs`` is that run's whole-window
throughput, ``samples_per_s_best`` its best block). Beside the median-block ratios,
``ratio_to_ondevice_rounds`` is the median over the rounds of each round's ratio of block
times (plain-ondevice's over the method's): a paired comparison, the steadier of the two.
``--isolation in-process`` is the former way: all methods in this process, whole runs
interleaved (the default with ``--device cuda``).

Ops and kernels per step: one more run of each method profiles ``--profile-steps`` steps after
the warm-up with ``torch.profiler`` (started and stopped by the same optimizer hook, outside
the timed runs). ``aten_ops_per_step`` counts the ATen operators called from Python or the
autograd engine (not those nested inside another operator): the dispatch overhead on a CPU.
``python_calls_per_step`` counts the Python function calls (``cProfile``, the same steps; C
functions called from Python included): the interpreter's share of the step. Both counts are
the same on a busy machine as on an idle one, so they compare methods where timings cannot
(markdown table only; the CSV keeps its columns).
On CUDA, ``kernels_per_step`` counts the GPU kernels (memcpy/memset excluded) and
``launches_per_step`` the host-side launch calls (``cudaLaunchKernel``, ``cuLaunchKernel``,
``cudaGraphLaunch``, ...): launch overhead, not arithmetic, bounds this small model there.

Appends one CSV row per method to ``<out-dir>/train_throughput.csv``, writes the table of this
run to ``<out-dir>/train_throughput_cuda.md`` or ``train_throughput_cpu_<threads>threads.md``
(replacing the previous run's) and prints it.

Usage::

    python benchmarks/train_throughput.py --threads 2                 # this CPU
    python benchmarks/train_throughput.py --device cuda               # a GPU
    python benchmarks/train_throughput.py --methods plain vaekit --steps 200 --repeats 3
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import math
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader, TensorDataset

import iwae_speed  # a sibling script (benchmarks/ is on sys.path when a script in it runs): device name, commit

HERE = Path(__file__).resolve().parent
METHODS = ("plain", "plain-ondevice", "vaekit", "vaekit-compile", "vaekit-graph", "vaekit-compile-nocpp")
#: the methods run when ``--methods`` is not given
DEFAULT_METHODS = METHODS[:5]
FIELDS = ["date", "commit", "device", "device_name", "torch", "threads", "load_avg_start", "load_avg_end", "data",
          "n_train", "batch_size", "warmup_steps", "steps", "block", "repeats", "method", "samples_per_s",
          "ms_per_step", "ratio_to_plain", "samples_per_s_runs", "samples_per_s_best", "aten_ops_per_step",
          "kernels_per_step", "launches_per_step", "note", "isolation", "ratio_to_ondevice_rounds"]
LAUNCH_CALLS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx", "cudaGraphLaunch",
                "cuGraphLaunch", "cudaLaunchCooperativeKernel")


class PlainVAE(nn.Module):
    """The hand-written baseline: 784-200-200-(50) ELU, Gaussian posterior, Bernoulli likelihood.

    ``forward(x)`` with x : Tensor of shape (batch, 784) in {0, 1} returns the negative ELBO
    averaged over the batch (BCE-with-logits reconstruction + analytic KL to N(0, I)).
    """

    def __init__(self, d: int = 784, hidden: int = 200, latent: int = 50) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                     nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
                                     nn.Linear(hidden, d))

    def forward(self, x: Tensor) -> Tensor:
        mu, raw = self.encoder(x).chunk(2, dim=-1)
        sigma = F.softplus(raw) + 1e-5
        z = mu + sigma * torch.randn_like(sigma)
        rec = F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        kl = 0.5 * (mu.square() + sigma.square() - 1.0).sum(-1) - sigma.log().sum(-1)
        return (rec + kl).mean()


class StepClock:
    """Timestamps after every ``block``-th ``optimizer.step()`` (a global hook), with optional profiling.

    Parameters
    ----------
    device : torch.device
        CUDA is synchronised before each timestamp.
    start, stop : int
        Hook calls (1-based optimizer steps) that open and close the timed window.
    block : int
        Steps between timestamps inside the window.
    profile : bool
        Also run ``torch.profiler`` from step ``start`` to step ``stop``.
    """

    def __init__(self, device: torch.device, start: int, stop: int, block: int, profile: bool = False,
                 vaekit: bool = False) -> None:
        self.device, self.start, self.stop, self.block, self.vaekit = device, start, stop, block, vaekit
        self.times: dict[int, float] = {}
        self.calls = 0
        self.prof: Any = None
        self.python: cProfile.Profile | None = cProfile.Profile() if profile else None
        if profile:
            acts = [torch.profiler.ProfilerActivity.CPU]
            if device.type == "cuda":
                acts.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=acts)

    def _edge(self) -> int | None:
        """Count one more step; its number when it ends a block of the window (or the window), else None."""
        self.calls += 1
        c = self.calls
        return c if self.start <= c <= self.stop and ((c - self.start) % self.block == 0 or c == self.stop) else None

    def _stamp(self, c: int) -> float:
        """The time of edge ``c`` (CUDA synchronised first), recorded in ``times``."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.times[c] = now = time.perf_counter()
        return now

    def __call__(self, *_: Any) -> None:
        c = self._edge()
        if c is not None:
            self._stamp(c)
            if self.prof is not None and c == self.start:
                self.prof.start()
                self.python.enable()  # type: ignore[union-attr]
            elif self.prof is not None and c == self.stop:
                self.python.disable()  # type: ignore[union-attr]
                self.prof.stop()

    def __enter__(self) -> StepClock:
        if self.vaekit:  # after each TrainStep call: a hook inside optimizer.step() would break a compiled update
            from vaekit.training.step import TrainStep

            original = TrainStep.__call__

            def timed(step: Any, *args: Any, **kwargs: Any) -> Any:
                out = original(step, *args, **kwargs)
                self()
                return out

            TrainStep.__call__ = timed  # type: ignore[method-assign]
            self.restore = lambda: setattr(TrainStep, "__call__", original)
        else:
            self.restore = register_optimizer_step_post_hook(self).remove
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()
        if self.prof is not None and self.start <= self.calls < self.stop:
            self.python.disable()  # type: ignore[union-attr]
            self.prof.stop()

    def seconds(self) -> float:
        """Time between the two window edges."""
        if self.start not in self.times or self.stop not in self.times:
            raise RuntimeError(f"the optimizer hook ran {self.calls} times, fewer than the {self.stop} steps needed: "
                               f"the training step no longer calls optimizer.step() per step (e.g. a captured CUDA "
                               f"graph); time whole fits of two lengths instead")
        return self.times[self.stop] - self.times[self.start]

    def block_seconds(self) -> list[float]:
        """Time of each whole block of ``block`` steps in the window."""
        edges = sorted(self.times)
        return [self.times[b] - self.times[a] for a, b in zip(edges[:-1], edges[1:]) if b - a == self.block]


def plain_batches(x: Tensor, device: torch.device, batch_size: int, ondevice: bool) -> Iterator[Tensor]:
    """Endless shuffled batches of x: through a ``DataLoader``, or by index with x on the device."""
    if ondevice:
        xd = x.to(device)
        while True:
            perm = torch.randperm(len(xd), device=device)
            for i in range(0, len(xd), batch_size):
                yield xd[perm[i:i + batch_size]]
    loader = DataLoader(TensorDataset(x), batch_size=batch_size, shuffle=True)
    while True:
        for (xb,) in loader:
            yield xb.to(device, non_blocking=True)


def run_plain(x: Tensor, device: torch.device, batch_size: int, n_steps: int, ondevice: bool) -> None:
    """Train ``PlainVAE`` for ``n_steps`` steps (``ondevice``: data on the device and fused Adam)."""
    model = PlainVAE(x.shape[1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4, **({"fused": True} if ondevice else {}))
    for _, xb in zip(range(n_steps), plain_batches(x, device, batch_size, ondevice)):
        loss = model(xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def run_vaekit(x: Tensor, device: torch.device, batch_size: int, n_steps: int, compile: bool | str,
               cpp_wrapper: bool = True) -> None:
    """``Trainer.fit`` of ``mlp_vae([784])`` for ``n_steps`` steps in a temporary run directory
    (``cpp_wrapper=False``: with ``VAEKIT_CPP_WRAPPER=0`` set while it runs)."""
    from unittest import mock

    from vaekit.data import ArrayData
    from vaekit.models import mlp_vae
    from vaekit.training import Trainer
    from vaekit.training.step import CPP_WRAPPER_ENV

    if compile:
        torch._dynamo.reset()
    env = {} if cpp_wrapper else {CPP_WRAPPER_ENV: "0"}  # (restored as it was when the fit ends)
    with tempfile.TemporaryDirectory() as root, mock.patch.dict(os.environ, env):
        trainer = Trainer(max_epochs=10**6, max_steps=n_steps, batch_size=batch_size, lr=1e-3, adam_eps=1e-4,
                          val_every_epochs=None, val_every_steps=None, checkpoint_every_steps=None,
                          progress_bar=False, accelerator=device.type, devices=1, compile=compile, root_dir=root)
        config = {"benchmark": "benchmarks/train_throughput.py", "trainer": trainer.get_params()}
        trainer.fit(mlp_vae([x.shape[1]]), ArrayData(x, val_fraction=0.0), config=config)


def count_ops(prof: Any, steps: int) -> dict[str, float]:
    """ATen ops (top level), GPU kernels and launch calls per step from a finished profile."""
    ops = kernels = launches = 0
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            kernels += not e.name.startswith(("Memcpy", "Memset", "[memory]"))
        elif e.name.startswith("aten::") and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")):
            ops += 1
        elif e.name in LAUNCH_CALLS:
            launches += 1
    return {"aten_ops_per_step": ops / steps, "kernels_per_step": kernels / steps, "launches_per_step": launches / steps}


def python_calls(profile: cProfile.Profile | None, steps: int) -> float:
    """Python function calls per step recorded by ``profile`` (0 when it recorded none)."""
    if profile is None:
        return 0.0
    try:
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    except TypeError:  # nothing was recorded
        return 0.0
    return sum(calls for _, calls, *_ in stats.values()) / steps


def load_train(root: str, n: int, seed: int) -> tuple[Tensor, str]:
    """``n`` binarized-MNIST training images as (n, 784) float32 (repeated if n > 50000), or random ones."""
    try:
        from vaekit.data import BinarizedMNIST

        data = BinarizedMNIST(root, flatten=True, download=False)
        data.setup()
        x, source = data.train, "binarized_mnist train"
    except Exception as err:  # noqa: BLE001 - any failure to find the data falls back, loudly
        print(f"NOTE: binarized MNIST not found under {root!r} ({type(err).__name__}: {err}); "
              f"timing on random binary images of the same shape")
        g = torch.Generator().manual_seed(seed)
        x, source = torch.bernoulli(torch.full((n, 784), 0.13), generator=g), "random binary"
    if len(x) < n:
        x = x.repeat(math.ceil(n / len(x)), 1)
    return x[:n].contiguous(), source


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model name from /proc/cpuinfo with the logical core count."""
    name = iwae_speed.device_name(device)
    return name if device.type == "cuda" else f"{name} ({os.cpu_count()} logical cores)"


def measure(fn: Callable[[int], None], device: torch.device, warmup: int, steps: int, block: int,
            profile: bool = False, vaekit: bool = False) -> StepClock:
    """Run ``fn(warmup + steps + 1)`` under a :class:`StepClock` timing steps ``warmup + 1 ..``."""
    with StepClock(device, warmup + 1, warmup + steps + 1, block, profile, vaekit) as clock:
        fn(warmup + steps + 1)
    clock.seconds()  # raises if the window was not seen
    return clock


class LockstepClock(StepClock):
    """A :class:`StepClock` that stops at every block edge of the window until told to go on (a worker of
    ``--isolation lockstep``): at each edge it writes ``@@wait`` to ``out`` and reads a line from ``inp``:
    ``go`` times the next ``block`` steps (then ``@@block <seconds>``), ``end`` (after the last block) lets
    training finish untimed. So a worker's teardown (``fit``'s last checkpoint, the interpreter's exit) runs only
    once every block of every method is timed."""

    def __init__(self, device: torch.device, start: int, stop: int, block: int, vaekit: bool, inp: Any, out: Any) -> None:
        super().__init__(device, start, stop, block, vaekit=vaekit)
        self.inp, self.out = inp, out
        self.blocks: list[float] = []
        self.t0: float | None = None

    def __call__(self, *_: Any) -> None:
        c = self._edge()
        if c is None:
            return
        now = self._stamp(c)
        if self.t0 is not None:
            self.blocks.append(now - self.t0)
            print(f"@@block {now - self.t0!r}", file=self.out, flush=True)
        print("@@wait", file=self.out, flush=True)
        word = self.inp.readline().strip()
        if word == "end" and c == self.stop:
            self.t0 = None
            return
        if word != "go" or c == self.stop:
            raise SystemExit(f"train_throughput worker: got {word!r} after step {c} (window {self.start}..{self.stop})")
        self.t0 = time.perf_counter()


#: Methods whose failure (no working compiler, a compilation that never ends) is a note, not the end of the run.
OPTIONAL = ("vaekit-compile", "vaekit-graph", "vaekit-compile-nocpp")


def runners_for(x: Tensor, device: torch.device, batch_size: int) -> dict[str, Callable[[int], None]]:
    """Each method as ``run(n_steps)``."""
    return {
        "plain": lambda n: run_plain(x, device, batch_size, n, ondevice=False),
        "plain-ondevice": lambda n: run_plain(x, device, batch_size, n, ondevice=True),
        "vaekit": lambda n: run_vaekit(x, device, batch_size, n, compile=False),
        "vaekit-compile": lambda n: run_vaekit(x, device, batch_size, n, compile=True),
        "vaekit-graph": lambda n: run_vaekit(x, device, batch_size, n, compile="reduce-overhead"),
        "vaekit-compile-nocpp": lambda n: run_vaekit(x, device, batch_size, n, compile=True, cpp_wrapper=False),
    }


def rounds_of(args: argparse.Namespace) -> int:
    """Timed blocks per method in lockstep: ``repeats x steps`` timed steps, in whole blocks (rounded down)."""
    return max(1, args.repeats * args.steps // args.block)


def worker(args: argparse.Namespace) -> None:
    """``--worker METHOD``: train one method under a :class:`LockstepClock` (protocol on stdin/stdout)."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    quiet = logging.StreamHandler()
    quiet.setLevel(logging.WARNING)
    logging.getLogger("vaekit").addHandler(quiet)
    x, _ = load_train(args.data_root, args.n_train, args.seed)
    start, n = args.warmup_steps + 1, rounds_of(args)
    torch.manual_seed(args.seed)
    with LockstepClock(device, start, start + n * args.block, args.block, args.worker.startswith("vaekit"),
                       sys.stdin, sys.stdout) as clock:
        runners_for(x, device, args.batch_size)[args.worker](start + n * args.block)
    if len(clock.blocks) != n:
        raise SystemExit(f"train_throughput worker {args.worker}: {len(clock.blocks)} blocks timed, not {n}")


class _Lines:
    """Lines of a worker's stdout, read with a deadline (``select`` on the pipe, our own buffer)."""

    def __init__(self, proc: Any) -> None:
        self.fd, self.buf = proc.stdout.fileno(), b""

    def readline(self, timeout: float) -> str | None:
        """The next line, or None at the end of the stream; ``TimeoutError`` after ``timeout`` seconds."""
        import select

        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(self.fd, 65536)
            if not chunk:
                line, self.buf = self.buf, b""
                return line.decode(errors="replace") or None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode(errors="replace") + "\n"


def lockstep(args: argparse.Namespace, argv: list[str], command: Callable[[str], list[str]] | None = None,
             timeout: float = 900.0) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, str]]:
    """Run every method in its own worker process, block by block in turns (see the module docstring).

    ``command(method)`` is a worker's command line (default: this script with ``argv`` and ``--worker``);
    ``timeout`` the longest wait for one line of a worker (its warm-up, with compilation, or one block) or for
    its exit after ``end``; a compiled method (:data:`OPTIONAL`) that exceeds it becomes a note, as a crash does.
    Returns the block times per method as the workers measured them, the time from each ``go`` to its
    ``@@block`` as seen here (which holds the block), and a note per method that failed (a compiled method
    may fail where no compiler works; any other failure raises)."""
    import random
    import subprocess

    if command is None:
        command = lambda m: [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", m]  # noqa: E731
    procs: dict[str, subprocess.Popen] = {}
    lines: dict[str, _Lines] = {}
    logs: dict[str, Any] = {}
    notes: dict[str, str] = {}

    def expect(m: str, what: str) -> str | None:
        """The rest of the next protocol line of worker ``m``, which must start with ``what`` (None: it ended)."""
        while True:
            try:
                line = lines[m].readline(timeout)
            except TimeoutError:
                if m not in OPTIONAL:
                    raise RuntimeError(f"worker {m} said nothing for {timeout:.0f} s (waiting for {what!r})") from None
                procs[m].kill()  # an optional (compiled) method that hangs: a note, as a crash is
                print(f"  {m}: said nothing for {timeout:.0f} s (waiting for {what!r}); stopped")
                return None
            if line is None:
                return None
            if line.startswith("@@"):
                if line.startswith(what):
                    return line[len(what):].strip()
                raise RuntimeError(f"worker {m}: expected {what!r}, got {line.strip()!r}")
            print(f"  [{m}] {line.rstrip()}")

    def send(m: str, word: str) -> bool:
        try:
            procs[m].stdin.write(word + "\n")  # type: ignore[union-attr]
            procs[m].stdin.flush()  # type: ignore[union-attr]
            return True
        except (BrokenPipeError, OSError):
            return False

    def failed(m: str) -> None:
        try:
            procs[m].wait(timeout=30)
        except subprocess.TimeoutExpired:
            procs[m].kill()
            procs[m].wait()
        logs[m].seek(0)
        tail = [ln for ln in logs[m].read().splitlines() if ln.strip()][-1:] or ["no output"]
        notes[m] = f"failed: worker exit {procs[m].returncode}: {tail[0][:200]}"
        print(f"  {m}: {notes[m]}")
        if m not in OPTIONAL:
            raise RuntimeError(f"{m} {notes[m]}")

    blocks: dict[str, list[float]] = {}
    windows: dict[str, list[float]] = {}
    try:
        for m in args.methods:
            logs[m] = tempfile.TemporaryFile(mode="w+")
            procs[m] = subprocess.Popen(command(m), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs[m],
                                        text=True)
            lines[m] = _Lines(procs[m])
        for m in args.methods:  # every worker through its warm-up, each at the edge of its first block
            if expect(m, "@@wait") is None:
                failed(m)
        live = [m for m in args.methods if m not in notes]
        blocks, windows = {m: [] for m in live}, {m: [] for m in live}
        rng = random.Random(args.seed)
        for _ in range(rounds_of(args)):
            order = [m for m in live if m not in notes]
            rng.shuffle(order)
            for m in order:
                t0 = time.perf_counter()
                t = expect(m, "@@block") if send(m, "go") else None
                window = time.perf_counter() - t0
                if t is None or expect(m, "@@wait") is None:  # (the worker waits after every block, the last too)
                    failed(m)
                    continue
                blocks[m].append(float(t))
                windows[m].append(window)
        for m in live:  # only now may any worker finish (its last checkpoint, its exit): every block is timed
            if m not in notes:
                send(m, "end")
        for m in live:
            if m in notes:
                continue
            try:
                code = procs[m].wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                procs[m].kill()
                code = None
            if code != 0:
                failed(m)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs.values():
            f.close()
    return ({m: b for m, b in blocks.items() if m not in notes}, {m: w for m, w in windows.items() if m not in notes},
            notes)


def paired_ratios(blocks: dict[str, list[float]], base: str = "plain-ondevice") -> dict[str, float]:
    """Median over the rounds of ``base``'s block time over each method's (its speed relative to ``base``)."""
    if base not in blocks:
        return {}
    out = {}
    for m, b in blocks.items():
        pairs = [blocks[base][r] / b[r] for r in range(min(len(b), len(blocks[base])))]
        if pairs:
            out[m] = statistics.median(pairs)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS))
    p.add_argument("--steps", type=int, default=500, help="timed steps per run (default 500: one epoch of 50k)")
    p.add_argument("--epochs", type=float, default=None, help="timed epochs per run (overrides --steps)")
    p.add_argument("--warmup-steps", type=int, default=50, help="untimed steps before the window")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per method")
    p.add_argument("--block", type=int, default=50, help="steps per timed block (default: vaekit's log_every_steps)")
    p.add_argument("--profile-steps", type=int, default=5, help="steps profiled for op/kernel counts (0: none)")
    p.add_argument("--profile-table", type=int, default=0, help="print the top N ops of each profile by self time")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--n-train", type=int, default=50000)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--data-root", default=os.environ.get("VAEKIT_DATA") or str(HERE.parent.parent / "shared" / "data"))
    p.add_argument("--out-dir", type=Path, default=HERE / "results")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--isolation", choices=["lockstep", "in-process"], default=None,
                   help="lockstep: each method in its own process, blocks in turns (default on a CPU); in-process: "
                        "all methods here, whole runs interleaved (default on CUDA)")
    p.add_argument("--worker", choices=METHODS, default=None, help=argparse.SUPPRESS)  # a lockstep worker
    args = p.parse_args(argv)
    for name in ("steps", "warmup_steps", "repeats", "block", "batch_size", "n_train", "threads"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup_steps" else 1):
            p.error(f"--{name.replace('_', '-')} must be >= {0 if name == 'warmup_steps' else 1}, got {value}")
    if args.profile_steps < 0 or args.profile_table < 0:
        p.error("--profile-steps and --profile-table must be >= 0")
    if args.epochs is not None:
        if args.epochs <= 0:
            p.error(f"--epochs must be > 0, got {args.epochs}")
        args.steps = max(1, round(args.epochs * math.ceil(args.n_train / args.batch_size)))
    args.block = min(args.block, args.steps)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here")
    if args.device != "cuda" and "vaekit-graph" in args.methods:
        if "vaekit-graph" in (argv or sys.argv[1:]):
            p.error("--methods vaekit-graph: CUDA graphs need --device cuda")
        args.methods.remove("vaekit-graph")
    if args.isolation is None:
        args.isolation = "in-process" if args.device == "cuda" else "lockstep"
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.worker is not None:
        worker(args)
        return []
    upgrade_csv(args.out_dir / "train_throughput.csv", check_only=True)  # before minutes of measuring
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    quiet = logging.StreamHandler()  # keeps vaekit's INFO lines (one per fit) off the console, warnings pass
    quiet.setLevel(logging.WARNING)
    logging.getLogger("vaekit").addHandler(quiet)
    load0 = os.getloadavg()[0]
    x, source = load_train(args.data_root, args.n_train, args.seed)
    name = device_name(device)
    print(f"Training throughput, batch {args.batch_size}, {len(x)} examples ({source}) on {device} ({name}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load0:.2f}; "
          f"{args.repeats} x {args.steps} timed steps after {args.warmup_steps} warm-up steps per method")

    runners = runners_for(x, device, args.batch_size)
    clocks: dict[str, list[StepClock]] = {m: [] for m in args.methods}
    notes: dict[str, str] = {}
    blocks: dict[str, list[float]] = {}
    paired: dict[str, float] = {}
    if args.isolation == "lockstep":
        blocks, _, notes = lockstep(args, list(sys.argv[1:] if argv is None else argv))
        paired = paired_ratios(blocks)
        print(f"  {rounds_of(args)} rounds of one {args.block}-step block per method: " + ", ".join(
            f"{m} {args.block * args.batch_size * len(b) / sum(b):,.0f}/s" for m, b in blocks.items()))
    for rep in range(args.repeats if args.isolation == "in-process" else 0):
        for m in args.methods:
            if m in notes:
                continue
            torch.manual_seed(args.seed + rep)
            try:
                clocks[m].append(measure(runners[m], device, args.warmup_steps, args.steps, args.block,
                                         vaekit=m.startswith("vaekit")))
            except Exception as err:  # noqa: BLE001 - e.g. torch.compile without a working compiler
                if m not in OPTIONAL:
                    raise
                notes[m] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
                print(f"  {m}: {notes[m]}")
        print(f"  run {rep + 1}/{args.repeats}: " + ", ".join(
            f"{m} {args.steps * args.batch_size / c[-1].seconds():,.0f}/s" for m, c in clocks.items() if c))

    counts: dict[str, dict[str, float]] = {}
    if args.profile_steps:
        for m in args.methods:
            if m in notes:
                continue
            torch.manual_seed(args.seed)
            clock = measure(runners[m], device, args.warmup_steps, args.profile_steps, args.profile_steps, profile=True,
                            vaekit=m.startswith("vaekit"))
            counts[m] = count_ops(clock.prof, args.profile_steps)
            counts[m]["python_calls_per_step"] = python_calls(clock.python, args.profile_steps)
            if args.profile_table:
                sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
                print(f"\nprofile of {m} ({args.profile_steps} steps):")
                print(clock.prof.key_averages().table(sort_by=sort, row_limit=args.profile_table))
    load1 = os.getloadavg()[0]

    bs = args.batch_size
    if args.isolation == "in-process":
        blocks = {m: [t for clock in c for t in clock.block_seconds()] for m, c in clocks.items()}
    speed = {m: bs * args.block / statistics.median(b) for m, b in blocks.items() if b}
    common = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": iwae_speed.git_commit(),
              "device": str(device), "device_name": name, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "load_avg_start": f"{load0:.2f}", "load_avg_end": f"{load1:.2f}",
              "data": source, "n_train": len(x), "batch_size": bs, "warmup_steps": args.warmup_steps,
              "steps": args.steps, "block": args.block, "repeats": args.repeats, "isolation": args.isolation,
              "rounds": rounds_of(args)}
    rows = []
    for m in args.methods:
        row = {**common, **dict.fromkeys(FIELDS[FIELDS.index("samples_per_s"):], ""), "method": m,
               "note": notes.get(m, ""), "python_calls_per_step": "", "isolation": args.isolation}
        if m in speed:
            if args.isolation == "in-process":
                runs = [args.steps * bs / c.seconds() for c in clocks[m]]
                median_run, best = statistics.median(runs), max(runs)
            else:  # one run per method: its whole window, and its best block
                median_run, best = bs * args.block * len(blocks[m]) / sum(blocks[m]), bs * args.block / min(blocks[m])
            row.update(samples_per_s=f"{speed[m]:.0f}", ms_per_step=f"{1e3 * bs / speed[m]:.3f}",
                       samples_per_s_runs=f"{median_run:.0f}", samples_per_s_best=f"{best:.0f}",
                       ratio_to_plain=f"{speed[m] / speed['plain']:.3f}" if "plain" in speed else "",
                       ratio_to_ondevice_rounds=f"{paired[m]:.3f}" if m in paired else "")
        if m in counts:
            row.update(aten_ops_per_step=f"{counts[m]['aten_ops_per_step']:.1f}",
                       python_calls_per_step=f"{counts[m]['python_calls_per_step']:.0f}")
            if device.type == "cuda":
                row.update(kernels_per_step=f"{counts[m]['kernels_per_step']:.1f}",
                           launches_per_step=f"{counts[m]['launches_per_step']:.1f}")
        rows.append(row)
    write_results(args.out_dir, device, rows, argv)
    return rows


def upgrade_csv(path: Path, check_only: bool = False) -> None:
    """:func:`iwae_speed.upgrade_csv` under :data:`FIELDS`; older rows get ``isolation`` ``in-process`` (the only
    way before the column existed)."""
    iwae_speed.upgrade_csv(path, FIELDS, {"isolation": "in-process"}, check_only)


def write_results(out_dir: Path, device: torch.device, rows: list[dict[str, Any]], argv: list[str] | None) -> None:
    """Append ``rows`` to the CSV, write this run's markdown table, and print it."""
    path = out_dir / "train_throughput.csv"
    upgrade_csv(path)
    iwae_speed.append_csv(path, FIELDS, [{k: r.get(k, "") for k in FIELDS} for r in rows])
    cols = [("method", "method"), ("samples/s", "samples_per_s"), ("ms/step", "ms_per_step"),
            ("ratio to plain", "ratio_to_plain"), ("samples/s, median run", "samples_per_s_runs"),
            ("samples/s, best run", "samples_per_s_best"),
            ("vs plain-ondevice, median of rounds", "ratio_to_ondevice_rounds"), ("ATen ops/step", "aten_ops_per_step"),
            ("Python calls/step", "python_calls_per_step")]
    if device.type == "cuda":
        cols += [("kernels/step", "kernels_per_step"), ("launches/step", "launches_per_step")]
    cols.append(("note", "note"))
    r0 = rows[0]
    cmd = " ".join(["python benchmarks/train_throughput.py", *(argv if argv is not None else sys.argv[1:])])
    from vaekit.training.step import CPP_WRAPPER_ENV

    if CPP_WRAPPER_ENV in os.environ:  # it changes every compiled method: part of the command
        cmd = f"{CPP_WRAPPER_ENV}={os.environ[CPP_WRAPPER_ENV]} {cmd}"
    head = (f"Training throughput, Cremer et al. MNIST VAE (784-200-200-(50) ELU, Bernoulli, Adam), batch "
            f"{r0['batch_size']}, {r0['n_train']} examples ({r0['data']}).\n\n"
            f"- date {r0['date']}, commit {r0['commit'] or '?'}, `{cmd}`\n"
            f"- device: {r0['device']} ({r0['device_name']}), torch {r0['torch']}, {r0['threads']} threads\n"
            f"- load average (1 min) {r0['load_avg_start']} at the start, {r0['load_avg_end']} at the end\n"
            + (f"- each method: {r0['repeats']} runs (interleaved) of {r0['warmup_steps']} warm-up steps, then "
               f"{r0['steps']} timed steps in blocks of {r0['block']}; samples/s and ms/step from the median block "
               f"time over all runs, ratio = samples/s over plain's; whole-window samples/s of the median and best "
               f"run beside them\n\n" if r0["isolation"] == "in-process" else
               f"- each method in its own process (`--isolation lockstep`): {r0['warmup_steps']} warm-up steps, then "
               f"{r0['rounds']} timed blocks of {r0['block']} steps ({r0['repeats']} x {r0['steps']} steps in whole "
               f"blocks), the methods taking turns "
               f"block by block (a shuffled order in each round, the others waiting idle); samples/s and ms/step "
               f"from the median block, ratio = samples/s over plain's; the whole window and the best block "
               f"beside them; vs plain-ondevice = median over the rounds of the ratio of the round's block "
               f"times\n\n"))
    table = ("| " + " | ".join(h for h, _ in cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n"
             + "".join("| " + " | ".join(str(r[k]) for _, k in cols) + " |\n" for r in rows))
    md = out_dir / (f"train_throughput_{device.type}.md" if device.type == "cuda"
                    else f"train_throughput_{device.type}_{r0['threads']}threads.md")
    md.write_text(
        "# Training throughput\n\n" + head + table
        + "\nMethod and columns: see the docstring of benchmarks/train_throughput.py.\n")
    print("\n" + head + table + f"\nappended to {path}; table in {md}")


if __name__ == "__main__":
    main()
