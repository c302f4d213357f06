"""Two-process DDP on CPU (gloo), launched by torchrun: replicas stay identical, rank 0 alone writes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from training_helpers import same_weights

from vaekit.training import load_checkpoint, read_metrics

HERE = Path(__file__).resolve().parent

SCRIPT = """
import os, sys
from pathlib import Path
import torch
sys.path.insert(0, {here!r})
from training_helpers import NaNAt, TinyVAE, make_data, weights
from vaekit.training import Trainer

out = Path(sys.argv[1])
rank = int(os.environ["RANK"])
torch.manual_seed(100 + rank)  # different initial weights: DDP must broadcast rank 0's
model = TinyVAE()
init = weights(model)
trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=3, batch_size=8, lr=1e-2, ema_decay=0.5,
                  log_every_steps=2, progress_bar=False, root_dir=str(out / "runs"), seed=7)
res = trainer.fit(model, make_data(n=64, n_val=9, noise=0.05), NaNAt(steps=(5,)))
torch.save({{"init": init, "final": weights(model), "run_dir": str(res.run_dir.path), "step": res.global_step,
            "skipped": res.skipped_steps, "best": res.best_metric}}, out / f"rank{{rank}}.pt")
"""


def test_two_process_ddp_on_cpu(tmp_path: Path) -> None:
    script = tmp_path / "ddp_script.py"
    script.write_text(textwrap.dedent(SCRIPT.format(here=str(HERE))))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # 64 examples / 2 ranks / batch 8 = 4 steps per epoch, 3 epochs; step 5 skipped on both ranks
    assert (r0["step"], r1["step"], r0["skipped"], r1["skipped"]) == (12, 12, 1, 1)
    assert same_weights(r0["final"], r1["final"])
    assert not same_weights(r0["final"], r0["init"])
    assert r0["run_dir"] == r1["run_dir"] and r0["best"] == r1["best"]
    runs = list((tmp_path / "runs" / "TinyVAE").iterdir())
    assert [str(p) for p in runs] == [r0["run_dir"]]
    rows = read_metrics(runs[0] / "metrics.csv")
    val_steps = [r["step"] for r in rows if r["split"] == "val" and r["name"] == "loss"]
    assert val_steps == [4, 8, 12]  # written once, by rank 0
    ckpt = load_checkpoint(runs[0] / "checkpoints" / "last.ckpt")
    assert len(ckpt["rng"]) == 2 and not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])
    assert same_weights(ckpt["ema"]["shadow"], {k: v for k, v in r0["final"].items() if k in ckpt["ema"]["shadow"]})
