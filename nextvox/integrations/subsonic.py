"""A Subsonic / OpenSubsonic server seen from nextvox: its settings, its songs mapped to the
library's tracks, and playlists pushed to it.

Settings come from the environment (``NEXTVOX_SUBSONIC_URL``, ``NEXTVOX_SUBSONIC_USER``,
``NEXTVOX_SUBSONIC_PASSWORD``, or ``NEXTVOX_SUBSONIC_TOKEN`` with ``NEXTVOX_SUBSONIC_SALT``)
or from a TOML file (``NEXTVOX_SUBSONIC_CONFIG``, else ``~/.config/nextvox/subsonic.toml``)
with a ``[subsonic]`` table of ``url``, ``user`` and ``password`` (or ``token`` and
``salt``); the environment wins. Credentials are never printed: not in messages, not in
``repr``, not in errors (which name the server by its address only).

A server song is the library track whose path relative to the library equals the song's
``path`` relative to the server's music folder (or one ends with the other, when one folder
holds the other); failing that, the track with the same artist and title (without case)
and a duration within :data:`DURATION_TOLERANCE_S`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import tomllib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nextvox import __version__
from nextvox.catalogue import Track
from nextvox.errors import NextvoxError
from nextvox.integrations import require
from nextvox.integrations.library_paths import PathSet, matching_library_path

__all__ = [
    "CLIENT_NAME",
    "API_VERSION",
    "DURATION_TOLERANCE_S",
    "DEFAULT_CONFIG_PATH",
    "SubsonicConfig",
    "SubsonicError",
    "load_config",
    "auth_params",
    "form_fields",
    "SubsonicClient",
    "songs_by_search",
    "songs_by_album",
    "server_songs",
    "SongMap",
    "map_songs",
    "push_playlist",
]

CLIENT_NAME = "nextvox"
API_VERSION = "1.13.0"  # token authentication; older servers are answered with the hex password instead
DURATION_TOLERANCE_S = 2.0  # servers round durations to whole seconds; taggers disagree by a second
ALBUM_PAGE = 500  # getAlbumList2's largest page
SONG_PAGE = 500  # songs per search3 page
TIMEOUT_S = 30.0
DEFAULT_CONFIG_PATH = Path("~/.config/nextvox/subsonic.toml")
ENVIRONMENT = {"url": "NEXTVOX_SUBSONIC_URL", "user": "NEXTVOX_SUBSONIC_USER", "password": "NEXTVOX_SUBSONIC_PASSWORD",
               "token": "NEXTVOX_SUBSONIC_TOKEN", "salt": "NEXTVOX_SUBSONIC_SALT"}


class SubsonicError(NextvoxError):
    """The server answered with a Subsonic error (``code`` as the API numbers them), or could not be reached."""

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SubsonicConfig:
    """Where the server is and who nextvox is there. ``repr`` shows no secret."""

    url: str
    user: str
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    salt: str | None = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")


def load_config(path: Path | None = None, *, environ: dict[str, str] | None = None) -> SubsonicConfig:
    """The server settings: the environment over the TOML file (``path``, else $NEXTVOX_SUBSONIC_CONFIG, else the default)."""
    environ = os.environ if environ is None else environ
    chosen = path or environ.get("NEXTVOX_SUBSONIC_CONFIG")
    file = Path(chosen or DEFAULT_CONFIG_PATH).expanduser()
    values: dict[str, str] = {}
    if file.is_file():
        try:
            table = tomllib.loads(file.read_text(encoding="utf-8")).get("subsonic", {})
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise NextvoxError(f"cannot read the Subsonic settings in {file}: {error}") from None
        if not isinstance(table, dict):
            raise NextvoxError(f"{file}: [subsonic] must be a table")
        values = {key: str(value) for key, value in table.items() if key in ENVIRONMENT}
    elif chosen:
        raise NextvoxError(f"no Subsonic settings file at {file}")
    values.update({key: environ[name] for key, name in ENVIRONMENT.items() if environ.get(name)})
    has_secret = bool(values.get("password") or (values.get("token") and values.get("salt")))
    missing = [key for key in ("url", "user") if not values.get(key)] + ([] if has_secret else ["password (or token and salt)"])
    if missing:
        raise NextvoxError(f"the Subsonic server's settings lack {', '.join(missing)}: set {ENVIRONMENT['url']}, "
                           f"{ENVIRONMENT['user']} and {ENVIRONMENT['password']}, or write them in {file} (docs/players.md)")
    if not values["url"].startswith(("http://", "https://")):
        raise NextvoxError("the Subsonic server's url must start with http:// or https://")
    return SubsonicConfig(**values)


def auth_params(config: SubsonicConfig, *, legacy: bool = False) -> dict[str, str]:
    """The query parameters that authenticate ``config``'s user: a salted token, or (``legacy``) the hex-encoded password.

    >>> auth_params(SubsonicConfig("http://h", "ann", password="pw"), legacy=True)["p"]
    'enc:7077'
    """
    base = {"u": config.user, "v": API_VERSION, "c": CLIENT_NAME, "f": "json"}
    if legacy and config.password:
        return {**base, "p": "enc:" + config.password.encode("utf-8").hex()}
    if config.password:
        salt = secrets.token_hex(8)
        return {**base, "t": hashlib.md5((config.password + salt).encode("utf-8")).hexdigest(), "s": salt}
    return {**base, "t": config.token or "", "s": config.salt or ""}


def form_fields(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Form fields from (name, value) pairs, a name that repeats keeping every value in order (``songId``...).

    >>> form_fields([("id", "1"), ("songId", "a"), ("songId", "b")])
    {'id': ['1'], 'songId': ['a', 'b']}
    """
    fields: dict[str, list[str]] = {}
    for name, value in pairs:
        fields.setdefault(name, []).append(value)
    return fields


