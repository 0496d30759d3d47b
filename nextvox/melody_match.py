"""How alike two songs' melody sequences are: local alignment in the best of several keys.

numpy and numba only (no torch), so that a query answered from stored vectors and
sequences never loads the TCAE's framework. The sequences themselves come from
:func:`nextvox.models.tcae.melody_sequence`.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "KEY_SHIFTS", "sequence_in_keys", "sequence_keys", "alignment_scores", "local_alignment", "sequence_similarity",
    "sequence_similarities", "as_sung_similarities",
]

# Keys a melody sequence is also taken in, semitones, the song as sung first. A renditions' key
# differs by whatever suits its singer; the latent follows the key in part, so two songs are
# matched in the best of these, both ways (one song raised against the other as sung, then the
# other raised): relative keys -6 ... +6 in steps of 2, each once. -4..4 found fewer tunes
# (docs/models.md); the 7 keys 0, +-2, +-4, +-6 stored before catalogue schema 3 matched each
# relative key twice at twice the size (bench/results/catalogue_size.md).
KEY_SHIFTS = (0.0, 2.0, 4.0, 6.0)


def sequence_in_keys(sequence: np.ndarray, *, stored_keys: tuple[float, ...]) -> np.ndarray:
    """A melody sequence taken in ``stored_keys`` (every key of KEY_SHIFTS among them, in any order), cut to KEY_SHIFTS.

    For sequences made when more keys were kept (catalogue schema 2: 0, -2, +2, -4, +4, -6, +6).
    Shapes: (len(stored_keys) * steps, D) -> (len(KEY_SHIFTS) * steps, D), the dtype kept.

    >>> sequence_in_keys(np.arange(7.0)[:, None], stored_keys=(0.0, -2.0, 2.0, -4.0, 4.0, -6.0, 6.0)).ravel().tolist()
    [0.0, 2.0, 4.0, 6.0]
    """
    by_key = np.asarray(sequence).reshape(len(stored_keys), -1, sequence.shape[-1])  # (keys, steps, D)
    return by_key[[stored_keys.index(k) for k in KEY_SHIFTS]].reshape(-1, sequence.shape[-1])


def sequence_keys(sequence: np.ndarray) -> np.ndarray:
    """A stored melody sequence, (len(KEY_SHIFTS) * steps, D), as one unit-step sequence per key: (len(KEY_SHIFTS), steps, D) float32.

    A stack of sequences of one length, (..., len(KEY_SHIFTS) * steps, D), gives (..., len(KEY_SHIFTS), steps, D).
    """
    keys = np.asarray(sequence, np.float32)
    return _unit_steps(keys.reshape(*keys.shape[:-2], len(KEY_SHIFTS), -1, keys.shape[-1]))


def _as_sung_steps(sequence: np.ndarray) -> np.ndarray:
    """The first key of a stored melody sequence (the song as sung), unit steps: (len(KEY_SHIFTS) * steps, D) -> (steps, D) float32.

    Equal to ``sequence_keys(sequence)[0]`` without making the other keys unit; a stack
    (..., len(KEY_SHIFTS) * steps, D) gives (..., steps, D).
    """
    sequence = np.asarray(sequence)
    return _unit_steps(np.asarray(sequence[..., : sequence.shape[-2] // len(KEY_SHIFTS), :], np.float32))


def _unit_steps(steps: np.ndarray) -> np.ndarray:
    """Each step (last axis) of a float32 array at unit length (an all-zero step stays zero); shape kept."""
    return steps / (np.linalg.norm(steps, axis=-1, keepdims=True) + 1e-6)


GAP_ONSET = 0.5  # alignment score lost where a gap opens (a step that matches nothing) ...
GAP_EXTEND = 0.2  # ... and for each further step of it


def alignment_scores(similarity: np.ndarray) -> np.ndarray:
    """Best local-alignment score of each similarity matrix of a batch, (B, T_a, T_b) -> (B,) float32 (not divided by the lengths).

    Negative similarities count as 0.
    """
    from nextvox.alignment_kernel import alignment_maxima  # numba loads only when a melody is matched

    return alignment_maxima(np.asarray(similarity, dtype=np.float32), GAP_ONSET, GAP_EXTEND)


def local_alignment(a: np.ndarray, b: np.ndarray) -> float:
    """How well the best-matching stretches of two unit-step sequences line up, 0 ... 1.

    Cosine similarities of every pair of steps (negatives as 0) are aligned as librosa's
    recurrence quantification does (``sequence.rqa``: a Smith-Waterman local alignment whose
    knight moves absorb tempo differences, gaps penalised; :func:`alignment_scores`), and
    the best path's score is divided by ``sqrt(T_a * T_b)``: 1 for a sequence and itself.

    Parameters
    ----------
    a, b : np.ndarray, shapes (T_a, D) and (T_b, D), rows of unit length
    """
    return float(alignment_scores((a @ b.T)[None])[0] / np.sqrt(len(a) * len(b)))


def sequence_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two melody sequences are: their best local alignment, in the best of their keys.

    Either song is taken as sung against the other in each of KEY_SHIFTS
    (:func:`local_alignment` of 7 pairs), so a tune sung up to an octave higher or lower,
    faster or slower, from another verse on, still lines up. 1 means identical; unrelated
    songs score well below.

    Parameters
    ----------
    a, b : np.ndarray, shapes (len(KEY_SHIFTS) * T_a, D) and (len(KEY_SHIFTS) * T_b, D)
        Melody sequences of the same model (:func:`melody_sequence`).

    Returns
    -------
    float

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(len(KEY_SHIFTS) * 40, 8))
    >>> round(sequence_similarity(x, x), 6)
    1.0
    """
    return float(sequence_similarities(a, [b])[0])


