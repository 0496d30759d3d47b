"""Plan and render a labelled singing library: songs, isolated vocals and ``labels.csv``.

Layout of a library folder ``DIR``::

    DIR/songs/<singer>/<NN> <Title>.<ext>    the mixes (what a user's ``analyze`` indexes)
    DIR/vocals/<singer>/<NN> <Title>.flac    the isolated vocal of each song, 16 kHz mono
    DIR/vocals/.nomedia                      tells media scanners (and nextvox analyze) to skip vocals/
    DIR/labels.csv                           one row per song, paths relative to DIR
    DIR/.nextvox-synth/                      caches (syllable banks, melodies) and temp files

The plan is a pure function of the arguments and the seed, so a re-run renders only the
songs whose files are missing; every file is written under a temporary name and renamed,
so an interrupted run never leaves a half file that counts as done.

Held-out split: the ``train`` and ``eval`` voice sets share no singer (see
:mod:`nextvox.synth.voices`) and no melody either: a tune belongs to the ``eval`` split when
the CRC-32 of its id is a multiple of :data:`EVAL_MELODY_MODULUS` (about a quarter of the
corpus), and a ``train`` library never sings it. The ``demo`` set draws from every tune.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf

from nextvox.constants import SAMPLE_RATE_HZ
from nextvox.errors import NextvoxError
from nextvox.synth.accompaniment import STYLE_BASS_CHANNEL, STYLES, accompaniment_midi, choose_chords, render_midi
from nextvox.synth.melodies import Melody, load_melodies, melody_seconds, transpose_into_range
from nextvox.synth.singing import render_vocal
from nextvox.synth.syllables import SYLLABLES, build_bank, load_bank
from nextvox.synth.mbrola import build_phonemes, render_vocal_mbrola
from nextvox.synth.production import (
    BASS_CHANNEL, LEAD_CHANNEL, LIBRARY_PRODUCTIONS, PAD_CHANNEL, PLAIN, PRODUCTION_COLUMNS, Production, bass_events, draw_production, drum_events,
    harmony_pitches, lead_events, pad_events, produce_mix, production_labels,
)  # fmt: skip
from nextvox.synth.voices import METHOD_MBROLA, Singer, Voice, check_dependencies, select_singers
from nextvox.files import atomic_path
from nextvox.workers import WorkerPool

__all__ = ["SongPlan", "EVAL_MELODY_MODULUS", "melody_split", "LABEL_COLUMNS", "FORMATS", "plan_library", "song_notes", "render_library"]

FORMATS = ("mp3", "flac", "ogg", "opus", "m4a", "wav")
LABEL_COLUMNS = (
    "path", "singer", "gender", "melody", "genre", "vocal_path", "ratio_db", "transposition", "tempo_bpm",
    "title", "voice", "engine", "method", "synthetic", "language", "licence", "format", "duration_s", "age",
    *PRODUCTION_COLUMNS,
)  # fmt: skip
CACHE_DIR_NAME = ".nextvox-synth"
TARGET_SONG_S = 22.0  # verses are repeated until a song is at least this long (3 at most)
MAX_VERSES = 3
SHORT_SONG_S = 10.0  # songs capped below this start singing at once, without an intro bar
MAX_MELODY_POOL = 100  # tunes shared by a big library (each sung by many singers)
EVAL_MELODY_MODULUS = 4  # one tune in four is held out for evaluation
# Productions are drawn from a generator of their own (seeded by the library seed, the song
# and this stream number), so a plain library's plan is the same as before productions existed.
PRODUCTION_STREAM = 14
VOCAL_RMS_DBFS = -20.0  # vocal level before the mix is peak-normalised
PEAK_DBFS = -1.0
FADE_S = 0.05
# ffmpeg output options per format; bitexact keeps the files identical run to run.
_ENCODERS = {
    "mp3": ["-c:a", "libmp3lame", "-q:a", "4", "-ar", "44100"],
    "flac": ["-c:a", "flac", "-ar", "44100"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "4", "-ar", "44100"],
    "opus": ["-c:a", "libopus", "-b:a", "96k", "-ar", "48000"],
    "m4a": ["-c:a", "aac", "-b:a", "128k", "-ar", "44100"],
    "wav": ["-c:a", "pcm_s16le", "-ar", "44100"],
}


@dataclass(frozen=True)
class SongPlan:
    """Everything needed to render one song, decided before any rendering.

    Attributes
    ----------
    path, vocal_path : str
        Mix and isolated vocal, relative to the library folder.
    ratio_db : float
        Vocal-to-accompaniment power ratio over the whole song, dB.
    transposition : int
        Semitones the tune was moved to fit the singer.
    tempo_qpm : float
        Quarter notes per minute of this rendition.
    verses : int
        Times the tune is sung.
    intro_beats : float
        Accompaniment before the first sung note, quarter notes.
    total_s : float
        Song length, seconds.
    seed : int
        Seeds the rendition's vibrato phases and dynamics.
    production : Production
        How the song is produced (:mod:`nextvox.synth.production`); a studio production's
        ratio and format are the plan's ``ratio_db`` and ``fmt``.
    """

    index: int
    singer: Singer
    voice: Voice
    melody: Melody
    title: str
    album: str
    track: int
    genre: str
    fmt: str
    ratio_db: float
    transposition: int
    tempo_qpm: float
    verses: int
    intro_beats: float
    total_s: float
    vibrato_rate_hz: float
    vibrato_depth_cents: float
    seed: int
    path: str
    vocal_path: str
    production: Production = PLAIN


def _safe_name(text: str) -> str:
    """A file name part: no path separators or control characters, at most 60 characters."""
    return re.sub(r"[^\w\-' ]+", "", text).strip()[:60] or "song"


def song_notes(*, plan: SongPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The sung notes of a rendition on its beat grid and in seconds.

    Returns
    -------
    onset_s, duration_s : np.ndarray, shape (N,)
        Start and length of every sung note (rests left out), seconds from the song's start.
    pitch_midi : np.ndarray, shape (N,)
        Transposed pitch, MIDI.
    onset_beats : np.ndarray, shape (N,)
        Start in quarter notes, bar lines at multiples of the melody's bar length.
    """
    melody = plan.melody
    beats = np.array(melody.duration_beats)
    pitches = np.array([np.nan if p is None else p for p in melody.pitch_midi], dtype=np.float64)
    verse_beats = float(beats.sum())
    starts = np.concatenate([[0.0], np.cumsum(beats)[:-1]])
    onset_beats = np.concatenate([plan.intro_beats + v * verse_beats + starts for v in range(plan.verses)])
    length_beats = np.tile(beats, plan.verses)
    pitch = np.tile(pitches, plan.verses) + plan.transposition
    seconds_per_beat = 60.0 / plan.tempo_qpm
    end_beats = plan.total_s / seconds_per_beat
    # A capped song keeps only notes that start before the end, and cuts the last one.
    keep = ~np.isnan(pitch) & (onset_beats < end_beats - 0.25)
    onset_beats, length_beats, pitch = onset_beats[keep], length_beats[keep], pitch[keep]
    length_beats = np.minimum(length_beats, end_beats - onset_beats)
    return onset_beats * seconds_per_beat, length_beats * seconds_per_beat, pitch, onset_beats


