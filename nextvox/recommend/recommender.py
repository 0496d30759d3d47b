"""The recommender: the tracks whose voice (and, by choice, melody) is like the query's, best first.

score(q, c) = w_timbre * cos(timbre_q, timbre_c) + w_melody * cos(melody_q, melody_c)

The query's own tracks, copies of them (same content) and near-duplicates (the same
recording in another format: the same coarse spectrogram over the excerpt) are never
recommended. :class:`Recommender` holds what a query needs (the indexes, memory-mapped) so
that a server answers many queries from one load; :func:`recommend` is the one-shot form
the command line uses.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from nextvox.catalogue import Catalogue, Track, command_hint
from nextvox.constants import GENDERS
from nextvox.errors import NextvoxError
from nextvox.gender import GENDER_VECTOR
from nextvox.index import EXACT_MAX_VECTORS, VectorIndex, normalise_rows, open_index
from nextvox.melody_match import as_sung_similarities, sequence_similarities
from nextvox.recommend.diversity import Diversity, diversify
from nextvox.recommend.explain import Recommendation, recommendation_of
from nextvox.recommend.filters import Candidate, Filters, attach_track, fold
from nextvox.recommend.query import Query, history_vector, stored_sequences

__all__ = ["DEFAULT_W_TIMBRE", "DEFAULT_W_MELODY", "Recommender", "recommend"]

DEFAULT_W_TIMBRE = 1.0
DEFAULT_W_MELODY = 0.0  # voices decide; the melody joins by the user's choice (--melody-weight)
NEAR_DUPLICATE_SIMILARITY = 0.9  # fingerprints this alike are one recording (see features.recording_fingerprint)
PERCENTILE_SAMPLE = 4096  # library vectors against which "closer than X% of the library" is measured
MIN_CANDIDATES = 100  # first candidate pool; grown fourfold while filters leave too few
# With a melody weight, the first pool is this plus 3k (by voice, and as many by melody vector);
# every candidate in it is matched by its melody sequence as sung (one of 7 key pairs), and
# the best FULL_MATCH_SHARE of them (at least 2k) in all 7 (local alignment, about 0.2 ms a candidate).
MIN_SEQUENCE_CANDIDATES = 30
# On the eval libraries this two-stage ranking kept melody mAP within noise and melody-weighted top-10s
# unchanged (bench/melody_pool.py, docs/service.md).
FULL_MATCH_SHARE = 0.3


@dataclass
class Recommender:
    """What answering queries over one catalogue needs, opened once.

    The vector indexes are memory-mapped (:func:`nextvox.index.open_index`); the tracks and
    genders of the candidates are read from the catalogue as a query needs them, so opening
    costs the same for a hundred tracks as for a million.

    Parameters
    ----------
    catalogue : Catalogue
    exact_max_vectors : int
        Largest library searched exactly (see :func:`nextvox.index.open_index`).
    full_match_share : float
        With a melody weight, the share of the pool matched in every key (1: all of it; see
        :meth:`_match_sequences`).
    lock : threading.RLock
        Held around every read of the catalogue after loading: a server shares its one
        SQLite connection between threads.
    """

    catalogue: Catalogue
    exact_max_vectors: int = EXACT_MAX_VECTORS
    full_match_share: float = FULL_MATCH_SHARE
    timbre: VectorIndex = field(init=False)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        # Not under self.lock: a server builds its recommender while holding that lock.
        self.timbre = open_index(self.catalogue, "timbre", exact_max_vectors=self.exact_max_vectors)
        self._timbre_sample = _sample_rows(len(self.timbre))

    @cached_property
    def melody(self) -> VectorIndex | None:
        """The melody vectors' index, None when none is stored (opened on first use: a query by voice alone never searches it)."""
        with self.lock:
            melody = open_index(self.catalogue, "melody", exact_max_vectors=self.exact_max_vectors)
        return melody if len(melody) else None

    @cached_property
    def has_genders(self) -> bool:
        """Whether the gender stage has stored any gender (the gender filter is a no-op until then)."""
        with self.lock:
            return self.catalogue.has_vectors(GENDER_VECTOR)

    @cached_property
    def tracks_by_path(self) -> dict[str, Track]:
        """Every track by its path (read on first use: for listings, not for queries)."""
        with self.lock:
            return {track.path: track for track in self.catalogue.tracks()}

    @cached_property
    def tracks_by_hash(self) -> dict[str, list[Track]]:
        """The analysed tracks holding each content (read on first use: for listings, not for queries)."""
        by_hash: dict[str, list[Track]] = {}
        for track in self.tracks_by_path.values():
            if track.status == "analyzed":
                by_hash.setdefault(track.content_hash, []).append(track)
        return by_hash

    def track(self, path: str) -> Track | None:
        """One track by its path relative to the library, or None."""
        if "tracks_by_path" in self.__dict__:
            return self.tracks_by_path.get(path)
        with self.lock:
            return self.catalogue.track(path)

    def path_ending_with(self, tail: str) -> str | None:
        """The first library path (in path order) ending with ``tail``, or None (one pass in SQLite, nothing loaded)."""
        with self.lock:
            return self.catalogue.path_ending_with(tail)

    def analysed_tracks_of(self, digests) -> dict[str, list[Track]]:
        """The analysed tracks holding each of some contents (contents with none are left out)."""
        with self.lock:
            found = self.catalogue.tracks_of(digests)
        analysed = {h: [t for t in tracks if t.status == "analyzed"] for h, tracks in found.items()}
        return {h: tracks for h, tracks in analysed.items() if tracks}

    def genders_of(self, digests) -> dict[str, str]:
        """The stored gender of each of some contents (those without one are left out)."""
        with self.lock:
            probabilities = self.catalogue.vectors_for(GENDER_VECTOR, digests)
        return {h: GENDERS[0] if p[0] >= 0.5 else GENDERS[1] for h, p in probabilities.items()}

    def gender_of(self, digest: str | None) -> str | None:
        return self.genders_of([digest]).get(digest) if digest else None

    def track_query(self, path: str, *, weight: float = 1.0) -> Query:
        """The query for a library track given by its path relative to the library."""
        track = self.track(path)
        if track is None:
            raise NextvoxError(f"no such track in the library: {path}")
        if track.status != "analyzed":
            raise NextvoxError(f"the track {path} is {track.status}" + (f": {track.error}" if track.error else ""))
        with self.lock:
            vectors = self.catalogue.vectors_of(track.content_hash)
            sequences = stored_sequences(self.catalogue, track.content_hash)
        return Query(track.path, vectors, track.content_hash, track.duration_s, track.artist, weight, track.genre, sequences)

    def timbre_vector(self, digest: str) -> np.ndarray:
        """The unit timbre vector of one content, shape (D,)."""
        return np.asarray(self.timbre.matrix[self.timbre.row_of(digest)])

    # ---- recommending ----------------------------------------------------------------------

    def recommend(
        self,
        queries: list[Query],
        *,
        k: int = 10,
        w_timbre: float = DEFAULT_W_TIMBRE,
        w_melody: float = DEFAULT_W_MELODY,
        filters: Filters = Filters(),
        diversity: Diversity = Diversity(),
    ) -> list[Recommendation]:
        """The ``k`` best tracks for a query (or a weighted history of queries), best first.

        Parameters
        ----------
        queries : list of Query
            One item, or a listening history whose vectors are averaged with their weights.
        k : int
            Results wanted, at least 1.
        w_timbre, w_melody : float
            Weights of the timbre and melody similarities in the score, each >= 0. The timbre
            similarity is a cosine; the melody similarity is the melody sequences' match
            (:func:`nextvox.melody_match.sequence_similarity`, averaged over a history) where
            the query and the candidate have sequences, else the melody vectors' cosine.
        filters : Filters
        diversity : Diversity
        """
        _check(queries, k=k, w_timbre=w_timbre, w_melody=w_melody, filters=filters, diversity=diversity)
        if not len(self.timbre):
            raise NextvoxError("no analysed tracks in the catalogue yet: "
                               f"run `{command_hint('analyze', self.catalogue.library, self.catalogue.data_dir)}` first")
        timbre_query = history_vector(queries, "timbre")
        # By voice alone, the melody similarities shown are read for the candidates only (no index opened).
        use_melody = (w_melody == 0 or self.melody is not None) and all("melody" in q.vectors for q in queries)
        melody_query = history_vector(queries, "melody") if use_melody else None

        excluded = {q.content_hash for q in queries if q.content_hash}
        fingerprints = [q.vectors["fingerprint"] for q in queries if "fingerprint" in q.vectors]
        blocked_artists = {fold(a) for a in filters.exclude_artists}
        if filters.exclude_query_artists:
            blocked_artists |= {fold(q.artist) for q in queries if q.artist}
        wanted_genres = {fold(g) for g in filters.genres}
        query_genres = {fold(q.genre) for q in queries if q.genre}
        genders = self.genders_of(q.content_hash for q in queries if q.content_hash)  # grows with the candidates
        query_genders = set(genders.values())
        tracks_by_hash: dict[str, list[Track]] = {}  # of the candidates, read as they come

        def allowed(track: Track) -> bool:
            return not (
                track.content_hash in excluded
                or track.path in filters.heard
                or (blocked_artists and fold(track.artist) in blocked_artists)
                or (wanted_genres and fold(track.genre) not in wanted_genres)
                or (filters.gender and genders.get(track.content_hash) not in (None, filters.gender))
            )

        sequence_queries = [(q.sequences["melody"], q.weight) for q in queries if "melody" in q.sequences]
        match_sequences = w_melody > 0 and use_melody and len(sequence_queries) == len(queries)
        pool = MIN_SEQUENCE_CANDIDATES + 3 * k if match_sequences else MIN_CANDIDATES + 10 * k
        while True:
            candidates = self._candidates(timbre_query, melody_query, pool, w_timbre=w_timbre, w_melody=w_melody)
            if match_sequences:
                candidates = self._match_sequences(candidates, sequence_queries, k=k, w_timbre=w_timbre, w_melody=w_melody)
            unseen = [c.key for c in candidates if c.key not in tracks_by_hash]
            tracks_by_hash.update(dict.fromkeys(unseen, []) | self.analysed_tracks_of(unseen))
            genders |= self.genders_of(unseen)
            eligible = [c for c in candidates if attach_track(c, tracks_by_hash, allowed)]
            chosen = diversify(eligible, self.timbre.matrix, k=k, diversity=diversity,
                               acceptable=lambda c: not self._near_duplicate(c.track.content_hash, fingerprints))
            if len(chosen) == k or pool >= len(self.timbre):
                break
            pool *= 4

        sample_timbre = self.timbre.matrix[self._timbre_sample] @ timbre_query  # (S,)
        if w_melody == 0 or melody_query is None:
            melody_baseline = None
        elif match_sequences:  # the candidates matched note by note (matches are not on the vectors' scale)
            melody_baseline = np.array([c.melody for c in candidates if c.melody is not None and c.key not in excluded],
                                       dtype=np.float32)  # fmt: skip
        else:  # (S,): 8 MB of melody vectors read only where they are the measure
            melody_baseline = self.melody.matrix[_sample_rows(len(self.melody))] @ melody_query
        return [recommendation_of(c, library_timbre=sample_timbre, melody_baseline=melody_baseline,
                                  melody_by_sequence=match_sequences, query_genres=query_genres,
                                  query_genders=query_genders, gender=genders.get(c.track.content_hash))
                for c in chosen]

    def _candidates(
        self, timbre_query: np.ndarray, melody_query: np.ndarray | None, pool: int, *, w_timbre: float, w_melody: float
    ) -> list[Candidate]:
        """The ``pool`` nearest rows by timbre (and by melody when it weighs), scored exactly, best first."""
        rows, _ = self.timbre.search(timbre_query, pool)
        if melody_query is not None and w_melody > 0:
            melody_rows, _ = self.melody.search(melody_query, pool)
            extra = self.timbre.rows_of([self.melody.key_of(r) for r in melody_rows])
            rows = np.unique(np.concatenate([rows, extra[extra >= 0]]))
        timbre_similarity = self.timbre.matrix[rows] @ timbre_query  # (P,)
        score = w_timbre * timbre_similarity
        melody_similarity = np.full(len(rows), np.nan, dtype=np.float32)
        if melody_query is not None:
            melody_similarity = self._melody_similarities([self.timbre.key_of(r) for r in rows], melody_query, w_melody=w_melody)
            score = score + w_melody * np.nan_to_num(melody_similarity)
        order = np.argsort(-score, kind="stable")
        return [
            Candidate(int(rows[i]), self.timbre.key_of(rows[i]), float(score[i]), float(timbre_similarity[i]),
                       None if np.isnan(melody_similarity[i]) else float(melody_similarity[i]))
            for i in order
        ]

    def _melody_similarities(self, keys: list[str], melody_query: np.ndarray, *, w_melody: float) -> np.ndarray:
        """Cosine of each content's melody vector with the (unit) query's, shape (len(keys),) float32, NaN where none is stored.

        Where the melody weighs, its index is open already (it was searched); by voice alone the
        few candidates' vectors are read from the catalogue and made unit as the index makes them.
        """
        similarity = np.full(len(keys), np.nan, dtype=np.float32)
        if w_melody > 0:
            rows = self.melody.rows_of(keys)
            found = rows >= 0
            if found.any():
                similarity[found] = self.melody.matrix[rows[found]] @ melody_query
            return similarity
        with self.lock:
            stored = self.catalogue.vectors_for("melody", keys)
        found = np.array([key in stored for key in keys], dtype=bool)
        if found.any():
            vectors = normalise_rows(np.stack([stored[key] for key in keys if key in stored]).astype(np.float32))  # (F, D)
            similarity[found] = vectors @ melody_query
        return similarity

    def _match_sequences(
        self, candidates: list[Candidate], queries: list[tuple[np.ndarray, float]], *, k: int, w_timbre: float, w_melody: float
    ) -> list[Candidate]:
        """Re-score candidates with their melody sequences' match folded into their melody similarity, best first.

        Two stages: every candidate with a stored sequence is matched as sung
        (:func:`~nextvox.melody_match.as_sung_similarities`); the best ``full_match_share`` of
        them by the score that gives (at least ``2 k``) are matched in every key
        (:func:`~nextvox.melody_match.sequence_similarities`) and the rest leave the pool.
        Candidates without a sequence keep their melody vectors' cosine.
        """
        with self.lock:
            stored = self.catalogue.sequences("melody", [c.key for c in candidates])
        matched = [c for c in candidates if c.key in stored]
        if not matched:
            return candidates
        total_weight = sum(weight for _, weight in queries)

        def weighted(similarities, of: list[Candidate]) -> np.ndarray:  # (len(of),): the history's weighted mean of one matcher
            sequences = [stored[c.key][1] for c in of]
            return sum(weight * similarities(query, sequences) for query, weight in queries) / total_weight

        as_sung = weighted(as_sung_similarities, matched)
        first_score = np.array([w_timbre * c.timbre for c in matched]) + w_melody * as_sung  # (M,)
        keep = max(2 * k, math.ceil(self.full_match_share * len(matched)))
        matched = [matched[i] for i in np.sort(np.argsort(-first_score, kind="stable")[:keep])]
        for c, value in zip(matched, weighted(sequence_similarities, matched).tolist()):
            c.melody = value  # the match, not the vectors' cosine: it finds the tune more often (bench/results/tcae.md)
            c.score = w_timbre * c.timbre + w_melody * c.melody
        dropped = set(stored) - {c.key for c in matched}
        return sorted((c for c in candidates if c.key not in dropped), key=lambda c: -c.score)

    def _near_duplicate(self, digest: str, query_fingerprints: list[np.ndarray]) -> bool:
        if not query_fingerprints:
            return False
        with self.lock:
            fingerprint = self.catalogue.vectors_for("fingerprint", [digest]).get(digest)
        if fingerprint is None:
            return False
        similarity = normalise_rows(np.stack(query_fingerprints)) @ normalise_rows(fingerprint)
        return bool((similarity >= NEAR_DUPLICATE_SIMILARITY).any())


