"""Retrieval quality of every embedding, beside baselines, on a labelled library.

Three questions are asked of each embedding, all from the labels CSV (labels are used here
only, never in training):

singer retrieval
    Every labelled track queries all the others; relevant = the same singer. Reported as
    mean average precision (mAP) and precision at 5.
melody retrieval
    The queries are the tracks whose melody another singer also sang; the query singer's
    own tracks are left out of the ranking; relevant = the same melody. Reported as mAP.
gender
    A small classifier (logistic regression) trained on the embedding, tested on singers it
    never saw (leave one singer out): accuracy and balanced accuracy.

Each metric has its chance level: the expected value of a random ranking (computed
exactly, see :func:`expected_random_average_precision`) or of always guessing the
majority gender.

The embeddings: the project's own vectors from the catalogue (``timbre``, ``melody`` and
``combined``, the recommender's score), and baselines computed on the same excerpt the
project analyses, before separation, i.e. what a user could run instead of nextvox:
``mfcc`` (MFCC mean and standard deviation), ``resemblyzer`` (a pre-trained speaker
encoder whose wheel ships its weights) and ``chroma`` (mean chroma compared under the best
of the 12 transpositions, a melody baseline). Baselines are computed in worker processes
and cached under the data directory by content hash and baseline version.

Ranking functions take similarity rows, not embeddings, so that plain cosine, the
transposition-invariant chroma similarity and the recommender's weighted score all share
one code path.
"""

from __future__ import annotations

import datetime
import math
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from nextvox.analysis import EXCERPT_VERSION, INFERENCE_BF16, AnalysisSettings, analyze_library
from nextvox.audio import load_excerpt
from nextvox.catalogue import Catalogue, resolve_library
from nextvox.constants import GENDERS, SAMPLE_RATE_HZ
from nextvox.errors import AudioError, MissingDependencyError, NextvoxError
from nextvox.features import MelCache, log_mel, mfcc_statistics
from nextvox.gender import gender_cross_validation, head_scores, shipped_head
from nextvox.index import normalise_rows
from nextvox.labels import Labels, read_labels
from nextvox.melody_match import sequence_similarities
from nextvox.models import tcae, timbre
from nextvox.files import atomic_path
from nextvox.processes import die_with_parent

__all__ = [
    "BASELINES",
    "BASELINE_VERSIONS",
    "GENDERS",
    "PRECISION_K",
    "Labels",
    "QueryScores",
    "ProgressCallback",
    "cosine_similarity",
    "transposition_invariant_similarity",
    "ranking_scores",
    "expected_random_average_precision",
    "singer_retrieval",
    "melody_retrieval",
    "gender_cross_validation",
    "mfcc_baseline",
    "chroma_baseline",
    "resemblyzer_baseline",
    "read_labels",
    "evaluate_library",
    "format_table",
]

PRECISION_K = 5
BASELINES = ("mfcc", "resemblyzer", "chroma")
#: Bump a version when its baseline's computation changes: the cache key holds it.
BASELINE_VERSIONS = {
    "mfcc": "mfcc-stats-1",
    "resemblyzer": "resemblyzer-0.1.4-1",
    "chroma": "chroma-cqt-mean-1",
}
PROJECT_EMBEDDINGS = ("timbre", "melody", "melody_vector", "combined")
MAX_SEQUENCE_TRACKS = 500  # above this, evaluate's melody row is the vector's cosine (500 tracks: 125k matches, about 16 min)
QUERY_BLOCK = 512  # similarity rows computed at once: 512 x 20,000 float32 is 40 MB
CHROMA_HOP_LENGTH = 512  # samples between chroma frames (32 ms)

#: progress(stage, done, total); stage is "scan", "analyze" or "baselines".
ProgressCallback = Callable[[str, int, int], None]


# ---- similarity ------------------------------------------------------------------------------

def _unit_rows(vectors: np.ndarray) -> np.ndarray:
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
    return _unit_rows(queries) @ _unit_rows(items).T


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
    queries, items = _unit_rows(queries), _unit_rows(items)
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


# ---- baselines -------------------------------------------------------------------------------

def mfcc_baseline(samples: np.ndarray) -> np.ndarray:
    """MFCC 1..19 mean and standard deviation of an excerpt.

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
        Mono audio at ``SAMPLE_RATE_HZ``.

    Returns
    -------
    np.ndarray, shape (38,), float32
    """
    return mfcc_statistics(log_mel(samples))


