"""Recommend the next songs: tracks whose voice (and, by choice, melody) is like the query's.

score(q, c) = w_timbre * cos(timbre_q, timbre_c) + w_melody * cos(melody_q, melody_c)

A query is one track of the library, several (a listening history: the weighted mean of
their unit vectors), or any audio file, which is analysed on the fly. The query's own
tracks, copies of them (same content) and near-duplicates (the same recording in another
format: the same coarse spectrogram over the excerpt) are never recommended. Filters drop
the query's artist, tracks already heard, other genres, the other gender; diversity is
maximal marginal relevance over the voices and a cap per artist. Every result says why.

:class:`Recommender` holds what a query needs in memory (the indexes, the tracks' tags and
genders) so that a server answers many queries from one load; :func:`recommend` is the
one-shot form the command line uses.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nextvox.catalogue import Catalogue, Track, catalogue_path, command_hint, content_hash, track_file
from nextvox.constants import GENDERS
from nextvox.errors import AudioError, NextvoxError
from nextvox.gender import GENDER_VECTOR
from nextvox.index import EXACT_MAX_VECTORS, VectorIndex, normalise_rows, open_index
from nextvox.melody_match import sequence_similarities

if TYPE_CHECKING:  # analysis loads torch and the models: only a query by an outside file needs them
    from nextvox.analysis import AnalysisSettings

__all__ = [
    "DEFAULT_W_TIMBRE",
    "DEFAULT_W_MELODY",
    "DEFAULT_PER_ARTIST",
    "GENDER_VECTOR",
    "GENDERS",
    "Query",
    "Filters",
    "Diversity",
    "Recommendation",
    "Recommender",
    "resolve_query",
    "track_by_words",
    "search_text",
    "track_label",
    "query_from_file",
    "recommend",
    "history_vector",
]

DEFAULT_W_TIMBRE = 1.0
DEFAULT_W_MELODY = 0.0  # voices decide; the melody joins by the user's choice (--melody-weight)
DEFAULT_PER_ARTIST = 3  # so that a top 10 is never ten songs by one singer
NEAR_DUPLICATE_SIMILARITY = 0.9  # fingerprints this alike are one recording (see features.recording_fingerprint)
PERCENTILE_SAMPLE = 4096  # library vectors against which "closer than X% of the library" is measured
MIN_CANDIDATES = 100  # first candidate pool; grown fourfold while filters leave too few
# With a melody weight, the first pool is this plus 3k and every candidate in it is matched
# by its melody sequence (local alignment in 13 pairs of keys, one compiled batch a candidate: about 0.4 ms each).
MIN_SEQUENCE_CANDIDATES = 30


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
        stored one (tracks with no stored gender are kept; see :attr:`Recommender.has_genders`).
    """

    exclude_query_artists: bool = False
    exclude_artists: frozenset[str] = frozenset()
    heard: frozenset[str] = frozenset()
    genres: frozenset[str] = frozenset()
    gender: str | None = None


@dataclass(frozen=True)
class Diversity:
    """How varied the results are.

    Attributes
    ----------
    mmr_lambda : float
        Maximal marginal relevance, in [0, 1]: 1 ranks by score alone; lower values trade
        score for voices unlike those already chosen (``λ·score − (1 − λ)·max cos``).
    per_artist : int, optional
        At most this many results per artist (None: no cap).
    """

    mmr_lambda: float = 1.0
    per_artist: int | None = DEFAULT_PER_ARTIST


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


def _stored_sequences(catalogue: Catalogue, digest: str) -> dict[str, np.ndarray]:
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
                     track.artist, weight, track.genre, _stored_sequences(catalogue, track.content_hash))
    if track is not None and track.status == "failed":
        raise NextvoxError(f"the query {track.path} failed analysis: {track.error}")
    from nextvox.analysis import library_settings  # loads torch: only an outside file needs it

    return query_from_file(path, label=str(query), settings=settings or library_settings(catalogue), weight=weight)


def track_label(track: Track) -> str:
    """``artist — title`` of a track (its path where a tag is missing)."""
    return f"{track.artist} — {track.title}" if track.artist and track.title else track.path


def search_text(track: Track) -> str:
    """What a search by words looks in: path, artist, title, album and genre, case-folded."""
    return " ".join(x for x in (track.path, track.artist, track.title, track.album, track.genre) if x).casefold()


