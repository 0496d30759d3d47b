"""Studio production of a generated song: drums, more instruments, vocal effects, bus processing, codecs.

A listener's records are not a dry voice over one instrument: drums, a lead instrument in the
voice's range, reverb and delay on the voice, backing harmonies and double tracking, bus
compression and limiting, stereo and lossy files. A :class:`Production` is drawn per song
(:func:`draw_production`) and recorded in labels.csv, so every benchmark can break its scores
down by production element. The ``plain`` production (the generator's original sound: the
style's own band, a dry centred voice, no bus processing) stays one style among the others.

The pieces here are small and pure:

* MIDI events to add to the accompaniment (:func:`drum_events`, :func:`lead_events`,
  :func:`pad_events`, :func:`bass_events`);
* backing harmonies (:func:`harmony_pitches`);
* :func:`produce_mix`, which puts a rendered lead vocal, its backing takes and the band
  together at the drawn vocal-to-accompaniment ratio.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from nextvox.synth.effects import compress, feedback_delay, limit, reverb, set_stereo_width

__all__ = [
    "PRODUCTION_STYLES",
    "DRUM_CHANNEL",
    "PAD_CHANNEL",
    "LEAD_CHANNEL",
    "BASS_CHANNEL",
    "LIBRARY_PRODUCTIONS",
    "GROOVES",
    "LEAD_PARTS",
    "STUDIO_CODECS",
    "Production",
    "PLAIN",
    "draw_production",
    "production_labels",
    "PRODUCTION_COLUMNS",
    "drum_events",
    "lead_events",
    "pad_events",
    "bass_events",
    "harmony_pitches",
    "produce_mix",
]

#: Production styles a song can have.
PRODUCTION_STYLES = ("plain", "studio")
#: What a library can ask for: every song plain, every song studio-produced, or half and half.
LIBRARY_PRODUCTIONS = ("plain", "studio", "mixed")
#: Drum grooves on General MIDI channel 10 ("none": no drums).
GROOVES = ("none", "rock", "half-time", "shuffle", "disco", "bossa", "brushes")
#: What the lead instrument plays: nothing, the sung tune in unison, or the tune one bar later.
LEAD_PARTS = ("none", "doubling", "canon")
#: Studio codecs: (file format, bitrates in kbit/s; 0 = lossless).
STUDIO_CODECS = (("mp3", (96, 128, 192, 320)), ("m4a", (96, 128, 192, 256)), ("opus", (48, 64, 96, 128)),
                 ("ogg", (96, 160)), ("flac", (0,)))  # fmt: skip

DRUM_CHANNEL = 9
PAD_CHANNEL, LEAD_CHANNEL, BASS_CHANNEL = 2, 3, 4
# General MIDI programs (0-based) the studio draws from, per role.
CHORD_PROGRAMS = (0, 1, 4, 5, 24, 25, 26, 27, 29, 16, 18)  # pianos, e-pianos, guitars, organs
BASS_PROGRAMS = (32, 33, 34, 35, 38)  # acoustic, finger, pick, fretless, synth bass
PAD_PROGRAMS = (48, 49, 50, 52, 53, 89, 91, 19)  # strings, synth strings, choir aahs, voice oohs, pads, organ
LEAD_PROGRAMS = (73, 40, 56, 71, 65, 68, 66, 11, 80, 81)  # flute, violin, trumpet, clarinet, saxes, oboe, vibes, leads

# One sung note: (start beat, length in beats, MIDI pitch).
Note = tuple[float, float, float]
# A MIDI note event: (start beat, length in beats, channel, MIDI pitch, velocity).
Event = tuple[float, float, int, int, int]


@dataclass(frozen=True)
class Production:
    """How one song is produced; every field goes into labels.csv (:func:`production_labels`).

    Attributes
    ----------
    style : str
        ``plain`` or ``studio`` (:data:`PRODUCTION_STYLES`).
    groove : str
        Drum groove (:data:`GROOVES`).
    chord_program, bass_program, pad_program, lead_program : int
        General MIDI programs (0-based) replacing the style's own chord and bass instruments,
        and of the added pad and lead; -1 = the style's own instrument / no such part.
    lead_part : str
        :data:`LEAD_PARTS`: the lead instrument doubles the tune in the voice's range, or plays
        it one bar behind (a canon answering the voice), or is absent.
    lead_db : float
        Lead instrument level relative to the band's other instruments, dB (MIDI velocity).
    reverb_s : float
        Reverberation time RT60 of the vocal reverb, seconds (0: dry).
    reverb_wet_db : float
        Reverb return relative to the dry vocal, dB.
    delay_ms : float
        Vocal echo delay, milliseconds (0: none); ``delay_feedback`` its repeat gain (0..1).
    delay_wet_db : float
        Echo return relative to the dry vocal, dB.
    harmony_steps : int
        Backing harmony line, in scale steps from the tune (2: a third above, -2: a third
        below, 0: none).
    harmony_db : float
        Harmony level relative to the lead vocal, dB.
    double_track_db : float
        Level of a second take of the lead (double tracking) relative to the lead, dB;
        ``-inf`` = none.
    compression_db : float
        Bus compressor threshold below the mix's RMS, dB (0: no compressor); ratio 4:1.
    limiter_db : float
        Gain pushed into the final peak limiter, dB (0: no limiter).
    stereo_width : float
        Side-signal gain of the band (0: mono, 1: as rendered, above 1: wider).
    ratio_db : float
        Vocal-to-accompaniment power ratio, dB (the vocal bus: lead, its effects and double).
    fmt : str
        File format of the mix.
    bitrate_kbps : int
        Bitrate of a lossy format, kbit/s; 0 for lossless or a plain library's default quality.
    """

    style: str = "plain"
    groove: str = "none"
    chord_program: int = -1
    bass_program: int = -1
    pad_program: int = -1
    lead_program: int = -1
    lead_part: str = "none"
    lead_db: float = 0.0
    reverb_s: float = 0.0
    reverb_wet_db: float = -np.inf
    delay_ms: float = 0.0
    delay_feedback: float = 0.0
    delay_wet_db: float = -np.inf
    harmony_steps: int = 0
    harmony_db: float = -np.inf
    double_track_db: float = -np.inf
    compression_db: float = 0.0
    limiter_db: float = 0.0
    stereo_width: float = 1.0
    ratio_db: float = 0.0
    fmt: str = ""
    bitrate_kbps: int = 0

    @property
    def is_plain(self) -> bool:
        return self.style == "plain"


#: The plain production (its ratio and format come from the plain plan itself).
PLAIN = Production()


def draw_production(*, rng: np.random.Generator, style: str) -> Production:
    """Draw a song's production; each studio element is present with its own probability.

    Elements are drawn independently so that a benchmark can compare songs with and without
    each one. Probabilities: drums 0.8, pad 0.5, lead instrument 0.5 (doubling or canon),
    reverb 0.75, delay 0.4, harmony 0.4, double tracking 0.4, compression 0.7, limiter 0.6.

    Parameters
    ----------
    rng : np.random.Generator
        The song's own generator (a plain song draws nothing from it).
    style : str
        ``plain`` or ``studio``.

    Examples
    --------
    >>> draw_production(rng=np.random.default_rng(0), style="plain") == PLAIN
    True
    >>> p = draw_production(rng=np.random.default_rng(0), style="studio")
    >>> p.style, -6.0 <= p.ratio_db <= 6.0
    ('studio', True)
    """
    if style not in PRODUCTION_STYLES:
        raise ValueError(f"unknown production style {style!r}; choose one of: {', '.join(PRODUCTION_STYLES)}")
    if style == "plain":
        return PLAIN

    def pick(options):
        return options[int(rng.integers(len(options)))]

    def level(low: float, high: float) -> float:
        return float(np.round(rng.uniform(low, high) * 2) / 2)

    has = {name: bool(rng.random() < p) for name, p in (
        ("drums", 0.8), ("pad", 0.5), ("lead", 0.5), ("reverb", 0.75), ("delay", 0.4), ("harmony", 0.4),
        ("double", 0.4), ("compression", 0.7), ("limiter", 0.6),
    )}  # fmt: skip
    fmt, bitrates = pick(STUDIO_CODECS)
    return Production(
        style="studio",
        groove=pick(GROOVES[1:]) if has["drums"] else "none",
        chord_program=pick(CHORD_PROGRAMS),
        bass_program=pick(BASS_PROGRAMS),
        pad_program=pick(PAD_PROGRAMS) if has["pad"] else -1,
        lead_program=pick(LEAD_PROGRAMS) if has["lead"] else -1,
        lead_part=pick(LEAD_PARTS[1:]) if has["lead"] else "none",
        lead_db=level(-6.0, 0.0) if has["lead"] else 0.0,
        reverb_s=float(round(rng.uniform(0.4, 2.8), 2)) if has["reverb"] else 0.0,
        reverb_wet_db=level(-14.0, -4.0) if has["reverb"] else -np.inf,
        delay_ms=float(round(rng.uniform(180.0, 480.0))) if has["delay"] else 0.0,
        delay_feedback=float(round(rng.uniform(0.15, 0.45), 2)) if has["delay"] else 0.0,
        delay_wet_db=level(-16.0, -8.0) if has["delay"] else -np.inf,
        harmony_steps=pick((2, -2, 4)) if has["harmony"] else 0,
        harmony_db=level(-9.0, -3.0) if has["harmony"] else -np.inf,
        double_track_db=level(-6.0, -1.0) if has["double"] else -np.inf,
        compression_db=level(4.0, 12.0) if has["compression"] else 0.0,
        limiter_db=level(2.0, 8.0) if has["limiter"] else 0.0,
        stereo_width=float(round(rng.uniform(0.6, 1.6), 2)),
        ratio_db=level(-6.0, 6.0),
        fmt=fmt,
        bitrate_kbps=int(pick(bitrates)),
    )


#: labels.csv columns that describe the production, in order.
PRODUCTION_COLUMNS = (
    "production", "drums", "chord_program", "bass_program", "pad_program", "lead_part", "lead_program", "reverb_s",
    "delay_ms", "harmony_steps", "double_track", "compression_db", "limiter_db", "stereo_width", "bitrate_kbps",
)  # fmt: skip


def production_labels(production: Production) -> dict[str, str]:
    """The labels.csv cells of a production (:data:`PRODUCTION_COLUMNS`); -1 / 0 / none mean absent.

    >>> production_labels(PLAIN)["production"], production_labels(PLAIN)["drums"]
    ('plain', 'none')
    """
    p = asdict(production)
    return {
        "production": p["style"], "drums": p["groove"], "chord_program": str(p["chord_program"]),
        "bass_program": str(p["bass_program"]), "pad_program": str(p["pad_program"]), "lead_part": p["lead_part"],
        "lead_program": str(p["lead_program"]), "reverb_s": f"{p['reverb_s']:.2f}", "delay_ms": f"{p['delay_ms']:.0f}",
        "harmony_steps": str(p["harmony_steps"]),
        "double_track": "true" if np.isfinite(p["double_track_db"]) else "false",
        "compression_db": f"{p['compression_db']:.1f}", "limiter_db": f"{p['limiter_db']:.1f}",
        "stereo_width": f"{p['stereo_width']:.2f}", "bitrate_kbps": str(p["bitrate_kbps"]),
    }  # fmt: skip


# ---- MIDI parts --------------------------------------------------------------------------------

# Groove -> {position within the beat cycle (quarter notes): [(drum note, velocity)]}, over
# ``cycle`` quarter notes; kick 36, snare 38, side stick 37, closed/open hat 42/46, ride 51,
# pedal hat 44.
_GROOVES: dict[str, tuple[float, dict[float, list[tuple[int, int]]]]] = {
    "rock": (2.0, {0.0: [(36, 100), (42, 70)], 0.5: [(42, 55)], 1.0: [(38, 95), (42, 70)], 1.5: [(42, 55)]}),
    "half-time": (4.0, {0.0: [(36, 100), (42, 65)], 0.5: [(42, 50)], 1.0: [(42, 65)], 1.5: [(42, 50), (36, 80)],
                        2.0: [(38, 100), (42, 65)], 2.5: [(42, 50)], 3.0: [(42, 65)], 3.5: [(42, 50)]}),
    "shuffle": (2.0, {0.0: [(36, 95), (51, 70)], 2 / 3: [(51, 50)], 1.0: [(38, 85), (51, 70)], 5 / 3: [(51, 50)]}),
    "disco": (1.0, {0.0: [(36, 105), (42, 60)], 0.5: [(46, 70)]}),
    "bossa": (4.0, {0.0: [(36, 85), (37, 70)], 0.75: [(37, 70)], 1.5: [(37, 70), (36, 70)], 2.0: [(36, 85)],
                    2.5: [(37, 70)], 3.25: [(37, 70)], 3.5: [(36, 70)]}),
    "brushes": (2.0, {0.0: [(51, 55), (36, 60)], 1.0: [(51, 55), (37, 55), (44, 45)], 1.5: [(51, 40)]}),
}  # fmt: skip


def drum_events(*, groove: str, start_beat: float, total_beats: float, beats_per_bar: float) -> list[Event]:
    """A drum groove on channel 10 from ``start_beat`` to the end, a crash on the first bar line.

    The groove's cycle restarts on every bar line, so odd metres (3/4, 6/8) keep their downbeat.

    Parameters
    ----------
    groove : str
        One of :data:`GROOVES` (``none`` gives no events).
    start_beat, total_beats, beats_per_bar : float
        Quarter notes.

    >>> sorted({e[3] for e in drum_events(groove="rock", start_beat=0, total_beats=4, beats_per_bar=4)})
    [36, 38, 42, 49]
    """
    if groove == "none":
        return []
    if groove not in _GROOVES:
        raise ValueError(f"unknown groove {groove!r}; choose one of: {', '.join(GROOVES)}")
    cycle, hits = _GROOVES[groove]
    first_bar = np.ceil(start_beat / beats_per_bar - 1e-9) * beats_per_bar
    events: list[Event] = [(float(first_bar), 1.0, DRUM_CHANNEL, 49, 90)] if first_bar < total_beats else []
    bar = first_bar
    while bar < total_beats - 1e-9:
        offset = 0.0
        while offset < beats_per_bar - 1e-9:
            for position, strokes in hits.items():
                beat = bar + offset + position
                if offset + position < beats_per_bar - 1e-9 and beat < total_beats - 0.05:
                    events += [(float(beat), 0.2, DRUM_CHANNEL, note, velocity) for note, velocity in strokes]
            offset += cycle
        bar += beats_per_bar
    return events


def lead_events(*, notes: list[Note], part: str, beats_per_bar: float, total_beats: float, velocity: int) -> list[Event]:
    """The lead instrument's line: the sung notes in unison (``doubling``) or one bar later (``canon``).

    Parameters
    ----------
    notes : list of (start beat, length in beats, MIDI pitch)
        The sung notes.
    part : str
        One of :data:`LEAD_PARTS`.
    beats_per_bar, total_beats : float
        Quarter notes; a canon's notes past the song's end are dropped.
    velocity : int
        MIDI velocity, 1..127.

    >>> lead_events(notes=[(0.0, 1.0, 60.0)], part="canon", beats_per_bar=3.0, total_beats=8.0, velocity=80)
    [(3.0, 1.0, 3, 60, 80)]
    """
    if part == "none":
        return []
    if part not in LEAD_PARTS:
        raise ValueError(f"unknown lead part {part!r}; choose one of: {', '.join(LEAD_PARTS)}")
    shift = beats_per_bar if part == "canon" else 0.0
    return [(start + shift, length, LEAD_CHANNEL, int(round(pitch)), velocity)
            for start, length, pitch in notes if start + shift < total_beats - 0.25]  # fmt: skip


def pad_events(*, chords, velocity: int = 50) -> list[Event]:
    """A pad holding each chord's triad around middle C (channel 3).

    ``chords`` are :class:`nextvox.synth.accompaniment.Chord`-like (start_beat, length_beats,
    root_pc, third).
    """
    events: list[Event] = []
    for chord in chords:
        root = 55 + (chord.root_pc - 55) % 12
        events += [(chord.start_beat, chord.length_beats, PAD_CHANNEL, p, velocity) for p in (root, root + chord.third, root + 7)]
    return events


def bass_events(*, chords, velocity: int = 85) -> list[Event]:
    """A bass playing each chord's root, then its fifth halfway through long chords (channel 5)."""
    events: list[Event] = []
    for chord in chords:
        root = 28 + (chord.root_pc - 28) % 12
        if chord.length_beats >= 2:
            half = chord.length_beats / 2
            events += [(chord.start_beat, half, BASS_CHANNEL, root, velocity),
                       (chord.start_beat + half, half, BASS_CHANNEL, root + 7, velocity - 10)]  # fmt: skip
        else:
            events.append((chord.start_beat, chord.length_beats, BASS_CHANNEL, root, velocity))
    return events


_MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])


def harmony_pitches(*, pitch_midi: np.ndarray, tonic_pc: int, steps: int) -> np.ndarray:
    """The tune moved by ``steps`` degrees of its major scale (a diatonic harmony line).

    A note outside the scale is first moved to the scale note just below it.

    Parameters
    ----------
    pitch_midi : np.ndarray, shape (N,)
        Sung pitches, MIDI.
    tonic_pc : int
        Tonic pitch class of the (transposed) key, 0 = C.
    steps : int
        Scale steps (2: a third above, -2: a third below, 4: a fifth above).

    >>> harmony_pitches(pitch_midi=np.array([60.0, 62, 64, 71]), tonic_pc=0, steps=2).tolist()
    [64.0, 65.0, 67.0, 74.0]
    """
    pitch = np.round(np.asarray(pitch_midi, dtype=np.float64))
    relative = (pitch - tonic_pc).astype(int)
    octave, pc = np.divmod(relative, 12)
    degree = np.searchsorted(_MAJOR_SCALE, pc, side="right") - 1  # the scale note at or below
    moved = degree + steps
    octave = octave + np.floor_divide(moved, 7)
    return (tonic_pc + 12 * octave + _MAJOR_SCALE[np.mod(moved, 7)]).astype(np.float64)


def _pan(mono: np.ndarray, position: float) -> np.ndarray:
    """Constant-power pan, ``position`` in [-1 (left), 1 (right)]; (N,) -> (N, 2)."""
    angle = (position + 1) * np.pi / 4
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)], axis=1) * np.sqrt(2)


