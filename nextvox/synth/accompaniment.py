"""MIDI accompaniments in a few styles (the library's genres), rendered with fluidsynth.

The harmony comes from the melody itself: for every bar (half bar in long metres) the
diatonic triad whose tones cover most of the sung time is chosen, the last bar is the
tonic. Each style turns those chords into a small General MIDI band; fluidsynth renders it
with Debian's FluidR3 soundfont.
"""

from __future__ import annotations

import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from nextvox.errors import NextvoxError
from nextvox.synth.voices import soundfont_path

__all__ = ["STYLES", "STYLE_BASS_CHANNEL", "Chord", "Event", "choose_chords", "accompaniment_midi", "render_midi"]

STYLES = ("folk", "jazz", "rock", "ballad")
TICKS_PER_BEAT = 480
DRUM_CHANNEL = 9

# Diatonic triads of a major key: (degree in semitones above the tonic, third in semitones).
_DEGREES = ((0, 4), (5, 4), (7, 4), (9, 3), (2, 3))  # I, IV, V, vi, ii: order breaks ties
_TIE_BONUS = (0.06, 0.04, 0.05, 0.0, 0.0)  # a slight pull to I, V and IV when the melody is ambiguous


@dataclass(frozen=True)
class Chord:
    """A chord held from ``start_beat`` for ``length_beats`` (quarter notes)."""

    start_beat: float
    length_beats: float
    root_pc: int  # pitch class of the root, 0 = C
    third: int  # 4 major, 3 minor (semitones above the root)


def choose_chords(
    *, onset_beats: np.ndarray, duration_beats: np.ndarray, pitch_midi: np.ndarray, tonic_pc: int,
    beats_per_bar: float, total_beats: float,
) -> list[Chord]:
    """Harmonise a melody bar by bar with the diatonic triads I, IV, V, vi, ii.

    Parameters
    ----------
    onset_beats, duration_beats : np.ndarray, shape (N,)
        Sung notes on the song's beat grid (bar lines at multiples of ``beats_per_bar``).
    pitch_midi : np.ndarray, shape (N,)
        Their pitches (already transposed), MIDI.
    tonic_pc : int
        Tonic pitch class of the (transposed) key.
    beats_per_bar : float
        Bar length, quarter notes.
    total_beats : float
        Song length, quarter notes.

    Examples
    --------
    >>> [c.root_pc for c in choose_chords(onset_beats=np.array([0.0, 2.0]), duration_beats=np.array([2.0, 2.0]),
    ...     pitch_midi=np.array([65, 60]), tonic_pc=0, beats_per_bar=2.0, total_beats=4.0)]
    [5, 0]
    """
    step = beats_per_bar / 2 if beats_per_bar >= 4 else beats_per_bar
    starts = np.arange(0.0, total_beats, step)
    chords = []
    for i, start in enumerate(starts):
        end = min(start + step, total_beats)
        overlap = np.clip(np.minimum(onset_beats + duration_beats, end) - np.maximum(onset_beats, start), 0, None)
        scores = []
        for (degree, third), bonus in zip(_DEGREES, _TIE_BONUS):
            root = (tonic_pc + degree) % 12
            tones = {root, (root + third) % 12, (root + 7) % 12}
            in_chord = np.isin(pitch_midi.astype(int) % 12, list(tones))
            scores.append(float(overlap[in_chord].sum()) + bonus * step)
        best = 0 if i == len(starts) - 1 else int(np.argmax(scores))
        degree, third = _DEGREES[best]
        chords.append(Chord(float(start), float(end - start), (tonic_pc + degree) % 12, third))
    return chords


def _place(pitch_class: int, low_midi: int) -> int:
    """The first pitch of ``pitch_class`` at or above ``low_midi``."""
    return low_midi + (pitch_class - low_midi) % 12


def _chord_tones(chord: Chord, *, low_midi: int, seventh: bool = False) -> list[int]:
    root = _place(chord.root_pc, low_midi)
    tones = [root, root + chord.third, root + 7]
    if seventh:  # dominant seventh on major chords, minor seventh on minor ones
        tones.append(root + 10)
    return tones


# A note event: (start beat, length in beats, channel, MIDI pitch, velocity).
Event = tuple[float, float, int, int, int]


def _folk(chord: Chord, beats_per_bar: float) -> list[Event]:
    """Steel guitar: bass note on the bar's first beat, strums on the others."""
    events = []
    for k in range(int(np.ceil(chord.length_beats))):
        beat = chord.start_beat + k
        length = min(1.0, chord.start_beat + chord.length_beats - beat)
        if (beat % beats_per_bar) == 0 or k == 0:
            events.append((beat, length, 0, _place(chord.root_pc, 40), 80))
        else:
            events += [(beat + 0.02 * j, length - 0.02 * j, 0, p, 64) for j, p in enumerate(_chord_tones(chord, low_midi=52))]
    return events


def _jazz(chord: Chord, beats_per_bar: float) -> list[Event]:
    """Piano comping with sevenths off the beat, walking bass, ride cymbal."""
    events = []
    walk = [0, chord.third, 7, 12]
    for k in range(int(np.ceil(chord.length_beats))):
        beat = chord.start_beat + k
        length = min(1.0, chord.start_beat + chord.length_beats - beat)
        events.append((beat, length, 1, _place(chord.root_pc, 33) + walk[k % 4], 85))
        events.append((beat, 0.5, DRUM_CHANNEL, 51, 60))  # ride
        if k % 2 == 1:
            events += [(beat - 0.33, 0.8, 0, p, 58) for p in _chord_tones(chord, low_midi=53, seventh=True)]
            events.append((beat, 0.25, DRUM_CHANNEL, 44, 50))  # pedal hi-hat on 2 and 4
    return events


