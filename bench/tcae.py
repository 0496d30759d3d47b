"""The TCAE table: the plain reconstruction TCAE against improved variants, measured by ``nextvox evaluate``.

One command, ``.venv/bin/python bench/tcae.py``:

1. reads the log-mels of a ``train``-split library's isolated vocals (what the TCAE learns
   from) and mixes (backgrounds under the contrastive views), rendering the library first
   if it is missing;
2. trains the TCAE from scratch once per variant, every run with the same seed, batch, crop
   and number of steps;
3. runs ``evaluate`` (:func:`nextvox.evaluation.evaluate_library` with ``--model``) on the
   held-out ``eval`` split (singers and melodies never trained on), as mixes and as isolated
   vocals: melody mAP of each variant beside the ``chroma`` baseline (and the timbre vector)
   in the same run, and its singer mAP (a melody vector should *not* find the singer);
4. measures, beside ``evaluate``'s rows and on the same songs, what the melody similarity
   gains from its parts and what it replaced: the sequence match with the songs as sung only
   (no other keys), the vector that pooled the latent's mean and standard deviation, and the
   same autocorrelation taken on the log-mel itself (no TCAE: how much of the vector's
   tune-finding the learned latent adds);
5. measures training throughput (crops/s) and inference throughput (120 s excerpts/s, one
   and two threads) of the model's shape;
6. writes the table to ``bench/results/tcae.md`` (raw numbers in ``.json``).

The eval library is bench/quality.py's (same options, same work folder), so the two
benchmarks measure the same songs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nextvox.analysis import EXCERPT_VERSION, AnalysisSettings
from nextvox.catalogue import content_hash
from nextvox.constants import FRAMES_PER_EXCERPT
from nextvox.evaluation import cosine_similarity, evaluate_library, melody_retrieval, read_labels, singer_retrieval
from nextvox.features import MelCache
from nextvox.models.tcae import (
    AUTOCORRELATION_LAGS, KEY_SHIFTS, SEQUENCE_HOP_FRAMES, SEQUENCE_MAX_STEPS, TCAE, TCAEConfig, load_weights, local_alignment,
    melody_vector, melody_vector_and_sequence, sequence_autocorrelation, sequence_keys, sequence_similarity,
)  # fmt: skip
from nextvox.training import TCAETrainConfig, library_log_mels, train_tcae

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
# name -> (what it is, contrastive weight, centre_s)
VARIANTS = {
    "plain": ("the seed's TCAE: reconstruction only, fixed input scaling", 0.0, 0.0),
    "centred": ("reconstruction only, each band minus its causal 2 s running mean", 0.0, 2.0),
    "contrastive": ("centred, + NT-Xent on the pooled latent between key- and tempo-changed views", 1.0, 2.0),
}
EVAL_WORK = Path(tempfile.gettempdir()) / "nextvox-bench-quality" / "eval-s13-n6-30s-seed2024"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--train-library", type=Path, default=REPO / "build" / "timbre" / "train-lib",
                        help="a library rendered from the generator's train voice set (songs/, vocals/)")
    parser.add_argument("--eval-work-dir", type=Path, default=EVAL_WORK,
                        help="bench/quality.py's work folder of the eval library (rendered there if missing)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants to train and compare")
    parser.add_argument("--steps", type=int, default=2000, help="steps of every run")
    parser.add_argument("--batch-size", type=int, default=32, help="crops per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "tcae")
    parser.add_argument("--out", type=Path, default=RESULTS / "tcae.md")
    return parser.parse_args(argv)


def train_library(library: Path) -> None:
    """Render the train library (the timbre encoder's, docs/models.md) when it is missing."""
    if (library / "labels.csv").is_file():
        return
    from nextvox.synth import render_library

    print(f"rendering the train library into {library} ...", file=sys.stderr, flush=True)
    render_library(library, n_singers=50, n_songs=6, seed=7, voice_set="train", max_song_s=20.0)


def eval_library(work: Path) -> tuple[Path, Path, Path, Path]:
    """(mixes library, its labels, vocals library, its labels) of bench/quality.py's default eval split."""
    sys.path.insert(0, str(REPO / "bench"))
    import quality

    args = quality.parse_args(["--work-dir", str(work)])
    labels = quality.render(work / "library", args)
    vocals, vocal_labels = quality.vocal_library(labels, work / "labels-vocals.csv")
    return work / "library", labels, vocals, vocal_labels


def inference_speed(config: TCAEConfig, *, threads: int, repeats: int = 5) -> float:
    """120 s excerpts per second through the encoder and the pooling, ``threads`` torch threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tcae = TCAE(config).eval()
        excerpt = np.random.default_rng(0).normal(-7, 2, (config.n_mels, FRAMES_PER_EXCERPT)).astype(np.float32)
        melody_vector(tcae, excerpt, n_valid_frames=FRAMES_PER_EXCERPT)  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            melody_vector(tcae, excerpt, n_valid_frames=FRAMES_PER_EXCERPT)
        return repeats / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)


def matching_speed(config: TCAEConfig, *, song_s: float, repeats: int = 20) -> float:
    """Milliseconds per melody-sequence match of two songs of ``song_s`` seconds (one thread; sequences keep at most SEQUENCE_MAX_STEPS)."""
    steps = min(SEQUENCE_MAX_STEPS, int(song_s * 62.5) // SEQUENCE_HOP_FRAMES)
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(len(KEY_SHIFTS) * steps, config.latent_dim)).astype(np.float16) for _ in range(2))
    sequence_similarity(a, b)  # compiles librosa's alignment on first use
    started = time.perf_counter()
    for _ in range(repeats):
        sequence_similarity(a, b)
    return 1000 * (time.perf_counter() - started) / repeats


def side_matches(weights: Path | None, library: Path, labels_csv: Path, data_dir: Path) -> dict[str, dict[str, float]]:
    """Melody and singer mAP of the parts ``evaluate`` does not report alone, from the cached log-mels.

    With ``weights``: ``as_sung`` (the sequence match without the other keys) and ``pooled``
    (mean and std of the latent, the earlier melody vector). Without:
    ``log_mel_autocorrelation``, the melody vector's recipe applied to the log-mel bands
    instead of the latent channels.
    """
    labels = read_labels(labels_csv, library=library)
    cache = MelCache(data_dir / "cache", separator=AnalysisSettings().separator_version, excerpt_version=EXCERPT_VERSION)
    mels = [cache.load(content_hash(library / path))[0] for path in labels.paths]
    found = {}
    if weights is None:
        vectors = []
        for mel in mels:
            steps = mel.shape[1] // SEQUENCE_HOP_FRAMES
            bands = mel[:, : steps * SEQUENCE_HOP_FRAMES].reshape(mel.shape[0], steps, -1).mean(axis=2).T  # (steps, n_mels)
            vectors.append(sequence_autocorrelation((bands - bands.mean(axis=0)) / (bands.std(axis=0) + 1e-6)))
        found["log_mel_autocorrelation"] = cosine_similarity(np.stack(vectors), np.stack(vectors))
    else:
        tcae = load_weights(weights)
        sequences, pooled = [], []
        with torch.no_grad():
            for mel in mels:
                sequences.append(melody_vector_and_sequence(tcae, mel, n_valid_frames=mel.shape[1])[1])
                pooled.append(TCAE.pool(tcae.encode(torch.from_numpy(mel.astype(np.float32))[None]))[0].numpy())
        as_sung = [sequence_keys(q)[0] for q in sequences]
        matrix = np.eye(len(as_sung), dtype=np.float32)
        for i in range(len(as_sung)):
            for j in range(i + 1, len(as_sung)):
                matrix[i, j] = matrix[j, i] = local_alignment(as_sung[i], as_sung[j])
        found["as_sung"] = matrix
        found["pooled"] = cosine_similarity(np.stack(pooled), np.stack(pooled))
    return {
        name: {"melody_map": melody_retrieval(sim, singers=labels.singers, melodies=labels.melodies).means()["map"],
               "singer_map": singer_retrieval(sim, singers=labels.singers).means()["map"]}
        for name, sim in found.items()
    }  # fmt: skip


def report(name: str):
    """A training progress callback that prints every 50th step."""
    def progress(step: int, steps: int, loss: float, crops_per_s: float) -> None:
        if step % 50 == 0 or step == steps:
            print(f"  {name}: step {step}/{steps}, loss {loss:.4f}, {crops_per_s:.0f} crops/s", file=sys.stderr, flush=True)

    return progress


def cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def markdown(runs: list[dict], evaluated: dict, args: argparse.Namespace, *, n_train: int, speed: dict) -> str:
    mixes, vocals = evaluated["mixes"], evaluated["vocals"]
    receptive = runs[0]["receptive_field_frames"]
    lines = [
        "# TCAE: the melody embedding, plain against improved",
        "",
        f"Measured {datetime.date.today().isoformat()} by `bench/tcae.py --steps {args.steps} --batch-size {args.batch_size}"
        f" --seed {args.seed}`. Every variant trained from scratch with the same budget ({args.steps} steps of"
        f" {args.batch_size} crops of {TCAETrainConfig().crop_frames} frames; the contrastive variant sees two views per crop),"
        f" same seed and data: the isolated vocals of {n_train} songs of the generator's `train` split.",
        f"Model: {TCAEConfig().channels} channels, latent {TCAEConfig().latent_dim} per frame, dilations"
        f" {', '.join(map(str, TCAEConfig().dilations))} (kernel {TCAEConfig().kernel_size}) in the encoder and again in the decoder;"
        f" receptive field {receptive} frames ({receptive / 62.5:.2f} s). Melody sequence: the latent sequence, each channel"
        f" standardised over the song, averaged over {SEQUENCE_HOP_FRAMES} frames ({SEQUENCE_HOP_FRAMES * 16} ms), at most"
        f" {SEQUENCE_MAX_STEPS} steps ({SEQUENCE_MAX_STEPS * SEQUENCE_HOP_FRAMES * 16 / 1000:.0f} s, the loudest), taken in"
        f" {len(KEY_SHIFTS)} keys ({', '.join(f'{k:+g}' for k in KEY_SHIFTS)} semitones); two songs are compared by local alignment"
        " (librosa's `sequence.rqa` on the steps' cosines) in the best key of either. Melody vector (what the index"
        f" searches): the sequence's autocorrelation, each channel at lags 1 … {AUTOCORRELATION_LAGS} steps"
        f" ({AUTOCORRELATION_LAGS * SEQUENCE_HOP_FRAMES * 16 / 1000:.1f} s), unit length, compared by cosine.",
        f"Evaluation: `nextvox evaluate --model` on the held-out `eval` split ({mixes['n_tracks']} songs, {mixes['n_singers']} singers,"
        f" singers and tunes never trained on), mixes (separator `{mixes['settings']['separator']}`) and isolated vocals;"
        f" {mixes['n_melody_queries']} melody queries. Melody mAP: the query singer's own songs left out, relevant = the same tune."
        " Singer mAP of a melody vector is better *low*: it should not hear who sings.",
        "",
        "| variant | what it is | match | melody mAP, mixes | melody mAP, vocals | singer mAP, mixes | singer mAP, vocals | final loss | training s | crops/s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    matches = (("vector", "melody vector: latent autocorrelation (cosine; what the index searches)"),
               ("sequence", f"melody sequence, local alignment, best of {len(KEY_SHIFTS)} keys (`evaluate`'s `melody`, the recommender's melody similarity)"),
               ("as_sung", "the same sequence match, songs as sung only (no other keys)"),
               ("pooled", "latent mean and std (cosine; the melody vector before this table)"))  # fmt: skip
    for run in runs:
        for match, label in matches:
            m, v = mixes["variants"][run["name"]][match], vocals["variants"][run["name"]][match]
            lines.append(f"| {run['name']} | {VARIANTS[run['name']][0]} | {label} | {cell(m['melody_map'])} | {cell(v['melody_map'])} |"
                         f" {cell(m['singer_map'])} | {cell(v['singer_map'])} | {run['final_loss']:.3f} | {run['seconds']:.0f} | {run['crops_per_s']:.0f} |")
    for name, note in (("chroma", "baseline: mean chroma, best of 12 transpositions"), ("timbre", "the shipped timbre vector")):
        m, v = mixes["embeddings"][name], vocals["embeddings"][name]
        lines.append(f"| *{name}* | {note} | cosine | {cell(m['melody_map'])} | {cell(v['melody_map'])} | {cell(m['singer_map'])} | {cell(v['singer_map'])} | | | |")
    m, v = mixes["controls"]["log_mel_autocorrelation"], vocals["controls"]["log_mel_autocorrelation"]
    lines.append(f"| *log-mel autocorrelation* | control: the melody vector's recipe on the 48 log-mel bands, no TCAE | cosine |"
                 f" {cell(m['melody_map'])} | {cell(v['melody_map'])} | {cell(m['singer_map'])} | {cell(v['singer_map'])} | | | |")
    lines.append(f"| *chance* | random ranking | | {cell(mixes['chance']['melody_map'])} | {cell(vocals['chance']['melody_map'])} |"
                 f" {cell(mixes['chance']['singer_map'])} | {cell(vocals['chance']['singer_map'])} | | | |")
    lines += [
        "",
        "Inference (encoder, vector and the sequence in every key, float32, one 120 s excerpt of 7501 frames at a time):"
        f" {speed['1']:.1f} excerpts/s on one thread, {speed['2']:.1f} on two.",
        "Training throughput: the crops/s column (bf16 autocast, two threads; the contrastive run's crops are its views).",
        f"Sequence match (13 local alignments): {speed['match_30s_ms']:.1f} ms for two 30 s songs, {speed['match_120s_ms']:.1f} ms"
        f" for two 120 s excerpts (their sequences keep {SEQUENCE_MAX_STEPS} steps).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    args.work_dir.mkdir(parents=True, exist_ok=True)
    train_library(args.train_library)
    vocals = [x for _, x in library_log_mels(args.train_library / "vocals", data_dir=args.work_dir / "train-vocals", separator="none")]
    mixes = [x for _, x in library_log_mels(args.train_library, data_dir=args.work_dir / "train-mixes", separator="none")]

    runs = []
    for name in names:
        _, contrastive_weight, centre_s = VARIANTS[name]
        config = TCAETrainConfig(contrastive_weight=contrastive_weight, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                                 checkpoint_every=100, model=TCAEConfig(centre_s=centre_s))  # fmt: skip
        out = args.work_dir / name
        resume = (out / "checkpoint.pt").is_file()
        result = train_tcae(config, vocals, out_dir=out, backgrounds=mixes, resume=resume, progress=report(name),
                            data_note=f"{args.train_library}/vocals, backgrounds {args.train_library}")  # fmt: skip
        summary = json.loads((out / "train.json").read_text())
        runs.append({"name": name, "final_loss": result.final_loss, "seconds": result.seconds, "crops_per_s": result.crops_per_s,
                     "receptive_field_frames": summary["receptive_field_frames"], "out": str(out)})  # fmt: skip
        print(runs[-1], file=sys.stderr, flush=True)

    library, labels, vocal_library, vocal_labels = eval_library(args.eval_work_dir)
    evaluated = {}
    for kind, root, labels_csv, data in (("mixes", library, labels, args.eval_work_dir / "data"),
                                         ("vocals", vocal_library, vocal_labels, args.eval_work_dir / "data-vocals")):  # fmt: skip
        base = evaluate_library(root, labels_csv, data_dir=data)
        base["variants"] = {}
        for run in runs:
            measured = evaluate_library(root, labels_csv, data_dir=data, model_dir=Path(run["out"]))
            base["variants"][run["name"]] = {"sequence": measured["embeddings"]["melody"], "vector": measured["embeddings"]["melody_vector"],
                                             **side_matches(Path(run["out"]) / "tcae.pt", root, labels_csv, data)}  # fmt: skip
        base["controls"] = side_matches(None, root, labels_csv, data)
        evaluated[kind] = base
        print(kind, {n: {m: (r[m]["melody_map"], r[m]["singer_map"]) for m in r} for n, r in base["variants"].items()}, base["controls"],
              file=sys.stderr, flush=True)  # fmt: skip

    shape = load_weights(Path(runs[-1]["out"]) / "tcae.pt").config
    speed = {str(threads): inference_speed(shape, threads=threads) for threads in (1, 2)}
    speed.update(match_30s_ms=matching_speed(shape, song_s=30.0), match_120s_ms=matching_speed(shape, song_s=120.0))
    text = markdown(runs, evaluated, args, n_train=len(vocals), speed=speed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    raw = {"runs": runs, "speed_excerpts_per_s": speed,
           "evaluated": {k: {"variants": v["variants"], "controls": v["controls"], "chroma": v["embeddings"]["chroma"], "timbre": v["embeddings"]["timbre"],
                             "chance": v["chance"]} for k, v in evaluated.items()}}  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
