"""MNIST to 2-D: vaekit's VAEEmbedder beside UMAP, openTSNE, PCA and CompressionVAE.

Every method is fitted on the 60,000 MNIST training images only (pixels scaled to [0, 1],
flattened to 784 features), so that the 10,000 test images are new points for ``transform``.
``vaekit`` is ``VAEEmbedder`` with its defaults (plus ``--vaekit-args``); ``vaekit_plain`` the
same without the neighbour term (``neighbor_weight=0``: the plain VAE with its IAF posterior
and mixture prior). Measured per method, in one process, one method after the other:

- ``fit_s``: wall time of ``fit`` on the training images (for UMAP and openTSNE this also
  gives the training embedding). ``umap`` is UMAP's first call in the process with an empty
  numba cache (``NUMBA_CACHE_DIR`` is a fresh temporary folder unless set), so its times
  include numba's JIT compilation, as on a fresh install; ``umap_warm`` is a later call, after
  an untimed UMAP run on a small subset compiled everything (numba caches compiled code on
  disk, so users meet this from their second session on).
- ``embed_train_s``: the extra time to embed the training images after ``fit`` (0 for UMAP
  and openTSNE, whose ``fit`` returns it).
- ``transform_s``: wall time of ``transform`` on the 10,000 test images.
- ``knn_acc``: accuracy of a 10-nearest-neighbour classifier trained on the training
  embedding and its labels, tested on the test embedding.
- ``trust``: ``sklearn.manifold.trustworthiness`` (``n_neighbors=10``) of the embedding of a
  random 5,000-point subsample of the training images; ``trust_new`` the same on 5,000 of
  the test images (the embedding of new points).

CompressionVAE (``cvae`` on PyPI) is run when ``from cvae import cvae`` works in this
interpreter; otherwise its row says why it could not run.

The results go to ``benchmarks/results/embedding_cpu.{md,json}`` (``embedding_cpu_quick``
with ``--quick``), naming the CPU, the thread count, the 1-minute load average before and
after, and the library versions. Other processes on a shared machine make every time
longer than on an idle one; the load averages say how busy it was.

Usage::

    python benchmarks/embedding.py                       # all methods, full size (tens of minutes on 2 cores)
    python benchmarks/embedding.py --quick               # 10,000 training / 2,000 test images
    python benchmarks/embedding.py --methods vaekit pca --vaekit-args '{"max_epochs": 20}'
    python benchmarks/embedding.py --methods vaekit --plot docs/images/embedding_mnist.png --name embedding_cpu_vaekit
    python benchmarks/embedding.py --suite [SUITE ARGS]  # the many-dataset suite: benchmarks/embedding_suite.py
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from provenance import git_commit  # a sibling module (benchmarks/ is on sys.path when a script in it runs)

HERE = Path(__file__).resolve().parent
METHODS = ("vaekit", "vaekit_plain", "umap", "umap_warm", "opentsne", "pca", "cvae")

# What the issue quotes for UMAP and PCA, measured on a 2-core machine of this kind (umap-learn 0.5.12).
REFERENCE = {"umap": {"fit_s": 87.0, "transform_s": 91.0, "knn_acc": 0.957, "trust": 0.954},
             "pca": {"knn_acc": 0.443, "trust": 0.744}}


@dataclass
class Row:
    method: str
    fit_s: float | None = None
    embed_train_s: float | None = None
    transform_s: float | None = None
    knn_acc: float | None = None
    trust: float | None = None
    trust_new: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# --------------------------------------------------------------------------------------------- data
def load_mnist(root: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(x_train (60000, 784) float32 in [0, 1], y_train, x_test (10000, 784), y_test, path)."""
    candidates = [root] if root else [os.environ.get("VAEKIT_DATA"), str(HERE.parent.parent / "shared" / "data"),
                                      "/work/shared/data"]
    for folder in filter(None, candidates):
        path = Path(folder) / "mnist" / "mnist.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as f:
                xtr, ytr, xte, yte = (f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
            scale = np.float32(1.0 / 255.0)
            return (xtr.reshape(len(xtr), -1).astype(np.float32) * scale, ytr.astype(np.int64),
                    xte.reshape(len(xte), -1).astype(np.float32) * scale, yte.astype(np.int64), str(path))
    raise SystemExit(f"mnist/mnist.npz not found in {[c for c in candidates if c]}; pass --data-root DIR")


# ------------------------------------------------------------------------------------------ methods
# Each runner: (x_train, x_test, args) -> (fit_s, embed_train_s, transform_s, Z_train, Z_test, settings)
Result = tuple[float, float, float, np.ndarray, np.ndarray, dict[str, Any]]


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_vaekit(xtr: np.ndarray, xte: np.ndarray, args: argparse.Namespace, **overrides: Any) -> Result:
    import torch

    from vaekit.embedding import VAEEmbedder

    kwargs: dict[str, Any] = {"random_state": args.seed, "verbose": args.verbose, **json.loads(args.vaekit_args),
                              **overrides}
    est = VAEEmbedder(**kwargs)
    _, fit_s = _timed(lambda: est.fit(xtr))
    ztr, embed_s = _timed(lambda: np.asarray(est.transform(xtr)))
    zte, transform_s = _timed(lambda: np.asarray(est.transform(xte)))
    if args.save_model and not overrides:  # the default estimator's model and picture, not vaekit_plain's
        est.save(args.save_model)
    if args.plot and not overrides:
        figure(est, zte, args.labels_test, args.plot)
    params = est.get_params()
    settings = {"params": {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool, list, type(None)))},
                "n_iter_": getattr(est, "n_iter_", None), "torch_threads": torch.get_num_threads()}
    return fit_s, embed_s, transform_s, ztr, zte, settings


