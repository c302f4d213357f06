"""The ``vdvae/binarized_mnist`` row: the test log-likelihood of a trained VDVAE run, by IWAE.

Reads a run directory written by ``vaekit fit`` with a VDVAE config on binarized MNIST
(``examples/configs/vdvae_binarized_mnist_cpu.yaml``, sized for one CPU core, or the published
layout ``vdvae_binarized_mnist.yaml`` on a GPU), estimates :math:`\\log p(x)` of test images by IWAE
with ``k`` importance samples (the test images in chunks, each cached as it finishes, so that a
killed evaluation resumes where it stopped), and writes:

- the rows ``vdvae/binarized_mnist`` (quantities ``log_px`` and ``elbo``) into
  ``benchmarks/results/reproductions.json`` and its rendering ``reproductions.md`` (the row format of
  ``reproduce_cremer2018.py``; Efficient-VDVAE reports 79.09 nats, the issue's goal is under 82);
- ``benchmarks/results/vdvae_binarized_mnist_<cpu|cuda>.md``: the settings, the parameters, the
  training samples per second, the training curve (the validation ELBO at every validation) and the
  estimate.

The run may still be training: the weights are the checkpoint asked for (``--checkpoint``, the best
validation ELBO by default) as it is when the script starts, and the rows say its step and epoch.

Usage::

    python benchmarks/reproduce_vdvae.py RUN_DIR                       # k=1000, all 10,000 test images
    python benchmarks/reproduce_vdvae.py RUN_DIR --n-points 1000 --threads 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from provenance import git_commit  # sibling modules (benchmarks/ is on sys.path when a script in it runs)
from reproduce_cremer2018 import BINARIZATION, device_name, merge_rows, render

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
EXPERIMENT = "vdvae/binarized_mnist"
#: Efficient-VDVAE (Hazami et al., 2022), binarized MNIST: negative log-likelihood 79.09 nats.
PAPER_LOG_PX = -79.09
GOAL_LOG_PX = -82.0  # issue 14: "the goal is < 82 nats"


def check_vdvae(model: torch.nn.Module) -> None:
    """Refuse a model that is not a VDVAE-class model: a hierarchical VAE with at least one spatial (C, H, W) latent
    (``vdvae(...)``, the Efficient-VDVAE port, or one composed from blocks), naming what it is instead."""
    from vaekit.models.hierarchical import HierarchicalVAE

    shapes = {name: getattr(model.blocks[name], "latent_shape", None) for name in getattr(model, "latent_names", ())} \
        if isinstance(model, HierarchicalVAE) else {}
    if not any(shape is not None and len(shape) == 3 for shape in shapes.values()):
        what = (f"a HierarchicalVAE whose latents are all vectors ({shapes})" if isinstance(model, HierarchicalVAE)
                else f"a {type(model).__name__}")
        raise SystemExit(f"the run's model is {what}; the {EXPERIMENT} row needs a VDVAE-class model: a hierarchical "
                         "VAE with spatial (C, H, W) latents, e.g. vaekit.models.hierarchical.vdvae")


def check_args(args: argparse.Namespace) -> None:
    """Every argument checked before any file is read or written (a clear error naming it)."""
    for name in ("iwae_k", "chunk_points", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.n_points is not None and args.n_points < 1:
        raise SystemExit(f"--n-points must be a positive integer (or left out: every test image), got {args.n_points}")
    if args.seed < 0:
        raise SystemExit(f"--seed must be >= 0, got {args.seed}")
    run = Path(args.run_dir)
    if not (run / "config.yaml").is_file() or not (run / "metrics.csv").is_file():
        raise SystemExit(f"run_dir {str(run)!r} is not a vaekit run directory (it needs config.yaml and metrics.csv, "
                         "as `vaekit fit` writes them)")
    cfg = yaml.safe_load((run / "config.yaml").read_text()) or {}
    data = (cfg.get("data") or {}).get("class_path", "")
    if data.rpartition(".")[2] != "BinarizedMNIST":
        raise SystemExit(f"run_dir {str(run)!r} was trained on {data or 'no data class'}; the {EXPERIMENT} row needs "
                         "a run on vaekit.data.BinarizedMNIST")


def load_checkpoint(run: Path, which: str, device: str, tries: int = 5) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model of ``run`` with the weights of its ``which`` checkpoint, and what identifies them: the file, the
    SHA-256 of the weights actually loaded (the key of the cached chunks), the step and epoch they were saved at.

    ``best`` falls back to ``last`` when the run has no ``best.safetensors`` (as :func:`vaekit.load`). A damaged
    weights file (its SHA-256 differs from the manifest's) is refused, not replaced by the other checkpoint. A run
    still training may rewrite its checkpoint meanwhile: the read is repeated (up to ``tries`` times) until the
    manifest and the weights file are the same before and after it."""
    from vaekit.runs import load
    from vaekit.training.checkpoint import CorruptFileError, _read_manifest, _sha256, verify_file

    if which == "best" and not (run / "checkpoints" / "best.safetensors").is_file():
        which = "last"
    weights, ckpt = run / "checkpoints" / f"{which}.safetensors", run / "checkpoints" / f"{which}.ckpt"
    if not weights.is_file() or not ckpt.is_file():
        raise SystemExit(f"{run} has no {which} checkpoint ({weights.name} and {ckpt.name}): the run never reached one")
    for _ in range(tries):
        before = (_read_manifest(run / "checkpoints"), _sha256(weights))
        try:
            verify_file(weights, "weights file")  # (then vaekit.load has no reason to fall back to other weights)
            loop = torch.load(ckpt, weights_only=True, map_location="cpu", mmap=True)["loop"]  # (mmap: reads little)
            model = load(run, checkpoint=which, device=device)
        except CorruptFileError as err:
            if (_read_manifest(run / "checkpoints"), _sha256(weights)) == before:
                raise SystemExit(f"{weights} cannot be used: {err}") from None
            pass  # the files changed meanwhile (a save in progress): read again below
        after = (_read_manifest(run / "checkpoints"), _sha256(weights))
        if before == after:
            return model, {"checkpoint": which, "sha256": after[1], "step": int(loop["global_step"]),
                           "epoch": int(loop["epoch"])}
        time.sleep(2.0)  # a save in progress: read again once it is done
    raise SystemExit(f"{run}: the {which} checkpoint kept changing while it was read ({tries} tries); try again")


