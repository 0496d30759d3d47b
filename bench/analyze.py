"""Analysis throughput: songs per minute and x real time, per stage, peak memory, for 1 and 2 jobs.

    .venv/bin/python bench/analyze.py [--songs 60] [--song-s 210] [--work DIR]

Builds a library of full-length songs (3-4 minutes) from the project's own demo library:
each bench song is several demo songs (real voices singing over accompaniment) played one
after another, re-encoded in the demo's mix of formats. Then runs ``nextvox analyze`` on it
from an empty data directory with 1 and with 2 worker processes, and prints the table that
it writes to ``bench/results/analyze.md``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nextvox.audio import read_window  # noqa: E402
from nextvox.synth import render_library  # noqa: E402

FORMATS = (".mp3", ".m4a", ".ogg", ".opus", ".flac", ".wav")
RATE_HZ = 44_100


def encode(path: Path, samples: np.ndarray, *, rate_hz: int) -> None:
    """Write mono float32 samples in the format of the file's extension with Debian's ffmpeg."""
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "f32le", "-ar", str(rate_hz), "-ac", "1", "-i", "-",
         "-ar", str(RATE_HZ) if path.suffix != ".opus" else "48000", str(path)],
        input=samples.astype("<f4").tobytes(), check=True,
    )


def build_library(work: Path, *, n_songs: int, song_s: float) -> Path:
    demo = work / "demo"
    labels = render_library(demo, n_singers=8, n_songs=5, seed=1)
    rows = list(csv.DictReader(open(labels)))
    library = work / f"songs-{n_songs}x{song_s:.0f}s"
    if library.exists() and len(list(library.rglob("*.*"))) >= n_songs:
        return library
    library.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    extensions = list(FORMATS)
    for i in range(n_songs):
        parts, total = [], 0
        while total < song_s * 16_000:
            row = rows[int(rng.integers(len(rows)))]
            parts.append(read_window(demo / row["path"], start_s=0.0, length_s=None))
            total += parts[-1].size
        samples = np.concatenate(parts)[: int(song_s * 16_000)]
        encode(library / f"song{i:03d}{extensions[i % len(extensions)]}", samples, rate_hz=16_000)
    return library


def run_analyze(library: Path, data_dir: Path, jobs: int) -> dict:
    shutil.rmtree(data_dir, ignore_errors=True)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "nextvox", "analyze", str(library), "--data-dir", str(data_dir), "--jobs", str(jobs), "--json"],
        capture_output=True, text=True, check=True,
    )
    wall_s = time.perf_counter() - started
    summary = json.loads(result.stdout)
    summary["process_wall_s"] = wall_s
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=60)
    parser.add_argument("--song-s", type=float, default=210.0, help="length of each bench song, seconds")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench-analyze")
    args = parser.parse_args()

    library = build_library(args.work, n_songs=args.songs, song_s=args.song_s)
    rows = []
    for jobs in (1, 2):
        summary = run_analyze(library, args.work / f"data-{jobs}", jobs)
        stages = summary["seconds_per_stage"]
        n = summary["analyzed_now"]
        wall = summary["process_wall_s"]
        rows.append({
            "jobs": jobs, "songs": n, "wall_s": wall, "songs_per_min": 60 * n / wall,
            "x_real_time": summary["audio_s"] / wall,
            **{f"{k}_ms": 1000 * v / n for k, v in stages.items()},
        })
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    lines = [
        "# Analysis throughput",
        "",
        f"{datetime.date.today()}, commit {commit}, {os.cpu_count()} cores. {args.songs} songs of {args.song_s:.0f} s "
        "(demo songs joined end to end, mixed formats: mp3, m4a, ogg, opus, flac, wav at 44.1 kHz), "
        "`nextvox analyze` from an empty data directory, wall time of the whole command (start-up and scan included).",
        "x real time = seconds of music analysed per wall second (whole songs; only the 120 s excerpt is decoded).",
        "",
        "| jobs | songs | wall s | songs/min | x real time | decode ms/song | separation ms/song | features ms/song | inference ms/song | write ms/song |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['jobs']} | {r['songs']} | {r['wall_s']:.1f} | {r['songs_per_min']:.0f} | {r['x_real_time']:.0f} | "
            f"{r['decode_ms']:.0f} | {r['separation_ms']:.1f} | {r['features_ms']:.1f} | {r['inference_ms']:.1f} | {r['write_ms']:.1f} |"
        )
    lines += [
        "",
        f"Per core: {rows[0]['songs_per_min']:.0f} songs/min with 1 job, {rows[1]['songs_per_min'] / 2:.0f} songs/min per core with 2 jobs "
        f"(2 jobs / 1 job = {rows[1]['songs_per_min'] / rows[0]['songs_per_min']:.2f}x).",
        f"Peak memory of the largest process: {peak_rss_mb:.0f} MB.",
        "Stage times are per-song sums inside the workers (the stages of one song run one after another).",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "analyze.md").write_text(table)


if __name__ == "__main__":
    main()
