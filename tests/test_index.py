"""The vector index: exact search, the IVF index's recall, and its persistence and incremental update."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nextvox.catalogue import Catalogue
from nextvox.index import VectorIndex, build_ivf, ivf_cells_for, normalise_rows, open_index, pca_2d


def _music(root: Path) -> Path:
    """An empty music folder beside the data directory (a data directory inside the library is refused)."""
    (root / "music").mkdir(exist_ok=True)
    return root / "music"


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


def _stored_meta(data_dir: Path, name: str = "timbre") -> dict:
    return json.loads((data_dir / "index" / f"{name}.json").read_text())


def test_open_index_is_exact_when_small_and_persisted_ivf_when_large(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    catalogue = Catalogue(data, library=_music(tmp_path))
    matrix = clustered(600)
    keys = _store_vectors(catalogue, matrix[:400])
    exact = open_index(catalogue, "timbre")
    assert exact.kind == "exact" and isinstance(exact.matrix, np.memmap)  # stored, and opened memory-mapped
    assert exact.key_of(3) == keys[3] and exact.row_of(keys[3]) == 3 and exact.row_of("f" * 32) is None
    assert exact.rows_of([keys[5], "nope", keys[0]]).tolist() == [5, -1, 0]

    first = open_index(catalogue, "timbre", exact_max_vectors=100)
    assert first.kind == "ivf" and len(first) == 400 and _stored_meta(data)["trained_size"] == 400
    built = _stored_meta(data)

    def no_reading(*args, **kwargs):
        raise AssertionError("the catalogue's vectors were read although nothing changed")

    with monkeypatch.context() as patched:  # nothing changed: the stored files are opened as they are
        patched.setattr(catalogue, "vectors", no_reading)
        patched.setattr(catalogue, "vectors_for", no_reading)
        again = open_index(catalogue, "timbre", exact_max_vectors=100)
    assert again.keys == first.keys and _stored_meta(data) == built

    # analyze adds tracks: the stored index is extended (same cells), the new rows are found.
    added = _store_vectors(catalogue, matrix[400:], start=400)
    with monkeypatch.context() as patched:  # only the added vectors are read
        patched.setattr(catalogue, "vectors", no_reading)
        extended = open_index(catalogue, "timbre", exact_max_vectors=100)
    assert extended.keys[:400] == first.keys and set(extended.keys[400:]) == set(added)
    assert extended.approximate.ntotal == 600 and _stored_meta(data)["trained_size"] == 400
    rows, _ = extended.search(matrix[500], 1)
    assert extended.key_of(rows[0]) == added[100]
    assert sorted(p.name for p in (data / "index").iterdir()) == sorted([*_stored_meta(data)["files"].values(), "timbre.json"])


def test_open_index_rebuilds_when_vectors_change_or_the_file_is_damaged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    catalogue = Catalogue(data, library=_music(tmp_path))
    matrix = clustered(300)
    keys = _store_vectors(catalogue, matrix)
    open_index(catalogue, "timbre", exact_max_vectors=100)

    # A new model version re-made one vector: the index must not keep the old one.
    catalogue.record_analysis(keys[0], analysis_version="a", duration_s=1.0, excerpt_start_s=0.0, excerpt_s=1.0,
                              vectors={"timbre": ("v2", -matrix[0])})
    rebuilt = open_index(catalogue, "timbre", exact_max_vectors=100)
    rows, similarity = rebuilt.search(-matrix[0], 1)
    assert rebuilt.key_of(rows[0]) == keys[0] and similarity[0] == pytest.approx(1.0, abs=1e-5)
    assert rebuilt.model_versions == {"v1", "v2"}

    (data / "index" / _stored_meta(data)["files"]["vectors"]).write_bytes(b"not an index")
    assert len(open_index(catalogue, "timbre", exact_max_vectors=100)) == 300  # rebuilt, not trusted
    (data / "index" / "timbre.json").write_text("{")
    assert len(open_index(catalogue, "timbre", exact_max_vectors=100)) == 300

    # Another catalogue in the same data directory (the file was replaced): its index is not trusted.
    catalogue.close()
    (data / "catalogue.sqlite").unlink()
    fresh = Catalogue(data, library=_music(tmp_path))
    _store_vectors(fresh, matrix[:50])
    assert len(open_index(fresh, "timbre")) == 50


def test_pca_2d_keeps_the_main_axis() -> None:
    rng = np.random.default_rng(0)
    points = np.outer(rng.standard_normal(200), [3.0, 0.0, 0.0]) + 0.01 * rng.standard_normal((200, 3))
    coordinates, share = pca_2d(points)
    assert coordinates.shape == (200, 2) and share[0] > 0.99
    assert pca_2d(np.zeros((0, 3)))[0].shape == (0, 2)

