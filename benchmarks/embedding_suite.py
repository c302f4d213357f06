"""The embedding suite of issue 16: VAEEmbedder's defaults beside UMAP, openTSNE and PCA on data of many kinds.

Every method is fitted on a dataset's training rows and judged on its held-out (new) rows,
which it embeds with ``transform``. Datasets (:data:`DATASETS`):

- ``mnist5k``, ``mnist10k``, ``mnist20k``, ``mnist60k``: the first 5,000 / 10,000 / 20,000 /
  60,000 MNIST training images (pixels in [0, 1], 784 features); new points: the first 2,000
  test images (10,000 for ``mnist60k``).
- ``olivetti``: 400 faces of 40 people (2,679 pixels in [0, 1]); 2 images per person held out.
- ``digits``: scikit-learn's 1,797 8x8 digits (64 features); 20% held out, stratified.
- ``breast_cancer``: scikit-learn's Wisconsin breast-cancer table (569 rows, 30 numeric
  columns of very different units, two classes); 20% held out, stratified; every column
  standardised with the mean and sd of the training rows, for every method and the metrics.
- ``clusters``: ten Gaussian clusters of very different sizes (2,000 down to 20 points) and
  spreads in 30 dimensions (``make_blobs``, seed 0); 25% held out, stratified.
- ``swiss_roll``: 4,000 points of ``make_swiss_roll`` (noise 0.05, seed 0), a 2-D sheet
  rolled up in 3-D; labels are six bins of the position along the roll; 25% held out. A flat
  projection of the roll keeps these bins apart too (PCA scores high), so 10-NN accuracy here
  does not show whether a map unrolls the sheet.

Methods: ``vaekit`` (``VAEEmbedder()`` defaults, plus ``--vaekit-args``; seeds 0..``--seeds``-1),
``umap`` (``umap.UMAP(n_components=2, random_state=seed)``, its defaults otherwise; same seeds),
``opentsne`` (``openTSNE.TSNE`` defaults, seed 0; its ``transform`` optimises the new points),
``pca`` (deterministic). UMAP and openTSNE are skipped with a note when not importable.

Metrics, all on the new points unless named otherwise:

- ``knn_acc``: accuracy of a 10-nearest-neighbour classifier fitted on the training
  embedding and its labels, scored on the new points' embedding.
- ``trust`` / ``cont``: scikit-learn's ``trustworthiness(X, Z, n_neighbors=10)`` and the
  continuity, ``trustworthiness(Z, X, n_neighbors=10)`` (the same measure with the roles of the
  data and the map swapped: are the data's neighbours kept together), on at most
  ``--eval-n`` new points (a seeded subsample).
- ``recon_mse``: mean squared error per feature of ``inverse_transform(transform(X_new))``
  against ``X_new`` in the data's units (vaekit and PCA).
- ``elbo``: vaekit's ``score(X_new)``, the held-out ELBO in nats per example (in the data's units).
- ``fit_s``, ``transform_s``: wall times. UMAP's are taken after untimed warm-up calls (fit and
  transform) on 300 points and on 5,000 points: the second compiles the nearest-neighbour descent
  that UMAP uses from 4,096 rows on, so no timed call compiles. ``umap_compile_s`` is what the
  compilation cost that a cold fit on data of this size would pay (the small warm-up's first
  call over a compiled one, plus the large one's for data of 4,096 rows or more), so UMAP's cold
  fit is about ``fit_s + umap_compile_s``. The times of methods run in different processes or
  under different load are not comparable; each run records its load.

Each (dataset, method, seed) is one row of ``<name>.json``; ``<name>.md`` has one table per
dataset with the mean ± sd over seeds and a line saying whether vaekit meets the issue's
criterion there. Rows are written after every run, and a rerun with the same ``--name``
keeps the rows of the (dataset, method) pairs it does not run (each row names the run that made it:
``run`` indexes the JSON's ``runs``, which describe the machine, load and command of each).

Usage::

    python benchmarks/embedding_suite.py                          # everything (about an hour on 2 busy cores)
    python benchmarks/embedding_suite.py --datasets digits olivetti --methods vaekit umap --seeds 1
    python benchmarks/embedding.py --suite --datasets swiss_roll    # the same, through embedding.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from provenance import git_commit  # a sibling module (benchmarks/ is on sys.path when a script in it runs)

HERE = Path(__file__).resolve().parent
METHODS = ("vaekit", "umap", "opentsne", "pca")
#: The tables' rows: "vaekit-encoder" is vaekit's fit of the same seed with transform_steps=0 (the encoder's
#: embedding alone, without transform's local optimisation), scored from the same fit, not fitted again.
TABLE_METHODS = ("vaekit", "vaekit-encoder", "umap", "opentsne", "pca")
SEEDED = ("vaekit", "umap")  # methods run with every seed; the others once


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    about: str


# --------------------------------------------------------------------------------------------- data
def _data_root(root: str | None) -> Path:
    for folder in filter(None, [root, os.environ.get("VAEKIT_DATA"), "/work/shared/data"]):
        if Path(folder).is_dir():
            return Path(folder)
    raise SystemExit("no data folder: pass --data-root DIR or set VAEKIT_DATA")


def _mnist(root: Path, n_train: int, n_test: int) -> Dataset:
    with np.load(root / "mnist" / "mnist.npz", allow_pickle=False) as f:
        xtr, ytr, xte, yte = (f[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    scale = np.float32(1.0 / 255.0)
    return Dataset(f"mnist{n_train // 1000}k", xtr[:n_train].reshape(n_train, -1).astype(np.float32) * scale,
                   ytr[:n_train].astype(np.int64), xte[:n_test].reshape(n_test, -1).astype(np.float32) * scale,
                   yte[:n_test].astype(np.int64), f"MNIST, first {n_train:,} training / {n_test:,} test images")


def _split(name: str, x: np.ndarray, y: np.ndarray, test_size: float, about: str) -> Dataset:
    from sklearn.model_selection import train_test_split

    xtr, xte, ytr, yte = train_test_split(x.astype(np.float32), y.astype(np.int64), test_size=test_size,
                                          stratify=y, random_state=0)
    return Dataset(name, xtr, ytr, xte, yte, about)


def _olivetti(root: Path) -> Dataset:
    with np.load(root / "olivetti_faces" / "olivetti_faces.npz", allow_pickle=False) as f:
        x, y = f["x"].reshape(len(f["x"]), -1).astype(np.float32) / 255.0, f["group"]
    return _split("olivetti", x, y, 0.2, "Olivetti faces, 40 people, 8 training / 2 new images each")


def _digits(_: Path) -> Dataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return _split("digits", x, y, 0.2, "scikit-learn's 8x8 digits, 20% new")


def _breast_cancer(_: Path) -> Dataset:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    d = _split("breast_cancer", x, y, 0.2, "Wisconsin breast cancer, 30 numeric columns standardised on the training "
               "rows, 2 classes, 20% new")
    mean, sd = d.x_train.mean(axis=0), d.x_train.std(axis=0)  # the columns' units differ by up to 10^4
    d.x_train, d.x_test = (d.x_train - mean) / sd, (d.x_test - mean) / sd
    return d


CLUSTER_SIZES = (2000, 1000, 600, 300, 150, 80, 50, 40, 30, 20)


def _clusters(_: Path) -> Dataset:
    from sklearn.datasets import make_blobs

    stds = np.linspace(0.5, 2.5, len(CLUSTER_SIZES))
    x, y = make_blobs(n_samples=list(CLUSTER_SIZES), n_features=30, cluster_std=stds, center_box=(-8, 8),
                      random_state=0)
    return _split("clusters", x, y, 0.25, f"10 Gaussian clusters of {max(CLUSTER_SIZES)} down to "
                  f"{min(CLUSTER_SIZES)} points in 30-D, spreads 0.5-2.5, 25% new")


def _swiss_roll(_: Path) -> Dataset:
    from sklearn.datasets import make_swiss_roll

    x, t = make_swiss_roll(4000, noise=0.05, random_state=0)
    y = np.digitize(t, np.quantile(t, [1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6]))
    return _split("swiss_roll", x, y, 0.25, "swiss roll, 4,000 points in 3-D (labels: 6 bins along the roll), 25% new")


DATASETS: dict[str, Callable[[Path], Dataset]] = {
    "mnist5k": lambda r: _mnist(r, 5000, 2000), "mnist10k": lambda r: _mnist(r, 10000, 2000),
    "mnist20k": lambda r: _mnist(r, 20000, 2000), "mnist60k": lambda r: _mnist(r, 60000, 10000),
    "olivetti": _olivetti, "digits": _digits, "breast_cancer": _breast_cancer, "clusters": _clusters,
    "swiss_roll": _swiss_roll}
#: Small and quick datasets first, full MNIST last.
ORDER = ("digits", "olivetti", "breast_cancer", "clusters", "swiss_roll", "mnist5k", "mnist10k", "mnist20k", "mnist60k")


# ------------------------------------------------------------------------------------------ methods
def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run_vaekit(d: Dataset, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from vaekit.embedding import VAEEmbedder

    est = VAEEmbedder(random_state=seed, **json.loads(args.vaekit_args))
    _, fit_s = _timed(lambda: est.fit(d.x_train))
    ztr = est.transform(d.x_train)
    zte, transform_s = _timed(lambda: est.transform(d.x_test))
    recon = est.inverse_transform(zte)
    out = {"fit_s": fit_s, "transform_s": transform_s, "z_train": ztr, "z_test": zte,
           "recon_mse": float(np.mean((recon - d.x_test) ** 2)), "elbo": est.score(d.x_test),
           "settings": {"n_iter_": est.n_iter_, "vaekit_args": json.loads(args.vaekit_args)}}
    if est.transform_steps > 0 and hasattr(est, "embedding_"):  # the same fit, the encoder's embedding alone
        est.set_params(transform_steps=0)
        enc_test, enc_s = _timed(lambda: est.transform(d.x_test))
        out["encoder"] = {"transform_s": enc_s, "z_train": est.transform(d.x_train), "z_test": enc_test,
                          "recon_mse": float(np.mean((est.inverse_transform(enc_test) - d.x_test) ** 2))}
    return out


_UMAP_COMPILE: dict[str, float] = {}
#: UMAP finds neighbours exactly below this many rows and by nearest-neighbour descent (other numba code) from it on.
UMAP_DESCENT_ROWS = 4096
#: Rows of the warm-up calls: a small set, then one large enough for the nearest-neighbour descent.
UMAP_WARMUP_ROWS = (300, 5000)


def umap_compile_s(n_rows: int) -> float:
    """UMAP's numba compilation that a cold fit on ``n_rows`` rows pays; compiles all of it on the first call.

    The first call warms UMAP up on random data of :data:`UMAP_WARMUP_ROWS` rows, fit and transform
    twice each (the first call compiles, the second is compiled), so that no timed call compiles.
    """
    if not _UMAP_COMPILE:
        import umap

        for n in UMAP_WARMUP_ROWS:
            x = np.random.default_rng(0).normal(size=(n, 10)).astype(np.float32)
            _, first = _timed(lambda x=x: umap.UMAP(random_state=0).fit(x).transform(x[:500]))
            _, again = _timed(lambda x=x: umap.UMAP(random_state=0).fit(x).transform(x[:500]))
            _UMAP_COMPILE[n] = max(first - again, 0.0)
    small, large = UMAP_WARMUP_ROWS
    return _UMAP_COMPILE[small] + (_UMAP_COMPILE[large] if n_rows >= UMAP_DESCENT_ROWS else 0.0)


def run_umap(d: Dataset, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import warnings

    import umap

    warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)  # random_state: one thread
    compile_s = umap_compile_s(len(d.x_train))
    est = umap.UMAP(n_components=2, random_state=seed)
    ztr, fit_s = _timed(lambda: est.fit_transform(d.x_train))
    zte, transform_s = _timed(lambda: est.transform(d.x_test))
    return {"fit_s": fit_s, "transform_s": transform_s, "z_train": ztr, "z_test": zte,
            "settings": {"n_neighbors": est.n_neighbors, "min_dist": est.min_dist, "umap_compile_s": compile_s}}


def run_opentsne(d: Dataset, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from openTSNE import TSNE

    est = TSNE(n_components=2, n_jobs=args.threads, random_state=seed, perplexity=min(30.0, (len(d.x_train) - 1) / 3))
    emb, fit_s = _timed(lambda: est.fit(d.x_train))
    zte, transform_s = _timed(lambda: emb.transform(d.x_test))
    return {"fit_s": fit_s, "transform_s": transform_s, "z_train": np.asarray(emb), "z_test": np.asarray(zte),
            "settings": {"perplexity": est.perplexity}}


def run_pca(d: Dataset, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.decomposition import PCA

    est = PCA(n_components=2, random_state=seed)
    _, fit_s = _timed(lambda: est.fit(d.x_train))
    zte, transform_s = _timed(lambda: est.transform(d.x_test))
    recon = est.inverse_transform(zte)
    return {"fit_s": fit_s, "transform_s": transform_s, "z_train": est.transform(d.x_train), "z_test": zte,
            "recon_mse": float(np.mean((recon - d.x_test) ** 2)), "settings": {}}


RUNNERS: dict[str, Callable[[Dataset, int, argparse.Namespace], dict[str, Any]]] = {
    "vaekit": run_vaekit, "umap": run_umap, "opentsne": run_opentsne, "pca": run_pca}
IMPORTS = {"umap": "umap", "opentsne": "openTSNE"}


# ------------------------------------------------------------------------------------------ metrics
def metrics(d: Dataset, ztr: np.ndarray, zte: np.ndarray, k: int, eval_n: int) -> dict[str, float]:
    """10-NN accuracy (train -> new), trustworthiness and continuity of the new points' embedding."""
    from sklearn.manifold import trustworthiness
    from sklearn.neighbors import KNeighborsClassifier

    idx = np.arange(len(d.x_test))
    if len(idx) > eval_n:
        idx = np.sort(np.random.default_rng(0).choice(len(idx), eval_n, replace=False))
    x, z = d.x_test[idx].astype(np.float64), np.asarray(zte, dtype=np.float64)[idx]
    kk = min(k, (len(idx) - 1) // 2)  # sklearn needs n_neighbors < n_samples / 2
    return {"knn_acc": float(KNeighborsClassifier(n_neighbors=k).fit(ztr, d.y_train).score(zte, d.y_test)),
            "trust": float(trustworthiness(x, z, n_neighbors=kk)), "cont": float(trustworthiness(z, x, n_neighbors=kk))}


# ------------------------------------------------------------------------------------------- report
COLUMNS = (("knn_acc", "10-NN acc", ".3f"), ("trust", "trust.", ".3f"), ("cont", "cont.", ".3f"),
           ("recon_mse", "recon. MSE", ".4g"), ("elbo", "held-out ELBO (nats)", ".1f"), ("fit_s", "fit (s)", ".1f"),
           ("transform_s", "transform (s)", ".3f"))


def summary(rows: list[dict[str, Any]], dataset: str, method: str) -> dict[str, tuple[float, float, int]]:
    """Per metric: (mean, sd over seeds (ddof=1; 0 for one seed), seeds) of the rows of (dataset, method)."""
    mine = [r for r in rows if r["dataset"] == dataset and r["method"] == method and not r.get("error")]
    out = {}
    for key, _, _ in COLUMNS:
        values = [r[key] for r in mine if r.get(key) is not None]
        if values:
            out[key] = (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values))
    return out


