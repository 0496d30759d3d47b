"""Vector index over the catalogue's vectors: the tracks nearest a query by cosine similarity.

Below :data:`EXACT_MAX_VECTORS` vectors the search is exact: a brute-force scan of the
L2-normalised rows on one thread (FAISS ``knn``: about 0.4 ms at 2·10^4 × 128). Above it, a FAISS
inverted-file index (``IndexIVFFlat``, inner product on unit vectors) answers a top-10 in
well under a millisecond at 10^6 with recall@10 ≥ 0.99 on singer-clustered vectors
(``bench/service.py``, ``bench/results/service.md`` say how this was measured and why
IVF rather than an HNSW graph: ten times faster to build, and it grows by appending).

Each name's index is kept under ``DATA_DIR/index/``: ``<name>.json`` names the files of the
current version (the unit vectors, their content hashes and model versions as ``.npy``
arrays, and the FAISS index when there is one) and the catalogue generation they were built
at (:meth:`nextvox.catalogue.Catalogue.vectors_generation`). A query opens them
memory-mapped, so it reads only the pages it touches: the catalogue's vectors are not read
at all while the generation is unchanged. When it moved, :func:`open_index` compares the
stored hashes and versions with the catalogue's: when ``analyze`` has only added tracks,
just the new vectors are read and appended (the IVF cells are kept, no retraining); when a
vector was removed or re-made by another model version, or the library has outgrown the
index's cells, the index is rebuilt. ``analyze`` brings the indexes up to date as it ends,
so queries find them current.
"""

from __future__ import annotations

import json
import os
import uuid
from functools import cached_property
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
    "refresh_indexes",
    "pca_2d",
]

# Measured (bench/results/service.md): exact search stays under 1 ms p99 up to about this many
# 128-d vectors on one core; above it the IVF index is faster at recall@10 >= 0.99.
EXACT_MAX_VECTORS = 20_000
INDEX_FORMAT_VERSION = 2
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
    keys : list of str, or np.ndarray of bytes, length N
        Content hashes, in row order.
    matrix : np.ndarray, shape (N, D)
        The vectors (normalised here unless ``normalised``; may be memory-mapped then).
    approximate : faiss.Index, optional
        An index whose ids are row numbers of ``matrix``; exact search when None.
    model_versions : frozenset of str
        Versions of the models that made the vectors.
    normalised : bool
        The rows of ``matrix`` are unit already: used as they are, never copied.
    key_order : np.ndarray of int, shape (N,), optional
        The rows in the order of their keys (computed when not given).
    """

    def __init__(self, keys, matrix: np.ndarray, *, approximate=None, model_versions: frozenset[str] = frozenset(),
                 normalised: bool = False, key_order: np.ndarray | None = None):
        self._keys = np.asarray(keys, dtype="S") if len(keys) else np.zeros(0, dtype="S1")  # (N,) ASCII hashes
        self.model_versions = model_versions
        self.matrix = matrix if normalised else normalise_rows(np.asarray(matrix, dtype=np.float32))  # (N, D)
        self._key_order = np.argsort(self._keys, kind="stable") if key_order is None else key_order
        self.approximate = approximate

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue, name: str) -> VectorIndex:
        """An exact index of every stored vector of ``name``."""
        keys, matrix, versions = catalogue.vectors(name)
        return cls(keys, matrix, model_versions=frozenset(versions))

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def kind(self) -> str:
        """``exact`` or ``ivf`` (FAISS IndexIVFFlat)."""
        return "exact" if self.approximate is None else "ivf"

    def key_of(self, row: int) -> str:
        """The content hash of one row."""
        return self._keys[row].decode()

    def rows_of(self, keys) -> np.ndarray:
        """The rows of some content hashes, shape (len(keys),) int64: -1 where a hash is not indexed."""
        wanted = np.asarray(list(keys), dtype="S") if len(keys) else np.zeros(0, dtype="S1")
        if not len(self) or not len(wanted):
            return np.full(len(wanted), -1, dtype=np.int64)
        sorted_keys = self._keys[self._key_order]
        at = np.minimum(np.searchsorted(sorted_keys, wanted), len(self) - 1)
        return np.where(sorted_keys[at] == wanted, self._key_order[at], -1).astype(np.int64)

    def row_of(self, key: str) -> int | None:
        """The row of one content hash, or None when it is not indexed."""
        row = int(self.rows_of([key])[0])
        return None if row < 0 else row

    @cached_property
    def keys(self) -> list[str]:
        """Every content hash in row order (a list built on first use: prefer :meth:`key_of`)."""
        return [key.decode() for key in self._keys]

    @cached_property
    def position(self) -> dict[str, int]:
        """Content hash -> row (a dict built on first use: prefer :meth:`row_of`)."""
        return {key: i for i, key in enumerate(self.keys)}

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
            similarity, rows = faiss.knn(unit, np.ascontiguousarray(self.matrix), k, metric=faiss.METRIC_INNER_PRODUCT)  # (1, k) each
        else:
            similarity, rows = self.approximate.search(unit, k)  # (1, k) each
        found = rows[0] >= 0  # -1 where the visited cells held fewer than k vectors
        return rows[0][found], similarity[0][found]


# ---- the stored index -------------------------------------------------------------------------


def _meta_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "index" / f"{name}.json"


class _Stored:
    """One stored version of a name's index, opened memory-mapped."""

    def __init__(self, folder: Path, meta: dict):
        self.meta = meta
        files = {part: folder / file for part, file in meta["files"].items()}
        self.files = files
        self.keys = np.load(files["keys"], mmap_mode="r")  # (N,) bytes
        self.key_order = np.load(files["key_order"], mmap_mode="r")  # (N,) int64
        self.version_ids = np.load(files["version_ids"], mmap_mode="r")  # (N,) int32: positions in meta["versions"]
        self.vectors = np.load(files["vectors"], mmap_mode="r")  # (N, D) float32, unit rows
        if not len(self.keys) == len(self.key_order) == len(self.version_ids) == len(self.vectors) == meta["n"]:
            raise ValueError("the index files disagree in length")

    def ivf(self, *, writable: bool = False):
        """The stored FAISS index (memory-mapped unless ``writable``), or None when there is none."""
        import faiss

        if "ivf" not in self.files:
            return None
        ann = faiss.read_index(str(self.files["ivf"]), 0 if writable else faiss.IO_FLAG_MMAP)
        if ann.ntotal != self.meta["n"]:
            raise ValueError("the FAISS index and the vectors disagree")
        return ann


