"""Voice-path smoothness benchmark: how small the steps of a path are, against two plain orders.

One command, ``.venv/bin/python bench/path.py``:

1. renders a library from the song generator's held-out ``eval`` split (singers and tunes no
   shipped model was trained on) and analyses it (both kept in a work folder between runs);
2. for every sampled pair (FROM, TO) of songs by different singers, orders ``n`` songs from
   FROM to TO three ways: nextvox's voice path (:func:`nextvox.voicepath.voice_path`); a
   random order (FROM, ``n - 2`` random other songs, TO); a straight nearest-neighbour walk
   (from FROM, always the nearest voice not yet played, then TO);
3. prints a table of the step similarities (cosine of consecutive timbre vectors) and of the
   steps that move toward TO, and writes it to ``bench/results/path.md``.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nextvox.analysis import analyze_library
from nextvox.catalogue import Catalogue, resolve_library
from nextvox.recommend import Recommender
from nextvox.voicepath import arc_progress, step_similarities, voice_path
from quality import git_commit  # the bench scripts' one way to name the commit measured

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--singers", type=int, default=13, help="singers in the library (the eval split has 13)")
    parser.add_argument("--songs", type=int, default=6, help="songs per singer")
    parser.add_argument("--max-song-s", type=float, default=20.0, help="longest song, seconds")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the generator and of the pairs")
    parser.add_argument("--pairs", type=int, default=100, help="(FROM, TO) pairs measured")
    parser.add_argument("-n", type=int, default=10, help="songs per path, FROM and TO included")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the library and its catalogue are kept between runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "path.md", help="the Markdown report")
    return parser.parse_args(argv)


def nearest_neighbour_walk(vectors: np.ndarray, start: int, end: int, n: int) -> list[int]:
    """Rows of a walk from ``start``: always the nearest unplayed row (never ``end``), ``n - 2`` of them, then ``end``."""
    free = np.ones(len(vectors), dtype=bool)
    free[[start, end]] = False
    walk = [start]
    for _ in range(n - 2):
        closeness = np.where(free, vectors @ vectors[walk[-1]], -np.inf)
        best = int(np.argmax(closeness))
        free[best] = False
        walk.append(best)
    return walk + [end]


def measure(rows: list[int], vectors: np.ndarray) -> dict[str, float]:
    """Mean and worst step similarity of one ordering, and the share of its steps that do not move back from TO."""
    ordered = vectors[rows]
    steps = step_similarities(ordered)
    progress = arc_progress(ordered, ordered[0], ordered[-1])
    return {"mean_step": float(steps.mean()), "worst_step": float(steps.min()),
            "forward": float((np.diff(progress) >= 0).mean()), "songs": len(rows)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from nextvox.synth import render_library

    work = args.work_dir or Path(tempfile.gettempdir()) / "nextvox-bench-path" / (
        f"eval-{args.singers}x{args.songs}-{args.max_song_s:g}s-seed{args.seed}")
    library, data_dir = work / "library", work / "data"
    started = time.perf_counter()
    render_library(library, n_singers=args.singers, n_songs=args.songs, seed=args.seed, voice_set="eval",
                   max_song_s=args.max_song_s, jobs=args.jobs)
    analyze_library(library, data_dir=data_dir, jobs=args.jobs)
    prepare_s = time.perf_counter() - started

    with Catalogue(data_dir, library=resolve_library(library), create=False) as catalogue:
        recommender = Recommender(catalogue)
        tracks = catalogue.tracks(status="analyzed")  # in path order
        vectors = np.stack([recommender.timbre_vector(t.content_hash) for t in tracks])  # (N, D) unit
        row_of = {t.path: i for i, t in enumerate(tracks)}
        rng = np.random.default_rng(args.seed)
        pairs = []
        while len(pairs) < args.pairs:
            a, b = rng.choice(len(tracks), size=2, replace=False)
            if tracks[a].artist != tracks[b].artist:
                pairs.append((int(a), int(b)))
        results: dict[str, list[dict[str, float]]] = {"voice path": [], "nearest-neighbour walk": [], "random order": []}
        started = time.perf_counter()
        for a, b in pairs:
            songs = voice_path(recommender, recommender.track_query(tracks[a].path), recommender.track_query(tracks[b].path), n=args.n)
            results["voice path"].append(measure([row_of[s.path] for s in songs], vectors))
        path_s = (time.perf_counter() - started) / len(pairs)
        for a, b in pairs:
            results["nearest-neighbour walk"].append(measure(nearest_neighbour_walk(vectors, a, b, args.n), vectors))
            others = [i for i in range(len(tracks)) if i not in (a, b)]
            results["random order"].append(measure([a, *rng.choice(others, size=args.n - 2, replace=False), b], vectors))

    table = ["| order | mean step similarity | worst step (mean over paths) | steps toward TO | songs per path |",
             "|---|---:|---:|---:|---:|"]
    for name, rows in results.items():
        table.append(f"| {name} | {np.mean([r['mean_step'] for r in rows]):.3f} | {np.mean([r['worst_step'] for r in rows]):.3f}"
                     f" | {np.mean([r['forward'] for r in rows]) * 100:.0f} % | {np.mean([r['songs'] for r in rows]):.1f} |")
    text = "\n".join([
        "# Voice paths: smoothness",
        "",
        f"Measured {datetime.date.today().isoformat()} at commit `{git_commit()}` by `bench/path.py`"
        f" (`--singers {args.singers} --songs {args.songs} --max-song-s {args.max_song_s:g} --seed {args.seed}"
        f" --pairs {args.pairs} -n {args.n}`).",
        "",
        f"Library: {len(tracks)} songs by {len({t.artist for t in tracks})} singers from the generator's held-out `eval`"
        " split (singers and tunes no shipped model was trained on), analysed with the shipped models.",
        f"{args.pairs} pairs (FROM, TO) of songs by different singers; each order asks for {args.n} songs, FROM first and TO last.",
        "Step similarity: cosine of consecutive songs' timbre vectors. Steps toward TO: steps whose progress along the"
        " FROM-to-TO arc (`nextvox.voicepath.arc_progress`) does not go back.",
        "The voice path also never puts one singer twice in a row and may end shorter than asked"
        " rather than step back; the other two orders follow no such rule.",
        f"Time: rendering and analysis {prepare_s:.0f} s (0 when kept from an earlier run); one voice path {path_s * 1000:.0f} ms.",
        "",
        *table,
        "",
    ])
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
