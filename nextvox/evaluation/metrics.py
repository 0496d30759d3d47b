"""Similarity and ranking metrics of the evaluation: average precision, precision at k, their chance levels.

Ranking functions take similarity rows, not embeddings, so that plain cosine, the
transposition-invariant chroma similarity and the recommender's weighted score all share
one code path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nextvox.index import normalise_rows

PRECISION_K = 5


# ---- similarity ------------------------------------------------------------------------------

def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Float32 rows scaled to unit length, NaN read as 0; an all-zero row stays zero (similar to nothing)."""
    return normalise_rows(np.nan_to_num(np.asarray(vectors, dtype=np.float32)))


def cosine_similarity(queries: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Cosine similarity of every query to every item.

    Parameters
    ----------
    queries : np.ndarray, shape (Q, D)
    items : np.ndarray, shape (N, D)

    Returns
    -------
    np.ndarray, shape (Q, N), float32, in [-1, 1]; 0 against an all-zero vector.

    >>> cosine_similarity(np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [1.0, 1.0], [0.0, 0.0]])).round(3)
    array([[1.   , 0.707, 0.   ]], dtype=float32)
    """
    return unit_rows(queries) @ unit_rows(items).T


def transposition_invariant_similarity(queries: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Cosine of chroma vectors under the best of the 12 circular transpositions.

    Parameters
    ----------
    queries : np.ndarray, shape (Q, 12)
        Non-negative chroma vectors (e.g. mean chroma over an excerpt), C first.
    items : np.ndarray, shape (N, 12)

    Returns
    -------
    np.ndarray, shape (Q, N), float32
        ``max over s of cos(roll(query, s), item)``: a tune sung in another key scores as
        if it were in the same key.

    >>> c_major = np.array([[1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1]], dtype=float)
    >>> d_major = np.roll(c_major, 2, axis=1)
    >>> round(float(transposition_invariant_similarity(c_major, d_major)[0, 0]), 6)
    1.0
    """
    queries, items = unit_rows(queries), unit_rows(items)
    shifted = np.stack([np.roll(queries, shift, axis=1) for shift in range(queries.shape[1])])  # (12, Q, 12)
    return (shifted @ items.T).max(axis=0)  # (Q, N)


# ---- ranking metrics -------------------------------------------------------------------------

@dataclass(frozen=True)
class QueryScores:
    """Per-query retrieval scores; NaN marks a row that is not a query (no relevant candidate).

    Attributes
    ----------
    average_precision, precision_at_k : np.ndarray, shape (Q,)
    chance_average_precision, chance_precision_at_k : np.ndarray, shape (Q,)
        Expected values of the same metrics for a uniformly random ranking of the row's
        candidates.
    """

    average_precision: np.ndarray
    precision_at_k: np.ndarray
    chance_average_precision: np.ndarray
    chance_precision_at_k: np.ndarray

    @property
    def n_queries(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.average_precision)))

    def concatenate(self, other: QueryScores) -> QueryScores:
        return QueryScores(*(np.concatenate([a, b]) for a, b in zip(self._arrays(), other._arrays())))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self.average_precision, self.precision_at_k, self.chance_average_precision, self.chance_precision_at_k)

    def means(self) -> dict[str, float | None]:
        """Mean of each score over the queries (None when there is no query)."""
        names = ("map", "p_at_k", "chance_map", "chance_p_at_k")
        if self.n_queries == 0:
            return dict.fromkeys(names)
        return {name: float(np.nanmean(values)) for name, values in zip(names, self._arrays())}