def training_curve(run: Path, until_step: int | None = None) -> dict[str, Any]:
    """From the run's ``metrics.csv``: the validation ELBO at every validation, the training time (the sum over
    the logged windows of samples / samples_per_s, so right across resumes and kills; the loop's rate of a window
    that holds a validation, or a pause of the process, counts that time too) and the median rate of the windows
    (which such windows do not move), up to ``until_step`` (the checkpoint's). A last line without its newline (a
    run still training is writing it) is left out by ``read_metrics``, even when what was written of it parses."""
    from vaekit.training import read_metrics

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    batch, every = int(cfg["trainer"]["batch_size"]), int(cfg["trainer"].get("log_every_steps", 50))
    curve: list[tuple[int, int, float]] = []
    rates: list[float] = []
    for row in read_metrics(run / "metrics.csv"):  # (without a torn last line, even one that parses)
        if until_step is not None and row["step"] > until_step:
            continue
        if row["split"] == "val" and row["name"] == "elbo":
            curve.append((row["step"], row["epoch"], row["value"]))
        elif row["split"] == "train" and row["name"] == "samples_per_s" and row["value"] > 0:
            rates.append(row["value"])
    return {"val_elbo": curve, "train_s": sum(every * batch / r for r in rates),
            "samples_per_s": statistics.median(rates) if rates else None, "batch_size": batch}


def chunk_path(cache_dir: Path, run: Path, state: dict[str, Any], k: int, n: int, seed: int, device_type: str,
               index: int, size: int) -> Path:
    """The cache file of one chunk of test images, named by everything that changes its numbers (the weights by
    their SHA-256; the file also holds this key, checked when it is read)."""
    return cache_dir / (f"{run.parent.name}-{run.name}-{state['sha256'][:16]}-k{k}-n{n}-seed{seed}-{device_type}-"
                        f"chunk{index:04d}of{size}.pt")


def chunk_key(state: dict[str, Any], k: int, n: int, seed: int, device_type: str, index: int, size: int,
              **_: Any) -> dict[str, Any]:
    return {"sha256": state["sha256"], "k": k, "n": n, "seed": seed, "device_type": device_type, "index": index,
            "size": size}


