"""Why each song is recommended: its similarities in words, tags, and percentages for people."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextvox.recommend.filters import Candidate, fold

__all__ = ["Recommendation", "voice_tag", "recommendation_of"]


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
    tags: tuple[str, ...] = ()
    gender: str | None = None
    duration_s: float | None = None
    # For people, 0-100 with one meaning each: the share of the library's voices less alike
    # than this one, and how well the tunes line up note by note (None where not matched).
    voice_percent: float | None = None
    melody_percent: float | None = None


def voice_tag(closer_than: float) -> str:
    """A short word for how close a voice is, from the share of the library it is closer than.

    >>> voice_tag(0.995), voice_tag(0.95), voice_tag(0.5)
    ('very similar voice', 'similar voice', 'related voice')
    """
    if closer_than >= 0.99:
        return "very similar voice"
    if closer_than >= 0.9:
        return "similar voice"
    return "related voice"


def recommendation_of(
    candidate: Candidate, *, library_timbre: np.ndarray, melody_baseline: np.ndarray | None, melody_by_sequence: bool,
    query_genres: set[str], query_genders: set[str], gender: str | None,
) -> Recommendation:
    """A chosen candidate (with its track) as a recommendation that says why.

    Parameters
    ----------
    candidate : Candidate
    library_timbre : np.ndarray, shape (S,)
        Timbre similarities of the query to a sample of the library: "closer than X% of the library".
    melody_baseline : np.ndarray, shape (M,), optional
        Melody similarities the candidate's is compared with: of the candidates matched note by
        note when ``melody_by_sequence``, else of the library's sample; None when the melody
        does not weigh.
    melody_by_sequence : bool
        The candidate's melody similarity is its sequences' match (not on the vectors' scale).
    query_genres, query_genders : set of str
        The queries' genres (folded) and genders, named in the tags when shared.
    gender : str, optional
        The candidate's stored gender.
    """
    c = candidate
    voice_share = float((library_timbre < c.timbre).mean())
    tags = [voice_tag(voice_share)]
    reason = f"voice closer than {voice_share * 100:.0f}% of the library (timbre {c.timbre:.2f})"
    if c.melody is not None and melody_baseline is not None:
        share = float((melody_baseline < c.melody).mean())
        if melody_by_sequence:
            # Sequence matches are not on the vectors' scale: compare with the candidates matched.
            reason += f"; melody closer than {share * 100:.0f}% of the {len(melody_baseline)} songs matched note by note ({c.melody:.2f})"
        else:
            reason += f"; melody closer than {share * 100:.0f}% of the library ({c.melody:.2f})"
        if share >= 0.9:
            tags.append("similar melody")
    if c.track.genre and fold(c.track.genre) in query_genres:
        tags.append(f"same genre: {c.track.genre}")
    if gender and gender in query_genders:
        tags.append(f"same gender: {gender}")
    return Recommendation(
        path=c.track.path, score=c.score, timbre_similarity=c.timbre, melody_similarity=c.melody,
        artist=c.track.artist, title=c.track.title, album=c.track.album, genre=c.track.genre,
        reason=reason, tags=tuple(tags), gender=gender, duration_s=c.track.duration_s,
        voice_percent=round(100 * voice_share, 1),
        melody_percent=round(100 * min(max(c.melody, 0.0), 1.0), 1) if melody_by_sequence and c.melody is not None else None,
    )
