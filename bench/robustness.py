"""Robustness to production: singer mAP, melody mAP and gender accuracy broken down by production element.

One command, ``.venv/bin/python bench/robustness.py`` (after, or instead of, ``bench/quality.py``
with the same size options: it reuses that benchmark's rendered libraries and catalogues, and
renders and analyses them itself when they are missing).

The studio library of the held-out ``eval`` split draws every production element on its own
(docs/synth.md, "Studio production"), so its songs can be grouped by element: with and without
drums, by what the lead instrument plays, with and without a backing harmony, double tracking,
reverb (by its size), delay, compression and limiting, by vocal-to-accompaniment ratio and by
codec. A group's figures are those of its songs as queries, each ranking **every** other song
of the library (the same candidates for every row, so rows compare directly); the gender
figures are the shipped head's answers on the group's songs, and those of a head retrained on
the library's timbre vectors with the song's singer held out. The plain library (the same
songs, plainly mixed) and the isolated vocals come first as the reference, and the plain
library is also broken down by ratio and by codec.

The similarity matrices come from the catalogue and the baseline cache that ``evaluate``
fills (each library is analysed and evaluated once here when it was not yet), the melody
match computed once per library and kept in the work folder.

Writes ``bench/results/robustness.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import quality  # noqa: E402  (bench/quality.py: the libraries, the work folder, the summary helpers)

import numpy as np  # noqa: E402

from nextvox.analysis import analyze_library  # noqa: E402
from nextvox.catalogue import Catalogue  # noqa: E402
from nextvox.errors import NextvoxError  # noqa: E402
from nextvox.audio import load_excerpt  # noqa: E402
from nextvox.evaluation import (  # noqa: E402
    BaselineCache, chroma_baseline, cosine_similarity, melody_retrieval, resemblyzer_baseline, sequence_similarity_matrix,
    singer_retrieval, transposition_invariant_similarity,
)  # fmt: skip
from nextvox.gender import shipped_head, train_gender_head  # noqa: E402

RESULTS = ROOT / "bench" / "results"
BASELINE_FUNCTIONS = {"resemblyzer": resemblyzer_baseline, "chroma": chroma_baseline}

Row = dict[str, str]


def _ratio(row: Row) -> float:
    return float(row["ratio_db"])


# (group title, [(subset name, predicate on a labels.csv row)]): the studio library's breakdown.
STUDIO_GROUPS: list[tuple[str, list[tuple[str, Callable[[Row], bool]]]]] = [
    ("drums", [("no drums", lambda r: r["drums"] == "none"), ("drums", lambda r: r["drums"] != "none")]),
    ("lead instrument", [("none", lambda r: r["lead_part"] == "none"), ("doubling the voice", lambda r: r["lead_part"] == "doubling"),
                         ("canon (answering)", lambda r: r["lead_part"] == "canon")]),
    ("backing harmony", [("none", lambda r: r["harmony_steps"] == "0"), ("harmony", lambda r: r["harmony_steps"] != "0")]),
    ("double tracking", [("single take", lambda r: r["double_track"] == "false"), ("double-tracked", lambda r: r["double_track"] == "true")]),
    ("reverb", [("dry", lambda r: float(r["reverb_s"]) == 0), ("RT60 < 1.5 s", lambda r: 0 < float(r["reverb_s"]) < 1.5),
                ("RT60 ≥ 1.5 s", lambda r: float(r["reverb_s"]) >= 1.5)]),
    ("delay", [("none", lambda r: float(r["delay_ms"]) == 0), ("echo", lambda r: float(r["delay_ms"]) > 0)]),
    ("bus compression", [("none", lambda r: float(r["compression_db"]) == 0), ("compressed", lambda r: float(r["compression_db"]) > 0)]),
    ("limiter", [("none", lambda r: float(r["limiter_db"]) == 0), ("limited", lambda r: float(r["limiter_db"]) > 0)]),
    ("vocal-to-accompaniment", [("−6 … −2 dB", lambda r: _ratio(r) < -2), ("−2 … +2 dB", lambda r: -2 <= _ratio(r) <= 2),
                                ("+2 … +6 dB", lambda r: _ratio(r) > 2)]),
    ("codec", [(f, (lambda fmt: lambda r: r["format"] == fmt)(f)) for f in ("mp3", "m4a", "opus", "ogg", "flac")]),
    ("lossy bitrate", [("≤ 96 kb/s", lambda r: 0 < int(r["bitrate_kbps"]) <= 96), ("128–160 kb/s", lambda r: 128 <= int(r["bitrate_kbps"]) <= 160),
                       ("≥ 192 kb/s or lossless", lambda r: int(r["bitrate_kbps"]) >= 192 or int(r["bitrate_kbps"]) == 0)]),
]  # fmt: skip

PLAIN_GROUPS: list[tuple[str, list[tuple[str, Callable[[Row], bool]]]]] = [
    ("vocal-to-accompaniment", [("−3 … +1 dB", lambda r: _ratio(r) <= 1), ("+1.5 … +3.5 dB", lambda r: 1 < _ratio(r) <= 3.5),
                                ("+4 … +6 dB", lambda r: _ratio(r) > 3.5)]),
    ("codec", [(f, (lambda fmt: lambda r: r["format"] == fmt)(f)) for f in ("mp3", "m4a", "opus", "ogg", "flac", "wav")]),
]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--singers", type=int, default=13, help="singers in the library (the eval split has 13)")
    parser.add_argument("--songs", type=int, default=8, help="songs per singer")
    parser.add_argument("--max-song-s", type=float, default=30.0, help="longest song, seconds")
    parser.add_argument("--voice-set", default="eval", help="the generator's voice set to draw singers from")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the generator")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--work-dir", type=Path, default=None, help="bench/quality.py's work folder (default: the same as it uses)")
    parser.add_argument("--out", type=Path, default=RESULTS / "robustness.md", help="the Markdown report")
    return parser.parse_args(argv)


def read_rows(labels_csv: Path) -> list[Row]:
    with open(labels_csv, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _loso_predictions(vectors: np.ndarray, genders: np.ndarray, singers: np.ndarray) -> np.ndarray:
    """Each singer's songs predicted by a gender head trained on every other singer (the shipped recipe)."""
    predicted = np.empty(len(genders), dtype=object)
    for singer in np.unique(singers):
        held_out = singers == singer
        head = train_gender_head(vectors[~held_out], genders[~held_out], timbre_model_version="under evaluation")
        predicted[held_out] = head.predict(vectors[held_out])[0]
    return predicted


