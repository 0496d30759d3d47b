"""``evaluate`` and the ``train`` commands (timbre, tcae, separator, gender): read a library,
run a measurement or a training loop of :mod:`nextvox.evaluation` / :mod:`nextvox.training`,
report it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
from rich.progress import Progress

from nextvox.cli.common import (
    CONTEXT, FiniteFloatRange, app, chosen_data_dir, data_dir_option, jobs_option, json_flag, library_argument,
    progress_bars, separator_option, separator_weights_option, stderr, stdout,
)  # fmt: skip
from nextvox.errors import NextvoxError

# Peak learning rates of the train commands: a fine-tune moves shipped weights gently.
FROM_SCRATCH_LR = 2e-3
FINE_TUNE_LR = 5e-4


def _training_summary(result, weights_name: str) -> dict:
    """The ``--json`` keys every ``train`` command reports for its run."""
    return {"out": str(result.out_dir), "weights": str(result.out_dir / weights_name), "steps": result.steps,
            "final_loss": round(result.final_loss, 4), "seconds": round(result.seconds, 1),
            "crops_per_s": round(result.crops_per_s, 1)}  # fmt: skip


def _training_progress(progress: Progress, task) -> Callable[[int, int, float, float], None]:
    """A training loop's callback (step, total, loss, crops/s) drawing on one progress bar."""

    def update(step: int, total: int, loss: float, crops_per_s: float) -> None:
        progress.update(task, completed=step, total=total, description=f"training: loss {loss:.3f}, {crops_per_s:.0f} crops/s")

    return update

# ---- evaluate --------------------------------------------------------------------------------


@app.command(context_settings=CONTEXT)
@library_argument
@click.option("--labels", required=True, type=click.Path(path_type=Path), help="Labels CSV: path, singer [, gender, melody, genre].")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write the results as JSON to this file.")
@jobs_option
@separator_option
@separator_weights_option
@click.option("--model", type=click.Path(path_type=Path), help="Folder of other trained weights to evaluate.")
@click.option("--melody-weight", type=FiniteFloatRange(min=0.0), help="Melody weight of the combined score.")
@data_dir_option
@click.pass_context
def evaluate(
    ctx: click.Context, library: Path, labels: Path, json_out: Path | None, jobs: int | None, separator: str | None,
    separator_weights: Path | None, model: Path | None, melody_weight: float | None, data_dir: Path | None,
) -> None:
    """Measure singer, melody and gender retrieval of every embedding, with baselines and chance levels."""
    from nextvox.evaluation import evaluate_library, format_table
    from nextvox.recommend import DEFAULT_W_MELODY, DEFAULT_W_TIMBRE

    with progress_bars() as progress:
        task = progress.add_task("evaluating", total=None)
        result = evaluate_library(
            library, labels, data_dir=chosen_data_dir(ctx, library, data_dir), jobs=jobs, separator=separator,
            separator_weights=separator_weights, model_dir=model, w_timbre=DEFAULT_W_TIMBRE,
            w_melody=DEFAULT_W_MELODY if melody_weight is None else melody_weight,
            progress=lambda stage, done, total: progress.update(task, description=stage, completed=done, total=total),
        )
    stdout.print(format_table(result), markup=False)
    if json_out is not None:
        try:
            json_out.write_text(json.dumps(result, indent=2))
        except OSError as error:
            raise NextvoxError(f"cannot write {json_out}: {error.strerror}") from None


# ---- train -----------------------------------------------------------------------------------


@app.group(context_settings=CONTEXT)
def train() -> None:
    """Train a model on a library; `nextvox train timbre|tcae LIBRARY` are self-supervised (no labels)."""


