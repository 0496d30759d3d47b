"""The analysis gives what it gave before it was made faster: the songs of tests/analysis_reference.py against its stored results.

Tolerances, each far below what tells two songs apart and far above float rounding:

- where the excerpt starts: within 1 ms;
- the log-mel (averaged over about 1 s): within 0.05 natural-log units (5 % of a band's power);
- the timbre, melody and fingerprint vectors: cosine similarity at least 0.999;
- the melody sequence (float16, unit variance per channel): within 0.1 everywhere, 0.01 on average.

A part is compared only where the stored file was made by the same model weights (the
separator's for the log-mel, the timbre encoder's, the TCAE's): new weights are a new
reference, made with ``python tests/analysis_reference.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analysis_reference import REFERENCE, analyse, reference_songs
from nextvox.catalogue.store import SCHEMA_2_KEY_SHIFTS
from nextvox.melody_match import KEY_SHIFTS, sequence_in_keys


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def now_and_before(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    songs = reference_songs(tmp_path_factory.mktemp("reference-songs"))
    return analyse(songs), dict(np.load(REFERENCE))


def test_excerpt_and_log_mel_are_unchanged(now_and_before: tuple[dict, dict]) -> None:
    now, before = now_and_before
    if str(now["separator_version"]) != str(before["separator_version"]):
        pytest.skip(f"the reference was made with separator {before['separator_version']}: regenerate it")
    for song in sorted({key.split(".")[0] for key in before if key.startswith("song")}):
        assert abs(float(now[f"{song}.start_s"]) - float(before[f"{song}.start_s"])) < 1e-3, song
        assert np.abs(now[f"{song}.log_mel"] - before[f"{song}.log_mel"]).max() < 0.05, song
        assert _cosine(now[f"{song}.fingerprint"], before[f"{song}.fingerprint"]) > 0.999, song


@pytest.mark.parametrize("model, vector", [("timbre", "timbre"), ("melody", "melody")])
def test_model_outputs_are_unchanged(now_and_before: tuple[dict, dict], model: str, vector: str) -> None:
    now, before = now_and_before
    if str(now[f"{model}_version"]) != str(before[f"{model}_version"]):
        pytest.skip(f"the reference was made with {before[f'{model}_version']}: regenerate it")
    for song in sorted({key.split(".")[0] for key in before if key.startswith("song")}):
        assert _cosine(now[f"{song}.{vector}"], before[f"{song}.{vector}"]) > 0.999, song
        if model == "melody":
            sequence = before[f"{song}.sequence"]
            if len(sequence) * len(KEY_SHIFTS) == len(now[f"{song}.sequence"]) * len(SCHEMA_2_KEY_SHIFTS):
                sequence = sequence_in_keys(sequence, stored_keys=SCHEMA_2_KEY_SHIFTS)  # made in the 7 keys kept before schema 3
            difference = np.abs(now[f"{song}.sequence"].astype(np.float32) - sequence.astype(np.float32))
            assert difference.max() < 0.1 and difference.mean() < 0.01, song
