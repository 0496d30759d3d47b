"""Voice paths: an ordered playlist from one song to another, each voice close to the one before.

The path starts at FROM and ends at TO. Between them it follows the great circle from FROM's
unit timbre vector to TO's (spherical interpolation), one waypoint per song, so it moves
steadily from the one voice toward the other. Of the candidate songs it chooses, by dynamic
programming (:func:`best_chain`), the sequence that maximises the sum over its steps of
``(1 - follow) · cos(v, waypoint) + follow · cos(v, previous song)``, under three rules: it
never steps back (each song's progress, :func:`arc_progress` — the angle of its voice
projected on the plane of FROM's and TO's, as a share of the angle from FROM to TO — is
above the song's before it and at most TO's), never plays one artist twice in a row (FROM's
and TO's included), and so never plays a song twice. When the candidates allow no path that
long, it is the longest they allow, its waypoints spread over the whole way.

Candidates are the recommender's own answers for waypoints along the way (see
:func:`waypoint_query`), so the filters of ``recommend`` (heard tracks, genres, gender,
artists) and its rule against FROM's and TO's copies and near-duplicates hold on the path too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nextvox.errors import NextvoxError
from nextvox.index import normalise_rows
from nextvox.recommend import Diversity, Filters, Query, Recommendation, Recommender

__all__ = ["DEFAULT_PATH_SONGS", "DEFAULT_PATH_FOLLOW", "CANDIDATES_PER_WAYPOINT", "MAX_CANDIDATES", "slerp",
           "waypoint_query", "arc_progress", "best_chain", "voice_path", "step_similarities"]

DEFAULT_PATH_SONGS = 20
DEFAULT_PATH_FOLLOW = 0.5  # equal say to the waypoint (steady progress) and the song before (small steps)
CANDIDATES_PER_WAYPOINT = 32  # answers per waypoint: 8 gave paths of 8.5 songs of 10 asked, 32 gave 9.9 (bench/path.py)
MAX_CANDIDATES = 1000  # the chain search holds a (P, P) matrix, n·P² steps: 0.3 s for 20 songs, 8 s for 1000 (2 busy cores)
MAX_WAYPOINT_QUERIES = 64  # a long path asks for candidates at this many waypoints, more answers each


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


def best_chain(vectors: np.ndarray, progress: np.ndarray, artists: list[str | None], *, a: np.ndarray, b: np.ndarray,
               start_artist: str | None, end_artist: str | None, n: int, follow: float) -> list[int]:
    """The candidates, in order, of the best path of at most ``n`` songs from ``a`` to ``b`` (the longest possible).

    Dynamic programming over (song number, candidate): a chain goes only from a candidate to
    one of higher progress (ties broken by position, so no candidate twice) and of another
    artist (``None`` matches no one); its score is the sum of ``(1 - follow) · cos(v,
    waypoint) + follow · cos(v, previous)`` over its songs and the step into ``b``.

    Parameters
    ----------
    vectors : np.ndarray, shape (P, D)
        Unit timbre vectors of the candidates.
    progress : np.ndarray, shape (P,)
        :func:`arc_progress` of each candidate; only those in [0, 1] may be used.
    artists : list of str or None, length P
        Folded artist names.
    a, b : np.ndarray, shape (D,)
        Unit vectors of FROM and TO.
    start_artist, end_artist : str or None
    n : int
        Songs wanted, FROM and TO included (>= 2).
    follow : float
        In [0, 1].

    Returns
    -------
    list of int
        Rows of ``vectors`` between FROM and TO, at most ``n - 2``; as many as any chain allows.

    >>> v = np.array([[0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])  # 37°, 53°, 90° of the way from (1, 0) to (0, 1)
    >>> best_chain(v, arc_progress(v, np.array([1.0, 0.0]), np.array([0.0, 1.0])), ["x", "y", "z"],
    ...            a=np.array([1.0, 0.0]), b=np.array([0.0, 1.0]), start_artist="s", end_artist="e", n=4, follow=0.5)
    [0, 1]
    """
    size = len(vectors)
    rank = np.empty(size, dtype=np.int64)
    rank[np.argsort(progress, kind="stable")] = np.arange(size)
    usable = (progress >= 0.0) & (progress <= 1.0)  # (P,)
    labels = np.array([x if x is not None else f"\0{i}" for i, x in enumerate(artists)], dtype=object)  # None: unique
    allowed = (rank[:, None] < rank[None, :]) & (labels[:, None] != labels[None, :]) & usable[None, :]  # (P, P) from -> to
    vectors = np.asarray(vectors, dtype=np.float32)
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    step = np.where(allowed, np.float32(follow) * (vectors @ vectors.T), np.float32(-np.inf))  # (P, P) float32
    first = usable & (labels != start_artist if start_artist is not None else usable)  # may follow FROM
    last = labels != end_artist if end_artist is not None else np.ones(size, dtype=bool)  # may precede TO
    to_end = np.where(last, np.float32(follow) * (vectors @ b), np.float32(-np.inf))  # (P,)

    def search(songs: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per chain length m = 1..songs-2: the best score of a chain of m ending at each candidate, and back-pointers."""
        waypoints = slerp(a, b, np.linspace(0.0, 1.0, songs)).astype(np.float32)  # (songs, D)
        scores = [np.where(first, (1 - follow) * (vectors @ waypoints[1]) + follow * (vectors @ a), -np.inf)]
        pointers = [np.full(size, -1)]
        for i in range(2, songs - 1):
            if not np.isfinite(scores[-1]).any():
                break
            through = scores[-1][:, None] + step  # (P, P): chain ending at row, then column
            previous = np.argmax(through, axis=0)  # (P,)
            pointers.append(previous)
            scores.append(through[previous, np.arange(size)] + (1 - follow) * (vectors @ waypoints[i]))
        return scores, pointers

    if n <= 2 or size == 0:
        return []
    scores, pointers = search(n)
    feasible = [m for m in range(len(scores), 0, -1) if np.isfinite(scores[m - 1] + to_end).any()]
    if not feasible:
        return []
    if feasible[0] < n - 2:  # fewer songs than asked: spread the waypoints of that many over the whole way
        scores, pointers = search(feasible[0] + 2)
    length = feasible[0]
    row = int(np.argmax(scores[length - 1] + to_end))
    chain = [row]
    for m in range(length - 1, 0, -1):
        row = int(pointers[m][row])
        chain.append(row)
    return chain[::-1]


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
        tracks = recommender.analysed_tracks_of([query.content_hash]).get(query.content_hash) if query.content_hash else None
        if not tracks:
            raise NextvoxError(f"{query.label} is not an analysed track of the library: a path runs between library tracks")
        ends.append(recommender.track(query.label) or tracks[0])
    if start.content_hash == end.content_hash:
        raise NextvoxError("FROM and TO are the same song: give two different tracks")
    a = recommender.timbre_vector(start.content_hash)
    b = recommender.timbre_vector(end.content_hash)
    # Candidates: the recommender's answers at waypoints along the way (at most MAX_WAYPOINT_QUERIES of them).
    queries = min(n - 2, MAX_WAYPOINT_QUERIES)
    per_query = min(-(-CANDIDATES_PER_WAYPOINT * (n - 2) // max(1, queries)), MAX_CANDIDATES // max(1, queries))
    candidates: dict[str, _Candidate] = {}
    for i, waypoint in enumerate(slerp(a, b, np.linspace(0.0, 1.0, queries + 2)[1:-1]).astype(np.float32), start=1):
        label = f"waypoint {i} of {start.label} -> {end.label}"
        step_queries = [waypoint_query(label, waypoint, start), waypoint_query(label, waypoint, end)]
        for song in recommender.recommend(step_queries, k=per_query, filters=filters,
                                          diversity=Diversity(mmr_lambda=1.0, per_artist=None)):
            if song.path not in candidates:
                digest = recommender.track(song.path).content_hash
                candidates[song.path] = _Candidate(song, recommender.timbre_vector(digest))

    pool = list(candidates.values())
    vectors = np.stack([c.vector for c in pool]) if pool else np.zeros((0, a.size), dtype=np.float32)  # (P, D)
    chain = best_chain(vectors, arc_progress(vectors, a, b), [_fold(c.song.artist) for c in pool], a=a, b=b,
                       start_artist=_fold(start.artist), end_artist=_fold(end.artist), n=n, follow=follow)
    waypoints = slerp(a, b, np.linspace(0.0, 1.0, len(chain) + 2))  # (len + 2, D)
    chosen = [(pool[row], float(pool[row].vector @ waypoints[i])) for i, row in enumerate(chain, start=1)]

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
