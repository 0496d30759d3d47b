"""From the library's types to the API's answers and back."""

from __future__ import annotations

from urllib.parse import quote

from nextvox.api.errors import NotFound
from nextvox.api.schemas import FiltersIn, RecommendationOut, TrackOut
from nextvox.catalogue import Track, command_hint
from nextvox.recommend import Filters, Query, Recommendation, Recommender

__all__ = ["audio_url", "track_out", "recommendation_out", "filters_of", "notes_for", "library_query"]

AUDIO_ROUTE = "/api/audio/"


def audio_url(path: str) -> str:
    """The URL of a track's audio on this server."""
    return AUDIO_ROUTE + quote(path)


def track_out(track: Track, *, gender: str | None) -> TrackOut:
    return TrackOut(
        path=track.path, artist=track.artist, title=track.title, album=track.album, genre=track.genre, gender=gender,
        status=track.status, error=track.error, duration_s=track.duration_s, audio_url=audio_url(track.path),
    )


def recommendation_out(r: Recommendation) -> RecommendationOut:
    return RecommendationOut(
        path=r.path, score=r.score, timbre_similarity=r.timbre_similarity, melody_similarity=r.melody_similarity,
        artist=r.artist, title=r.title, album=r.album, genre=r.genre, gender=r.gender, duration_s=r.duration_s,
        reason=r.reason, tags=list(r.tags), audio_url=audio_url(r.path),
        voice_percent=r.voice_percent, melody_percent=r.melody_percent,
    )


def filters_of(filters: FiltersIn) -> Filters:
    return Filters(
        exclude_query_artists=filters.exclude_query_artists, exclude_artists=frozenset(filters.exclude_artists),
        heard=frozenset(filters.heard), genres=frozenset(filters.genres), gender=filters.gender,
    )


def notes_for(recommender: Recommender, gender: str | None, w_melody: float) -> list[str]:
    """What an answer could not take into account, in words."""
    notes = []
    if gender and not recommender.has_genders:
        notes.append("gender filter not applied: no gender is stored yet (the gender stage has not run)")
    if w_melody > 0 and recommender.melody is None:
        notes.append("melody weight ignored: no melody vectors exist yet")
    return notes


def library_query(recommender: Recommender, path: str, *, weight: float = 1.0) -> Query:
    """The query of a library track; 404 when the library has no such track."""
    if not len(recommender.timbre):
        hint = command_hint("analyze", recommender.catalogue.library, recommender.catalogue.data_dir)
        raise NotFound(f"nothing in this library is analysed yet: run `{hint}` (the server sees it at once)")
    if recommender.track(path) is None:
        raise NotFound(f"no such track in the library: {path}")
    return recommender.track_query(path, weight=weight)
