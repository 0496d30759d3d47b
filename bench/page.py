"""Benchmark of what a listener waits for: the page's track search at 10^4 … 10^5 tracks, and
``nextvox recommend`` from stored vectors (the whole command, start-up included).

    .venv/bin/python bench/page.py [--sizes 10000 100000] [--library DIR --data-dir DIR]

Prints a table and writes it to ``bench/results/page.md``.

Search: ``GET /api/tracks`` answers from :class:`nextvox.api.service.TrackSearch` (the search
texts folded once per catalogue change); the tracks are synthetic (paths, artists from 2,000
names, titles), the time is one ``find`` call for a page of 50, median of 20. Recommend: with
``--library`` and its analysed ``--data-dir``, the wall time of ``nextvox recommend LIBRARY
TRACK -k 10 --json`` for the library's first track, median of 5 runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nextvox.api.service import TrackSearch  # noqa: E402
from nextvox.catalogue import Track  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "page.md"
QUERIES = {"no words (first page)": "", "one word": "singer", "two words": "singer 1234", "no match": "zzzz"}


def synthetic_tracks(n: int) -> list[Track]:
    return [Track(path=f"artist{i % 2000:04d}/album{i // 2000 % 10}/{i:07d} song.mp3", content_hash=f"{i:032x}", size_bytes=1,
                  mtime_ns=0, artist=f"singer {i % 2000}", title=f"song number {i}", album=None, genre="folk",
                  status="analyzed", error=None) for i in range(n)]


def median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def bench_search(sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        tracks = synthetic_tracks(n)
        started = time.perf_counter()
        search = TrackSearch(tracks)
        build_ms = (time.perf_counter() - started) * 1000
        for name, words in QUERIES.items():
            ms = median_ms(lambda: search.find(words, status="analyzed", offset=0, limit=50), 20)
            rows.append({"tracks": n, "query": name, "ms": ms, "build_ms": build_ms})
            print(rows[-1], flush=True)
    return rows


def bench_recommend(library: Path, data_dir: Path) -> dict:
    status = json.loads(subprocess.run([sys.executable, "-m", "nextvox", "status", str(library), "--data-dir", str(data_dir), "--json"],
                                       capture_output=True, text=True, check=True).stdout)
    track = next(t["path"] for t in status["tracks"] if t["status"] == "analyzed")
    command = [sys.executable, "-m", "nextvox", "recommend", str(library), track, "-k", "10", "--data-dir", str(data_dir), "--json"]
    wall = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        wall.append(time.perf_counter() - started)
    return {"tracks": len(status["tracks"]), "median_s": statistics.median(wall), "min_s": min(wall), "max_s": max(wall)}


def table(search: list[dict], recommend: dict | None) -> str:
    lines = [
        "# What a listener waits for",
        "",
        f"{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end "
        f"(a shared machine: times scale with it), Python {platform.python_version()}; `bench/page.py`.",
        "",
        "## Track search of the page (`GET /api/tracks`, one page of 50)",
        "",
        "| tracks | query | ms (median of 20) | index build ms (once per catalogue change) |",
        "|---:|---|---:|---:|",
    ]
    lines += [f"| {r['tracks']:,} | {r['query']} | {r['ms']:.1f} | {r['build_ms']:.0f} |" for r in search]
    if recommend:
        lines += ["", "## `nextvox recommend` from stored vectors (whole command)", "",
                  "| tracks | median s | min s | max s |", "|---:|---:|---:|---:|",
                  f"| {recommend['tracks']} | {recommend['median_s']:.2f} | {recommend['min_s']:.2f} | {recommend['max_s']:.2f} |"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--library", type=Path)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    search = bench_search(args.sizes)
    recommend = bench_recommend(args.library, args.data_dir) if args.library and args.data_dir else None
    text = table(search, recommend)
    print(text)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