def chroma_baseline(samples: np.ndarray) -> np.ndarray:
    """Mean constant-Q chroma of an excerpt: its pitch-class profile.

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
        Mono audio at ``SAMPLE_RATE_HZ``.

    Returns
    -------
    np.ndarray, shape (12,), float32
        Mean over frames of chroma normalised per frame (max 1), C first.
    """
    import librosa

    chroma = librosa.feature.chroma_cqt(y=samples, sr=SAMPLE_RATE_HZ, hop_length=CHROMA_HOP_LENGTH)  # (12, T)
    return chroma.mean(axis=1).astype(np.float32)


@cache
def _voice_encoder():
    """The resemblyzer speaker encoder, loaded once per process (weights from its wheel)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its VAD dependency warns about pkg_resources on import
        try:
            from resemblyzer import VoiceEncoder
        except ImportError:
            raise MissingDependencyError("the resemblyzer baseline needs the resemblyzer package: pip install resemblyzer") from None
    return VoiceEncoder("cpu", verbose=False)


def resemblyzer_baseline(samples: np.ndarray) -> np.ndarray:
    """Resemblyzer's speaker embedding of an excerpt, with its own preprocessing.

    Its preprocessing normalises the level and cuts long non-voice stretches (WebRTC VAD);
    when that leaves under a second (an instrumental), the whole excerpt is embedded.

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
        Mono audio at ``SAMPLE_RATE_HZ`` (resemblyzer's own rate).

    Returns
    -------
    np.ndarray, shape (256,), float32, unit length
    """
    encoder = _voice_encoder()
    from resemblyzer import preprocess_wav

    voiced = preprocess_wav(samples, source_sr=SAMPLE_RATE_HZ)
    return encoder.embed_utterance(voiced if voiced.size >= SAMPLE_RATE_HZ else samples).astype(np.float32)


_BASELINE_FUNCTIONS = {"mfcc": mfcc_baseline, "resemblyzer": resemblyzer_baseline, "chroma": chroma_baseline}


class BaselineCache:
    """Baseline vectors on disk: ``DATA_DIR/cache/baselines/<name>-<version>-excerpt<v>/<hash>.npy``."""

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir) / "cache" / "baselines"

    def path(self, name: str, content_hash: str) -> Path:
        folder = f"{name}-{BASELINE_VERSIONS[name]}-excerpt{EXCERPT_VERSION}"
        return self.root / folder / content_hash[:2] / f"{content_hash}.npy"

    def load(self, name: str, content_hash: str) -> np.ndarray | None:
        try:
            return np.load(self.path(name, content_hash))
        except (OSError, ValueError, EOFError):
            return None

    def store(self, name: str, content_hash: str, vector: np.ndarray) -> None:
        """Write atomically; a refused write only costs time on the next run."""
        try:
            with atomic_path(self.path(name, content_hash)) as part:
                np.save(part, vector)
        except OSError:
            pass


def _baseline_worker_init(parent_pid: int) -> None:
    import torch

    die_with_parent(parent_pid)  # a parent killed outright leaves no worker behind
    torch.set_num_threads(1)  # one process per core


def _compute_baselines(path: str, names: tuple[str, ...]) -> tuple[str, dict[str, np.ndarray] | str]:
    """In a worker: ("ok", {name: vector}) or ("failed", reason) for one file."""
    try:
        samples = load_excerpt(Path(path)).valid_samples
        return "ok", {name: _BASELINE_FUNCTIONS[name](samples) for name in names}
    except AudioError as error:
        return "failed", str(error)
    except MissingDependencyError:
        raise
    except Exception as error:  # one odd file must not stop the evaluation
        return "failed", f"baseline failed: {type(error).__name__}: {error}"


def _baseline_vectors(
    files: dict[str, Path], *, data_dir: Path, jobs: int, progress: ProgressCallback | None
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Every baseline of every file, from the cache or computed in ``jobs`` worker processes.

    Parameters
    ----------
    files : dict
        Content hash -> path of one file holding it.

    Returns
    -------
    vectors : dict
        Baseline name -> {content hash: vector}.
    failures : dict
        Content hash -> reason, for files whose baselines could not be computed.
    """
    cache_store = BaselineCache(data_dir)
    vectors: dict[str, dict[str, np.ndarray]] = {name: {} for name in BASELINES}
    missing: dict[str, tuple[str, ...]] = {}
    for digest in files:
        for name in BASELINES:
            cached = cache_store.load(name, digest)
            if cached is not None:
                vectors[name][digest] = cached
        absent = tuple(name for name in BASELINES if digest not in vectors[name])
        if absent:
            missing[digest] = absent
    failures: dict[str, str] = {}
    if progress:
        progress("baselines", 0, len(missing))
    if not missing:
        return vectors, failures
    if "resemblyzer" in {name for names in missing.values() for name in names} and find_spec("resemblyzer") is None:
        raise MissingDependencyError("the resemblyzer baseline needs the resemblyzer package: pip install resemblyzer")
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(missing)), mp_context=multiprocessing.get_context("spawn"), initializer=_baseline_worker_init,
        initargs=(os.getpid(),),
    )
    try:
        queue = list(missing.items())
        in_flight = {}
        done = 0
        while queue or in_flight:
            while queue and len(in_flight) < 2 * jobs:
                digest, names = queue.pop(0)
                in_flight[pool.submit(_compute_baselines, str(files[digest]), names)] = digest
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                digest = in_flight.pop(future)
                kind, result = future.result()
                if kind == "ok":
                    for name, vector in result.items():
                        vectors[name][digest] = vector
                        cache_store.store(name, digest, vector)
                else:
                    failures[digest] = str(result)
                done += 1
                if progress:
                    progress("baselines", done, len(missing))
    except BaseException:
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # stop at once, not after the files in flight
            process.terminate()
        raise
    pool.shutdown(wait=True)
    return vectors, failures


