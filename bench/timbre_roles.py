"""The seed's role table: pitch shift / time stretch as positive or negative, four equal short runs.

One command, ``.venv/bin/python bench/timbre_roles.py``:

1. reads the log-mels of a ``train``-split library's isolated vocals (the anchors) and mixes
   (the backgrounds mixed under the views), rendering the library first if it is missing;
2. trains the timbre encoder from scratch once per role setting (pos/pos, pos/neg, neg/pos,
   neg/neg), every run with the same seed, batch and number of steps;
3. measures each run's final loss, and singer mAP (and P@5) of its vectors on the held-out
   ``eval`` split (singers and melodies never trained on), on isolated vocals and on mixes,
   beside the MFCC-statistics baseline on the same excerpts;
4. writes the table to ``bench/results/timbre_roles.md`` (and the raw numbers to ``.json``).

``--probe DIR`` measures one trained model folder (its ``timbre.pt``) on the eval split and
prints the numbers, without training anything.

``--ablation`` trains, instead of the role settings, the shipped recipe (``TrainConfig``'s
defaults: pitch shift negative, time stretch positive) without each of its two view
augmentations in turn (the register shift, the quiet backgrounds), and
with a wider register shift, and writes ``bench/results/timbre_ablation.md``.

``--production`` trains on a ``mixed``-production ``train`` library (plain and studio-produced
songs, every singer and speaker variant; ``--train-library``) the variants of ``PRODUCTION_RUNS``:
which anchors the views are cut from (the isolated vocals, and/or the default separator's vocals
of the library's mixes, so the encoder hears the separator's residue) and whether the views get
the production augmentations (a backing harmony and a reverb tail). Each run, and the shipped
weights, are measured on the held-out ``eval`` libraries of ``bench/quality.py``
(``--eval-work-dir``) in its three styles — isolated vocals, plain and studio mixes — through
the default separator as ``analyze`` hears them; writes ``bench/results/timbre_production.md``.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from nextvox.catalogue import content_hash
from nextvox.evaluation import cosine_similarity, singer_retrieval
from nextvox.features import mfcc_statistics
from nextvox.models.timbre import embed_excerpt, load_weights
from nextvox.separation import DEFAULT_SEPARATOR
from nextvox.training import TrainConfig, library_log_mels, train_timbre

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
ROLE_SETTINGS = (("positive", "positive"), ("positive", "negative"), ("negative", "positive"), ("negative", "negative"))
# name -> (what changes from the shipped recipe, TrainConfig overrides); roles as shipped
ABLATIONS = {
    "shipped": ("register shift ±4 semitones, backgrounds 0-30 dB under the view", {}),
    "no-register": ("no register shift", {"register_semitones": 0.0}),
    "loud-backgrounds": ("backgrounds 0-12 dB under the view only", {"background_max_db": 12.0}),
    "neither": ("neither (the recipe before this table)", {"register_semitones": 0.0, "background_max_db": 12.0}),
    "register-7": ("register shift ±7 semitones", {"register_semitones": 7.0}),
}
# name -> (what it trains on, anchors: "vocals" and/or "separated", TrainConfig overrides)
PRODUCTION_RUNS = {
    "vocals": ("isolated vocals; every mix as background (the shipped recipe on the new library)", ("vocals",), {}),
    "vocals+production": ("isolated vocals, views with harmony and reverb", ("vocals",), {"production_views": True}),
    "vocals+separated": ("isolated vocals and the separated mixes", ("vocals", "separated"), {}),
    "vocals+separated+production": ("isolated vocals and the separated mixes, views with harmony and reverb",
                                    ("vocals", "separated"), {"production_views": True}),
    "fine-tuned": ("as the last, fine-tuning the shipped weights (peak learning rate 5e-4) instead of from scratch",
                   ("vocals", "separated"), {"production_views": True, "init_weights": "shipped", "lr": 5e-4, "min_lr": 5e-5}),
}  # fmt: skip
PRODUCTION_STYLES = ("vocals", "plain", "studio")
SEED_TABLE = {("positive", "positive"): (15, 13), ("positive", "negative"): (14, 13),
              ("negative", "positive"): (210, 14), ("negative", "negative"): (43, 14)}  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--train-library", type=Path, default=REPO / "build" / "timbre" / "train-lib",
                        help="a library rendered from the generator's train voice set (songs/, vocals/)")
    parser.add_argument("--also-train-library", type=Path, action="append", default=[],
                        help="with --production: another such library whose songs join the training (repeatable)")
    parser.add_argument("--eval-library", type=Path,
                        default=Path(tempfile.gettempdir()) / "nextvox-bench-quality" / "eval-s13-n6-30s-seed2024" / "library",
                        help="a library rendered from the eval voice set (bench/quality.py's default work folder)")
    parser.add_argument("--steps", type=int, default=300, help="steps of every run")
    parser.add_argument("--batch-size", type=int, default=48, help="excerpts per step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=REPO / "build" / "timbre" / "roles")
    parser.add_argument("--separator", default="none",
                        help="separator before the log-mel (none: the vocals are isolated already, the mixes heard whole)")
    parser.add_argument("--probe", type=Path, help="only measure this trained model folder on the eval split")
    parser.add_argument("--ablation", action="store_true", help="train the view-augmentation ablation instead of the role settings")
    parser.add_argument("--production", action="store_true",
                        help="train the production variants on a mixed-production library instead of the role settings")
    parser.add_argument("--runs", default=",".join(PRODUCTION_RUNS), help="with --production: the variants to train, comma-separated")
    parser.add_argument("--eval-work-dir", type=Path, default=None,
                        help="with --production: bench/quality.py's work folder (default: the one its default options use)")
    parser.add_argument("--out", type=Path,
                        help="the Markdown report (default: bench/results/timbre_roles.md, timbre_ablation.md or timbre_production.md)")
    return parser.parse_args(argv)


def eval_split(library: Path, work: Path, *, separator: str) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """Log-mels and singer labels of the eval library's mixes and isolated vocals, in labels order."""
    with open(library / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    singers = np.array([r["singer"] for r in rows])
    split = {}
    for kind, root, column in (("vocals", library / "vocals", "vocal_path"), ("mixes", library, "path")):
        by_hash = dict(library_log_mels(root, data_dir=work / f"eval-{kind}", separator=separator))
        split[kind] = ([by_hash[content_hash(library / r[column])].astype(np.float32) for r in rows], singers)
    return split


def singer_scores(vectors: np.ndarray, singers: np.ndarray) -> dict[str, float]:
    means = singer_retrieval(cosine_similarity(vectors, vectors), singers=singers).means()
    return {"singer_map": means["map"], "singer_p_at_5": means["p_at_k"], "chance_map": means["chance_map"]}


def measure(weights: Path, split: dict) -> dict[str, dict[str, float]]:
    encoder = load_weights(weights)
    return {kind: singer_scores(np.stack([embed_excerpt(encoder, x) for x in mels]), singers) for kind, (mels, singers) in split.items()}


def baseline(split: dict) -> dict[str, dict[str, float]]:
    return {kind: singer_scores(np.stack([mfcc_statistics(x) for x in mels]), singers) for kind, (mels, singers) in split.items()}


def markdown(rows: list[dict], mfcc: dict, args: argparse.Namespace, n_train: int, n_eval: int) -> str:
    def cell(role: tuple[str, str], key: str) -> str:
        return next(f"{r[key]:.3f}" if isinstance(r[key], float) else str(r[key]) for r in rows if (r["pitch_shift"], r["time_stretch"]) == role)

    short = {"positive": "pos", "negative": "neg"}
    header = "| | " + " | ".join(f"{short[p]}/{short[s]}" for p, s in ROLE_SETTINGS) + " | MFCC baseline |"
    lines = [
        "# Timbre encoder: pitch-shift / time-stretch roles",
        "",
        f"Measured {datetime.date.today().isoformat()} by `bench/timbre_roles.py --steps {args.steps} --batch-size {args.batch_size}"
        f" --seed {args.seed}`. Four runs from scratch with equal budgets ({args.steps} steps of {args.batch_size} excerpts,"
        " same seed and data); a negative role adds one transformed copy per excerpt as an extra negative, so those runs see"
        " more crops per step (times below).",
        f"Training data: the isolated vocals of {n_train} songs of the generator's `train` split, with its mixes as backgrounds."
        f" Evaluation: {n_eval} songs of the held-out `eval` split (singers and melodies never trained on), every song"
        " queries all others, relevant = same singer.",
        "",
        header,
        "|---|---:|---:|---:|---:|---:|",
        "| pitch shift | pos | pos | neg | neg | |",
        "| time stretch | pos | neg | pos | neg | |",
        "| final NT-Xent loss (mean of last 10 % of steps) | " + " | ".join(cell(r, "final_loss") for r in ROLE_SETTINGS) + " | |",
        "| initial loss, ln(views - 1) (chance) | " + " | ".join(cell(r, "chance_loss") for r in ROLE_SETTINGS) + " | |",
        "| singer mAP, isolated vocals | " + " | ".join(cell(r, "vocals_map") for r in ROLE_SETTINGS) + f" | {mfcc['vocals']['singer_map']:.3f} |",
        "| singer mAP, mixes | " + " | ".join(cell(r, "mixes_map") for r in ROLE_SETTINGS) + f" | {mfcc['mixes']['singer_map']:.3f} |",
        "| singer P@5, isolated vocals | " + " | ".join(cell(r, "vocals_p5") for r in ROLE_SETTINGS) + f" | {mfcc['vocals']['singer_p_at_5']:.3f} |",
        "| singer P@5, mixes | " + " | ".join(cell(r, "mixes_p5") for r in ROLE_SETTINGS) + f" | {mfcc['mixes']['singer_p_at_5']:.3f} |",
        "| training time (s) | " + " | ".join(cell(r, "seconds") for r in ROLE_SETTINGS) + " | |",
        "| crops per step | " + " | ".join(cell(r, "views_per_step") for r in ROLE_SETTINGS) + " | |",
        "",
        f"Chance singer mAP: {mfcc['vocals']['chance_map']:.3f}.",
        "",
        "The seed's table (its loss, summed differently, is not on our scale): before / after balancing its data:",
        "",
        "| pitch shift / time stretch | pos/pos | pos/neg | neg/pos | neg/neg |",
        "|---|---:|---:|---:|---:|",
        "| seed loss, before | " + " | ".join(str(SEED_TABLE[r][0]) for r in ROLE_SETTINGS) + " |",
        "| seed loss, after | " + " | ".join(str(SEED_TABLE[r][1]) for r in ROLE_SETTINGS) + " |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.production:
        return production(args)
    split = eval_split(args.eval_library, args.work_dir, separator=args.separator)
    if args.probe:
        print(json.dumps({"model": measure(args.probe / "timbre.pt", split), "mfcc": baseline(split)}, indent=1))
        return 0
    vocals = [x for _, x in library_log_mels(args.train_library / "vocals", data_dir=args.work_dir / "train-vocals", separator=args.separator)]
    mixes = [x for _, x in library_log_mels(args.train_library, data_dir=args.work_dir / "train-mixes", separator=args.separator)]

    def run(name: str, config: TrainConfig) -> dict:
        out = args.work_dir / name
        started = time.perf_counter()
        result = train_timbre(config, vocals, out_dir=out, backgrounds=mixes,
                              data_note=f"{args.train_library}/vocals, backgrounds {args.train_library}")  # fmt: skip
        scores = measure(out / "timbre.pt", split)
        views = json.loads((out / "train.json").read_text())["views_per_step"]
        row = {
            "pitch_shift": config.pitch_shift, "time_stretch": config.time_stretch, "final_loss": result.final_loss,
            "chance_loss": float(np.log(views - 1)), "seconds": f"{time.perf_counter() - started:.0f}",
            "views_per_step": str(views), "vocals_map": scores["vocals"]["singer_map"], "mixes_map": scores["mixes"]["singer_map"],
            "vocals_p5": scores["vocals"]["singer_p_at_5"], "mixes_p5": scores["mixes"]["singer_p_at_5"],
        }  # fmt: skip
        print(name, row, file=sys.stderr, flush=True)
        return row

    budget = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed, "checkpoint_every": args.steps}
    if args.ablation:
        rows = [{"name": name, "what": what, **run(f"ablation-{name}", TrainConfig(**budget, **overrides))}
                for name, (what, overrides) in ABLATIONS.items()]  # fmt: skip
        mfcc = baseline(split)
        write(args.out or RESULTS / "timbre_ablation.md", ablation_markdown(rows, mfcc, args), {"runs": rows, "mfcc": mfcc})
        return 0
    rows = [run(f"{pitch}-{stretch}", TrainConfig(pitch_shift=pitch, time_stretch=stretch, **budget)) for pitch, stretch in ROLE_SETTINGS]
    mfcc = baseline(split)
    text = markdown(rows, mfcc, args, n_train=len(vocals), n_eval=len(split["vocals"][0]))
    write(args.out or RESULTS / "timbre_roles.md", text, {"runs": rows, "mfcc": mfcc})
    return 0


def write(path: Path, text: str, raw: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    print(text)


def ablation_markdown(rows: list[dict], mfcc: dict, args: argparse.Namespace) -> str:
    lines = [
        "# Timbre encoder: what each view augmentation is worth",
        "",
        f"Measured {datetime.date.today().isoformat()} by `bench/timbre_roles.py --ablation --steps {args.steps} --batch-size"
        f" {args.batch_size} --seed {args.seed}`. Every run from scratch with the shipped roles (pitch shift `negative`, time"
        " stretch `positive`), same"
        " budget, seed and data as the role table; singer retrieval on the held-out `eval` split (every song queries all"
        " others, relevant = same singer). One seed: differences of a few hundredths are noise.",
        "",
        "| run | what changes | singer mAP, isolated vocals | singer mAP, mixes | singer P@5, vocals | singer P@5, mixes | final loss | training s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['what']} | {r['vocals_map']:.3f} | {r['mixes_map']:.3f} | {r['vocals_p5']:.3f} |"
                     f" {r['mixes_p5']:.3f} | {r['final_loss']:.3f} | {r['seconds']} |")
    lines.append(f"| *MFCC baseline* | mean and std of MFCC 1-19 | {mfcc['vocals']['singer_map']:.3f} | {mfcc['mixes']['singer_map']:.3f} |"
                 f" {mfcc['vocals']['singer_p_at_5']:.3f} | {mfcc['mixes']['singer_p_at_5']:.3f} | | |")
    lines += ["", f"Chance singer mAP: {mfcc['vocals']['chance_map']:.3f}."]
    return "\n".join(lines) + "\n"



# ---- --production -----------------------------------------------------------------------------------

def production_split(eval_work: Path, work: Path) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """Log-mels (through the default separator, as analyze hears them) and singers of the eval split in each style.

    ``eval_work``: bench/quality.py's libraries; the spectrograms are cached under ``work``.
    """
    split = {}
    for style, root, column in (("vocals", eval_work / "library-plain" / "vocals", "vocal_path"),
                                ("plain", eval_work / "library-plain", "path"), ("studio", eval_work / "library-studio", "path")):
        base = eval_work / ("library-studio" if style == "studio" else "library-plain")
        with open(base / "labels.csv", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        by_hash = dict(library_log_mels(root, data_dir=work / f"eval-{style}", separator=DEFAULT_SEPARATOR))
        split[style] = ([by_hash[content_hash(base / r[column])].astype(np.float32) for r in rows], np.array([r["singer"] for r in rows]))
    return split


def production(args: argparse.Namespace) -> int:
    """Train PRODUCTION_RUNS on a mixed-production library; measure them and the shipped weights in every style."""
    import quality  # bench/quality.py: its work folder

    from nextvox.models.timbre import DEFAULT_WEIGHTS, weights_version

    eval_work = args.eval_work_dir or quality.work_dir(quality.parse_args([]))
    split = production_split(eval_work, args.work_dir)
    trains = [args.train_library, *args.also_train_library]
    train = " + ".join(map(str, trains))

    def log_mels(root: Path, kind: str, separator: str, index: int) -> list[np.ndarray]:
        # The first library keeps the cache folders of earlier runs (train-vocals, ...); the others get a number.
        return [x for _, x in library_log_mels(root, data_dir=args.work_dir / f"train-{kind}{index or ''}", separator=separator)]

    data = {"vocals": [x for i, t in enumerate(trains) for x in log_mels(t / "vocals", "vocals", "none", i)],
            "separated": [x for i, t in enumerate(trains) for x in log_mels(t, "separated", "mask", i)]}
    backgrounds = [x for i, t in enumerate(trains) for x in log_mels(t, "mixes", "none", i)]

    def scores(weights: Path) -> dict[str, dict[str, float]]:
        encoder = load_weights(weights)
        return {style: singer_scores(np.stack([embed_excerpt(encoder, x) for x in mels]), singers)
                for style, (mels, singers) in split.items()}  # fmt: skip

    shipped = args.work_dir / "shipped-timbre.pt"  # a copy: the runs are measured against the weights they started from
    if not shipped.exists():
        shutil.copyfile(DEFAULT_WEIGHTS, shipped)
    rows = [{"name": "shipped weights", "what": f"`{weights_version(shipped)}` as shipped", "final_loss": None,
             "seconds": "", **scores(shipped)}]  # fmt: skip
    mfcc = {style: singer_scores(np.stack([mfcc_statistics(x) for x in mels]), singers) for style, (mels, singers) in split.items()}
    budget = {"steps": args.steps, "batch_size": args.batch_size, "seed": args.seed, "checkpoint_every": args.steps}
    for name in [n.strip() for n in args.runs.split(",") if n.strip()]:
        what, anchors, overrides = PRODUCTION_RUNS[name]
        if overrides.get("init_weights") == "shipped":
            overrides = {**overrides, "init_weights": str(shipped)}
        out = args.work_dir / f"production-{name}"
        started = time.perf_counter()
        result = train_timbre(TrainConfig(**budget, **overrides), [x for kind in anchors for x in data[kind]], out_dir=out,
                              backgrounds=backgrounds, data_note=f"{train}: {' + '.join(anchors)}; backgrounds: its mixes")  # fmt: skip
        row = {"name": name, "what": what, "final_loss": result.final_loss, "seconds": f"{time.perf_counter() - started:.0f}",
               **scores(out / "timbre.pt")}  # fmt: skip
        print(name, {k: (v if not isinstance(v, dict) else v["singer_map"]) for k, v in row.items()}, file=sys.stderr, flush=True)
        rows.append(row)
        # Written after every run: a long series stopped early keeps what it measured.
        text = production_markdown(rows, mfcc, args, n_train=len(data["vocals"]), n_eval=len(split["vocals"][0]), eval_work=eval_work)
        write(args.out or RESULTS / "timbre_production.md", text, {"runs": rows, "mfcc": mfcc})
    return 0


def production_markdown(rows: list[dict], mfcc: dict, args: argparse.Namespace, *, n_train: int, n_eval: int, eval_work: Path) -> str:
    lines = [
        "# Timbre encoder: training for studio productions",
        "",
        f"Measured {datetime.date.today().isoformat()} by `bench/timbre_roles.py --production --steps {args.steps} --batch-size"
        f" {args.batch_size} --seed {args.seed} --train-library {args.train_library}"
        + "".join(f" --also-train-library {t}" for t in args.also_train_library) + "`. Every run with the shipped"
        " recipe (pitch shift `negative`, time stretch `positive`, register shift ±4, backgrounds 0-30 dB under the view),"
        f" same budget and seed, from scratch unless the row says otherwise. Training libraries: {n_train} songs of the generator's `train` split"
        " (each song plain or studio-produced), every singer and speaker variant; their mixes are the backgrounds of every run."
        " `separated`: the default separator's vocals of those mixes, as further anchors."
        f" Evaluation: the {n_eval} songs of the held-out `eval` split in `{eval_work.name}` (bench/quality.py's libraries),"
        " each style through the default separator as `analyze` hears it; every song queries all others of its style,"
        " relevant = same singer. One seed: differences of a few hundredths are noise.",
        "",
        "| run | what it trains on | singer mAP, isolated vocals | plain mixes | studio mixes | P@5 vocals | plain | studio | final loss | training s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        loss = "" if r["final_loss"] is None else f"{r['final_loss']:.3f}"
        lines.append(f"| {r['name']} | {r['what']} | " + " | ".join(f"{r[s]['singer_map']:.3f}" for s in PRODUCTION_STYLES) + " | "
                     + " | ".join(f"{r[s]['singer_p_at_5']:.3f}" for s in PRODUCTION_STYLES) + f" | {loss} | {r['seconds']} |")
    lines.append("| *MFCC baseline* | mean and std of MFCC 1-19 | " + " | ".join(f"{mfcc[s]['singer_map']:.3f}" for s in PRODUCTION_STYLES)
                 + " | " + " | ".join(f"{mfcc[s]['singer_p_at_5']:.3f}" for s in PRODUCTION_STYLES) + " | | |")
    lines += ["", f"Chance singer mAP: {mfcc['vocals']['chance_map']:.3f}. Targets (issue 14): 0.98 / 0.80 / 0.75."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
