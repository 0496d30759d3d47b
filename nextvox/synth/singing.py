"""Make a speaking voice sing a score with the WORLD vocoder, and measure how well it does.

Each note gets one syllable from the voice's :class:`~nextvox.synth.syllables.SyllableBank`:
its consonant keeps its spoken length, its vowel is stretched to fill the note, and its
fade-out ends it. The f0 of every voiced frame is replaced by the note's pitch contour
(:func:`nextvox.synth.world.sung_notes`: a short glide from the previous note and a delayed
vibrato); WORLD then synthesises the whole line in one pass.
"""

from __future__ import annotations

import numpy as np

from nextvox.synth.syllables import SyllableBank
from nextvox.synth.world import FRAME_RATE_HZ, midi_to_hz, sung_notes, synthesize

__all__ = ["render_vocal", "pitch_accuracy", "NOTE_GUARD_START_S", "NOTE_GUARD_END_S"]

RELEASE_S = 0.04  # longest part of a syllable's spoken fade-out kept at a note's end
SILENCE_POWER = 1e-10  # envelope power of rests, -100 dB below a vowel
# "Inside a note" for pitch accuracy: past the glide and pYIN's 64 ms window at the onset,
# and clear of the next note's window at the end.
NOTE_GUARD_START_S = 0.06
NOTE_GUARD_END_S = 0.04


