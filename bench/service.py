"""Benchmark of the recommendation service: vector search at 10^4 … 10^6 tracks, and HTTP throughput.

    .venv/bin/python bench/service.py [--sizes 10000 20000 100000 1000000] [--http-tracks 2000]

Prints a table and writes it to ``bench/results/service.md``.

Vectors. Real timbre vectors are not uniform on the sphere (uniform random vectors are the
worst case of every approximate index): songs cluster by singer and singers by voice type.
So the synthetic ones are made like that, at the learned encoder's dimension (128):

- 24 *voice types* (register, gender, style) are centres in a 16-dimensional latent space;
- each singer is a voice type plus a latent offset (σ 0.6), mapped to 128-d by one fixed
  random linear map, plus full-rank noise (σ 0.25): the singer's centre;
- each song is its singer's centre plus per-song spread (σ 0.6 in every one of the 128
  dimensions), then L2-normalised;
- songs per singer follow a Zipf law (exponent 1.6, 1 … 60 songs: many singers with one or
  two songs, a few with dozens), about 10 tracks per singer on average;
- queries are *new* songs of random singers (not in the index), as an upload or a song added
  after the index was built would be.

Latency is one query at a time on one thread (as the server answers one request), top-10,
measured over 300 queries (100 for exact search at 10^6); recall@10 is against exact search.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import multiprocessing
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nextvox.index import VectorIndex, build_ivf, ivf_cells_for, nprobe_for, normalise_rows  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "service.md"
DIM = 128
LATENT_DIM = 16
N_VOICE_TYPES = 24
K = 10


def synthetic_voices(n: int, *, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Songs clustered by singer, singers by voice type (see the module's docstring).

    Returns
    -------
    songs : np.ndarray, shape (n, DIM), float32, unit rows
    queries : np.ndarray, shape (n_queries, DIM), float32, unit rows: new songs of known singers
    """
    rng = np.random.default_rng(seed)
    songs_per_singer = rng.zipf(1.6, size=n).clip(1, 60)
    n_singers = int(np.searchsorted(np.cumsum(songs_per_singer), n)) + 1
    projection = rng.standard_normal((LATENT_DIM, DIM)) / np.sqrt(LATENT_DIM)
    voice_types = rng.standard_normal((N_VOICE_TYPES, LATENT_DIM))
    latent = voice_types[rng.integers(0, N_VOICE_TYPES, n_singers)] + 0.6 * rng.standard_normal((n_singers, LATENT_DIM))
    centres = (latent @ projection + 0.25 * rng.standard_normal((n_singers, DIM))).astype(np.float32)  # (S, DIM)
    singer = np.repeat(np.arange(n_singers), songs_per_singer[:n_singers])[:n]
    songs = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks: bounded memory at 10^6
        block = slice(start, min(n, start + 100_000))
        songs[block] = centres[singer[block]] + 0.6 * rng.standard_normal((block.stop - block.start, DIM)).astype(np.float32)
    query_singers = singer[rng.integers(0, n, n_queries)]
    queries = centres[query_singers] + 0.6 * rng.standard_normal((n_queries, DIM)).astype(np.float32)
    return normalise_rows(songs), normalise_rows(queries)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def latencies_ms(search, queries: np.ndarray) -> tuple[float, float, list[np.ndarray]]:
    """p50 and p99 of one-at-a-time searches, and the rows each found."""
    found, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        found.append(search(q))
        times.append(time.perf_counter() - t0)
    times_ms = np.array(times) * 1000
    return float(np.percentile(times_ms, 50)), float(np.percentile(times_ms, 99)), found


def recall_at_k(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(np.asarray(f).tolist()) & set(t.tolist())) / K for f, t in zip(found, truth)]))


def bench_sizes(sizes: list[int], *, compare_at: int) -> tuple[list[dict], list[dict]]:
    import faiss

    rows, comparison = [], []
    for n in sizes:
        n_queries = 300
        songs, queries = synthetic_voices(n, n_queries=n_queries, seed=n)
        faiss.omp_set_num_threads(2)
        flat = faiss.IndexFlatIP(DIM)
        flat.add(songs)
        _, truth = flat.search(queries, K)  # (Q, K) exact ground truth
        del flat
        keys = [str(i) for i in range(n)]

        exact = VectorIndex(keys, songs)
        exact_queries = queries[:100] if n >= 500_000 else queries
        p50, p99, found = latencies_ms(lambda q: exact.search(q, K)[0], exact_queries)
        rows.append({"n": n, "index": "exact (FAISS knn, 1 thread)", "build_s": 0.0, "memory_mb": songs.nbytes / 2**20,
                     "p50_ms": p50, "p99_ms": p99, "recall": recall_at_k(found, truth)})

        gc.collect()
        faiss.omp_set_num_threads(2)
        before = rss_bytes()
        t0 = time.perf_counter()
        ivf = build_ivf(songs)  # what nextvox ships (2 build threads here)
        build_s = time.perf_counter() - t0
        memory_mb = (rss_bytes() - before) / 2**20
        approximate = VectorIndex(keys, songs, approximate=ivf)
        p50, p99, found = latencies_ms(lambda q: approximate.search(q, K)[0], queries)
        rows.append({"n": n, "index": f"FAISS IVF-Flat (nlist {ivf_cells_for(n)}, nprobe {nprobe_for(ivf_cells_for(n))})",
                     "build_s": build_s, "memory_mb": memory_mb, "p50_ms": p50, "p99_ms": p99, "recall": recall_at_k(found, truth)})
        print(rows[-2], rows[-1], flush=True)
        if n == compare_at:
            comparison = compare_libraries(songs, queries, truth)
        gc.collect()
    return rows, comparison