def run_umap(xtr: np.ndarray, xte: np.ndarray, args: argparse.Namespace, warm: bool = False) -> Result:
    import umap

    if warm:  # compile every numba function in this process first (untimed), on a small subset
        umap.UMAP(n_components=2).fit(xtr[:2000]).transform(xte[:500])
    # random_state would force a single thread; the default (parallel, unseeded) is what users run
    est = umap.UMAP(n_components=2)
    ztr, fit_s = _timed(lambda: est.fit_transform(xtr))
    zte, transform_s = _timed(lambda: est.transform(xte))
    return fit_s, 0.0, transform_s, ztr, zte, {"n_neighbors": est.n_neighbors, "min_dist": est.min_dist,
                                               "n_jobs": est.n_jobs}


def run_opentsne(xtr: np.ndarray, xte: np.ndarray, args: argparse.Namespace) -> Result:
    from openTSNE import TSNE

    est = TSNE(n_components=2, n_jobs=args.threads, random_state=args.seed, verbose=bool(args.verbose))
    emb, fit_s = _timed(lambda: est.fit(xtr))
    zte, transform_s = _timed(lambda: emb.transform(xte))
    return fit_s, 0.0, transform_s, np.asarray(emb), np.asarray(zte), {
        "perplexity": est.perplexity, "n_jobs": args.threads, "transform": "openTSNE defaults (optimises new points)"}


def run_pca(xtr: np.ndarray, xte: np.ndarray, args: argparse.Namespace) -> Result:
    from sklearn.decomposition import PCA

    est = PCA(n_components=2, random_state=args.seed)
    _, fit_s = _timed(lambda: est.fit(xtr))
    ztr, embed_s = _timed(lambda: est.transform(xtr))
    zte, transform_s = _timed(lambda: est.transform(xte))
    return fit_s, embed_s, transform_s, ztr, zte, {"svd_solver": est.svd_solver}


def run_cvae(xtr: np.ndarray, xte: np.ndarray, args: argparse.Namespace) -> Result:
    """CompressionVAE with its defaults (2-D, IAF posterior, its own 90/10 split and stopping rule)."""
    try:
        from cvae import cvae
    except Exception as err:  # noqa: BLE001 - any import failure means "not available here"
        raise RuntimeError(
            f"cvae not importable ({type(err).__name__}: {err}). cvae 0.2.0 pins tensorflow-macos==2.8.0 and "
            "tensorflow-metal (macOS-only wheels) and numpy<1.23 (no Python 3.11 wheels), so it cannot be "
            "installed with its dependencies on this Linux machine") from None
    import tempfile

    with tempfile.TemporaryDirectory() as logdir:
        est = cvae.CompressionVAE(xtr, logdir=logdir)
        _, fit_s = _timed(est.train)
        ztr, embed_s = _timed(lambda: est.embed(xtr))
        zte, transform_s = _timed(lambda: est.embed(xte))
    return fit_s, embed_s, transform_s, np.asarray(ztr), np.asarray(zte), {}


RUNNERS: dict[str, Callable[[np.ndarray, np.ndarray, argparse.Namespace], Result]] = {
    "vaekit": run_vaekit, "vaekit_plain": lambda xtr, xte, args: run_vaekit(xtr, xte, args, neighbor_weight=0.0),
    "umap": run_umap, "umap_warm": lambda xtr, xte, args: run_umap(xtr, xte, args, warm=True), "opentsne": run_opentsne, "pca": run_pca, "cvae": run_cvae}


