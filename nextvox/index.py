"""Vector index over the catalogue's vectors: the tracks nearest a query by cosine similarity.

Below :data:`EXACT_MAX_VECTORS` vectors the search is exact: a brute-force scan of the
L2-normalised rows on one thread (FAISS ``knn``: about 0.4 ms at 2·10^4 × 128). Above it, a FAISS
inverted-file index (``IndexIVFFlat``, inner product on unit vectors) answers a top-10 in
well under a millisecond at 10^6 with recall@10 ≥ 0.99 on singer-clustered vectors
(``bench/service.py``, ``bench/results/service.md`` say how this was measured and why
IVF rather than an HNSW graph: ten times faster to build, and it grows by appending).

The approximate index is kept under ``DATA_DIR/index/<name>.npz`` with the content hashes
and model versions it was built from. :func:`open_index` compares that with the catalogue:
when ``analyze`` has only added tracks, the new vectors are appended to the stored index
(no retraining); when a vector was removed or re-made by another model version, or the
library has outgrown the index's cells, the index is rebuilt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nextvox.catalogue import Catalogue
from nextvox.errors import CatalogueError
from nextvox.files import atomic_path

__all__ = [
    "EXACT_MAX_VECTORS",
    "INDEX_FORMAT_VERSION",
    "normalise_rows",
    "ivf_cells_for",
    "nprobe_for",
    "build_ivf",
    "VectorIndex",
    "open_index",
    "pca_2d",
]

# Measured (bench/results/service.md): exact search stays under 1 ms p99 up to about this many
# 128-d vectors on one core; above it the IVF index is faster at recall@10 >= 0.99.
EXACT_MAX_VECTORS = 20_000
INDEX_FORMAT_VERSION = 1
# Rebuild when the library has grown this many times past the size the cells were trained on:
# the cells then hold too many vectors each and queries slow down.
REBUILD_GROWTH_FACTOR = 4.0
TRAINING_VECTORS_PER_CELL = 40  # k-means needs ~40 points a centroid (FAISS warns below 39)


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero).

    >>> normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def ivf_cells_for(n_vectors: int) -> int:
    """Number of IVF cells (k-means centroids) for ``n_vectors``: about 2·sqrt(N), a power of two.

    >>> ivf_cells_for(10**6)
    2048
    >>> ivf_cells_for(10**4)
    256
    """
    return int(2 ** round(np.log2(max(16.0, 2 * np.sqrt(n_vectors)))))


def nprobe_for(n_cells: int) -> int:
    """Cells visited per query: 1/32 of them, at least 16 (recall@10 ≥ 0.99 measured).

    >>> nprobe_for(2048)
    64
    """
    return max(16, n_cells // 32)


def build_ivf(matrix: np.ndarray, *, seed: int = 0):
    """A trained FAISS ``IndexIVFFlat`` (inner product) holding the rows of ``matrix`` as ids 0..N-1.

    Parameters
    ----------
    matrix : np.ndarray, shape (N, D), float32
        Unit rows.
    seed : int
        Seed of the training sample and of k-means.
    """
    import faiss

    n, dim = matrix.shape
    n_cells = ivf_cells_for(n)
    quantiser = faiss.IndexFlatIP(dim)
    ivf = faiss.IndexIVFFlat(quantiser, dim, n_cells, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = seed
    sample = np.random.default_rng(seed).choice(n, size=min(n, TRAINING_VECTORS_PER_CELL * n_cells), replace=False)
    ivf.train(np.ascontiguousarray(matrix[np.sort(sample)]))
    ivf.add(np.ascontiguousarray(matrix))
    ivf.nprobe = nprobe_for(n_cells)
    return ivf


class VectorIndex:
    """Unit vectors of one name (``timbre``, ``melody``), keyed by content hash.

    Parameters
    ----------
    keys : list of str, length N
        Content hashes, in row order.
    matrix : np.ndarray, shape (N, D)
        The vectors (normalised here).
    approximate : faiss.Index, optional
        An index whose ids are row numbers of ``matrix``; exact search when None.
    model_versions : frozenset of str
        Versions of the models that made the vectors.
    """

    def __init__(self, keys: list[str], matrix: np.ndarray, *, approximate=None, model_versions: frozenset[str] = frozenset()):
        self.keys = keys
        self.model_versions = model_versions
        self.matrix = normalise_rows(np.asarray(matrix, dtype=np.float32))  # (N, D)
        self.position = {key: i for i, key in enumerate(keys)}
        self.approximate = approximate

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue, name: str) -> VectorIndex:
        """An exact index of every stored vector of ``name``."""
        keys, matrix, versions = catalogue.vectors(name)
        return cls(keys, matrix, model_versions=frozenset(versions))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def kind(self) -> str:
        """``exact`` or ``ivf`` (FAISS IndexIVFFlat)."""
        return "exact" if self.approximate is None else "ivf"

    def similarities(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``query`` (D,) to every indexed vector: shape (N,)."""
        if not len(self):
            return np.zeros(0, dtype=np.float32)
        return self.matrix @ normalise_rows(np.asarray(query, dtype=np.float32))

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` rows most like ``query`` (D,), best first.

        Returns
        -------
        rows : np.ndarray, shape (min(k, N),), int64
        similarities : np.ndarray, shape (min(k, N),), float32
        """
        k = min(k, len(self))
        if k <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        import faiss

        faiss.omp_set_num_threads(1)  # one query: more threads only contend (numpy's BLAS on 2 threads was 15x slower)
        unit = normalise_rows(np.asarray(query, dtype=np.float32))[None, :]  # (1, D)
        if self.approximate is None:
            similarity, rows = faiss.knn(unit, self.matrix, k, metric=faiss.METRIC_INNER_PRODUCT)  # (1, k) each
        else:
            similarity, rows = self.approximate.search(unit, k)  # (1, k) each
        found = rows[0] >= 0  # -1 where the visited cells held fewer than k vectors
        return rows[0][found], similarity[0][found]


def _index_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "index" / f"{name}.npz"


def _load_stored(path: Path):
    """(keys, versions, trained_size, faiss index) from ``path``, or None when absent or unusable."""
    import faiss

    try:
        with np.load(path, allow_pickle=False) as stored:
            if int(stored["format_version"]) != INDEX_FORMAT_VERSION:
                return None
            keys = stored["keys"].tolist()
            versions = stored["versions"].tolist()
            trained_size = int(stored["trained_size"])
            ann = faiss.deserialize_index(stored["faiss"])
    except (OSError, KeyError, ValueError, RuntimeError):
        return None  # a damaged or older file is rebuilt, never trusted
    if ann.ntotal != len(keys):
        return None
    return keys, versions, trained_size, ann


def _store(path: Path, keys: list[str], versions: list[str], trained_size: int, ann) -> None:
    """Write the index atomically (temporary file, then rename)."""
    import faiss

    try:
        with atomic_path(path) as part, open(part, "wb") as f:
            np.savez(
                f, format_version=INDEX_FORMAT_VERSION, keys=np.array(keys, dtype=str),
                versions=np.array(versions, dtype=str), trained_size=trained_size, faiss=faiss.serialize_index(ann),
            )
    except OSError as error:
        raise CatalogueError(f"cannot write the vector index {path}: {error.strerror}") from None


def open_index(catalogue: Catalogue, name: str, *, exact_max_vectors: int = EXACT_MAX_VECTORS) -> VectorIndex:
    """The index of the catalogue's ``name`` vectors: exact when small, else the stored IVF index, brought up to date.

    Parameters
    ----------
    catalogue : Catalogue
    name : str
        Vector name (``timbre``, ``melody``).
    exact_max_vectors : int
        Largest library searched exactly.
    """
    hashes, matrix, versions = catalogue.vectors(name)
    model_versions = frozenset(versions)
    if len(hashes) <= exact_max_vectors:
        return VectorIndex(hashes, matrix, model_versions=model_versions)
    row_of = {h: i for i, h in enumerate(hashes)}
    matrix = normalise_rows(matrix.astype(np.float32, copy=False))
    path = _index_path(catalogue.data_dir, name)
    stored = _load_stored(path)
    if stored is not None:
        keys, stored_versions, trained_size, ann = stored
        unchanged = all(row_of.get(k) is not None and versions[row_of[k]] == v for k, v in zip(keys, stored_versions))
        if unchanged and len(hashes) <= REBUILD_GROWTH_FACTOR * trained_size:
            known = set(keys)
            added = [h for h in hashes if h not in known]
            if added:
                ann.add(np.ascontiguousarray(matrix[[row_of[h] for h in added]]))
                keys = keys + added
                _store(path, keys, [versions[row_of[h]] for h in keys], trained_size, ann)
            return VectorIndex(keys, matrix[[row_of[h] for h in keys]], approximate=ann, model_versions=model_versions)
    ann = build_ivf(matrix)
    _store(path, hashes, versions, len(hashes), ann)
    return VectorIndex(hashes, matrix, approximate=ann, model_versions=model_versions)


def pca_2d(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Principal-component projection of vectors onto their two main axes (for the map).

    Parameters
    ----------
    matrix : np.ndarray, shape (N, D)

    Returns
    -------
    coordinates : np.ndarray, shape (N, 2), float32
    explained_variance : np.ndarray, shape (2,)
        Share of the total variance along each axis (zeros when there is none).

    >>> xy, share = pca_2d(np.array([[0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [4.0, 0.0, 1.0]]))
    >>> np.abs(xy[:, 0]).round(1).tolist(), share.round(2).tolist()
    ([2.0, 0.0, 2.0], [1.0, 0.0])
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    n, dim = matrix.shape
    if n == 0:
        return np.zeros((0, 2), dtype=np.float32), np.zeros(2)
    centred = matrix - matrix.mean(axis=0)
    covariance = centred.T @ centred / max(1, n - 1)  # (D, D): cheap for any N
    variances, axes = np.linalg.eigh(covariance)  # ascending
    top = np.argsort(variances)[::-1][:2]
    axes = np.pad(axes[:, top], ((0, 0), (0, 2 - top.size)))  # (D, 2), zero-padded when D < 2
    total = variances.sum()
    share = np.pad(variances[top], (0, 2 - top.size)) / total if total > 0 else np.zeros(2)
    return (centred @ axes).astype(np.float32), np.clip(share, 0.0, 1.0)
