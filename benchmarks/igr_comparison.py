"""Gumbel-Softmax vs IGR-I vs IGR-Planar vs IGR-SB discrete VAEs (Potapczynski et al. 2020, Table 1).

Every method is a categorical VAE (30 variables x 10 categories; 20 x 10 with ``--short``) with a
784-512-256 ReLU encoder and mirrored decoder (vaekit.models.discrete.discrete_vae), trained on the relaxed ELBO at each
temperature of the grid on binarized MNIST and Fashion-MNIST (binarized once with a fixed seed).
Reported per (dataset, method, temperature): the test log-likelihood of the *discrete* model by
importance sampling with one-hot decoding (DiscreteVAE.log_weights through
vaekit.inference.iwae_log_likelihood), the discrete ELBO (k=1 of the same weights) and the
relaxed ELBO the model was trained on. The paper's claim: every IGR variant beats
Gumbel-Softmax at its best temperature.

    python benchmarks/igr_comparison.py            # the paper's code's budget (100 epochs, lr 1e-3, batch 64, 7 temperatures)
    python benchmarks/igr_comparison.py --short    # a CPU check in under 15 minutes (see SHORT below)

Writes benchmarks/results/igr_comparison_<cpu|gpu>.md and .json naming the machine, or with ``--short``
igr_comparison_<cpu|gpu>_short.md and .json (a short run never overwrites the full results); ``--out STEM``
writes STEM.md and STEM.json instead. Both files are rewritten after every (dataset, method,
temperature) model, keeping the models of other runs with the same settings already there
(several runs may share the file: each write is locked and atomic), so a grid that takes hours
can be run a few models at a time (``--methods``, ``--temperatures``, one process per core);
``--resume`` skips the selected models the file already holds (after a killed job). A file of
other settings is refused (``--fresh`` replaces it).

A full run also writes each finished model as a row ``igr2020/<dataset>/<method>/tau=<t>``,
quantity ``test_ll``, of ``--reproductions DIR/reproductions.json`` (default benchmarks/results;
rendered to ``reproductions.md`` by ``reproduce_cremer2018.render``), as the paper-scale
reproductions issue asks; ``--reproductions none`` skips that.

    python benchmarks/igr_comparison.py --datasets binarized_mnist --methods gs --temperatures 0.1 0.25 0.5 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from provenance import git_commit  # sibling modules (benchmarks/ is on sys.path when a script in it runs)
from reproduce_cremer2018 import merge_rows, render
from vaekit.data import BinarizedMNIST, FashionMNIST
from vaekit.inference import iwae_log_likelihood
from vaekit.models.discrete import discrete_vae
from vaekit.training.rundir import atomic_write

METHODS = ["gs", "igr_i", "igr_planar", "igr_sb"]
PAPER_TEMPERATURES = [0.03, 0.07, 0.1, 0.15, 0.25, 0.5, 0.67]
#: The paper's code (github.com/cunningham-lab/igr, vae_experiments/discrete_grid.py and cv_grid.py, the hyper-parameters
#: of its Table 1 runs): 30 discrete variables of 10 categories, Adam at lr 1e-3, batch 64, 100 epochs.
FULL = {"temperatures": PAPER_TEMPERATURES, "epochs": 100, "lr": 1e-3, "batch_size": 64, "n_variables": 30,
        "n_train": None, "n_test": 10000, "k": 1000}
SHORT = {"temperatures": [0.1, 0.5], "epochs": 1, "lr": 1e-3, "batch_size": 100, "n_variables": 20, "n_train": 6000,
         "n_test": 300, "k": 100}


def machine() -> str:
    name = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), name)
    except (OSError, subprocess.SubprocessError):
        pass
    if torch.cuda.is_available():
        name = f"{torch.cuda.get_device_name(0)} (host CPU: {name})"
    return f"{name}; torch {torch.__version__}; {torch.get_num_threads()} threads"


def load(dataset: str, n_train: int | None, n_test: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = BinarizedMNIST(flatten=True) if dataset == "binarized_mnist" else FashionMNIST(binarize="dynamic", flatten=True)
    data.setup()
    train, test = data.train, data.test[:n_test]
    if dataset != "binarized_mnist":  # one fixed binarization of the training split, as the test split already has
        train = torch.bernoulli(train, generator=torch.Generator().manual_seed(0))
    return (train if n_train is None else train[:n_train]), test


def run_one(method: str, tau: float, train: torch.Tensor, test: torch.Tensor, cfg: dict, device: torch.device,
            seed: int) -> dict:
    torch.manual_seed(seed)
    model = discrete_vae([784], n_variables=cfg["n_variables"], n_categories=10, hidden=(512, 256), relaxation=method,
                         temperature=tau).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    train = train.to(device)
    start = time.perf_counter()
    for _ in range(cfg["epochs"]):
        for idx in torch.randperm(len(train), device=device).split(cfg["batch_size"]):
            loss = -model.elbo_terms(train[idx]).elbo.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    train_s = time.perf_counter() - start
    model.eval()
    test = test.to(device)
    with torch.no_grad():
        relaxed = torch.cat([model.relaxed_elbo(b) for b in test.split(500)]).mean().item()
        discrete_kl = torch.cat([model.discrete_kl(b) for b in test.split(500)]).mean().item()
    start = time.perf_counter()
    res = iwae_log_likelihood(model, test, k=cfg["k"], batch_size=100)
    return {"method": method, "temperature": tau, "test_ll": res.mean, "test_ll_stderr": res.stderr,
            "discrete_elbo": res.elbo, "relaxed_elbo": relaxed, "discrete_kl": discrete_kl, "train_seconds": train_s,
            "eval_seconds": time.perf_counter() - start}


def table(rows: list[dict]) -> str:
    lines = ["| dataset | method | temperature | test LL (IS, discrete) | discrete ELBO | relaxed ELBO | discrete KL |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['method']} | {r['temperature']} | {r['test_ll']:.2f} ± {r['test_ll_stderr']:.2f} "
                     f"| {r['discrete_elbo']:.2f} | {r['relaxed_elbo']:.2f} | {r['discrete_kl']:.2f} |")
    return "\n".join(lines)


def best_per_method(rows: list[dict]) -> str:
    lines = ["| dataset | method | best temperature | test LL | beats GS at its best? |", "|---|---|---|---|---|"]
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        best = {m: max((r for r in rows if r["dataset"] == dataset and r["method"] == m), key=lambda r: r["test_ll"])
                for m in METHODS if any(r["method"] == m and r["dataset"] == dataset for r in rows)}
        gs = best.get("gs")
        for m, r in best.items():
            verdict = "" if m == "gs" or gs is None else ("yes" if r["test_ll"] > gs["test_ll"] else "no")
            lines.append(f"| {dataset} | {m} | {r['temperature']} | {r['test_ll']:.2f} ± {r['test_ll_stderr']:.2f} | {verdict} |")
    return "\n".join(lines)


def results_name(kind: str, short: bool) -> str:
    """The default results stem: ``igr_comparison_<cpu|gpu>``, with ``_short`` for a short run.

    >>> results_name("cpu", True), results_name("gpu", False)
    ('igr_comparison_cpu_short', 'igr_comparison_gpu')
    """
    return f"igr_comparison_{kind}{'_short' if short else ''}"


#: What the reproductions table says about every IGR row (the paper's table is not quoted: ``paper`` is None).
BINARIZATION = {"binarized_mnist": "static: vaekit's seeded BinarizedMNIST set (shared/data/binarized_mnist; 50k train / "
                                   "10k val / 10k test)",
                "fashion_mnist": "Fashion-MNIST, training images binarized once (seed 0), test images by the loader"}


def reproduction_row(r: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``reproductions.json`` row (quantity ``test_ll``) of a finished model, with its own provenance."""
    return {"experiment": f"igr2020/{r['dataset']}/{r['method']}/tau={r['temperature']:g}", "quantity": "test_ll",
            "paper": None, "vaekit": round(r["test_ll"], 4), "stderr": round(r["test_ll_stderr"], 4),
            "n_points": r["n_test"], "epochs": cfg["epochs"], "paper_epochs": FULL["epochs"],
            "device": r["machine"], "wall_s": round(r["train_seconds"] + r["eval_seconds"]),
            "command": r["command"], "commit": r["commit"], "date": r["date"],
            "binarization": BINARIZATION[r["dataset"]],
            "estimator": f"importance sampling, k={cfg['k']}, one-hot decoding, proposal = the implied categorical "
                         "posterior mixed with 0.1% uniform; exact discrete prior",
            "run": "—", "note": f"{cfg['n_variables']} x 10 categorical, lr {cfg['lr']:g}, batch {cfg['batch_size']}; "
                                "the discrete model's log-likelihood"}


