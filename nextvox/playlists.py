"""Radio and playlists: an ordered run of songs that follows a voice, and its M3U8 / XSPF export.

A radio starts at the seed and, song after song, takes the unplayed candidate whose voice is
nearest a blend of the seed's and the last song's (so it follows the voice without
drifting away), never the artist just played. Candidates are the recommender's own, so the
filters (heard tracks, genre, gender, artists) and the near-duplicate rule hold here too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote
from xml.etree import ElementTree

import numpy as np

from nextvox.errors import NextvoxError
from nextvox.index import normalise_rows
from nextvox.recommend import Diversity, Filters, Query, Recommendation, Recommender, history_vector
from nextvox.files import write_file

__all__ = [
    "RADIO_POOL_FACTOR",
    "PLAYLIST_FORMATS",
    "PlaylistEntry",
    "radio",
    "playlist_entries",
    "track_location",
    "to_m3u8",
    "to_xspf",
    "render_playlist",
    "write_playlist",
]

RADIO_POOL_FACTOR = 4  # candidates drawn per song wanted: room to avoid back-to-back artists
DEFAULT_FOLLOW = 0.5  # weight of the last song's voice against the seed's in choosing the next
PLAYLIST_FORMATS = ("m3u8", "xspf")


def _fold(text: str | None) -> str | None:
    return text.casefold().strip() if text else None


def radio(
    recommender: Recommender,
    seeds: list[Query],
    *,
    n: int = 50,
    filters: Filters = Filters(),
    follow: float = DEFAULT_FOLLOW,
) -> list[Recommendation]:
    """An ordered playlist of ``n`` songs (fewer when the library runs out) that follows the seeds' voice.

    Parameters
    ----------
    recommender : Recommender
    seeds : list of Query
        One track or file, or a history; library seeds are not repeated in the radio.
    n : int
        Songs wanted, at least 1.
    filters : Filters
        As for recommendations.
    follow : float
        In [0, 1]: 0 keeps every choice near the seed, 1 lets each song lead to the next.
    """
    if n < 1:
        raise NextvoxError("a radio needs at least one song (n >= 1)")
    if not 0.0 <= follow <= 1.0:
        raise NextvoxError("follow must be between 0 and 1")
    pool = recommender.recommend(
        seeds, k=min(RADIO_POOL_FACTOR * n, max(1, len(recommender.timbre))),
        filters=filters, diversity=Diversity(mmr_lambda=1.0, per_artist=None),
    )
    seed_vector = history_vector(seeds, "timbre")  # (D,)
    vectors = np.stack([recommender.timbre_vector(recommender.track(r.path).content_hash) for r in pool]) \
        if pool else np.zeros((0, seed_vector.size), dtype=np.float32)  # (P, D)
    played: list[int] = []
    free = np.ones(len(pool), dtype=bool)
    last_vector, last_artist = seed_vector, _fold(seeds[-1].artist)
    while len(played) < n:
        target = normalise_rows((1 - follow) * seed_vector + follow * last_vector)
        closeness = np.where(free, vectors @ target, -np.inf)  # (P,)
        if last_artist is not None:
            closeness[[i for i, r in enumerate(pool) if _fold(r.artist) == last_artist]] = -np.inf
        best = int(np.argmax(closeness)) if len(pool) else 0
        if not len(pool) or not np.isfinite(closeness[best]):
            break  # only the artist just played is left
        played.append(best)
        free[best] = False
        last_vector, last_artist = vectors[best], _fold(pool[best].artist)
    return [pool[i] for i in played]


@dataclass(frozen=True)
class PlaylistEntry:
    """One song of an exported playlist: where a player finds it and what to show."""

    location: str
    title: str | None
    artist: str | None
    album: str | None
    duration_s: float | None


def track_location(path: str, *, library: Path, base_url: str | None = None, relative_to: Path | None = None,
                   prefix: str | None = None) -> str:
    """Where a playlist points for the library track ``path`` (relative to the library, '/' separators).

    By default its absolute file path. ``base_url``: a URL under it (a server's audio
    endpoint). ``relative_to``: the path from that folder (the playlist's own), so that the
    playlist and the music can move together. ``prefix``: ``path`` after a folder or URL,
    for a player that sees the library elsewhere (``/mnt/music``, ``http://nas/music``).

    >>> track_location("a b/c.mp3", library=Path("/m"), relative_to=Path("/m/lists"))
    '../a b/c.mp3'
    >>> track_location("a b/c.mp3", library=Path("/m"), prefix="http://nas/music/")
    'http://nas/music/a%20b/c.mp3'
    >>> track_location("a b/c.mp3", library=Path("/m"), prefix="/mnt/music")
    '/mnt/music/a b/c.mp3'
    """
    if base_url is not None:
        return f"{base_url.rstrip('/')}/{quote(path)}"
    if prefix is not None:
        return f"{prefix.rstrip('/')}/{quote(path) if '://' in prefix else path}"
    absolute = Path(library) / path
    if relative_to is not None:
        return Path(os.path.relpath(absolute, Path(relative_to).resolve())).as_posix()
    return str(absolute)


def playlist_entries(recommendations: list[Recommendation], *, library: Path, base_url: str | None = None,
                     relative_to: Path | None = None, prefix: str | None = None) -> list[PlaylistEntry]:
    """Entries for ``recommendations``, located as :func:`track_location` says."""
    return [PlaylistEntry(track_location(r.path, library=library, base_url=base_url, relative_to=relative_to, prefix=prefix),
                          r.title, r.artist, r.album, r.duration_s) for r in recommendations]


def to_m3u8(entries: list[PlaylistEntry], *, title: str) -> str:
    """Extended M3U in UTF-8: ``#EXTINF:<seconds>,<artist> - <title>`` before each location.

    >>> print(to_m3u8([PlaylistEntry("/m/a.mp3", "Song", "Ann", None, 61.5)], title="radio"), end="")
    #EXTM3U
    #PLAYLIST:radio
    #EXTINF:62,Ann - Song
    /m/a.mp3
    """
    lines = ["#EXTM3U", f"#PLAYLIST:{_one_line(title)}"]
    for entry in entries:
        seconds = -1 if entry.duration_s is None else round(entry.duration_s)
        shown = " - ".join(x for x in (entry.artist, entry.title) if x) or Path(entry.location).stem
        lines += [f"#EXTINF:{seconds},{_one_line(shown)}", entry.location]
    return "\n".join(lines) + "\n"


def to_xspf(entries: list[PlaylistEntry], *, title: str) -> str:
    """XSPF (XML Shareable Playlist Format, version 1): absolute files as ``file://`` URIs, relative paths as
    relative URIs (resolved against the playlist's own location), durations in ms."""
    namespace = "http://xspf.org/ns/0/"
    ElementTree.register_namespace("", namespace)
    playlist = ElementTree.Element(f"{{{namespace}}}playlist", version="1")
    ElementTree.SubElement(playlist, f"{{{namespace}}}title").text = _xml_text(title)
    track_list = ElementTree.SubElement(playlist, f"{{{namespace}}}trackList")
    for entry in entries:
        track = ElementTree.SubElement(track_list, f"{{{namespace}}}track")
        if "://" in entry.location:
            location = entry.location
        elif Path(entry.location).is_absolute():
            location = Path(entry.location).as_uri()
        else:
            location = quote(entry.location)
        ElementTree.SubElement(track, f"{{{namespace}}}location").text = _xml_text(location)
        for tag, value in (("title", entry.title), ("creator", entry.artist), ("album", entry.album)):
            if value and _xml_text(value):
                ElementTree.SubElement(track, f"{{{namespace}}}{tag}").text = _xml_text(value)
        if entry.duration_s is not None:
            ElementTree.SubElement(track, f"{{{namespace}}}duration").text = str(round(entry.duration_s * 1000))
    ElementTree.indent(playlist)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(playlist, encoding="unicode") + "\n"


def render_playlist(entries: list[PlaylistEntry], *, playlist_format: str, title: str) -> str:
    """The playlist as text in ``m3u8`` or ``xspf``."""
    if playlist_format not in PLAYLIST_FORMATS:
        raise NextvoxError(f"unknown playlist format {playlist_format!r}: use one of {', '.join(PLAYLIST_FORMATS)}")
    return to_m3u8(entries, title=title) if playlist_format == "m3u8" else to_xspf(entries, title=title)


def write_playlist(entries: list[PlaylistEntry], out: Path, *, title: str) -> None:
    """Write the playlist to ``out`` in the format its extension names (.m3u8 or .xspf), atomically."""
    playlist_format = Path(out).suffix.lower().lstrip(".")
    if playlist_format not in PLAYLIST_FORMATS:
        raise NextvoxError(f"the playlist file must end in .m3u8 or .xspf: {out}")
    text = render_playlist(entries, playlist_format=playlist_format, title=title)
    write_file(Path(out), lambda part: part.write_text(text, encoding="utf-8"))


# Characters XML 1.0 cannot hold at all (C0 controls but tab, newline and carriage return;
# lone surrogates; U+FFFE and U+FFFF): a tag holding one would make the file unreadable.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids."""
    return _NOT_XML.sub("", text)


def _one_line(text: str) -> str:
    return " ".join(text.split())
