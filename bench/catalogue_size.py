"""What each way of storing a track's melody and fingerprint costs: bytes a track against melody mAP.

The cheapest honest measure: one library with labels analysed by a nextvox of catalogue schema
2 (melody sequences in 7 keys as int8, float32 vectors), its stored sequences and vectors read
as they are (SQLite read-only, no migration) and turned into each candidate storage exactly as
the migration to schema 3 turns them (keys dropped, steps pooled, values re-quantised: no
re-analysis), then ``evaluate``'s melody retrieval (the query singer's own
songs left out, relevant = the same tune) on the resulting similarities:

- ``melody`` (the sequence match: local alignment in the best key, what the recommender's
  melody similarity and ``evaluate``'s ``melody`` are) for each sequence storage;
- ``melody_vector`` (cosine, what the melody index searches) stored as float32 / float16 /
  int8 directions;
- the recording fingerprint (near-duplicates: cosine >= ``NEAR_DUPLICATE_SIMILARITY``) as
  float32 / int8 directions: how far every pair's cosine moves, and whether any pair crosses
  the threshold.

Run: ``python bench/catalogue_size.py --library DIR --labels CSV --data-dir DIR``, e.g. on
bench/quality.py's held-out ``eval`` split rendered with ``--productions plain`` and analysed
by the commit before catalogue schema 3. Writes ``bench/results/catalogue_size.md`` (and ``.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nextvox import melody_match  # noqa: E402
from nextvox.catalogue import CATALOGUE_FILE, content_hash, decode_sequence, resolve_library  # noqa: E402
from nextvox.evaluation.library import sequence_similarity_matrix  # noqa: E402
from nextvox.evaluation.metrics import melody_retrieval  # noqa: E402
from nextvox.labels import read_labels  # noqa: E402
from nextvox.recommend.recommender import NEAR_DUPLICATE_SIMILARITY  # noqa: E402

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
    ("schema 2: 7 keys (0, ±2, ±4, ±6), 256 ms steps, int8", STORED_KEYS, 1, 127),
    ("7 keys, int4", STORED_KEYS, 1, 7),
    ("keys 0, +2, +4, +6 (each relative key once), int8", (0.0, 2.0, 4.0, 6.0), 1, 127),
    ("keys 0, +2, +4, +6, int4", (0.0, 2.0, 4.0, 6.0), 1, 7),
    ("keys 0, +2, +4, +6, 60 steps (512 ms), int8", (0.0, 2.0, 4.0, 6.0), 2, 127),
    ("7 keys, 60 steps (512 ms), int4", STORED_KEYS, 2, 7),
]


def sequence_bytes(steps: int, channels: int, *, keys: int, pool: int, levels: int) -> int:
    """Bytes of one stored sequence of ``steps`` steps before pooling (int4: two values a byte)."""
    values = keys * max(1, steps // pool) * channels
    return values if levels > 7 else (values + 1) // 2


def schema_2_values(data_dir: Path, hashes: list[str]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """(melody sequences in STORED_KEYS, (steps, D) float32 each; melody vectors (N, 512); fingerprints (N, 1920)) of ``hashes``.

    Read from a schema-2 catalogue with SQLite in read-only mode, as they are: the project's
    Catalogue would migrate it to today's schema on opening (and it is that migration's
    choices that are measured here).
    """
    db = sqlite3.connect(f"file:{data_dir / CATALOGUE_FILE}?mode=ro", uri=True)
    versions = {v for (v,) in db.execute("SELECT DISTINCT analysis_version FROM analyses")}
    if not all(f"k{len(STORED_KEYS)}-" in v for v in versions):
        raise SystemExit(f"{data_dir}: not a catalogue of {len(STORED_KEYS)}-key melody sequences (analysed before catalogue schema 3)")
    sequences = {h: decode_sequence(blob, encoding=encoding, n_channels=channels).astype(np.float32) for h, blob, encoding, channels
                 in db.execute("SELECT content_hash, sequence, encoding, n_channels FROM sequences WHERE name = 'melody'")}  # fmt: skip
    schema = int(db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
    if schema != 2:
        raise SystemExit(f"{data_dir}: a catalogue of schema {schema}; this measures the storage of schema 2's values")
    vectors = {(h, name): np.frombuffer(blob, dtype=np.float32) for h, name, blob
               in db.execute("SELECT content_hash, name, vector FROM vectors WHERE name IN ('melody', 'fingerprint')")}  # fmt: skip
    db.close()
    return ([sequences[h] for h in hashes], np.stack([vectors[h, "melody"] for h in hashes]),
            np.stack([vectors[h, "fingerprint"] for h in hashes]))  # fmt: skip


def measure(library: Path, labels_csv: Path, data_dir: Path) -> dict:
    library = resolve_library(library)
    labels = read_labels(labels_csv, library=library)
    hashes = [content_hash(library / path) for path in labels.paths]
    stored, melody, fingerprints = schema_2_values(data_dir, hashes)
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
    lines += [
        "",
        "Bytes are those of these songs (20 s at most: 78 steps on average); a full sequence of 120 steps takes "
        "13,440 bytes in schema 2 and 3,840 in schema 3. The matching times are of one run on a shared machine, the "
        "first including the compilation of the alignment: read their order only.",
        "",
        "**Schema 3 keeps** the melody sequence in keys 0, +2, +4, +6 as four-bit steps, and the melody vector and the "
        "fingerprint as int8 directions: with the timbre vector and SQLite's own bytes, about 9 KB a track "
        "(bench/results/service.md). The four bits cost nothing measurable and neither do the int8 vectors; the keys "
        "cost about 0.035 melody mAP here (each relative key matched once instead of twice), the price of the size "
        "target and of 7 alignments a match instead of 13. Seven keys as four bits would keep the mAP at about "
        "13 KB a track (rows past SQLite's 4 KB page waste the rest of their last page).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path, required=True, help="a library analysed with 7-key melody sequences (catalogue schema 2)")
    parser.add_argument("--labels", type=Path, required=True, help="its labels CSV (path, singer, melody)")
    parser.add_argument("--data-dir", type=Path, required=True, help="its data directory (read only)")
    parser.add_argument("--source", default=None, help="what the library is, for the table's heading")
    args = parser.parse_args()
    rows = measure(args.library, args.labels, args.data_dir)
    source = args.source or f"Library {args.library.name}"
    results = REPO / "bench" / "results"
    (results / "catalogue_size.json").write_text(json.dumps(rows, indent=1) + "\n")
    text = table(rows, source=source)
    (results / "catalogue_size.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
