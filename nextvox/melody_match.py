"""How alike two songs' melody sequences are: local alignment in the best of several keys.

numpy and librosa only (no torch), so that a query answered from stored vectors and
sequences never loads the TCAE's framework. The sequences themselves come from
:func:`nextvox.models.tcae.melody_sequence`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["KEY_SHIFTS", "sequence_keys", "local_alignment", "sequence_similarity"]

# Keys a melody sequence is also taken in, semitones, the song as sung first. A renditions' key
# differs by whatever suits its singer; the latent follows the key in part, so two songs are
# matched in the best of these (both ways: 7 keys reach +-12). -4..4 found fewer tunes (docs/models.md).
KEY_SHIFTS = (0.0, -2.0, 2.0, -4.0, 4.0, -6.0, 6.0)


def sequence_keys(sequence: np.ndarray) -> np.ndarray:
    """A stored melody sequence, (len(KEY_SHIFTS) * steps, D), as one unit-step sequence per key: (len(KEY_SHIFTS), steps, D) float32."""
    keys = np.asarray(sequence, np.float32).reshape(len(KEY_SHIFTS), -1, sequence.shape[-1])
    return keys / (np.linalg.norm(keys, axis=2, keepdims=True) + 1e-6)


def local_alignment(a: np.ndarray, b: np.ndarray) -> float:
    """How well the best-matching stretches of two unit-step sequences line up, 0 ... 1.

    Cosine similarities of every pair of steps (negatives as 0) are aligned by librosa's
    recurrence quantification (``sequence.rqa``: a Smith-Waterman local alignment whose
    knight moves absorb tempo differences, gaps penalised), and the best path's score is
    divided by ``sqrt(T_a * T_b)``: 1 for a sequence and itself.

    Parameters
    ----------
    a, b : np.ndarray, shapes (T_a, D) and (T_b, D), rows of unit length
    """
    import librosa

    similarity = np.maximum(a @ b.T, 0.0)  # (T_a, T_b)
    score = librosa.sequence.rqa(similarity, gap_onset=0.5, gap_extend=0.2, knight_moves=True, backtrack=False)
    return float(score.max() / np.sqrt(len(a) * len(b)))


def sequence_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """How alike two melody sequences are: their best local alignment, in the best of their keys.

    Either song is taken as sung against the other in each of KEY_SHIFTS
    (:func:`local_alignment` of 13 pairs), so a tune sung up to an octave higher or lower,
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
    a_keys, b_keys = sequence_keys(a), sequence_keys(b)
    return max(
        max(local_alignment(a_key, b_keys[0]) for a_key in a_keys),
        max(local_alignment(a_keys[0], b_key) for b_key in b_keys[1:]),
    )