def estimate(model: torch.nn.Module, x: torch.Tensor, *, k: int, seed: int, chunk_points: int, cache: Path | None,
             key: dict[str, Any], device: str, log=print) -> dict[str, Any]:
    """IWAE over the rows of ``x`` chunk by chunk (chunk i seeded with ``seed`` and i); per-example values."""
    from vaekit.inference import iwae_log_likelihood

    n = x.shape[0]
    per, elbo, seconds = [], [], 0.0
    starts = range(0, n, chunk_points)
    for i, start in enumerate(starts):
        path = None if cache is None else chunk_path(cache, index=i, size=chunk_points, **key)
        want = chunk_key(index=i, size=chunk_points, **key)
        rows = min(chunk_points, n - start)
        if path is not None and path.is_file():
            try:
                d = torch.load(path, weights_only=True)
                if d["key"] != want or d["per_example"].numel() != rows:
                    raise ValueError(f"it holds {d['key']} ({d['per_example'].numel()} images)")
                per.append(d["per_example"])
                elbo.append(d["elbo_per_example"])
                seconds += float(d["seconds"])
                continue
            except Exception as err:  # noqa: BLE001 - an unreadable or foreign chunk is computed again, loudly
                log(f"WARNING: cache file {path} could not be used ({type(err).__name__}: {str(err)[:200]}); "
                    "computing it again")
        torch.manual_seed(seed * 1_000_003 + i)
        t0 = time.perf_counter()
        res = iwae_log_likelihood(model, x[start:start + chunk_points], k=k, device=device)
        took = time.perf_counter() - t0
        per.append(res.per_example.cpu())
        elbo.append(res.elbo_per_example.cpu())
        seconds += took
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            torch.save({"key": want, "per_example": per[-1], "elbo_per_example": elbo[-1], "seconds": took}, tmp)
            tmp.replace(path)  # a killed job leaves no half-written chunk
        log(f"chunk {i + 1}/{len(starts)}: IWAE {float(per[-1].mean()):.2f} over {per[-1].numel()} images "
            f"in {took:.0f} s")
    per_t, elbo_t = torch.cat(per).double(), torch.cat(elbo).double()
    se = lambda t: float(t.std() / math.sqrt(t.numel())) if t.numel() > 1 else None  # noqa: E731
    return {"log_px": float(per_t.mean()), "log_px_se": se(per_t), "elbo": float(elbo_t.mean()), "elbo_se": se(elbo_t),
            "n": int(per_t.numel()), "seconds": seconds}


