"""Recommend the next songs: tracks whose voice (and, by choice, melody) is like the query's.

score(q, c) = w_timbre * cos(timbre_q, timbre_c) + w_melody * cos(melody_q, melody_c)

A query is one track of the library, several (a listening history: their vectors are
averaged), or any audio file, which is analysed on the fly. The query's own tracks, copies
of them (same content) and near-duplicates (the same recording in another format: the same
coarse spectrogram over the excerpt) are never recommended. Every result says why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nextvox.analysis import AnalysisSettings, analyze_track
from nextvox.audio import native_stderr_to
from nextvox.catalogue import Catalogue, Track, content_hash
from nextvox.errors import AudioError, NextvoxError
from nextvox.index import VectorIndex, normalise_rows

__all__ = ["DEFAULT_W_TIMBRE", "DEFAULT_W_MELODY", "Query", "Recommendation", "resolve_query", "recommend"]

DEFAULT_W_TIMBRE = 1.0
DEFAULT_W_MELODY = 0.0  # no melody model yet: voices alone decide
NEAR_DUPLICATE_SIMILARITY = 0.9  # fingerprints this alike are one recording (see features.recording_fingerprint)


@dataclass(frozen=True)
class Query:
    """One query item: its vectors, and the library track it is (None for an outside file)."""

    label: str
    vectors: dict[str, np.ndarray]
    content_hash: str | None
    duration_s: float | None
    artist: str | None


@dataclass(frozen=True)
class Recommendation:
    path: str
    score: float
    timbre_similarity: float
    melody_similarity: float | None
    artist: str | None
    title: str | None
    album: str | None
    genre: str | None
    reason: str


def resolve_query(catalogue: Catalogue, query: Path, *, settings: AnalysisSettings) -> Query:
    """Find ``query`` in the catalogue, or analyse it on the fly when it is an outside file."""
    path = Path(query).expanduser()
    if not path.exists():
        # A path relative to the library, as `status` prints them.
        path = catalogue.library / query
    if not path.is_file():
        raise NextvoxError(f"query not found: {query}")
    path = path.resolve()
    track = _track_at(catalogue, path)
    if track is not None and track.status == "analyzed":
        return Query(track.path, catalogue.vectors_of(track.content_hash), track.content_hash, track.duration_s, track.artist)
    if track is not None and track.status == "failed":
        raise NextvoxError(f"the query {track.path} failed analysis: {track.error}")
    try:
        with native_stderr_to(os.devnull):
            analysis = analyze_track(path, content_hash=None, settings=settings, cache=None)
    except AudioError as error:
        raise NextvoxError(f"cannot use {query} as a query: {error}") from None
    vectors = {name: vector for name, (_, vector) in analysis.vectors.items()}
    digest = content_hash(path)
    return Query(str(query), vectors, digest, analysis.duration_s, None)


def _track_at(catalogue: Catalogue, path: Path) -> Track | None:
    try:
        relative = path.relative_to(catalogue.library).as_posix()
    except ValueError:
        return None
    return catalogue.track(relative)


def _percentile_words(similarity: float, all_similarities: np.ndarray) -> str:
    closer_than = float((all_similarities < similarity).mean()) * 100
    return f"closer than {closer_than:.0f}% of the library"


def recommend(
    catalogue: Catalogue,
    queries: list[Query],
    *,
    k: int = 10,
    w_timbre: float = DEFAULT_W_TIMBRE,
    w_melody: float = DEFAULT_W_MELODY,
) -> list[Recommendation]:
    """The ``k`` best tracks for a query (or a history of queries), best first.

    Parameters
    ----------
    catalogue : Catalogue
    queries : list of Query
        One item, or a listening history whose vectors are averaged.
    k : int
        Results wanted, at least 1.
    w_timbre, w_melody : float
        Weights of the timbre and melody cosine similarities in the score, each >= 0.
    """
    if k < 1:
        raise NextvoxError("k must be at least 1")
    if w_timbre < 0 or w_melody < 0 or w_timbre + w_melody == 0:
        raise NextvoxError("the timbre and melody weights must be >= 0 and not both 0")
    timbre_index = VectorIndex.from_catalogue(catalogue, "timbre")
    if not len(timbre_index):
        raise NextvoxError("no analysed tracks in the catalogue yet: run `nextvox analyze` first")
    timbre = _history_vector(queries, "timbre")
    timbre_similarity = timbre_index.similarities(timbre)
    score = w_timbre * timbre_similarity

    melody_similarity: np.ndarray | None = None
    melody_index = VectorIndex.from_catalogue(catalogue, "melody")
    if len(melody_index) and all("melody" in q.vectors for q in queries):
        by_melody = melody_index.similarities(_history_vector(queries, "melody"))
        melody_similarity = np.array([by_melody[melody_index.position[h]] if h in melody_index.position else 0.0
                                      for h in timbre_index.keys], dtype=np.float32)
        score = score + w_melody * melody_similarity

    excluded = {q.content_hash for q in queries if q.content_hash}
    fingerprints = VectorIndex.from_catalogue(catalogue, "fingerprint")
    for q in queries:
        if "fingerprint" in q.vectors and len(fingerprints):
            similarity = fingerprints.similarities(q.vectors["fingerprint"])
            excluded.update(fingerprints.keys[i] for i in np.flatnonzero(similarity >= NEAR_DUPLICATE_SIMILARITY))
    tracks_by_hash: dict[str, list[Track]] = {}
    for track in catalogue.tracks(status="analyzed"):
        tracks_by_hash.setdefault(track.content_hash, []).append(track)

    results: list[Recommendation] = []
    for i in np.argsort(-score, kind="stable"):
        digest = timbre_index.keys[i]
        if digest in excluded or digest not in tracks_by_hash:
            continue
        track = tracks_by_hash[digest][0]
        melody = None if melody_similarity is None else float(melody_similarity[i])
        reason = f"voice {_percentile_words(float(timbre_similarity[i]), timbre_similarity)} (timbre {timbre_similarity[i]:.2f})"
        if melody is not None and w_melody > 0:
            reason += f"; melody {_percentile_words(melody, melody_similarity)} ({melody:.2f})"
        results.append(Recommendation(
            path=track.path, score=float(score[i]), timbre_similarity=float(timbre_similarity[i]),
            melody_similarity=melody, artist=track.artist, title=track.title, album=track.album,
            genre=track.genre, reason=reason,
        ))
        if len(results) == k:
            break
    return results


def _history_vector(queries: list[Query], name: str) -> np.ndarray:
    """The mean of the queries' unit vectors of one name: the centre of a listening history."""
    return normalise_rows(np.stack([q.vectors[name] for q in queries])).mean(axis=0)
