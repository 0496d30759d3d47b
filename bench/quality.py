"""Retrieval quality benchmark: the table every model change is judged by.

One command, ``.venv/bin/python bench/quality.py``:

1. renders an evaluation library with the project's song generator (``nextvox.synth``) from
   its held-out ``eval`` split (singers and melodies that no shipped model was trained on),
   once per production style (``--productions``, by default ``plain`` and ``studio``): the
   same songs, singers, keys and tempi, plainly mixed and studio-produced
   (docs/synth.md, "Studio production"), with the isolated vocal kept beside each mix;
2. runs ``evaluate`` on the isolated vocals and on the mixes of each style, the shipped
   models beside the baselines in the same run, and adds one more baseline row:
   ``resemblyzer_separated``, the pre-trained speaker encoder on the vocals that the default
   separator extracts from each mix (on the isolated vocals it is the ``resemblyzer`` row);
3. with ``--adapt-steps N``, also fine-tunes the shipped encoder on each evaluated library
   itself (self-supervised, no labels: ``nextvox train timbre``'s setting on a user's music)
   and evaluates again with ``--model``;
4. prints a summary (the headline figures per style) and the tables, and writes them, with the
   library's size, the date and the commit, to ``bench/results/quality.md`` (and the raw
   results to ``bench/results/quality.json``).

The libraries and their catalogues live in a work folder (``--work-dir``; by default under the
system's temporary folder, keyed by the size options), so a second run with the same options
skips the rendering and the analysis and re-measures in seconds. ``bench/robustness.py``
reuses it to break the studio figures down by production element.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

import numpy as np

from nextvox.errors import NextvoxError
from nextvox.evaluation import evaluate_library, format_table
from nextvox.models.tcae import KEY_SHIFTS

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--singers", type=int, default=13, help="singers in the library (the eval split has 13)")
    parser.add_argument("--songs", type=int, default=8, help="songs per singer")
    parser.add_argument("--max-song-s", type=float, default=30.0, help="longest song, seconds (shorter songs render and analyse faster)")
    parser.add_argument("--voice-set", default="eval", help="the generator's voice set to draw singers from")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the generator")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the library and its catalogue are kept between runs")
    parser.add_argument("--productions", default="plain,studio", help="production styles to render and evaluate, comma-separated (plain, studio, mixed)")
    parser.add_argument("--no-separated-baseline", action="store_true", help="skip the resemblyzer-on-separated-vocals row (it separates every mix once more)")
    parser.add_argument("--model-dir", type=Path, default=None, help="evaluate other weights (a folder from nextvox train) instead of the shipped ones")
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


STYLE_TITLES = {
    "vocals": "Isolated vocals (no accompaniment)",
    "plain": "Plain mixes (a small band under a dry voice, −3…+6 dB)",
    "studio": "Studio-produced mixes (drums, more instruments, vocal effects, bus processing, codecs, −6…+6 dB)",
    "mixed": "Mixed library (each song plain or studio-produced)",
}


def _metric(result: dict | None, *path: str) -> float | None:
    value = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def summary_table(results: dict[str, dict], styles: list[str]) -> str:
    """The headline figures, one column per style (the issue's table shape)."""
    columns = [s for s in ("vocals", *styles) if s in results]
    rows = [
        ("timbre singer mAP (shipped encoder)", lambda r: _fmt(_metric(r, "embeddings", "timbre", "singer_map"))),
        ("resemblyzer singer mAP, on the file / on separated vocals",
         lambda r: f"{_fmt(_metric(r, 'embeddings', 'resemblyzer', 'singer_map'))} / "
                   f"{_fmt(_metric(r, 'embeddings', 'resemblyzer_separated', 'singer_map'))}"),
        ("melody mAP: melody match vs chroma",
         lambda r: f"{_fmt(_metric(r, 'embeddings', 'melody', 'melody_map'))} vs {_fmt(_metric(r, 'embeddings', 'chroma', 'melody_map'))}"),
        ("shipped gender head, balanced accuracy", lambda r: _fmt(_metric(r, "gender", "default_head", "balanced_accuracy"))),
        ("gender head retrained on the timbre vectors, leave one singer out, balanced accuracy",
         lambda r: _fmt(_metric(r, "gender", "timbre", "balanced_accuracy"))),
    ]  # fmt: skip
    names = {"vocals": "isolated vocals", "plain": "plain mixes", "studio": "studio mixes", "mixed": "mixed library"}
    lines = ["| held-out eval split | " + " | ".join(names[c] for c in columns) + " |", "|---|" + "---:|" * len(columns)]
    for title, cell in rows:
        lines.append(f"| {title} | " + " | ".join(cell(results[c]) for c in columns) + " |")
    return "\n".join(lines)


def markdown(results: dict[str, dict], *, args: argparse.Namespace, styles: list[str], seconds: dict[str, float],
             labels_csv: Path) -> str:  # fmt: skip
    first = results[styles[0]]
    n_pairs, n_cross_gender = shared_tune_pairs(labels_csv)
    timing = ", ".join(f"{key} {value:.0f} s" for key, value in seconds.items())
    lines = [
        "# Retrieval quality",
        "",
        f"Measured {datetime.date.today().isoformat()} at commit `{git_commit()}` by `bench/quality.py`"
        f" (`--singers {args.singers} --songs {args.songs} --max-song-s {args.max_song_s:g} --voice-set {args.voice_set}"
        f" --seed {args.seed} --productions {','.join(styles)}`"
        + (f" `--model-dir {args.model_dir}`" if args.model_dir else "") + ").",
        "",
        f"Library: {first['n_singers']} singers, {first['n_tracks']} songs, from the generator's `{args.voice_set}` voice set;"
        f" songs of at most {args.max_song_s:g} s. Every style holds the same songs (singers, tunes, keys, tempi, takes),"
        " produced differently; the isolated vocals are the dry lead of each song."
        + (" The `eval` split's singers and melodies are held out of every shipped model's training (docs/synth.md)."
           if args.voice_set == "eval" else " This voice set is not held out of training: the numbers flatter the models.")
        + f" Timbre: `{_metric(first, 'embeddings', 'timbre', 'model_version')}`;"
        f" melody: `{_metric(first, 'embeddings', 'melody', 'model_version')}`"
        f" (`melody`: its melody sequences' match, by local alignment in the best of {len(KEY_SHIFTS)} keys;"
        " `melody_vector`: the melody vector alone, the autocorrelation of the sequence)."
        f" Separator: `{first['settings']['separator']}`;"
        f" combined score weights: timbre {first['settings']['w_timbre']:g}, melody {first['settings']['w_melody']:g}."
        " `resemblyzer_separated`: resemblyzer's speaker encoder (trained on thousands of real speakers; its weights ship"
        " in its wheel) on the vocals the separator extracts from each mix's analysis excerpt.",
        f"Time on this machine: {timing} (rendering is 0 when an earlier run rendered the library).",
        "",
        "Chance rows: the expected score of a random ranking (mAP exactly, P@5 = relevant / candidates)"
        " and of always answering the majority gender.",
        f"Melody retrieval pairs: {n_pairs} pairs of songs share a tune across singers, {n_cross_gender} of them"
        " sung by a female and a male singer; where that share is high, an embedding that hears the voice"
        " ranks the other rendition low and can score melody mAP below chance.",
        "",
        "## Summary",
        "",
        summary_table(results, styles),
    ]
    for key in ("vocals", *styles):
        lines += ["", f"## {STYLE_TITLES[key]}", "", format_table(results[key])]
        adapted = f"{key}_adapted"
        if adapted in results:
            lines += ["", "### After `nextvox train timbre` on this library", "", f"The shipped encoder fine-tuned for"
                      f" {args.adapt_steps} steps on the evaluated library itself (self-supervised: no labels), then"
                      " evaluated with `--model`; baselines unchanged.", "", format_table(results[adapted])]
    return "\n".join(lines) + "\n"


def separated_resemblyzer(library: Path, labels_csv: Path, result: dict, *, jobs: int, cache: Path) -> None:
    """Add the ``resemblyzer_separated`` rows to ``result``: resemblyzer on the default separator's vocals.

    The rows use the tracks ``result`` evaluated (its failed tracks left out). Vectors are cached
    in ``cache`` (one .npy per track, keyed by the file's size and modification time and by the
    separator's version: new separator weights embed every track again).
    """
    from concurrent.futures import ProcessPoolExecutor

    from nextvox.evaluation import cosine_similarity, gender_cross_validation, melody_retrieval, singer_retrieval
    from nextvox.separation import DEFAULT_SEPARATOR, separator_version

    separator = separator_version(DEFAULT_SEPARATOR)

    with open(labels_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    failed = {f["path"] for f in result.get("failed", [])}
    rows = [r for r in rows if r["path"] not in failed]
    cache.mkdir(parents=True, exist_ok=True)
    keys = []
    for row in rows:
        stat = (library / row["path"]).stat()
        key = hashlib.sha1(f"{row['path']}\0{stat.st_size}\0{stat.st_mtime_ns}\0{separator}".encode()).hexdigest()[:16]
        keys.append(cache / f"{key}.npy")
    todo = [(str(library / r["path"]), str(k)) for r, k in zip(rows, keys) if not k.exists()]
    if todo:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for done, _ in enumerate(pool.map(_separate_and_embed, todo), 1):
                report("separated baseline", done, len(todo))
    vectors = np.stack([np.load(k) for k in keys])
    singers = np.array([r["singer"] for r in rows])
    melodies = np.array([r.get("melody", "") for r in rows])
    genders = np.array([r.get("gender", "") for r in rows])
    similarity = cosine_similarity(vectors, vectors)
    singer = singer_retrieval(similarity, singers=singers).means()
    melody = melody_retrieval(similarity, singers=singers, melodies=melodies).means()
    note = "resemblyzer on the separated vocals of each mix's excerpt"
    result["embeddings"]["resemblyzer_separated"] = {"singer_map": singer["map"], "singer_p_at_5": singer["p_at_k"],
                                                     "melody_map": melody["map"], "note": note}  # fmt: skip
    scores = gender_cross_validation(vectors, genders=genders, singers=singers)
    result["gender"]["resemblyzer_separated"] = {"leave_one_singer_out_accuracy": scores["accuracy"],
                                                 "balanced_accuracy": scores["balanced_accuracy"], "note": note}  # fmt: skip


def _separate_and_embed(job: tuple[str, str]) -> None:
    """In a worker: separate one file's analysis excerpt with the default separator, embed it, save the vector."""
    import torch

    from nextvox.audio import load_excerpt
    from nextvox.evaluation import resemblyzer_baseline
    from nextvox.separation import DEFAULT_SEPARATOR, separate

    torch.set_num_threads(1)
    path, out = job
    vocals = separate(load_excerpt(Path(path)).valid_samples, method=DEFAULT_SEPARATOR)
    vector = resemblyzer_baseline(np.asarray(vocals, dtype=np.float32))
    temporary = Path(out).with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(temporary, vector)
    temporary.replace(out)


def adapt(library: Path, *, data_dir: Path, out: Path, steps: int) -> Path:
    """Fine-tune the shipped encoder on ``library`` (no labels), as ``nextvox train timbre`` does; its folder."""
    from nextvox.training import TrainConfig, default_init, library_log_mels, train_timbre

    excerpts = [x for _, x in library_log_mels(library, data_dir=data_dir)]
    config = TrainConfig(steps=steps, lr=5e-4, min_lr=5e-5, warmup_steps=min(50, steps // 4), init_weights=default_init(),
                         checkpoint_every=steps)  # fmt: skip
    train_timbre(config, excerpts, out_dir=out, data_note=f"{library} (the evaluated library itself)")
    return out


def render(library: Path, args: argparse.Namespace, production: str) -> Path:
    """The generated library's labels CSV; the generator renders only the songs not yet there."""
    from nextvox.synth import render_library

    print(f"rendering {args.songs} songs by each of {args.singers} singers ({production}) into {library} ...",
          file=sys.stderr, flush=True)  # fmt: skip
    return Path(
        render_library(
            library, n_singers=args.singers, n_songs=args.songs, seed=args.seed, voice_set=args.voice_set,
            max_song_s=args.max_song_s, production=production, jobs=args.jobs,
            progress=lambda done, total: report(f"render {production}", done, total),
        )  # fmt: skip
    )


def work_dir(args: argparse.Namespace) -> Path:
    """The folder holding the rendered libraries and their catalogues (shared with bench/robustness.py)."""
    return args.work_dir or Path(tempfile.gettempdir()) / "nextvox-bench-quality" / (
        f"{args.voice_set}-s{args.singers}-n{args.songs}-{args.max_song_s:g}s-seed{args.seed}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    styles = [s.strip() for s in args.productions.split(",") if s.strip()]
    if not styles or any(s not in STYLE_TITLES or s == "vocals" for s in styles):
        print(f"error: --productions takes plain, studio and/or mixed, not {args.productions!r}", file=sys.stderr)
        return 2
    work = work_dir(args)
    jobs = args.jobs or os.cpu_count() or 1
    results: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    labels: dict[str, Path] = {}
    try:
        for style in styles:
            started = time.perf_counter()
            labels[style] = render(work / f"library-{style}", args, style)
            seconds[f"rendering {style}"] = time.perf_counter() - started
        started = time.perf_counter()
        print("evaluating the isolated vocals ...", file=sys.stderr, flush=True)
        vocals_library, vocals_labels = vocal_library(labels[styles[0]], work / "labels-vocals.csv")
        results["vocals"] = evaluate_library(vocals_library, vocals_labels, data_dir=work / "data-vocals", jobs=jobs,
                                             model_dir=args.model_dir, progress=report)  # fmt: skip
        seconds["evaluating the vocals"] = time.perf_counter() - started
        for style in styles:
            started = time.perf_counter()
            print(f"evaluating the {style} mixes ...", file=sys.stderr, flush=True)
            library = work / f"library-{style}"
            results[style] = evaluate_library(library, labels[style], data_dir=work / f"data-{style}", jobs=jobs,
                                              model_dir=args.model_dir, progress=report)  # fmt: skip
            if not args.no_separated_baseline:
                separated_resemblyzer(library, labels[style], results[style], jobs=jobs, cache=work / f"separated-resemblyzer-{style}")
            seconds[f"evaluating {style}"] = time.perf_counter() - started
    except NextvoxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.adapt_steps:
        for key in ("vocals", *styles):
            root, labels_csv, data = ((vocals_library, vocals_labels, work / "data-vocals") if key == "vocals"
                                      else (work / f"library-{key}", labels[key], work / f"data-{key}"))  # fmt: skip
            print(f"fine-tuning on the {key} ({args.adapt_steps} steps) ...", file=sys.stderr, flush=True)
            model_dir = adapt(root, data_dir=data, out=work / f"adapted-{key}-{args.adapt_steps}", steps=args.adapt_steps)
            results[f"{key}_adapted"] = evaluate_library(root, labels_csv, data_dir=data, jobs=jobs, model_dir=model_dir)
    text = markdown(results, args=args, styles=styles, seconds=seconds, labels_csv=labels[styles[0]])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    print(text)
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
