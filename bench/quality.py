"""Retrieval quality benchmark: the table every model change is judged by.

One command, ``.venv/bin/python bench/quality.py``:

1. renders an evaluation library with the project's song generator (``nextvox.synth``) from
   its held-out ``eval`` split: singers and melodies that no shipped model was trained on;
   every singer sings several melodies, with the isolated vocal kept beside each mix;
2. runs ``evaluate`` on the mixes, then on the isolated vocals (same singers, same melodies),
   the shipped timbre encoder beside the baselines;
3. with ``--adapt-steps N``, also fine-tunes the shipped encoder on each evaluated library
   itself (self-supervised, no labels: ``nextvox train timbre``'s setting on a user's music)
   and evaluates again with ``--model``;
4. prints the tables and writes them, with the library's size, the date and the commit, to
   ``bench/results/quality.md`` (and the raw results to ``bench/results/quality.json``).

The library and its catalogue live in a work folder (``--work-dir``; by default under the
system's temporary folder, keyed by the size options), so a second run with the same options
skips the rendering and the analysis and re-measures in seconds.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

from nextvox.errors import NextvoxError
from nextvox.evaluation import evaluate_library, format_table
from nextvox.models.tcae import KEY_SHIFTS

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--singers", type=int, default=13, help="singers in the library (the eval split has 13)")
    parser.add_argument("--songs", type=int, default=6, help="songs per singer")
    parser.add_argument("--max-song-s", type=float, default=30.0, help="longest song, seconds (shorter songs render and analyse faster)")
    parser.add_argument("--voice-set", default="eval", help="the generator's voice set to draw singers from")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the generator")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the library and its catalogue are kept between runs")
    parser.add_argument("--adapt-steps", type=int, default=0, help="also fine-tune on each evaluated library for this many steps (0: no)")
    parser.add_argument("--out", type=Path, default=RESULTS / "quality.md", help="the Markdown report")
    return parser.parse_args(argv)


def git_commit() -> str:
    """The current commit, short, marked ``-dirty`` when the tree has uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def report(stage: str, done: int, total: int) -> None:
    if total and (done == total or done % max(1, total // 10) == 0):
        print(f"  {stage}: {done}/{total}", file=sys.stderr, flush=True)


def render(library: Path, args: argparse.Namespace) -> Path:
    """The generated library's labels CSV; the generator renders only the songs not yet there."""
    from nextvox.synth import render_library

    print(f"rendering {args.songs} songs by each of {args.singers} singers into {library} ...", file=sys.stderr, flush=True)
    return Path(
        render_library(
            library,
            n_singers=args.singers,
            n_songs=args.songs,
            seed=args.seed,
            voice_set=args.voice_set,
            max_song_s=args.max_song_s,
            jobs=args.jobs,
            progress=lambda done, total: report("render", done, total),
        )
    )


def vocal_library(labels_csv: Path, out: Path) -> tuple[Path, Path]:
    """The isolated vocals as a library of their own: (its folder, its labels CSV written to ``out``).

    The generator keeps every vocal under one folder of the song library and marks that folder
    for scanners to skip, so the vocals are evaluated as a library rooted there, with the
    same labels and ``path`` pointing at each song's vocal (``vocal_path``).
    """
    with open(labels_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "vocal_path" not in rows[0]:
        raise NextvoxError(f"{labels_csv} has no vocal_path column: the generator kept no isolated vocals")
    vocal_paths = [PurePosixPath(row["vocal_path"]) for row in rows]
    folders = {p.parts[0] for p in vocal_paths}
    if len(folders) != 1 or any(len(p.parts) < 2 for p in vocal_paths):
        raise NextvoxError(f"{labels_csv}: the vocals are not all under one folder ({', '.join(sorted(folders))})")
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row, vocal in zip(rows, vocal_paths):
            writer.writerow(dict(row, path=vocal.relative_to(vocal.parts[0]).as_posix()))
    return labels_csv.parent / folders.pop(), out


def shared_tune_pairs(labels_csv: Path) -> tuple[int, int]:
    """(pairs of songs with one tune by two different singers, how many of them by singers of different genders)."""
    with open(labels_csv, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("melody")]
    pairs = [(a, b) for i, a in enumerate(rows) for b in rows[i + 1 :] if a["melody"] == b["melody"] and a["singer"] != b["singer"]]
    return len(pairs), sum(a["gender"] != b["gender"] for a, b in pairs)


def markdown(results: dict[str, dict], *, args: argparse.Namespace, seconds: dict[str, float], labels_csv: Path) -> str:
    mixes = results["mixes"]
    n_pairs, n_cross_gender = shared_tune_pairs(labels_csv)
    lines = [
        "# Retrieval quality",
        "",
        f"Measured {datetime.date.today().isoformat()} at commit `{git_commit()}` by `bench/quality.py`"
        f" (`--singers {args.singers} --songs {args.songs} --max-song-s {args.max_song_s:g} --voice-set {args.voice_set} --seed {args.seed}`).",
        "",
        f"Library: {mixes['n_singers']} singers, {mixes['n_tracks']} songs (each as a mix and as its isolated vocal),"
        f" from the generator's `{args.voice_set}` voice set; songs of at most {args.max_song_s:g} s."
        + (" The `eval` split's singers and melodies are held out of every shipped model's training (docs/synth.md)."
           if args.voice_set == "eval" else " This voice set is not held out of training: the numbers flatter the models.")
        + f" Timbre: the shipped encoder, `{mixes['embeddings']['timbre'].get('model_version')}`;"
        f" melody: the shipped TCAE, `{mixes['embeddings']['melody'].get('model_version')}`"
        f" (`melody`: its melody sequences' match, by local alignment in the best of {len(KEY_SHIFTS)} keys;"
        " `melody_vector`: the melody vector alone, the autocorrelation of the sequence)."
        f" Separator: `{mixes['settings']['separator']}`;"
        f" combined score weights: timbre {mixes['settings']['w_timbre']:g}, melody {mixes['settings']['w_melody']:g}.",
        f"Time: rendering {seconds['render']:.0f} s (0 when rendered by an earlier run), evaluating the mixes {seconds['mixes']:.0f} s"
        f" (analysis {mixes['timings_s']['analysis']:.0f} s, baselines {mixes['timings_s']['baselines']:.0f} s),"
        f" the vocals {seconds['vocals']:.0f} s, on this machine.",
        "",
        "Chance rows: the expected score of a random ranking (mAP exactly, P@5 = relevant / candidates)"
        " and of always answering the majority gender.",
        f"Melody retrieval pairs: {n_pairs} pairs of songs share a tune across singers, {n_cross_gender} of them"
        " sung by a female and a male singer; where that share is high, an embedding that hears the voice"
        " ranks the other rendition low and can score melody mAP below chance.",
    ]
    for key, title in (("mixes", "Mixes (what a listener's library holds)"), ("vocals", "Isolated vocals (no accompaniment)")):
        lines += ["", f"## {title}", "", format_table(results[key])]
    for key, title in (("mixes_adapted", "Mixes, after `nextvox train timbre` on these mixes"),
                       ("vocals_adapted", "Isolated vocals, after `nextvox train timbre` on these vocals")):  # fmt: skip
        if key in results:
            lines += ["", f"## {title}", "", f"The shipped encoder fine-tuned for {args.adapt_steps} steps on the evaluated"
                      " library itself (self-supervised: no labels), then evaluated with `--model`; baselines unchanged.",
                      "", format_table(results[key])]
    return "\n".join(lines) + "\n"


def adapt(library: Path, *, data_dir: Path, out: Path, steps: int) -> Path:
    """Fine-tune the shipped encoder on ``library`` (no labels), as ``nextvox train timbre`` does; its folder."""
    from nextvox.training import TrainConfig, default_init, library_log_mels, train_timbre

    excerpts = [x for _, x in library_log_mels(library, data_dir=data_dir)]
    config = TrainConfig(steps=steps, lr=5e-4, min_lr=5e-5, warmup_steps=min(50, steps // 4), init_weights=default_init(),
                         checkpoint_every=steps)  # fmt: skip
    train_timbre(config, excerpts, out_dir=out, data_note=f"{library} (the evaluated library itself)")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work_dir or Path(tempfile.gettempdir()) / "nextvox-bench-quality" / (
        f"{args.voice_set}-s{args.singers}-n{args.songs}-{args.max_song_s:g}s-seed{args.seed}"
    )
    library, data_dir = work / "library", work / "data"
    try:
        started = time.perf_counter()
        labels = render(library, args)
        rendered = time.perf_counter()
        print("evaluating the mixes ...", file=sys.stderr, flush=True)
        mixes = evaluate_library(library, labels, data_dir=data_dir, jobs=args.jobs, progress=report)
        evaluated_mixes = time.perf_counter()
        print("evaluating the isolated vocals ...", file=sys.stderr, flush=True)
        vocals_library, vocals_labels = vocal_library(labels, work / "labels-vocals.csv")
        vocals = evaluate_library(vocals_library, vocals_labels, data_dir=work / "data-vocals", jobs=args.jobs, progress=report)
        finished = time.perf_counter()
    except NextvoxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    results = {"mixes": mixes, "vocals": vocals}
    if args.adapt_steps:
        for key, root, labels_csv, data in (("mixes", library, labels, data_dir),
                                            ("vocals", vocals_library, vocals_labels, work / "data-vocals")):  # fmt: skip
            print(f"fine-tuning on the {key} ({args.adapt_steps} steps) ...", file=sys.stderr, flush=True)
            model_dir = adapt(root, data_dir=data, out=work / f"adapted-{key}-{args.adapt_steps}", steps=args.adapt_steps)
            results[f"{key}_adapted"] = evaluate_library(root, labels_csv, data_dir=data, jobs=args.jobs, model_dir=model_dir)
    seconds = {"render": rendered - started, "mixes": evaluated_mixes - rendered, "vocals": finished - evaluated_mixes}
    text = markdown(results, args=args, seconds=seconds, labels_csv=labels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    print(text)
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