def sequence_similarities(query: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray:
    """:func:`sequence_similarity` of one sequence with each of many, shape (len(candidates),) float32.

    The query's keys are made unit once, the candidates' once for each length, and each
    candidate's 2 * len(KEY_SHIFTS) - 1 alignments run as two compiled batches
    (:func:`alignment_scores`): about 20 times faster than pair by pair.
    """
    a_keys = sequence_keys(query)  # (K, T_a, D)
    found = np.zeros(len(candidates), dtype=np.float32)
    for members in _by_shape(candidates):
        for c, b_keys in zip(members, sequence_keys(np.stack([candidates[c] for c in members]))):  # (K, T_b, D) each
            found[c] = _best_alignment(a_keys, b_keys)
    return found


def as_sung_similarities(query: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray:
    """:func:`local_alignment` of one melody sequence with each of many, both as sung, shape (len(candidates),) float32.

    The first of :func:`sequence_similarity`'s 2 * len(KEY_SHIFTS) - 1 key pairs, so never above it, at about
    a seventh of its cost (one compiled batch for all candidates of a length): the
    recommender's first look at a pool, which then matches in every key only the most
    promising candidates.
    """
    a = _as_sung_steps(query)  # (T_a, D)
    found = np.zeros(len(candidates), dtype=np.float32)
    for members in _by_shape(candidates):
        b = _as_sung_steps(np.stack([candidates[c] for c in members]))  # (M, T_b, D)
        found[members] = alignment_scores(a @ b.transpose(0, 2, 1)) / np.sqrt(a.shape[0] * b.shape[1])
    return found


def _by_shape(sequences: list[np.ndarray]) -> list[list[int]]:
    """The indices of ``sequences`` grouped by shape (each group is stacked and matched as one batch), in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, sequence in enumerate(sequences):
        groups.setdefault(sequence.shape, []).append(i)
    return list(groups.values())


def _best_alignment(a_keys: np.ndarray, b_keys: np.ndarray) -> float:
    """The best of the 2K - 1 alignments of two sequences' unit keys, (K, T_a, D) and (K, T_b, D), divided by sqrt(T_a * T_b)."""
    # Stacked small products, not one large one: a large product goes to the threaded BLAS,
    # which on busy cores ran some 40 times slower than these single-threaded ones. Aligned
    # as two batches, not one concatenated: copying 0.75 MB a candidate cost more than matching it.
    as_sung = alignment_scores(a_keys @ b_keys[0].T).max()  # every key of the query against the candidate as sung: (K, T_a, T_b)
    other_keys = alignment_scores(a_keys[0] @ b_keys[1:].transpose(0, 2, 1)).max()  # and the other way: (K - 1, T_a, T_b)
    return max(as_sung, other_keys) / np.sqrt(a_keys.shape[1] * b_keys.shape[1])