def compare_libraries(songs: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> list[dict]:
    """HNSW graphs of faiss, hnswlib and usearch beside the IVF index, at one size."""
    import faiss
    import hnswlib
    from usearch.index import Index as UsearchIndex

    n = len(songs)
    out = []

    def record(name: str, build, search) -> None:
        gc.collect()
        before = rss_bytes()
        t0 = time.perf_counter()
        index = build()
        build_s = time.perf_counter() - t0
        memory_mb = (rss_bytes() - before) / 2**20
        p50, p99, found = latencies_ms(lambda q: search(index, q), queries)
        out.append({"index": name, "build_s": build_s, "memory_mb": memory_mb, "p50_ms": p50, "p99_ms": p99,
                    "recall": recall_at_k(found, truth)})
        print(out[-1], flush=True)

    def faiss_hnsw():
        faiss.omp_set_num_threads(2)
        index = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(songs)
        index.hnsw.efSearch = 64
        faiss.omp_set_num_threads(1)
        return index

    def hnswlib_index():
        index = hnswlib.Index(space="ip", dim=DIM)
        index.init_index(max_elements=n, M=16, ef_construction=100)
        index.set_num_threads(2)
        index.add_items(songs)
        index.set_num_threads(1)
        index.set_ef(64)
        return index

    def usearch_index():
        index = UsearchIndex(ndim=DIM, metric="ip", connectivity=16, expansion_search=64)
        index.add(np.arange(n), songs, threads=2)
        return index

    record("FAISS IVF-Flat (shipped)", lambda: build_ivf(songs), lambda i, q: i.search(q[None], K)[1][0])
    record("FAISS HNSW (M 32, efSearch 64)", faiss_hnsw, lambda i, q: i.search(q[None], K)[1][0])
    record("hnswlib (M 16, ef 64)", hnswlib_index, lambda i, q: i.knn_query(q, K)[0][0])
    record("usearch (M 16, ef 64)", usearch_index, lambda i, q: i.search(q, K, threads=1).keys)
    return out


# ---- HTTP --------------------------------------------------------------------------------------


def _write_library(root: Path, n_tracks: int) -> tuple[Path, Path]:
    """``n_tracks`` tiny tagged WAVs, scanned into a catalogue whose vectors are synthetic voices."""
    import soundfile as sf

    from nextvox.catalogue import Catalogue, scan_library

    library, data = root / "music", root / "data"
    songs, _ = synthetic_voices(n_tracks, n_queries=1, seed=1)
    silence = np.zeros(800, dtype=np.float32)
    for i in range(n_tracks):
        path = library / f"singer{i // 10:04d}" / f"song{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        silence[0] = i / n_tracks  # distinct contents, distinct hashes
        sf.write(path, silence, 8000)
    catalogue = Catalogue(data, library=library)
    scan_library(catalogue, analysis_version="bench")
    rng = np.random.default_rng(2)
    for track, vector in zip(catalogue.tracks(), songs):
        catalogue.record_analysis(track.content_hash, analysis_version="bench", duration_s=200.0, excerpt_start_s=0.0,
                                  excerpt_s=120.0, vectors={"timbre": ("bench", vector),
                                                            "fingerprint": ("bench", rng.standard_normal(1920).astype(np.float32))})
    catalogue.close()
    return library, data


def _serve(library: Path, data: Path, port: int) -> None:
    import uvicorn

    from nextvox.api import create_app

    uvicorn.run(create_app(library, data), host="127.0.0.1", port=port, log_level="warning")


async def _load(url_for, *, clients: int, seconds: float) -> tuple[int, list[float]]:
    import httpx

    done, latencies = 0, []
    deadline = time.perf_counter() + seconds
    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=clients)) as client:
        async def worker(w: int) -> None:
            nonlocal done
            i = w
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                response = await client.get(url_for(i))
                latencies.append(time.perf_counter() - t0)
                assert response.status_code == 200, response.text
                done += 1
                i += clients
        await asyncio.gather(*(worker(w) for w in range(clients)))
    return done, latencies


