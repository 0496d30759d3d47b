"""Vector index over the catalogue's vectors: cosine similarity of a query against every track.

Exact search with one matrix product over L2-normalised rows, which takes well under a
millisecond per query at the sizes of a personal library (10^4 tracks x 128 dims).
"""

from __future__ import annotations

import numpy as np

from nextvox.catalogue import Catalogue

__all__ = ["normalise_rows", "VectorIndex"]


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero).

    >>> normalise_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


class VectorIndex:
    """Unit vectors of one name (``timbre``, ``melody``), keyed by content hash."""

    def __init__(self, keys: list[str], matrix: np.ndarray):
        self.keys = keys
        self.matrix = normalise_rows(np.asarray(matrix, dtype=np.float32))  # (N, D)
        self.position = {key: i for i, key in enumerate(keys)}

    @classmethod
    def from_catalogue(cls, catalogue: Catalogue, name: str) -> VectorIndex:
        keys, matrix, _ = catalogue.vectors(name)
        return cls(keys, matrix)

    def __len__(self) -> int:
        return len(self.keys)

    def similarities(self, query: np.ndarray) -> np.ndarray:
        """Cosine similarity of ``query`` (D,) to every indexed vector: shape (N,)."""
        if not len(self):
            return np.zeros(0, dtype=np.float32)
        return self.matrix @ normalise_rows(np.asarray(query, dtype=np.float32))