def _check(queries: list[Query], *, k: int, w_timbre: float, w_melody: float, filters: Filters, diversity: Diversity) -> None:
    if not queries:
        raise NextvoxError("give at least one query track or file")
    if k < 1:
        raise NextvoxError("k must be at least 1")
    if not (math.isfinite(w_timbre) and math.isfinite(w_melody)) or w_timbre < 0 or w_melody < 0 or w_timbre + w_melody == 0:
        raise NextvoxError("the timbre and melody weights must be finite, >= 0 and not both 0")
    if not all(math.isfinite(q.weight) and q.weight > 0 for q in queries):
        raise NextvoxError("the weights of a listening history must be > 0")
    if not 0.0 <= diversity.mmr_lambda <= 1.0:
        raise NextvoxError("the MMR lambda must be between 0 and 1")
    if diversity.per_artist is not None and diversity.per_artist < 1:
        raise NextvoxError("the per-artist cap must be at least 1")
    if filters.gender is not None and filters.gender not in GENDERS:
        raise NextvoxError(f"gender must be one of {', '.join(GENDERS)}, not {filters.gender!r}")


def _sample_rows(n: int) -> np.ndarray:
    """Rows of a fixed random sample of at most PERCENTILE_SAMPLE of ``n`` (all of them when fewer)."""
    return np.sort(np.random.default_rng(0).choice(n, size=min(n, PERCENTILE_SAMPLE), replace=False))


def recommend(catalogue: Catalogue, queries: list[Query], **options: Any) -> list[Recommendation]:
    """The ``k`` best tracks for a query (or a history of queries), best first: :meth:`Recommender.recommend`
    once, with its keyword ``options`` (``k``, ``w_timbre``, ``w_melody``, ``filters``, ``diversity``)."""
    return Recommender(catalogue).recommend(queries, **options)