def check_temperatures(values: list[float]) -> list[float]:
    bad = [v for v in values if not (v > 0 and v == v and v != float("inf"))]
    if bad:
        raise SystemExit(f"--temperatures must be finite and > 0, got {bad}")
    return list(dict.fromkeys(values))


def key(r: dict[str, Any]) -> tuple[str, str, float]:
    return r["dataset"], r["method"], r["temperature"]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock (``fcntl.flock`` of ``path`` + ``.lock``) while a file is read, merged and written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / (path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def replace_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (vaekit's run-directory writer): a reader never sees half a file."""
    atomic_write(path, lambda f: f.write(text.encode()))


def stored(json_path: Path) -> dict[str, Any] | None:
    return json.loads(json_path.read_text()) if json_path.is_file() else None


#: Settings that were fixed in the script before they became settings (files written then lack them).
LEGACY = {"batch_size": 100, "n_variables": 20}


def same_run(data: dict[str, Any], mode: str, settings: dict[str, Any], seed: int) -> bool:
    """Whether a results file holds models of these settings (the temperatures aside)."""
    return data.get("mode") == mode and data.get("seed", 0) == seed and \
        {k: v for k, v in {**LEGACY, **data.get("settings", {})}.items() if k != "temperatures"} == settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="CPU check: 2 temperatures, 1 epoch on 6000 images, 300 test images")
    parser.add_argument("--datasets", nargs="+", default=["binarized_mnist", "fashion_mnist"],
                        choices=["binarized_mnist", "fashion_mnist"])
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--temperatures", nargs="+", type=float, default=None,
                        help=f"default: the paper's grid {PAPER_TEMPERATURES} (with --short {SHORT['temperatures']})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="results file stem (default benchmarks/results/"
                        "igr_comparison_<device>, with --short igr_comparison_<device>_short)")
    parser.add_argument("--resume", action="store_true",
                        help="skip the selected models already in the results file (default: train them again)")
    parser.add_argument("--fresh", action="store_true",
                        help="replace a results file that holds other settings (default: refuse it)")
    parser.add_argument("--reproductions", default=str(Path(__file__).parent / "results"),
                        help="folder of reproductions.json, where a full run adds each model's row ('none': not written)")
    args = parser.parse_args(argv)
    cfg = dict(SHORT if args.short else FULL)
    if args.temperatures is not None:
        cfg["temperatures"] = check_temperatures(args.temperatures)
    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    kind = "gpu" if torch.cuda.is_available() else "cpu"
    mode = "short" if args.short else "full"
    stem = Path(args.out) if args.out else Path(__file__).parent / "results" / results_name(kind, args.short)
    json_path, md_path = stem.parent / (stem.name + ".json"), stem.parent / (stem.name + ".md")  # a stem may hold a dot
    settings = {k: v for k, v in cfg.items() if k != "temperatures"}
    old = stored(json_path)
    if old is not None and not args.fresh and not same_run(old, mode, settings, args.seed):
        raise SystemExit(f"{json_path} holds a run with other settings ({old.get('mode')}, "
                         f"{ {k: v for k, v in {**LEGACY, **old.get('settings', {})}.items() if k != 'temperatures'} }, seed "
                         f"{old.get('seed', 0)}); pass --out to write elsewhere, or --fresh to replace it")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if kind == "gpu" else "cpu")
    os.environ.setdefault("VAEKIT_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    reproductions = None if args.reproductions == "none" or args.short else Path(args.reproductions) / "reproductions.json"
    command = f"python benchmarks/igr_comparison.py {' '.join(argv if argv is not None else sys.argv[1:])}"
    provenance = {"machine": machine(), "commit": git_commit(length=12, missing="unknown"), "command": command}
    done = {key(r) for r in old["rows"]} if args.resume and old is not None and same_run(old, mode, settings, args.seed) else set()
    total = time.perf_counter()
    for dataset in dict.fromkeys(args.datasets):
        todo = [(m, t) for m in dict.fromkeys(args.methods) for t in cfg["temperatures"] if (dataset, m, t) not in done]
        if not todo:
            continue
        train, test = load(dataset, cfg["n_train"], cfg["n_test"])
        for method, tau in todo:
            r = {"dataset": dataset, **run_one(method, tau, train, test, cfg, device, args.seed), "n_test": len(test),
                 **provenance, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            print(f"{dataset:16s} {method:10s} tau={tau:<5} test LL {r['test_ll']:8.2f}  discrete ELBO "
                  f"{r['discrete_elbo']:8.2f}  relaxed ELBO {r['relaxed_elbo']:8.2f}  ({r['train_seconds']:.0f} s + "
                  f"{r['eval_seconds']:.0f} s)", flush=True)
            with locked(json_path):  # merged with what other runs wrote meanwhile
                now = stored(json_path)  # a file of other settings is replaced (--fresh; refused above otherwise)
                kept = [x for x in now["rows"] if key(x) != key(r)] if now and same_run(now, mode, settings, args.seed) else []
                rows = [*kept, r]
                write(json_path, md_path, rows, cfg, mode, args.seed)
            if reproductions is not None:
                with locked(reproductions):
                    new = [reproduction_row(x, cfg) for x in rows if {"n_test", "eval_seconds", "date"} <= x.keys()]
                    merged = merge_rows(reproductions, new)
                    replace_text(reproductions, json.dumps(merged, indent=1) + "\n")
                    replace_text(reproductions.with_suffix(".md"), render(merged, "Paper-scale reproductions"))
    final = stored(json_path)
    print(f"{len(final['rows']) if final else 0} models in {json_path} ({(time.perf_counter() - total) / 60:.1f} min this run)")
    if md_path.is_file():
        print(md_path.read_text())


def write(json_path: Path, md_path: Path, rows: list[dict[str, Any]], cfg: dict[str, Any], mode: str,
          seed: int) -> None:
    """Rewrite both result files from every model so far (rows sorted by dataset, method, temperature)."""
    rows.sort(key=lambda r: (r["dataset"], METHODS.index(r["method"]), r["temperature"]))
    temperatures = sorted({r["temperature"] for r in rows})
    machines = sorted({r.get("machine", "") for r in rows} - {""})
    commands = sorted({r.get("command", "") for r in rows} - {""})
    header = (f"# IGR vs Gumbel-Softmax discrete VAEs ({mode} mode)\n\nMachine: {'; '.join(machines)}\n\n"
              f"Commands: {'; '.join(f'`{c}`' for c in commands)}\n\n"
              f"Settings: {json.dumps({**cfg, 'temperatures': temperatures})}; {cfg['n_variables']} variables x 10 "
              f"categories, 784-512-256 ReLU MLPs, Bernoulli, batch {cfg['batch_size']}, Adam, seed {seed}; training + evaluation "
              f"{sum(r['train_seconds'] + r.get('eval_seconds', 0) for r in rows) / 60:.1f} min over {len(rows)} models.\n\n"
              "Test LL: importance sampling with one-hot (discrete) decoding, k samples from the implied categorical "
              "posterior (mixed with 0.1% uniform), exact discrete prior. Discrete ELBO: mean of the same log-weights. "
              "Relaxed ELBO: the training objective (single sample) on the test images.\n\n")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    replace_text(md_path, header + table(rows) + "\n\n## Best temperature per method\n\n" + best_per_method(rows) + "\n")
    replace_text(json_path, json.dumps({"machine": "; ".join(machines), "mode": mode, "seed": seed,
                                        "settings": {**cfg, "temperatures": temperatures}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