class LibraryScores:
    """Per-song scores of one evaluated library, from which any group's figures are means."""

    def __init__(self, library: Path, labels_csv: Path, *, data_dir: Path, work: Path, tag: str, jobs: int,
                 separated: bool = False):  # fmt: skip
        self.rows = read_rows(labels_csv)
        analyze_library(library, data_dir=data_dir, jobs=jobs)
        with Catalogue(data_dir, library=library) as catalogue:
            hash_of = {t.path: t.content_hash for t in catalogue.tracks(status="analyzed")}
            self.rows = [r for r in self.rows if r["path"] in hash_of]
            cache = BaselineCache(data_dir)
            for done, row in enumerate(self.rows, 1):  # the baselines evaluate would compute, into its cache
                missing = [n for n in ("resemblyzer", "chroma") if cache.load(n, hash_of[row["path"]]) is None]
                if missing:
                    samples = load_excerpt(library / row["path"]).valid_samples
                    for name in missing:
                        cache.store(name, hash_of[row["path"]], BASELINE_FUNCTIONS[name](samples))
                quality.report(f"{tag} baselines", done, len(self.rows))
            hashes = [hash_of[r["path"]] for r in self.rows]
            stored, timbre_matrix, timbre_versions = catalogue.vectors("timbre")
            row_of = {h: i for i, h in enumerate(stored)}
            timbre = timbre_matrix[[row_of[h] for h in hashes]]
            self.timbre_version = timbre_versions[row_of[hashes[0]]]
            sequences = catalogue.sequences("melody", hashes)
        self.melody_version = sequences[hashes[0]][0]
        resemblyzer = np.stack([cache.load("resemblyzer", h) for h in hashes])
        chroma = np.stack([cache.load("chroma", h) for h in hashes])
        match_file = work / f"melody-match-{tag}-{hashlib.sha1(''.join(hashes).encode()).hexdigest()[:12]}-{self.melody_version}.npy"
        if match_file.exists():
            melody = np.load(match_file)
        else:
            print(f"  {tag}: melody match of {len(hashes)} songs ...", file=sys.stderr, flush=True)
            melody = sequence_similarity_matrix([sequences[h][1] for h in hashes])
            np.save(match_file, melody)
        self.singers = np.array([r["singer"] for r in self.rows])
        self.melodies = np.array([r.get("melody", "") for r in self.rows])
        self.genders = np.array([r["gender"] for r in self.rows])
        singer_ap = lambda sim: singer_retrieval(sim, singers=self.singers)  # noqa: E731
        melody_ap = lambda sim: melody_retrieval(sim, singers=self.singers, melodies=self.melodies)  # noqa: E731
        timbre_sim = cosine_similarity(timbre, timbre)
        self.scores = {
            "timbre_singer": singer_ap(timbre_sim), "resemblyzer_singer": singer_ap(cosine_similarity(resemblyzer, resemblyzer)),
            "melody_melody": melody_ap(melody), "chroma_melody": melody_ap(transposition_invariant_similarity(chroma, chroma)),
        }  # fmt: skip
        if separated:
            vectors = []
            for done, row in enumerate(self.rows, 1):
                key = hashlib.sha1(f"{row['path']}\0{hash_of[row['path']]}".encode()).hexdigest()[:16]
                out = work / f"separated-resemblyzer-{tag}" / f"{key}.npy"
                if not out.exists():
                    out.parent.mkdir(parents=True, exist_ok=True)
                    quality._separate_and_embed((str(library / row["path"]), str(out)))
                vectors.append(np.load(out))
                quality.report(f"{tag} separated resemblyzer", done, len(self.rows))
            vectors = np.stack(vectors)
            self.scores["separated_singer"] = singer_ap(cosine_similarity(vectors, vectors))
        head = shipped_head()
        self.head_version = head.version if head else None
        self.head_right = (head.predict(timbre)[0] == self.genders) if head and head.timbre_model_version == self.timbre_version else None
        self.loso_right = _loso_predictions(timbre, self.genders, self.singers) == self.genders

    def figures(self, keep: Callable[[Row], bool]) -> dict[str, float | int | None]:
        """The headline figures of the songs ``keep`` selects (queries among all the library's songs)."""
        mask = np.array([keep(r) for r in self.rows])
        out: dict[str, float | int | None] = {"n_tracks": int(mask.sum()), "n_singers": int(len(np.unique(self.singers[mask])))}
        for key, scores in self.scores.items():
            ap, chance = scores.average_precision[mask], scores.chance_average_precision[mask]
            queries = ~np.isnan(ap)
            out[f"{key}_map"] = float(ap[queries].mean()) if queries.any() else None
            out[f"{key.split('_')[1]}_queries"] = int(queries.sum())
            out[f"chance_{key.split('_')[1]}_map"] = float(chance[queries].mean()) if queries.any() else None
        for key, right in (("default_head_balanced_accuracy", self.head_right), ("timbre_head_balanced_accuracy", self.loso_right)):
            genders = self.genders[mask]
            present = [g for g in ("female", "male") if np.any(genders == g)]
            out[key] = (float(np.mean([right[mask][genders == g].mean() for g in present]))
                        if right is not None and len(present) == 2 else None)  # fmt: skip
        return out


