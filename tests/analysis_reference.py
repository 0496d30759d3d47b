"""The analysis of a few fixed songs as a given version of the code gave it, to check that a faster pipeline gives the same.

``python tests/analysis_reference.py`` (from the repository root, with the code whose output
is the reference) writes ``tests/data/analysis_reference.npz``: for each song of
:func:`reference_songs`, where its excerpt starts, its log-mel averaged over 16 frames, its
timbre, melody and fingerprint vectors and its melody sequence, with the versions of the
separator, the timbre encoder and the TCAE that made them. ``tests/test_analysis_reference.py``
analyses the same songs with today's code and compares. Regenerate the file when a model's
weights change (the test names which one), never to hide a change of the pipeline's output.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from factories import voice, write_audio  # noqa: E402
from nextvox.analysis import AnalysisSettings, analyze_track, melody_model_version, timbre_model_version  # noqa: E402

REFERENCE = HERE / "data" / "analysis_reference.npz"
SONG_S = 125.0  # longer than the 120 s excerpt: the excerpt's probes and seek run too
POOL_FRAMES = 64  # log-mel frames averaged per stored column (about 1 s: keeps the file small)
# The decoders nextvox has: libsndfile (mp3, flac), PyAV's AAC and libsndfile's or PyAV's Opus.
FORMATS = ("mp3", "m4a", "opus", "flac")


def reference_songs(folder: Path) -> list[Path]:
    """Write the reference songs into ``folder``: a voice over a quieter second voice, one per format (deterministic)."""
    songs = []
    for i, extension in enumerate(FORMATS):
        sung = voice(seconds=SONG_S, formants_hz=(500.0 + 100 * i, 1200.0 + 300 * i, 2600.0), f0_hz=160.0 + 30 * i, seed=i)
        backing = voice(seconds=SONG_S, formants_hz=(300.0, 900.0), f0_hz=110.0, seed=100 + i)
        songs.append(write_audio(folder / f"song{i}.{extension}", (sung + 0.4 * backing).astype(np.float32)))
    return songs


def pooled(log_mel: np.ndarray) -> np.ndarray:
    """(n_mels, T) -> (n_mels, T // POOL_FRAMES) mean over each run of POOL_FRAMES frames."""
    steps = log_mel.shape[1] // POOL_FRAMES
    return log_mel[:, : steps * POOL_FRAMES].reshape(log_mel.shape[0], steps, POOL_FRAMES).mean(axis=2)


def analyse(songs: list[Path]) -> dict[str, np.ndarray]:
    """Every stored array of :data:`REFERENCE` for ``songs``, by name (``song0.start_s``, ``song0.timbre``, ...)."""
    from nextvox.features import log_mel
    from nextvox.audio import load_excerpt
    from nextvox.separation import separate

    settings = AnalysisSettings()
    arrays = {
        "separator_version": np.array(settings.separator_version),
        "timbre_version": np.array(timbre_model_version()),
        "melody_version": np.array(melody_model_version()),
    }
    for path in songs:
        result = analyze_track(path, content_hash=None, settings=settings, cache=None)
        excerpt = load_excerpt(path)
        mel = log_mel(separate(excerpt.valid_samples, method=settings.separator, weights=settings.separator_weights))
        name = path.stem
        arrays[f"{name}.start_s"] = np.array(result.excerpt_start_s)
        arrays[f"{name}.log_mel"] = pooled(mel).astype(np.float32)
        for vector, (_, value) in result.vectors.items():
            arrays[f"{name}.{vector}"] = value
        arrays[f"{name}.sequence"] = result.sequences["melody"][1]
    return arrays


if __name__ == "__main__":
    import tempfile

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        arrays = analyse(reference_songs(Path(folder)))
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **arrays)
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size // 1024} KB)")