def expected_random_average_precision(n_relevant: np.ndarray, n_candidates: np.ndarray) -> np.ndarray:
    """Exact expected average precision of a uniformly random ranking.

    With ``C`` candidates of which ``R`` are relevant, a relevant item lands at rank ``n``
    with probability ``1/C`` and then has on average ``(R-1)(n-1)/(C-1)`` other relevant
    items above it, so ``E[AP] = (1/C) * (H_C + (R-1)/(C-1) * (C - H_C))`` with ``H_C`` the
    C-th harmonic number (Bestgen 2015, "Exact expected average precision of the random
    baseline").

    Parameters
    ----------
    n_relevant : np.ndarray of int, shape (Q,)
        ``R`` per query, at least 1.
    n_candidates : np.ndarray of int, shape (Q,)
        ``C`` per query, at least ``R``.

    Returns
    -------
    np.ndarray, shape (Q,), float64

    >>> expected_random_average_precision(np.array([1, 2, 3]), np.array([2, 2, 3])).round(4)
    array([0.75, 1.  , 1.  ])
    """
    relevant = np.asarray(n_relevant, dtype=np.float64)
    candidates = np.asarray(n_candidates, dtype=np.float64)
    harmonic = np.array([math.fsum(1.0 / np.arange(1, int(c) + 1)) for c in candidates])
    others = np.divide(relevant - 1, candidates - 1, out=np.ones_like(relevant), where=candidates > 1)
    return (harmonic + others * (candidates - harmonic)) / candidates


def ranking_scores(
    similarity: np.ndarray, *, relevant: np.ndarray, candidates: np.ndarray, k: int = PRECISION_K
) -> QueryScores:
    """Average precision and precision@k of each row's ranking of its candidates.

    Candidates are ranked by decreasing similarity. Ties are broken against the query
    (irrelevant candidates first), so an embedding that cannot tell tracks apart gets no
    credit from the order the tracks happen to be listed in.

    Parameters
    ----------
    similarity : np.ndarray, shape (Q, N)
        Similarity of each query to each item (any scale; higher is more similar).
    relevant : np.ndarray of bool, shape (Q, N)
        Whether an item is a right answer for the query.
    candidates : np.ndarray of bool, shape (Q, N)
        Which items the query ranks (the query itself and any left-out items False).
    k : int
        Cut-off of precision@k; fewer when a query has fewer than ``k`` candidates.

    Returns
    -------
    QueryScores
        NaN on rows with no relevant candidate.

    Examples
    --------
    Five candidates ranked a, b, c, d, e with a, c, e relevant: the precisions at the
    relevant ranks are 1/1, 2/3 and 3/5, so AP = (1 + 2/3 + 3/5) / 3 = 34/45 = 0.7556.

    >>> s = ranking_scores(np.array([[5.0, 4, 3, 2, 1]]), relevant=np.array([[1, 0, 1, 0, 1]], bool),
    ...                    candidates=np.ones((1, 5), bool), k=2)
    >>> round(float(s.average_precision[0]), 4), float(s.precision_at_k[0])
    (0.7556, 0.5)
    """
    similarity = np.nan_to_num(np.asarray(similarity, dtype=np.float64), nan=-np.inf)
    candidates = np.asarray(candidates, dtype=bool)
    relevant = np.asarray(relevant, dtype=bool) & candidates
    if not (similarity.shape == relevant.shape == candidates.shape):
        raise ValueError(f"shapes differ: similarity {similarity.shape}, relevant {relevant.shape}, candidates {candidates.shape}")
    keyed = np.where(candidates, -similarity, np.inf)  # non-candidates sort last
    order = np.lexsort((relevant, keyed), axis=1)  # by -similarity, ties: irrelevant first
    hits = np.take_along_axis(relevant, order, axis=1)  # (Q, N), True where rank r holds a relevant item
    found = np.cumsum(hits, axis=1)  # relevant items at ranks <= r
    ranks = np.arange(1, similarity.shape[1] + 1)
    n_relevant = found[:, -1] if similarity.shape[1] else np.zeros(similarity.shape[0], dtype=int)
    n_candidates = candidates.sum(axis=1)
    is_query = n_relevant > 0
    rows = np.flatnonzero(is_query)

    average_precision = np.full(similarity.shape[0], np.nan)
    precision_at_k = np.full(similarity.shape[0], np.nan)
    chance_ap = np.full(similarity.shape[0], np.nan)
    chance_p = np.full(similarity.shape[0], np.nan)
    if rows.size:
        average_precision[rows] = (hits[rows] * found[rows] / ranks).sum(axis=1) / n_relevant[rows]
        cutoff = np.minimum(k, n_candidates[rows])
        precision_at_k[rows] = found[rows, cutoff - 1] / cutoff
        chance_ap[rows] = expected_random_average_precision(n_relevant[rows], n_candidates[rows])
        chance_p[rows] = n_relevant[rows] / n_candidates[rows]
    return QueryScores(average_precision, precision_at_k, chance_ap, chance_p)


