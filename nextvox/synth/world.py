"""The WORLD vocoder (pyworld) as the generator uses it: one frame grid, and the note loop that
every singing method shares.

A singing method makes WORLD's three frame tracks for a song (f0, spectral envelope,
aperiodicity) in its own way: :mod:`.singing` stretches a voice's spoken syllables to each
note, :mod:`.mbrola` analyses what MBROLA sang. The notes themselves are laid on the frames
the same way for both: :func:`sung_notes` gives each note's frames and its pitch contour (a
short glide from the note before, a delayed vibrato of random phase), and :func:`synthesize`
turns the tracks into the song's samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np

from nextvox.constants import SAMPLE_RATE_HZ

with warnings.catch_warnings():
    # pyworld imports the deprecated pkg_resources only to read its own version.
    warnings.simplefilter("ignore", UserWarning)
    import pyworld

__all__ = [
    "pyworld", "FRAME_PERIOD_MS", "FRAME_RATE_HZ", "FFT_SIZE", "midi_to_hz", "note_cents", "sung_notes", "synthesize",
]  # fmt: skip

FRAME_PERIOD_MS = 5.0
FRAME_RATE_HZ = 1000.0 / FRAME_PERIOD_MS
FFT_SIZE = pyworld.get_cheaptrick_fft_size(SAMPLE_RATE_HZ)  # 1024 at 16 kHz: 513 envelope bins
GLIDE_S = 0.04  # legato glide into a note from the previous one
VIBRATO_DELAY_S = 0.15  # singers start a note straight and let vibrato grow
VIBRATO_RAMP_S = 0.2


def midi_to_hz(midi: np.ndarray | float) -> np.ndarray | float:
    """Equal-tempered frequency of a (fractional) MIDI pitch, A4 = 69 = 440 Hz.

    >>> float(midi_to_hz(69.0)), round(float(midi_to_hz(60.0)), 2)
    (440.0, 261.63)
    """
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def note_cents(
    *, n_frames: int, midi: float, previous_midi: float | None, vibrato_rate_hz: float, vibrato_depth_cents: float,
    vibrato_phase: float,
) -> np.ndarray:
    """Pitch contour of one note in cents (MIDI x 100), shape (n_frames,)."""
    t_s = np.arange(n_frames) / FRAME_RATE_HZ
    ramp = np.clip((t_s - VIBRATO_DELAY_S) / VIBRATO_RAMP_S, 0.0, 1.0)
    cents = 100.0 * midi + vibrato_depth_cents * ramp * np.sin(2 * np.pi * vibrato_rate_hz * t_s + vibrato_phase)
    if previous_midi is not None:
        glide = t_s < GLIDE_S
        cents[glide] += 100.0 * (previous_midi - midi) * 0.5 * (1 + np.cos(np.pi * t_s[glide] / GLIDE_S))
    return cents


def sung_notes(
    *, onset_s: np.ndarray, duration_s: np.ndarray, pitch_midi: np.ndarray, n_frames: int, vibrato_rate_hz: float,
    vibrato_depth_cents: float, seed: int,
) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """The notes of a song on WORLD's frame grid: ``(note, start, end, f0_hz)`` for each note long
    enough to sing (two frames or more), in order.

    Parameters
    ----------
    onset_s, duration_s, pitch_midi : np.ndarray, shape (N,)
        Start (seconds), length (seconds) and pitch (MIDI) of each note.
    n_frames : int
        Frames of the song; a note past them is cut.
    vibrato_rate_hz, vibrato_depth_cents : float
        Vibrato speed and peak deviation.
    seed : int
        Seeds the vibrato phases (one drawn per sung note).

    Yields
    ------
    note : int
        Index of the note in the arrays.
    start, end : int
        Its frames, ``start:end``.
    f0_hz : np.ndarray, shape (end - start,)
        Its pitch contour, Hz: glided from the note before when that one ends where it starts.
    """
    rng = np.random.default_rng(seed)
    previous_end, previous_midi = -1, None
    for note, (onset, duration, midi) in enumerate(zip(onset_s, duration_s, pitch_midi)):
        start = int(round(onset * FRAME_RATE_HZ))
        end = min(int(round((onset + duration) * FRAME_RATE_HZ)), n_frames)
        if end - start < 2:
            continue
        cents = note_cents(n_frames=end - start, midi=float(midi),
                           previous_midi=previous_midi if previous_end == start else None,
                           vibrato_rate_hz=vibrato_rate_hz, vibrato_depth_cents=vibrato_depth_cents,
                           vibrato_phase=float(rng.uniform(0, 2 * np.pi)))  # fmt: skip
        yield note, start, end, midi_to_hz(cents / 100.0)
        previous_end, previous_midi = end, float(midi)


def synthesize(f0_hz: np.ndarray, sp: np.ndarray, ap: np.ndarray, *, total_s: float) -> np.ndarray:
    """WORLD's synthesis of frame tracks (f0 (T,) Hz, envelope and aperiodicity (T, FFT_SIZE // 2 + 1)),
    cut or padded to ``total_s`` seconds: float32, shape (round(total_s * SAMPLE_RATE_HZ),)."""
    wave = pyworld.synthesize(f0_hz, sp, ap, SAMPLE_RATE_HZ, FRAME_PERIOD_MS)
    n_samples = int(round(total_s * SAMPLE_RATE_HZ))
    return np.pad(wave, (0, max(n_samples - len(wave), 0)))[:n_samples].astype(np.float32)
