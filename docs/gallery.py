"""Draw the pictures of the documentation's gallery (docs/gallery.md) from real, small runs.

    OMP_NUM_THREADS=1 VAEKIT_DATA=/path/to/data python docs/gallery.py      # 128 s on one CPU thread (gallery.json's total_seconds)

Every picture comes from a model trained here, on the real data sets under ``$VAEKIT_DATA``
(MNIST, binarized MNIST, High School and Beyond), with few epochs: they illustrate what vaekit
draws and computes, they are not benchmarks (benchmarks/ has those). Writes, under
``docs/gallery/`` (or ``--out``):

- ``samples.png``, ``reconstructions.png``, ``traversals.png``: an MLP VAE on binarized MNIST;
- the inference-gap table (IWAE, AIS, local optimisation) of that VAE, written into
  docs/gallery.md between its ``<!-- gallery:gaps -->`` markers (with the default ``--out``);
- ``embedding.png``: a ``VAEEmbedder`` map of MNIST test digits;
- ``group_effects.png``: the school effects of a random-intercept ``GroupPredictor`` on High
  School and Beyond against statsmodels' MixedLM (BLUPs);
- ``data_efficiency.png``: new-group inference on schools held out of training;
- ``gallery.json``: the settings, the numbers behind the pictures and the seconds each took.

Seeded (``torch.manual_seed``, the trainers' ``seed``): a rerun on the same machine and library
versions draws the same pictures.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import vaekit  # noqa: E402
from vaekit.analysis import as_images, image_grid, latent_traversal  # noqa: E402
from vaekit.data import MNIST, BinarizedMNIST  # noqa: E402
from vaekit.data.grouped_sets import HighSchoolBeyond  # noqa: E402
from vaekit.inference import data_efficiency_curve, gap_table, inference_gaps  # noqa: E402
from vaekit.models.group import GroupPredictor  # noqa: E402
from vaekit.nn.predictors import LinearPredictor, MLPPredictor  # noqa: E402

HERE = Path(__file__).resolve().parent

#: Sizes and epochs of every run (small on purpose: the whole script ran in 128 s on one thread, gallery.json's total_seconds).
SETTINGS = {
    "vae": {"data": "binarized MNIST (50,000 train)", "latent_features": 16, "hidden": [256], "epochs": 6,
            "batch_size": 128, "lr": 2e-3},
    "gaps": {"n_points": 40, "iwae_k": 1000, "ais_chains": 16, "ais_steps": 300, "local_opt": ["ffg"],
             "local_opt_steps": 500},
    "embedding": {"data": "MNIST (first 10,000 training digits)", "n_plot": 5000, "max_epochs": 15},
    "group_effects": {"data": "High School and Beyond, split by student", "epochs": 40, "batch_size": 128, "lr": 0.05},
    "data_efficiency": {"data": "High School and Beyond, 25% of the schools held out", "epochs": 30, "batch_size": 256,
                        "lr": 3e-3, "ks": [1, 2, 5, 10, 20], "steps": 60, "max_groups": 40, "shuffles": 5},
}


def _save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _grid_png(images: np.ndarray, path: Path, ncols: int, title: str, scale: float = 1.0) -> None:
    grid = image_grid(images, ncols=ncols)
    fig, ax = plt.subplots(figsize=(scale * grid.shape[1] / 40, scale * grid.shape[0] / 40 + 0.3))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def vae_pictures(out: Path, workdir: Path) -> dict:
    """samples.png, reconstructions.png, traversals.png and gaps.md from one MLP VAE on binarized MNIST."""
    s, g = SETTINGS["vae"], SETTINGS["gaps"]
    data = BinarizedMNIST(flatten=True)
    torch.manual_seed(0)
    model = vaekit.mlp_vae([784], latent_features=s["latent_features"], hidden=s["hidden"])
    t0 = time.time()
    vaekit.Trainer(max_epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], progress_bar=False,
                   root_dir=str(workdir), seed=0).fit(model, data)
    train_s = time.time() - t0
    model.eval()
    shape = model.data_shape
    torch.manual_seed(1)
    with torch.no_grad():
        samples = model.sample(64)                                     # means of p(x | z), z ~ p(z)
        x = data.test[:12]
        q = model.encode(x)
        rec = model.decode({"z": q["z"].mean}).mean                   # decoded posterior means
    _grid_png(as_images(samples, shape), out / "samples.png", 8,
              f"64 samples (mean of p(x|z), z ~ N(0, I)), {s['epochs']} epochs")
    pairs = np.concatenate([as_images(x, shape), as_images(rec, shape)])
    _grid_png(pairs, out / "reconstructions.png", 12, "test digits (top) and their reconstructions (bottom)", 1.4)
    torch.manual_seed(2)
    with torch.no_grad():
        q_all = model.encode(data.test[:2000])["z"]
        per_dim_kl = torch.distributions.kl_divergence(
            torch.distributions.Normal(q_all.mean, q_all.stddev), torch.distributions.Normal(0.0, 1.0)).mean(0)
    dims = per_dim_kl.argsort(descending=True)[:8].tolist()            # the 8 most used dimensions
    offsets = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]
    with torch.no_grad():
        trav = latent_traversal(model, data.test[3:4], "z", dims, offsets)   # (8, 7, 784)
    _grid_png(as_images(trav.reshape(-1, *shape), shape), out / "traversals.png", len(offsets),
              "traversals: one row per latent dimension (the 8 with the largest KL), offsets -3..3", 1.2)

    t1 = time.time()
    col = inference_gaps(model, data.test[:g["n_points"]], iwae_k=g["iwae_k"], local_opt=g["local_opt"],
                         ais={"n_chains": g["ais_chains"], "n_steps": g["ais_steps"]},
                         local_opt_kwargs={"max_steps": g["local_opt_steps"]}, label="q_FFG", force=True)
    return {"gap_table": gap_table([col]), "train_seconds": round(train_s, 1), "gaps_seconds": round(time.time() - t1, 1),
            "traversal_dims": dims, "gap_column": col.to_dict()}


def embedding_picture(out: Path) -> dict:
    """embedding.png: a 2-D VAEEmbedder map of MNIST test digits (not seen in fitting)."""
    s = SETTINGS["embedding"]
    mnist = MNIST(flatten=True, val_size=0)
    mnist.setup()
    X = mnist.train[:10000].numpy()
    t0 = time.time()
    emb = vaekit.VAEEmbedder(n_components=2, max_epochs=s["max_epochs"], random_state=0, tensorboard=False).fit(X)
    fit_s = time.time() - t0
    Z = emb.transform(mnist.test[: s["n_plot"]].numpy())
    labels = mnist.test_labels[: s["n_plot"]].numpy()
    ax = vaekit.plot.embedding(Z, labels, title=f"VAEEmbedder: {s['n_plot']} MNIST test digits (fitted on 10,000 "
                                                f"training digits, {s['max_epochs']} epochs at most)")
    _save(ax.figure, out / "embedding.png")
    return {"fit_seconds": round(fit_s, 1), "epochs_run": int(emb.n_iter_), "stop_reason": str(emb.stop_reason_)}


def group_effects_picture(out: Path, workdir: Path) -> dict:
    """group_effects.png: school intercepts of a random-intercept GroupPredictor against MixedLM's BLUPs."""
    import statsmodels.api as sm

    s = SETTINGS["group_effects"]
    data = HighSchoolBeyond(split="example", standardize=True, standardize_y=True, val_fraction=0.0, seed=0)
    data.setup()
    torch.manual_seed(0)
    model = GroupPredictor.from_data(data, LinearPredictor(data.train["x"].shape[1]), likelihood="gaussian_learned",
                                     latent_features=1, injection="bias", prior="learned")
    t0 = time.time()
    vaekit.Trainer(max_epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], lr_schedule="cosine",
                   lr_multipliers={"latent": 10.0}, progress_bar=False, root_dir=str(workdir), seed=0).fit(model, data)
    train_s = time.time() - t0
    effects = model.group_effects(data)[:, 0].numpy()                   # outcome units (math achievement)
    x, groups = data.train["x"].numpy(), data.train["groups"].numpy()
    y_raw = data.unstandardize_y(data.train["y"]).numpy()
    fit = sm.MixedLM(y_raw.astype(float), sm.add_constant(x.astype(float)), groups=groups[:, 0]).fit()   # REML
    blup = np.full(len(effects), np.nan)
    for gid, re in fit.random_effects.items():
        blup[int(gid)] = float(np.asarray(re)[0])
    n = np.bincount(groups[:, 0], minlength=len(effects))
    ok = np.isfinite(effects) & np.isfinite(blup)
    corr = float(np.corrcoef(effects[ok], blup[ok])[0, 1])
    vc = model.variance_components(data)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    sc = ax.scatter(blup[ok], effects[ok], c=n[ok], cmap="viridis", s=18)
    lim = [min(blup[ok].min(), effects[ok].min()) - 0.5, max(blup[ok].max(), effects[ok].max()) + 0.5]
    ax.plot(lim, lim, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("MixedLM (REML) school intercept (BLUP), points")
    ax.set_ylabel("vaekit GroupPredictor school effect, points")
    ax.set_title(f"High School and Beyond: {ok.sum()} schools, correlation {corr:.4f}", fontsize=9)
    fig.colorbar(sc, ax=ax, label="students in training")
    _save(fig, out / "group_effects.png")
    return {"train_seconds": round(train_s, 1), "corr_with_mixedlm": round(corr, 4),
            "tau2_vaekit": round(float(next(iter(vc.between.values()))), 3),
            "tau2_mixedlm": round(float(np.asarray(fit.cov_re)[0, 0]), 3),
            "sigma2_vaekit": round(float(vc.residual), 3), "sigma2_mixedlm": round(float(fit.scale), 3)}


def data_efficiency_picture(out: Path, workdir: Path) -> dict:
    """data_efficiency.png: RMSE on held-out schools vs the k students used to infer each school's latent."""
    s = SETTINGS["data_efficiency"]
    data = HighSchoolBeyond(split="group", standardize=True, standardize_y=True, test_fraction=0.25, seed=0)
    data.setup()
    torch.manual_seed(0)
    model = GroupPredictor.from_data(data, MLPPredictor(data.train["x"].shape[1], 1, hidden=[32, 32]),
                                     likelihood="gaussian_learned", latent_features=2, injection="factor",
                                     prior="learned")
    t0 = time.time()
    vaekit.Trainer(max_epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], lr_multipliers={"latent": 10.0},
                   progress_bar=False, root_dir=str(workdir), seed=0).fit(model, data)
    train_s = time.time() - t0
    rows = data_efficiency_curve(model, data.test, ks=s["ks"], methods=("prior", "optimize"), steps=s["steps"],
                                 max_groups=s["max_groups"], shuffles=s["shuffles"])
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for method, colour in (("prior", "grey"), ("optimize", "C0")):
        r = [row for row in rows if row["method"] == method]
        ks = [row["k"] for row in r]
        a1.errorbar(ks, [row["value"] for row in r], yerr=[row["stderr"] for row in r], marker="o", color=colour,
                    capsize=3, label="prior mean (no group information)" if method == "prior" else
                    "posterior inferred from k students")
        if method == "optimize":
            a2.errorbar(ks, [row["gain"] for row in r], yerr=[row["gain_stderr"] for row in r], marker="o",
                        color=colour, capsize=3)
    a2.axhline(0.0, color="grey", lw=0.8, ls="--")
    for a in (a1, a2):
        a.set_xscale("log")
        a.set_xticks(s["ks"], [str(k) for k in s["ks"]])
        a.set_xlabel("k: students of the new school used to infer it")
    a1.set_ylabel(f"RMSE ({rows[0]['metric']}, standardized units)" if rows[0]["metric"] != "rmse" else
                  "RMSE on the school's other students (standardized)")
    a2.set_ylabel("RMSE gain over the prior mean (> 0: better)")
    a1.legend(fontsize=8)
    fig.suptitle(f"New schools: {rows[0]['n_groups']} schools held out of training, {s['shuffles']} shuffles each",
                 fontsize=9)
    _save(fig, out / "data_efficiency.png")
    return {"train_seconds": round(train_s, 1), "rows": rows}


