"""Two-process DDP on CPU (gloo), launched by torchrun: replicas stay identical, rank 0 alone writes, and the
weights and the EMA are those of one process stepping on the same global batches."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch
from training_helpers import ELBO, MeanTinyVAE, make_data, same_weights

import vaekit
from vaekit.training import load_checkpoint, read_metrics

HERE = Path(__file__).resolve().parent

SCRIPT = """
import os, sys
from pathlib import Path
import torch
sys.path.insert(0, {here!r})
from training_helpers import MeanTinyVAE, NaNAt, make_data, weights
from vaekit.training import Trainer

out = Path(sys.argv[1])
rank = int(os.environ["RANK"])
torch.manual_seed(100 + rank)  # different initial weights: DDP must broadcast rank 0's
model = MeanTinyVAE()  # a deterministic ELBO: the test repeats the run in one process from the batches seen
init = weights(model)
trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", max_epochs=3, batch_size=8, lr=1e-2, ema_decay=0.8,
                  log_every_steps=2, progress_bar=False, root_dir=str(out / "runs"), seed=7)
objective = NaNAt(steps=(5,))
res = trainer.fit(model, make_data(n=64, n_val=9), objective)
torch.save({{"init": init, "final": weights(model), "run_dir": str(res.run_dir.path), "step": res.global_step,
            "skipped": res.skipped_steps, "best": res.best_metric, "steps": [s for s, _ in objective.batches],
            "batches": torch.stack([b for _, b in objective.batches])}}, out / f"rank{{rank}}.pt")
"""


def test_two_process_ddp_on_cpu(tmp_path: Path) -> None:
    script = tmp_path / "ddp_script.py"
    script.write_text(textwrap.dedent(SCRIPT.format(here=str(HERE))))
    # the processes import the vaekit this test imported (not whichever one the environment installed)
    path = [str(HERE), str(Path(vaekit.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # 64 examples / 2 ranks / batch 8 = 4 steps per epoch, 3 epochs; step 5 skipped on both ranks
    assert (r0["step"], r1["step"], r0["skipped"], r1["skipped"]) == (12, 12, 1, 1)
    assert same_weights(r0["final"], r1["final"])
    assert not same_weights(r0["final"], r0["init"])
    assert r0["run_dir"] == r1["run_dir"] and r0["best"] == r1["best"]
    runs = list((tmp_path / "runs" / "MeanTinyVAE").iterdir())
    assert [str(p) for p in runs] == [r0["run_dir"]]
    rows = read_metrics(runs[0] / "metrics.csv")
    val_steps = [r["step"] for r in rows if r["split"] == "val" and r["name"] == "loss"]
    assert val_steps == [4, 8, 12]  # written once, by rank 0
    ckpt = load_checkpoint(runs[0] / "checkpoints" / "last.ckpt")
    assert len(ckpt["rng"]) == 2 and not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])
    assert ckpt["loop"]["global_step"] == 12

    # the same run in one process: rank 0's initial weights (DDP broadcasts them), each step on the union of the
    # two ranks' batches (the mean of the two batch losses: DDP averages the gradients), step 5 skipped
    assert r0["steps"] == r1["steps"] == list(range(12))
    b0, b1 = r0["batches"], r1["batches"]  # (12 steps, 8, 6) each
    train = make_data(n=64, n_val=9).train
    for epoch in range(3):  # each epoch, the two ranks' batches are the training set, split without overlap
        seen = torch.cat([b0[4 * epoch:4 * epoch + 4], b1[4 * epoch:4 * epoch + 4]]).flatten(0, 1)
        assert torch.equal(seen[seen[:, 0].argsort()], train[train[:, 0].argsort()])
    ref = MeanTinyVAE()
    ref.load_state_dict(r0["init"])
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    shadow = {k: v.detach().clone() for k, v in ref.named_parameters()}
    for step in range(12):
        if step == 5:  # the NaN step: no update of the weights, of Adam's state or of the EMA
            continue
        loss = (ELBO()(ref, b0[step], step)[0] + ELBO()(ref, b1[step], step)[0]) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for k, p in ref.named_parameters():
                shadow[k].lerp_(p, 1 - 0.8)
    raw = {k: v.detach() for k, v in ref.state_dict().items()}
    assert set(ckpt["model"]) == set(raw) and set(ckpt["ema"]["shadow"]) == set(shadow)
    for k in raw:
        torch.testing.assert_close(ckpt["model"][k], raw[k], rtol=1e-5, atol=1e-6, msg=f"weights {k}")
        torch.testing.assert_close(ckpt["ema"]["shadow"][k], shadow[k], rtol=1e-5, atol=1e-6, msg=f"EMA {k}")
        torch.testing.assert_close(r0["final"][k], shadow[k], rtol=1e-5, atol=1e-6, msg=f"final {k}")
    # the EMA is not the last weights (it would be with a wrong decay of 0), nor the initial ones (decay 1)
    assert max((shadow[k] - raw[k]).abs().max().item() for k in raw) > 1e-3
    assert max((shadow[k] - r0["init"][k]).abs().max().item() for k in raw) > 1e-3
