"""Which tracks may be recommended: the candidates of a query and the filters they pass.

A :class:`Candidate` is one row of the timbre index with its exact similarities to the
query; it is given a track (:func:`attach_track`) when a track holding its content passes
the :class:`Filters`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nextvox.catalogue import Track

__all__ = ["Filters", "Candidate", "fold", "attach_track"]


@dataclass(frozen=True)
class Filters:
    """Which tracks may be recommended.

    Attributes
    ----------
    exclude_query_artists : bool
        Leave out the artists of the query tracks.
    exclude_artists : frozenset of str
        Artists to leave out (compared without case).
    heard : frozenset of str
        Paths (relative to the library) already heard: left out.
    genres : frozenset of str
        Keep only these genres (compared without case); empty keeps every genre.
    gender : str, optional
        ``female`` or ``male``: keep only voices of that gender, where the gender stage has
        stored one (tracks with no stored gender are kept; see
        :attr:`nextvox.recommend.Recommender.has_genders`).
    """

    exclude_query_artists: bool = False
    exclude_artists: frozenset[str] = frozenset()
    heard: frozenset[str] = frozenset()
    genres: frozenset[str] = frozenset()
    gender: str | None = None


@dataclass
class Candidate:
    """A row of the timbre index (and its content hash) with its exact similarities, and (once filtered) its track."""

    row: int
    key: str
    score: float
    timbre: float
    melody: float | None
    track: Track | None = None


def fold(text: str | None) -> str | None:
    """``text`` as compared without case or surrounding spaces (None for no text).

    >>> fold("  Anna "), fold("")
    ('anna', None)
    """
    return text.casefold().strip() if text else None


def attach_track(candidate: Candidate, tracks_by_hash: dict[str, list[Track]], allowed: Callable[[Track], bool]) -> bool:
    """Give the candidate the first allowed track holding its content; False when there is none."""
    for track in tracks_by_hash.get(candidate.key, ()):
        if allowed(track):
            candidate.track = track
            return True
    return False
