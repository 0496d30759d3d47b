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

import csv
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
from pathlib import Path, PurePosixPath

import numpy as np

from nextvox.analysis import EXCERPT_VERSION, TIMBRE_STANDIN_VERSION, AnalysisSettings, analyze_library
from nextvox.audio import load_excerpt
from nextvox.catalogue import Catalogue, resolve_library
from nextvox.constants import SAMPLE_RATE_HZ
from nextvox.errors import AudioError, MissingDependencyError, NextvoxError
from nextvox.features import log_mel, mfcc_statistics
from nextvox.separation import DEFAULT_SEPARATOR

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
GENDERS = ("female", "male")
BASELINES = ("mfcc", "resemblyzer", "chroma")
#: Bump a version when its baseline's computation changes: the cache key holds it.
BASELINE_VERSIONS = {
    "mfcc": "mfcc-stats-1",
    "resemblyzer": "resemblyzer-0.1.4-1",
    "chroma": "chroma-cqt-mean-1",
}
PROJECT_EMBEDDINGS = ("timbre", "melody", "combined")
QUERY_BLOCK = 512  # similarity rows computed at once: 512 x 20,000 float32 is 40 MB
MAX_GENDER_FOLDS = 50  # beyond this many singers, singers are grouped into this many folds
CHROMA_HOP_LENGTH = 512  # samples between chroma frames (32 ms)

#: progress(stage, done, total); stage is "scan", "analyze" or "baselines".
ProgressCallback = Callable[[str, int, int], None]


# ---- similarity ------------------------------------------------------------------------------

def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; an all-zero row stays zero (similar to nothing)."""
    vectors = np.nan_to_num(np.asarray(vectors, dtype=np.float32))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


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
    >>> float(transposition_invariant_similarity(c_major, d_major)[0, 0])
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


# ---- gender ----------------------------------------------------------------------------------

def gender_cross_validation(
    features: np.ndarray, *, genders: np.ndarray, singers: np.ndarray, max_folds: int = MAX_GENDER_FOLDS
) -> dict[str, float]:
    """Accuracy of a logistic-regression gender head on singers it never saw.

    Each singer's tracks are predicted by a head (standardised features, class-balanced
    logistic regression) trained on the other singers' tracks: leave one singer out. With
    more than ``max_folds`` singers, singers are dealt into ``max_folds`` groups, still so
    that no singer is in both the training and the test part of a fold.

    Parameters
    ----------
    features : np.ndarray, shape (N, D)
    genders : np.ndarray of str, shape (N,)
        ``"female"`` or ``"male"`` for every track.
    singers : np.ndarray, shape (N,)
    max_folds : int

    Returns
    -------
    dict
        ``accuracy`` (fraction of tracks right) and ``balanced_accuracy`` (mean of the
        per-gender recalls, 0.5 for a constant guess).

    Raises
    ------
    ValueError
        With fewer than two singers or a single gender.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    genders, singers = np.asarray(genders), np.asarray(singers)
    classes = np.unique(genders)
    unique_singers = np.unique(singers)
    if len(classes) < 2 or len(unique_singers) < 2:
        raise ValueError("gender cross-validation needs both genders and at least two singers")
    fold_of_singer = {singer: i % max_folds for i, singer in enumerate(unique_singers)}
    folds = np.array([fold_of_singer[s] for s in singers])
    features = np.nan_to_num(np.asarray(features, dtype=np.float64))
    predicted = np.empty_like(genders)
    for fold in np.unique(folds):
        test = folds == fold
        train_genders = genders[~test]
        if len(np.unique(train_genders)) < 2:  # the held-out singers were all of one gender
            predicted[test] = train_genders[0]
            continue
        head = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
        head.fit(features[~test], train_genders)
        predicted[test] = head.predict(features[test])
    right = predicted == genders
    recalls = [float(right[genders == c].mean()) for c in classes]
    return {"accuracy": float(right.mean()), "balanced_accuracy": float(np.mean(recalls))}


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
        target = self.path(name, content_hash)
        temporary = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            np.save(temporary, vector)
            os.replace(temporary, target)
        except OSError:
            temporary.unlink(missing_ok=True)


def _baseline_worker_init() -> None:
    import torch

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
        max_workers=min(jobs, len(missing)), mp_context=multiprocessing.get_context("spawn"), initializer=_baseline_worker_init
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