def track_by_words(catalogue: Catalogue, words: str, *, suggestions: int = 3) -> Track:
    """The one track whose tags and path (:func:`search_text`) hold every word of ``words``.

    Raises a NextvoxError naming the tracks when several match, and the closest titles
    ("did you mean ...?") when none does.
    """
    import difflib

    wanted = words.casefold().split()
    tracks = catalogue.tracks()
    texts = [search_text(t) for t in tracks]
    found = [t for t, text in zip(tracks, texts) if wanted and all(w in text for w in wanted)]
    if len(found) == 1:
        return found[0]
    if found:
        names = "; ".join(f"{track_label(t)} ({t.path})" for t in found[:suggestions])
        more = f" and {len(found) - suggestions} more" if len(found) > suggestions else ""
        raise NextvoxError(f"query {words!r} matches {len(found)} tracks: {names}{more}; add words or give a path")
    # Each word spelt as the nearest word of the library's tags and paths.
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


def _fold(text: str | None) -> str | None:
    return text.casefold().strip() if text else None


@dataclass
class _Candidate:
    """A row of the timbre index (and its content hash) with its exact similarities, and (once filtered) its track."""

    row: int
    key: str
    score: float
    timbre: float
    melody: float | None
    track: Track | None = None


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
    lock : threading.RLock
        Held around every read of the catalogue after loading: a server shares its one
        SQLite connection between threads.
    """

    catalogue: Catalogue
    exact_max_vectors: int = EXACT_MAX_VECTORS
    timbre: VectorIndex = field(init=False)
    melody: VectorIndex | None = field(init=False)
    has_genders: bool = field(init=False)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        # Not under self.lock: a server builds its recommender while holding that lock.
        self.timbre = open_index(self.catalogue, "timbre", exact_max_vectors=self.exact_max_vectors)
        melody = open_index(self.catalogue, "melody", exact_max_vectors=self.exact_max_vectors)
        # Whether the gender stage has stored any gender (the gender filter is a no-op until then).
        self.has_genders = self.catalogue.has_vectors(GENDER_VECTOR)
        self.melody = melody if len(melody) else None
        self._timbre_sample = _sample_rows(len(self.timbre))
        self._melody_sample = _sample_rows(len(self.melody) if self.melody else 0)

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

    def analysed_tracks_of(self, digests) -> dict[str, list[Track]]:
        """The analysed tracks holding each of some contents (contents with none are left out)."""
        with self.lock:
            found = self.catalogue.tracks_of(digests)
        analysed = {h: [t for t in tracks if t.status == "analyzed"] for h, tracks in found.items()}
        return {h: tracks for h, tracks in analysed.items() if tracks}

    def genders_of(self, digests) -> dict[str, str]:
        """The stored gender of each of some contents (those without one are left out)."""
        if not self.has_genders:
            return {}
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
            sequences = _stored_sequences(self.catalogue, track.content_hash)
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
        use_melody = self.melody is not None and all("melody" in q.vectors for q in queries)
        melody_query = history_vector(queries, "melody") if use_melody else None
        sample_timbre = self.timbre.matrix[self._timbre_sample] @ timbre_query  # (S,)
        sample_melody = None if melody_query is None else self.melody.matrix[self._melody_sample] @ melody_query

        excluded = {q.content_hash for q in queries if q.content_hash}
        fingerprints = [q.vectors["fingerprint"] for q in queries if "fingerprint" in q.vectors]
        blocked_artists = {_fold(a) for a in filters.exclude_artists}
        if filters.exclude_query_artists:
            blocked_artists |= {_fold(q.artist) for q in queries if q.artist}
        wanted_genres = {_fold(g) for g in filters.genres}
        query_genres = {_fold(q.genre) for q in queries if q.genre}
        genders = self.genders_of(q.content_hash for q in queries if q.content_hash)  # grows with the candidates
        query_genders = set(genders.values())
        tracks_by_hash: dict[str, list[Track]] = {}  # of the candidates, read as they come

        def allowed(track: Track) -> bool:
            return not (
                track.content_hash in excluded
                or track.path in filters.heard
                or (blocked_artists and _fold(track.artist) in blocked_artists)
                or (wanted_genres and _fold(track.genre) not in wanted_genres)
                or (filters.gender and genders.get(track.content_hash) not in (None, filters.gender))
            )

        sequence_queries = [(q.sequences["melody"], q.weight) for q in queries if "melody" in q.sequences]
        match_sequences = w_melody > 0 and use_melody and len(sequence_queries) == len(queries)
        pool = MIN_SEQUENCE_CANDIDATES + 3 * k if match_sequences else MIN_CANDIDATES + 10 * k
        while True:
            candidates = self._candidates(timbre_query, melody_query, pool, w_timbre=w_timbre, w_melody=w_melody)
            if match_sequences:
                candidates = self._match_sequences(candidates, sequence_queries, w_timbre=w_timbre, w_melody=w_melody)
            unseen = [c.key for c in candidates if c.key not in tracks_by_hash]
            tracks_by_hash.update(dict.fromkeys(unseen, []) | self.analysed_tracks_of(unseen))
            genders |= self.genders_of(unseen)
            eligible = [c for c in candidates if _attach_track(c, tracks_by_hash, allowed)]
            chosen = _diversify(eligible, self.timbre.matrix, k=k, diversity=diversity,
                                acceptable=lambda c: not self._near_duplicate(c.track.content_hash, fingerprints))
            if len(chosen) == k or pool >= len(self.timbre):
                break
            pool *= 4

        matched_melody = np.array([c.melody for c in candidates if c.melody is not None and c.key not in excluded],
                                  dtype=np.float32)  # fmt: skip
        results = []
        for c in chosen:
            voice_share = float((sample_timbre < c.timbre).mean())
            tags = [_voice_tag(voice_share)]
            reason = f"voice closer than {(sample_timbre < c.timbre).mean() * 100:.0f}% of the library (timbre {c.timbre:.2f})"
            if c.melody is not None and w_melody > 0 and match_sequences:
                # Sequence matches are not on the vectors' scale: compare with the candidates matched.
                share = float((matched_melody < c.melody).mean())
                reason += f"; melody closer than {share * 100:.0f}% of the {len(matched_melody)} songs matched note by note ({c.melody:.2f})"
                if share >= 0.9:
                    tags.append("similar melody")
            elif c.melody is not None and w_melody > 0 and sample_melody is not None:
                share = float((sample_melody < c.melody).mean())
                reason += f"; melody closer than {share * 100:.0f}% of the library ({c.melody:.2f})"
                if share >= 0.9:
                    tags.append("similar melody")
            if c.track.genre and _fold(c.track.genre) in query_genres:
                tags.append(f"same genre: {c.track.genre}")
            gender = genders.get(c.track.content_hash)
            if gender and gender in query_genders:
                tags.append(f"same gender: {gender}")
            results.append(Recommendation(
                path=c.track.path, score=c.score, timbre_similarity=c.timbre, melody_similarity=c.melody,
                artist=c.track.artist, title=c.track.title, album=c.track.album, genre=c.track.genre,
                reason=reason, tags=tuple(tags), gender=gender, duration_s=c.track.duration_s,
                voice_percent=round(100 * voice_share, 1),
                melody_percent=round(100 * min(max(c.melody, 0.0), 1.0), 1) if match_sequences and c.melody is not None else None,
            ))
        return results

    def _candidates(
        self, timbre_query: np.ndarray, melody_query: np.ndarray | None, pool: int, *, w_timbre: float, w_melody: float
    ) -> list[_Candidate]:
        """The ``pool`` nearest rows by timbre (and by melody when it weighs), scored exactly, best first."""
        rows, _ = self.timbre.search(timbre_query, pool)
        if melody_query is not None and w_melody > 0:
            melody_rows, _ = self.melody.search(melody_query, pool)
            extra = self.timbre.rows_of([self.melody.key_of(r) for r in melody_rows])
            rows = np.unique(np.concatenate([rows, extra[extra >= 0]]))
        melody_similarity = np.full(len(rows), np.nan, dtype=np.float32)
        timbre_similarity = self.timbre.matrix[rows] @ timbre_query  # (P,)
        score = w_timbre * timbre_similarity
        if melody_query is not None:
            melody_rows = self.melody.rows_of([self.timbre.key_of(r) for r in rows])
            found = melody_rows >= 0
            melody_similarity[found] = self.melody.matrix[melody_rows[found]] @ melody_query if found.any() else []
            score = score + w_melody * np.nan_to_num(melody_similarity)
        order = np.argsort(-score, kind="stable")
        return [
            _Candidate(int(rows[i]), self.timbre.key_of(rows[i]), float(score[i]), float(timbre_similarity[i]),
                       None if np.isnan(melody_similarity[i]) else float(melody_similarity[i]))
            for i in order
        ]

    def _match_sequences(
        self, candidates: list[_Candidate], queries: list[tuple[np.ndarray, float]], *, w_timbre: float, w_melody: float
    ) -> list[_Candidate]:
        """Re-score candidates with their melody sequences' match folded into their melody similarity, best first."""
        with self.lock:
            stored = self.catalogue.sequences("melody", [c.key for c in candidates])
        matched = [c for c in candidates if c.key in stored]
        if matched:
            sequences = [stored[c.key][1] for c in matched]
            total_weight = sum(weight for _, weight in queries)
            match = sum(weight * sequence_similarities(query, sequences) for query, weight in queries) / total_weight  # (M,)
            for c, value in zip(matched, match.tolist()):
                c.melody = value  # the match, not the vectors' cosine: it finds the tune more often (bench/results/tcae.md)
                c.score = w_timbre * c.timbre + w_melody * c.melody
        return sorted(candidates, key=lambda c: -c.score)

    def _near_duplicate(self, digest: str, query_fingerprints: list[np.ndarray]) -> bool:
        if not query_fingerprints:
            return False
        with self.lock:
            fingerprint = self.catalogue.vectors_of(digest).get("fingerprint")
        if fingerprint is None:
            return False
        similarity = normalise_rows(np.stack(query_fingerprints)) @ normalise_rows(fingerprint)
        return bool((similarity >= NEAR_DUPLICATE_SIMILARITY).any())


