"""The Ray engine against the local pool: songs/min on the same songs, and the driver's ingest rate.

    .venv/bin/python bench/distributed.py [--songs 60] [--song-s 210] [--work DIR] [--ingest 2000]

On one library of full-length songs (the one bench/analyze.py builds), from an empty data
directory each time, ``nextvox analyze`` runs with:

- ``local``: the local engine's process pool, 2 workers;
- ``ray, 1 node``: a Ray instance started by the run (2 CPUs, 2 actors);
- ``ray, 2 nodes``: a two-node cluster on loopback (``ray start`` twice, 1 CPU each, 2 actors),
  the same 2 cores split in two nodes: it measures what the cluster costs, not a speed-up.

For each: the whole call's wall time (Ray's start-up included), the time to the first
committed track, and the steady rate (tracks committed between the first and the last,
per minute), which is what a long job sees. Then the driver's ingest rate: one real result,
pickled as the actors send it, unpickled and committed to a fresh catalogue over and over —
results per second that one driver can take, to set against one node's rate.
Prints the table and writes it to ``bench/results/distributed.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from analyze import build_library  # noqa: E402

from nextvox.analysis import AnalysisSettings, analyze_track  # noqa: E402
from nextvox.catalogue import Catalogue  # noqa: E402
from nextvox.distributed import local_cluster  # noqa: E402


def run(library: Path, data: Path, *extra: str, env: dict | None = None) -> dict:
    """One ``nextvox analyze`` from an empty data directory; wall, first-result and steady rates.

    The first and steady figures come from the catalogue's own commit times (``analyzed_at``).
    """
    shutil.rmtree(data, ignore_errors=True)
    started = time.time()
    result = subprocess.run([sys.executable, "-m", "nextvox", "analyze", str(library), "--data-dir", str(data), "--json", *extra],
                            capture_output=True, text=True, env=env, check=True)  # fmt: skip
    wall_s = time.time() - started
    summary = json.loads(result.stdout)
    with sqlite3.connect(data / "catalogue.sqlite") as db:
        landed = sorted(t for (t,) in db.execute("SELECT analyzed_at FROM analyses"))
    n = summary["analyzed_now"]
    return {
        "songs": n, "failed": summary["failed_now"], "wall_s": wall_s, "first_s": landed[0] - started,
        "songs_per_min": 60 * n / wall_s, "steady_per_min": 60 * (len(landed) - 1) / (landed[-1] - landed[0]),
        "nodes": len(summary["tracks_per_node"]),
    }


def ingest_rate(library: Path, work: Path, *, n: int) -> float:
    """Results per second the driver unpickles and commits (one real track's result, n times)."""
    song = sorted(p for p in library.iterdir() if p.is_file())[0]
    blob = pickle.dumps(("ok", analyze_track(song, content_hash=None, settings=AnalysisSettings(), cache=None)),
                        protocol=pickle.HIGHEST_PROTOCOL)  # fmt: skip
    version = AnalysisSettings().version
    data = work / "data-ingest"
    shutil.rmtree(data, ignore_errors=True)
    with Catalogue(data, library=library.resolve()) as catalogue:
        started = time.perf_counter()
        for i in range(n):
            _, result = pickle.loads(blob)
            catalogue.record_analysis(f"{i:032x}", analysis_version=version, duration_s=result.duration_s,
                                      excerpt_start_s=result.excerpt_start_s, excerpt_s=result.excerpt_s,
                                      vectors=result.vectors, sequences=result.sequences)  # fmt: skip
        return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=60)
    parser.add_argument("--song-s", type=float, default=210.0, help="length of each bench song, seconds")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench-analyze")
    parser.add_argument("--ingest", type=int, default=2000, help="results committed in the ingest measurement")
    args = parser.parse_args()

    library = build_library(args.work, n_songs=args.songs, song_s=args.song_s)
    rows = {
        "local pool, 2 workers": run(library, args.work / "data-local", "--jobs", "2"),
        "ray, 1 node (2 CPUs, 2 actors)": run(library, args.work / "data-ray1", "--engine", "ray", "--jobs", "2"),
    }
    with local_cluster(n_nodes=2, cpus_per_node=1, pythonpath=str(ROOT)) as (address, env):
        rows["ray, 2 nodes on loopback (1 CPU each)"] = run(library, args.work / "data-ray2", "--engine", "ray",
                                                             "--ray-address", address, env=env)  # fmt: skip
    per_s = ingest_rate(library, args.work, n=args.ingest)

    local = rows["local pool, 2 workers"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    lines = [
        "# Distributed analysis: the Ray engine against the local pool",
        "",
        f"{datetime.date.today()}, commit {commit}, {os.cpu_count()} cores (shared machine). {args.songs} songs of "
        f"{args.song_s:.0f} s (bench/analyze.py's library: demo songs joined end to end, six formats), "
        "`nextvox analyze` from an empty data directory for each row (wall time of the whole command). *first* = seconds from the command's start to the first "
        "committed track (scan, Ray start-up, actors loading the models); *steady* = tracks committed per minute "
        "between the first and the last.",
        "",
        "| engine | songs | nodes | wall s | first s | songs/min (wall) | songs/min (steady) | steady / local steady |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['songs']} | {r['nodes']} | {r['wall_s']:.1f} | {r['first_s']:.1f} | "
                     f"{r['songs_per_min']:.0f} | {r['steady_per_min']:.0f} | "
                     f"{r['steady_per_min'] / local['steady_per_min']:.2f} |")  # fmt: skip
    one_node = rows["ray, 1 node (2 CPUs, 2 actors)"]
    per_node_s = one_node["steady_per_min"] / 60
    lines += [
        "",
        f"Engine overhead on one node: Ray's steady rate is {one_node['steady_per_min'] / local['steady_per_min']:.2f}x "
        f"the local pool's; its whole-run rate {one_node['songs_per_min'] / local['songs_per_min']:.2f}x "
        f"(start-up: {one_node['first_s']:.0f} s to the first track against {local['first_s']:.0f} s).",
        f"Driver ingest: {per_s:.0f} results/s unpickled and committed to SQLite (one real result, {args.ingest} times; "
        f"{1000 / per_s:.2f} ms each). At this machine's {per_node_s:.1f} songs/s a 2-CPU node, one driver keeps up "
        f"with about {per_s / per_node_s:.0f} such nodes ({per_s / (per_node_s / 2):.0f} CPUs) before committing "
        "becomes the limit.",
    ]
    table = "\n".join(lines) + "\n"
    print(table)
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "distributed.md").write_text(table)


if __name__ == "__main__":
    main()
