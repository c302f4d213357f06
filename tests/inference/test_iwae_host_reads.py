"""IWAE over many chunks stays on the device: no host read per chunk or per batch."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from training_helpers import HostReads  # noqa: E402

from vaekit.inference.iwae import _estimate  # noqa: E402
from vaekit.models import mlp_vae  # noqa: E402


def test_the_chunk_loop_reads_nothing_from_the_device() -> None:
    torch.manual_seed(0)
    model = mlp_vae([12], latent_features=3, hidden=[16]).eval()
    x = torch.bernoulli(torch.full((30, 12), 0.3))
    with torch.no_grad(), HostReads() as reads:
        lse, mean = _estimate(model, x, k=64, batch_size=7, chunk_size=8, device=torch.device("cpu"), progress=False)
    # 5 batches x 8 chunks: the only reads are the two results' final copies to the CPU
    assert reads.reads.count("item") == reads.reads.count("tolist") == reads.reads.count("__bool__") == 0
    assert len(reads.reads) <= 2, reads.reads
    with torch.no_grad():  # and the reads would be seen: the counter counts a read per chunk if one is made
        with HostReads() as seen:
            for _ in range(8):
                float(model.log_weights(x[:7], 8).mean())
    assert seen.reads.count("__float__") == 8
    assert lse.shape == mean.shape == (30,)
