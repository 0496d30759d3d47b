"""What a recommendation is asked for: a library track, words of its tags, or any audio file.

A :class:`Query` holds the vectors (and melody sequence) of one query item; a listening
history is several, each with its weight, whose centre is :func:`history_vector`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nextvox.catalogue import Catalogue, Track, catalogue_path, content_hash, track_file
from nextvox.errors import AudioError, NextvoxError
from nextvox.index import normalise_rows

if TYPE_CHECKING:  # analysis loads torch and the models: only a query by an outside file needs them
    from nextvox.analysis import AnalysisSettings

__all__ = [
    "Query",
    "query_from_file",
    "stored_sequences",
    "resolve_query",
    "track_label",
    "search_text",
    "track_by_words",
    "history_vector",
]


@dataclass(frozen=True)
class Query:
    """One query item: its vectors, and the library track it is (None for an outside file).

    ``weight`` is its share in a listening history (the history vector is the weighted mean).
    ``sequences`` holds its melody sequence (``melody``) where the TCAE made one.
    """

    label: str
    vectors: dict[str, np.ndarray]
    content_hash: str | None
    duration_s: float | None
    artist: str | None
    weight: float = 1.0
    genre: str | None = None
    sequences: dict[str, np.ndarray] = field(default_factory=dict)


def query_from_file(path: Path, *, label: str, settings: AnalysisSettings | None = None, weight: float = 1.0) -> Query:
    """A query from any audio file, analysed on the fly (the catalogue is not touched); ``settings`` default to the library's defaults.

    What native decoders print goes to the process's fd 2: a command or server that does
    not want it there calls :func:`nextvox.audio.redirect_native_stderr` once, first.
    """
    from nextvox.analysis import AnalysisSettings, analyze_track

    settings = settings or AnalysisSettings()
    try:
        analysis = analyze_track(path, content_hash=None, settings=settings, cache=None)
    except AudioError as error:
        raise NextvoxError(f"cannot use {label} as a query: {error}") from None
    vectors = {name: vector for name, (_, vector) in analysis.vectors.items()}
    sequences = {name: sequence for name, (_, sequence) in analysis.sequences.items()}
    return Query(label, vectors, content_hash(path), analysis.duration_s, None, weight, sequences=sequences)


def stored_sequences(catalogue: Catalogue, digest: str) -> dict[str, np.ndarray]:
    """The stored melody sequence of one content, as :attr:`Query.sequences` holds it (empty when none)."""
    return {"melody": sequence for _, sequence in catalogue.sequences("melody", [digest]).values()}


def resolve_query(catalogue: Catalogue, query: Path | str, *, settings: AnalysisSettings | None = None,
                  weight: float = 1.0) -> Query:
    """Find ``query`` in the catalogue, or analyse it on the fly when it is an outside file.

    An outside file is analysed with ``settings``, by default the library's own
    (:func:`nextvox.analysis.library_settings`), so that it is compared like with like.
    ``query`` is a file (absolute, relative to the working folder or to the library) or, when
    no such file exists, words of one track's artist, title or path (``"anna fruehling"``).
    """
    path = Path(query).expanduser()
    if not path.exists():
        # A path relative to the library, as `status` prints them.
        path = track_file(catalogue.library, str(query))
    if not path.is_file():
        track = track_by_words(catalogue, str(query))
        path = track_file(catalogue.library, track.path)
    path = path.resolve()
    track = _track_at(catalogue, path)
    if track is not None and track.status == "analyzed":
        return Query(track.path, catalogue.vectors_of(track.content_hash), track.content_hash, track.duration_s,
                     track.artist, weight, track.genre, stored_sequences(catalogue, track.content_hash))
    if track is not None and track.status == "failed":
        raise NextvoxError(f"the query {track.path} failed analysis: {track.error}")
    from nextvox.analysis import library_settings  # loads torch: only an outside file needs it

    return query_from_file(path, label=str(query), settings=settings or library_settings(catalogue), weight=weight)


def track_label(track: Track) -> str:
    """``artist — title`` of a track (its path where a tag is missing)."""
    return f"{track.artist} — {track.title}" if track.artist and track.title else track.path


def search_text(track: Track) -> str:
    """What a search by words looks in: path, artist, title, album and genre, case-folded."""
    return text_of_fields(track.path, track.artist, track.title, track.album, track.genre)


def text_of_fields(path: str, artist: str | None, title: str | None, album: str | None, genre: str | None) -> str:
    """:func:`search_text` of a track given by its fields (as the catalogue's scan hands them over).

    >>> text_of_fields("ann/Straße.mp3", "Ann", None, None, "Folk")
    'ann/strasse.mp3 ann folk'
    """
    return " ".join(x for x in (path, artist, title, album, genre) if x).casefold()


def track_by_words(catalogue: Catalogue, words: str, *, suggestions: int = 3) -> Track:
    """The one track whose tags and path (:func:`search_text`) hold every word of ``words``.

    Raises a NextvoxError naming the tracks when several match, and the closest titles
    ("did you mean ...?") when none does.
    """
    import difflib

    wanted = words.casefold().split()
    found = catalogue.tracks_holding(wanted, text_of=text_of_fields) if wanted else []
    if len(found) == 1:
        return found[0]
    if found:
        names = "; ".join(f"{track_label(t)} ({t.path})" for t in found[:suggestions])
        more = f" and {len(found) - suggestions} more" if len(found) > suggestions else ""
        raise NextvoxError(f"query {words!r} matches {len(found)} tracks: {names}{more}; add words or give a path")
    # Each word spelt as the nearest word of the library's tags and paths (every track read: only when none matched).
    tracks = catalogue.tracks()
    texts = [search_text(t) for t in tracks]
    vocabulary = sorted({w for text in texts for w in re.split(r"[\W_]+", text) if w})
    corrected = [(difflib.get_close_matches(w, vocabulary, n=1, cutoff=0.6) or [w])[0] for w in wanted]
    close = [t for t, text in zip(tracks, texts) if corrected != wanted and all(w in text for w in corrected)]
    hint = f"; did you mean {' or '.join(repr(track_label(t)) for t in close[:suggestions])}?" if close else \
        " (give a file, a path relative to the library, or words of an artist or title)"
    raise NextvoxError(f"query not found: {words}{hint}")


def _track_at(catalogue: Catalogue, path: Path) -> Track | None:
    try:
        relative = path.relative_to(catalogue.library).as_posix()
    except ValueError:
        return None
    return catalogue.track(catalogue_path(relative))


def history_vector(queries: list[Query], name: str) -> np.ndarray:
    """The weighted mean of the queries' unit vectors of one name: the centre of a listening history, shape (D,)."""
    weights = np.array([q.weight for q in queries], dtype=np.float32)
    unit = normalise_rows(np.stack([q.vectors[name] for q in queries]).astype(np.float32))  # (Q, D)
    return normalise_rows((weights[:, None] * unit).sum(axis=0) / weights.sum())
