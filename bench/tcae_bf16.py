"""The TCAE's inference in bfloat16 against float32: melody retrieval on the same songs, and the stored values' differences.

    .venv/bin/python bench/tcae_bf16.py [--library DIR] [--out bench/results/tcae_bf16.md]

The library is a rendered one (``labels.csv`` with ``singer`` and ``melody``; by default the
demo library of bench/analyze.py, 40 songs, 8 singers, tunes shared across singers). Each
song is decoded, separated (the mask separator) and log-mel'd once; the shipped TCAE then
gives its melody vector and sequence in float32 and in bf16 autocast. The table: melody mAP
(the same tune by another singer) by the melody vector and by the sequence match, for
each, and how far apart the two precisions' outputs are.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nextvox.audio import load_excerpt  # noqa: E402
from nextvox.catalogue import encode_rows_int8  # noqa: E402
from nextvox.evaluation.metrics import cosine_similarity, melody_retrieval  # noqa: E402
from nextvox.features import log_mel  # noqa: E402
from nextvox.models import tcae  # noqa: E402
from nextvox.separation import separate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, default=ROOT / "build" / "bench-analyze" / "demo")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "tcae_bf16.md")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    rows = list(csv.DictReader(open(args.library / "labels.csv")))
    singers = np.array([r["singer"] for r in rows])
    melodies = np.array([r["melody"] for r in rows])
    mels = [log_mel(separate(load_excerpt(args.library / r["path"]).valid_samples, method="mask")) for r in rows]
    model = tcae.cached_tcae(tcae.DEFAULT_WEIGHTS)
    results = {}
    for bf16 in (False, True):
        started = time.process_time()
        out = [tcae.melody_vector_and_sequence(model, m, n_valid_frames=m.shape[1], bf16=bf16) for m in mels]
        seconds = time.process_time() - started
        vectors = np.stack([v for v, _ in out])
        sequences = [s for _, s in out]
        by_sequence = np.array([[tcae.sequence_similarity(a, b) for b in sequences] for a in sequences])
        results[bf16] = {
            "vectors": vectors, "sequences": sequences, "cpu_s": seconds,
            "vector_map": float(np.nanmean(melody_retrieval(cosine_similarity(vectors, vectors), singers=singers, melodies=melodies).average_precision)),
            "sequence_map": float(np.nanmean(melody_retrieval(by_sequence, singers=singers, melodies=melodies).average_precision)),
        }
    f32, b16 = results[False], results[True]
    cosines = np.sum(f32["vectors"] * b16["vectors"], axis=1)
    differences = np.concatenate([np.abs(a.astype(np.float32) - b.astype(np.float32)).ravel() for a, b in zip(f32["sequences"], b16["sequences"])])
    int8_steps = np.concatenate([np.abs(encode_rows_int8(a.astype(np.float32)).astype(int) - encode_rows_int8(b.astype(np.float32))).ravel()
                                 for a, b in zip(f32["sequences"], b16["sequences"])])  # fmt: skip
    lines = [
        "# The TCAE in bf16 against float32",
        "",
        f"`bench/tcae_bf16.py`, {len(rows)} songs of {args.library.name} ({len(set(singers))} singers), mask separator, "
        f"shipped TCAE ({tcae.weights_version(tcae.DEFAULT_WEIGHTS)}), one thread, {os.cpu_count()} cores shared with other work "
        f"(1-minute load average {os.getloadavg()[0]:.1f} at the end).",
        "",
        "| inference | melody mAP, vector | melody mAP, sequence match | CPU s for all songs |",
        "|---|---:|---:|---:|",
        f"| float32 | {f32['vector_map']:.3f} | {f32['sequence_map']:.3f} | {f32['cpu_s']:.1f} |",
        f"| bf16 autocast | {b16['vector_map']:.3f} | {b16['sequence_map']:.3f} | {b16['cpu_s']:.1f} |",
        "",
        f"Melody vectors: cosine of bf16 to float32 at least {cosines.min():.6f} (median {np.median(cosines):.6f}). "
        f"Sequences: largest difference {differences.max():.4f}, mean {differences.mean():.5f}. "
        f"As the catalogue stores them (int8 per row), {100 * np.mean(int8_steps > 0):.1f} % of the values differ, "
        f"by at most {int8_steps.max()} steps of 127.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.write_text(table)


if __name__ == "__main__":
    main()