def _rock(chord: Chord, beats_per_bar: float) -> list[Event]:
    """Overdriven power chords and bass in eighths, kick/snare/hi-hat."""
    events = []
    root = _place(chord.root_pc, 40)
    for k in range(int(np.ceil(chord.length_beats * 2))):
        beat = chord.start_beat + k / 2
        events += [(beat, 0.45, 0, p, 70) for p in (root, root + 7, root + 12)]
        events.append((beat, 0.45, 1, root - 12, 85))
        events.append((beat, 0.25, DRUM_CHANNEL, 42, 55))  # closed hi-hat
        if k % 2 == 0:
            in_bar = int(round(beat % beats_per_bar))
            events.append((beat, 0.25, DRUM_CHANNEL, 38 if in_bar % 2 else 36, 90))  # snare on 2 and 4
    return events


def _ballad(chord: Chord, beats_per_bar: float) -> list[Event]:
    """Strings holding the chord, piano arpeggio in eighths."""
    events = [(chord.start_beat, chord.length_beats, 0, p, 55) for p in _chord_tones(chord, low_midi=55)]
    events.append((chord.start_beat, chord.length_beats, 0, _place(chord.root_pc, 43), 55))
    arpeggio = _chord_tones(chord, low_midi=48) + [_place(chord.root_pc, 60)]
    for k in range(int(np.ceil(chord.length_beats * 2))):
        events.append((chord.start_beat + k / 2, 0.5, 1, arpeggio[k % 4], 62))
    return events


# Style -> the channel of its bass line (None: the style has no bass instrument of its own).
STYLE_BASS_CHANNEL = {"folk": None, "jazz": 1, "rock": 1, "ballad": None}

# Style -> (pattern, General MIDI program per channel, 0-based).
_STYLES = {
    "folk": (_folk, {0: 25}),  # acoustic guitar (steel)
    "jazz": (_jazz, {0: 0, 1: 32}),  # acoustic grand piano, acoustic bass
    "rock": (_rock, {0: 29, 1: 33}),  # overdriven guitar, electric bass (finger)
    "ballad": (_ballad, {0: 48, 1: 0}),  # string ensemble, piano
}


def _variable_length(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def accompaniment_midi(
    *, chords: list[Chord], style: str, beats_per_bar: float, tempo_qpm: float, total_beats: float,
    programs: dict[int, int] | None = None, extra_events: tuple[Event, ...] | list[Event] = (), own_drums: bool = True,
) -> bytes:  # fmt: skip
    """A Standard MIDI File (format 0) of the accompaniment.

    Parameters
    ----------
    chords : list of Chord
        From :func:`choose_chords`.
    style : str
        One of :data:`STYLES`.
    beats_per_bar : float
        Bar length, quarter notes.
    tempo_qpm : float
        Quarter notes per minute.
    total_beats : float
        Song length: the file ends there so the render has the song's length.
    programs : dict, optional
        General MIDI program (0-based) per channel, replacing or adding to the style's own.
    extra_events : sequence of (start beat, length in beats, channel, MIDI pitch, velocity)
        More parts played with the style's (drums, a lead line, a pad; see
        :mod:`nextvox.synth.production`).
    own_drums : bool
        False leaves out the style's own drum strokes (when ``extra_events`` bring a groove).
    """
    if style not in _STYLES:
        raise NextvoxError(f"unknown accompaniment style {style!r}; choose one of: {', '.join(STYLES)}")
    pattern, style_programs = _STYLES[style]
    programs = {**style_programs, **(programs or {})}
    events = [e for c in chords for e in pattern(c, beats_per_bar) if own_drums or e[2] != DRUM_CHANNEL]
    timed: list[tuple[int, int, bytes]] = []  # (tick, order: offs before ons, message)
    for start, length, channel, pitch, velocity in (*events, *extra_events):
        on = int(round(max(start, 0.0) * TICKS_PER_BEAT))
        off = min(int(round((start + length) * TICKS_PER_BEAT)), int(total_beats * TICKS_PER_BEAT))
        if off <= on:
            continue
        timed.append((on, 1, bytes([0x90 | channel, pitch, velocity])))
        timed.append((off, 0, bytes([0x80 | channel, pitch, 0])))
    timed.sort(key=lambda e: (e[0], e[1]))
    microseconds_per_beat = int(round(60_000_000 / tempo_qpm))
    track = bytearray(b"\x00\xff\x51\x03" + microseconds_per_beat.to_bytes(3, "big"))
    for channel, program in programs.items():
        track += b"\x00" + bytes([0xC0 | channel, program])
    tick = 0
    for when, _, message in timed:
        track += _variable_length(when - tick) + message
        tick = when
    track += _variable_length(max(int(total_beats * TICKS_PER_BEAT) - tick, 0)) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def render_midi(*, midi: bytes, sample_rate_hz: int, n_samples: int) -> np.ndarray:
    """Render a MIDI file with fluidsynth and the General MIDI soundfont.

    Returns
    -------
    np.ndarray, float32, shape (n_samples, 2)
        Stereo accompaniment, cut or padded to ``n_samples``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
        mid.write_bytes(midi)
        command = ["fluidsynth", "-ni", "-q", "-g", "0.6", "-F", str(wav), "-r", str(sample_rate_hz),
                   str(soundfont_path()), str(mid)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not wav.exists():
            raise NextvoxError(f"fluidsynth failed: {(done.stderr or done.stdout).strip()[:200]}")
        audio, _ = sf.read(wav, dtype="float32", always_2d=True)
    if audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    out = np.zeros((n_samples, 2), dtype=np.float32)
    out[: min(n_samples, len(audio))] = audio[:n_samples, :2]
    return out
