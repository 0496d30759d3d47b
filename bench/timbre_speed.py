"""Throughput of the timbre encoder on this machine: training crops/s and inference excerpts/s, fp32 vs bf16.

One command, ``.venv/bin/python bench/timbre_speed.py``; writes ``bench/results/timbre_speed.md``.

Training: whole steps of :func:`nextvox.training.train_timbre`'s loop (views made by the
augmentations, forward, NT-Xent, backward, AdamW) on random log-mels, batch 48 excerpts,
roles neg/neg (4 crops of 48 x 250 per excerpt) and pos/pos (2 crops); crops/s counts every
crop the encoder sees. The encoder alone (forward + backward + step on ready crops) is timed
too, to show what the augmentations cost. Inference: :func:`embed_excerpt` on 120 s excerpts
(48 x 7501 frames, 59 overlapping crops) and on 30 s excerpts, one at a time, as ``analyze``
does in each worker.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nextvox.constants import FRAMES_PER_EXCERPT, N_MELS
from nextvox.losses import NTXentLoss
from nextvox.models.timbre import TimbreConfig, TimbreEncoder, embed_excerpt, projection_head
from nextvox.training import ContrastiveBatch, TrainConfig

RESULTS = Path(__file__).resolve().parent / "results"


def train_rate(*, bf16: bool, roles: tuple[str, str], steps: int, encoder_only: bool) -> float:
    """Crops per second over ``steps`` timed training steps (after two warm-up steps)."""
    config = TrainConfig(pitch_shift=roles[0], time_stretch=roles[1], bf16=bf16)
    rng = np.random.default_rng(0)
    excerpts = [torch.from_numpy(rng.normal(-6, 2, (N_MELS, 1250)).astype(np.float16)) for _ in range(64)]
    batcher = ContrastiveBatch(config, excerpts, excerpts)
    encoder, head, loss_fn = TimbreEncoder(config.model), projection_head(config.model), NTXentLoss(config.temperature)
    optimizer = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=1e-3)
    g = torch.Generator().manual_seed(0)
    ready = batcher(g)
    crops = 0
    for step in range(steps + 2):
        if step == 2:
            started, crops = time.perf_counter(), 0
        views, n = ready if encoder_only else batcher(g)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            z = head(encoder(views))
        loss = loss_fn(z[:n], z[n : 2 * n], list(z[2 * n :].split(n)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        crops += len(views)
    return crops / (time.perf_counter() - started)


def inference_rate(*, bf16: bool, frames: int, n: int) -> float:
    encoder = TimbreEncoder(TimbreConfig()).eval()
    excerpt = np.random.default_rng(0).normal(-6, 2, (N_MELS, frames)).astype(np.float32)
    embed_excerpt(encoder, excerpt, bf16=bf16)
    started = time.perf_counter()
    for _ in range(n):
        embed_excerpt(encoder, excerpt, bf16=bf16)
    return n / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=15, help="timed training steps per row")
    parser.add_argument("--out", type=Path, default=RESULTS / "timbre_speed.md")
    args = parser.parse_args(argv)
    rows = []
    for roles in (("negative", "positive"), ("negative", "negative")):  # the shipped roles, and the most crops per step
        for encoder_only in (False, True):
            cells = [f"{train_rate(bf16=bf16, roles=roles, steps=args.steps, encoder_only=encoder_only):.0f}" for bf16 in (False, True)]
            what = "encoder only (ready crops)" if encoder_only else "whole step (augmentations included)"
            rows.append(f"| training, {roles[0][:3]}/{roles[1][:3]}, {what} | crops/s | {cells[0]} | {cells[1]} |")
            print(rows[-1], file=sys.stderr, flush=True)
    for seconds, frames, n in ((120, FRAMES_PER_EXCERPT, 8), (30, FRAMES_PER_EXCERPT // 4, 30)):
        cells = [f"{inference_rate(bf16=bf16, frames=frames, n=n):.1f}" for bf16 in (False, True)]
        rows.append(f"| inference, one {seconds} s excerpt at a time | excerpts/s | {cells[0]} | {cells[1]} |")
        print(rows[-1], file=sys.stderr, flush=True)
    text = "\n".join([
        "# Timbre encoder throughput",
        "",
        f"Measured {datetime.date.today().isoformat()} by `bench/timbre_speed.py` on {platform.machine()},"
        f" {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads;"
        " crops are 48 x 250 log-mel frames (4 s); batch 48 excerpts. Medians are not taken: one run, expect ±20 %.",
        "",
        "| what | unit | float32 | bfloat16 autocast |",
        "|---|---|---:|---:|",
        *rows,
        "",
        "Target: at least 150 training crops/s of 48 x 250 on 2 cores (a plain 4-block CNN managed 38 float32 / 75 bf16 here).",
    ]) + "\n"  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
