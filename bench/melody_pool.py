"""What the melody query's two-stage pool changes in results, on libraries bench/quality.py analysed.

A melody-weighted query matches every pooled candidate as sung, then only the best
``full_match_share`` of them in every key (docs/service.md). For each analysed library
(``--work-dir``: bench/quality.py's, with ``data-STYLE`` and ``library-STYLE`` folders and the
isolated vocals under ``library-plain/vocals``), on copies of their catalogues (opening one
writable may migrate it):

- melody mAP (:func:`nextvox.evaluation.melody_retrieval`, bench/quality.py's metric) of each
  song's ranking by the full match, against the two-stage ranking: the best share of the
  songs by the as-sung match ranked first by their full match, the rest after by the as-sung
  match;
- overlap@10 of every song's top-10 with the recommender's two-stage pool against the pool
  all matched in every key (``full_match_share=1``), at ``--melody-weight 0.5`` and by melody alone.

Run: ``python bench/melody_pool.py --work-dir /tmp/nextvox-bench-quality/...``. Writes
``bench/results/melody_pool.md``.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nextvox.catalogue import Catalogue  # noqa: E402
from nextvox.evaluation import melody_retrieval  # noqa: E402
from nextvox.melody_match import as_sung_similarities, sequence_similarities  # noqa: E402
from nextvox.recommend import Recommender  # noqa: E402
from nextvox.recommend.recommender import FULL_MATCH_SHARE  # noqa: E402

SHARES = (0.25, FULL_MATCH_SHARE, 0.5)


def libraries(work: Path) -> list[tuple[str, Path, Path, Path]]:
    """(style, data dir, library, labels csv) of each analysed library in bench/quality.py's work folder."""
    found = [(style, work / f"data-{style}", work / f"library-{style}", work / f"library-{style}" / "labels.csv")
             for style in ("plain", "studio")]
    found.append(("vocals", work / "data-vocals", work / "library-plain" / "vocals", work / "labels-vocals.csv"))
    return [entry for entry in found if (entry[1] / "catalogue.sqlite").exists() and entry[3].exists()]


def two_stage_ranking(full: np.ndarray, first: np.ndarray, share: float) -> np.ndarray:
    """Scores ranking, per query row, the best ``share`` by ``first`` first (by ``full``), the rest after (by ``first``): (Q, N)."""
    n_first = max(1, round(share * full.shape[1]))
    ranked = first - 1e3
    for row, order in enumerate(np.argsort(-first, axis=1, kind="stable")):
        ranked[row, order[:n_first]] = full[row, order[:n_first]] + 1e3
    return ranked


def paired_change(before: np.ndarray, after: np.ndarray) -> tuple[float, float, int]:
    """Mean per-query change of average precision and its standard error, over the queries (non-NaN rows): (mean, s.e., queries)."""
    change = (after - before)[~np.isnan(before)]
    return float(change.mean()), float(change.std(ddof=1) / np.sqrt(len(change))), len(change)


def measure(style: str, data_dir: Path, library: Path, labels: Path) -> dict:
    with open(labels, newline="", encoding="utf-8") as f:
        rows = {r["path"]: r for r in csv.DictReader(f)}
    with tempfile.TemporaryDirectory() as scratch:
        for part in data_dir.glob("catalogue.sqlite*"):  # with its WAL, if any
            shutil.copy(part, scratch)
        with Catalogue(Path(scratch), library=library, create=False) as catalogue:
            tracks = [t for t in catalogue.tracks(status="analyzed") if t.path in rows]
            stored = catalogue.sequences("melody", [t.content_hash for t in tracks])
            tracks = [t for t in tracks if t.content_hash in stored]
            sequences = [stored[t.content_hash][1] for t in tracks]
            full = np.stack([sequence_similarities(s, sequences) for s in sequences])  # (N, N)
            first = np.stack([as_sung_similarities(s, sequences) for s in sequences])
            labels_of = {"singers": np.array([rows[t.path]["singer"] for t in tracks]),
                         "melodies": np.array([rows[t.path].get("melody", "") for t in tracks])}
            result = {"style": style, "songs": len(tracks), "map_full": melody_retrieval(full, **labels_of).means()["map"],
                      "map_as_sung": melody_retrieval(first, **labels_of).means()["map"],
                      "map_two_stage": {s: melody_retrieval(two_stage_ranking(full, first, s), **labels_of).means()["map"] for s in SHARES},
                      "change": paired_change(melody_retrieval(full, **labels_of).average_precision,
                                              melody_retrieval(two_stage_ranking(full, first, FULL_MATCH_SHARE), **labels_of).average_precision)}
            two_stage, every = Recommender(catalogue), Recommender(catalogue, full_match_share=1.0)
            for name, weights in (("overlap_melody_0.5", {"w_melody": 0.5}), ("overlap_melody_alone", {"w_timbre": 0.0, "w_melody": 1.0})):
                overlaps = []
                for t in tracks:
                    query = [two_stage.track_query(t.path)]
                    a = {r.path for r in two_stage.recommend(query, k=10, **weights)}
                    b = {r.path for r in every.recommend(query, k=10, **weights)}
                    overlaps.append(len(a & b) / max(1, len(b)))
                result[name] = (float(np.mean(overlaps)), float(np.min(overlaps)))
    return result


def table(results: list[dict], work: Path) -> str:
    lines = [
        "# The melody query's two-stage pool",
        "",
        f"Measured {date.today()} by `bench/melody_pool.py --work-dir {work}` on the libraries bench/quality.py analysed.",
        f"The recommender matches every pooled candidate as sung and the best {FULL_MATCH_SHARE:.0%} of them in every key",
        "(docs/service.md). Melody mAP: each song's ranking by the full match, against the best share by the as-sung",
        "match ranked first by their full match. Overlap@10: every song's top-10 with the two-stage pool against the",
        "whole pool matched in every key (mean, worst).",
        "",
        "| library | songs | melody mAP, full match | as-sung alone | " + " | ".join(f"two-stage {s:.0%}" for s in SHARES)
        + f" | change at {FULL_MATCH_SHARE:.0%} (± s.e., queries) | overlap@10, `--melody-weight 0.5` | overlap@10, melody alone |",
        "|---|---:|---:|---:|" + "---:|" * len(SHARES) + "---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['style']} | {r['songs']} | {r['map_full']:.3f} | {r['map_as_sung']:.3f} | "
                     + " | ".join(f"{r['map_two_stage'][s]:.3f}" for s in SHARES)
                     + " | {:+.3f} ± {:.3f} ({})".format(*r["change"])
                     + f" | {r['overlap_melody_0.5'][0]:.3f} ({r['overlap_melody_0.5'][1]:.1f}) |"
                     + f" {r['overlap_melody_alone'][0]:.3f} ({r['overlap_melody_alone'][1]:.1f}) |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True, help="bench/quality.py's work folder (its analysed libraries)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "melody_pool.md")
    args = parser.parse_args()
    found = libraries(args.work_dir)
    if not found:
        raise SystemExit(f"no analysed library of bench/quality.py in {args.work_dir}")
    results = [measure(*entry) for entry in found]
    text = table(results, args.work_dir)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
