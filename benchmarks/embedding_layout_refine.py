"""Exploratory (issue 16): does optimising the *training layout* after the fit close the gap to UMAP?

``VAEEmbedder(layout_steps=0)`` is fitted with its other defaults; its training layout (``embedding_``, the
encoder's embedding of the training rows) is then moved by the same per-row neighbour loss
that ``transform`` optimises new rows with (:func:`vaekit.embedding._neighbors.refine_embedding`),
each training row attracted to the layout positions of its nearest training rows (its
``n_neighbors`` nearest in the neighbour term's principal coordinates) and repelled by shared
negatives drawn from the layout. The new rows are then placed by ``transform`` against the
moved layout, and both are scored as the suite scores them (``embedding_suite.metrics``).
Nothing here changes vaekit's defaults; the script measures a candidate.

A configuration (one JSON object per ``--configs`` entry) is either

- ``{"rounds": R, "steps": S}``: R rounds; in each every row takes S Adam steps against the
  layout as it was at the start of the round (its partners and negatives stay put: the rows
  move independently, as ``transform``'s do), or
- ``{"joint": S}``: S Adam steps of all rows together, each step's partners and negatives read
  from the layout as it is at that step (:func:`vaekit.embedding._neighbors.optimize_layout`,
  the loop ``VAEEmbedder(layout_steps=S)`` runs after its fit, here with other draws: negatives
  seeded 1000, the graph by the fit's seed; ``joint_layout`` of this script's first version was
  the same loop),

- ``{"edges": E}``: UMAP's own layout optimisation, E epochs over the edges of UMAP's fuzzy
  graph of the training rows (:func:`vaekit.embedding._neighbors.fuzzy_union` of their
  ``n_neighbors`` nearest rows in the term's principal coordinates;
  :func:`vaekit.embedding._neighbors.edge_layout`, seeded 1000 + the fit's seed), started
  from the encoder's layout scaled into [0, 10] as UMAP scales its start (one scale for both
  axes, so that the layout keeps its shape; UMAP scales each axis) (``"frame": "fit"``
  starts from ``Q_SCALE`` times the layout instead, the units of the fit's term), then brought
  back into the encoder's frame by one rotation, scale and shift
  (:func:`vaekit.embedding._neighbors.similarity_align`; ``"align": false`` only undoes the
  starting scale). ``"chunks"`` sets ``edge_layout``'s groups per epoch.
  ``"transform_graph": "fuzzy"`` (or ``"knn"``) sets how ``transform``'s local optimisation
  weighs each new row's neighbours (``neighbor_graph``'s meaning), whatever graph the fit
  used (by default the fit's). With
  ``"finetune": F`` the VAE is then trained F more steps (Adam, rate 1e-3, 256 random
  training rows per step, gradient norm clipped at 100; the ELBO's noise from torch's global
  generator) on its negative single-sample ELBO
  plus ``"lam"`` (default 0.5) times the number of input features times the mean squared
  distance between each row's embedding (the posterior's point estimate) and its place in the
  moved layout, so that the decoder learns the moved layout's frame (per feature, as the
  ELBO it balances grows with the features),

the first two with ``transform``'s rate (0.5, decaying linearly) unless ``"lr"`` is given; ``{"rounds": 0}``
is the encoder's layout. Against a moved layout ``transform`` starts each new row at its
neighbours' median, as ``VAEEmbedder`` does after ``layout_steps`` (since commit e398fd0; the
results committed before it started at the encoder's embedding): ``"start": "encoder"`` in a
configuration gives that older start. ``refine_s`` is the time of the layout optimisation alone (for
``"edges"`` with the fuzzy graph and the alignment), ``knn_s``
that of the training rows' neighbour search (exact below 20,000 rows, as the fit's graph),
``finetune_s`` that of the fine-tuning. Each row also has the reconstruction error of the new
rows (``inverse_transform(transform(x))``, mean squared error per feature) and their held-out
ELBO (``score``), as the suite reports them; against a moved layout ``transform`` does not use
the network, so the fine-tuning changes those two and not the neighbour scores.
``--vaekit-args`` (JSON) passes other
parameters to the fit (e.g. a shorter ``max_epochs``).

Usage::

    python benchmarks/embedding_layout_refine.py --datasets mnist20k --seeds 0 1 \
        --configs '{"rounds": 0}' '{"rounds": 3, "steps": 200}' '{"joint": 200}'
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import embedding_suite as es  # noqa: E402

from vaekit.embedding import VAEEmbedder  # noqa: E402
from vaekit.embedding import _neighbors as N  # noqa: E402
from vaekit.embedding._model import anchor_elbo_and_embedding  # noqa: E402


def edge_moved(base: np.ndarray, coords: torch.Tensor, neighbors: torch.Tensor, config: dict, seed: int) -> np.ndarray:
    """The encoder's layout moved by UMAP's edge-sampled optimisation (``{"edges": E}``), back in its frame."""
    z = torch.from_numpy(base).double()
    if config.get("frame", "box") == "box":
        low, scale = z.amin(0), 10.0 / float((z.amax(0) - z.amin(0)).max())
    else:
        low, scale = torch.zeros(z.shape[1], dtype=torch.float64), N.Q_SCALE
    head, tail, weight = N.fuzzy_union(coords, neighbors)
    y = N.edge_layout((z - low) * scale, head, tail, weight, int(config["edges"]), 1000 + seed,
                      chunks=int(config.get("chunks", N.EDGE_CHUNKS))) / scale + low
    if config.get("align", True):
        y = N.similarity_align(y, z)
    return np.ascontiguousarray(y.numpy().astype(np.float32))


def finetune(est: VAEEmbedder, x: np.ndarray, layout: np.ndarray, steps: int, lam: float, seed: int) -> None:
    """``steps`` Adam steps of the negative ELBO plus ``lam`` times the squared distance of each embedding to ``layout``."""
    model = est.model_
    rows = torch.from_numpy(((x.reshape(len(x), -1) - est.mean_) / est.scale_).astype(np.float32))
    target = torch.from_numpy(layout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    draws = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(len(rows), (256,), generator=draws)
        elbo, z = anchor_elbo_and_embedding(model, rows[idx], len(idx))
        loss = -elbo.mean() + lam * (z - target[idx]).square().sum(1).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 100.0)
        opt.step()
    model.eval()


def refined(base: np.ndarray, neighbors: torch.Tensor, config: dict) -> np.ndarray:
    z = torch.from_numpy(base)
    lr = float(config.get("lr", N.REFINE_LR))
    if "joint" in config:
        z = N.optimize_layout(z, neighbors, int(config["joint"]), 1000, "tsne", lr)
    for r in range(int(config.get("rounds", 0))):
        z = N.refine_embedding(z, z[neighbors], z, steps=int(config["steps"]), seed=1000 + r, lr=lr)
    return np.ascontiguousarray(z.numpy().astype(np.float32))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", choices=list(es.ORDER), default=["mnist20k"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--configs", nargs="+", default=['{"rounds": 0}', '{"rounds": 3, "steps": 200}'])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--vaekit-args", default="{}", help="JSON of other VAEEmbedder parameters for the fit")
    p.add_argument("--data-root", default=None, help="folder holding mnist/ and olivetti_faces/ (else $VAEKIT_DATA)")
    p.add_argument("--out", default=None, help="write the rows as JSON here (and a table beside it, .md)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    configs = [json.loads(c) for c in a.configs]
    root = Path(a.data_root or os.environ.get("VAEKIT_DATA", "data"))
    commit = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": commit,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "threads": a.threads, "load_before": os.getloadavg()[0], "torch": torch.__version__,
            "command": "python benchmarks/embedding_layout_refine.py " + shlex.join(sys.argv[1:])}
    rows = []
    for name in a.datasets:
        d = es.DATASETS[name](root)
        for seed in a.seeds:
            fitted = VAEEmbedder(random_state=seed, layout_steps=0, **json.loads(a.vaekit_args))  # moved per config
            _, fit_s = es._timed(lambda: fitted.fit(d.x_train))
            est = fitted
            base = est.embedding_.copy()
            coords = torch.from_numpy(est._layout.coords)
            neighbors, knn_s = es._timed(lambda: N.knn_graph(coords, est._layout.n_neighbors, seed=seed))
            for config in configs:
                est = copy.deepcopy(fitted) if "finetune" in config else fitted
                est._layout.graph = config.get("transform_graph", fitted.neighbor_graph)
                if "edges" in config:
                    est.embedding_, refine_s = es._timed(lambda: edge_moved(base, coords, neighbors, config, seed))
                else:
                    est.embedding_, refine_s = es._timed(lambda: refined(base, neighbors, config))
                _, finetune_s = es._timed(lambda: finetune(est, d.x_train, est.embedding_, int(config["finetune"]),
                                                           float(config.get("lam", 0.5)) * d.x_train[0].size, seed)
                                          if "finetune" in config else None)
                est._layout.moved = (("joint" in config or "edges" in config or int(config.get("rounds", 0)) > 0)
                                     and config.get("start", "median") == "median")
                zte = est.transform(d.x_test)
                m = es.metrics(d, est.transform(d.x_train), zte, 10, 5000)
                row = {"dataset": name, "seed": seed, "config": config, "knn_acc": m["knn_acc"], "trust": m["trust"],
                       "recon_mse": float(np.mean((est.inverse_transform(zte) - d.x_test) ** 2)),
                       "elbo": est.score(d.x_test), "fit_s": fit_s, "knn_s": knn_s, "refine_s": refine_s,
                       "finetune_s": finetune_s}
                rows.append(row)
                print(f"{name:10s} seed {seed} {json.dumps(config):34s} 10-NN {row['knn_acc']:.4f}  trust. "
                      f"{row['trust']:.4f}  recon {row['recon_mse']:.4g}  ELBO {row['elbo']:.1f}  fit {fit_s:5.1f} s  "
                      f"knn {knn_s:4.1f} s  refine {refine_s:5.1f} s  finetune {finetune_s:4.1f} s", flush=True)
    info["load_after"] = os.getloadavg()[0]
    if a.out:
        Path(a.out).write_text(json.dumps({**info, "rows": rows}, indent=1) + "\n")
        lines = [f"# Training-layout optimisation after the fit (exploratory, issue 16)", "",
                 f"{info['date']}, commit {commit}, {info['machine']}, torch {info['torch']}, {a.threads} thread(s), "
                 f"1-minute load {info['load_before']:.2f} before / {info['load_after']:.2f} after; "
                 f"`{info['command']}`", "",
                 "| dataset | seed | config | 10-NN acc | trust. | recon. MSE | held-out ELBO | fit (s) | knn (s) | "
                 "refine (s) | finetune (s) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['dataset']} | {r['seed']} | `{json.dumps(r['config'])}` | {r['knn_acc']:.4f} | {r['trust']:.4f} | "
                  f"{r['recon_mse']:.4g} | {r['elbo']:.1f} | {r['fit_s']:.1f} | {r['knn_s']:.1f} | {r['refine_s']:.1f} | "
                  f"{r['finetune_s']:.1f} |" for r in rows]
        Path(a.out).with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
