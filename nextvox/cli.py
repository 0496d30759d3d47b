"""The ``nextvox`` command line: a thin layer over the library.

Contract (DESIGN.md): every command takes ``--data-dir`` and ``--help``; ``--json`` prints
one JSON document on stdout and nothing else there; exit 0 on success, 2 on a usage error,
1 on any other failure, with one clear line on stderr and never a traceback.

Why one long module: each command is a short function (parse, call the library or
:mod:`nextvox.workflows`, print), and they share one set of options, progress drawing and
error handling; click's command tree reads best in one file, top to bottom.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from nextvox.errors import NextvoxError
from nextvox.processes import sigterm_as_interrupt

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
# Wide enough that a table piped to a file or a pager keeps one line per row.
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

class FiniteFloatRange(click.FloatRange):
    """A float option in a range that refuses ``nan`` and ``inf`` (they pass every comparison test
    or none, and turn a score into ``NaN``, which strict JSON readers reject)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the catalogue, caches and indexes live. Default: $NEXTVOX_DATA_DIR, else "
    "~/.local/share/nextvox/<library name>-<digest> (never inside the music folder).",
)
jobs_option = click.option("--jobs", "-j", type=click.IntRange(min=1), help="Worker processes (default: one per core).")
json_flag = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else there.")
library_argument = click.argument("library", type=click.Path(path_type=Path))
separator_option = click.option(
    "--separator", type=click.Choice(["none", "classical", "mask", "demucs"]),
    help="Vocal separation method (default: the project's; see docs/separation.md).",
)
separator_weights_option = click.option(
    "--separator-weights", type=click.Path(dir_okay=False, path_type=Path),
    help="Model file of the mask separator (from `nextvox train separator`) or of a pretrained Demucs.",
)


def _data_dir(ctx: click.Context, library: Path, data_dir: Path | None) -> Path:
    """The command's --data-dir, else the one given before the command, else the library's own
    (the default, or the one an earlier ``analyze --data-dir`` remembered)."""
    from nextvox.catalogue import library_data_dir

    chosen = data_dir or (ctx.obj or {}).get("data_dir")
    return Path(chosen).expanduser() if chosen else library_data_dir(library)


def _version() -> str:
    from nextvox import __version__

    return __version__


@click.group(context_settings=CONTEXT, help="Recommend songs by the singer's voice.")
@click.version_option(_version(), "--version", "-V", prog_name="nextvox", message="%(prog)s %(version)s")
@data_dir_option
@click.pass_context
def app(ctx: click.Context, data_dir: Path | None) -> None:
    ctx.obj = {"data_dir": data_dir}


class _RealTimeColumn(ProgressColumn):
    """Audio seconds processed per wall second ("x real time")."""

    def render(self, task) -> Text:
        audio_s = task.fields.get("audio_s")
        if not audio_s or not task.elapsed:
            return Text("")
        return Text(f"{audio_s / task.elapsed:,.0f}x real time", style="cyan")


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


@contextmanager
def _progress(enabled: bool = True) -> Iterator[Progress]:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RealTimeColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
        disable=not enabled or not stderr.is_terminal,
    )
    with progress:
        yield progress


def _decoder_notes_to_log(data_dir: Path) -> None:
    """Native decoders' notes on damaged files go to DATA_DIR/decoder.log, not over our one-line messages
    (to nowhere where the data directory exists but cannot be written: a read-only copy is still read)."""
    from nextvox.audio import redirect_native_stderr

    data_dir = Path(data_dir)
    writable = not data_dir.is_dir() or os.access(data_dir, os.W_OK)
    redirect_native_stderr(data_dir / "decoder.log" if writable else os.devnull)


# ---- demo ------------------------------------------------------------------------------------


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
    with _progress() as progress:
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
    chosen = _data_dir(ctx, library, data_dir)
    with _progress() as progress:
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
    chosen = _data_dir(ctx, library, data_dir)
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


# ---- recommend -------------------------------------------------------------------------------


