"""Analysis throughput: songs per minute and x real time, per stage, peak memory, for 1 and 2 jobs.

    .venv/bin/python bench/analyze.py [--songs 60] [--song-s 210] [--work DIR] [--against COMMIT --rounds 3]

Builds a library of full-length songs (3-4 minutes) from the project's own demo library:
each bench song is several demo songs (real voices singing over accompaniment) played one
after another, re-encoded in the demo's mix of formats. Then runs ``nextvox analyze`` on it
from an empty data directory with 1 and with 2 worker processes, and prints the table that
it writes to ``bench/results/analyze.md``.

On a machine that others share, absolute rates say more about the others than about the
code. ``--against COMMIT`` measures this tree against that commit's (exported with ``git
archive``) side by side: 2 jobs, the two in turn for ``--rounds`` rounds on the same songs,
and the ratio of their wall times round by round, which holds when the machine's load drifts.
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


def run_analyze(library: Path, data_dir: Path, jobs: int, *, code: Path = ROOT) -> dict:
    """``nextvox analyze`` from an empty ``data_dir`` with the nextvox of the tree at ``code``: its --json summary and wall time."""
    shutil.rmtree(data_dir, ignore_errors=True)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "nextvox", "analyze", str(library), "--data-dir", str(data_dir), "--jobs", str(jobs), "--json"],
        capture_output=True, text=True, check=True, cwd=code, env={**os.environ, "PYTHONPATH": str(code)},
    )
    wall_s = time.perf_counter() - started
    summary = json.loads(result.stdout)
    summary["process_wall_s"] = wall_s
    return summary


def row(summary: dict, jobs: int) -> dict:
    """One table row of an analyze run's summary: rates and per-song stage times (ms)."""
    n = summary["analyzed_now"]
    wall = summary["process_wall_s"]
    return {
        "jobs": jobs, "songs": n, "wall_s": wall, "songs_per_min": 60 * n / wall, "x_real_time": summary["audio_s"] / wall,
        **{f"{k}_ms": 1000 * v / n for k, v in summary["seconds_per_stage"].items()},
    }


def short_commit(ref: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", ref], capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip()


def export_tree(commit: str, work: Path) -> Path:
    """The files of ``commit`` in ``work/code-COMMIT`` (git archive), made once."""
    tree = work / f"code-{commit}"
    if not (tree / "nextvox").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit], capture_output=True, check=True, cwd=ROOT).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def compare(library: Path, work: Path, *, against: str, rounds: int, n_songs: int, song_s: float) -> str:
    """This tree against commit ``against``, 2 jobs, in turn for ``rounds`` rounds: the markdown section."""
    base, measured = short_commit(against), short_commit("HEAD")
    trees = {"this tree": ROOT, base: export_tree(base, work)}
    loads = [os.getloadavg()[0]]
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            runs[name].append(row(run_analyze(library, work / "data-ab", 2, code=tree), 2))
            loads.append(os.getloadavg()[0])
    ratios = [b["wall_s"] / a["wall_s"] for a, b in zip(runs["this tree"], runs[base])]
    stages = ("decode", "separation", "features", "inference")
    lines = [
        f"## This tree against {base}, side by side",
        "",
        f"{datetime.date.today()}, commit {measured} (with any uncommitted changes) against {base}, "
        f"{os.cpu_count()} cores shared with other work: 1-minute load average {min(loads):.1f} to {max(loads):.1f} "
        f"during the runs. {n_songs} songs of {song_s:.0f} s, 2 jobs, `nextvox analyze` from an empty data directory, "
        f"the two in turn for {rounds} rounds. Medians over the rounds; the speed-up is {base}'s wall time over "
        "this tree's, round by round.",
        "",
        "| code | wall s | songs/min | " + " | ".join(f"{s} ms/song" for s in stages) + " |",
        "|---|---:|---:|" + "---:|" * len(stages),
    ]
    for name, rows in runs.items():
        median = {key: float(np.median([r[key] for r in rows])) for key in ("wall_s", "songs_per_min", *(f"{s}_ms" for s in stages))}
        lines.append(f"| {name} | {median['wall_s']:.1f} | {median['songs_per_min']:.0f} | "
                     + " | ".join(f"{median[f'{s}_ms']:.0f}" for s in stages) + " |")
    lines += [
        "",
        f"Speed-up by round: {', '.join(f'{r:.2f}x' for r in ratios)}; median {np.median(ratios):.2f}x.",
        "Stage times are per-song sums inside the workers, so they grow with the machine's load as the wall time does.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=60)
    parser.add_argument("--song-s", type=float, default=210.0, help="length of each bench song, seconds")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench-analyze")
    parser.add_argument("--against", metavar="COMMIT", help="measure this tree against that commit's, side by side (2 jobs)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the side-by-side comparison")
    args = parser.parse_args()

    library = build_library(args.work, n_songs=args.songs, song_s=args.song_s)
    if args.against:
        section = compare(library, args.work, against=args.against, rounds=args.rounds, n_songs=args.songs, song_s=args.song_s)
        print(section)
        results = ROOT / "bench" / "results" / "analyze.md"
        kept = results.read_text().split("\n## This tree against", 1)[0].rstrip("\n") if results.exists() else "# Analysis throughput"
        results.write_text(kept + "\n\n" + section)
        return
    rows = [row(run_analyze(library, args.work / f"data-{jobs}", jobs), jobs) for jobs in (1, 2)]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    commit = short_commit("HEAD")
    lines = [
        "# Analysis throughput",
        "",
        f"{datetime.date.today()}, commit {commit}, {os.cpu_count()} cores. {args.songs} songs of {args.song_s:.0f} s "
        "(demo songs joined end to end, mixed formats: mp3, m4a, ogg, opus, flac, wav at 44.1 kHz), "
        "`nextvox analyze` from an empty data directory, wall time of the whole command (start-up and scan included); "
        f"1-minute load average {os.getloadavg()[0]:.1f} at the end.",
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