def _song_shape(*, melody: Melody, tempo_qpm: float, max_song_s: float | None) -> tuple[int, float, float]:
    """Verses, intro (quarter notes) and total length (seconds) of a rendition."""
    seconds_per_beat = 60.0 / tempo_qpm
    verses = int(np.clip(np.ceil(TARGET_SONG_S / melody_seconds(melody=melody, tempo_qpm=tempo_qpm)), 1, MAX_VERSES))
    bar = melody.beats_per_bar
    # The pickup ends on a bar line, after one bar of accompaniment in a full-length song.
    lead_in = (bar - melody.pickup_beats) % bar
    intro = lead_in if max_song_s is not None and max_song_s < SHORT_SONG_S else lead_in + bar
    sung_end = intro + verses * sum(melody.duration_beats)
    total_beats = np.ceil(sung_end / bar - 1e-9) * bar + bar  # finish the bar, then one bar of outro
    total_s = total_beats * seconds_per_beat
    if max_song_s is not None:
        total_s = min(total_s, max_song_s)
    return verses, float(intro), float(round(total_s, 3))


def _checked_singers(*, n_singers: int, n_songs: int, voice_set: str, max_song_s: float | None) -> tuple[Singer, ...]:
    """The library's singers, after checking the arguments that shape a plan."""
    if n_songs < 1:
        raise NextvoxError(f"a library needs at least one song per singer, not {n_songs}")
    if max_song_s is not None and max_song_s <= 1.0:
        raise NextvoxError(f"max_song_s must be above 1 s, not {max_song_s}")
    return select_singers(n_singers=n_singers, voice_set=voice_set)


