"""Vocal separation side by side: SI-SDR improvement, speed on one core, and singer mAP on mixes.

    .venv/bin/python bench/separation.py [--library DIR] [--demucs-weights PATH]

The library must be held out from the mask separator's training: by default the ``eval``
split (singers and tunes the ``train`` split never has) is rendered into
``build/separation/eval`` (13 singers x 6 songs of 30 s, seed 2024) unless it exists.
Writes ``bench/results/separation.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from nextvox.audio import read_window
from nextvox.separation import SHIPPED_MASK_WEIGHTS, separate, separator_version, si_sdr

ROOT = Path(__file__).resolve().parents[1]
EVAL_LIBRARY = {"n_singers": 13, "n_songs": 6, "seed": 2024, "voice_set": "eval", "max_song_s": 30.0}
SPEED_EXCERPT_S = 120.0


def _songs(library: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    with (library / "labels.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    songs = []
    for row in rows:
        mix = read_window(library / row["path"], start_s=0.0, length_s=None)
        vocal, _ = sf.read(library / row["vocal_path"], dtype="float32")
        n = min(len(mix), len(vocal))
        songs.append((mix[:n], vocal[:n]))
    return songs


def _quality(songs, method: str, weights: Path | None) -> dict:
    before = np.array([si_sdr(mix, vocal) for mix, vocal in songs])
    after = np.array([si_sdr(separate(mix, method=method, weights=weights), vocal) for mix, vocal in songs])
    return {"si_sdr_db": float(after.mean()), "si_sdr_improvement_db": float((after - before).mean()),
            "si_sdr_improvement_median_db": float(np.median(after - before))}  # fmt: skip


def _speed(songs, method: str, weights: Path | None, repeats: int = 3) -> float:
    """x real time on one thread, median of ``repeats`` runs over a 120 s excerpt."""
    excerpt = np.concatenate([mix for mix, _ in songs])[: int(SPEED_EXCERPT_S * 16000)]
    separate(excerpt[:16000], method=method, weights=weights)  # load the model, warm the kernels
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        separate(excerpt, method=method, weights=weights)
        times.append(time.perf_counter() - started)
    return len(excerpt) / 16000 / float(np.median(times))


def _singer_map(library: Path, method: str, weights: Path | None, data_dir: Path) -> dict:
    out = data_dir / f"evaluate-{method}.json"
    command = [str(ROOT / ".venv/bin/nextvox"), "evaluate", str(library), "--labels", str(library / "labels.csv"),
               "--separator", method, "--json", str(out), "--data-dir", str(data_dir)]  # fmt: skip
    if weights is not None:
        command += ["--separator-weights", str(weights)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    rows = result["embeddings"]
    return {
        "timbre_singer_map": rows["timbre"]["singer_map"], "timbre_singer_p_at_5": rows["timbre"]["singer_p_at_5"],
        "combined_singer_map": rows["combined"]["singer_map"], "melody_map": rows["melody"]["melody_map"],
        "resemblyzer_singer_map": rows.get("resemblyzer", {}).get("singer_map"),
        "analysis_version": result["settings"]["analysis_version"], "evaluate_s": round(time.perf_counter() - started, 1),
    }  # fmt: skip


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, default=ROOT / "build/separation/eval")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "build/separation/eval-data")
    parser.add_argument("--demucs-weights", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/separation.md")
    args = parser.parse_args()
    if not (args.library / "labels.csv").is_file():
        from nextvox.synth import render_library

        render_library(args.library, jobs=2, **EVAL_LIBRARY)
    methods: list[tuple[str, Path | None]] = [("none", None), ("classical", None), ("mask", None)]
    if args.demucs_weights:
        methods.append(("demucs", args.demucs_weights))
    torch.set_num_threads(1)
    songs = _songs(args.library)
    audio_s = sum(len(m) for m, _ in songs) / 16000
    rows = {}
    for method, weights in methods:
        print(f"{method}: quality", file=sys.stderr, flush=True)
        row = {"version": separator_version(method, weights=weights), **_quality(songs, method, weights),
               "x_real_time_one_core": _speed(songs, method, weights)}  # fmt: skip
        print(f"{method}: singer mAP", file=sys.stderr, flush=True)
        row.update(_singer_map(args.library, method, weights, args.data_dir))
        rows[method] = row
        print(method, row, file=sys.stderr, flush=True)
    timbre_version = rows["none"]["analysis_version"].split("/")[2]
    lines = [
        "# Vocal separation: quality, speed and singer retrieval on mixes",
        "",
        f"Held-out library: `{args.library}` ({len(songs)} songs, {audio_s / 60:.0f} min; the synth `eval` split, "
        f"settings {json.dumps(EVAL_LIBRARY)}): singers and tunes that the mask separator's training library "
        "(`train` split) never has. Machine: "
        f"{platform.machine()}, shared with other jobs (speeds +-30 %). Command: `.venv/bin/python bench/separation.py"
        f"{' --library ' + str(args.library) if args.library != ROOT / 'build/separation/eval' else ''}`.",
        "",
        f"SI-SDR of the separated vocal against the true vocal (mean over songs; improvement = minus the mix's own). "
        f"Speed: a {SPEED_EXCERPT_S:.0f} s excerpt, `torch.set_num_threads(1)`, median of 3. Singer mAP: "
        f"`nextvox evaluate --separator METHOD` on the mixes (timbre encoder `{timbre_version}`; "
        "resemblyzer always hears the unseparated mix).",
        "",
        "| method | version | SI-SDR (dB) | SI-SDRi mean (dB) | SI-SDRi median (dB) | × real time, 1 core | timbre singer mAP | timbre P@5 | combined singer mAP | melody mAP |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for method, r in rows.items():
        speed = "— (identity)" if method == "none" else f"{r['x_real_time_one_core']:,.0f}"
        lines.append(
            f"| {method} | `{r['version']}` | {r['si_sdr_db']:.2f} | {r['si_sdr_improvement_db']:+.2f} | "
            f"{r['si_sdr_improvement_median_db']:+.2f} | {speed} | {r['timbre_singer_map']:.3f} | "
            f"{r['timbre_singer_p_at_5']:.3f} | {r['combined_singer_map']:.3f} | {_cell(r['melody_map'])} |"
        )
    if rows["none"]["resemblyzer_singer_map"] is not None:
        lines += ["", f"Reference: resemblyzer on the unseparated mixes, singer mAP {rows['none']['resemblyzer_singer_map']:.3f}."]
    if SHIPPED_MASK_WEIGHTS.is_file():
        lines += ["", f"Mask weights: `nextvox/weights/separator.pt` ({SHIPPED_MASK_WEIGHTS.stat().st_size / 1e6:.1f} MB)."]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
