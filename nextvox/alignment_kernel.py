"""The compiled local-alignment recurrence behind :mod:`nextvox.melody_match` (numba).

Its own module so that numba, which takes a while to import, loads only when a melody is
matched, not with every query.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["alignment_maxima"]


@numba.njit(cache=True, nogil=True, inline="always")
def step(s, sim_d, d, sim_h, h, sim_v, v, gap_onset, gap_extend):  # pragma: no cover (compiled)
    """One cell of the recurrence from its predecessors' similarities and scores (NaN: no such predecessor)."""
    extend = max(max(d, h), v) + s  # float64: NaN predecessors lose every max
    gap = max(0.0, max(max(d - (gap_onset if sim_d > 0 else gap_extend), h - (gap_onset if sim_h > 0 else gap_extend)),
                       v - (gap_onset if sim_v > 0 else gap_extend)))
    return extend if s > 0 else gap


@numba.njit(cache=True, nogil=True)
def alignment_maxima(similarity: np.ndarray, gap_onset: float, gap_extend: float) -> np.ndarray:  # pragma: no cover (compiled)
    """The best local-alignment score of each of a batch of similarity matrices, (B, T_a, T_b) -> (B,) float32.

    The recurrence of librosa's ``sequence.rqa`` with knight moves (its results to the last
    bit: the same float64 arithmetic, stored as float32), for a whole batch in one compiled
    loop and without the path. A step extends the best of its predecessors (i-1, j-1),
    (i-1, j-2) and (i-2, j-1) where it matches (similarity > 0); where it does not, the best
    of them less the gap cost (onset after a match, extension after a gap), never below 0.
    The first row and column hold the similarities (negative ones as 0). No cell depends on
    another of its row, so the inner loop runs branch-free over a row (the compiler
    vectorises it). ``similarity`` may be any view (its rows need not be contiguous).
    """
    n, rows, cols = similarity.shape
    best = np.zeros(n, dtype=np.float32)
    score = np.empty((rows, cols), dtype=np.float32)
    nan = np.nan
    for b in range(n):
        sim = similarity[b]
        for j in range(cols):
            score[0, j] = max(sim[0, j], np.float32(0.0))  # negative similarities count as 0
        for i in range(rows):
            score[i, 0] = max(sim[i, 0], np.float32(0.0))
        for i in range(1, rows):
            if cols > 1:  # column 1: no (i-1, j-2) predecessor
                up = np.float64(score[i - 2, 0]) if i >= 2 else nan
                score[i, 1] = np.float32(step(np.float64(sim[i, 1]), sim[i - 1, 0], np.float64(score[i - 1, 0]), 0.0, nan,
                                               sim[i - 2, 0] if i >= 2 else 0.0, up, gap_onset, gap_extend))
            if i == 1:  # row 1: no (i-2, j-1) predecessor
                for j in range(2, cols):
                    score[1, j] = np.float32(step(np.float64(sim[1, j]), sim[0, j - 1], np.float64(score[0, j - 1]),
                                                   sim[0, j - 2], np.float64(score[0, j - 2]), 0.0, nan, gap_onset, gap_extend))
                continue
            for j in range(2, cols):
                score[i, j] = np.float32(step(
                    np.float64(sim[i, j]), sim[i - 1, j - 1], np.float64(score[i - 1, j - 1]), sim[i - 1, j - 2],
                    np.float64(score[i - 1, j - 2]), sim[i - 2, j - 1], np.float64(score[i - 2, j - 1]), gap_onset, gap_extend))
        best[b] = score.max()
    return best
