"""The catalogue at scale: synthetic libraries of 10^3 - 10^6 analysed tracks, and what each costs.

For each size N a library folder of N small files (one folder per singer, ten songs each)
is scanned by the project's own ``scan_library`` and every file given an analysis through
``Catalogue.record_analyses``, with vectors and sequences of the real shapes: timbre
(128-d, clustered by singer: a singer's centre plus noise), melody vector (512-d), the
recording fingerprint (8 x 240), a gender probability, and the melody sequence
(len(KEY_SHIFTS) x 120 steps x 16 channels). The analysis version is today's, so the
library is up to date, as after a real ``analyze``; then the indexes are brought up to date
as ``analyze`` does when it ends.

Measured, medians of ``--repeats`` runs, each in a fresh process:

- ``recommend``: ``nextvox recommend LIBRARY QUERY --json`` (stored vectors), wall time and
  peak resident set (GNU time's);
- ``serve``: ``nextvox serve LIBRARY --no-analyze`` from start to the first answer of
  ``GET /api/similar``;
- unchanged re-``analyze``: ``nextvox analyze LIBRARY --json`` with nothing to do (after one
  untimed run, which removes the writer's synthetic gender predictions: no shipped head made them);
- the catalogue's bytes a track (``catalogue.sqlite`` with its WAL), and the index's;
- a melody-weighted top-10 (``--melody-weight 0.5``) in a warm ``Recommender``, median of
  20 queries (in-process: the time of the query alone, not of the start-up).

Run: ``python bench/catalogue_scale.py --sizes 1000 10000 100000``. A 10^6 library needs 10^6
files and about 10 GB of catalogue: write it once (``--sizes 1000000 --build-only``), measure
it later (``--sizes 1000000 --repeats 1 --reuse --keep --merge``: one run, its row merged
with those measured before). Writes ``bench/results/catalogue_scale.json`` and splices its
table into ``bench/results/service.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nextvox.analysis import AnalysisSettings  # noqa: E402
from nextvox.catalogue import Catalogue, StoredAnalysis, scan_library  # noqa: E402
from nextvox.features import FINGERPRINT_BANDS, FINGERPRINT_BINS  # noqa: E402
from nextvox.gender import GENDER_VECTOR  # noqa: E402
from nextvox.index import refresh_indexes  # noqa: E402
from nextvox.models.tcae import AUTOCORRELATION_LAGS, KEY_SHIFTS, SEQUENCE_MAX_STEPS, TCAEConfig  # noqa: E402

SONGS_PER_SINGER = 10
TIMBRE_DIM = 128
WRITE_BATCH = 1000  # analyses a transaction
TABLE_START = "<!-- catalogue_scale.py: start -->"
TABLE_END = "<!-- catalogue_scale.py: end -->"


def synthetic_library(root: Path, n: int) -> None:
    """``n`` small files, ``singer{i}/song{j}.wav``, each with distinct bytes (so distinct contents)."""
    for i in range(n):
        folder = root / f"singer{i // SONGS_PER_SINGER:06d}"
        if i % SONGS_PER_SINGER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"song{i % SONGS_PER_SINGER}.wav").write_bytes(f"synthetic track {i}\n".encode())


def fill_catalogue(data_dir: Path, library: Path, n: int, *, seed: int = 0) -> float:
    """Scan the library and give every track an analysis of the real shapes; returns the seconds it took.

    Analyses are written ``WRITE_BATCH`` at a time through :meth:`Catalogue.record_analyses`
    (one transaction a batch), their vectors drawn a batch at a time.
    """
    rng = np.random.default_rng(seed)
    version = AnalysisSettings().version
    latent = TCAEConfig().latent_dim
    started = time.perf_counter()
    with Catalogue(data_dir, library=library) as catalogue:
        scan_library(catalogue, analysis_version=version)
        tracks = catalogue.tracks()
        n_singers = len(tracks) // SONGS_PER_SINGER + 1
        centres = rng.standard_normal((n_singers, TIMBRE_DIM)).astype(np.float32)
        for first in range(0, len(tracks), WRITE_BATCH):
            batch = tracks[first : first + WRITE_BATCH]
            singers = [int(track.path[len("singer"):].split("/")[0]) for track in batch]
            timbre = centres[singers] + 0.5 * rng.standard_normal((len(batch), TIMBRE_DIM), dtype=np.float32)
            melody = rng.standard_normal((len(batch), latent * AUTOCORRELATION_LAGS), dtype=np.float32)
            fingerprint = rng.standard_normal((len(batch), FINGERPRINT_BANDS * FINGERPRINT_BINS), dtype=np.float32)
            sequence = rng.standard_normal((len(batch), len(KEY_SHIFTS) * SEQUENCE_MAX_STEPS, latent), dtype=np.float32)
            gender = rng.random((len(batch), 1), dtype=np.float32)
            catalogue.record_analyses(
                StoredAnalysis(
                    track.content_hash, analysis_version=version, duration_s=210.0, excerpt_start_s=45.0, excerpt_s=120.0,
                    vectors={"timbre": ("timbre-synthetic", timbre[i]), "melody": ("tcae-synthetic", melody[i]),
                             "fingerprint": ("fingerprint-synthetic", fingerprint[i]), GENDER_VECTOR: ("gender-synthetic", gender[i])},
                    sequences={"melody": ("tcae-synthetic", sequence[i])},
                )
                for i, track in enumerate(batch)
            )  # fmt: skip
            if (first // WRITE_BATCH) % 10 == 9 or first + WRITE_BATCH >= len(tracks):
                print(f"  {first + len(batch)}/{len(tracks)} analyses written, {time.perf_counter() - started:.0f} s", flush=True)
        refresh_indexes(catalogue)
    return time.perf_counter() - started


def run_timed(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GB, stdout) of one command run to its end.

    The peak is GNU time's (``/usr/bin/time -f %M``): a child forked from this large process
    would otherwise count this process's pages in its own high-water mark.
    """
    started = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-f", "peak-rss-kb %M", *command], capture_output=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stderr.decode()[-2000:]}")
    peak_kb = int(done.stderr.decode().rsplit("peak-rss-kb", 1)[1].split()[0])
    return wall, peak_kb / 2**20, done.stdout.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_first_answer(library: Path, data_dir: Path, query: str) -> float:
    """Seconds from starting ``nextvox serve --no-analyze`` to the first answer of GET /api/similar."""
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "nextvox", "--data-dir", str(data_dir), "serve", str(library), "--no-analyze", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api/similar?path={urllib.request.quote(query)}&k=10"
    try:
        while time.perf_counter() - started < 600:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    if response.status == 200 and json.loads(response.read())["results"]:
                        return time.perf_counter() - started
            except (ConnectionError, urllib.error.URLError):
                time.sleep(0.05)
        raise RuntimeError("the server gave no answer within 10 minutes")
    finally:
        process.terminate()
        process.wait()