def _subsonic_response(response, where: str) -> dict:
    """The ``subsonic-response`` object of an HTTP answer; SubsonicError when it failed."""
    try:
        document = response.json()["subsonic-response"]
    except (ValueError, KeyError, TypeError):
        raise SubsonicError(f"{where}: not a Subsonic answer (HTTP {response.status_code})") from None
    if document.get("status") != "ok":
        error = document.get("error") or {}
        raise SubsonicError(f"{where}: {error.get('message', 'failed')} (Subsonic error {error.get('code')})", error.get("code"))
    return document


class SubsonicClient:
    """Calls to one server as ``config``'s user (JSON answers), over one kept-alive HTTP connection pool.

    Token authentication first; a server that refuses it (Subsonic before API 1.13, such as
    supysonic) is asked again with the hex-encoded password, which is then kept for later calls.
    """

    def __init__(self, config: SubsonicConfig, *, timeout_s: float = TIMEOUT_S):
        httpx = require("httpx", extra="subsonic")
        self.config = config
        self._http = httpx.Client(timeout=timeout_s, headers={"User-Agent": f"nextvox/{__version__}"})
        self._legacy: bool | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SubsonicClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, endpoint: str, params: Iterable[tuple[str, str]] = ()) -> dict:
        """``GET /rest/<endpoint>`` with ``params`` (pairs, so a key may repeat): the ``subsonic-response`` object."""
        import httpx

        where = f"the Subsonic server at {self.config.base_url}"
        modes = [self._legacy] if self._legacy is not None else [False, True] if self.config.password else [False]
        for legacy in modes:
            try:
                response = self._http.post(f"{self.config.base_url}/rest/{endpoint}",
                                           data=form_fields([*auth_params(self.config, legacy=legacy).items(), *params]))
            except httpx.HTTPError as error:
                raise SubsonicError(f"cannot reach {where}: {type(error).__name__}") from None
            try:
                document = _subsonic_response(response, f"{where} refused {endpoint}")
            except SubsonicError:
                if legacy is False and len(modes) > 1:
                    continue  # maybe token authentication is what it refused: try the password
                raise
            self._legacy = legacy
            return document
        raise AssertionError("unreachable")


def songs_by_search(client: SubsonicClient) -> list[dict]:
    """Every song, paged through ``search3`` with an empty query (OpenSubsonic asks servers to allow it for syncing)."""
    songs: dict[str, dict] = {}
    offset = 0
    while True:
        page = client.call("search3", [("query", ""), ("artistCount", "0"), ("albumCount", "0"),
                                       ("songCount", str(SONG_PAGE)), ("songOffset", str(offset))])
        found = (page.get("searchResult3") or {}).get("song") or []
        for song in found:
            songs.setdefault(str(song["id"]), song)
        if len(found) < SONG_PAGE:
            return list(songs.values())
        offset += SONG_PAGE


