"""Where neighbourhoods are lost: in the training layout, or in the map to new points (issue 16).

For each data set of ``benchmarks/embedding_suite.py`` and seed, three embeddings are scored
twice: on the **training rows** (10-NN accuracy by 5-fold cross-validation on the training
embedding, and trustworthiness of as many training rows as new rows are scored, at most
2,000) and on the **new rows** (the suite's metrics: a 10-NN classifier fitted on the
training embedding, trustworthiness of the new rows' embedding).

- ``vaekit``: ``VAEEmbedder(random_state=seed)`` (plus ``--vaekit-args``), training rows through
  ``transform`` (they include the tenth it holds out for validation).
- ``umap``: ``umap.UMAP(random_state=seed)``, training rows as ``embedding_``, new rows by its
  ``transform`` (neighbour search plus optimisation of the new points only).
- ``mlp_on_umap``: a plain MLP with the embedder's encoder sizes for the data
  (``vaekit.embedding._model.auto_hidden_layers``, ELU), fitted by least squares to UMAP's
  training layout (standardised inputs; the layout centred and divided by one number; Adam
  1e-3, 3,000 steps of 256 rows, no validation or regularisation); its outputs on the training
  and new rows are scored. It asks how well one parametric map of this size carries a *given*
  good layout to new points.

If ``vaekit``'s training scores are near UMAP's but its new-row scores are not, the layout is
not what is missing; if ``mlp_on_umap`` also loses on new rows, a layout as good as UMAP's
does not by itself carry over to new points through such a map. Writes
``results/<name>.md`` and ``.json`` (after each data set).

Usage::

    python benchmarks/embedding_gap.py                          # digits, mnist5k, mnist20k; seeds 0 and 1
    python benchmarks/embedding_gap.py --datasets digits --seeds 1
    python benchmarks/embedding_gap.py --datasets mnist20k --methods vaekit --vaekit-args '{"max_epochs": 60}'
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # one OpenMP and numba thread unless told otherwise, set before their pools start: on 2
    # cores a run without these took 46 s for the digits' 3,000-step MLP fit, 3 s with them
    for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
import embedding_suite as suite  # noqa: E402  (a sibling script)
from provenance import git_commit  # noqa: E402

METHODS = ("vaekit", "umap", "mlp_on_umap")
DATASETS = ("digits", "mnist5k", "mnist20k")
#: New rows the suite scores at most (``suite.metrics``'s ``eval_n``); the training rows' trustworthiness is taken
#: on as many training rows as new rows are scored, since the score depends on how many rows it ranks.
EVAL_ROWS = 2000
#: Steps, batch rows and learning rate of the MLP regressed on UMAP's layout.
MLP_STEPS, MLP_BATCH, MLP_LR = 3000, 256, 1e-3
COLUMNS = (("train_knn", "training 10-NN (5-fold)", ".3f"), ("train_trust", "training trust.", ".3f"),
           ("knn_acc", "new 10-NN", ".3f"), ("trust", "new trust.", ".3f"), ("fit_s", "fit (s)", ".1f"))


def training_scores(d: suite.Dataset, z_train: np.ndarray, seed: int) -> dict[str, float]:
    """5-fold cross-validated 10-NN accuracy of the training embedding; trustworthiness of a seeded sample of it.

    The sample has as many rows as the new rows scored (``min(len(d.x_test), EVAL_ROWS)``).
    """
    from sklearn.manifold import trustworthiness
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    knn = float(cross_val_score(KNeighborsClassifier(n_neighbors=10), z_train, d.y_train, cv=5).mean())
    idx = np.random.default_rng(seed).permutation(len(z_train))[:min(len(d.x_test), EVAL_ROWS)]
    trust = float(trustworthiness(d.x_train[idx].astype(np.float64), np.asarray(z_train, dtype=np.float64)[idx],
                                  n_neighbors=10))
    return {"train_knn": knn, "train_trust": trust}


def mlp_on_layout(d: suite.Dataset, layout: np.ndarray, seed: int, steps: int = MLP_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """An MLP of the embedder's encoder sizes fitted by least squares to ``layout``; its outputs on training and new rows.

    The layout is centred and divided by one number, its sd over both columns, so that its shape (and so its
    neighbours) is kept; the outputs are in those units. Torch's global generator is left as it was.
    """
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _fit_mlp(d, layout, steps)


def _fit_mlp(d: suite.Dataset, layout: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from vaekit.embedding._model import auto_hidden_layers

    x = torch.as_tensor(d.x_train, dtype=torch.float32)
    mean, sd = x.mean(0), x.std(0)
    sd = sd.clamp_min(0.1 * float(sd.mean()) or 1.0)
    xn, xt = (x - mean) / sd, (torch.as_tensor(d.x_test, dtype=torch.float32) - mean) / sd
    target = torch.as_tensor(layout, dtype=torch.float32)
    target = (target - target.mean(0)) / target.std()
    layers: list[torch.nn.Module] = []
    width = xn.shape[1]
    for h in auto_hidden_layers(xn.shape[1], layout.shape[1]):
        layers += [torch.nn.Linear(width, h), torch.nn.ELU()]
        width = h
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, layout.shape[1]))
    opt = torch.optim.Adam(net.parameters(), lr=MLP_LR)
    for _ in range(steps):
        i = torch.randint(len(xn), (MLP_BATCH,))
        loss = (net(xn[i]) - target[i]).square().sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return net(xn).numpy(), net(xt).numpy()


def run(d: suite.Dataset, seed: int, methods: tuple[str, ...] = METHODS,
        vaekit_args: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The training and new-row scores of ``methods`` for one seed (``vaekit_args``: extra ``VAEEmbedder`` arguments)."""
    from vaekit.embedding import VAEEmbedder

    rows = []
    if "vaekit" in methods:
        start = time.perf_counter()
        est = VAEEmbedder(random_state=seed, **(vaekit_args or {})).fit(d.x_train)
        fit_s = time.perf_counter() - start
        z_train, z_test = est.transform(d.x_train), est.transform(d.x_test)
        rows.append({"method": "vaekit", "fit_s": fit_s, "n_iter": est.n_iter_, **training_scores(d, z_train, seed),
                     **suite.metrics(d, z_train, z_test, 10, EVAL_ROWS)})
    if "umap" in methods or "mlp_on_umap" in methods:
        import umap

        suite.umap_compile_s(len(d.x_train))  # UMAP's numba code compiled before the timed fit (once a process)
        start = time.perf_counter()
        reducer = umap.UMAP(random_state=seed).fit(d.x_train)
        fit_s = time.perf_counter() - start
        layout = np.asarray(reducer.embedding_)
        if "umap" in methods:
            rows.append({"method": "umap", "fit_s": fit_s, **training_scores(d, layout, seed),
                         **suite.metrics(d, layout, reducer.transform(d.x_test), 10, EVAL_ROWS)})
        if "mlp_on_umap" in methods:
            start = time.perf_counter()
            p_train, p_test = mlp_on_layout(d, layout, seed, steps=MLP_STEPS)
            fit_s = time.perf_counter() - start
            rows.append({"method": "mlp_on_umap", "fit_s": fit_s, **training_scores(d, p_train, seed),
                         **suite.metrics(d, p_train, p_test, 10, EVAL_ROWS)})
    return rows


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """One table: per data set and method, mean ± sd (ddof=1) over the seeds."""
    lines = ["# Embedding: neighbourhoods of the training layout and of new points", "",
             f"Commit {info['commit']}, {info['date']}, {info['machine']}, {info['threads']} torch thread(s), seeds "
             f"{', '.join(map(str, info['seeds']))}, 1-minute load average {info['load_before']:.2f} before, "
             f"{info['load_after']:.2f} after (fit times are only indicative when it is above the cores). "
             "`python benchmarks/" + info["command"] + "`", "",
             "training: 10-NN accuracy by 5-fold cross-validation on the training embedding (each fold's "
             "neighbours among the other 80%, where the new rows' are among all training rows); trustworthiness "
             "(n_neighbors=10) of as many training rows as new rows are scored. vaekit's training rows include the "
             "tenth it holds out for validation (neither in its ELBO nor in its neighbour graph). new: the suite's "
             f"metrics on at most {EVAL_ROWS:,} new rows. UMAP is warmed up (numba compiled) before its timed fits. "
             "mlp_on_umap: an MLP of the embedder's encoder sizes regressed on UMAP's training layout (centred, one "
             f"scale for both axes; {MLP_STEPS:,} Adam steps of {MLP_BATCH} rows, no validation or regularisation); "
             "its fit time excludes UMAP's."
             + (f" vaekit: `VAEEmbedder(random_state=seed, **{json.dumps(info['vaekit_args'])})`."
                if info.get("vaekit_args") else ""), "",
             "| dataset | method | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    lines += suite.mean_sd_rows(rows, info["datasets"], "method", METHODS, COLUMNS)
    return "\n".join(lines) + "\n"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected a positive integer")
    return value


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", choices=sorted(suite.DATASETS), default=list(DATASETS))
    p.add_argument("--seeds", type=_positive, default=2, help="seeds 0..N-1 (default 2)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--vaekit-args", default="{}", help="JSON of extra VAEEmbedder arguments (default none)")
    p.add_argument("--threads", type=_positive, default=1, help="torch threads (default 1; UMAP with a random_state runs on one)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out-dir", default=str(HERE / "results"))
    p.add_argument("--name", default="embedding_gap_cpu")
    args = p.parse_args(argv)
    vaekit_args = suite.check_vaekit_args(p, args.vaekit_args)
    if vaekit_args and "vaekit" not in args.methods:
        p.error(f"--vaekit-args {args.vaekit_args!r} given, but --methods {' '.join(args.methods)} does not run vaekit")
    import torch

    from embedding import cpu_name  # the single-dataset benchmark's machine description
    from vaekit.training.rundir import atomic_write

    torch.set_num_threads(args.threads)
    root = suite._data_root(args.data_root)
    info: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "commit": git_commit(missing="unknown"), "threads": args.threads,
                            "machine": f"{cpu_name()}, {os.cpu_count()} cores",
                            "seeds": list(range(args.seeds)), "datasets": list(args.datasets),
                            "methods": list(args.methods), "vaekit_args": vaekit_args,
                            "load_before": os.getloadavg()[0],
                            "command": shlex.join(["embedding_gap.py", *(argv if argv is not None else sys.argv[1:])])}
    rows: list[dict[str, Any]] = []
    out = Path(args.out_dir)

    def write() -> None:  # after each data set, so that a failure later keeps the rows done
        info["load_after"] = os.getloadavg()[0]
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps({**info, "results": rows}, indent=1) + "\n"
        atomic_write(out / f"{args.name}.json", lambda f: f.write(text.encode()))
        table = markdown(rows, info)
        atomic_write(out / f"{args.name}.md", lambda f: f.write(table.encode()))

    for name in args.datasets:
        d = suite.DATASETS[name](root)
        for seed in range(args.seeds):
            for row in run(d, seed, tuple(args.methods), vaekit_args):
                row = {"dataset": name, "seed": seed, **row}
                print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                      flush=True)
                rows.append(row)
        write()
    print(markdown(rows, info))


if __name__ == "__main__":
    main()