def melody_query_ms(data_dir: Path, library: Path, query: str, *, repeats: int = 20) -> float:
    """Median milliseconds of a melody-weighted top-10 in a warm Recommender."""
    from nextvox.recommend import Recommender

    with Catalogue(data_dir, library=library, create=False) as catalogue:
        recommender = Recommender(catalogue)
        queries = [recommender.track_query(query)]
        recommender.recommend(queries, k=10, w_melody=0.5)  # warm: compiled kernels, pages touched
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            recommender.recommend(queries, k=10, w_melody=0.5)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build(n: int, workdir: Path, *, reuse: bool) -> tuple[Path, Path, float]:
    """(library, data dir, seconds the catalogue took to write) of the synthetic library of ``n`` tracks.

    With ``reuse``, one built before (its ``built.json`` written at the end) is taken as it is.
    """
    root = workdir / f"n{n}"
    library, data_dir = root / "music", root / "data"
    if reuse and (root / "built.json").exists():
        print(f"{n} tracks: reusing {root}", flush=True)
        return library, data_dir, json.loads((root / "built.json").read_text())["fill_s"]
    if root.exists():
        shutil.rmtree(root)
    library.mkdir(parents=True)
    print(f"{n} tracks: writing the library and the catalogue", flush=True)
    synthetic_library(library, n)
    fill_s = fill_catalogue(data_dir, library, n)
    (root / "built.json").write_text(json.dumps({"fill_s": fill_s}))
    return library, data_dir, fill_s