def _filter_options(command):
    """The filters shared by ``recommend`` and ``radio``."""
    for option in reversed([
        click.option("--exclude-artist", is_flag=True, help="Leave out the artists of the query tracks."),
        click.option("--heard", type=click.Path(dir_okay=False, path_type=Path),
                     help="File of tracks already heard, one path a line (relative to LIBRARY or absolute; "
                     "lines starting with # are skipped, so an M3U works): left out."),
        click.option("--genre", multiple=True, help="Keep only this genre (repeat for several)."),
        click.option("--gender", type=click.Choice(["female", "male"]),
                     help="Keep only voices of this gender (applied where the gender stage has stored one)."),
    ]):
        command = option(command)
    return command


def _playlist_options(command):
    """Where a playlist goes (``--out``, ``--to-server``) and where its paths point (``--relative``,
    ``--path-prefix``): the options of ``radio`` and ``path``."""
    for option in reversed([
        click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
                     help="Write the playlist here; the extension picks the format: .m3u8 or .xspf."),
        click.option("--to-server", "to_server", metavar="NAME",
                     help="Also save it as the playlist NAME on the Subsonic server (updated in place when it exists; "
                     "settings: docs/players.md)."),
        click.option("--relative", is_flag=True,
                     help="Write paths relative to the playlist's folder, so the playlist travels with the music."),
        click.option("--path-prefix", metavar="PREFIX",
                     help="Write each library path after PREFIX: where another player sees the library "
                     "(/mnt/music, http://nas/music)."),
    ]):
        command = option(command)
    return command


def _write_playlist(songs, out: Path, *, root: Path, title: str, relative: bool, path_prefix: str | None) -> None:
    from nextvox.playlists import playlist_entries, write_playlist

    if relative and path_prefix:
        raise click.UsageError("--relative and --path-prefix exclude each other")
    entries = playlist_entries(songs, library=root, relative_to=out.expanduser().absolute().parent if relative else None,
                               prefix=path_prefix)
    write_playlist(entries, out, title=title)


def _read_heard(heard: Path | None, root: Path) -> frozenset[str]:
    """Library-relative paths listed in a heard-tracks file."""
    if heard is None:
        return frozenset()
    try:
        lines = heard.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise NextvoxError(f"cannot read {heard}: {error.strerror}") from None
    paths = set()
    for line in (line.strip() for line in lines):
        if line and not line.startswith("#"):
            path = Path(line)
            if path.is_absolute():
                try:
                    line = path.resolve().relative_to(root).as_posix()
                except ValueError:
                    continue  # outside the library: never a candidate anyway
            paths.add(line)
    return frozenset(paths)


def _filters(root: Path, exclude_artist: bool, heard: Path | None, genre: tuple[str, ...], gender: str | None):
    from nextvox.recommend import Filters

    return Filters(exclude_query_artists=exclude_artist, heard=_read_heard(heard, root), genres=frozenset(genre), gender=gender)


def _history_weights(weights: str | None, n_queries: int) -> list[float]:
    if weights is None:
        return [1.0] * n_queries
    try:
        values = [float(w) for w in weights.split(",")]
    except ValueError:
        raise click.UsageError(f"--weights must be numbers separated by commas: {weights}") from None
    if len(values) != n_queries or not all(math.isfinite(w) and w > 0 for w in values):
        raise click.UsageError(f"--weights needs {n_queries} positive numbers, one per query")
    return values