def self_supervised_options(model: str) -> Callable:
    """The options every self-supervised ``train`` command shares; ``model`` names its weights file and default folder."""
    options = [
        click.option("--steps", type=click.IntRange(min=1), default=300, show_default=True, help="Optimiser steps."),
        click.option("--lr", type=FiniteFloatRange(min=0.0, min_open=True), help="Peak learning rate (default: 2e-3 from scratch, 5e-4 fine-tuning)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the data order, augmentations and initial weights."),
        click.option("--out", type=click.Path(file_okay=False, path_type=Path),
                     help=f"Folder for checkpoint.pt, {model}.pt, train.json and loss.png. Default: DATA_DIR/models/{model}."),
        click.option("--resume", is_flag=True, help="Go on from OUT/checkpoint.pt (its own settings are used)."),
        click.option("--from-scratch", is_flag=True, help="Start from random weights instead of fine-tuning the shipped ones."),
        click.option("--backgrounds", type=click.Path(path_type=Path),
                     help="Another library whose songs are mixed under the views (default: LIBRARY's own)."),
        click.option("--fp32", is_flag=True, help="Train in float32 instead of bfloat16 autocast."),
        jobs_option, separator_option, json_flag, data_dir_option, click.pass_context,
    ]  # fmt: skip

    def decorate(command: Callable) -> Callable:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@train.command("timbre", context_settings=CONTEXT)
@library_argument
@click.option("--pitch-shift", type=click.Choice(["positive", "negative", "off"]), default="negative", show_default=True,
              help="Role of pitch shift: an ordinary augmentation, an extra negative (Yakura et al. 2022), or unused.")
@click.option("--time-stretch", type=click.Choice(["positive", "negative", "off"]), default="positive", show_default=True,
              help="Role of time stretch, as for --pitch-shift.")
@click.option("--register-shift", type=FiniteFloatRange(min=0.0), default=4.0, show_default=True,
              help="Every view sung up to this many semitones higher or lower with its formants kept (0: off).")
@click.option("--batch-size", type=click.IntRange(min=2), default=48, show_default=True, help="Excerpts per step.")
@self_supervised_options("timbre")
def train_timbre_command(
    ctx: click.Context, library: Path, pitch_shift: str, time_stretch: str, register_shift: float, steps: int, batch_size: int,
    lr: float | None, seed: int, out: Path | None, resume: bool, from_scratch: bool, backgrounds: Path | None,
    fp32: bool, jobs: int | None, separator: str | None, as_json: bool, data_dir: Path | None,
) -> None:
    """Train the timbre encoder on LIBRARY's songs (fine-tunes the shipped weights unless --from-scratch)."""
    from nextvox.training import TrainConfig, default_init, train_timbre

    chosen = chosen_data_dir(ctx, library, data_dir)
    init = None if from_scratch else default_init()
    config = TrainConfig(
        pitch_shift=pitch_shift, time_stretch=time_stretch, register_semitones=register_shift, steps=steps, batch_size=batch_size, seed=seed,
        lr=lr or (FROM_SCRATCH_LR if init is None else FINE_TUNE_LR), bf16=not fp32, init_weights=init,
    )
    config.min_lr = config.lr / 10
    _train_on_library(train_timbre, config, library=library, data_dir=chosen, out=out or chosen / "models" / "timbre",
                      weights_name="timbre.pt", backgrounds=backgrounds, separator=separator, jobs=jobs, resume=resume,
                      as_json=as_json)  # fmt: skip


def _library_separator(library: Path, data_dir: Path) -> str:
    """The separator the library's catalogue says it is analysed with."""
    from nextvox.analysis import library_settings
    from nextvox.catalogue import Catalogue, resolve_library

    with Catalogue(data_dir, library=resolve_library(library)) as catalogue:
        return library_settings(catalogue).separator


def _train_on_library(
    train_function: Callable, config, *, library: Path, data_dir: Path, out: Path, weights_name: str,
    backgrounds: Path | None, separator: str | None, jobs: int | None, resume: bool, as_json: bool,
) -> None:  # fmt: skip
    """Read LIBRARY's log-mels (and the backgrounds'), run a self-supervised training loop, report it."""
    from nextvox.catalogue import default_data_dir
    from nextvox.training import library_log_mels

    with progress_bars() as progress:
        task = progress.add_task("reading spectrograms", total=None)
        excerpts = library_log_mels(library, data_dir=data_dir, separator=separator, jobs=jobs,
                                    progress=lambda done, total: progress.update(task, completed=done, total=total))
        separator = separator or _library_separator(library, data_dir)
        under = None
        if backgrounds is not None:
            under = library_log_mels(backgrounds, data_dir=default_data_dir(backgrounds), separator=separator, jobs=jobs)
        progress.update(task, description="training", completed=0, total=config.steps)
        result = train_function(
            config, [x for _, x in excerpts], out_dir=out, backgrounds=None if under is None else [x for _, x in under],
            resume=resume, data_note=f"{library} ({len(excerpts)} tracks, separator {separator})",
            progress=_training_progress(progress, task),
        )  # fmt: skip
    summary = _training_summary(result, weights_name) | {"excerpts": result.n_excerpts}
    if as_json:
        print(json.dumps(summary))
        return
    stderr.print(
        f"trained {result.steps} steps on {result.n_excerpts} excerpts in {result.seconds:.0f} s "
        f"({result.crops_per_s:.0f} crops/s), final loss {result.final_loss:.3f}; weights: {summary['weights']} "
        f"(measure them with: nextvox evaluate LIBRARY --labels CSV --model {result.out_dir})"
    )