def rows_for(result: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The two rows of the reproductions table."""
    common = {k: meta[k] for k in ("n_points", "epochs", "device", "wall_s", "command", "commit", "date", "run",
                                   "params", "samples_per_s", "steps")}
    common.update(experiment=EXPERIMENT, paper_epochs=None, binarization=BINARIZATION)
    goal = "meets" if result["log_px"] > GOAL_LOG_PX else "misses"
    note = (f"{meta['layout']}, {meta['params']:,} parameters, {meta['epochs']:g} epochs ({meta['checkpoint']} "
            f"checkpoint, step {meta['steps']}); {goal} the goal log p > {GOAL_LOG_PX:g}")
    if meta["n_points"] < meta["n_test"]:
        note += f"; {meta['n_points']} of the {meta['n_test']} test images (seeded draw)"
    return [
        {**common, "quantity": "log_px", "paper": PAPER_LOG_PX, "vaekit": round(result["log_px"], 4),
         "stderr": None if result["log_px_se"] is None else round(result["log_px_se"], 4),
         "estimator": f"IWAE k={meta['k']}", "note": note},
        {**common, "quantity": "elbo", "paper": None, "vaekit": round(result["elbo"], 4),
         "stderr": None if result["elbo_se"] is None else round(result["elbo_se"], 4),
         "estimator": f"ELBO: the mean of the k={meta['k']} log-weights of the IWAE pass per image", "note": note},
    ]


def report(result: dict[str, Any], meta: dict[str, Any], curve: list[tuple[int, int, float]]) -> str:
    """The results page: settings, what was measured and the training curve."""
    lines = [f"# VDVAE on binarized MNIST ({meta['device_type']})", "",
             f"- date {meta['date']}, commit {meta['commit']}, `{meta['command']}`",
             f"- device: {meta['device']}, torch {torch.__version__}",
             f"- run `{meta['run']}` ({meta['layout']}): {meta['params']:,} parameters; weights of the "
             f"{meta['checkpoint']} checkpoint (the EMA's, where the run keeps one), step {meta['steps']:,}, "
             f"epoch {meta['epochs']:g}",
             f"- training: {meta['train_s'] / 3600:.1f} h (from the logged samples/s, validations and pauses included), "
             + (f"{meta['samples_per_s']:,.0f} samples/s (the median of the loop's logged windows; batch "
                f"{meta['batch_size']})"
                if meta["samples_per_s"] else "no rate logged"),
             f"- data: {BINARIZATION}; {meta['n_points']} of the {meta['n_test']} test images"
             + (" (a seeded draw)" if meta["n_points"] < meta["n_test"] else ""),
             f"- estimate: IWAE with k={meta['k']} per image, in chunks of {meta['chunk_points']} images "
             f"({result['seconds']:.0f} s of estimation)", "",
             "| quantity | vaekit | ± (standard error over images) | Efficient-VDVAE | goal |",
             "|---|---|---|---|---|",
             f"| log p(x), IWAE k={meta['k']} | {result['log_px']:.2f} | {_fmt(result['log_px_se'])} | "
             f"{PAPER_LOG_PX:.2f} | > {GOAL_LOG_PX:g} |",
             f"| ELBO | {result['elbo']:.2f} | {_fmt(result['elbo_se'])} | | |", "",
             "## Training curve (validation ELBO, nats)", ""]
    if curve:
        lines += ["| step | epoch | validation ELBO |", "|---|---|---|"]
        lines += [f"| {s:,} | {e} | {v:.2f} |" for s, e, v in curve]
    else:
        lines.append("No validation was logged.")
    return "\n".join(lines) + "\n"


def layout(cfg: dict[str, Any]) -> str:
    """The model's layout in a few words, from the run's config (its VDVAE layer strings, or its class)."""
    model = cfg.get("model") or {}
    a = model.get("init_args") or {}
    if "enc_blocks" in a and "dec_blocks" in a:
        return f"enc_blocks {a['enc_blocks']}, dec_blocks {a['dec_blocks']}"
    if a.get("layout"):
        return f"layout {a['layout']}"
    return str(model.get("class_path", "unknown model")).rpartition(".")[2]


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory of `vaekit fit` with a VDVAE config on binarized MNIST")
    p.add_argument("--iwae-k", type=int, default=1000, help="importance samples per image (default 1000)")
    p.add_argument("--n-points", type=int, default=None, help="test images (default: all; fewer: a seeded draw)")
    p.add_argument("--chunk-points", type=int, default=250, help="test images per cached chunk (default 250)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where finished chunks are kept (default: <run_dir>/eval/vdvae_iwae_chunks)")
    p.add_argument("--out-dir", type=Path, default=RESULTS,
                   help="where vdvae_binarized_mnist_<device>.md and reproductions.{json,md} are written")
    args = p.parse_args(argv)
    check_args(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from vaekit.runs import load_data

    run = Path(args.run_dir).resolve()
    training_curve(run)  # (before the estimation: a damaged metrics.csv stops here, not after hours)
    model, state = load_checkpoint(run, args.checkpoint, args.device)
    check_vdvae(model)
    curve = training_curve(run, until_step=state["step"])
    data = load_data(run)
    data.setup()
    x_test = data.test
    n_test = int(x_test.shape[0])
    n = n_test if args.n_points is None else min(args.n_points, n_test)
    if n < n_test:  # spread over the test set, in the set's order
        idx = torch.randperm(n_test, generator=torch.Generator().manual_seed(args.seed))[:n].sort().values
        x_test = x_test[idx]
    cache = args.cache_dir if args.cache_dir is not None else run / "eval" / "vdvae_iwae_chunks"
    device_type = torch.device(args.device).type
    key = {"run": run, "state": state, "k": args.iwae_k, "n": n, "seed": args.seed, "device_type": device_type}
    print(f"{run}: {state['checkpoint']} checkpoint at step {state['step']} (weights {state['sha256'][:16]}); "
          f"IWAE k={args.iwae_k} over {n} test images", flush=True)
    result = estimate(model, x_test, k=args.iwae_k, seed=args.seed, chunk_points=args.chunk_points, cache=cache,
                      key=key, device=args.device, log=lambda m: print(m, flush=True))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    n_train = int(data.train.shape[0])
    threads = args.threads if args.threads is not None else torch.get_num_threads()
    meta = {
        "n_points": n, "n_test": n_test, "k": args.iwae_k, "chunk_points": args.chunk_points,
        "epochs": round(state["step"] * curve["batch_size"] / n_train, 2), "steps": state["step"],
        "checkpoint": state["checkpoint"], "device": device_name(args.device, threads), "device_type": device_type,
        "wall_s": round(curve["train_s"] + result["seconds"]), "train_s": curve["train_s"],
        "samples_per_s": None if curve["samples_per_s"] is None else round(curve["samples_per_s"], 1),
        "batch_size": curve["batch_size"],
        "command": "python benchmarks/" + Path(__file__).name + " " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None else argv)),
        "commit": git_commit(length=12, missing="unknown"), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "run": f"{run.parent.name}/{run.name}", "params": sum(p.numel() for p in model.parameters()),
        "layout": layout(cfg),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    page = args.out_dir / f"vdvae_binarized_mnist_{device_type}.md"
    page.write_text(report(result, meta, curve["val_elbo"]))
    rows = merge_rows(args.out_dir / "reproductions.json", rows_for(result, meta))
    (args.out_dir / "reproductions.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out_dir / "reproductions.md").write_text(render(rows, "Paper-scale reproductions"))
    print(f"log p(x) {result['log_px']:.2f} ± {_fmt(result['log_px_se'])} (ELBO {result['elbo']:.2f}) over {n} test "
          f"images; wrote {page} and {args.out_dir / 'reproductions.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
