"""VAEEmbedder's neighbour-term defaults before and after the weight floor and early exaggeration (issue 16).

``before``: the term weighted ``neighbor_weight * n_features`` and no early exaggeration (the
defaults up to this change, reproduced by setting ``MIN_TERM_FEATURES`` and
``EARLY_ATTRACTION_FEATURES`` of :mod:`vaekit.embedding._neighbors` to 0). ``after``: the
defaults (weight ``neighbor_weight * max(n_features, 50)``, attraction times
``max(1, 600 / max(n_features, 50))`` in the first quarter of the epochs). Both fit
``VAEEmbedder(random_state=seed)`` on the training rows of data sets of
``benchmarks/embedding_suite.py`` and are scored on the new rows with its metrics (10-NN
accuracy, trustworthiness, continuity); reconstruction error and held-out ELBO are beside them.
Data with 600 features or more (MNIST, Olivetti) train identically before and after, so they are
not run. Writes ``results/<name>.md`` and ``.json``.

Usage::

    python benchmarks/embedding_tuning.py                       # swiss_roll digits breast_cancer clusters, seeds 0-2
    python benchmarks/embedding_tuning.py --datasets digits --seeds 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import embedding_suite as suite  # noqa: E402  (a sibling script)
from provenance import git_commit  # noqa: E402

SETTINGS = ("before", "after")
DATASETS = ("swiss_roll", "digits", "breast_cancer", "clusters")
COLUMNS = (("knn_acc", "10-NN acc", ".3f"), ("trust", "trust.", ".3f"), ("cont", "cont.", ".3f"),
           ("recon_mse", "recon. MSE", ".4g"), ("elbo", "held-out ELBO (nats)", ".1f"), ("fit_s", "fit (s)", ".1f"))


def run(d: suite.Dataset, setting: str, seed: int) -> dict[str, Any]:
    """Fit the defaults (``after``) or the former defaults (``before``) with ``seed``; the suite's metrics."""
    import vaekit.embedding._neighbors as neighbors
    from vaekit.embedding import VAEEmbedder

    saved = neighbors.MIN_TERM_FEATURES, neighbors.EARLY_ATTRACTION_FEATURES
    if setting == "before":
        neighbors.MIN_TERM_FEATURES = neighbors.EARLY_ATTRACTION_FEATURES = 0
    try:
        est = VAEEmbedder(random_state=seed)
        term = {"term_weight": neighbors.term_weight(est.neighbor_weight, d.x_train.shape[1]),
                "early_exaggeration": neighbors.early_exaggeration(d.x_train.shape[1])}
        start = time.perf_counter()
        est.fit(d.x_train)
        fit_s = time.perf_counter() - start
    finally:
        neighbors.MIN_TERM_FEATURES, neighbors.EARLY_ATTRACTION_FEATURES = saved
    z_train, z_test = est.transform(d.x_train), est.transform(d.x_test)
    row = suite.metrics(d, z_train, z_test, 10, 5000)
    row.update(recon_mse=float(np.mean((est.inverse_transform(z_test) - d.x_test) ** 2)), elbo=est.score(d.x_test),
               fit_s=fit_s, **term)
    return row


def markdown(rows: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """One table: per data set and setting, mean ± sd (ddof=1) over the seeds of every column."""
    lines = ["# VAEEmbedder's neighbour-term defaults, before and after (new points)", "",
             f"Commit {info['commit']}, {info['date']}, {info['threads']} torch thread(s), seeds "
             f"{', '.join(map(str, info['seeds']))}, 1-minute load average {info['load_before']:.2f} before, "
             f"{info['load_after']:.2f} after (2 cores shared with other jobs: fit times are only indicative). "
             "`python benchmarks/" + info["command"] + "`", "",
             "before: term weight `neighbor_weight * n_features`, no early exaggeration. after: weight "
             "`neighbor_weight * max(n_features, 50)`, attraction times `max(1, 600 / max(n_features, 50))` in the "
             "first quarter of the epochs. Metrics as in `embedding_suite.py` (on the new rows).", "",
             "| dataset | defaults | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    lines += suite.mean_sd_rows(rows, info["datasets"], "setting", SETTINGS, COLUMNS)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", choices=sorted(suite.DATASETS), default=list(DATASETS))
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--out-dir", default=str(HERE / "results"))
    p.add_argument("--name", default="embedding_tuning_cpu")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    root = suite._data_root(args.data_root)
    info: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "commit": git_commit(missing="unknown"), "threads": args.threads,
                            "seeds": list(range(args.seeds)), "datasets": list(args.datasets),
                            "load_before": os.getloadavg()[0],
                            "command": " ".join(["embedding_tuning.py", *(argv if argv is not None else sys.argv[1:])])}
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        d = suite.DATASETS[name](root)
        for setting in SETTINGS:
            for seed in range(args.seeds):
                row = {"dataset": name, "setting": setting, "seed": seed, **run(d, setting, seed)}
                print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                      flush=True)
                rows.append(row)
    info["load_after"] = os.getloadavg()[0]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps({**info, "results": rows}, indent=1) + "\n")
    (out / f"{args.name}.md").write_text(markdown(rows, info))
    print(markdown(rows, info))


if __name__ == "__main__":
    main()