def singer_retrieval(
    similarity: np.ndarray, *, singers: np.ndarray, query_indices: np.ndarray | None = None, k: int = PRECISION_K
) -> QueryScores:
    """Singer retrieval: each query ranks all other tracks; relevant = the same singer.

    Parameters
    ----------
    similarity : np.ndarray, shape (Q, N)
        Rows for the tracks ``query_indices`` against all N tracks.
    singers : np.ndarray, shape (N,)
        Singer label of every track.
    query_indices : np.ndarray of int, shape (Q,), optional
        Which tracks the rows belong to; ``arange(N)`` by default (a full (N, N) matrix).
    k : int
        Cut-off of precision@k.

    Returns
    -------
    QueryScores
        NaN for a track whose singer sang no other track.

    >>> sim = np.array([[1, .9, .1], [.9, 1, .2], [.1, .2, 1]])
    >>> singer_retrieval(sim, singers=np.array(["a", "a", "b"])).average_precision
    array([ 1.,  1., nan])
    """
    singers = np.asarray(singers)
    rows = np.arange(len(singers)) if query_indices is None else np.asarray(query_indices)
    candidates = rows[:, None] != np.arange(len(singers))[None, :]
    relevant = singers[rows][:, None] == singers[None, :]
    return ranking_scores(similarity, relevant=relevant, candidates=candidates, k=k)


def melody_retrieval(
    similarity: np.ndarray,
    *,
    singers: np.ndarray,
    melodies: np.ndarray,
    query_indices: np.ndarray | None = None,
    k: int = PRECISION_K,
) -> QueryScores:
    """Melody retrieval: the same tune sung by someone else.

    A track is a query when another singer also sang its melody. Its ranking leaves out
    every track of its own singer (the query included), so a voice match cannot pass for a
    melody match; relevant = the same melody.

    Parameters
    ----------
    similarity : np.ndarray, shape (Q, N)
    singers : np.ndarray, shape (N,)
    melodies : np.ndarray of str, shape (N,)
        Melody id of every track; ``""`` for unknown (never relevant, never a query).
    query_indices : np.ndarray of int, shape (Q,), optional
        ``arange(N)`` by default.
    k : int

    Returns
    -------
    QueryScores
        NaN for tracks that are not queries.

    Track 0 (singer a, tune x) ranks only tracks 2 and 3; its own singer's track 1 (also
    tune x, the most similar) is left out, and track 3 (tune x by b) ranks second: AP 1/2.

    >>> sim = np.array([[1, .9, .8, .3], [.9, 1, .2, .7], [.8, .2, 1, .1], [.3, .7, .1, 1]])
    >>> melody_retrieval(sim, singers=np.array(list("aabb")), melodies=np.array(list("xxyx"))).average_precision
    array([0.5, 1. , nan, 1. ])
    """
    singers, melodies = np.asarray(singers), np.asarray(melodies)
    rows = np.arange(len(singers)) if query_indices is None else np.asarray(query_indices)
    candidates = singers[rows][:, None] != singers[None, :]
    relevant = (melodies[rows][:, None] == melodies[None, :]) & (melodies[rows] != "")[:, None]
    return ranking_scores(similarity, relevant=relevant, candidates=candidates, k=k)
