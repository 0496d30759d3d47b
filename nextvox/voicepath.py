"""Voice paths: an ordered playlist from one song to another, each voice close to the one before.

The path starts at FROM and ends at TO. Between them it walks along the great circle from
FROM's unit timbre vector to TO's (spherical interpolation), one waypoint per song, so it
moves steadily from the one voice toward the other. At each waypoint it takes the unplayed
candidate that best blends nearness to the waypoint with nearness to the song just played
(``(1 - follow) · cos(v, waypoint) + follow · cos(v, previous)``), never the artist just
played, and never, as the last song before TO, TO's artist. It never steps back: each song's
progress (:func:`arc_progress`, the angle of its voice projected on the plane of FROM's and
TO's, as a share of the angle from FROM to TO) is at least the song's before it and not past
TO's; when no candidate is left that goes forward, the path goes on to TO, shorter than asked.

Candidates are the recommender's own answers for each waypoint (see :func:`waypoint_query`),
so the filters of ``recommend`` (heard tracks, genres, gender, artists) and its rule against
FROM's and TO's copies and near-duplicates hold on the path too. On a small or heavily
filtered library the path is shorter than asked rather than repeat a song.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextvox.errors import NextvoxError
from nextvox.index import normalise_rows
from nextvox.recommend import Diversity, Filters, Query, Recommendation, Recommender

__all__ = ["DEFAULT_PATH_SONGS", "DEFAULT_PATH_FOLLOW", "CANDIDATES_PER_WAYPOINT", "slerp", "waypoint_query",
           "arc_progress", "voice_path", "step_similarities"]

DEFAULT_PATH_SONGS = 20
DEFAULT_PATH_FOLLOW = 0.5  # equal say to the waypoint (steady progress) and the song before (small steps)
CANDIDATES_PER_WAYPOINT = 8  # recommender answers fetched per waypoint: room to skip played songs and artists


def slerp(a: np.ndarray, b: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """Points on the great circle from unit vector ``a`` to ``b``, shape (len(fractions), D).

    ``fractions`` in [0, 1] (0 is ``a``, 1 is ``b``); when ``a`` and ``b`` are (anti)parallel
    the points fall back to the normalised straight line.

    >>> slerp(np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, 0.5, 1.0])).round(3).tolist()
    [[1.0, 0.0], [0.707, 0.707], [0.0, 1.0]]
    """
    a, b = normalise_rows(np.asarray(a, dtype=np.float64)), normalise_rows(np.asarray(b, dtype=np.float64))
    t = np.asarray(fractions, dtype=np.float64)[:, None]
    angle = float(np.arccos(np.clip(a @ b, -1.0, 1.0)))  # radians
    if np.sin(angle) < 1e-6:
        return normalise_rows((1 - t) * a + t * b)
    return (np.sin((1 - t) * angle) * a + np.sin(t * angle) * b) / np.sin(angle)


def arc_progress(vectors: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far along the way from unit vector ``a`` to ``b`` each row of ``vectors`` (N, D) lies: shape (N,).

    The angle of each row's projection on the plane of ``a`` and ``b``, measured from ``a``,
    as a share of the angle between ``a`` and ``b``: 0 at ``a``, 1 at ``b`` (a row past ``b``
    scores above 1, one behind ``a`` below 0).

    >>> arc_progress(np.array([[1.0, 1.0, 5.0], [0.0, 1.0, 0.0]]), np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])).round(3).tolist()
    [0.5, 1.0]
    """
    a, b = normalise_rows(np.asarray(a, dtype=np.float64)), normalise_rows(np.asarray(b, dtype=np.float64))
    across = normalise_rows(b - (a @ b) * a)  # unit, orthogonal to a, in the plane of a and b
    angle = float(np.arccos(np.clip(a @ b, -1.0, 1.0)))
    if angle < 1e-6:
        return np.zeros(len(vectors))
    rows = np.asarray(vectors, dtype=np.float64)
    return np.arctan2(rows @ across, rows @ a) / angle


def waypoint_query(label: str, waypoint: np.ndarray, endpoint: Query) -> Query:
    """A query for the voice at ``waypoint`` that carries ``endpoint``'s identity.

    The recommender never recommends a query's own content or its near-duplicates and, with
    ``exclude_query_artists``, its artist: asking for a waypoint with FROM's and TO's
    identities (two items of one voice, so their mean is the waypoint) keeps them off the path.
    """
    vectors = {"timbre": np.asarray(waypoint, dtype=np.float32)}
    if "fingerprint" in endpoint.vectors:
        vectors["fingerprint"] = endpoint.vectors["fingerprint"]
    return Query(label, vectors, endpoint.content_hash, endpoint.duration_s, endpoint.artist, genre=endpoint.genre)


def _fold(text: str | None) -> str | None:
    return text.casefold().strip() if text else None


@dataclass
class _Candidate:
    song: Recommendation
    vector: np.ndarray  # (D,) unit timbre