@train.command("tcae", context_settings=CONTEXT)
@library_argument
@click.option("--contrastive-weight", type=FiniteFloatRange(min=0.0), default=1.0, show_default=True,
              help="Weight of the key- and tempo-invariant contrastive term; 0 trains the plain reconstruction TCAE.")
@click.option("--centre-s", type=FiniteFloatRange(min=0.0), default=2.0, show_default=True,
              help="Seconds of the causal running mean removed from each band (0: a fixed affine input, the plain TCAE).")
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True, help="Crops per step.")
@click.option("--crop-frames", type=click.IntRange(min=16), default=384, show_default=True,
              help="Frames per training crop (62.5 per second); songs shorter than a crop (x1.25 with the contrastive term) are left out.")
@self_supervised_options("tcae")
def train_tcae_command(
    ctx: click.Context, library: Path, contrastive_weight: float, centre_s: float, steps: int, batch_size: int,
    crop_frames: int, lr: float | None, seed: int, out: Path | None, resume: bool, from_scratch: bool, backgrounds: Path | None,
    fp32: bool, jobs: int | None, separator: str | None, as_json: bool, data_dir: Path | None,
) -> None:
    """Train the TCAE melody model on LIBRARY's songs (fine-tunes the shipped weights unless --from-scratch)."""
    from nextvox.models.tcae import TCAEConfig, load_weights
    from nextvox.training import TCAETrainConfig, default_tcae_init, train_tcae

    chosen = chosen_data_dir(ctx, library, data_dir)
    init = None if from_scratch else default_tcae_init()
    # Fine-tuning keeps the shipped model's shape (its input normalisation included).
    model = load_weights(Path(init)).config if init else TCAEConfig(centre_s=centre_s)
    config = TCAETrainConfig(
        contrastive_weight=contrastive_weight, steps=steps, batch_size=batch_size, crop_frames=crop_frames, seed=seed,
        lr=lr or (FROM_SCRATCH_LR if init is None else FINE_TUNE_LR), bf16=not fp32, init_weights=init, model=model,
    )
    config.min_lr = config.lr / 10
    _train_on_library(train_tcae, config, library=library, data_dir=chosen, out=out or chosen / "models" / "tcae",
                      weights_name="tcae.pt", backgrounds=backgrounds, separator=separator, jobs=jobs, resume=resume,
                      as_json=as_json)  # fmt: skip


@train.command("separator", context_settings=CONTEXT)
@library_argument
@click.option("--steps", type=click.IntRange(min=1), default=1200, show_default=True, help="Optimiser steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Crops per step.")
@click.option("--lr", type=FiniteFloatRange(min=0.0, min_open=True),
              help="Peak learning rate (default: 2e-3 from scratch, 5e-4 fine-tuning).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the crops, remixes and initial weights.")
