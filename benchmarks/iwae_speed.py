"""Speed and peak memory of the IWAE log-likelihood estimator (k=5000) on MNIST.

Model: the MLP VAE of Cremer et al. (2018), 784-200-200-(50) ELU with a Bernoulli
likelihood (``vaekit.models.mlp_vae([784])``). Weights are random: the time does not depend
on training. Data: the binarized MNIST test set (``vaekit.data.BinarizedMNIST``), or random
binary images when it is not found (said in the output).

Times ``vaekit.inference.iwae_log_likelihood`` and, for reference, a plain hand-written loop
(``logsumexp(model.log_weights(x_batch, k), 0)`` over batches of the same size, float32,
no chunking). Each is timed ``--repeat`` times, alternating; the best time is reported
(other processes on a shared CPU only ever add time), with the median beside it.
``load_avg`` is the 1-minute load when the script started.

Memory is measured in separate runs over the first few batches (the peak is per batch),
so that measuring does not disturb the timing. On CUDA: ``torch.cuda.max_memory_allocated``
above what was allocated before. On the CPU: the peak of the process's anonymous resident
memory (``RssAnon``, sampled every 0.5 ms by a thread) above its value before, with glibc
told to return every freed block over 64 KiB to the system (``mallopt``), so that the
resident memory follows the live tensors. ``chunk_output_mb`` is the size of one decoder
output (batch x chunk x 784 floats): what one chunk of samples costs.

Appends one row per method to ``benchmarks/results/iwae_speed.csv`` and prints a table
naming the device; ``--md PATH`` also writes that table, with the settings, to a markdown file.

Usage::

    python benchmarks/iwae_speed.py                      # CPU: 1000 images, k=5000
    python benchmarks/iwae_speed.py --device cuda        # 10000 images
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch

from provenance import git_commit  # a sibling module (benchmarks/ is on sys.path when a script in it runs)

from vaekit.inference import iwae_log_likelihood
from vaekit.models import mlp_vae

HERE = Path(__file__).resolve().parent
FIELDS = ["date", "commit", "device", "device_name", "torch", "threads", "load_avg", "data", "method", "n_images",
          "k", "batch_size", "chunk_size", "repeats", "seconds", "seconds_median", "images_per_s",
          "chunk_output_mb", "peak_mem_mb", "mem_measure", "mean_log_px"]


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model name from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_images(root: str | None, n: int, seed: int) -> tuple[torch.Tensor, str]:
    """The first ``n`` binarized-MNIST test images as (n, 784) float32, or random ones."""
    try:
        from vaekit.data import BinarizedMNIST

        data = BinarizedMNIST(root, flatten=True, download=False)
        data.setup()
        x, source = data.test, "binarized_mnist test"
    except Exception as err:  # noqa: BLE001 - any failure to find the data falls back, loudly
        print(f"binarized MNIST not found ({type(err).__name__}: {err}); timing on random binary images")
        g = torch.Generator().manual_seed(seed)
        x, source = torch.bernoulli(torch.full((n, 784), 0.13), generator=g), "random binary"
    if len(x) < n:
        x = x.repeat(math.ceil(n / len(x)), 1)
    return x[:n].contiguous(), source


def plain_loop(model: torch.nn.Module, x: torch.Tensor, k: int, batch_size: int, device: torch.device) -> torch.Tensor:
    """The hand-written baseline: one ``log_weights`` call of all k samples per batch."""
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            lw = model.log_weights(x[i:i + batch_size].to(device, non_blocking=True), k)
            out.append(torch.logsumexp(lw, 0) - math.log(k))
    return torch.cat(out).cpu()


def timed(fn: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """``fn()`` and its wall time in seconds (synchronising CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return result, time.perf_counter() - t0


def _rss_anon_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise OSError("RssAnon not in /proc/self/status")


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> tuple[float, str]:
    """Peak memory (MiB) that ``fn()`` holds above what was held before, and how it was read."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20, "cuda_max_memory_allocated"
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD: big blocks are mmapped and unmapped when freed
        libc.mallopt(-1, 1 << 16)  # M_TRIM_THRESHOLD
        libc.malloc_trim(0)  # give back what earlier runs left in the heap
        base = peak = _rss_anon_mb()
    except OSError:
        return math.nan, "unavailable (needs Linux glibc)"
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not stop.wait(0.0005):
            peak = max(peak, _rss_anon_mb())

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        stop.set()
        thread.join()
    return max(peak, _rss_anon_mb()) - base, "peak RssAnon (sampled)"


def append_csv(path: Path, fields: list[str], rows: list[dict[str, object]]) -> None:
    """Append ``rows`` to the CSV file ``path`` (columns ``fields``), writing the header when it is new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def upgrade_csv(path: Path, fields: list[str], defaults: dict[str, str] | None = None, check_only: bool = False) -> None:
    """Rewrite the CSV ``path`` under the header ``fields`` when it was written with fewer columns, so that rows
    appended under ``fields`` line up with the header: old rows keep their values, a column the file did not
    have gets its value in ``defaults`` (else empty). A file with a column not in ``fields`` is refused (``SystemExit`` naming it);
    ``check_only``: only that check, nothing written. The rewrite is atomic."""
    if not path.is_file():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames == fields:
            return
        old = list(reader)
    extra = [k for k in (reader.fieldnames or []) if k not in fields]
    if extra:
        raise SystemExit(f"{path} has columns {extra} that this script does not write: move it aside "
                         "(or choose another output folder)")
    if check_only:
        return
    defaults = defaults or {}
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        had = set(reader.fieldnames or [])
        writer.writerows({k: (r.get(k) or "") if k in had else defaults.get(k, "") for k in fields} for r in old)
    tmp.replace(path)


def write_markdown(path: Path | None, title: str, rows: list[dict[str, object]], cols: list[tuple[str, str]],
                   notes: list[str], argv: list[str] | None = None) -> None:
    """Write ``rows`` as a markdown table (``cols``: heading, key) under ``title``, with the command
    and the device of ``rows[0]`` and ``notes`` as bullets; nothing when ``path`` is None."""
    if path is None:
        return
    r0 = rows[0]
    cmd = " ".join([f"python benchmarks/{Path(sys.argv[0]).name}", *(argv if argv is not None else sys.argv[1:])])
    lines = [f"# {title}", "",
             f"- date {r0['date']}, commit {r0.get('commit') or '?'}, `{cmd}`",
             f"- device: {r0['device']} ({r0['device_name']}), torch {r0['torch']}, {r0['threads']} threads, "
             f"load average (1 min) {r0['load_avg']}, data: {r0['data']}",
             *(f"- {n}" for n in notes), "",
             "| " + " | ".join(h for h, _ in cols) + " |", "|" + "|".join("---" for _ in cols) + "|",
             *("| " + " | ".join(str(r[k]) for _, k in cols) + " |" for r in rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"table in {path}")


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--n-images", type=int, default=None, help="default 1000 on CPU, 10000 on CUDA")
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--data-root", default=os.environ.get("VAEKIT_DATA") or str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--batch-size", type=int, default=None, help="default: chosen by the estimator")
    parser.add_argument("--chunk-size", type=int, default=None, help="default: chosen by the estimator")
    parser.add_argument("--max-elements", type=int, default=None, help="default: the estimator's budget")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method (best is reported)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain hand-written loop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "iwae_speed.csv")
    parser.add_argument("--md", type=Path, default=None, help="also write this run's table to this markdown file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    n = args.n_images or (10000 if device.type == "cuda" else 1000)
    if n < 1 or args.k < 1 or args.repeat < 1:
        parser.error(f"--n-images, --k and --repeat must be >= 1, got {n}, {args.k} and {args.repeat}")

    load = os.getloadavg()[0]
    torch.manual_seed(args.seed)
    model = mlp_vae([784]).to(device).eval()  # Cremer et al.: 784-200-200-(50) ELU, Bernoulli
    x, source = load_images(args.data_root, n, args.seed)
    name = device_name(device)
    print(f"IWAE k={args.k} over {n} images ({source}) on {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {load:.2f}")

    opts = dict(batch_size=args.batch_size, chunk_size=args.chunk_size, max_elements=args.max_elements, device=device)
    iwae_log_likelihood(model, x[:2], k=args.k, **opts)  # warm-up (allocator, kernels)
    if not args.no_baseline:
        plain_loop(model, x[:2], args.k, 1, device)
    times: dict[str, list[float]] = {}
    for rep in range(args.repeat):
        # the baseline uses the batch size the estimator chose for the same data
        res, sec = timed(lambda: iwae_log_likelihood(model, x, k=args.k, **opts), device)
        times.setdefault("vaekit.iwae_log_likelihood", []).append(sec)
        if not args.no_baseline:
            lp, sec = timed(lambda: plain_loop(model, x, args.k, res.batch_size, device), device)
            times.setdefault("plain loop (float32, no chunks)", []).append(sec)
        print(f"  repeat {rep + 1}/{args.repeat}: " + ", ".join(f"{m} {t[-1]:.2f} s" for m, t in times.items()))

    b, c = res.batch_size, res.chunk_size
    x_mem = x[:3 * b]  # the peak is per batch: three batches show it
    mem = {"vaekit.iwae_log_likelihood":
           peak_memory_mb(lambda: iwae_log_likelihood(model, x_mem, k=args.k, batch_size=b, chunk_size=c), device)}
    plans = {"vaekit.iwae_log_likelihood": (b, c, res.mean)}
    if not args.no_baseline:
        mem["plain loop (float32, no chunks)"] = peak_memory_mb(lambda: plain_loop(model, x_mem, args.k, b, device), device)
        plans["plain loop (float32, no chunks)"] = (b, args.k, float(lp.mean()))

    common = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": git_commit(),
              "device": str(device), "device_name": name, "torch": torch.__version__,
              "threads": torch.get_num_threads(), "load_avg": f"{load:.2f}", "data": source,
              "n_images": n, "k": args.k, "repeats": args.repeat}
    rows = []
    for m, (mb, mc, mean) in plans.items():
        best = min(times[m])
        rows.append({**common, "method": m, "batch_size": mb, "chunk_size": mc, "seconds": f"{best:.3f}",
                     "seconds_median": f"{statistics.median(times[m]):.3f}", "images_per_s": f"{n / best:.1f}",
                     "chunk_output_mb": f"{mb * mc * 784 * x.element_size() / 2**20:.1f}",
                     "peak_mem_mb": f"{mem[m][0]:.1f}", "mem_measure": mem[m][1], "mean_log_px": f"{mean:.4f}"})
    append_csv(args.out, FIELDS, rows)

    cols = [("method", "method", 33), ("batch", "batch_size", 6), ("chunk", "chunk_size", 6), ("best s", "seconds", 9),
            ("median s", "seconds_median", 9), ("images/s", "images_per_s", 9), ("chunk MiB", "chunk_output_mb", 10),
            ("peak MiB", "peak_mem_mb", 9), ("mean log p(x)", "mean_log_px", 14)]
    print("\n" + "".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, _, w) in enumerate(cols)))
    for r in rows:
        print("".join(f"{r[key]:<{w}}" if i == 0 else f"{r[key]:>{w}}" for i, (_, key, w) in enumerate(cols)))
    print(f"device: {device} ({name}); peak memory: {rows[0]['mem_measure']}; appended to {args.out}")
    write_markdown(args.md, f"IWAE log-likelihood, k={args.k}, {n} images", rows, [(h, key) for h, key, _ in cols],
                   [f"{args.repeat} timed runs per method, alternating (best and median); peak memory: "
                    f"{rows[0]['mem_measure']}"], argv)
    return rows

if __name__ == "__main__":
    main()