def bench_http(n_tracks: int, *, seconds: float) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="nextvox-bench-") as folder:
        library, data = _write_library(Path(folder), n_tracks)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = multiprocessing.get_context("spawn").Process(target=_serve, args=(library, data, port), daemon=True)
        server.start()
        base = f"http://127.0.0.1:{port}"
        import httpx

        for _ in range(200):
            try:
                if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        paths = [f"singer{i // 10:04d}/song{i:05d}.wav" for i in range(n_tracks)]
        results = []
        try:
            for name, url_for in (("GET /api/health", lambda i: base + "/api/health"),
                                  ("GET /api/similar (k=10)", lambda i: f"{base}/api/similar?k=10&path={paths[(i * 7919) % n_tracks]}")):
                for clients in (1, 4, 16):
                    done, latencies = asyncio.run(_load(url_for, clients=clients, seconds=seconds))
                    results.append({"endpoint": name, "clients": clients, "requests": done, "rps": done / seconds,
                                    "p50_ms": float(np.percentile(latencies, 50) * 1000),
                                    "p99_ms": float(np.percentile(latencies, 99) * 1000)})
                    print(results[-1], flush=True)
        finally:
            server.terminate()
            server.join(timeout=10)
    return results


def table(rows: list[dict], comparison: list[dict], http: list[dict], *, compare_at: int, http_tracks: int) -> str:
    lines = [
        "# Recommendation service benchmark",
        "",
        f"`bench/service.py`, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores (shared with a training job: expect ±20–30 % run to run), Python {platform.python_version()}.",
        "Synthetic 128-d voices clustered by singer and voice type (how they are made: the docstring of `bench/service.py`).",
        "Latency: one top-10 query at a time on one thread; recall@10 against exact search; memory: resident-set growth while building.",
        "",
        "## Vector search",
        "",
        "| tracks | index | build (s) | memory (MB) | p50 (ms) | p99 (ms) | recall@10 |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['index']} | {r['build_s']:.1f} | {r['memory_mb']:.0f} | {r['p50_ms']:.3f} | "
                     f"{r['p99_ms']:.3f} | {r['recall']:.3f} |")
    lines += ["", f"## Libraries compared at {compare_at:,} tracks", "",
              "| index | build (s) | memory (MB) | p50 (ms) | p99 (ms) | recall@10 |", "|---|---:|---:|---:|---:|---:|"]
    for r in comparison:
        lines.append(f"| {r['index']} | {r['build_s']:.1f} | {r['memory_mb']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['recall']:.3f} |")
    lines += ["", f"## HTTP on loopback ({http_tracks:,} tracks, one uvicorn worker, httpx clients)", "",
              "| endpoint | concurrent clients | requests | requests/s | p50 (ms) | p99 (ms) |", "|---|---:|---:|---:|---:|---:|"]
    for r in http:
        lines.append(f"| {r['endpoint']} | {r['clients']} | {r['requests']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    return "\n".join(lines) + "\n"


WHY = """
## Why FAISS IVF-Flat, and where exact search stops

- **Exact below 20,000 vectors** (`nextvox.index.EXACT_MAX_VECTORS`): one matrix product
  answers in well under a millisecond there and is exact by construction; its cost grows
  linearly (tens of ms at 10^6), so above that size the IVF index takes over.
- **IVF-Flat rather than an HNSW graph**: at the same recall it answers in a fraction of a
  millisecond, and it builds several times faster than any of the three HNSW libraries
  (table above) — which matters because `analyze` keeps adding tracks: new vectors are
  appended to their nearest cell with no graph to repair, and the stored index
  (`DATA_DIR/index/timbre.npz`) is extended, not rebuilt, until the library has grown four
  times past the size the cells were trained on. Its vectors are kept uncompressed
  (no product quantisation), so the top-10 is re-scored exactly.
- faiss-cpu ships wheels (no compiler), and its exact `IndexFlatIP` gives the ground truth here.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 20_000, 100_000, 1_000_000])
    parser.add_argument("--compare-at", type=int, default=100_000, help="size at which HNSW libraries are compared")
    parser.add_argument("--http-tracks", type=int, default=2000)
    parser.add_argument("--http-seconds", type=float, default=5.0)
    args = parser.parse_args()
    rows, comparison = bench_sizes(args.sizes, compare_at=args.compare_at)
    http = bench_http(args.http_tracks, seconds=args.http_seconds)
    text = table(rows, comparison, http, compare_at=args.compare_at, http_tracks=args.http_tracks)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + WHY)


if __name__ == "__main__":
    main()
