"""Benchmark of the singing-library generator: render speed and pitch accuracy per voice.

    .venv/bin/python bench/synth.py [--voice-set demo|train] [--songs 3] [--jobs N]

1. Renders the default demo library (``nextvox demo``'s size) into a fresh folder and
   reports its wall time and speed (seconds of songs per second of wall time).
2. Renders every singer of the voice set with ``--songs`` full-length songs and measures,
   on every isolated vocal, the share of pYIN-voiced frames inside notes that lie within
   50 cents of the note (see ``nextvox.synth.singing.pitch_accuracy``), per engine voice.

Prints the tables and writes them to ``bench/results/synth.md`` (``synth-train.md`` for the
train voice set).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import soundfile as sf

from nextvox.synth import render_library
from nextvox.synth.library import CACHE_DIR_NAME, plan_library, song_notes
from nextvox.synth.singing import pitch_accuracy
from nextvox.synth.voices import singers_in_set

RESULTS_DIR = Path(__file__).parent / "results"


def _timed_render(out_dir: Path, **settings) -> tuple[float, float, int]:
    """Render a library; return (wall seconds, seconds of audio, songs)."""
    start = time.perf_counter()
    labels = render_library(out_dir, **settings)
    wall_s = time.perf_counter() - start
    with labels.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return wall_s, sum(float(r["duration_s"]) for r in rows), len(rows)


def _accuracy(job: tuple[Path, np.ndarray, np.ndarray, np.ndarray]) -> tuple[float, int]:
    vocal_path, onset_s, duration_s, pitch_midi = job
    vocal, rate = sf.read(vocal_path)
    return pitch_accuracy(vocal=vocal, sample_rate_hz=rate, onset_s=onset_s, duration_s=duration_s, pitch_midi=pitch_midi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voice-set", default="demo", choices=("demo", "train"))
    parser.add_argument("--songs", type=int, default=3, help="full-length songs per singer for the pitch table")
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args()
    cores = args.jobs

    with tempfile.TemporaryDirectory(prefix="nextvox-bench-synth-") as tmp:
        # 1. The default demo, from nothing (syllable banks and melody scan included).
        demo_wall_s, demo_audio_s, demo_songs = _timed_render(Path(tmp) / "demo", jobs=cores)

        # 2. Every singer of the set, for the per-voice pitch table.
        singers = singers_in_set(args.voice_set)
        settings = {"n_singers": len(singers), "n_songs": args.songs, "seed": 0, "voice_set": args.voice_set,
                    "max_song_s": None}  # fmt: skip
        out_dir = Path(tmp) / "all"
        all_wall_s, all_audio_s, all_songs = _timed_render(out_dir, jobs=cores, **settings)
        plans = plan_library(cache_dir=out_dir / CACHE_DIR_NAME, **settings)
        jobs = [(out_dir / p.vocal_path, *song_notes(plan=p)[:3]) for p in plans]
        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=cores, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_accuracy, jobs))
        pyin_s = time.perf_counter() - start

    per_voice: dict[tuple, list[tuple[float, int]]] = defaultdict(list)
    for plan, (accuracy, n_frames) in zip(plans, results):
        key = (plan.voice.voice_id, plan.singer.singer_id, plan.singer.gender, plan.voice.method,
               "yes" if plan.singer.synthetic else "no", plan.voice.licence)  # fmt: skip
        per_voice[key].append((accuracy, n_frames))

    lines = [
        "# Singing-library generator: speed and pitch accuracy",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {cores} worker processes. "
        f"Command: `.venv/bin/python bench/synth.py --voice-set {args.voice_set} --songs {args.songs}`.",
        "",
        "## Render speed",
        "",
        "| library | songs | audio (s) | wall (s) | × real time |",
        "|---|---:|---:|---:|---:|",
        f"| default demo (`nextvox demo`), from scratch | {demo_songs} | {demo_audio_s:.0f} | {demo_wall_s:.1f} "
        f"| {demo_audio_s / demo_wall_s:.1f} |",
        f"| every {args.voice_set} singer × {args.songs} songs | {all_songs} | {all_audio_s:.0f} | {all_wall_s:.1f} "
        f"| {all_audio_s / all_wall_s:.1f} |",
        "",
        "## Pitch accuracy per voice",
        "",
        "pYIN (librosa, 16 kHz, hop 256) on each isolated vocal; a frame counts when pYIN calls it voiced and it lies "
        "inside a note (60 ms after the onset to 40 ms before the end); in tune = within 50 cents of the note. "
        f"pYIN took {pyin_s:.0f} s.",
        "",
        "| voice | singer | gender | method | synthetic | licence | songs | frames | in tune (±50 c) |",
        "|---|---|---|---|---|---|---:|---:|---:|",
    ]
    for key, values in sorted(per_voice.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        frames = np.array([n for _, n in values])
        accuracy = np.array([a for a, _ in values])
        pooled = float(np.sum(accuracy * frames) / max(frames.sum(), 1))
        voice, singer, gender, method, synthetic, licence = key
        lines.append(f"| {voice} | {singer} | {gender} | {method} | {synthetic} | {licence} | {len(values)} "
                     f"| {frames.sum()} | {100 * pooled:.1f} % |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print(text)
    results = RESULTS_DIR / ("synth.md" if args.voice_set == "demo" else f"synth-{args.voice_set}.md")
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
