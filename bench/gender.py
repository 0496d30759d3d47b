"""The gender head on singers it never heard: leave-one-singer-out over a training library.

One command, ``.venv/bin/python bench/gender.py``:

1. renders a library of the generator's ``train`` split (every permitted voice and every
   speaker variant, children included) with the production ``--production`` (by default
   ``mixed``: each song plain or studio-produced), and analyses it with the shipped models;
2. holds out each singer in turn, trains the gender head (nextvox.gender.train_gender_head,
   the shipped recipe) on every other singer's timbre vectors and predicts the held-out
   singer's songs;
3. does so twice: with the head trained on every song, and with the head trained on the plain
   songs only (what the shipped head saw), both measured on every song;
4. breaks the accuracy down by kind of singer (real adult speakers, adult variants, children)
   and by production style, and writes ``bench/results/gender.md`` (``.json``);
5. with ``--out-head FILE``, also writes the head trained on every song of the library (the
   file ``nextvox train gender`` writes; docs/gender.md says how the shipped one was made),
   and measures it beside the shipped head on the held-out ``eval`` libraries that
   ``bench/quality.py`` analysed (``--eval-work-dir``): isolated vocals, plain and studio mixes.

The library and its catalogue are kept in ``--work-dir`` so a second run re-measures in seconds.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import quality  # noqa: E402  (bench/quality.py: git_commit, report)

from nextvox.analysis import AnalysisSettings, analyze_library  # noqa: E402
from nextvox.catalogue import Catalogue  # noqa: E402
from nextvox.errors import NextvoxError  # noqa: E402
from nextvox.gender import train_gender_head  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--singers", type=int, default=60, help="singers (the train split has 60 with MBROLA installed)")
    parser.add_argument("--songs", type=int, default=3, help="songs per singer")
    parser.add_argument("--max-song-s", type=float, default=20.0, help="longest song, seconds")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generator")
    parser.add_argument("--production", default="mixed", help="plain, studio or mixed")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the library and its catalogue are kept")
    parser.add_argument("--out-head", type=Path, default=None, help="also write the head trained on every song here")
    parser.add_argument("--eval-work-dir", type=Path, default=None,
                        help="bench/quality.py's work folder (default: the one its default options use)")
    parser.add_argument("--out", type=Path, default=RESULTS / "gender.md", help="the Markdown report")
    return parser.parse_args(argv)


def kind_of(row: dict[str, str]) -> str:
    if row.get("age") == "child":
        return "children (variants)"
    return "adult variants and espeak-ng" if row["synthetic"] == "true" else "real adult speakers"


def loso_predictions(vectors: np.ndarray, genders: np.ndarray, singers: np.ndarray, train_mask: np.ndarray,
                     *, version: str) -> np.ndarray:  # fmt: skip
    """Each singer's songs predicted by a head trained on the other singers' songs where ``train_mask``."""
    predicted = np.empty(len(genders), dtype=object)
    for singer in np.unique(singers):
        held_out = singers == singer
        fit = ~held_out & train_mask
        head = train_gender_head(vectors[fit], genders[fit], timbre_model_version=version)
        predicted[held_out] = head.predict(vectors[held_out])[0]
    return predicted


def scores(right: np.ndarray, genders: np.ndarray) -> dict[str, float | int | None]:
    if len(right) == 0:
        return {"n": 0, "accuracy": None, "balanced_accuracy": None}
    recalls = [float(right[genders == g].mean()) for g in ("female", "male") if np.any(genders == g)]
    return {"n": int(len(right)), "accuracy": float(right.mean()),
            "balanced_accuracy": float(np.mean(recalls)) if len(recalls) == 2 else None}  # fmt: skip


def held_out_comparison(heads: dict[str, object], eval_work: Path) -> list[tuple[str, dict]]:
    """Balanced accuracy of each head as is on the eval libraries bench/quality.py analysed: [(style, {head: score})]."""
    out = []
    for style, library, labels_csv, data_dir in (
        ("isolated vocals", eval_work / "library-plain" / "vocals", eval_work / "labels-vocals.csv", eval_work / "data-vocals"),
        ("plain mixes", eval_work / "library-plain", eval_work / "library-plain" / "labels.csv", eval_work / "data-plain"),
        ("studio mixes", eval_work / "library-studio", eval_work / "library-studio" / "labels.csv", eval_work / "data-studio"),
    ):
        if not (labels_csv.exists() and (data_dir / "catalogue.sqlite").exists()):
            continue
        with open(labels_csv, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        with Catalogue(data_dir, library=library, create=False) as catalogue:
            hash_of = {t.path: t.content_hash for t in catalogue.tracks(status="analyzed")}
            hashes, matrix, versions = catalogue.vectors("timbre")
        row_of = {h: i for i, h in enumerate(hashes)}
        rows = [r for r in rows if hash_of.get(r["path"]) in row_of]
        if not rows:
            continue
        picked = [row_of[hash_of[r["path"]]] for r in rows]
        vectors, read = matrix[picked], {versions[i] for i in picked}
        genders = np.array([r["gender"] for r in rows])
        # A head reads only the vectors of the timbre model it was trained on (analyze would not ask it).
        out.append((f"{style} ({len(rows)} songs)", {
            name: scores(head.predict(vectors)[0] == genders, genders) if read == {head.timbre_model_version}
            else {"n": len(rows), "accuracy": None, "balanced_accuracy": None} for name, head in heads.items()}))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work_dir or Path(tempfile.gettempdir()) / "nextvox-bench-gender" / (
        f"train-s{args.singers}-n{args.songs}-{args.max_song_s:g}s-seed{args.seed}-{args.production}"
    )
    library, data_dir = work / "library", work / "data"
    jobs = args.jobs or os.cpu_count() or 1
    started = time.perf_counter()
    try:
        from nextvox.synth import render_library

        labels_csv = render_library(library, n_singers=args.singers, n_songs=args.songs, seed=args.seed, voice_set="train",
                                    max_song_s=args.max_song_s, production=args.production, jobs=jobs,
                                    progress=lambda d, t: quality.report("render", d, t))  # fmt: skip
        rendered = time.perf_counter()
        analyze_library(library, data_dir=data_dir, jobs=jobs, settings=AnalysisSettings(),
                        on_track=lambda d, t, _s: quality.report("analyze", d, t))  # fmt: skip
        analysed = time.perf_counter()
        with Catalogue(data_dir, library=library) as catalogue:
            hash_of = {t.path: t.content_hash for t in catalogue.tracks(status="analyzed")}
            hashes, matrix, versions = catalogue.vectors("timbre")
    except NextvoxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    with open(labels_csv, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["path"] in hash_of]
    row_of = {h: i for i, h in enumerate(hashes)}
    vectors = matrix[[row_of[hash_of[r["path"]]] for r in rows]]
    version = sorted({versions[row_of[hash_of[r["path"]]]] for r in rows})
    if len(version) != 1:
        print(f"error: timbre vectors of several models in {data_dir}: {version}", file=sys.stderr)
        return 1
    genders = np.array([r["gender"] for r in rows])
    singers = np.array([r["singer"] for r in rows])
    styles = np.array([r.get("production", "plain") for r in rows])
    kinds = np.array([kind_of(r) for r in rows])
    heads = {
        "trained on every song": loso_predictions(vectors, genders, singers, np.ones(len(rows), bool), version=version[0]),
        "trained on the plain songs only": loso_predictions(vectors, genders, singers, styles == "plain", version=version[0]),
    }
    groups = [("every song", np.ones(len(rows), bool))]
    groups += [(f"{s} songs", styles == s) for s in ("plain", "studio") if np.any(styles == s)]
    groups += [(k, kinds == k) for k in ("real adult speakers", "adult variants and espeak-ng", "children (variants)") if np.any(kinds == k)]
    groups += [(f"children, {s} songs", (kinds == "children (variants)") & (styles == s)) for s in ("plain", "studio")]
    results = {head: {name: scores((predicted == genders)[mask], genders[mask]) for name, mask in groups}
               for head, predicted in heads.items()}  # fmt: skip
    per_singer = {s: float((heads["trained on every song"] == genders)[singers == s].mean()) for s in np.unique(singers)}
    wrong_singers = sorted((acc, s) for s, acc in per_singer.items() if acc < 1.0)
    finished = time.perf_counter()

    def cell(value):
        return "—" if value is None else f"{value:.3f}"

    lines = [
        "# The gender head on singers it never heard",
        "",
        f"Measured {datetime.date.today().isoformat()} at commit `{quality.git_commit()}` by `bench/gender.py`"
        f" (`--singers {args.singers} --songs {args.songs} --max-song-s {args.max_song_s:g} --seed {args.seed}"
        f" --production {args.production}`).",
        "",
        f"Library: {len(rows)} songs by {len(np.unique(singers))} singers of the generator's `train` split"
        f" ({int(np.sum(genders == 'female'))} female songs, {int(np.sum(genders == 'male'))} male), every permitted voice"
        " and every speaker variant, children labelled by their speaker's sex (docs/gender.md, \"Children\");"
        f" production `{args.production}`. Timbre vectors of `{version[0]}` on the default separator."
        " Each singer is held out in turn: the head (standardised features, class-balanced logistic regression, the"
        " shipped recipe) is trained on the other singers and predicts the held-out singer's songs."
        f" Time: rendering {rendered - started:.0f} s, analysis {analysed - rendered:.0f} s, heads {finished - analysed:.0f} s"
        " (0 when an earlier run did it).",
        "",
        "| songs | " + " | ".join(f"{h}: accuracy | balanced" for h in heads) + " | n |",
        "|---|" + "---:|---:|" * len(heads) + "---:|",
    ]
    for name, _ in groups:
        cells = " | ".join(f"{cell(results[h][name]['accuracy'])} | {cell(results[h][name]['balanced_accuracy'])}" for h in heads)
        lines.append(f"| {name} | {cells} | {results[next(iter(heads))][name]['n']} |")
    lines += ["", "Singers not always right (head trained on every song): "
              + (", ".join(f"{s} {acc:.2f}" for acc, s in wrong_singers) if wrong_singers else "none") + "."]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps({"results": results, "per_singer": per_singer}, indent=1) + "\n", encoding="utf-8")
    print(text)
    if args.out_head:
        # Adults and children alike, every production: the head a user gets.
        new_head = train_gender_head(vectors, genders, timbre_model_version=version[0], trained_on={
            "labels": f"bench/gender.py --singers {args.singers} --songs {args.songs} --max-song-s {args.max_song_s:g}"
                      f" --seed {args.seed} --production {args.production}",
            "n_singers": int(len(np.unique(singers))), "analysis_version": AnalysisSettings().version,
            "leave_one_singer_out_accuracy": results["trained on every song"]["every song"]["accuracy"],
            "balanced_accuracy": results["trained on every song"]["every song"]["balanced_accuracy"],
        })  # fmt: skip
        from nextvox.gender import shipped_head

        eval_work = args.eval_work_dir or quality.work_dir(quality.parse_args([]))
        old_head = shipped_head()
        compared = held_out_comparison({f"shipped {old_head.version}": old_head, f"new {new_head.version}": new_head}, eval_work)
        if compared:
            names = list(compared[0][1])
            text += "\n".join([
                "", f"## The new head against the shipped one, on the held-out `eval` split ({eval_work.name})", "",
                "Each head as is (no retraining) on the timbre vectors of the libraries `bench/quality.py` (or `bench/robustness.py`) analysed.", "",
                "| songs | " + " | ".join(f"{n}: accuracy | balanced" for n in names) + " |",
                "|---|" + "---:|---:|" * len(names),
                *(f"| {style} | " + " | ".join(f"{cell(r[n]['accuracy'])} | {cell(r[n]['balanced_accuracy'])}" for n in names) + " |"
                  for style, r in compared),
            ]) + "\n"  # fmt: skip
            args.out.write_text(text, encoding="utf-8")
            print(text)
        new_head.save(args.out_head)
        print(f"head written: {args.out_head} ({new_head.version})", file=sys.stderr)
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
