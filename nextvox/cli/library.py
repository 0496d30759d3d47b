"""The library commands: ``demo`` (make the project's own song library), ``analyze`` and ``status``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from rich.table import Table

from nextvox.cli.common import (
    CONTEXT, app, chosen_data_dir, data_dir_option, jobs_option, json_flag, library_argument, progress_bars, separator_option,
    separator_weights_option, stderr, stdout,
)  # fmt: skip



@app.command(context_settings=CONTEXT)
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--singers", type=click.IntRange(min=1), default=8, show_default=True, help="Number of singers.")
@click.option("--songs", type=click.IntRange(min=1), default=4, show_default=True, help="Songs per singer.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: the same seed gives the same library.")
@click.option("--voices", type=click.Choice(["demo", "train"]), default="demo", show_default=True,
              help="demo: Debian-main voices; train: adds MBROLA, espeak-ng and warped voices.")
@click.option("--production", type=click.Choice(["plain", "studio", "mixed"]), default="plain", show_default=True,
              help="plain: a small band under a dry voice; studio: drums, more instruments, vocal effects, "
                   "bus compression, lossy codecs, drawn per song; mixed: each song one or the other.")
@jobs_option
@data_dir_option
def demo(directory: Path, singers: int, songs: int, seed: int, voices: str, production: str, jobs: int | None,
         data_dir: Path | None) -> None:  # fmt: skip
    """Make the project's own labelled song library: real recorded voices sing real melodies."""
    del data_dir  # taken like every command's; the generator keeps no catalogue
    from nextvox.synth import render_library

    started = time.perf_counter()
    with progress_bars() as progress:
        task = progress.add_task("rendering songs", total=None)
        labels = render_library(
            directory, n_singers=singers, n_songs=songs, seed=seed, voice_set=voices, production=production, jobs=jobs,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    stderr.print(f"library ready in {time.perf_counter() - started:.0f} s: {directory} (labels: {labels})")


# ---- analyze ---------------------------------------------------------------------------------


@app.command(context_settings=CONTEXT)
@library_argument
@jobs_option
@separator_option
@separator_weights_option
@click.option("--retry-failed", is_flag=True, help="Try failed files again even if unchanged.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: a Ray Data job (pip install 'nextvox[ray]'), "
                   "--jobs then counts actors.")
@click.option("--ray-address", metavar="ADDRESS",
              help="Ray cluster to run on (host:port, auto, ray://host:10001); default: a local Ray instance. "
                   "Every node must see LIBRARY at the same path.")
@json_flag
@data_dir_option
@click.pass_context
def analyze(
    ctx: click.Context, library: Path, jobs: int | None, separator: str | None, separator_weights: Path | None,
    retry_failed: bool, engine: str, ray_address: str | None, as_json: bool, data_dir: Path | None,
) -> None:
    """Scan the library and analyse new and changed tracks (incremental, resumable, parallel)."""
    if ray_address is not None and engine != "ray":
        raise click.UsageError("--ray-address needs --engine ray")
    from nextvox.analysis import AnalysisSettings
    from nextvox.catalogue import command_hint, remember_data_dir
    from nextvox.workflows import analyze_library

    # Without separator options, the library keeps the settings it was analysed with.
    settings = AnalysisSettings.from_options(separator, separator_weights)
    if settings is not None:
        settings.separator_version  # a missing separator or its weights: one line now, not a failure per track
    chosen = chosen_data_dir(ctx, library, data_dir)
    with progress_bars() as progress:
        scan_task = progress.add_task("scanning", total=None)
        track_task = progress.add_task("analysing", total=None, visible=False)
        report = analyze_library(
            library,
            data_dir=chosen,
            jobs=jobs,
            settings=settings,
            retry_failed=retry_failed,
            engine=engine,
            ray_address=ray_address,
            on_scan=lambda done, total: progress.update(scan_task, completed=done, total=total),
            on_track=lambda done, total, audio_s: progress.update(
                track_task, completed=done, total=total, audio_s=audio_s, visible=True
            ),
        )
    remember_data_dir(library, chosen)  # later commands without --data-dir find this catalogue
    scan = report.scan
    summary = {
        "files": scan.total, "new": scan.new, "changed": scan.changed, "moved": scan.moved,
        "removed": scan.removed, "analyzed_now": report.analyzed, "failed_now": report.failed,
        "audio_s": round(report.audio_s, 1), "wall_s": round(report.wall_s, 2),
        "x_real_time": round(report.audio_s / report.wall_s, 1) if report.wall_s else None,
        "seconds_per_stage": {k: round(v, 3) for k, v in report.seconds_per_stage.items()},
        "counts": report.counts,
        "gender_note": report.gender_note,
        "engine": report.engine,
        "tracks_per_node": report.tracks_per_node,
    }
    if as_json:
        print(json.dumps(summary))
        return
    stderr.print(
        f"{scan.total} files: {scan.new} new, {scan.changed} changed, {scan.moved} moved, {scan.removed} removed. "
        f"Analysed {report.analyzed} tracks ({report.audio_s / 60:.1f} min of audio) in {report.wall_s:.1f} s"
        + (f", {summary['x_real_time']:g}x real time" if report.analyzed else "")
        + f"; {report.failed} failed."
    )
    counts = report.counts
    stderr.print(f"catalogue: {counts.get('analyzed', 0)} analysed, {counts.get('failed', 0)} failed, {counts.get('pending', 0)} pending"
                 + (f" (see `{command_hint('status', library, chosen)}` for the reasons)" if counts.get("failed") else ""))
    if report.gender_note:
        stderr.print(f"gender: {report.gender_note}")


# ---- status ----------------------------------------------------------------------------------


@app.command(context_settings=CONTEXT)
@library_argument
@json_flag
@data_dir_option
@click.pass_context
def status(ctx: click.Context, library: Path, as_json: bool, data_dir: Path | None) -> None:
    """Counts of analysed, failed and pending tracks, and every failed file with its reason."""
    from nextvox.catalogue import Catalogue, resolve_library
    from nextvox.gender import active_head, gender_status

    root = resolve_library(library)
    chosen = chosen_data_dir(ctx, library, data_dir)
    with Catalogue(chosen, library=root, create=False) as catalogue:
        tracks = catalogue.tracks()
        counts = catalogue.status_counts()
        gender = gender_status(catalogue, active_head(chosen))
    if as_json:
        print(json.dumps({
            "library": str(root),
            "counts": counts,
            "gender": {"head": gender.head_version, "predicted": gender.predicted, "note": gender.note},
            "tracks": [
                {"path": t.path, "status": t.status, "error": t.error, "artist": t.artist, "title": t.title,
                 "album": t.album, "genre": t.genre, "duration_s": t.duration_s}
                for t in tracks
            ],
        }))
        return
    stdout.print(f"{root}: {len(tracks)} tracks — {counts['analyzed']} analysed, {counts['failed']} failed, {counts['pending']} pending")
    stdout.print(f"gender: {gender.predicted} tracks predicted by {gender.head_version}" if gender.head_version else "gender: none predicted",
                 *([f"({gender.note})"] if gender.note else []), markup=False)
    failed = [t for t in tracks if t.status == "failed"]
    if failed:
        table = Table("failed file", "reason", box=None, pad_edge=False)
        for track in failed:
            table.add_row(track.path, track.error or "")
        stdout.print(table)