def _write_gap_table(page: Path, table: str) -> None:
    """Put ``table`` between the ``<!-- gallery:gaps -->`` markers of the gallery page."""
    text = page.read_text(encoding="utf-8")
    start, end = "<!-- gallery:gaps -->\n", "<!-- /gallery:gaps -->"
    if start not in text or end not in text:
        raise ValueError(f"{page} has no {start.strip()} ... {end} block for the gap table")
    head, rest = text.split(start, 1)
    page.write_text(head + start + table.rstrip("\n") + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(HERE / "gallery"), help="folder for the pictures (default docs/gallery)")
    p.add_argument("--only", nargs="*", choices=["vae", "embedding", "group_effects", "data_efficiency"],
                   help="draw only these (default: all)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record_path = out / "gallery.json"
    record = json.loads(record_path.read_text()) if record_path.exists() and args.only else {}
    record.update({"settings": SETTINGS, "machine": {"python": platform.python_version(), "torch": torch.__version__,
                                                    "threads": torch.get_num_threads(), "vaekit": vaekit.__version__}})
    sections = {"vae": vae_pictures, "embedding": embedding_picture, "group_effects": group_effects_picture,
                "data_efficiency": data_efficiency_picture}
    t_all = time.time()
    with tempfile.TemporaryDirectory() as work:
        for name, fn in sections.items():
            if args.only and name not in args.only:
                continue
            t0 = time.time()
            res = fn(out) if name == "embedding" else fn(out, Path(work) / name)
            res["seconds"] = round(time.time() - t0, 1)
            record[name] = res
            print(f"{name}: {res['seconds']} s", flush=True)
    record["total_seconds"] = round(time.time() - t_all, 1)
    if "vae" in record and out.resolve() == (HERE / "gallery").resolve():
        _write_gap_table(HERE / "gallery.md", record["vae"]["gap_table"])
    record_path.write_text(json.dumps(record, indent=1, default=float) + "\n")
    print(f"wrote {out} in {record['total_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