def voice_path(
    recommender: Recommender,
    start: Query,
    end: Query,
    *,
    n: int = DEFAULT_PATH_SONGS,
    filters: Filters = Filters(),
    follow: float = DEFAULT_PATH_FOLLOW,
) -> list[Recommendation]:
    """An ordered playlist of ``n`` songs from ``start`` to ``end`` (both included; fewer when the library runs out).

    Parameters
    ----------
    recommender : Recommender
    start, end : Query
        Two different analysed tracks of the library (``Recommender.track_query``).
    n : int
        Songs in the path, FROM and TO included: at least 2.
    filters : Filters
        As for recommendations; they apply to the songs between FROM and TO.
    follow : float
        In [0, 1]: 0 keeps each song nearest its waypoint, 1 lets the song before decide.

    Returns
    -------
    list of Recommendation
        FROM first and TO last. ``timbre_similarity`` is each song's cosine with the song
        before it (1 for FROM); ``score`` its cosine with its waypoint.
    """
    if n < 2:
        raise NextvoxError("a path needs at least 2 songs (FROM and TO)")
    if not 0.0 <= follow <= 1.0:
        raise NextvoxError("follow must be between 0 and 1")
    ends = []
    for query in (start, end):
        tracks = recommender.tracks_by_hash.get(query.content_hash or "")
        if not tracks:
            raise NextvoxError(f"{query.label} is not an analysed track of the library: a path runs between library tracks")
        ends.append(recommender.tracks_by_path.get(query.label) or tracks[0])
    if start.content_hash == end.content_hash:
        raise NextvoxError("FROM and TO are the same song: give two different tracks")
    a = recommender.timbre_vector(start.content_hash)
    b = recommender.timbre_vector(end.content_hash)
    waypoints = slerp(a, b, np.linspace(0.0, 1.0, n)).astype(np.float32)  # (n, D)

    candidates: dict[str, _Candidate] = {}
    for i in range(1, n - 1):
        label = f"waypoint {i} of {start.label} -> {end.label}"
        step_queries = [waypoint_query(label, waypoints[i], start), waypoint_query(label, waypoints[i], end)]
        for song in recommender.recommend(step_queries, k=CANDIDATES_PER_WAYPOINT, filters=filters,
                                          diversity=Diversity(mmr_lambda=1.0, per_artist=None)):
            if song.path not in candidates:
                digest = recommender.tracks_by_path[song.path].content_hash
                candidates[song.path] = _Candidate(song, recommender.timbre_vector(digest))

    pool = list(candidates.values())
    vectors = np.stack([c.vector for c in pool]) if pool else np.zeros((0, a.size), dtype=np.float32)  # (P, D)
    progress = arc_progress(vectors, a, b)  # (P,)
    free = np.ones(len(pool), dtype=bool)
    chosen: list[tuple[_Candidate, float]] = []  # (candidate, cosine with its waypoint)
    previous, previous_artist, previous_progress = a, _fold(start.artist), 0.0
    for i in range(1, n - 1):
        blocked = {previous_artist} | ({_fold(end.artist)} if i == n - 2 else set())
        fit = (1 - follow) * (vectors @ waypoints[i]) + follow * (vectors @ previous)  # (P,)
        fit = np.where(free, fit, -np.inf)
        fit[[j for j, c in enumerate(pool) if _fold(c.song.artist) in blocked - {None}]] = -np.inf
        fit = np.where((progress >= previous_progress) & (progress <= 1.0), fit, -np.inf)  # never a step back, nor past TO
        best = int(np.argmax(fit)) if pool else 0
        if not pool or not np.isfinite(fit[best]):
            break  # every candidate left is played, behind, or by the artist just played: on to TO
        free[best] = False
        chosen.append((pool[best], float(pool[best].vector @ waypoints[i])))
        previous, previous_artist = pool[best].vector, _fold(pool[best].song.artist)
        previous_progress = float(progress[best])

    songs = [_endpoint(recommender, ends[0], similarity=1.0, step=1, total=len(chosen) + 2)]
    before = a
    for step, (candidate, to_waypoint) in enumerate(chosen, start=2):
        similarity = float(candidate.vector @ before)
        songs.append(_step(candidate.song, similarity=similarity, to_waypoint=to_waypoint, to_end=float(candidate.vector @ b),
                           step=step, total=len(chosen) + 2, end=end))
        before = candidate.vector
    songs.append(_endpoint(recommender, ends[1], similarity=float(b @ before), step=len(chosen) + 2, total=len(chosen) + 2))
    return songs


def _step(song: Recommendation, *, similarity: float, to_waypoint: float, to_end: float, step: int, total: int,
          end: Query) -> Recommendation:
    reason = f"step {step} of {total}: voice {similarity:.2f} like the song before, {to_end:.2f} like {end.label}'s"
    return Recommendation(
        path=song.path, score=to_waypoint, timbre_similarity=similarity, melody_similarity=None, artist=song.artist,
        title=song.title, album=song.album, genre=song.genre, reason=reason, tags=("voice path",), gender=song.gender,
        duration_s=song.duration_s,
    )


def _endpoint(recommender: Recommender, track, *, similarity: float, step: int, total: int) -> Recommendation:
    reason = f"step {step} of {total}: " + ("the start" if step == 1 else f"the end, voice {similarity:.2f} like the song before")
    return Recommendation(
        path=track.path, score=1.0, timbre_similarity=similarity, melody_similarity=None, artist=track.artist,
        title=track.title, album=track.album, genre=track.genre, reason=reason, tags=("voice path",),
        gender=recommender.gender_of(track.content_hash), duration_s=track.duration_s,
    )


def step_similarities(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of each song's vector to the one before it: shape (N - 1,) for (N, D) rows.

    >>> step_similarities(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])).round(3).tolist()
    [0.707, 0.707]
    """
    unit = normalise_rows(np.asarray(vectors, dtype=np.float64))
    return (unit[1:] * unit[:-1]).sum(axis=1)