@app.command(context_settings=CONTEXT)
@library_argument
@click.argument("query", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-k", "--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Number of recommendations.")
@click.option("--melody-weight", type=FiniteFloatRange(min=0.0), help="Weight of melody similarity in the score.")
@click.option("--timbre-weight", type=FiniteFloatRange(min=0.0), help="Weight of voice (timbre) similarity in the score.")
@click.option("--weights", help="Weights of the queries of a listening history, comma-separated (default: equal).")
@_filter_options
@click.option("--per-artist", type=click.IntRange(min=0), default=3, show_default=True,
              help="At most this many results per artist (0: no cap).")
@click.option("--mmr", "mmr_lambda", type=FiniteFloatRange(0.0, 1.0), default=1.0, show_default=True,
              help="Maximal marginal relevance lambda: 1 ranks by score alone, lower values vary the voices.")
@json_flag
@data_dir_option
@click.pass_context
def recommend(
    ctx: click.Context, library: Path, query: tuple[Path, ...], k: int, melody_weight: float | None,
    timbre_weight: float | None, weights: str | None, exclude_artist: bool, heard: Path | None, genre: tuple[str, ...],
    gender: str | None, per_artist: int, mmr_lambda: float, as_json: bool, data_dir: Path | None,
) -> None:
    """Recommend the next songs: voices (and, by choice, melodies) alike, each with the reason.

    QUERY is a track of the library (its path, or words of its artist and title, quoted:
    "anna spring"), or any audio file; several QUERYs are a listening history.
    """
    # No nextvox.analysis here: it loads torch (3-4 s), which a query from stored vectors never needs.
    from nextvox.catalogue import Catalogue, resolve_library
    from nextvox.recommend import DEFAULT_W_MELODY, DEFAULT_W_TIMBRE, Diversity, recommend as recommend_tracks, resolve_query

    history_weights = _history_weights(weights, len(query))
    w_timbre = DEFAULT_W_TIMBRE if timbre_weight is None else timbre_weight
    w_melody = DEFAULT_W_MELODY if melody_weight is None else melody_weight
    if w_timbre == 0 and w_melody == 0:
        raise click.UsageError("--timbre-weight and --melody-weight cannot both be 0")
    root = resolve_library(library)
    with Catalogue(_data_dir(ctx, library, data_dir), library=root, create=False) as catalogue:
        _decoder_notes_to_log(catalogue.data_dir)
        queries = [resolve_query(catalogue, q, weight=w) for q, w in zip(query, history_weights)]
        results = recommend_tracks(
            catalogue, queries, k=k, w_timbre=w_timbre, w_melody=w_melody,
            filters=_filters(root, exclude_artist, heard, genre, gender),
            diversity=Diversity(mmr_lambda=mmr_lambda, per_artist=per_artist or None),
        )
    labels = [q.label for q in queries]
    if as_json:
        print(json.dumps({
            "query": labels[0] if len(labels) == 1 else labels,
            "results": [r.__dict__ for r in results],
        }))
        return
    stdout.print(f"Voices like {', '.join(labels)}:")
    _print_tracks(results)


def _print_tracks(results) -> None:
    table = Table("#", "score", "track", "artist — title", "genre", "why", box=None, pad_edge=False)
    for rank, r in enumerate(results, 1):
        table.add_row(str(rank), f"{r.score:.3f}", r.path, f"{r.artist or '?'} — {r.title or '?'}", r.genre or "", r.reason)
    stdout.print(table)


# ---- radio -----------------------------------------------------------------------------------


@app.command(context_settings=CONTEXT)
@library_argument
@click.argument("seed", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-n", "--n", "n", type=click.IntRange(min=1), default=50, show_default=True, help="Songs in the radio.")
@click.option("--follow", type=FiniteFloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="0 keeps every song near the seed's voice; 1 lets each song lead to the next.")
@_playlist_options
@_filter_options
@json_flag
@data_dir_option
@click.pass_context
def radio(
    ctx: click.Context, library: Path, seed: tuple[Path, ...], n: int, out: Path | None, follow: float,
    to_server: str | None, relative: bool, path_prefix: str | None, exclude_artist: bool, heard: Path | None,
    genre: tuple[str, ...], gender: str | None, as_json: bool, data_dir: Path | None,
) -> None:
    """A radio that follows a voice: an ordered playlist, never the same artist twice in a row.

    SEED is a track of the library (its path, or words of its artist and title), or any audio file.
    """
    from nextvox.catalogue import Catalogue, resolve_library
    from nextvox.playlists import PLAYLIST_FORMATS, radio as make_radio
    from nextvox.recommend import Recommender, resolve_query

    if out is not None and out.suffix.lower().lstrip(".") not in PLAYLIST_FORMATS:
        raise click.UsageError(f"--out must end in .m3u8 or .xspf: {out}")
    root = resolve_library(library)
    with Catalogue(_data_dir(ctx, library, data_dir), library=root, create=False) as catalogue:
        _decoder_notes_to_log(catalogue.data_dir)
        seeds = [resolve_query(catalogue, s) for s in seed]
        songs = make_radio(Recommender(catalogue), seeds, n=n, follow=follow,
                           filters=_filters(root, exclude_artist, heard, genre, gender))
    title = f"nextvox radio: {', '.join(s.label for s in seeds)}"
    if out is not None:
        _write_playlist(songs, out, root=root, title=title, relative=relative, path_prefix=path_prefix)
    pushed = _push_to_server(to_server, [r.path for r in songs], root=root, data_dir=_data_dir(ctx, library, data_dir))
    if as_json:
        print(json.dumps({"seed": [s.label for s in seeds], "out": str(out) if out else None,
                          "tracks": [r.__dict__ for r in songs], **({"server_playlist": pushed} if pushed else {})}))
        return
    if out is not None:
        stderr.print(f"{len(songs)} songs written to {out}")
    else:
        _print_tracks(songs)


# ---- path ------------------------------------------------------------------------------------


@app.command(context_settings=CONTEXT)
@library_argument
@click.argument("start", metavar="FROM", type=click.Path(path_type=Path))
@click.argument("end", metavar="TO", type=click.Path(path_type=Path))
@click.option("-n", "--n", "n", type=click.IntRange(min=2), default=20, show_default=True,
              help="Songs in the path, FROM and TO included.")
@click.option("--follow", type=FiniteFloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="0 keeps each song nearest its point on the way; 1 lets the song before decide.")
@_playlist_options
@_filter_options
@json_flag
@data_dir_option
@click.pass_context
def path(
    ctx: click.Context, library: Path, start: Path, end: Path, n: int, out: Path | None, follow: float,
    to_server: str | None, relative: bool, path_prefix: str | None, exclude_artist: bool, heard: Path | None,
    genre: tuple[str, ...], gender: str | None, as_json: bool, data_dir: Path | None,
) -> None:
    """A voice path: a playlist from FROM to TO, each voice close to the one before (library tracks)."""
    from nextvox.analysis import AnalysisSettings
    from nextvox.catalogue import Catalogue, resolve_library
    from nextvox.playlists import PLAYLIST_FORMATS
    from nextvox.recommend import Recommender, resolve_query
    from nextvox.voicepath import voice_path

    if out is not None and out.suffix.lower().lstrip(".") not in PLAYLIST_FORMATS:
        raise click.UsageError(f"--out must end in .m3u8 or .xspf: {out}")
    root = resolve_library(library)
    with Catalogue(_data_dir(ctx, library, data_dir), library=root, create=False) as catalogue:
        _decoder_notes_to_log(catalogue.data_dir)
        ends = [resolve_query(catalogue, track, settings=AnalysisSettings()) for track in (start, end)]
        songs = voice_path(Recommender(catalogue), ends[0], ends[1], n=n, follow=follow,
                           filters=_filters(root, exclude_artist, heard, genre, gender))
    title = f"nextvox path: {ends[0].label} to {ends[1].label}"
    if out is not None:
        _write_playlist(songs, out, root=root, title=title, relative=relative, path_prefix=path_prefix)
    pushed = _push_to_server(to_server, [r.path for r in songs], root=root, data_dir=_data_dir(ctx, library, data_dir))
    if as_json:
        print(json.dumps({"from": ends[0].label, "to": ends[1].label, "out": str(out) if out else None,
                          "tracks": [r.__dict__ for r in songs], **({"server_playlist": pushed} if pushed else {})}))
        return
    if len(songs) < n:
        stderr.print(f"only {len(songs)} songs: the library (after the filters) has no more voices for this path")
    if out is not None:
        stderr.print(f"{len(songs)} songs written to {out}")
    else:
        _print_tracks(songs)


# ---- players: Subsonic -----------------------------------------------------------------------


def _subsonic_map(root: Path, data_dir: Path, config):
    """The server's songs matched to the library's analysed tracks (needs the ``subsonic`` extra)."""
    from nextvox.catalogue import Catalogue
    from nextvox.integrations.subsonic import SubsonicClient, map_songs, server_songs

    with SubsonicClient(config) as client:
        songs = server_songs(client)
    with Catalogue(data_dir, library=root, create=False) as catalogue:
        return map_songs(songs, catalogue.tracks())


def _push_to_server(name: str | None, paths: list[str], *, root: Path, data_dir: Path) -> dict | None:
    """Save ``paths`` as the server's playlist ``name`` (when a name is given): what was pushed, for --json."""
    if name is None:
        return None
    from nextvox.integrations.subsonic import SubsonicClient, load_config, push_playlist

    config = load_config()
    song_map = _subsonic_map(root, data_dir, config)
    ids = [song_map.id_of[p] for p in paths if p in song_map.id_of]
    with SubsonicClient(config) as client:
        playlist_id, created = push_playlist(client, name, ids)
    missing = len(paths) - len(ids)
    stderr.print(f"{'created' if created else 'updated'} the playlist {name!r} on {config.base_url}: {len(ids)} songs"
                 + (f" ({missing} not found on the server left out)" if missing else ""), markup=False)
    return {"name": name, "id": playlist_id, "created": created, "songs": len(ids), "not_on_server": missing}


@app.group(context_settings=CONTEXT)
def subsonic() -> None:
    """Connect to a Subsonic / OpenSubsonic server (Navidrome, supysonic, ...): map its songs, serve voice radio to its clients."""


subsonic_config_option = click.option(
    "--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file with a [subsonic] table (url, user, password). Default: $NEXTVOX_SUBSONIC_CONFIG, "
    "else ~/.config/nextvox/subsonic.toml; NEXTVOX_SUBSONIC_URL/_USER/_PASSWORD override it.")


@subsonic.command("map", context_settings=CONTEXT)
@library_argument
@subsonic_config_option
@json_flag
@data_dir_option
@click.pass_context
def subsonic_map(ctx: click.Context, library: Path, config_file: Path | None, as_json: bool, data_dir: Path | None) -> None:
    """Match the server's songs to the library's tracks (by path in the music folder, else tags and duration) and count them."""
    from nextvox.catalogue import resolve_library
    from nextvox.integrations.subsonic import load_config

    config = load_config(config_file)
    counts = _subsonic_map(resolve_library(library), _data_dir(ctx, library, data_dir), config).counts
    if as_json:
        print(json.dumps({"server": config.base_url, "counts": counts}))
        return
    stdout.print(f"{config.base_url}: {counts['server_songs']} songs, {counts['matched']} matched to analysed tracks "
                 f"({counts['by_path']} by path, {counts['by_tags']} by tags and duration), "
                 f"{counts['unmatched_server_songs']} not matched; {counts['library_tracks_not_on_server']} of "
                 f"{counts['library_tracks']} analysed tracks are not on the server", markup=False)


@subsonic.command("serve", context_settings=CONTEXT)
@library_argument
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (only this machine by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=4534, show_default=True, help="TCP port.")
@subsonic_config_option
@data_dir_option
@click.pass_context
def subsonic_serve(ctx: click.Context, library: Path, host: str, port: int, config_file: Path | None,
                   data_dir: Path | None) -> None:
    """Serve the server's API with voice radio added: point Subsonic clients here instead of at the server."""
    import uvicorn

    from nextvox.catalogue import resolve_library
    from nextvox.integrations.subsonic import load_config
    from nextvox.integrations.subsonic_proxy import create_proxy_app

    config = load_config(config_file)
    root = resolve_library(library)
    application = create_proxy_app(root, _data_dir(ctx, library, data_dir), config)
    counts = application.state.proxy.song_map().counts  # reach the server now: a wrong setting is one line, not a traceback
    stderr.print(f"{counts['matched']} of the server's {counts['server_songs']} songs matched to analysed tracks; "
                 f"nextvox voice radio for {config.base_url} on http://{host}:{port}/rest/ (Ctrl-C stops)", markup=False)
    uvicorn.run(application, host=host, port=port, log_level="warning")


# ---- players: MPD ----------------------------------------------------------------------------


@app.command(context_settings=CONTEXT)
@library_argument
@click.option("--host", default="localhost", show_default=True, help="MPD's address (its password, if any, from $MPD_PASSWORD).")
@click.option("--port", type=click.IntRange(1, 65535), default=6600, show_default=True, help="MPD's port.")
@click.option("--keep", type=click.IntRange(min=1), default=5, show_default=True,
              help="Songs kept queued after the one playing.")
@click.option("--path-to", metavar="SONG", help="First replace what is queued after the song playing with a voice path to SONG.")
@click.option("-n", "--n", "n", type=click.IntRange(min=2), default=10, show_default=True,
              help="Songs in a voice path (the one playing and SONG included).")
@click.option("--once", is_flag=True, help="Do it once and exit instead of watching MPD.")
@_filter_options
@data_dir_option
@click.pass_context
def mpd(
    ctx: click.Context, library: Path, host: str, port: int, keep: int, path_to: str | None, n: int, once: bool,
    exclude_artist: bool, heard: Path | None, genre: tuple[str, ...], gender: str | None, data_dir: Path | None,
) -> None:
    """Keep MPD's queue topped up with voices like the song playing; queue a voice path on request.

    From any MPD client: `mpc sendmessage nextvox "path ARTIST/SONG.flac"` queues a path to that song.
    """
    from nextvox.api.service import LibraryService
    from nextvox.catalogue import resolve_library
    from nextvox.integrations.mpd import connect, queue_path, top_up, watch

    root = resolve_library(library)
    filters = _filters(root, exclude_artist, heard, genre, gender)
    service = LibraryService(root, _data_dir(ctx, library, data_dir))
    client = connect(host, port, password=os.environ.get("MPD_PASSWORD") or None)
    try:
        if path_to is not None:
            files = queue_path(client, service.recommender(), path_to, n=n, filters=filters)
            stderr.print(f"queued a voice path of {len(files)} songs to {path_to}", markup=False)
        if once:
            added = top_up(client, service.recommender(), keep=keep, filters=filters)
            stderr.print(f"queued {len(added)} voice-alike songs", markup=False)
            return
        stderr.print(f"keeping {keep} voice-alike songs queued in MPD at {host}:{port} (Ctrl-C stops)", markup=False)
        watch(client, service.recommender, keep=keep, n=n, filters=filters,
              report=lambda line: stderr.print(line, markup=False))
    finally:
        client.disconnect()
        service.close()


# ---- serve -----------------------------------------------------------------------------------


@app.command(context_settings=CONTEXT)
@library_argument
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (only this machine by default).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port.")
@click.option("--no-analyze", is_flag=True, help="Serve the catalogue as it is, without analysing new tracks first.")
@click.option("--max-upload-mb", type=FiniteFloatRange(min=0.1), default=50.0, show_default=True,
              help="Largest audio file accepted by the upload query.")
@jobs_option
@data_dir_option
@click.pass_context
def serve(
    ctx: click.Context, library: Path, host: str, port: int, no_analyze: bool, max_upload_mb: float,
    jobs: int | None, data_dir: Path | None,
) -> None:
    """Serve the HTTP API and the web page (analyses new tracks first, incrementally)."""
    import uvicorn

    from nextvox.api import create_app
    from nextvox.catalogue import remember_data_dir, resolve_library
    from nextvox.workflows import analyze_library

    root = resolve_library(library)
    chosen_data_dir = _data_dir(ctx, library, data_dir)
    listening = _listening_socket(host, port)  # a busy port is one line now, before any analysis
    remember_data_dir(root, chosen_data_dir)
    if not no_analyze:
        with _progress() as progress:
            task = progress.add_task("analysing", total=None)
            report = analyze_library(root, data_dir=chosen_data_dir, jobs=jobs,
                                     on_track=lambda done, total, _: progress.update(task, completed=done, total=total))
        stderr.print(f"catalogue: {report.counts.get('analyzed', 0)} analysed, {report.counts.get('failed', 0)} failed")
    application = create_app(root, chosen_data_dir, max_upload_bytes=int(max_upload_mb * 2**20),
                             allowed_hosts=_loopback_host_names(host))
    bound_port = listening.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    stderr.print(f"nextvox serving {root} on http://{shown_host}:{bound_port}/ (Ctrl-C stops)")
    _decoder_notes_to_log(chosen_data_dir)  # uploads are decoded in threads: fd 2 is set once, here
    uvicorn.Server(uvicorn.Config(application, log_level="warning")).run(sockets=[listening])


def _loopback_host_names(host: str) -> list[str] | None:
    """The Host headers a server bound to ``host`` answers: this machine's names when ``host`` is a
    loopback address (no other site can reach it by a name of its own), else None (any)."""
    import ipaddress

    if host == "localhost":
        return ["localhost", "127.0.0.1"]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    # IPv4 only: the Host check splits the port off at the first colon, which an IPv6 literal holds.
    return ["localhost", "127.0.0.1", host] if address.version == 4 and address.is_loopback else None


def _listening_socket(host: str, port: int):
    """A TCP socket bound to ``host``:``port`` and listening, or a NextvoxError saying why not.

    Bound by us, before anything else, and handed to the server: a port in use is reported
    at once, and no other program can take it between the check and the start.
    """
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as error:
        raise NextvoxError(f"cannot listen on {host}: {error.strerror}") from None
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as error:
        listening.close()
        raise NextvoxError(f"cannot listen on {host}:{port}: {error.strerror} (is another server using it? "
                           "choose another --port)") from None
    return listening


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

    with _progress() as progress:
        task = progress.add_task("evaluating", total=None)
        result = evaluate_library(
            library, labels, data_dir=_data_dir(ctx, library, data_dir), jobs=jobs, separator=separator,
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

    chosen = _data_dir(ctx, library, data_dir)
    init = None if from_scratch else default_init()
    config = TrainConfig(
        pitch_shift=pitch_shift, time_stretch=time_stretch, register_semitones=register_shift, steps=steps, batch_size=batch_size, seed=seed,
        lr=lr or (2e-3 if init is None else 5e-4), bf16=not fp32, init_weights=init,
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

    with _progress() as progress:
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

    chosen = _data_dir(ctx, library, data_dir)
    init = None if from_scratch else default_tcae_init()
    # Fine-tuning keeps the shipped model's shape (its input normalisation included).
    model = load_weights(Path(init)).config if init else TCAEConfig(centre_s=centre_s)
    config = TCAETrainConfig(
        contrastive_weight=contrastive_weight, steps=steps, batch_size=batch_size, crop_frames=crop_frames, seed=seed,
        lr=lr or (2e-3 if init is None else 5e-4), bf16=not fp32, init_weights=init, model=model,
    )
    config.min_lr = config.lr / 10
    _train_on_library(train_tcae, config, library=library, data_dir=chosen, out=out or chosen / "models" / "tcae",
                      weights_name="tcae.pt", backgrounds=backgrounds, separator=separator, jobs=jobs, resume=resume,
                      as_json=as_json)  # fmt: skip


@train.command("separator", context_settings=CONTEXT)
@library_argument
@click.option("--steps", type=click.IntRange(min=1), default=1200, show_default=True, help="Optimiser steps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Crops per step.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the crops, remixes and initial weights.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for checkpoint.pt, separator.pt, train.json and loss.png. Default: DATA_DIR/models/separator.")
@click.option("--resume", is_flag=True, help="Go on from OUT/checkpoint.pt (its own settings; --steps may extend it).")
@json_flag
@data_dir_option
@click.pass_context
def train_separator_command(
    ctx: click.Context, library: Path, steps: int, batch_size: int, seed: int, out: Path | None, resume: bool,
    as_json: bool, data_dir: Path | None,
) -> None:
    """Train the mask separator on LIBRARY's mixes and isolated vocals (labels.csv vocal_path)."""
    from nextvox.training import SeparatorTrainConfig, load_stems, train_separator

    out = out or _data_dir(ctx, library, data_dir) / "models" / "separator"
    config = SeparatorTrainConfig(steps=steps, batch_size=batch_size, seed=seed)
    with _progress() as progress:
        task = progress.add_task("reading mixes and vocals", total=None)
        stems = load_stems(library)
        progress.update(task, description="training", completed=0, total=steps)
        result = train_separator(
            config, stems, out_dir=out, resume=resume, data_note=f"{library} ({len(stems)} songs)",
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

    chosen = _data_dir(ctx, library, data_dir)
    with _progress() as progress:
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


@app.command(context_settings=CONTEXT)
@library_argument
@click.option("--by", type=click.Choice(["gender", "singer", "genre"]), required=True, help="What the colours show.")
@click.option("--embedding", type=click.Choice(["timbre", "melody"]), default="timbre", show_default=True,
              help="Which vectors to map.")
@click.option("--method", type=click.Choice(["umap", "tsne", "pca"]), default="umap", show_default=True,
              help="2-D projection (UMAP and t-SNE axes have no units).")
@click.option("--labels", type=click.Path(path_type=Path),
              help="Labels CSV (path and gender/singer/genre columns): draw only its tracks, grouped by it. "
              "Default: the predicted gender, the artist and genre tags.")
@click.option("--singers", "max_singers", type=click.IntRange(min=1), default=8, show_default=True,
              help="With --by singer: at most this many singers, of different genres where possible (the seed's picture: 4).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the projection.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="map.png (an image) or map.html (interactive: hover a point for its track, click to play it).")
@data_dir_option
@click.pass_context
def plot(
    ctx: click.Context, library: Path, by: str, embedding: str, method: str, labels: Path | None, max_singers: int,
    seed: int, out: Path, data_dir: Path | None,
) -> None:
    """Draw the library's tracks on a 2-D map of their voices, coloured by gender, singer or genre."""
    from nextvox.catalogue import Catalogue, resolve_library
    from nextvox.labels import read_track_labels
    from nextvox.plots import embedding_map, map_format, write_map

    map_format(out)  # a wrong extension is one line now, not after the projection
    root = resolve_library(library)
    columns = read_track_labels(labels, library=root, required=(by,)) if labels is not None else None
    started = time.perf_counter()
    with Catalogue(_data_dir(ctx, library, data_dir), library=root, create=False) as catalogue:
        emap = embedding_map(catalogue, by=by, embedding=embedding, method=method, labels=columns,
                             max_singers=max_singers, seed=seed, progress=lambda step: stderr.print(f"plot: {step}", markup=False))  # fmt: skip
    stderr.print(f"plot: drawing {len(emap.paths)} points", markup=False)
    write_map(emap, out, library=root)
    stderr.print(f"{emap.title}" + (f" — {emap.note}" if emap.note else "") + f": {out} ({time.perf_counter() - started:.1f} s)")


# ---- entry point -----------------------------------------------------------------------------


def _fail(message: str, code: int) -> int:
    stderr.print(f"nextvox: error: {' '.join(message.split())}", markup=False, highlight=False, soft_wrap=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 usage error, 1 any other failure)."""
    try:
        # SIGTERM (kill, a service manager) stops a command as Ctrl-C does: what is done is saved.
        with sigterm_as_interrupt():
            result = app.main(args=argv, prog_name="nextvox", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        print(error.ctx.get_help() if error.ctx else "usage: nextvox COMMAND ...", file=sys.stderr)
        return 2
    except click.UsageError as error:
        return _fail(error.format_message(), 2)
    except (KeyboardInterrupt, click.exceptions.Abort):
        return _fail("interrupted", 1)
    except NextvoxError as error:
        return _fail(str(error), 1)
    except BrokenPipeError:
        # The reader of our output went away (`nextvox status | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        return _fail(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "), 1)
    except sqlite3.DatabaseError as error:
        # A damaged page is found only when a query reads it, long after the catalogue opened.
        return _fail(f"the catalogue is damaged ({error}): move catalogue.sqlite out of the data directory and run "
                     "`nextvox analyze` again (cached spectrograms make that quick)", 1)
    except Exception as error:  # a bug: still one line, and the way to report it
        return _fail(f"internal error ({type(error).__name__}: {error}); please report it with the command you ran", 1)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