def _source_frames(*, length: int, n_source: int, core_start: int, core_end: int) -> np.ndarray:
    """Fractional syllable frame read at each of a note's ``length`` frames.

    The consonant before the vowel keeps its speed (cut to a third of the note at most),
    the vowel is stretched or squeezed linearly, and up to :data:`RELEASE_S` of the fade-out
    ends the note.

    >>> _source_frames(length=8, n_source=6, core_start=2, core_end=4).tolist()
    [0.0, 1.0, 2.0, 2.25, 2.5, 2.75, 3.0, 4.0]
    """
    onset = min(core_start, length // 3)
    release = min(n_source - core_end, int(RELEASE_S * FRAME_RATE_HZ), length // 6)
    body = length - onset - release
    return np.concatenate(
        [
            np.arange(core_start - onset, core_start, dtype=np.float64),
            np.linspace(core_start, core_end - 1, body),
            np.arange(core_end, core_end + release, dtype=np.float64),
        ]
    )


def render_vocal(
    *,
    onset_s: np.ndarray,
    duration_s: np.ndarray,
    pitch_midi: np.ndarray,
    syllable_index: np.ndarray,
    bank: SyllableBank,
    total_s: float,
    vibrato_rate_hz: float,
    vibrato_depth_cents: float,
    gain_db: np.ndarray,
    seed: int,
) -> np.ndarray:
    """Sing notes with a voice's syllables.

    Parameters
    ----------
    onset_s, duration_s : np.ndarray, shape (N,)
        Start and length of each sung note, seconds (rests are simply gaps).
    pitch_midi : np.ndarray, shape (N,)
        Pitch of each note, MIDI.
    syllable_index : np.ndarray of int, shape (N,)
        Syllable of the bank sung on each note.
    bank : SyllableBank
        The voice, already warped for the singer.
    total_s : float
        Length of the output, seconds; notes past it are cut.
    vibrato_rate_hz, vibrato_depth_cents : float
        Vibrato speed and peak deviation (keep the depth under ~30 cents for ±50 cent accuracy).
    gain_db : np.ndarray, shape (N,)
        Loudness of each note relative to the voice's vowel level, dB.
    seed : int
        Seeds the vibrato phases.

    Returns
    -------
    np.ndarray, float32, shape (round(total_s * SAMPLE_RATE_HZ),)
        The isolated vocal at :data:`nextvox.constants.SAMPLE_RATE_HZ`, unnormalised.
    """
    n_frames = int(np.ceil(total_s * FRAME_RATE_HZ)) + 1
    n_bins = bank.sp.shape[1]
    sp = np.full((n_frames, n_bins), SILENCE_POWER)
    ap = np.ones((n_frames, n_bins))
    f0_hz = np.zeros(n_frames)
    notes = sung_notes(onset_s=onset_s, duration_s=duration_s, pitch_midi=pitch_midi, n_frames=n_frames,
                       vibrato_rate_hz=vibrato_rate_hz, vibrato_depth_cents=vibrato_depth_cents, seed=seed)  # fmt: skip
    for note, start, end, contour_hz in notes:
        syllable = syllable_index[note]
        first, last = bank.starts[syllable], bank.starts[syllable + 1]
        core_start, core_end = bank.core[syllable]
        source = _source_frames(length=end - start, n_source=last - first, core_start=core_start, core_end=core_end)
        lo = np.floor(source).astype(int)
        hi = np.minimum(lo + 1, last - first - 1)
        w = (source - lo)[:, None]  # (L, 1): interpolate between neighbouring frames
        scale = 10.0 ** (gain_db[note] / 10.0)  # power envelope
        sp[start:end] = scale * (bank.sp[first + lo] * (1 - w) + bank.sp[first + hi] * w)
        ap[start:end] = bank.ap[first + lo] * (1 - w) + bank.ap[first + hi] * w
        in_core = (source >= core_start) & (source < core_end)
        voiced = in_core | bank.voiced[first + np.rint(source).astype(int).clip(0, last - first - 1)]
        f0_hz[start:end] = np.where(voiced, contour_hz, 0.0)
    return synthesize(f0_hz, sp, ap, total_s=total_s)


def pitch_accuracy(
    *,
    vocal: np.ndarray,
    sample_rate_hz: int,
    onset_s: np.ndarray,
    duration_s: np.ndarray,
    pitch_midi: np.ndarray,
    tolerance_cents: float = 50.0,
) -> tuple[float, int]:
    """Share of pYIN-voiced frames inside notes that lie within ``tolerance_cents`` of the note.

    Parameters
    ----------
    vocal : np.ndarray, shape (N,)
        Isolated vocal, mono.
    sample_rate_hz : int
        Its sample rate.
    onset_s, duration_s, pitch_midi : np.ndarray, shape (M,)
        The notes it should sing (seconds, seconds, MIDI).
    tolerance_cents : float
        Largest deviation counted as in tune.

    Returns
    -------
    accuracy : float
        0..1; NaN when no voiced frame falls inside a note.
    n_frames : int
        Voiced frames inside notes that were judged (pYIN hop: 16 ms at 16 kHz).

    Notes
    -----
    A frame is inside a note from :data:`NOTE_GUARD_START_S` after its onset to
    :data:`NOTE_GUARD_END_S` before its end, so glides and the analysis window's overlap
    with the neighbouring note are not counted.
    """
    import librosa  # heavy import, needed only for measuring

    hop = 256
    f0_hz, voiced, _ = librosa.pyin(
        vocal.astype(np.float64),
        sr=sample_rate_hz,
        fmin=float(midi_to_hz(pitch_midi.min() - 5)),
        fmax=float(midi_to_hz(pitch_midi.max() + 5)),
        frame_length=1024,
        hop_length=hop,
    )
    times_s = np.arange(len(f0_hz)) * hop / sample_rate_hz
    # Note index of each frame (the last onset at or before it), then whether it is inside.
    note = np.searchsorted(onset_s, times_s, side="right") - 1
    valid = note >= 0
    note = note.clip(0)
    inside = (
        valid
        & (times_s >= onset_s[note] + NOTE_GUARD_START_S)
        & (times_s <= onset_s[note] + duration_s[note] - NOTE_GUARD_END_S)
    )
    judged = inside & voiced & np.isfinite(f0_hz)
    if not judged.any():
        return float("nan"), 0
    error_cents = 1200.0 * np.log2(f0_hz[judged] / midi_to_hz(pitch_midi[note[judged]]))
    return float(np.mean(np.abs(error_cents) <= tolerance_cents)), int(judged.sum())