def _attach_track(candidate: _Candidate, tracks_by_hash: dict[str, list[Track]], allowed: Callable[[Track], bool]) -> bool:
    """Give the candidate the first allowed track holding its content; False when there is none."""
    for track in tracks_by_hash.get(candidate.key, ()):
        if allowed(track):
            candidate.track = track
            return True
    return False


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


def _voice_tag(closer_than: float) -> str:
    """A short word for how close a voice is, from the share of the library it is closer than."""
    if closer_than >= 0.99:
        return "very similar voice"
    if closer_than >= 0.9:
        return "similar voice"
    return "related voice"


def _diversify(
    candidates: list[_Candidate], timbre: np.ndarray, *, k: int, diversity: Diversity,
    acceptable: Callable[[_Candidate], bool],
) -> list[_Candidate]:
    """Up to ``k`` candidates by maximal marginal relevance under a per-artist cap.

    ``acceptable`` is asked only of the candidates about to be chosen (it may be costly: the
    near-duplicate check reads a fingerprint); a refused one is dropped.

    Parameters
    ----------
    candidates : list of _Candidate
        Best score first.
    timbre : np.ndarray, shape (N, D)
        Unit timbre vectors, indexed by the candidates' rows.
    """
    per_artist: Counter[str] = Counter()
    cap = diversity.per_artist

    def capped(c: _Candidate) -> bool:
        artist = _fold(c.track.artist)
        return cap is not None and artist is not None and per_artist[artist] >= cap

    chosen: list[_Candidate] = []
    remaining = list(candidates)
    lam = diversity.mmr_lambda
    while remaining and len(chosen) < k:
        remaining = [c for c in remaining if not capped(c)]
        if not remaining:
            break
        if lam == 1.0 or not chosen:
            best = 0
        else:
            vectors = timbre[[c.row for c in remaining]]  # (R, D)
            redundancy = (vectors @ timbre[[c.row for c in chosen]].T).max(axis=1)  # (R,)
            relevance = np.array([c.score for c in remaining])
            best = int(np.argmax(lam * relevance - (1 - lam) * redundancy))
        pick = remaining.pop(best)
        if not acceptable(pick):
            continue
        chosen.append(pick)
        if pick.track.artist:
            per_artist[_fold(pick.track.artist)] += 1
    return chosen


def recommend(catalogue: Catalogue, queries: list[Query], **options: Any) -> list[Recommendation]:
    """The ``k`` best tracks for a query (or a history of queries), best first: :meth:`Recommender.recommend`
    once, with its keyword ``options`` (``k``, ``w_timbre``, ``w_melody``, ``filters``, ``diversity``)."""
    return Recommender(catalogue).recommend(queries, **options)


def history_vector(queries: list[Query], name: str) -> np.ndarray:
    """The weighted mean of the queries' unit vectors of one name: the centre of a listening history, shape (D,)."""
    weights = np.array([q.weight for q in queries], dtype=np.float32)
    unit = normalise_rows(np.stack([q.vectors[name] for q in queries]).astype(np.float32))  # (Q, D)
    return normalise_rows((weights[:, None] * unit).sum(axis=0) / weights.sum())