def _load_stored(data_dir: Path, name: str) -> _Stored | None:
    """The stored index of ``name``, or None when absent or unusable (damaged, older format, files gone)."""
    path = _meta_path(data_dir, name)
    try:
        meta = json.loads(path.read_text())
        if meta.get("format_version") != INDEX_FORMAT_VERSION:
            return None
        return _Stored(path.parent, meta)
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):
        return None  # a damaged or older file is rebuilt, never trusted


def _store(data_dir: Path, name: str, *, keys: np.ndarray, versions: list[str], vectors: np.ndarray, ann,
           trained_size: int | None, catalogue_id: str, generation: int) -> _Stored:
    """Write a new version of the index files, then point ``<name>.json`` at it (atomically) and drop the old files.

    A reader that opened the old files keeps them (they are unlinked, not overwritten).
    """
    import faiss

    folder = Path(data_dir) / "index"
    previous = _load_stored(data_dir, name)
    token = uuid.uuid4().hex[:12]
    distinct = sorted(set(versions))
    version_ids = np.searchsorted(np.array(distinct), np.array(versions)).astype(np.int32) if versions else np.zeros(0, np.int32)
    parts = {"keys": keys, "key_order": np.argsort(keys, kind="stable").astype(np.int64),
             "version_ids": version_ids, "vectors": np.ascontiguousarray(vectors, dtype=np.float32)}
    files = {part: f"{name}.{token}.{part}.npy" for part in parts}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for part, array in parts.items():
            np.save(folder / files[part], array, allow_pickle=False)
        if ann is not None:
            files["ivf"] = f"{name}.{token}.faiss"
            faiss.write_index(ann, str(folder / files["ivf"]))
        meta = {"format_version": INDEX_FORMAT_VERSION, "catalogue_id": catalogue_id, "generation": generation,
                "n": int(len(keys)), "versions": distinct, "trained_size": trained_size, "files": files}
        with atomic_path(_meta_path(data_dir, name)) as part:
            part.write_text(json.dumps(meta))
    except OSError as error:
        raise CatalogueError(f"cannot write the vector index under {folder}: {error.strerror}") from None
    for stale in ([*previous.files.values()] if previous else []) + [folder / f"{name}.npz"]:  # .npz: format 1
        stale.unlink(missing_ok=True)
    return _Stored(folder, meta)


def _as_index(stored: _Stored, *, approximate) -> VectorIndex:
    return VectorIndex(stored.keys, stored.vectors, approximate=approximate, model_versions=frozenset(stored.meta["versions"]),
                       normalised=True, key_order=stored.key_order)


