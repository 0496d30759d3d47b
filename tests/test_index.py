"""The vector index: exact search, the IVF index's recall, and its persistence and incremental update."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nextvox.catalogue import Catalogue
from nextvox.index import VectorIndex, build_ivf, ivf_cells_for, normalise_rows, open_index, pca_2d


def clustered(n: int, *, dim: int = 32, per_cluster: int = 10, seed: int = 0) -> np.ndarray:
    """Unit vectors in clusters of ``per_cluster`` (singers) around random centres: shape (n, dim)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n // per_cluster + 1, dim))
    return normalise_rows((np.repeat(centres, per_cluster, axis=0)[:n] + 0.4 * rng.standard_normal((n, dim))).astype(np.float32))


def test_exact_search_is_the_brute_force_top_k() -> None:
    matrix = clustered(500)
    index = VectorIndex([f"h{i}" for i in range(500)], matrix)
    query = matrix[7] + 0.1
    rows, similarities = index.search(query, 10)
    expected = np.argsort(-(matrix @ normalise_rows(query)))[:10]
    assert rows.tolist() == expected.tolist()
    assert np.all(np.diff(similarities) <= 1e-7) and similarities[0] == pytest.approx(float(index.similarities(query).max()))
    assert len(index.search(query, 10_000)[0]) == 500  # k larger than the index: everything
    assert len(VectorIndex([], np.zeros((0, 4))).search(np.ones(4), 3)[0]) == 0


def test_ivf_recall_at_10_on_clustered_vectors() -> None:
    matrix = clustered(20_000)
    ivf = build_ivf(matrix)
    assert ivf.nlist == ivf_cells_for(20_000)
    queries = matrix[::400]
    recalls = []
    for q in queries:
        truth = set(np.argsort(-(matrix @ q))[:10].tolist())
        _, found = ivf.search(q[None, :], 10)
        recalls.append(len(truth & set(found[0].tolist())) / 10)
    assert np.mean(recalls) >= 0.95


def _store_vectors(catalogue: Catalogue, matrix: np.ndarray, *, start: int = 0, version: str = "v1") -> list[str]:
    keys = [f"{i:032x}" for i in range(start, start + len(matrix))]
    for key, vector in zip(keys, matrix):
        catalogue.record_analysis(key, analysis_version="a", duration_s=1.0, excerpt_start_s=0.0, excerpt_s=1.0,
                                  vectors={"timbre": (version, vector)})
    return keys


def test_open_index_is_exact_when_small_and_persisted_ivf_when_large(tmp_path: Path) -> None:
    catalogue = Catalogue(tmp_path / "data", library=tmp_path)
    matrix = clustered(600)
    _store_vectors(catalogue, matrix[:400])
    assert open_index(catalogue, "timbre").kind == "exact"
    stored = tmp_path / "data" / "index" / "timbre.npz"
    assert not stored.exists()

    first = open_index(catalogue, "timbre", exact_max_vectors=100)
    assert first.kind == "ivf" and len(first) == 400 and stored.exists()
    built_at = stored.stat().st_mtime_ns
    again = open_index(catalogue, "timbre", exact_max_vectors=100)  # nothing changed: loaded as stored
    assert again.keys == first.keys and stored.stat().st_mtime_ns == built_at

    # analyze adds tracks: the stored index is extended (same cells), the new rows are found.
    added = _store_vectors(catalogue, matrix[400:], start=400)
    extended = open_index(catalogue, "timbre", exact_max_vectors=100)
    assert extended.keys[:400] == first.keys and set(extended.keys[400:]) == set(added)
    assert extended.approximate.ntotal == 600 and int(np.load(stored)["trained_size"]) == 400
    rows, _ = extended.search(matrix[500], 1)
    assert extended.keys[rows[0]] == added[100]


def test_open_index_rebuilds_when_vectors_change_or_the_file_is_damaged(tmp_path: Path) -> None:
    catalogue = Catalogue(tmp_path / "data", library=tmp_path)
    matrix = clustered(300)
    keys = _store_vectors(catalogue, matrix)
    open_index(catalogue, "timbre", exact_max_vectors=100)
    stored = tmp_path / "data" / "index" / "timbre.npz"

    # A new model version re-made one vector: the index must not keep the old one.
    catalogue.record_analysis(keys[0], analysis_version="a", duration_s=1.0, excerpt_start_s=0.0, excerpt_s=1.0,
                              vectors={"timbre": ("v2", -matrix[0])})
    rebuilt = open_index(catalogue, "timbre", exact_max_vectors=100)
    rows, similarity = rebuilt.search(-matrix[0], 1)
    assert rebuilt.keys[rows[0]] == keys[0] and similarity[0] == pytest.approx(1.0, abs=1e-5)

    stored.write_bytes(b"not an index")
    assert len(open_index(catalogue, "timbre", exact_max_vectors=100)) == 300  # rebuilt, not trusted


def test_pca_2d_keeps_the_main_axis() -> None:
    rng = np.random.default_rng(0)
    points = np.outer(rng.standard_normal(200), [3.0, 0.0, 0.0]) + 0.01 * rng.standard_normal((200, 3))
    coordinates, share = pca_2d(points)
    assert coordinates.shape == (200, 2) and share[0] > 0.99
    assert pca_2d(np.zeros((0, 3)))[0].shape == (0, 2)
