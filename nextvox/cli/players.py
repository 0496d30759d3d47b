"""The players: ``subsonic map|serve`` (a Subsonic / OpenSubsonic server) and ``mpd``, and the
push of a playlist to the Subsonic server that ``radio --to-server`` and ``path --to-server`` use."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from nextvox.cli.common import CONTEXT, app, chosen_data_dir, data_dir_option, json_flag, library_argument, stderr, stdout
from nextvox.cli.filters import FilterChoice, filter_options

# ---- players: Subsonic -----------------------------------------------------------------------


def _subsonic_map(root: Path, data_dir: Path, config):
    """The server's songs matched to the library's analysed tracks (needs the ``subsonic`` extra)."""
    from nextvox.catalogue import Catalogue
    from nextvox.integrations.subsonic import SubsonicClient, map_songs, server_songs

    with SubsonicClient(config) as client:
        songs = server_songs(client)
    with Catalogue(data_dir, library=root, create=False) as catalogue:
        return map_songs(songs, catalogue.tracks())


def push_to_server(name: str | None, paths: list[str], *, root: Path, data_dir: Path) -> dict | None:
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
    counts = _subsonic_map(resolve_library(library), chosen_data_dir(ctx, library, data_dir), config).counts
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
    application = create_proxy_app(root, chosen_data_dir(ctx, library, data_dir), config)
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
@filter_options
@data_dir_option
@click.pass_context
def mpd(
    ctx: click.Context, library: Path, host: str, port: int, keep: int, path_to: str | None, n: int, once: bool,
    filter_choice: FilterChoice, data_dir: Path | None,
) -> None:
    """Keep MPD's queue topped up with voices like the song playing; queue a voice path on request.

    From any MPD client: `mpc sendmessage nextvox "path ARTIST/SONG.flac"` queues a path to that song.
    """
    from nextvox.api.service import LibraryService
    from nextvox.catalogue import resolve_library
    from nextvox.integrations.mpd import connect, queue_path, top_up, watch

    root = resolve_library(library)
    filters = filter_choice.filters(root)
    service = LibraryService(root, chosen_data_dir(ctx, library, data_dir))
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