def melody_split(melody_id: str) -> str:
    """``"eval"`` for a tune held out from training, else ``"train"``: a fixed rule on the id.

    Examples
    --------
    >>> melody_split("essen-kinder0-1"), melody_split("essen-kinder0-4")
    ('train', 'eval')
    """
    return "eval" if zlib.crc32(melody_id.encode()) % EVAL_MELODY_MODULUS == 0 else "train"


def _melody_pool(*, count: int, voice_set: str, cache_dir: Path) -> list[Melody]:
    """``count`` tunes of the voice set's melody split, in corpus order (every tune for ``demo``)."""
    if voice_set == "demo":
        return load_melodies(count=count, cache_dir=cache_dir)
    # Scan enough of the corpus that the split holds ``count`` tunes; scan further if not.
    share = 1 / EVAL_MELODY_MODULUS if voice_set == "eval" else 1 - 1 / EVAL_MELODY_MODULUS
    scanned = int(np.ceil(count / share * 1.2)) + 8
    while True:
        pool = [m for m in load_melodies(count=scanned, cache_dir=cache_dir) if melody_split(m.melody_id) == voice_set]
        if len(pool) >= count:
            return pool[:count]
        scanned = int(scanned * 1.5)


def plan_library(
    *, n_singers: int, n_songs: int, seed: int, voice_set: str, max_song_s: float | None, cache_dir: Path,
    production: str = "plain",
) -> list[SongPlan]:
    """Decide every song of a library from the seed: singers, tunes, keys, tempi, mix, format.

    Each singer sings ``n_songs`` different tunes. Tunes come from a pool of about half as
    many as there are songs, assigned so that neighbouring singers (of alternating gender)
    share tunes: every tune is sung by at least two singers where the pool allows it.
    Formats rotate over all songs and styles over each singer's songs (from a seeded
    start), so neither follows the singer. ``train`` and ``eval`` libraries draw their tunes
    from their own melody split only (:func:`melody_split`).

    ``production`` is ``plain`` (the style's band, a dry voice), ``studio`` (every song drawn a
    studio production: :func:`nextvox.synth.production.draw_production`) or ``mixed`` (each
    song plain or studio by a fair coin). The same seed gives the same songs in every
    production: only the production (with its ratio and format) differs.
    """
    if production not in LIBRARY_PRODUCTIONS:
        raise NextvoxError(f"unknown production {production!r}; choose one of: {', '.join(LIBRARY_PRODUCTIONS)}")
    singers = _checked_singers(n_singers=n_singers, n_songs=n_songs, voice_set=voice_set, max_song_s=max_song_s)
    pool_size = int(min(max(n_songs, np.ceil(n_singers * n_songs / 2)), max(MAX_MELODY_POOL, n_songs)))
    rng = np.random.default_rng(seed)
    pool = _melody_pool(count=pool_size, voice_set=voice_set, cache_dir=cache_dir)
    pool = [pool[i] for i in rng.permutation(len(pool))]
    shift = max(1, n_songs // 2)
    plans = []
    for i, singer in enumerate(singers):
        # A singer's own vibrato, kept across its songs (a trait of the voice).
        rate_hz, depth_cents = rng.uniform(5.0, 6.2), rng.uniform(15.0, 25.0)
        rate_hz = singer.vibrato_rate_hz or rate_hz  # a variant's own vibrato (drawn anyway: plans stay the same)
        depth_cents = singer.vibrato_depth_cents or depth_cents
        style_offset = int(rng.integers(len(STYLES)))
        for j in range(n_songs):
            melody = pool[(i * shift + j) % len(pool)]
            tempo = float(round(melody.tempo_qpm * rng.uniform(0.92, 1.08)))
            sung = np.array([p for p in melody.pitch_midi if p is not None])
            transposition = transpose_into_range(
                pitch_midi=sung, low_midi=singer.low_midi, high_midi=singer.high_midi,
                offset_semitones=int(rng.integers(-2, 3)),
            )  # fmt: skip
            verses, intro, total_s = _song_shape(melody=melody, tempo_qpm=tempo, max_song_s=max_song_s)
            genre = STYLES[(j + style_offset) % len(STYLES)]
            fmt = FORMATS[len(plans) % len(FORMATS)]
            stem = f"{j + 1:02d} {_safe_name(melody.title)}"
            plans.append(
                SongPlan(
                    index=len(plans), singer=singer, voice=singer.voices[j % len(singer.voices)], melody=melody,
                    title=melody.title, album=f"{singer.display_name} - {genre.title()} Songs", track=j + 1,
                    genre=genre, fmt=fmt, ratio_db=float(np.round(rng.uniform(-3.0, 6.0) * 2) / 2),
                    transposition=transposition, tempo_qpm=tempo, verses=verses, intro_beats=intro,
                    total_s=total_s, vibrato_rate_hz=float(round(rate_hz + rng.uniform(-0.2, 0.2), 2)),
                    vibrato_depth_cents=float(round(depth_cents, 1)), seed=int(rng.integers(2**31)),
                    path=f"songs/{singer.singer_id}/{stem}.{fmt}",
                    vocal_path=f"vocals/{singer.singer_id}/{stem}.flac",
                )  # fmt: skip
            )
    if production == "plain":
        return plans
    return [_produced(plan, seed=seed, production=production) for plan in plans]


def _produced(plan: SongPlan, *, seed: int, production: str) -> SongPlan:
    """``plan`` with its drawn production, ratio, format and file name."""
    rng = np.random.default_rng([seed, plan.index, PRODUCTION_STREAM])
    style = "studio" if production == "studio" or rng.random() < 0.5 else "plain"
    drawn = draw_production(rng=rng, style=style)
    if drawn.is_plain:
        return plan
    return replace(plan, production=drawn, ratio_db=drawn.ratio_db, fmt=drawn.fmt,
                   path=str(Path(plan.path).with_suffix("." + drawn.fmt).as_posix()))  # fmt: skip


@cache
def _bank(voice: Voice, warp: float, breathiness: float, cache_dir: Path):
    """A worker's copy of a voice's syllable bank as a singer alters it (loaded once per process)."""
    return load_bank(path=build_bank(voice=voice, cache_dir=cache_dir), warp=warp, breathiness=breathiness)


def _lyrics(*, melody_id: str, n_notes: int) -> np.ndarray:
    """Syllable of each note: fixed per tune, so every singer sings the same words."""
    rng = np.random.default_rng(zlib.crc32(melody_id.encode()))
    return rng.integers(0, len(SYLLABLES), n_notes)


def mix_song(*, vocal: np.ndarray, accompaniment: np.ndarray, ratio_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Mix a vocal over an accompaniment at a vocal-to-accompaniment power ratio.

    Parameters
    ----------
    vocal : np.ndarray, shape (N,)
        Mono vocal.
    accompaniment : np.ndarray, shape (N, 2)
        Stereo accompaniment.
    ratio_db : float
        10 log10 of the vocal's mean power over the accompaniment's (mono downmix), whole song.

    Returns
    -------
    mix : np.ndarray, float32, shape (N, 2)
        Peak at :data:`PEAK_DBFS`, with short fades at both ends.
    vocal : np.ndarray, float32, shape (N,)
        The vocal exactly as it sits in the mix (same gain), for separation targets.

    Examples
    --------
    >>> v = np.sin(np.arange(1600) / 5.0); a = np.stack([v, v], axis=1) * 0.5
    >>> mix, kept = mix_song(vocal=v, accompaniment=a, ratio_db=0.0)
    >>> bool(np.allclose(mix[:, 0], 2 * kept, atol=1e-6))
    True
    """
    vocal = vocal * 10 ** (VOCAL_RMS_DBFS / 20) / (np.sqrt(np.mean(vocal**2)) + 1e-12)
    accompaniment_power = np.mean((0.5 * (accompaniment[:, 0] + accompaniment[:, 1])) ** 2) + 1e-12
    accompaniment = accompaniment * np.sqrt(np.mean(vocal**2) / accompaniment_power / 10 ** (ratio_db / 10))
    fade = np.ones(len(vocal))
    n_fade = min(int(FADE_S * SAMPLE_RATE_HZ), len(vocal) // 2)
    fade[:n_fade] = np.linspace(0, 1, n_fade)
    fade[len(fade) - n_fade :] = np.linspace(1, 0, n_fade)
    vocal, accompaniment = vocal * fade, accompaniment * fade[:, None]
    mix = accompaniment + vocal[:, None]
    gain = 10 ** (PEAK_DBFS / 20) / (np.abs(mix).max() + 1e-12)
    return (mix * gain).astype(np.float32), (vocal * gain).astype(np.float32)


def _sing(*, plan: SongPlan, notes: dict, cache_dir: Path) -> np.ndarray:
    """Render sung notes (keyword arguments of :func:`nextvox.synth.singing.render_vocal`) in the plan's voice."""
    if plan.voice.method == METHOD_MBROLA:
        return render_vocal_mbrola(
            voice=plan.voice, phoneme_path=build_phonemes(voice=plan.voice, cache_dir=cache_dir / "banks"), **notes
        )
    return render_vocal(bank=_bank(plan.voice, plan.singer.warp, plan.singer.breathiness, cache_dir / "banks"), **notes)


def _studio_parts(*, plan: SongPlan, chords: list, onset_beats: np.ndarray, duration_beats: np.ndarray,
                  pitch_midi: np.ndarray, total_beats: float) -> tuple[dict[int, int], list, bool]:  # fmt: skip
    """The studio production's MIDI: (programs per channel, added events, keep the style's own drums)."""
    production = plan.production
    bar = plan.melody.beats_per_bar
    programs = {0: production.chord_program}
    bass_channel = STYLE_BASS_CHANNEL[plan.genre]
    events = []
    if bass_channel is None:  # the style has no bass: the studio adds one
        bass_channel = BASS_CHANNEL
        events += bass_events(chords=chords)
    programs[bass_channel] = production.bass_program
    if production.pad_program >= 0:
        programs[PAD_CHANNEL] = production.pad_program
        events += pad_events(chords=chords)
    if production.lead_program >= 0:
        programs[LEAD_CHANNEL] = production.lead_program
        velocity = int(np.clip(round(100 * 10 ** (production.lead_db / 40)), 1, 127))  # velocity ~ amplitude^(1/2)
        notes = list(zip(onset_beats.tolist(), duration_beats.tolist(), pitch_midi.tolist()))
        events += lead_events(notes=notes, part=production.lead_part, beats_per_bar=bar, total_beats=total_beats,
                              velocity=velocity)  # fmt: skip
    events += drum_events(groove=production.groove, start_beat=plan.intro_beats - (plan.intro_beats % bar),
                          total_beats=total_beats, beats_per_bar=bar)  # fmt: skip
    return programs, events, production.groove == "none"


def render_song_audio(*, plan: SongPlan, cache_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Render one song: (mix (N, 2), isolated vocal (N,)), float32 at 16 kHz.

    A plain song is the style's band under the dry voice (:func:`mix_song`); a studio song adds
    the production's parts, a harmony and a double take of the voice, the vocal effects and
    the bus processing (:func:`nextvox.synth.production.produce_mix`). The isolated vocal is
    always the dry lead at the gain it has in the mix.
    """
    onset_s, duration_s, pitch_midi, onset_beats = song_notes(plan=plan)
    n_samples = int(round(plan.total_s * SAMPLE_RATE_HZ))
    total_beats = plan.total_s * plan.tempo_qpm / 60.0
    duration_beats = duration_s * plan.tempo_qpm / 60.0
    tonic_pc = (plan.melody.tonic_pc + plan.transposition) % 12
    chords = choose_chords(
        onset_beats=onset_beats, duration_beats=duration_beats, pitch_midi=pitch_midi, tonic_pc=tonic_pc,
        beats_per_bar=plan.melody.beats_per_bar, total_beats=total_beats,
    )  # fmt: skip
    studio = not plan.production.is_plain
    programs, extra_events, own_drums = (
        _studio_parts(plan=plan, chords=chords, onset_beats=onset_beats, duration_beats=duration_beats,
                      pitch_midi=pitch_midi, total_beats=total_beats)
        if studio else (None, (), True)
    )  # fmt: skip
    midi = accompaniment_midi(
        chords=chords, style=plan.genre, beats_per_bar=plan.melody.beats_per_bar, tempo_qpm=plan.tempo_qpm,
        total_beats=total_beats, programs=programs, extra_events=extra_events, own_drums=own_drums,
    )  # fmt: skip
    accompaniment = render_midi(midi=midi, sample_rate_hz=SAMPLE_RATE_HZ, n_samples=n_samples)
    rng = np.random.default_rng(plan.seed)
    n = len(onset_s)
    # Dynamics: phrases swell gently (slow sine over the song) plus a little per note.
    gain_db = 2.0 * np.sin(2 * np.pi * onset_s / 8.0 + rng.uniform(0, 2 * np.pi)) + rng.uniform(-1.0, 1.0, n)
    notes = {
        "onset_s": onset_s, "duration_s": duration_s, "pitch_midi": pitch_midi,
        "syllable_index": _lyrics(melody_id=plan.melody.melody_id, n_notes=len(plan.melody.pitch_midi) * plan.verses)[:n],
        "total_s": plan.total_s, "vibrato_rate_hz": plan.vibrato_rate_hz,
        "vibrato_depth_cents": plan.vibrato_depth_cents, "gain_db": gain_db, "seed": int(rng.integers(2**31)),
    }  # fmt: skip
    vocal = _sing(plan=plan, notes=notes, cache_dir=cache_dir)
    if not studio:
        return mix_song(vocal=vocal, accompaniment=accompaniment, ratio_db=plan.ratio_db)
    production = plan.production
    takes = np.random.default_rng([plan.seed, PRODUCTION_STREAM])
    harmony = double = None
    if production.harmony_steps:
        pitches = harmony_pitches(pitch_midi=pitch_midi, tonic_pc=tonic_pc, steps=production.harmony_steps)
        harmony = _sing(plan=plan, notes={**notes, "pitch_midi": pitches, "seed": int(takes.integers(2**31))},
                        cache_dir=cache_dir)  # fmt: skip
    if np.isfinite(production.double_track_db):
        # A second take: the same notes a little early or late and a few cents off, its own vibrato.
        jitter_s = np.clip(takes.normal(0.0, 0.012, n), -0.03, 0.03)
        double = _sing(plan=plan, notes={
            **notes, "onset_s": np.maximum(onset_s + jitter_s, 0.0), "pitch_midi": pitch_midi + takes.normal(0.0, 0.06, n),
            "gain_db": gain_db + takes.uniform(-1.0, 1.0, n), "seed": int(takes.integers(2**31)),
        }, cache_dir=cache_dir)  # fmt: skip
    return produce_mix(lead=vocal, band=accompaniment, production=production, sample_rate_hz=SAMPLE_RATE_HZ,
                       seed=int(takes.integers(2**31)), harmony=harmony, double=double, vocal_rms_dbfs=VOCAL_RMS_DBFS,
                       peak_dbfs=PEAK_DBFS, fade_s=FADE_S)  # fmt: skip


def _encode(*, mix: np.ndarray, fmt: str, path: Path, bitrate_kbps: int = 0) -> None:
    """Encode a 16 kHz stereo float mix with ffmpeg (resampled to the format's usual rate).

    ``bitrate_kbps`` > 0 sets a lossy format's bitrate (kbit/s) instead of its default quality.
    """
    options = list(_ENCODERS[fmt])
    if bitrate_kbps > 0:
        for quality in ("-q:a", "-b:a"):
            if quality in options:
                at = options.index(quality)
                del options[at : at + 2]
        options += ["-b:a", f"{bitrate_kbps}k"]
    command = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "f32le", "-ar", str(SAMPLE_RATE_HZ), "-ac", "2",
        "-i", "pipe:0", *options, "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
        "-f", {"m4a": "ipod", "ogg": "ogg", "opus": "ogg"}.get(fmt, fmt), str(path),
    ]  # fmt: skip
    done = subprocess.run(command, input=np.ascontiguousarray(mix).tobytes(), capture_output=True, check=False)
    if done.returncode != 0:
        raise NextvoxError(f"ffmpeg could not encode {fmt}: {done.stderr.decode(errors='replace').strip()[:200]}")


def _tag(*, path: Path, fmt: str, plan: SongPlan) -> None:
    """Write artist, title, album, genre and track number with mutagen."""
    import mutagen

    tags = {
        "artist": plan.singer.display_name, "title": plan.title, "album": plan.album, "genre": plan.genre.title(),
        "tracknumber": str(plan.track),
    }  # fmt: skip
    if fmt == "wav":
        from mutagen.id3 import TALB, TCON, TIT2, TPE1, TRCK
        from mutagen.wave import WAVE

        audio = WAVE(path)
        audio.add_tags()
        for frame, key in ((TPE1, "artist"), (TIT2, "title"), (TALB, "album"), (TCON, "genre"), (TRCK, "tracknumber")):
            audio.tags.add(frame(encoding=3, text=tags[key]))
    else:
        audio = mutagen.File(path, easy=True)
        if audio.tags is None:
            audio.add_tags()
        for key, value in tags.items():
            audio[key] = value
    audio.save()


def prepare_voice(*, voice: Voice, cache_dir: Path) -> Path:
    """Build a voice's cached syllable bank (WORLD voices) or syllable phonemes (MBROLA)."""
    if voice.method == METHOD_MBROLA:
        return build_phonemes(voice=voice, cache_dir=cache_dir)
    return build_bank(voice=voice, cache_dir=cache_dir)


def _prepare_voice_task(voice: Voice, cache_dir: Path) -> Path:
    return prepare_voice(voice=voice, cache_dir=cache_dir)


def _render_song_task(plan: SongPlan, out_dir: Path) -> None:
    render_song(plan=plan, out_dir=out_dir)


def render_song(*, plan: SongPlan, out_dir: Path) -> None:
    """Render, encode and tag one song and its vocal; skip it when both files exist."""
    song, vocal_path = out_dir / plan.path, out_dir / plan.vocal_path
    if song.exists() and vocal_path.exists():
        return
    cache_dir = out_dir / CACHE_DIR_NAME
    mix, vocal = render_song_audio(plan=plan, cache_dir=cache_dir)
    tmp_dir = cache_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    # Temporary names carry the process id: two runs on one folder never share a file.
    tmp_vocal = tmp_dir / f"{plan.index}-{os.getpid()}.flac"
    sf.write(tmp_vocal, vocal, SAMPLE_RATE_HZ, format="FLAC", subtype="PCM_16")
    vocal_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_vocal.replace(vocal_path)
    tmp_song = tmp_dir / f"{plan.index}-{os.getpid()}.{plan.fmt}"
    _encode(mix=mix, fmt=plan.fmt, path=tmp_song, bitrate_kbps=plan.production.bitrate_kbps)
    _tag(path=tmp_song, fmt=plan.fmt, plan=plan)
    song.parent.mkdir(parents=True, exist_ok=True)
    tmp_song.replace(song)  # the song appears last: its existence means the pair is done


def label_row(plan: SongPlan) -> dict[str, str]:
    """One labels.csv row (see :data:`LABEL_COLUMNS`)."""
    return {
        "path": plan.path, "singer": plan.singer.singer_id, "gender": plan.singer.gender,
        "melody": plan.melody.melody_id, "genre": plan.genre, "vocal_path": plan.vocal_path,
        "ratio_db": f"{plan.ratio_db:.1f}", "transposition": str(plan.transposition),
        "tempo_bpm": f"{plan.tempo_qpm:.0f}", "title": plan.title, "voice": plan.voice.voice_id,
        "engine": plan.voice.engine, "method": plan.voice.method, "synthetic": str(plan.singer.synthetic).lower(),
        "language": plan.voice.language, "licence": plan.voice.licence, "format": plan.fmt,
        "duration_s": f"{plan.total_s:.3f}", "age": plan.singer.age, **production_labels(plan.production),
    }  # fmt: skip


def _write_labels(*, plans: list[SongPlan], path: Path) -> None:
    with atomic_path(path) as part, part.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LABEL_COLUMNS)
        writer.writeheader()
        writer.writerows(label_row(p) for p in plans)


def _check_settings(*, cache_dir: Path, settings: dict) -> None:
    """Refuse to mix two libraries' plans in one folder (the skip logic trusts file names)."""
    path = cache_dir / "settings.json"
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        if previous != settings:
            raise NextvoxError(
                f"{cache_dir.parent} holds a library made with other settings ({previous}); use an empty folder"
            )
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, sort_keys=True), encoding="utf-8")


def render_library(
    out_dir: Path,
    *,
    n_singers: int = 8,
    n_songs: int = 4,
    seed: int = 0,
    voice_set: str = "demo",
    max_song_s: float | None = None,
    production: str = "plain",
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Render a labelled singing library into ``out_dir``; return the path of its labels.csv.

    Parameters
    ----------
    out_dir : Path
        Library folder (created). A re-run with the same settings renders only what is missing.
    n_singers, n_songs : int
        Singers (alternating genders, real speakers first) and songs per singer.
    seed : int
        Decides tunes, keys, tempi, styles, mix ratios: same seed, same library.
    voice_set : str
        ``demo``: Debian-main voices only. ``train``: the training split (Debian-main and
        MBROLA singers, more synthetic singers, three quarters of the tunes). ``eval``: the
        held-out split (other singers, the other quarter of the tunes).
    max_song_s : float or None
        Cap on a song's length, seconds (tests use a few seconds).
    production : str
        ``plain``, ``studio`` or ``mixed`` (:func:`plan_library`; docs/synth.md, "Studio production").
    jobs : int or None
        Worker processes; None uses every CPU, 1 renders in this process.
    progress : callable or None
        Called with (songs done, songs in total) as songs finish.

    Raises
    ------
    MissingDependencyError
        A program, voice or the soundfont is not installed; the message names the packages.
    NextvoxError
        Bad arguments, a folder holding another library, or a failed render.
    """
    # Absolute: the speech engines run in their own working folders and are handed paths.
    out_dir = Path(out_dir).resolve()
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise NextvoxError(f"jobs must be at least 1, not {jobs}")
    if production not in LIBRARY_PRODUCTIONS:
        raise NextvoxError(f"unknown production {production!r}; choose one of: {', '.join(LIBRARY_PRODUCTIONS)}")
    check_dependencies(_checked_singers(n_singers=n_singers, n_songs=n_songs, voice_set=voice_set, max_song_s=max_song_s))
    cache_dir = out_dir / CACHE_DIR_NAME
    settings = {"n_singers": n_singers, "n_songs": n_songs, "seed": seed, "voice_set": voice_set,
                "max_song_s": max_song_s}  # fmt: skip
    if production != "plain":  # a folder rendered before productions existed is a plain library
        settings["production"] = production
    _check_settings(cache_dir=cache_dir, settings=settings)
    plans = plan_library(
        n_singers=n_singers, n_songs=n_songs, seed=seed, voice_set=voice_set, max_song_s=max_song_s,
        cache_dir=cache_dir, production=production,
    )  # fmt: skip
    # Media scanners (nextvox's own included) skip a folder holding ".nomedia": analysing
    # DIR then indexes the songs and not their isolated vocals.
    (out_dir / "vocals").mkdir(parents=True, exist_ok=True)
    (out_dir / "vocals" / ".nomedia").touch()
    todo = [p for p in plans if not ((out_dir / p.path).exists() and (out_dir / p.vocal_path).exists())]
    done = len(plans) - len(todo)
    if progress:
        progress(done, len(plans))
    voices = sorted({p.voice for p in todo}, key=lambda v: v.voice_id)
    if jobs == 1 or len(todo) <= 1:
        for voice in voices:
            prepare_voice(voice=voice, cache_dir=cache_dir / "banks")
        for plan in todo:
            render_song(plan=plan, out_dir=out_dir)
            done += 1
            if progress:
                progress(done, len(plans))
    else:
        def rendered(_index: int, _value: None) -> None:
            nonlocal done
            done += 1
            if progress:
                progress(done, len(plans))

        # A failure (or Ctrl-C) stops every worker at once instead of rendering on.
        with WorkerPool(jobs) as pool:
            pool.run(_prepare_voice_task, [(v.voice_id, (v, cache_dir / "banks")) for v in voices], on_result=lambda _key, _path: None)
            # Longest songs first, so no worker is left with a long one at the end.
            pool.run(_render_song_task, [(p.index, (p, out_dir)) for p in sorted(todo, key=lambda p: -p.total_s)], on_result=rendered)
    labels = out_dir / "labels.csv"
    _write_labels(plans=plans, path=labels)
    return labels