def git_commit() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def measure(n: int, workdir: Path, *, repeats: int, reuse: bool) -> dict:
    library, data_dir, fill_s = build(n, workdir, reuse=reuse)
    query = "singer000000/song0.wav"
    cli = [sys.executable, "-m", "nextvox", "--data-dir", str(data_dir)]
    recommend = [run_timed([*cli, "recommend", str(library), query, "--json"]) for _ in range(repeats)]
    assert json.loads(recommend[0][2])["results"], "recommend found nothing"
    serve = [serve_first_answer(library, data_dir, query) for _ in range(repeats)]
    # Untimed: the first analyze after the writer removes its synthetic gender predictions (no shipped head made them).
    run_timed([*cli, "analyze", str(library), "--json"])
    reanalyze = [run_timed([*cli, "analyze", str(library), "--json"]) for _ in range(repeats)]
    summary = json.loads(reanalyze[0][2])
    assert summary["analyzed_now"] == 0 and summary["new"] == 0, summary
    catalogue_bytes = sum(p.stat().st_size for p in data_dir.glob("catalogue.sqlite*"))
    row = {
        "tracks": n, "runs": repeats, "commit": git_commit(), "fill_s": fill_s,
        "recommend_s": statistics.median(w for w, _, _ in recommend),
        "recommend_gb": statistics.median(r for _, r, _ in recommend),
        "serve_s": statistics.median(serve),
        "reanalyze_s": statistics.median(w for w, _, _ in reanalyze),
        "reanalyze_gb": statistics.median(r for _, r, _ in reanalyze),
        "catalogue_kb_per_track": catalogue_bytes / n / 1000,
        "index_kb_per_track": folder_bytes(data_dir / "index") / n / 1000,
        "melody_query_ms": melody_query_ms(data_dir, library, query),
    }
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = [
        f"`bench/catalogue_scale.py`, {date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores shared with "
        f"other jobs (expect ±20–30 % run to run), Python {platform.python_version()}; the median of the runs a row "
        "names, each command in a fresh process. Synthetic analysed tracks written through the catalogue's own code "
        "(the generator's docstring says how).",
        "",
        "| tracks | runs (commit) | stored-vector `recommend` (wall, peak RSS) | `serve` to first answer "
        "| unchanged re-`analyze` (wall, peak RSS) | catalogue | index | melody-weighted top-10 (warm) | writing the catalogue |",
        "|---:|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: r["tracks"]):
        lines.append(
            f"| {r['tracks']:,} | {r.get('runs', '?')} ({r.get('commit', '?')}) | {r['recommend_s']:.2f} s, {r['recommend_gb']:.2f} GB "
            f"| {r['serve_s']:.2f} s | {r['reanalyze_s']:.1f} s, {r['reanalyze_gb']:.2f} GB | {r['catalogue_kb_per_track']:.1f} KB a track "
            f"| {r['index_kb_per_track']:.1f} KB a track | {r['melody_query_ms']:.0f} ms | {r['fill_s']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def splice(path: Path, text: str) -> None:
    """Put ``text`` between the markers in ``path`` (appended under a heading the first time)."""
    current = path.read_text() if path.exists() else ""
    block = f"{TABLE_START}\n{text}{TABLE_END}\n"
    if TABLE_START in current:
        before, rest = current.split(TABLE_START, 1)
        after = rest.split(TABLE_END, 1)[1].lstrip("\n")
        path.write_text(before + block + after)
    else:
        path.write_text(current.rstrip("\n") + "\n\n## The catalogue at scale\n\n" + block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/nextvox-catalogue-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the synthetic libraries and catalogues")
    parser.add_argument("--reuse", action="store_true", help="measure a library kept by an earlier --keep run instead of writing it again")
    parser.add_argument("--build-only", action="store_true", help="write the libraries and catalogues (kept), measure nothing")
    parser.add_argument("--merge", action="store_true",
                        help="keep the rows of bench/results/catalogue_scale.json of the sizes not measured now (each row names its runs and commit)")
    args = parser.parse_args()
    if args.build_only:
        for n in args.sizes:
            build(n, args.workdir, reuse=args.reuse)
        return
    results = REPO / "bench" / "results"
    previous = json.loads((results / "catalogue_scale.json").read_text()) if args.merge else []
    rows = [r for r in previous if r["tracks"] not in args.sizes]
    for n in args.sizes:
        rows.append(measure(n, args.workdir, repeats=args.repeats, reuse=args.reuse))
        if not args.keep:
            shutil.rmtree(args.workdir / f"n{n}")
    text = table(rows)
    (results / "catalogue_scale.json").write_text(json.dumps(sorted(rows, key=lambda r: r["tracks"]), indent=1) + "\n")
    splice(results / "service.md", text)
    print(text)


if __name__ == "__main__":
    main()
