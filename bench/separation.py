"""Vocal separation side by side: SI-SDR improvement, speed on one core, and singer mAP on mixes.

    .venv/bin/python bench/separation.py [--library DIR ...] [--mask-weights LABEL=PATH ...] [--demucs-weights PATH]

Each library must be held out from the mask separator's training: by default the ``eval``
split (singers and tunes the ``train`` split never has) is rendered into
``build/separation/eval`` (13 singers x 6 songs of 30 s, seed 2024) unless it exists; give
``--library`` once per production style to measure (bench/quality.py's plain and studio
libraries). ``--mask-weights`` adds rows for other weights (earlier ones) in the same run.
Writes ``bench/results/separation.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
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


def _library_table(library: Path, methods: list[tuple[str, str, Path | None]], data_dir: Path) -> tuple[list[str], dict]:
    """One library's rows (label -> measurements) and its Markdown table."""
    songs = _songs(library)
    audio_s = sum(len(m) for m, _ in songs) / 16000
    rows = {}
    for label, method, weights in methods:
        print(f"{library.name} {label}: quality", file=sys.stderr, flush=True)
        row = {"version": separator_version(method, weights=weights), **_quality(songs, method, weights),
               "x_real_time_one_core": _speed(songs, method, weights)}  # fmt: skip
        print(f"{library.name} {label}: singer mAP", file=sys.stderr, flush=True)
        row.update(_singer_map(library, method, weights, data_dir / label))
        rows[label] = row
        print(label, row, file=sys.stderr, flush=True)
    timbre_version = rows["none"]["analysis_version"].split("/")[2]
    lines = [
        f"## `{library}`",
        "",
        f"{len(songs)} songs, {audio_s / 60:.0f} min. Singer mAP: `nextvox evaluate --separator METHOD` on the mixes"
        f" (timbre encoder `{timbre_version}`; resemblyzer always hears the unseparated mix).",
        "",
        "| method | version | SI-SDR (dB) | SI-SDRi mean (dB) | SI-SDRi median (dB) | × real time, 1 core | timbre singer mAP | timbre P@5 | combined singer mAP | melody mAP |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        speed = "— (identity)" if label == "none" else f"{r['x_real_time_one_core']:,.0f}"
        lines.append(
            f"| {label} | `{r['version']}` | {r['si_sdr_db']:.2f} | {r['si_sdr_improvement_db']:+.2f} | "
            f"{r['si_sdr_improvement_median_db']:+.2f} | {speed} | {r['timbre_singer_map']:.3f} | "
            f"{r['timbre_singer_p_at_5']:.3f} | {r['combined_singer_map']:.3f} | {_cell(r['melody_map'])} |"
        )
    if rows["none"]["resemblyzer_singer_map"] is not None:
        lines += ["", f"Reference: resemblyzer on the unseparated mixes, singer mAP {rows['none']['resemblyzer_singer_map']:.3f}."]
    return lines, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=Path, action="append",
                        help="a held-out library with vocal stems (repeatable; default: build/separation/eval, rendered when missing)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "build/separation/eval-data")
    parser.add_argument("--demucs-weights", type=Path)
    parser.add_argument("--mask-weights", action="append", default=[], metavar="LABEL=PATH",
                        help="also measure these mask weights, as the row `mask (LABEL)` (repeatable): earlier weights side by side")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/separation.md")
    args = parser.parse_args()
    libraries = args.library or [ROOT / "build/separation/eval"]
    for library in libraries:
        if not (library / "labels.csv").is_file():
            from nextvox.synth import render_library

            render_library(library, jobs=2, **EVAL_LIBRARY)
    methods: list[tuple[str, str, Path | None]] = [("none", "none", None), ("classical", "classical", None), ("mask", "mask", None)]
    for spec in args.mask_weights:
        label, _, path = spec.partition("=")
        methods.append((f"mask ({label})", "mask", Path(path)))
    if args.demucs_weights:
        methods.append(("demucs", "demucs", args.demucs_weights))
    torch.set_num_threads(1)
    command = "`.venv/bin/python bench/separation.py" + "".join(f" --library {lib}" for lib in args.library or []) + "".join(
        f" --mask-weights {spec}" for spec in args.mask_weights) + "`"  # fmt: skip
    lines = [
        "# Vocal separation: quality, speed and singer retrieval on mixes",
        "",
        f"Measured {datetime.date.today().isoformat()} by {command}. Held-out libraries of the synth `eval` split: singers and"
        " tunes that the mask separator's training libraries (`train` split) never have. Machine: "
        f"{platform.machine()}, shared with other jobs (speeds +-30 %).",
        "",
        "SI-SDR of the separated vocal against the true vocal, the dry lead (mean over songs; improvement = minus the"
        f" mix's own). Speed: a {SPEED_EXCERPT_S:.0f} s excerpt, `torch.set_num_threads(1)`, median of 3.",
    ]
    results = {}
    for number, library in enumerate(libraries):  # numbered: two libraries may share a folder name
        table, rows = _library_table(library, methods, args.data_dir / f"{number}-{library.name}")
        lines += ["", *table]
        results[str(library)] = rows
    if SHIPPED_MASK_WEIGHTS.is_file():
        lines += ["", f"Mask weights: `nextvox/weights/separator.pt` ({SHIPPED_MASK_WEIGHTS.stat().st_size / 1e6:.1f} MB)."]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