def open_index(catalogue: Catalogue, name: str, *, exact_max_vectors: int = EXACT_MAX_VECTORS) -> VectorIndex:
    """The index of the catalogue's ``name`` vectors, brought up to date: exact when small, else IVF.

    Parameters
    ----------
    catalogue : Catalogue
    name : str
        Vector name (``timbre``, ``melody``).
    exact_max_vectors : int
        Largest library searched exactly.
    """
    generation = catalogue.vectors_generation(name)
    stored = _load_stored(catalogue.data_dir, name)
    if stored is not None and stored.meta["catalogue_id"] != catalogue.catalogue_id:
        stored = None  # another catalogue's index (the catalogue file was replaced)
    try:
        if stored is not None and stored.meta["generation"] == generation:
            approximate = stored.ivf() if stored.meta["n"] > exact_max_vectors else None
            if stored.meta["n"] <= exact_max_vectors or approximate is not None:
                return _as_index(stored, approximate=approximate)
            if not os.access(catalogue.data_dir, os.W_OK):
                return _as_index(stored, approximate=build_ivf(np.asarray(stored.vectors)))
            ann = build_ivf(np.asarray(stored.vectors))
            stored = _store(catalogue.data_dir, name, keys=np.asarray(stored.keys), versions=_versions_of(stored),
                            vectors=stored.vectors, ann=ann, trained_size=stored.meta["n"],
                            catalogue_id=catalogue.catalogue_id, generation=generation)
            return _as_index(stored, approximate=stored.ivf())
        if stored is not None and os.access(catalogue.data_dir, os.W_OK):
            updated = _appended(catalogue, name, stored, generation=generation, exact_max_vectors=exact_max_vectors)
            if updated is not None:
                return updated
    except (OSError, ValueError, RuntimeError):
        pass  # files removed by another writer meanwhile, or damaged: rebuilt below
    hashes, matrix, versions = catalogue.vectors(name)
    if not hashes:
        return VectorIndex([], np.zeros((0, 0), dtype=np.float32))
    matrix = normalise_rows(matrix.astype(np.float32, copy=False))
    ann = build_ivf(matrix) if len(hashes) > exact_max_vectors else None
    if catalogue.catalogue_id is None or not os.access(catalogue.data_dir, os.W_OK):
        # A catalogue read where nothing can be written (a read-only copy): the index lives in memory.
        return VectorIndex(hashes, matrix, approximate=ann, model_versions=frozenset(versions), normalised=True)
    stored = _store(catalogue.data_dir, name, keys=np.asarray(hashes, dtype="S"), versions=versions, vectors=matrix, ann=ann,
                    trained_size=len(hashes) if ann is not None else None, catalogue_id=catalogue.catalogue_id,
                    generation=generation)
    return _as_index(stored, approximate=stored.ivf())


def _versions_of(stored: _Stored) -> list[str]:
    distinct = stored.meta["versions"]
    return [distinct[i] for i in np.asarray(stored.version_ids)]


def _appended(catalogue: Catalogue, name: str, stored: _Stored, *, generation: int, exact_max_vectors: int) -> VectorIndex | None:
    """The stored index extended by the vectors ``analyze`` added since; None when any stored vector changed or left."""
    hashes, versions = catalogue.vector_versions(name)
    current = dict(zip(hashes, versions))
    stored_keys = [key.decode() for key in np.asarray(stored.keys)]
    if any(current.get(key) != version for key, version in zip(stored_keys, _versions_of(stored))):
        return None
    known = set(stored_keys)
    added = [h for h in hashes if h not in known]
    new_vectors = catalogue.vectors_for(name, added)
    if len(new_vectors) != len(added):
        return None  # changed while we read: start afresh
    n = len(stored_keys) + len(added)
    trained_size = stored.meta["trained_size"]
    ann = None
    if n > exact_max_vectors:
        ann = stored.ivf(writable=True)
        if ann is None or n > REBUILD_GROWTH_FACTOR * trained_size:
            return None  # first IVF, or the cells are outgrown: a full rebuild trains them
    if added:
        added_matrix = normalise_rows(np.stack([new_vectors[h] for h in added]).astype(np.float32))  # (A, D)
        if added_matrix.shape[1] != stored.vectors.shape[1]:
            return None
        vectors = np.concatenate([stored.vectors, added_matrix])
        if ann is not None:
            ann.add(added_matrix)
    else:
        vectors = stored.vectors
    keys = np.concatenate([np.asarray(stored.keys), np.asarray(added, dtype="S")]) if added else np.asarray(stored.keys)
    updated = _store(catalogue.data_dir, name, keys=keys.astype("S"), versions=[*_versions_of(stored), *(current[h] for h in added)],
                     vectors=vectors, ann=ann, trained_size=trained_size if ann is not None else None,
                     catalogue_id=catalogue.catalogue_id, generation=generation)
    return _as_index(updated, approximate=updated.ivf())


def refresh_indexes(catalogue: Catalogue, names: tuple[str, ...] = ("timbre", "melody")) -> None:
    """Bring the stored indexes up to date (``analyze`` calls this as it ends, so queries find them current)."""
    for name in names:
        open_index(catalogue, name)


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