def _db(value: float) -> float:
    return 0.0 if not np.isfinite(value) else 10 ** (value / 20)


def produce_mix(
    *, lead: np.ndarray, band: np.ndarray, production: Production, sample_rate_hz: int, seed: int,
    harmony: np.ndarray | None = None, double: np.ndarray | None = None, vocal_rms_dbfs: float = -20.0,
    peak_dbfs: float = -1.0, fade_s: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Produce a studio mix from a dry lead vocal, its backing takes and the rendered band.

    The vocal bus is the lead (centre) with its double (panned), reverb and echo; the
    accompaniment is the band (its stereo width set) with the backing harmony (panned the
    other way). The vocal bus sits ``production.ratio_db`` above the accompaniment (mean power
    of the mono downmixes), then the bus compressor and the limiter act on the whole mix, and
    the mix is normalised to ``peak_dbfs``.

    Parameters
    ----------
    lead : np.ndarray, shape (N,)
        Dry lead vocal.
    band : np.ndarray, shape (N, 2)
        Rendered accompaniment.
    production : Production
        A studio production.
    sample_rate_hz : int
        Hz.
    seed : int
        Seeds the reverb's impulse responses and the pans.
    harmony, double : np.ndarray, shape (N,), optional
        The backing harmony take and the second lead take, when the production has them.
    vocal_rms_dbfs, peak_dbfs, fade_s : float
        Lead level before mixing (dBFS), final peak (dBFS), fade length at both ends (seconds).

    Returns
    -------
    mix : np.ndarray, float32, shape (N, 2)
    vocal : np.ndarray, float32, shape (N,)
        The dry lead at the gain it has in the mix (compressor and limiter included): the
        separation target and the "isolated vocal" of the song.
    """
    rng = np.random.default_rng(seed)
    n = len(lead)
    gain = 10 ** (vocal_rms_dbfs / 20) / (np.sqrt(np.mean(lead**2)) + 1e-12)
    lead = lead * gain
    side = 1.0 if rng.random() < 0.5 else -1.0
    vocal_bus = np.stack([lead, lead], axis=1)
    if double is not None:
        vocal_bus += _pan(double * gain * _db(production.double_track_db), side * rng.uniform(0.4, 0.9))
    dry = 0.5 * (vocal_bus[:, 0] + vocal_bus[:, 1])
    if production.reverb_s > 0:
        vocal_bus += reverb(dry, sample_rate_hz=sample_rate_hz, rt60_s=production.reverb_s,
                            seed=int(rng.integers(2**31))) * _db(production.reverb_wet_db)  # fmt: skip
    if production.delay_ms > 0:
        echo = feedback_delay(dry, sample_rate_hz=sample_rate_hz, delay_ms=production.delay_ms, feedback=production.delay_feedback)
        vocal_bus += _pan(echo * _db(production.delay_wet_db), -side * 0.3)
    accompaniment = set_stereo_width(band.astype(np.float64), width=production.stereo_width)
    band_power = np.mean((0.5 * (accompaniment[:, 0] + accompaniment[:, 1])) ** 2) + 1e-12
    vocal_power = np.mean((0.5 * (vocal_bus[:, 0] + vocal_bus[:, 1])) ** 2) + 1e-12
    backing = None
    if harmony is not None:
        backing = _pan(harmony * gain * _db(production.harmony_db), -side * rng.uniform(0.3, 0.8))
    # The accompaniment (band + harmony) is scaled as one, so the ratio holds for the whole of it.
    backing_power = np.mean((0.5 * (backing[:, 0] + backing[:, 1])) ** 2) if backing is not None else 0.0
    scale = np.sqrt(vocal_power / (band_power + backing_power) / 10 ** (production.ratio_db / 10))
    accompaniment = accompaniment * scale + (backing * scale if backing is not None else 0.0)
    fade = np.ones(n)
    n_fade = min(int(fade_s * sample_rate_hz), n // 2)
    fade[:n_fade] = np.linspace(0, 1, n_fade)
    fade[n - n_fade :] = np.linspace(1, 0, n_fade)
    mix = (vocal_bus + accompaniment) * fade[:, None]
    lead = lead * fade
    bus_gain = np.ones(n)
    if production.compression_db > 0:
        bus_gain = compress(mix, sample_rate_hz=sample_rate_hz, threshold_below_rms_db=production.compression_db)
    if production.limiter_db > 0:
        # The limiter's drive is relative to a mix peaking at 0 dBFS after compression.
        pre = mix * bus_gain[:, None]
        bus_gain = bus_gain * limit(pre / (np.abs(pre).max() + 1e-12), sample_rate_hz=sample_rate_hz,
                                    drive_db=production.limiter_db) / (np.abs(pre).max() + 1e-12)  # fmt: skip
    mix, lead = mix * bus_gain[:, None], lead * bus_gain
    peak = 10 ** (peak_dbfs / 20) / (np.abs(mix).max() + 1e-12)
    return (mix * peak).astype(np.float32), (lead * peak).astype(np.float32)