# ---- evaluation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Embedding:
    """One row of the evaluation: how to compare tracks, and vectors for the gender head.

    ``similarity_rows(indices)`` gives the (Q, N) similarity of tracks ``indices`` to all N
    evaluated tracks; ``features`` (N, D) is what a gender head is trained on. Both None
    when the embedding does not exist yet, and then ``note`` says why.
    """

    similarity_rows: Callable[[np.ndarray], np.ndarray] | None
    features: np.ndarray | None
    note: str | None = None
    model_version: str | None = None


def _cosine_embedding(vectors: np.ndarray, *, note: str | None = None, model_version: str | None = None) -> _Embedding:
    unit = _unit_rows(vectors)
    return _Embedding(lambda rows: unit[rows] @ unit.T, unit, note, model_version)


def _chroma_embedding(vectors: np.ndarray) -> _Embedding:
    return _Embedding(
        lambda rows: transposition_invariant_similarity(vectors[rows], vectors),
        vectors,
        "mean chroma, best of 12 transpositions",
        BASELINE_VERSIONS["chroma"],
    )


def _catalogue_vectors(catalogue: Catalogue, name: str, hashes: list[str]) -> tuple[np.ndarray | None, str | None, str | None]:
    """(vectors (N, D) in the order of ``hashes``, model version, note); vectors None when absent."""
    stored_hashes, matrix, versions = catalogue.vectors(name)
    row_of = {digest: i for i, digest in enumerate(stored_hashes)}
    absent = sum(digest not in row_of for digest in hashes)
    if absent == len(hashes):
        return None, None, f"no {name} model yet"
    if absent:
        return None, None, f"{name} vectors missing for {absent} of {len(hashes)} tracks: run nextvox analyze"
    rows = [row_of[digest] for digest in hashes]
    used_versions = sorted({versions[i] for i in rows})
    if len(used_versions) > 1:
        return None, None, f"{name} vectors come from several models ({', '.join(used_versions)}): run nextvox analyze"
    return matrix[rows], used_versions[0], None


def _catalogue_sequences(catalogue: Catalogue, hashes: list[str], *, version: str | None) -> list[np.ndarray] | None:
    """The melody sequences of ``hashes`` in order, when every one is stored by the model ``version``; else None."""
    stored = catalogue.sequences("melody", hashes)
    if version is None or any(stored.get(h, ("",))[0] != version for h in hashes):
        return None
    return [stored[h][1] for h in hashes]