COLUMNS = (
    ("songs", "n_tracks", "{}"), ("singers", "n_singers", "{}"),
    ("timbre singer mAP", "timbre_singer_map", "{:.3f}"), ("resemblyzer singer mAP", "resemblyzer_singer_map", "{:.3f}"),
    ("resemblyzer on separated vocals", "separated_singer_map", "{:.3f}"),
    ("chance", "chance_singer_map", "{:.3f}"), ("melody queries", "melody_queries", "{}"),
    ("melody match mAP", "melody_melody_map", "{:.3f}"), ("chroma mAP", "chroma_melody_map", "{:.3f}"),
    ("chance", "chance_melody_map", "{:.3f}"), ("shipped gender head, bal. acc.", "default_head_balanced_accuracy", "{:.3f}"),
    ("timbre LOSO head, bal. acc.", "timbre_head_balanced_accuracy", "{:.3f}"),
)  # fmt: skip


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| songs in the group | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, figures in rows:
        cells = ["—" if figures.get(key) is None else fmt.format(figures[key]) for _, key, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def score_library(library: Path, labels_csv: Path, **options) -> LibraryScores:
    """In a worker process: a library's :class:`LibraryScores` (one thread: the workers share the cores)."""
    import torch

    torch.set_num_threads(1)
    return LibraryScores(library, labels_csv, **options)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = quality.work_dir(args)
    jobs = args.jobs or os.cpu_count() or 1
    started = time.perf_counter()
    quality_args = quality.parse_args([
        "--singers", str(args.singers), "--songs", str(args.songs), "--max-song-s", str(args.max_song_s),
        "--voice-set", args.voice_set, "--seed", str(args.seed), *(["--jobs", str(args.jobs)] if args.jobs else []),
    ])  # fmt: skip
    quality_args.work_dir = args.work_dir
    try:
        labels = {style: quality.render(work / f"library-{style}", quality_args, style) for style in ("plain", "studio")}
        vocals_library, vocals_labels = quality.vocal_library(labels["plain"], work / "labels-vocals.csv")
        # One process per library: each analyses what is missing, fills the baseline cache and
        # computes its melody match once (the costly part); they run side by side.
        jobs_of = {
            "vocals": (vocals_library, vocals_labels, work / "data-vocals", False),
            "plain": (work / "library-plain", labels["plain"], work / "data-plain", True),
            "studio": (work / "library-studio", labels["studio"], work / "data-studio", True),
        }
        with ProcessPoolExecutor(max_workers=len(jobs_of), mp_context=get_context("spawn")) as pool:
            futures = {tag: pool.submit(score_library, library, labels_csv, data_dir=data, work=work, tag=tag,
                                        jobs=max(1, jobs // 2), separated=separated)
                       for tag, (library, labels_csv, data, separated) in jobs_of.items()}  # fmt: skip
            libraries = {tag: future.result() for tag, future in futures.items()}
    except NextvoxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    everything = lambda r: True  # noqa: E731
    reference = [(f"all {name}", libraries[tag].figures(everything))
                 for tag, name in (("vocals", "isolated vocals"), ("plain", "plain mixes"), ("studio", "studio mixes"))]  # fmt: skip
    studio = {title: [(name, libraries["studio"].figures(keep)) for name, keep in members] for title, members in STUDIO_GROUPS}
    plain = {title: [(name, libraries["plain"].figures(keep)) for name, keep in members] for title, members in PLAIN_GROUPS}
    seconds = time.perf_counter() - started
    studio_scores = libraries["studio"]
    lines = [
        "# Robustness to production",
        "",
        f"Measured {datetime.date.today().isoformat()} at commit `{quality.git_commit()}` by `bench/robustness.py`"
        f" (`--singers {args.singers} --songs {args.songs} --max-song-s {args.max_song_s:g} --voice-set {args.voice_set}"
        f" --seed {args.seed}`) in {seconds:.0f} s (0 for what an earlier run of it, or of `bench/quality.py`, analysed and cached).",
        "",
        f"Models: timbre `{studio_scores.timbre_version}`, melody `{studio_scores.melody_version}`, shipped gender head"
        f" `{studio_scores.head_version}`. Songs of the held-out `eval` split (singers and tunes no shipped model was"
        " trained on); the plain and the studio library hold the same songs, produced differently (docs/synth.md,"
        " \"Studio production\"). A group's retrieval figures are the mean over its songs as queries, each ranking every"
        " other song of its library (so rows compare directly; `chance` is a random ranking's). Melody queries are the"
        " group's songs whose tune another singer also sang. `shipped gender head`: balanced accuracy of the shipped head"
        " as is on the group's songs. `resemblyzer on separated vocals`: resemblyzer on the default separator's vocals of"
        " each mix's excerpt. `timbre LOSO head`: a head of the same recipe retrained on the library's timbre"
        " vectors with the song's singer held out. A dash: the group has no such query, or one gender only.",
        "",
        "## Reference: the whole libraries",
        "",
        table(reference),
        "",
        "## Studio mixes, by production element",
    ]
    for title, rows in studio.items():
        lines += ["", f"### {title}", "", table(rows)]
    lines += ["", "## Plain mixes, by ratio and codec"]
    for title, rows in plain.items():
        lines += ["", f"### {title}", "", table(rows)]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    versions = {"timbre": studio_scores.timbre_version, "melody": studio_scores.melody_version, "gender_head": studio_scores.head_version}
    raw = {"reference": reference, "studio": studio, "plain": plain, "versions": versions, "seconds": seconds}
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    print(text)
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