def songs_by_album(client: SubsonicClient) -> list[dict]:
    """Every song, album by album (``getAlbumList2`` then ``getAlbum``): slower, but any Subsonic server answers it."""
    songs: dict[str, dict] = {}
    offset = 0
    while True:
        page = client.call("getAlbumList2", [("type", "alphabeticalByName"), ("size", str(ALBUM_PAGE)), ("offset", str(offset))])
        albums = (page.get("albumList2") or {}).get("album") or []
        for album in albums:
            for song in (client.call("getAlbum", [("id", str(album["id"]))]).get("album") or {}).get("song") or []:
                songs.setdefault(str(song["id"]), song)
        if len(albums) < ALBUM_PAGE:
            return list(songs.values())
        offset += ALBUM_PAGE


def server_songs(client: SubsonicClient) -> list[dict]:
    """Every song on the server as its ``Child`` object (``id``, ``path``, ``artist``, ``title``, ``duration``, ...).

    By ``search3`` pages; a server that finds nothing for an empty query is walked album by album.
    """
    try:
        songs = songs_by_search(client)
    except SubsonicError:
        songs = []
    return songs or songs_by_album(client)


def _fold(text: str | None) -> str:
    return " ".join(text.casefold().split()) if text else ""


@dataclass
class SongMap:
    """Server song ids and library track paths, both ways, with the counts of how they matched.

    ``children`` keeps each matched song's ``Child`` as the server listed it.
    """

    path_of: dict[str, str]  # server song id -> library path
    id_of: dict[str, str]  # library path -> one server song id
    children: dict[str, dict]
    counts: dict[str, int]


def map_songs(songs: list[dict], tracks: Iterable[Track]) -> SongMap:
    """Match server songs (``Child`` objects) to the library's analysed tracks: by path first, then by tags and duration."""
    tracks = [t for t in tracks if t.status == "analyzed"]
    library_paths = PathSet(t.path for t in tracks)
    by_tags: dict[tuple[str, str], list[Track]] = {}
    for track in tracks:
        if track.artist and track.title:
            by_tags.setdefault((_fold(track.artist), _fold(track.title)), []).append(track)
    path_of: dict[str, str] = {}
    how: Counter[str] = Counter()
    for song in songs:
        song_id = str(song["id"])
        found = matching_library_path(str(song.get("path") or ""), library_paths)
        if found is not None:
            path_of[song_id] = found
            how["by_path"] += 1
            continue
        duration = song.get("duration")
        near = [t for t in by_tags.get((_fold(song.get("artist")), _fold(song.get("title"))), [])
                if duration is None or t.duration_s is None or abs(t.duration_s - float(duration)) <= DURATION_TOLERANCE_S]
        if near:
            path_of[song_id] = near[0].path
            how["by_tags"] += 1
        else:
            how["unmatched_server_songs"] += 1
    id_of: dict[str, str] = {}
    for song_id, path in path_of.items():
        id_of.setdefault(path, song_id)
    counts = {"server_songs": len(songs), "matched": len(path_of), "by_path": how["by_path"], "by_tags": how["by_tags"],
              "unmatched_server_songs": how["unmatched_server_songs"], "library_tracks": len(tracks),
              "library_tracks_not_on_server": len(tracks) - len(id_of)}
    children = {str(s["id"]): s for s in songs if str(s["id"]) in path_of}
    return SongMap(path_of, id_of, children, counts)


def push_playlist(client: SubsonicClient, name: str, song_ids: list[str]) -> tuple[str, bool]:
    """Make the server's playlist ``name`` (of this user) hold ``song_ids`` in order: (its id, whether it was created).

    An existing playlist of that name is updated in place (same id, songs replaced:
    ``createPlaylist`` with its ``playlistId``), so players that show it keep it.
    """
    if not name.strip():
        raise NextvoxError("the playlist needs a name")
    listed = (client.call("getPlaylists").get("playlists") or {}).get("playlist") or []
    mine = [p for p in listed if p.get("name") == name and p.get("owner") in (None, client.config.user)]
    songs = [("songId", song_id) for song_id in song_ids]
    if mine:
        playlist_id = str(mine[0]["id"])
        client.call("createPlaylist", [("playlistId", playlist_id), *songs])
        return playlist_id, False
    created = client.call("createPlaylist", [("name", name), *songs])
    if isinstance(created.get("playlist"), dict) and created["playlist"].get("id"):
        return str(created["playlist"]["id"]), True
    # Servers before API 1.14 answer createPlaylist with nothing: look the new playlist up.
    listed = (client.call("getPlaylists").get("playlists") or {}).get("playlist") or []
    found = [p for p in listed if p.get("name") == name and p.get("owner") in (None, client.config.user)]
    if not found:
        raise SubsonicError(f"the Subsonic server at {client.config.base_url} did not keep the playlist {name!r}")
    return str(found[-1]["id"]), True