def sequence_similarity_matrix(sequences: list[np.ndarray], *, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Every pair's melody-sequence match (:func:`nextvox.melody_match.sequence_similarity`), shape (N, N), diagonal 1."""
    n = len(sequences)
    matrix = np.eye(n, dtype=np.float32)
    for i in range(n):
        matrix[i, i + 1 :] = matrix[i + 1 :, i] = sequence_similarities(sequences[i], sequences[i + 1 :])
        if progress:
            progress(i + 1, n)
    return matrix


def _project_embeddings(
    catalogue: Catalogue, hashes: list[str], *, w_timbre: float, w_melody: float,
    overrides: dict[str, tuple[np.ndarray, str, list[np.ndarray] | None]] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, _Embedding]:  # fmt: skip
    """``timbre``, ``melody``, ``melody_vector`` and ``combined`` from the catalogue, or rows saying what is missing.

    ``overrides`` (by name: vectors (N, D) in the order of ``hashes``, model version, melody
    sequences or None) replace the catalogue's: other weights under evaluation (``--model``).
    ``melody`` is the recommender's melody similarity: the mean of the melody vectors' cosine and
    the sequences' match where every track has a sequence and there are at most
    MAX_SEQUENCE_TRACKS tracks, else the vectors' cosine; ``melody_vector`` is the vector
    alone, what the index searches.
    """
    found: dict[str, tuple[np.ndarray | None, str | None, str | None, str | None]] = {}  # vectors, version, missing, note
    sequences = None
    for name in ("timbre", "melody"):
        if name in (overrides or {}):
            vectors, version, override_sequences = overrides[name]
            found[name] = (vectors, version, None, f"weights under evaluation ({version})")
            sequences = override_sequences if name == "melody" else sequences
        else:
            found[name] = (*_catalogue_vectors(catalogue, name, hashes), None)
            if name == "melody":
                sequences = _catalogue_sequences(catalogue, hashes, version=found[name][1])
    embeddings = {
        name: _Embedding(None, None, missing) if vectors is None else _cosine_embedding(vectors, note=note, model_version=version)
        for name, (vectors, version, missing, note) in found.items()
    }
    (timbre, _, timbre_missing, _), (melody, melody_version, melody_missing, melody_note) = found["timbre"], found["melody"]
    melody_similarity = None  # (N, N) melody similarities with the sequence match, when it can be had
    embeddings["melody_vector"] = embeddings["melody"]  # the missing row's note, unless replaced below
    if melody is not None:
        embeddings["melody_vector"] = _cosine_embedding(melody, note="the melody vector alone (what the index searches)",
                                                        model_version=melody_version)  # fmt: skip
        if sequences is not None and len(hashes) <= MAX_SEQUENCE_TRACKS:
            unit_melody = _unit_rows(melody)
            melody_similarity = sequence_similarity_matrix(sequences, progress=progress)
            note = f"the melody sequences' match (local alignment, best of {len(tcae.KEY_SHIFTS)} keys)" + (f"; {melody_note}" if melody_note else "")
            embeddings["melody"] = _Embedding(lambda rows: melody_similarity[rows], unit_melody, note, melody_version)
        else:
            why = "no melody sequences stored" if sequences is None else f"more than {MAX_SEQUENCE_TRACKS} tracks"
            embeddings["melody"] = _cosine_embedding(melody, note=f"melody vector only ({why})", model_version=melody_version)

    # score = w_t cos(t) + w_m melody(m). Its features, for the gender head, are
    # [sqrt(w_t) t^, sqrt(w_m) m^], whose dot product is the score with the melody vectors' cosine.
    formula = f"score = {w_timbre:g}·cos(timbre) + {w_melody:g}·melody"
    parts, missing = [], []
    for weight, vectors, why in ((w_timbre, timbre, timbre_missing), (w_melody, melody, melody_missing)):
        if weight > 0:
            if vectors is None:
                missing.append(why)
            else:
                parts.append(np.sqrt(weight) * _unit_rows(vectors))
    if missing:
        embeddings["combined"] = _Embedding(None, None, f"{formula}; {'; '.join(missing)}")
    else:
        combined = np.concatenate(parts, axis=1)
        if w_melody > 0 and melody_similarity is not None:
            unit_timbre = _unit_rows(timbre)
            rows_of = lambda rows: w_timbre * (unit_timbre[rows] @ unit_timbre.T) + w_melody * melody_similarity[rows]  # noqa: E731
            embeddings["combined"] = _Embedding(rows_of, combined, formula + " (melody sequences matched)")
        else:
            embeddings["combined"] = _Embedding(lambda rows: combined[rows] @ combined.T, combined, formula)
    return embeddings


def _retrieval(embedding: _Embedding, *, singers: np.ndarray, melodies: np.ndarray) -> tuple[QueryScores, QueryScores]:
    """Singer and melody scores of every track, computed in blocks of query rows."""
    singer_parts, melody_parts = [], []
    for start in range(0, len(singers), QUERY_BLOCK):
        rows = np.arange(start, min(len(singers), start + QUERY_BLOCK))
        similarity = embedding.similarity_rows(rows)  # (Q, N)
        singer_parts.append(singer_retrieval(similarity, singers=singers, query_indices=rows))
        melody_parts.append(melody_retrieval(similarity, singers=singers, melodies=melodies, query_indices=rows))
    singer_scores, melody_scores = singer_parts[0], melody_parts[0]
    for singer_part, melody_part in zip(singer_parts[1:], melody_parts[1:]):
        singer_scores, melody_scores = singer_scores.concatenate(singer_part), melody_scores.concatenate(melody_part)
    return singer_scores, melody_scores


def _check_weights(w_timbre: float, w_melody: float) -> None:
    for name, weight in (("timbre", w_timbre), ("melody", w_melody)):
        if not (math.isfinite(weight) and weight >= 0):
            raise NextvoxError(f"the {name} weight must be a number >= 0, not {weight}")
    if w_timbre + w_melody == 0:
        raise NextvoxError("the timbre and melody weights are both 0: nothing would rank the tracks")


MODEL_FILES = {"timbre": "timbre.pt", "melody": "tcae.pt"}  # vector name -> weights file of a --model folder


def _model_weights(model_dir: Path | None) -> dict[str, Path]:
    """The weights files of a ``--model`` folder by vector name: ``timbre.pt`` and/or ``tcae.pt``, as ``nextvox train`` writes them."""
    if model_dir is None:
        return {}
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise NextvoxError(f"model folder not found: {model_dir}")
    weights = {name: model_dir / file for name, file in MODEL_FILES.items() if (model_dir / file).is_file()}
    if not weights:
        raise NextvoxError(f"no timbre.pt or tcae.pt in {model_dir}: give the --out folder of `nextvox train timbre` or `nextvox train tcae`")
    return weights


def _vectors_from_cache(
    name: str, weights: Path, hashes: list[str], *, data_dir: Path, separator: str
) -> tuple[np.ndarray, str, list[np.ndarray] | None]:
    """``name`` vectors (N, D) of ``hashes`` by the model in ``weights``, from the cached log-mels; its version; melody sequences."""
    if name == "timbre":
        encoder = timbre.load_weights(weights)
        version, dim = timbre.weights_version(weights), encoder.embedding_dim

        def embed(x: np.ndarray) -> tuple[np.ndarray, None]:
            return timbre.embed_excerpt(encoder, x, bf16=INFERENCE_BF16), None
    else:
        model = tcae.load_weights(weights)
        version, dim = tcae.weights_version(weights), model.config.melody_dim

        def embed(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return tcae.melody_vector_and_sequence(model, x, n_valid_frames=x.shape[1])

    cache = MelCache(Path(data_dir) / "cache", separator=separator, excerpt_version=EXCERPT_VERSION)
    vectors, sequences = [], []
    for digest in hashes:
        cached = cache.load(digest)
        if cached is None:
            raise NextvoxError(f"the spectrogram cache under {data_dir} lost a track's log-mel: run nextvox analyze again")
        vector, sequence = embed(cached[0])
        vectors.append(vector)
        sequences.append(sequence)
    matrix = np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
    return matrix, version, (sequences if name == "melody" else None)


def evaluate_library(
    library: Path,
    labels_csv: Path,
    *,
    data_dir: Path,
    jobs: int | None = None,
    separator: str | None = None,
    separator_weights: Path | None = None,
    model_dir: Path | None = None,
    w_timbre: float = 1.0,
    w_melody: float = 0.0,
    progress: ProgressCallback | None = None,
) -> dict:
    """Analyse ``library`` if needed and measure every embedding against the labels.

    Parameters
    ----------
    library : Path
        The music folder.
    labels_csv : Path
        Labels (``path``, ``singer``; optional ``gender``, ``melody``); see :func:`read_labels`.
    data_dir : Path
        Catalogue and caches (baseline vectors go to ``data_dir/cache/baselines``).
    jobs : int, optional
        Worker processes for analysis and baselines; one per core by default.
    separator : str, optional
        Vocal separator of the analysis; the library's own (as ``analyze`` stored it) when None.
    separator_weights : Path, optional
        Model file of the ``mask`` (default: shipped) or ``demucs`` separator.
    model_dir : Path, optional
        A folder holding other timbre weights (``timbre.pt``, from ``nextvox train timbre``):
        its vectors, computed from the cached log-mels, replace the shipped ones in the
        ``timbre`` and ``combined`` rows.
    w_timbre, w_melody : float
        Weights of the ``combined`` score, ``>= 0``, not both 0.
    progress : callable(stage, done, total), optional
        Stages ``"scan"``, ``"analyze"``, ``"baselines"``.

    Returns
    -------
    dict
        JSON-ready, in the shape of DESIGN.md's ``evaluate --json``: ``n_tracks``,
        ``n_singers``, ``embeddings`` (per name: ``singer_map``, ``singer_p_at_5``,
        ``melody_map``, ``note``), ``gender`` (per name: ``leave_one_singer_out_accuracy``,
        ``balanced_accuracy``; and ``default_head``), plus ``chance`` (the same metrics for a
        random ranking or the majority gender), ``n_singer_queries``, ``n_melody_queries``,
        ``n_gender_tracks``, ``n_labelled``, ``n_failed``, ``failed`` (path and reason of
        each labelled track left out), ``notes``, ``settings`` and ``timings_s``. A metric
        that cannot be measured is None, with a note saying why.

    Raises
    ------
    NextvoxError
        For a bad library, labels file, weight or model folder.
    """
    _check_weights(w_timbre, w_melody)
    library = resolve_library(library)
    model_weights = _model_weights(model_dir)
    labels = read_labels(labels_csv, library=library)
    jobs = max(1, jobs or os.cpu_count() or 1)
    started = time.perf_counter()
    settings = analyze_library(
        library,
        data_dir=data_dir,
        jobs=jobs,
        settings=AnalysisSettings.from_options(separator, separator_weights),
        on_scan=(lambda done, total: progress("scan", done, total)) if progress else None,
        on_track=(lambda done, total, _audio_s: progress("analyze", done, total)) if progress else None,
    ).settings
    analysed_at = time.perf_counter()

    catalogue = Catalogue(data_dir, library=library)
    try:
        tracks = {track.path: track for track in catalogue.tracks()}
        failed: list[dict[str, str]] = []
        kept: list[int] = []  # label rows whose track was analysed
        for i, path in enumerate(labels.paths):
            track = tracks.get(path)
            if track is None:
                kind = "not an audio file nextvox reads" if (library / path).is_file() else "no such file"
                raise NextvoxError(f"{labels_csv}: line {labels.line_numbers[i]}: {path} is not a track of the library {library} ({kind})")
            if track.status == "analyzed":
                kept.append(i)
            else:
                failed.append({"path": path, "error": track.error or "not analysed"})

        files = {tracks[labels.paths[i]].content_hash: library / labels.paths[i] for i in kept}
        baselines, baseline_failures = _baseline_vectors(files, data_dir=data_dir, jobs=jobs, progress=progress)
        for i in list(kept):
            reason = baseline_failures.get(tracks[labels.paths[i]].content_hash)
            if reason:
                failed.append({"path": labels.paths[i], "error": f"baselines: {reason}"})
                kept.remove(i)
        if len(kept) < 2:
            reasons = "; ".join(f"{f['path']}: {f['error']}" for f in failed[:3])
            raise NextvoxError(f"only {len(kept)} of the {len(labels.paths)} labelled tracks could be analysed; at least 2 are needed ({reasons})")
        baselines_at = time.perf_counter()

        hashes = [tracks[labels.paths[i]].content_hash for i in kept]
        overrides = {name: _vectors_from_cache(name, weights, hashes, data_dir=data_dir, separator=settings.separator_version)
                     for name, weights in model_weights.items()}  # fmt: skip
        embeddings = _project_embeddings(catalogue, hashes, w_timbre=w_timbre, w_melody=w_melody, overrides=overrides,
                                         progress=(lambda done, total: progress("melody match", done, total)) if progress else None)
        head_timbre, head_timbre_version, _ = overrides["timbre"] if "timbre" in overrides else _catalogue_vectors(catalogue, "timbre", hashes)
    finally:
        catalogue.close()
    embeddings["mfcc"] = _cosine_embedding(np.stack([baselines["mfcc"][h] for h in hashes]) if hashes else np.zeros((0, 1)), model_version=BASELINE_VERSIONS["mfcc"])
    embeddings["resemblyzer"] = _cosine_embedding(np.stack([baselines["resemblyzer"][h] for h in hashes]) if hashes else np.zeros((0, 1)), model_version=BASELINE_VERSIONS["resemblyzer"])
    embeddings["chroma"] = _chroma_embedding(np.stack([baselines["chroma"][h] for h in hashes]) if hashes else np.zeros((0, 12)))

    singers, genders, melodies = labels.singers[kept], labels.genders[kept], labels.melodies[kept]
    default_head = head_scores(shipped_head(), head_timbre, timbre_model_version=head_timbre_version, genders=genders)
    result = _measure(embeddings, singers=singers, genders=genders, melodies=melodies, labels=labels, default_head=default_head)
    result.update(
        n_labelled=len(labels.paths),
        n_failed=len(failed),
        failed=failed,
        settings={"separator": settings.separator_version, "w_timbre": w_timbre, "w_melody": w_melody, "analysis_version": settings.version,
                  "timbre_weights": str(model_weights["timbre"]) if "timbre" in model_weights else None,
                  "tcae_weights": str(model_weights["melody"]) if "melody" in model_weights else None},
        timings_s={
            "analysis": round(analysed_at - started, 3),
            "baselines": round(baselines_at - analysed_at, 3),
            "metrics": round(time.perf_counter() - baselines_at, 3),
        },
        evaluated_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    )
    return result


def _measure(
    embeddings: dict[str, _Embedding], *, singers: np.ndarray, genders: np.ndarray, melodies: np.ndarray, labels: Labels,
    default_head: dict,
) -> dict:
    """The metrics of every embedding over the evaluated tracks, as the result dict.

    ``default_head`` is the shipped gender head's row (:func:`nextvox.gender.head_scores`).
    """
    notes: list[str] = []
    if not labels.has_melody:
        notes.append("no melody column in the labels: melody retrieval not measured")
    if not labels.has_gender:
        notes.append("no gender column in the labels: gender not measured")
    gendered = genders != ""
    gender_measurable = len(np.unique(genders[gendered])) == 2 and len(np.unique(singers[gendered])) >= 2
    if labels.has_gender and not gender_measurable:
        notes.append("gender needs labelled tracks of both genders from at least two singers")

    rows: dict[str, dict] = {}
    gender_rows: dict[str, dict] = {}
    chance: dict[str, float | None] = {"singer_map": None, "singer_p_at_5": None, "melody_map": None}
    n_singer_queries = n_melody_queries = 0
    for name in (*PROJECT_EMBEDDINGS, *BASELINES):
        embedding = embeddings[name]
        row: dict = {"singer_map": None, "singer_p_at_5": None, "melody_map": None}
        gender_row: dict = {"leave_one_singer_out_accuracy": None, "balanced_accuracy": None}
        if embedding.similarity_rows is not None and len(singers) > 1:
            singer_scores, melody_scores = _retrieval(embedding, singers=singers, melodies=melodies)
            singer_means, melody_means = singer_scores.means(), melody_scores.means()
            row.update(singer_map=singer_means["map"], singer_p_at_5=singer_means["p_at_k"])
            chance.update(singer_map=singer_means["chance_map"], singer_p_at_5=singer_means["chance_p_at_k"])
            n_singer_queries = singer_scores.n_queries
            if labels.has_melody:
                row["melody_map"] = melody_means["map"]
                chance["melody_map"] = melody_means["chance_map"]
                n_melody_queries = melody_scores.n_queries
        if embedding.similarity_rows is not None and gender_measurable:
            scores = gender_cross_validation(embedding.features[gendered], genders=genders[gendered], singers=singers[gendered])
            gender_row.update(leave_one_singer_out_accuracy=scores["accuracy"], balanced_accuracy=scores["balanced_accuracy"])
        if embedding.model_version:
            row["model_version"] = embedding.model_version
        if embedding.note:
            row["note"] = gender_row["note"] = embedding.note
        rows[name] = row
        gender_rows[name] = gender_row
    gender_rows["default_head"] = default_head

    if gender_measurable:
        counts = np.unique(genders[gendered], return_counts=True)[1]
        chance.update(gender_accuracy=float(counts.max() / counts.sum()), gender_balanced_accuracy=0.5)
    else:
        chance.update(gender_accuracy=None, gender_balanced_accuracy=None)
    return {
        "n_tracks": int(len(singers)),
        "n_singers": int(len(np.unique(singers))),
        "embeddings": rows,
        "gender": gender_rows,
        "chance": chance,
        "n_singer_queries": n_singer_queries,
        "n_melody_queries": n_melody_queries,
        "n_gender_tracks": int(gendered.sum()) if gender_measurable else 0,
        "notes": notes,
    }


# ---- the table -------------------------------------------------------------------------------

def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def format_table(result: dict) -> str:
    """The result of :func:`evaluate_library` as Markdown tables (readable as plain text too).

    Rows are embeddings, with the chance level beneath; then the gender heads.

    >>> print(format_table({"n_tracks": 4, "n_singers": 2, "n_failed": 0,
    ...     "embeddings": {"mfcc": {"singer_map": 0.75, "singer_p_at_5": 0.5, "melody_map": None}},
    ...     "chance": {"singer_map": 0.5, "singer_p_at_5": 0.33, "melody_map": None},
    ...     "gender": {"default_head": {"accuracy": None, "balanced_accuracy": None, "note": "none yet"}}}))
    4 tracks, 2 singers.
    <BLANKLINE>
    | embedding | singer mAP | singer P@5 | melody mAP | note |
    |---|---:|---:|---:|---|
    | mfcc | 0.750 | 0.500 | — |  |
    | *chance* | 0.500 | 0.330 | — | random ranking |
    <BLANKLINE>
    | gender head | accuracy (leave one singer out) | balanced accuracy | note |
    |---|---:|---:|---|
    | default_head | — | — | none yet |
    """
    chance = result.get("chance", {})
    summary = f"{result['n_tracks']} tracks, {result['n_singers']} singers"
    if result.get("n_failed"):
        n = result["n_failed"]
        summary += f" ({n} labelled track{'s' if n > 1 else ''} could not be analysed and {'are' if n > 1 else 'is'} left out)"
    lines = [summary + "."]
    if result.get("n_singer_queries") is not None:
        lines.append(
            f"Queries: {result['n_singer_queries']} for singers, {result.get('n_melody_queries', 0)} for melodies"
            + (f"; gender on {result['n_gender_tracks']} tracks." if result.get("n_gender_tracks") else ".")
        )
    lines += [f"Note: {note}." for note in result.get("notes", [])]
    lines += ["", "| embedding | singer mAP | singer P@5 | melody mAP | note |", "|---|---:|---:|---:|---|"]
    for name, row in result["embeddings"].items():
        lines.append(f"| {name} | {_cell(row['singer_map'])} | {_cell(row['singer_p_at_5'])} | {_cell(row['melody_map'])} | {row.get('note', '')} |")
    lines.append(f"| *chance* | {_cell(chance.get('singer_map'))} | {_cell(chance.get('singer_p_at_5'))} | {_cell(chance.get('melody_map'))} | random ranking |")

    lines += ["", "| gender head | accuracy (leave one singer out) | balanced accuracy | note |", "|---|---:|---:|---|"]
    for name, row in result["gender"].items():
        accuracy = row.get("leave_one_singer_out_accuracy", row.get("accuracy"))
        lines.append(f"| {name} | {_cell(accuracy)} | {_cell(row['balanced_accuracy'])} | {row.get('note', '')} |")
    if chance.get("gender_accuracy") is not None:
        lines.append(f"| *chance* | {_cell(chance['gender_accuracy'])} | {_cell(chance['gender_balanced_accuracy'])} | majority gender |")
    return "\n".join(lines)
