"""The melody-sequence match: the compiled alignment against librosa's, and the batch against pair by pair."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from nextvox.melody_match import (
    KEY_SHIFTS, alignment_scores, as_sung_similarities, local_alignment, sequence_keys, sequence_similarities, sequence_similarity,
)


@pytest.mark.parametrize("shape", [(2, 2), (2, 9), (9, 2), (3, 3), (17, 40), (40, 17), (120, 120)])
def test_the_alignment_is_librosa_rqa_to_the_bit(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    batch = np.maximum(rng.normal(0.1, 0.5, size=(4, *shape)), 0.0).astype(np.float32)  # (4, T_a, T_b), many zeros
    expected = [librosa.sequence.rqa(m, gap_onset=0.5, gap_extend=0.2, knight_moves=True, backtrack=False).max() for m in batch]
    np.testing.assert_array_equal(alignment_scores(batch), np.array(expected, dtype=np.float32))


def test_many_candidates_score_as_pair_by_pair() -> None:
    rng = np.random.default_rng(0)
    query = rng.normal(size=(len(KEY_SHIFTS) * 50, 16)).astype(np.float16)
    candidates = [rng.normal(size=(len(KEY_SHIFTS) * steps, 16)).astype(np.float16) for steps in (50, 12, 1, 80)]
    candidates.append(query.copy())
    a_keys = sequence_keys(query)
    expected = []
    for candidate in candidates:  # the definition: every key of one against the other as sung, both ways
        b_keys = sequence_keys(candidate)
        expected.append(max(max(local_alignment(a, b_keys[0]) for a in a_keys), max(local_alignment(a_keys[0], b) for b in b_keys[1:])))
    found = sequence_similarities(query, candidates)
    np.testing.assert_allclose(found, expected, rtol=1e-6)
    assert found[-1] == pytest.approx(1.0, abs=1e-5) and found[:-1].max() < 0.9
    assert sequence_similarity(query, candidates[0]) == pytest.approx(found[0], rel=1e-6)
    assert len(sequence_similarities(query, [])) == 0


def test_candidates_grouped_by_length_score_exactly_as_one_by_one() -> None:
    rng = np.random.default_rng(1)
    query = rng.integers(-127, 128, size=(len(KEY_SHIFTS) * 30, 16)).astype(np.int8)  # int8 rows, as the catalogue keeps them
    candidates = [rng.integers(-127, 128, size=(len(KEY_SHIFTS) * steps, 16)).astype(np.int8) for steps in (30, 7, 30, 44, 7, 30)]
    one_by_one = np.array([sequence_similarities(query, [c])[0] for c in candidates])
    np.testing.assert_array_equal(sequence_similarities(query, candidates), one_by_one)


def test_the_as_sung_match_is_the_first_key_pair_and_never_above_the_match() -> None:
    rng = np.random.default_rng(2)
    query = rng.integers(-7, 8, size=(len(KEY_SHIFTS) * 30, 16)).astype(np.int8)  # int4 steps, as the catalogue keeps them
    candidates = [rng.integers(-7, 8, size=(len(KEY_SHIFTS) * steps, 16)).astype(np.int8) for steps in (30, 7, 30, 44, 1)]
    candidates.append(query.copy())
    found = as_sung_similarities(query, candidates)
    expected = [local_alignment(sequence_keys(query)[0], sequence_keys(c)[0]) for c in candidates]
    np.testing.assert_allclose(found, expected, rtol=1e-6)
    assert found[-1] == pytest.approx(1.0, abs=1e-5)
    assert (found <= sequence_similarities(query, candidates) + 1e-6).all()
    assert len(as_sung_similarities(query, [])) == 0
