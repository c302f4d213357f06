"""Reproduce Table 2 (MNIST column) of Cremer, Li & Duvenaud (2018), "Inference Suboptimality in VAEs".

Trains the FFG and AF models of ``examples/configs/cremer_{mlp,af}_binarized_mnist.yaml``
(z=50, 784-200-200 encoder, 200-200-784 decoder, ELU, batch 100, Adam eps 1e-4, the IWAE
learning-rate schedule over 3,280 epochs, entropy warm-up over 400 epochs) through the
ordinary ``vaekit fit`` path, then for each model: IWAE (k=5000) on the whole test set, and
AIS plus local optimisation of q*_FFG and q*_AF on ``--n-points`` test points, written as the
gap table beside the paper's reported numbers.

The full run is a GPU job (days of CPU time). ``--short`` checks the whole pipeline in a few
minutes on a CPU with tiny settings; its numbers are NOT a reproduction.

    python benchmarks/reproduce_cremer2018.py --short                 # pipeline check, CPU, minutes
    python benchmarks/reproduce_cremer2018.py --device cuda           # the reproduction

Writes ``benchmarks/results/cremer2018[-short].{md,json}`` (device, wall time, every setting)
and leaves the two run directories under ``--runs-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIGS = {"FFG": ROOT / "examples/configs/cremer_mlp_binarized_mnist.yaml",
           "AF": ROOT / "examples/configs/cremer_af_binarized_mnist.yaml"}
#: Reported in Table 2 of the paper (MNIST; nats). Other rows are not quoted here.
PAPER = {"FFG": {"log p̂(x)": -89.80, "Approximation gap": 1.43, "Amortization gap": 1.34},
         "AF": {"log p̂(x)": -88.94, "Approximation gap": 1.44, "Amortization gap": 1.41}}
FULL = {"epochs": 3280, "warmup_epochs": 400, "n_points": 1000, "iwae_k": 5000, "ais_chains": 100, "ais_steps": 10000,
        "local_opt_steps": 10000, "test_points_iwae": None}
SHORT = {"epochs": 1, "warmup_epochs": 1, "n_points": 20, "iwae_k": 200, "ais_chains": 4, "ais_steps": 50,
         "local_opt_steps": 200, "test_points_iwae": 500}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", action="store_true", help="tiny settings: checks the pipeline, reproduces nothing")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--runs-dir", default="runs/cremer2018")
    p.add_argument("--out-dir", default=str(HERE / "results"))
    for key, value in FULL.items():
        if key != "test_points_iwae":
            p.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=f"default {value} (full)")
    a = p.parse_args(argv)
    s = dict(SHORT if a.short else FULL)
    for key in s:
        v = getattr(a, key, None)
        if v is not None:
            s[key] = v
    os.environ.setdefault("VAEKIT_DATA", str(ROOT.parent / "shared" / "data"))

    from vaekit.config import fit_config
    from vaekit.inference import iwae_log_likelihood
    from vaekit.inference.gaps import gap_table, inference_gaps
    from vaekit.runs import load, load_data

    accel = "gpu" if a.device.startswith("cuda") else "cpu"
    t_start = time.perf_counter()
    columns, record = [], {"settings": s, "device": a.device, "device_name": device_name(a.device),
                           "torch": torch.__version__, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "short": a.short, "runs": {}}
    print(f"Cremer et al. (2018) Table 2, MNIST: {'SHORT pipeline check' if a.short else 'full reproduction'} on "
          f"{record['device_name']}; settings {s}", flush=True)
    for label, path in CONFIGS.items():
        cfg = yaml.safe_load(path.read_text())
        steps_per_epoch = 500  # 50,000 training images at batch 100
        cfg["objective"]["init_args"]["warmup_steps"] = s["warmup_epochs"] * steps_per_epoch
        cfg["trainer"].update(max_epochs=s["epochs"], root_dir=a.runs_dir, accelerator=accel,
                              progress_bar=sys.stderr.isatty(), val_every_epochs=max(1, min(10, s["epochs"])))
        t0 = time.perf_counter()
        result = fit_config(cfg)
        train_s = time.perf_counter() - t0
        run = Path(result.run_dir)
        model = load(run, checkpoint="last", device=a.device)
        data = load_data(run)
        data.setup()
        x_test = data.test if s["test_points_iwae"] is None else data.test[: s["test_points_iwae"]]
        t0 = time.perf_counter()
        full = iwae_log_likelihood(model, x_test, k=s["iwae_k"], device=a.device)
        iwae_s = time.perf_counter() - t0
        x = data.test[: s["n_points"]]
        t0 = time.perf_counter()
        col = inference_gaps(model, x, local_opt=["af", "ffg"], iwae_k=s["iwae_k"], device=a.device,
                             ais={"n_chains": s["ais_chains"], "n_steps": s["ais_steps"]},
                             local_opt_kwargs={"max_steps": s["local_opt_steps"]}, label=f"q_{label}")
        gaps_s = time.perf_counter() - t0
        columns.append(col)
        record["runs"][label] = {"run_dir": str(run), "train_seconds": train_s, "steps": result.global_step,
                                 "iwae_test": {"n": int(x_test.shape[0]), "k": s["iwae_k"], "mean": full.mean,
                                               "stderr": full.stderr, "seconds": iwae_s},
                                 "gaps": col.to_dict(), "gaps_seconds": gaps_s}
        print(f"{label}: trained {result.global_step} steps in {train_s:.0f} s; IWAE(k={s['iwae_k']}) on "
              f"{x_test.shape[0]} test images {full.mean:.2f} ± {full.stderr:.2f} ({iwae_s:.0f} s); gaps on "
              f"{x.shape[0]} points in {gaps_s:.0f} s", flush=True)
    record["wall_seconds"] = time.perf_counter() - t_start
    ours = gap_table(columns)
    paper = ["| paper (MNIST) | q_FFG | q_AF |", "|---|---|---|"] + [
        f"| {row} | {PAPER['FFG'][row]:.2f} | {PAPER['AF'][row]:.2f} |" for row in PAPER["FFG"]]
    text = (f"# Cremer et al. (2018), Table 2, MNIST — {'SHORT pipeline check (not a reproduction)' if a.short else 'reproduction'}\n\n"
            f"Device: {record['device_name']} ({a.device}); torch {torch.__version__}; {record['date']}; wall time "
            f"{record['wall_seconds'] / 60:.1f} min.\n\nSettings: `{json.dumps(s)}`\n\n## vaekit\n\n{ours}\n\n"
            f"## Paper\n\n" + "\n".join(paper) + "\n")
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "cremer2018-short" if a.short else "cremer2018"
    (out / f"{stem}.md").write_text(text)
    (out / f"{stem}.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(text)
    print(f"written: {out / (stem + '.md')} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
