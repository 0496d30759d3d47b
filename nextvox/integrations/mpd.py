"""MPD (Music Player Daemon): keep the queue topped up with voices like the song playing, and
queue a voice path on request.

``nextvox mpd LIBRARY`` looks at MPD once a second. Whenever fewer than ``keep``
songs are queued after the one playing, it adds voice-alike songs (a radio seeded by the song
playing, or by the last one queued when nothing plays; never a song already queued, never the
artist just queued). MPD names songs by their path in its ``music_directory``: point that at
the library, or at a folder holding it or held by it.

A path is asked for with MPD's client-to-client messages, from any client:
``mpc sendmessage nextvox "path ARTIST/SONG.flac"`` replaces the songs queued after the one
playing with a voice path from it to that song (``nextvox mpd LIBRARY --path-to SONG`` does
the same at start).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from nextvox.errors import NextvoxError
from nextvox.integrations import require
from nextvox.integrations.library_paths import CataloguePaths, matching_library_path
from nextvox.playlists import radio
from nextvox.recommend import Filters, Recommender
from nextvox.voicepath import voice_path

__all__ = ["CHANNEL", "DEFAULT_KEEP", "DEFAULT_PATH_SONGS", "QueueState", "queue_state", "top_up", "queue_path",
           "handle_message", "connect", "watch"]

CHANNEL = "nextvox"  # the MPD message channel nextvox listens on
DEFAULT_KEEP = 5  # songs kept queued after the one playing
DEFAULT_PATH_SONGS = 10
POLL_S = 1.0  # seconds between two looks at MPD (its status and the messages sent to nextvox)


@dataclass(frozen=True)
class QueueState:
    """MPD's queue as nextvox sees it.

    Attributes
    ----------
    files : list of str
        The queue's files, MPD's paths, in order.
    current : int or None
        Position of the song playing (or paused), None when stopped.
    """

    files: list[str]
    current: int | None

    @property
    def upcoming(self) -> int:
        """Songs queued after the one playing (after the whole queue's start when nothing plays)."""
        return len(self.files) - (self.current + 1 if self.current is not None else 0)

    @property
    def seed_file(self) -> str | None:
        """The song the radio follows: the one playing, else the last one queued."""
        if self.current is not None:
            return self.files[self.current]
        return self.files[-1] if self.files else None


def queue_state(client) -> QueueState:
    """The queue of an MPD connection (python-mpd2 ``MPDClient``)."""
    status = client.status()
    files = [song["file"] for song in client.playlistinfo()]
    current = int(status["song"]) if status.get("state") in ("play", "pause") and "song" in status else None
    return QueueState(files, current)


def _player_paths(recommender: Recommender, files: list[str]) -> dict[str, str]:
    """MPD files -> library paths, for the files that are library tracks (each looked up, none loaded)."""
    found = {}
    library_paths = CataloguePaths(recommender)
    for file in files:
        path = matching_library_path(file, library_paths)
        if path is not None:
            found[file] = path
    return found


def _mpd_file(library_path: str, known: dict[str, str]) -> str:
    """The MPD path of a library track, with the same folder offset as the queue's songs (``known``: MPD file -> library path)."""
    for file, path in known.items():
        if file.endswith(path):  # MPD's folder holds the library (or is it): MPD's paths carry a prefix
            return file[: len(file) - len(path)] + library_path
        prefix = path[: len(path) - len(file)]  # the library holds MPD's folder: MPD's paths lack a prefix
        if path.endswith(file) and library_path.startswith(prefix):
            return library_path[len(prefix):]
    return library_path


def top_up(client, recommender: Recommender, *, keep: int = DEFAULT_KEEP, filters: Filters = Filters()) -> list[str]:
    """Add voice-alike songs until ``keep`` follow the one playing: the MPD files added, in order.

    Nothing is added when the seed song is not a track of the library (or nothing is queued).
    """
    status = client.status()
    length, playing = int(status.get("playlistlength", 0)), status.get("state") in ("play", "pause") and "song" in status
    if length - (int(status["song"]) + 1 if playing else 0) >= keep:
        return []  # enough queued: the queue itself is not even read
    state = queue_state(client)
    needed = keep - state.upcoming
    if needed <= 0 or state.seed_file is None:
        return []
    known = _player_paths(recommender, state.files)
    seed = known.get(state.seed_file)
    if seed is None or recommender.track(seed).status != "analyzed":
        return []
    query = recommender.track_query(seed)
    last = known.get(state.files[-1])
    blocked = filters.exclude_artists | ({query.artist} if filters.exclude_query_artists and query.artist else set())
    # The radio never follows its seed with the seed's artist: let the last song queued stand in as that artist.
    query = replace(query, artist=recommender.track(last).artist if last else query.artist)
    songs = radio(recommender, [query], n=needed,
                  filters=replace(filters, exclude_query_artists=False, exclude_artists=frozenset(blocked),
                                  heard=filters.heard | frozenset(known.values())))
    added = [_mpd_file(song.path, known) for song in songs]
    for file in added:
        client.add(file)
    return added


def queue_path(client, recommender: Recommender, end: str, *, n: int = DEFAULT_PATH_SONGS,
               filters: Filters = Filters()) -> list[str]:
    """Replace what is queued after the song playing with a voice path from it to ``end``: the MPD files queued.

    ``end`` is a library path or an MPD path. Raises NextvoxError when nothing plays, or
    when the song playing or ``end`` is not an analysed track of the library.
    """
    state = queue_state(client)
    if state.current is None:
        raise NextvoxError("nothing is playing in MPD: a path starts at the song playing")
    known = _player_paths(recommender, state.files)
    start = known.get(state.files[state.current])
    if start is None:
        raise NextvoxError(f"the song playing ({state.files[state.current]}) is not a track of the library")
    target = matching_library_path(end, CataloguePaths(recommender))
    if target is None:
        raise NextvoxError(f"no such track in the library: {end}")
    songs = voice_path(recommender, recommender.track_query(start), recommender.track_query(target), n=n, filters=filters)
    if state.current + 1 < len(state.files):
        client.delete((state.current + 1,))  # an open range: every song after the one playing
    files = [_mpd_file(song.path, known) for song in songs[1:]]
    for file in files:
        client.add(file)
    return files


def handle_message(client, recommender: Recommender, message: str, *, n: int = DEFAULT_PATH_SONGS,
                   filters: Filters = Filters()) -> str:
    """Carry out one message sent on :data:`CHANNEL`; returns what was done, in words.

    ``path SONG`` queues a voice path to SONG (see :func:`queue_path`); ``radio`` tops the
    queue up at once.
    """
    command, _, argument = message.strip().partition(" ")
    if command == "path" and argument.strip():
        files = queue_path(client, recommender, argument.strip(), n=n, filters=filters)
        return f"queued a voice path of {len(files)} songs to {argument.strip()}"
    if command == "radio":
        return f"queued {len(top_up(client, recommender, filters=filters))} voice-alike songs"
    raise NextvoxError(f"unknown message {message!r}: send 'path SONG' or 'radio'")


def connect(host: str, port: int, *, password: str | None = None, timeout_s: float = 10.0):
    """A python-mpd2 connection to MPD, subscribed to :data:`CHANNEL`."""
    require("mpd", extra="mpd")
    from mpd import MPDClient
    from mpd.base import ConnectionError as MPDConnectionError
    from mpd.base import MPDError

    client = MPDClient()
    client.timeout = timeout_s
    try:
        client.connect(host, port)
        if password:
            client.password(password)
        client.subscribe(CHANNEL)
    except (OSError, MPDConnectionError) as error:
        raise NextvoxError(f"cannot connect to MPD at {host}:{port}: {error}") from None
    except MPDError as error:
        raise NextvoxError(f"MPD at {host}:{port} refused nextvox: {error}") from None
    return client


def watch(client, recommender: Callable[[], Recommender], *, keep: int = DEFAULT_KEEP, n: int = DEFAULT_PATH_SONGS,
          filters: Filters = Filters(), should_stop: Callable[[], bool] = lambda: False,
          report: Callable[[str], None] = lambda line: None, poll_s: float = POLL_S) -> None:
    """Every ``poll_s`` seconds until ``should_stop()``: carry out the messages sent on :data:`CHANNEL`, then top the queue up.

    ``recommender`` is called for the recommender to use each time (a server keeps it in step
    with the catalogue); ``report`` receives one line for each thing done. (MPD's ``idle``
    would wake sooner, but python-mpd2's blocking client cannot leave it to look at the stop
    condition; one ``status`` a second costs MPD nothing.)
    """
    from mpd.base import CommandError

    while True:
        for message in client.readmessages():
            try:
                report(handle_message(client, recommender(), message["message"], n=n, filters=filters))
            except (NextvoxError, CommandError) as error:
                report(f"message {message['message']!r}: {error}")
        added = top_up(client, recommender(), keep=keep, filters=filters)
        if added:
            report(f"queued {len(added)} voice-alike songs: {', '.join(added)}")
        waited = 0.0
        while waited < poll_s:
            if should_stop():
                return
            time.sleep(min(0.1, poll_s))
            waited += 0.1