def ran(rows: list[dict[str, Any]], runs: list[dict[str, Any]] | None, dataset: str, method: str) -> dict[str, Any]:
    """What ran for (dataset, method): its seeds, and from the runs that made its rows their threads and requested seeds."""
    mine = [r for r in rows if r["dataset"] == dataset and r["method"] == method and not r.get("error")]
    made_by = [runs[r["run"]] for r in mine if runs and isinstance(r.get("run"), int) and r["run"] < len(runs)]
    return {"seeds": sorted({r["seed"] for r in mine if "seed" in r}), "runs": sorted({r["run"] for r in mine if "run" in r}),
            "threads": sorted({run["threads"] for run in made_by if "threads" in run}),
            "requested": max((len(run["seeds"]) for run in made_by if "seeds" in run), default=None)}


def _ran_text(r: dict[str, Any]) -> str:
    seeds = ", ".join(map(str, r["seeds"])) or "—"
    threads = "/".join(map(str, r["threads"]))
    return seeds + (f" ({threads} thread{'' if r['threads'] == [1] else 's'})" if threads else "")


def verdict(rows: list[dict[str, Any]], dataset: str, runs: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The issue's test on one dataset: vaekit's mean >= UMAP's mean - UMAP's sd, and >= UMAP's mean (10-NN and trust.).

    ``enough_seeds`` is False (the verdict then reads "insufficient seeds") when UMAP has fewer than two seeds
    (no sd) or vaekit fewer than its run asked for (``runs``: the JSON's runs, which the rows index).
    """
    v, u = summary(rows, dataset, "vaekit"), summary(rows, dataset, "umap")
    if not all(k in v and k in u for k in ("knn_acc", "trust")):
        return None
    within = all(v[k][0] >= u[k][0] - u[k][1] for k in ("knn_acc", "trust"))
    at_least = all(v[k][0] >= u[k][0] for k in ("knn_acc", "trust"))
    n_umap, n_vaekit = u["knn_acc"][2], v["knn_acc"][2]
    requested = ran(rows, runs, dataset, "vaekit")["requested"]
    short = [f"UMAP {n_umap} seed{'s' * (n_umap != 1)}, needs 2"] if n_umap < 2 else []
    if requested is not None and n_vaekit < requested:
        short.append(f"vaekit {n_vaekit} of {requested} seeds asked for")
    return {"within_one_sd": within, "at_least_umap": at_least, "enough_seeds": not short, "seeds_note": "; ".join(short)}


def _vaekit_setting(rows: list[dict[str, Any]]) -> str:
    """Who the overall verdict is about: "vaekit's defaults", or vaekit with the ``--vaekit-args`` its rows ran with.

    >>> _vaekit_setting([{"method": "vaekit", "settings": {"vaekit_args": {}}}, {"method": "umap", "settings": {}}])
    "vaekit's defaults"
    >>> _vaekit_setting([{"method": "vaekit", "settings": {"vaekit_args": {"neighbor_graph": "fuzzy"}}}])
    'vaekit with {"neighbor_graph": "fuzzy"} (not its defaults)'
    >>> _vaekit_setting([{"method": "vaekit", "settings": {"vaekit_args": {"layout_steps": 50}}},
    ...                  {"method": "vaekit", "settings": {"vaekit_args": {}}}])
    'vaekit with {"layout_steps": 50} (its defaults on the datasets whose run sets nothing)'
    """
    given = {json.dumps(r.get("settings", {}).get("vaekit_args", {}), sort_keys=True) for r in rows
             if r["method"] == "vaekit"}
    args = " / ".join(sorted(given - {"{}"}))
    if not args:
        return "vaekit's defaults"
    return f"vaekit with {args} " + ("(its defaults on the datasets whose run sets nothing)" if "{}" in given
                                     else "(not its defaults)")


def _yes(v: dict[str, Any], key: str) -> str:
    return ("yes" if v[key] else "no") if v["enough_seeds"] else f"insufficient seeds ({'yes' if v[key] else 'no'} as measured)"


def check_vaekit_args(parser: argparse.ArgumentParser, text: str) -> dict[str, Any]:
    """``--vaekit-args`` as a dict of ``VAEEmbedder`` arguments, or ``parser.error`` (exit 2) naming the flag.

    Refused before any data is read: text that is not a JSON object, ``random_state`` (set by the seeds), and
    arguments or values the estimator refuses (its ``check_params``).
    """
    try:
        args = json.loads(text)
    except json.JSONDecodeError as err:
        parser.error(f"--vaekit-args {text!r} is not JSON: {err}")
    if not isinstance(args, dict):
        parser.error(f"--vaekit-args {text!r}: expected a JSON object of VAEEmbedder arguments")
    if "random_state" in args:
        parser.error("--vaekit-args: random_state is set by --seeds (seeds 0..N-1); leave it out")
    from vaekit.embedding import VAEEmbedder

    try:
        VAEEmbedder(**args).check_params()
    except (TypeError, ValueError) as err:  # an unknown argument, or a value the estimator refuses
        parser.error(f"--vaekit-args {text!r}: {err}")
    return args


def mean_sd_rows(rows: list[dict[str, Any]], datasets: list[str], field: str, groups: tuple[str, ...],
                 columns: tuple[tuple[str, str, str], ...]) -> list[str]:
    """Markdown rows ``| dataset | group | mean ± sd | ...`` of ``rows`` grouped by data set and ``row[field]``.

    One cell per ``(key, title, format)`` of ``columns``: the mean over the group's rows and their sd (ddof=1), left
    out for a single row. Groups without rows are skipped. The tuning and gap scripts' tables.

    >>> mean_sd_rows([{"dataset": "d", "m": "a", "x": 1.0}, {"dataset": "d", "m": "a", "x": 2.0}], ["d"], "m",
    ...              ("a", "b"), (("x", "x", ".2f"),))
    ['| d | a | 1.50 ± 0.71 |']
    """
    lines = []
    for name in datasets:
        for group in groups:
            mine = [r for r in rows if r["dataset"] == name and r[field] == group]
            if not mine:
                continue
            cells = []
            for key, _, spec in columns:
                v = np.array([r[key] for r in mine], dtype=float)
                sd = f" ± {np.std(v, ddof=1):{spec}}" if len(v) > 1 else ""
                cells.append(f"{v.mean():{spec}}{sd}")
            lines.append(f"| {name} | {group} | " + " | ".join(cells) + " |")
    return lines


def _cell(s: dict[str, tuple[float, float, int]], key: str, spec: str) -> str:
    if key not in s:
        return "—"
    mean, sd, n = s[key]
    return format(mean, spec) + (f" ± {format(sd, spec)}" if n > 1 else "")


def markdown(rows: list[dict[str, Any]], info: dict[str, Any], about: dict[str, str],
             runs: list[dict[str, Any]] | None = None) -> str:
    out = [f"# Embedding suite: {info['n_datasets']} datasets, new (held-out) points\n",
           f"Machine: {info['cpu']}, {info['cores']} cores. Versions: "
           + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".\n"]
    for i, run in enumerate(runs or [info]):
        out.append(f"Run {i}: vaekit commit {run['commit']}, {run['date']}, {run['threads']} threads for UMAP (numba), "
                   f"openTSNE and torch, 1-minute load average "
                   f"{run['load_before']:.2f} before, {run.get('load_after', math.nan):.2f} after (above 2: other jobs "
                   f"shared the 2 cores, making times longer); `python benchmarks/{run['command']}`\n")
    out += [
           "10-NN acc: a 10-nearest-neighbour classifier fitted on the training embedding, scored on the new points. "
           "trust. / cont.: scikit-learn's trustworthiness (n_neighbors=10) and continuity of the new points' "
           f"embedding (at most {info['eval_n']} of them). recon. MSE: mean squared error per feature of "
           "inverse_transform(transform(x)) on the new points, data units. held-out ELBO: vaekit's score() on the "
           "new points. vaekit-encoder: the same vaekit fits, new points embedded by the encoder alone "
           "(transform_steps=0, no local optimisation against the training layout). mean ± sd over the seeds in the table's seeds column (with the torch / numba / openTSNE "
           "threads of the run that made the rows). Before its first timed call UMAP is warmed up (fit and "
           "transform) on 300 and on 5,000 random points, which compiles its numba code including the "
           "nearest-neighbour descent it uses from 4,096 rows on (`umap_compile_s` in the JSON: what that "
           "compilation would add to a cold fit of the data set's size). Times from different runs (processes, "
           "loads) are not comparable. A verdict reads \"insufficient seeds\" when UMAP has fewer than 2 seeds or "
           "vaekit fewer than its run asked for.\n"]
    verdicts = []
    for name in [d for d in ORDER if any(r["dataset"] == d for r in rows)]:
        out.append(f"## {name}: {about.get(name, '')}\n")
        out.append("| method | seeds (threads) | " + " | ".join(title for _, title, _ in COLUMNS) + " |")
        out.append("|---|---|" + "---|" * len(COLUMNS))
        for method in TABLE_METHODS:
            errors = [r["error"] for r in rows if r["dataset"] == name and r["method"] == method and r.get("error")]
            s = summary(rows, name, method)
            if s:
                out.append(f"| {method} | {_ran_text(ran(rows, runs, name, method))} | "
                           + " | ".join(_cell(s, key, spec) for key, _, spec in COLUMNS) + " |")
            elif errors:
                out.append(f"| {method} | — | not run: {errors[0]} |" + " |" * (len(COLUMNS) - 1))
        v = verdict(rows, name, runs)
        if v is not None:
            verdicts.append((name, v))
            note = "" if v["enough_seeds"] else f" ({v['seeds_note']})"
            out.append(f"\nvaekit vs UMAP (10-NN acc and trust.){note}: within one UMAP sd: **{_yes(v, 'within_one_sd')}**"
                       f"; at least UMAP's mean: **{_yes(v, 'at_least_umap')}**.")
        out.append("")
    if verdicts:
        enough = [v for _, v in verdicts if v["enough_seeds"]]
        n_within = sum(v["within_one_sd"] for v in enough)
        n_at_least = sum(v["at_least_umap"] for v in enough)
        short = len(verdicts) - len(enough)
        out.append(f"## Overall\n\n{_vaekit_setting(rows)} within one UMAP sd on {n_within} of {len(enough)} datasets "
                   f"with enough seeds and at least UMAP's mean on {n_at_least} of {len(enough)} (the issue asks for "
                   "all, and at least half)" + (f"; {short} of {len(verdicts)} datasets have insufficient seeds for a "
                                                "verdict" if short else "") + ".\n")
        out.append("| dataset | seeds vaekit / UMAP | 10-NN acc vaekit | 10-NN acc UMAP | trust. vaekit | trust. UMAP | "
                   "fit (s) vaekit | fit (s) UMAP / plus umap_compile_s | within 1 sd | >= UMAP |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for name, v in verdicts:
            a, b = summary(rows, name, "vaekit"), summary(rows, name, "umap")
            compile_s = [r["settings"]["umap_compile_s"] for r in rows if r["dataset"] == name and r["method"] == "umap"
                         and "umap_compile_s" in r.get("settings", {})]
            cold = f" / {b['fit_s'][0] + float(np.mean(compile_s)):.1f}" if compile_s and "fit_s" in b else ""
            out.append(f"| {name} | {a['knn_acc'][2]} / {b['knn_acc'][2]} | {_cell(a, 'knn_acc', '.3f')} | "
                       f"{_cell(b, 'knn_acc', '.3f')} | {_cell(a, 'trust', '.3f')} | {_cell(b, 'trust', '.3f')} | "
                       f"{_cell(a, 'fit_s', '.1f')} | {_cell(b, 'fit_s', '.1f')}{cold} | {_yes(v, 'within_one_sd')} | "
                       f"{_yes(v, 'at_least_umap')} |")
        out.append("")
    return "\n".join(out)


def merge(out_dir: Path, name: str, others: list[Path]) -> None:
    """Add the rows, runs and dataset notes of ``others`` to ``out_dir/name.json`` and rewrite its markdown."""
    path = out_dir / f"{name}.json"
    base = json.loads(path.read_text())
    for other in others:
        extra = json.loads(other.read_text())
        pairs = {(r["dataset"], r["method"]) for r in extra["results"]}
        offset = len(base["runs"])
        base["results"] = [r for r in base["results"] if (r["dataset"], r["method"]) not in pairs] + [
            {**r, "run": r.get("run", 0) + offset} for r in extra["results"]]
        base["runs"] += extra["runs"]
        base["datasets"].update(extra["datasets"])
    base["n_datasets"] = len({r["dataset"] for r in base["results"]})
    path.write_text(json.dumps(base, indent=1) + "\n")
    (out_dir / f"{name}.md").write_text(markdown(base["results"], base, base["datasets"], base["runs"]))
    print(f"merged {[str(o) for o in others]} into {path}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", nargs="+", choices=ORDER, default=list(ORDER))
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 for vaekit and UMAP (default 3)")
    p.add_argument("--quick", action="store_true", help="one seed, the small datasets and mnist5k only")
    p.add_argument("--neighbors", type=int, default=10, help="k of the k-NN classifier, trustworthiness, continuity")
    p.add_argument("--eval-n", type=int, default=5000, help="at most this many new points for trust. and cont.")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="numba, openTSNE and torch threads")
    p.add_argument("--vaekit-args", default="{}", help="JSON of extra VAEEmbedder arguments")
    p.add_argument("--data-root", default=None, help="folder holding mnist/ and olivetti_faces/ (else $VAEKIT_DATA)")
    p.add_argument("--out-dir", default=str(HERE / "results"))
    p.add_argument("--name", default="embedding_suite_cpu", help="results file stem")
    p.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                   help="run nothing: add the rows of these results files (runs made at the same time under other\n"
                        "names) to --name's file, replacing its rows of the same (dataset, method), and rewrite its table")
    args = p.parse_args(argv)
    if args.merge:
        merge(Path(args.out_dir), args.name, [Path(f) for f in args.merge])
        return
    check_vaekit_args(p, args.vaekit_args)  # fail now, not after the other methods ran
    if args.quick:
        args.seeds = 1
        if "--datasets" not in (argv if argv is not None else sys.argv[1:]):
            args.datasets = ["digits", "olivetti", "breast_cancer", "clusters", "swiss_roll", "mnist5k"]
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="vaekit-suite-numba-"))
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE))
    from embedding import cpu_name, versions  # the single-dataset benchmark's machine description

    root = _data_root(args.data_root)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{args.name}.json", out_dir / f"{args.name}.md"
    kept: list[dict[str, Any]] = []
    about: dict[str, str] = {}
    if json_path.is_file():  # keep the rows of the (dataset, method) pairs this run does not redo
        old = json.loads(json_path.read_text())
        kept = [r for r in old["results"] if r["dataset"] not in args.datasets
                or r["method"].removesuffix("-encoder") not in args.methods]
        about = dict(old.get("datasets", {}))
        info_kept = old.get("runs", [])
    else:
        info_kept = []
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": git_commit(missing="unknown"),
            "cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads, "load_before": load_before,
            "versions": {k: v for k, v in versions().items() if k != "cvae"}, "seeds": list(range(args.seeds)),
            "eval_n": args.eval_n, "neighbors": args.neighbors,
            # this script's own name, also when embedding.py --suite called main (so the command reruns the suite)
            "command": shlex.join(["embedding_suite.py", *(argv if argv is not None else sys.argv[1:])])}

    def write() -> None:
        info["load_after"] = os.getloadavg()[0]
        all_rows = kept + rows
        info["n_datasets"] = len({r["dataset"] for r in all_rows})
        runs = [*info_kept, {k: v for k, v in info.items() if k != "n_datasets"}]
        json_path.write_text(json.dumps({**info, "runs": runs, "datasets": about, "results": all_rows}, indent=1) + "\n")
        md_path.write_text(markdown(all_rows, info, about, runs))

    for name in [d for d in ORDER if d in args.datasets]:
        d = DATASETS[name](root)
        about[name] = f"{d.about}; {len(d.x_train):,} training rows, {len(d.x_test):,} new, {d.x_train.shape[1]} features"
        print(f"== {name}: {about[name]}", flush=True)
        for method in args.methods:
            for seed in (range(args.seeds) if method in SEEDED else [0]):
                row: dict[str, Any] = {"dataset": name, "method": method, "seed": seed, "run": len(info_kept)}
                try:
                    if method in IMPORTS:
                        __import__(IMPORTS[method])
                except ImportError as err:
                    row["error"] = f"{IMPORTS[method]} not importable ({err})"
                    rows.append(row)
                    print(f"   {method}: {row['error']}", flush=True)
                    break
                encoder = None
                try:
                    res = RUNNERS[method](d, seed, args)
                except Exception as err:  # noqa: BLE001 - one failing run must not lose the others' numbers
                    traceback.print_exc()
                    row["error"] = str(err).splitlines()[0] if str(err) else type(err).__name__
                else:
                    encoder = res.pop("encoder", None)
                    row.update(metrics(d, res.pop("z_train"), res.pop("z_test"), args.neighbors, args.eval_n))
                    row.update(res)
                    print(f"   {method} seed {seed}: " + ", ".join(
                        f"{k} {row[k]:.4g}" for k, _, _ in COLUMNS if row.get(k) is not None), flush=True)
                rows.append(row)
                if encoder is not None:
                    extra = {"dataset": name, "method": f"{method}-encoder", "seed": seed, "run": row["run"]}
                    extra.update(metrics(d, encoder.pop("z_train"), encoder.pop("z_test"), args.neighbors, args.eval_n))
                    extra.update(encoder)
                    rows.append(extra)
                write()
    write()
    print(md_path.read_text())
    print(f"wrote {md_path} and {json_path}")


if __name__ == "__main__":
    main()
