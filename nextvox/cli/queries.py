"""The queries: ``recommend`` (the next songs), ``radio`` (a playlist that follows a voice) and
``path`` (a playlist from one voice to another), and how their results are printed or written."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import click
from rich.table import Table

from nextvox.cli.common import (
    CONTEXT, FiniteFloatRange, app, chosen_data_dir, data_dir_option, decoder_notes_to_log, json_flag, library_argument,
    option_group, stderr, stdout,
)  # fmt: skip
from nextvox.cli.filters import FilterChoice, filter_options
from nextvox.cli.players import push_to_server


@dataclass(frozen=True)
class PlaylistTarget:
    """Where a playlist goes (``--out``, ``--to-server``) and where its paths point (``--relative``,
    ``--path-prefix``), as given on the command line."""

    out: Path | None
    to_server: str | None
    relative: bool
    path_prefix: str | None

    def check(self) -> None:
        """A usage error now, before any work, when ``--out`` names no playlist format."""
        from nextvox.playlists import PLAYLIST_FORMATS

        if self.out is not None and self.out.suffix.lower().lstrip(".") not in PLAYLIST_FORMATS:
            raise click.UsageError(f"--out must end in .m3u8 or .xspf: {self.out}")

    def deliver(self, songs, *, title: str, root: Path, data_dir: Path) -> dict:
        """Write the playlist to ``--out`` and push it to the server, as asked; the ``--json`` keys
        that describe it: out, tracks and, when pushed, server_playlist."""
        if self.out is not None:
            self._write(songs, root=root, title=title)
        pushed = push_to_server(self.to_server, [r.path for r in songs], root=root, data_dir=data_dir)
        return {"out": str(self.out) if self.out else None, "tracks": [r.__dict__ for r in songs],
                **({"server_playlist": pushed} if pushed else {})}  # fmt: skip

    def show(self, songs) -> None:
        """Where the playlist went, or (without ``--out``) the playlist itself."""
        if self.out is not None:
            stderr.print(f"{len(songs)} songs written to {self.out}")
        else:
            _print_tracks(songs)

    def _write(self, songs, *, root: Path, title: str) -> None:
        from nextvox.playlists import playlist_entries, write_playlist

        if self.relative and self.path_prefix:
            raise click.UsageError("--relative and --path-prefix exclude each other")
        relative_to = self.out.expanduser().absolute().parent if self.relative else None
        entries = playlist_entries(songs, library=root, relative_to=relative_to, prefix=self.path_prefix)
        write_playlist(entries, self.out, title=title)


# The options of radio and path: the command gets them as ``playlist``.
playlist_options = option_group("playlist", PlaylistTarget, [
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
])  # fmt: skip


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
@filter_options
@click.option("--per-artist", type=click.IntRange(min=0), default=3, show_default=True,
              help="At most this many results per artist (0: no cap).")
@click.option("--mmr", "mmr_lambda", type=FiniteFloatRange(0.0, 1.0), default=1.0, show_default=True,
              help="Maximal marginal relevance lambda: 1 ranks by score alone, lower values vary the voices.")
@json_flag
@data_dir_option
@click.pass_context
def recommend(
    ctx: click.Context, library: Path, query: tuple[Path, ...], k: int, melody_weight: float | None,
    timbre_weight: float | None, weights: str | None, filter_choice: FilterChoice, per_artist: int, mmr_lambda: float,
    as_json: bool, data_dir: Path | None,
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
    with Catalogue(chosen_data_dir(ctx, library, data_dir), library=root, create=False) as catalogue:
        decoder_notes_to_log(catalogue.data_dir)
        queries = [resolve_query(catalogue, q, weight=w) for q, w in zip(query, history_weights)]
        results = recommend_tracks(
            catalogue, queries, k=k, w_timbre=w_timbre, w_melody=w_melody,
            filters=filter_choice.filters(root),
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
@playlist_options
@filter_options
@json_flag
@data_dir_option
@click.pass_context
def radio(
    ctx: click.Context, library: Path, seed: tuple[Path, ...], n: int, follow: float, playlist: PlaylistTarget,
    filter_choice: FilterChoice, as_json: bool, data_dir: Path | None,
) -> None:
    """A radio that follows a voice: an ordered playlist, never the same artist twice in a row.

    SEED is a track of the library (its path, or words of its artist and title), or any audio file.
    """
    from nextvox.catalogue import Catalogue, resolve_library
    from nextvox.playlists import radio as make_radio
    from nextvox.recommend import Recommender, resolve_query

    playlist.check()
    root = resolve_library(library)
    chosen = chosen_data_dir(ctx, library, data_dir)
    with Catalogue(chosen, library=root, create=False) as catalogue:
        decoder_notes_to_log(catalogue.data_dir)
        seeds = [resolve_query(catalogue, s) for s in seed]
        songs = make_radio(Recommender(catalogue), seeds, n=n, follow=follow, filters=filter_choice.filters(root))
    labels = [s.label for s in seeds]
    delivered = playlist.deliver(songs, title=f"nextvox radio: {', '.join(labels)}", root=root, data_dir=chosen)
    if as_json:
        print(json.dumps({"seed": labels, **delivered}))
        return
    playlist.show(songs)


# ---- path ------------------------------------------------------------------------------------


@app.command(context_settings=CONTEXT)
@library_argument
@click.argument("start", metavar="FROM", type=click.Path(path_type=Path))
@click.argument("end", metavar="TO", type=click.Path(path_type=Path))
@click.option("-n", "--n", "n", type=click.IntRange(min=2), default=20, show_default=True,
              help="Songs in the path, FROM and TO included.")
@click.option("--follow", type=FiniteFloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="0 keeps each song nearest its point on the way; 1 lets the song before decide.")
@playlist_options
@filter_options
@json_flag
@data_dir_option
@click.pass_context
def path(
    ctx: click.Context, library: Path, start: Path, end: Path, n: int, follow: float, playlist: PlaylistTarget,
    filter_choice: FilterChoice, as_json: bool, data_dir: Path | None,
) -> None:
    """A voice path: a playlist from FROM to TO, each voice close to the one before (library tracks)."""
    from nextvox.catalogue import Catalogue, resolve_library
    from nextvox.recommend import Recommender, resolve_query
    from nextvox.voicepath import voice_path

    playlist.check()
    root = resolve_library(library)
    chosen = chosen_data_dir(ctx, library, data_dir)
    with Catalogue(chosen, library=root, create=False) as catalogue:
        decoder_notes_to_log(catalogue.data_dir)
        ends = [resolve_query(catalogue, track) for track in (start, end)]  # an outside file: the library's settings
        songs = voice_path(Recommender(catalogue), ends[0], ends[1], n=n, follow=follow,
                           filters=filter_choice.filters(root))
    delivered = playlist.deliver(songs, title=f"nextvox path: {ends[0].label} to {ends[1].label}", root=root,
                                 data_dir=chosen)
    if as_json:
        print(json.dumps({"from": ends[0].label, "to": ends[1].label, **delivered}))
        return
    if len(songs) < n:
        stderr.print(f"only {len(songs)} songs: the library (after the filters) has no more voices for this path")
    playlist.show(songs)
