"""What each way of storing a track's melody and fingerprint costs: bytes a track against melody mAP.

The cheapest honest measure: one analysed library with labels (by default bench/quality.py's
held-out ``eval`` split, plain mixes, rendered and analysed first when missing), its
catalogue's own stored sequences and vectors turned into each candidate storage exactly as a
migration of an existing catalogue would turn them (keys dropped, steps pooled, values
re-quantised: no re-analysis), then ``evaluate``'s melody retrieval (the query singer's own
songs left out, relevant = the same tune) on the resulting similarities:

- ``melody`` (the sequence match: local alignment in the best key, what the recommender's
  melody similarity and ``evaluate``'s ``melody`` are) for each sequence storage;
- ``melody_vector`` (cosine, what the melody index searches) stored as float32 / float16 /
  int8 directions;
- the recording fingerprint (near-duplicates: cosine >= ``NEAR_DUPLICATE_SIMILARITY``) as
  float32 / int8 directions: how far every pair's cosine moves, and whether any pair crosses
  the threshold.

Run: ``python bench/catalogue_size.py`` (``--library DIR --labels CSV --data-dir DIR`` for
another analysed library). Writes ``bench/results/catalogue_size.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nextvox import melody_match  # noqa: E402
from nextvox.catalogue import Catalogue, content_hash, resolve_library  # noqa: E402
from nextvox.evaluation.library import sequence_similarity_matrix  # noqa: E402
from nextvox.evaluation.metrics import melody_retrieval  # noqa: E402
from nextvox.labels import read_labels  # noqa: E402
from nextvox.recommend import NEAR_DUPLICATE_SIMILARITY  # noqa: E402

STORED_KEYS = (0.0, -2.0, 2.0, -4.0, 4.0, -6.0, 6.0)  # the keys catalogue schema 2 stored, in its order


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` (N, D) at unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def quantise_rows(x: np.ndarray, *, levels: int) -> np.ndarray:
    """Each row scaled so that its largest magnitude is ``levels`` and rounded (int8 storage: 127; int4: 7). Shape kept, float32."""
    peak = np.abs(x).max(axis=-1, keepdims=True)
    return np.rint(np.divide(levels * x, peak, out=np.zeros_like(x, dtype=np.float32), where=peak > 0)).astype(np.float32)


def sequence_storage(stored: np.ndarray, *, keys: tuple[float, ...], pool: int, levels: int) -> np.ndarray:
    """A schema-2 sequence (len(STORED_KEYS) * steps, D) as another storage would keep it: (len(keys) * steps', D).

    ``keys``: which of STORED_KEYS are kept; ``pool``: steps averaged into one (1: none), each
    made unit first (what the match compares is their direction); ``levels``: re-quantised to this peak.
    """
    by_key = np.asarray(stored, np.float32).reshape(len(STORED_KEYS), -1, stored.shape[-1])[[STORED_KEYS.index(k) for k in keys]]
    if pool > 1:
        steps = max(1, by_key.shape[1] // pool)
        kept = by_key[:, : steps * pool] if by_key.shape[1] >= pool else by_key
        by_key = unit(kept).reshape(len(keys), steps, -1, by_key.shape[-1]).mean(axis=2)
    return quantise_rows(by_key, levels=levels).reshape(-1, stored.shape[-1])


@contextmanager
def matched_in(keys: tuple[float, ...]):
    """melody_match with ``keys`` as its key set while inside: the match reads its keys from that one constant."""
    previous = melody_match.KEY_SHIFTS
    melody_match.KEY_SHIFTS = keys
    try:
        yield
    finally:
        melody_match.KEY_SHIFTS = previous


def melody_map(similarity: np.ndarray, labels) -> float:
    return float(melody_retrieval(similarity, singers=labels.singers, melodies=labels.melodies).means()["map"])


SEQUENCE_OPTIONS = [  # name, keys kept, steps pooled, quantisation peak
    ("as stored today: 7 keys, 120 steps, int8", STORED_KEYS, 1, 127),
    ("7 keys, int4", STORED_KEYS, 1, 7),
    ("keys 0, +2, +4, +6 (each relative key once), int8", (0.0, 2.0, 4.0, 6.0), 1, 127),
    ("keys 0, +2, +4, +6, int4", (0.0, 2.0, 4.0, 6.0), 1, 7),
    ("keys 0, +2, +4, +6, 60 steps (512 ms), int8", (0.0, 2.0, 4.0, 6.0), 2, 127),
    ("as sung only (1 key), int8", (0.0,), 1, 127),
]


def sequence_bytes(steps: int, channels: int, *, keys: int, pool: int, levels: int) -> int:
    """Bytes of one stored sequence of ``steps`` steps before pooling (int4: two values a byte)."""
    values = keys * max(1, steps // pool) * channels
    return values if levels > 7 else (values + 1) // 2


def eval_library(work: Path) -> tuple[Path, Path, Path]:
    """(library, labels CSV, data dir) of bench/quality.py's eval split in plain mixes, rendered and analysed when missing."""
    sys.path.insert(0, str(REPO / "bench"))
    import quality

    from nextvox.workflows import analyze_library

    args = quality.parse_args(["--work-dir", str(work), "--productions", "plain"])
    labels = quality.render(work / "library", args, "plain")
    data_dir = work / "data"
    analyze_library(work / "library", data_dir=data_dir)
    return work / "library", labels, data_dir


def measure(library: Path, labels_csv: Path, data_dir: Path) -> dict:
    library = resolve_library(library)
    labels = read_labels(labels_csv, library=library)
    hashes = [content_hash(library / path) for path in labels.paths]
    with Catalogue(data_dir, library=library, create=False) as catalogue:
        sequences = catalogue.sequences("melody", hashes)
        stored = [sequences[h][1].astype(np.float32) for h in hashes]
        melody = np.stack([catalogue.vectors_for("melody", [h])[h] for h in hashes])
        fingerprints = np.stack([catalogue.vectors_for("fingerprint", [h])[h] for h in hashes])
    steps = [len(s) // len(STORED_KEYS) for s in stored]
    channels = stored[0].shape[1]
    rows = {"tracks": len(hashes), "sequences": [], "melody_vector": [], "fingerprint": []}
    for name, keys, pool, levels in SEQUENCE_OPTIONS:
        started = time.perf_counter()
        kept = [sequence_storage(s, keys=keys, pool=pool, levels=levels) for s in stored]
        with matched_in(keys):
            similarity = sequence_similarity_matrix(kept)
        rows["sequences"].append({
            "storage": name, "melody_map": melody_map(similarity, labels),
            "bytes": float(np.mean([sequence_bytes(n, channels, keys=len(keys), pool=pool, levels=levels) for n in steps])),
            "alignments": 2 * len(keys) - 1, "match_s": time.perf_counter() - started,
        })  # fmt: skip
        print(json.dumps(rows["sequences"][-1]), flush=True)
    for name, encode, size in (("float32", lambda x: x, 4), ("float16", lambda x: x.astype(np.float16).astype(np.float32), 2),
                               ("int8 directions", lambda x: quantise_rows(x, levels=127), 1)):  # fmt: skip
        vectors = unit(encode(melody))
        rows["melody_vector"].append({"storage": name, "melody_map": melody_map(vectors @ vectors.T, labels),
                                      "bytes": size * melody.shape[1]})  # fmt: skip
    exact = unit(fingerprints) @ unit(fingerprints).T
    for name, encode, size in (("float32", lambda x: x, 4), ("int8 directions", lambda x: quantise_rows(x, levels=127), 1)):
        cosine = unit(encode(fingerprints)) @ unit(encode(fingerprints)).T
        off = ~np.eye(len(hashes), dtype=bool)
        rows["fingerprint"].append({
            "storage": name, "bytes": size * fingerprints.shape[1],
            "max_cosine_change": float(np.abs(cosine - exact)[off].max()),
            "decisions_changed": int(((cosine >= NEAR_DUPLICATE_SIMILARITY) != (exact >= NEAR_DUPLICATE_SIMILARITY))[off].sum() // 2),
            "pairs": int(off.sum() // 2),
        })  # fmt: skip
    return rows


def table(rows: dict, *, source: str) -> str:
    lines = [
        "# The catalogue's size: what each storage costs in melody mAP",
        "",
        f"`bench/catalogue_size.py`, {date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores (shared), "
        f"Python {platform.python_version()}. {source}: {rows['tracks']} tracks; each storage made from the stored "
        "schema-2 values as a migration would make it (no re-analysis); melody mAP as `evaluate` computes it "
        "(the query singer's own songs left out, relevant = the same tune).",
        "",
        "| melody sequence stored as | bytes a track | alignments a match | melody mAP (sequence match) | matching every pair (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows["sequences"]:
        lines.append(f"| {r['storage']} | {r['bytes']:,.0f} | {r['alignments']} | {r['melody_map']:.3f} | {r['match_s']:.1f} |")
    lines += ["", "| melody vector stored as | bytes a track | melody mAP (cosine; what the index searches) |", "|---|---:|---:|"]
    lines += [f"| {r['storage']} | {r['bytes']:,} | {r['melody_map']:.3f} |" for r in rows["melody_vector"]]
    lines += ["", "| fingerprint stored as | bytes a track | largest change of a pair's cosine | near-duplicate decisions changed |",
              "|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {r['storage']} | {r['bytes']:,} | {r['max_cosine_change']:.4f} | {r['decisions_changed']} of {r['pairs']:,} pairs |"
              for r in rows["fingerprint"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path, help="an analysed library (default: bench/quality.py's eval split, plain mixes)")
    parser.add_argument("--labels", type=Path, help="its labels CSV (path, singer, melody)")
    parser.add_argument("--data-dir", type=Path, help="its data directory")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/nextvox-bench-catalogue-size"),
                        help="where the default eval library is rendered and analysed")  # fmt: skip
    args = parser.parse_args()
    if args.library:
        library, labels, data_dir, source = args.library, args.labels, args.data_dir, f"Library {args.library.name}"
    else:
        library, labels, data_dir = eval_library(args.work_dir)
        source = "bench/quality.py's held-out `eval` split (13 singers, 8 songs each, plain mixes, shipped models)"
    rows = measure(library, labels, data_dir)
    results = REPO / "bench" / "results"
    (results / "catalogue_size.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = table(rows, source=source)
    (results / "catalogue_size.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