@click.option("--fine-tune", is_flag=True, help="Start from the shipped separator weights instead of random ones.")
@click.option("--also", "more_libraries", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Another library with vocal stems whose songs join LIBRARY's (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for checkpoint.pt, separator.pt, train.json and loss.png. Default: DATA_DIR/models/separator.")
@click.option("--resume", is_flag=True, help="Go on from OUT/checkpoint.pt (its own settings; --steps may extend it).")
@json_flag
@data_dir_option
@click.pass_context
def train_separator_command(
    ctx: click.Context, library: Path, steps: int, batch_size: int, lr: float | None, seed: int, fine_tune: bool,
    more_libraries: tuple[Path, ...], out: Path | None, resume: bool, as_json: bool, data_dir: Path | None,
) -> None:
    """Train the mask separator on LIBRARY's mixes and isolated vocals (labels.csv vocal_path)."""
    from nextvox.separation import SHIPPED_MASK_WEIGHTS
    from nextvox.training import SeparatorTrainConfig, load_stems, train_separator

    out = out or chosen_data_dir(ctx, library, data_dir) / "models" / "separator"
    config = SeparatorTrainConfig(steps=steps, batch_size=batch_size, seed=seed, lr=lr or (FINE_TUNE_LR if fine_tune else FROM_SCRATCH_LR),
                                  init_weights=str(SHIPPED_MASK_WEIGHTS) if fine_tune else None)  # fmt: skip
    libraries = (library, *more_libraries)
    with progress_bars() as progress:
        task = progress.add_task("reading mixes and vocals", total=None)
        stems = [stem for each in libraries for stem in load_stems(each)]
        progress.update(task, description="training", completed=0, total=steps)
        result = train_separator(
            config, stems, out_dir=out, resume=resume,
            data_note=f"{', '.join(map(str, libraries))} ({len(stems)} songs)",
            progress=_training_progress(progress, task),
        )  # fmt: skip
    summary = _training_summary(result, "separator.pt") | {"songs": result.n_songs}
    if as_json:
        print(json.dumps(summary))
        return
    stderr.print(
        f"trained {result.steps} steps on {result.n_songs} songs in {result.seconds:.0f} s, final loss "
        f"{result.final_loss:.3f}; weights: {summary['weights']} (use them with: nextvox analyze LIBRARY "
        f"--separator mask --separator-weights {summary['weights']})"
    )


# ---- gender and maps -------------------------------------------------------------------------


@train.command("gender", context_settings=CONTEXT)
@library_argument
@click.option("--labels", type=click.Path(path_type=Path),
              help="Labels CSV with path and gender (female/male) columns, singer optional. "
              "Default: each file's GENDER tag.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the head (JSON). Default: DATA_DIR/models/gender_head.json.")
@click.option("--use", is_flag=True,
              help="Also make it this library's active head (DATA_DIR/gender_head.json) and predict every track with it.")
@jobs_option
@json_flag
@data_dir_option
@click.pass_context
def train_gender_command(
    ctx: click.Context, library: Path, labels: Path | None, out: Path | None, use: bool, jobs: int | None,
    as_json: bool, data_dir: Path | None,
) -> None:
    """Train a gender head on LIBRARY's timbre vectors, with accuracy on singers held out."""
    from nextvox.catalogue import command_hint, resolve_library
    from nextvox.gender import use_head
    from nextvox.workflows import train_library_head

    chosen = chosen_data_dir(ctx, library, data_dir)
    with progress_bars() as progress:
        task = progress.add_task("analysing", total=None)
        result = train_library_head(library, data_dir=chosen, labels_csv=labels, jobs=jobs,
                                    progress=lambda done, total: progress.update(task, completed=done, total=total))
    out = result.head.save(out or chosen / "models" / "gender_head.json")
    predicted = use_head(result.head, library=resolve_library(library), data_dir=chosen) if use else None
    summary = {
        "out": str(out), "version": result.head.version, "timbre_model_version": result.head.timbre_model_version,
        "labels": result.label_source, "n_tracks": result.n_tracks, "n_singers": result.n_singers,
        "n_unlabelled": result.n_unlabelled, "leave_one_singer_out_accuracy": result.accuracy,
        "balanced_accuracy": result.balanced_accuracy, "note": result.note,
        "active": use, "predicted": predicted.predicted if predicted else None,
    }  # fmt: skip
    if as_json:
        print(json.dumps(summary))
        return
    scores = (f"accuracy on held-out singers {result.accuracy:.3f}, balanced {result.balanced_accuracy:.3f}"
              if result.accuracy is not None else result.note)  # fmt: skip
    stderr.print(f"gender head trained on {result.n_tracks} tracks of {result.n_singers} singers (labels: {result.label_source}); "
                 f"{scores}. Written to {out}")
    if predicted is not None:
        stderr.print(f"now the active head of this library: {predicted.predicted} tracks have a predicted gender"
                     + (f"; {predicted.note}" if predicted.note else ""))
    else:
        stderr.print(f"to use it: {command_hint('train gender', library, chosen, '...', '--use')} "
                     f"(or copy it to {chosen / 'gender_head.json'})", markup=False)