def figure(est: Any, zte: np.ndarray, yte: np.ndarray, path: str) -> None:
    """The picture of docs/embedding.md: the embedded test images and the decoded latent grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vaekit import plot

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6), layout="constrained")
    plot.embedding(zte, yte, ax=left, title=f"{len(zte):,} new MNIST test images, embedded")
    low, high = np.percentile(zte, [1, 99], axis=0)
    left.set(xlim=(low[0], high[0]), ylim=(low[1], high[1]))  # the central 98% (the grid's window)
    plot.latent_grid(est, xy_range=((low[0], high[0]), (low[1], high[1])), grid_size=20, ax=right)
    right.set_title("decoded latent grid (inverse_transform)")
    fig.savefig(path, dpi=70)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ metrics
def knn_accuracy(ztr: np.ndarray, ytr: np.ndarray, zte: np.ndarray, yte: np.ndarray, k: int) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    return float(KNeighborsClassifier(n_neighbors=k).fit(ztr, ytr).score(zte, yte))


def trust(x: np.ndarray, z: np.ndarray, idx: np.ndarray, k: int) -> float:
    from sklearn.manifold import trustworthiness

    return float(trustworthiness(x[idx], z[idx], n_neighbors=k))


# ------------------------------------------------------------------------------------------ machine
def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "vaekit", "numpy", "scikit-learn", "umap-learn", "openTSNE", "numba", "cvae"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


# ------------------------------------------------------------------------------------------- report
def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def table(rows: list[Row], umap_row: Row | None, n_test: int) -> str:
    """Markdown table; transform speed-ups are against ``umap_row`` (warm UMAP when it ran)."""
    versus = umap_row.method if umap_row else "UMAP"
    lines = [f"| method | fit (s) | embed train (s) | transform {n_test:,} new (s) | vs {versus} transform | 10-NN acc "
             "| trust. (train) | trust. (new) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.error:
            lines.append(f"| {r.method} | not run: {r.error} |  |  |  |  |  |  |")
            continue
        speedup = "—"
        if umap_row and r.transform_s and not r.method.startswith("umap"):
            ratio = umap_row.transform_s / r.transform_s
            speedup = f"{ratio:.0f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"
        lines.append(f"| {r.method} | {_fmt(r.fit_s, '.1f')} | {_fmt(r.embed_train_s, '.2f')} | "
                     f"{_fmt(r.transform_s, '.3f')} | {speedup} | {_fmt(r.knn_acc, '.3f')} | {_fmt(r.trust, '.3f')} | "
                     f"{_fmt(r.trust_new, '.3f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    given = list(sys.argv[1:] if argv is None else argv)
    if "--suite" in given:  # the suite of datasets (issue 16) has its own script and flags
        from embedding_suite import main as suite_main

        given.remove("--suite")
        suite_main(given)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--n-train", type=int, default=None, help="training images (default 60000; 10000 with --quick)")
    p.add_argument("--n-test", type=int, default=None, help="test images (default 10000; 2000 with --quick)")
    p.add_argument("--quick", action="store_true", help="a 10,000-image training subset for a fast check")
    p.add_argument("--trust-n", type=int, default=5000, help="subsample size for trustworthiness")
    p.add_argument("--neighbors", type=int, default=10, help="k of the k-NN classifier and of trustworthiness")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="numba (UMAP) and openTSNE threads")
    p.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1,
                   help="torch threads for vaekit (default: all cores, as for UMAP and openTSNE; on a machine shared\n"
                        "with other jobs pass 1, since oversubscribed threads made its small matrix products 10-40x slower)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vaekit-args", default="{}", help="JSON of extra VAEEmbedder arguments")
    p.add_argument("--save-model", default=None, help="save the fitted default VAEEmbedder (method vaekit) here")
    p.add_argument("--plot", default=None, help="PNG of the default VAEEmbedder's test embedding and latent grid")
    p.add_argument("--data-root", default=None, help="folder holding mnist/mnist.npz (else $VAEKIT_DATA)")
    p.add_argument("--out-dir", default=str(HERE / "results"))
    p.add_argument("--name", default=None, help="results file stem (default embedding_cpu[_quick])")
    p.add_argument("--verbose", type=int, default=0)
    args = p.parse_args(argv)
    json.loads(args.vaekit_args)  # fail now, not after the other methods ran

    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    # a fresh numba cache, so that the first UMAP call pays numba's compilation as on a fresh install
    os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="vaekit-bench-numba-"))
    import torch

    torch.set_num_threads(args.torch_threads)
    n_train = args.n_train or (10000 if args.quick else 60000)
    n_test = args.n_test or (2000 if args.quick else 10000)
    xtr, ytr, xte, yte, data_path = load_mnist(args.data_root)
    xtr, ytr, xte, yte = xtr[:n_train], ytr[:n_train], xte[:n_test], yte[:n_test]
    args.labels_test = yte
    rng = np.random.default_rng(args.seed)
    idx_tr = np.sort(rng.choice(len(xtr), min(args.trust_n, len(xtr)), replace=False))
    idx_te = np.sort(rng.choice(len(xte), min(args.trust_n, len(xte)), replace=False))
    load_before = os.getloadavg()[0]
    print(f"MNIST {xtr.shape} train, {xte.shape} test from {data_path}; {cpu_name()}, {args.threads} threads, "
          f"load {load_before:.2f}", flush=True)

    rows = []
    for method in args.methods:
        print(f"-- {method}", flush=True)
        try:
            fit_s, embed_s, transform_s, ztr, zte, settings = RUNNERS[method](xtr, xte, args)
        except Exception as err:  # noqa: BLE001 - one failing method must not lose the others' numbers
            if method != "cvae":
                traceback.print_exc()
            rows.append(Row(method, error=str(err).splitlines()[0] if str(err) else type(err).__name__))
            print(f"   not run: {rows[-1].error}", flush=True)
            continue
        row = Row(method, fit_s, embed_s, transform_s, knn_accuracy(ztr, ytr, zte, yte, args.neighbors),
                  trust(xtr, ztr, idx_tr, args.neighbors), trust(xte, zte, idx_te, args.neighbors), settings)
        rows.append(row)
        print(f"   fit {fit_s:.1f} s, transform {transform_s:.3f} s, 10-NN {row.knn_acc:.3f}, "
              f"trust {row.trust:.3f} / new {row.trust_new:.3f}", flush=True)

    umap_row = next((r for r in rows if r.method == "umap_warm" and not r.error), None) or next(
        (r for r in rows if r.method == "umap" and not r.error), None)
    md = table(rows, umap_row, len(xte))
    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(missing="unknown"),
            "cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads, "torch_threads": args.torch_threads,
            "load_avg_1min_before": load_before, "load_avg_1min_after": os.getloadavg()[0],
            "versions": versions(), "data": data_path, "n_train": len(xtr), "n_test": len(xte),
            "trust_n": len(idx_tr), "neighbors": args.neighbors, "seed": args.seed,
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}
    print("\n" + md)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.name or ("embedding_cpu_quick" if args.quick else "embedding_cpu")
    (out / f"{stem}.json").write_text(json.dumps({**info, "reference": REFERENCE,
                                                  "results": [asdict(r) for r in rows]}, indent=2) + "\n")
    v = info["versions"]
    header = (f"# MNIST to 2-D: {len(xtr)} training images (fit), {len(xte)} new test images (transform)\n\n"
              f"Machine: {info['cpu']}, {info['cores']} cores; {args.threads} threads for UMAP (numba) and openTSNE, "
              f"{args.torch_threads} torch thread(s) for vaekit; 1-minute load average "
              f"{load_before:.2f} before, {info['load_avg_1min_after']:.2f} after"
              + (": above 0.7, so other jobs (or the tail of an earlier one) may have shared the machine and the times "
                 "may be longer than on an idle one.\n" if load_before > 0.7 else " (an idle machine).\n") +
              f"Versions: torch {v['torch']}, umap-learn {v['umap-learn']}, openTSNE {v['openTSNE']}, "
              f"scikit-learn {v['scikit-learn']}, numba {v['numba']}, numpy {v['numpy']}, Python {v['python']}. "
              f"vaekit commit {info['commit']}; {info['date']}.\n"
              f"Command: `python benchmarks/{info['command']}`\n\n"
              f"10-NN acc: a {args.neighbors}-nearest-neighbour classifier on the training embedding, scored on the "
              f"test embedding. trust.: sklearn trustworthiness (n_neighbors={args.neighbors}) on {len(idx_tr)} "
              f"random training points (train) and {len(idx_te)} test points (new).\n\n")
    (out / f"{stem}.md").write_text(header + md + "\n")
    print(f"\nwrote {out / stem}.md and .json")


if __name__ == "__main__":
    main()
