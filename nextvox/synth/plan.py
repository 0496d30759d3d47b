"""The plan of a generated library: every song decided from the seed before any rendering.

:func:`plan_library` picks the singers, and for each song the tune, key, tempo, length, style,
mix ratio, format and (in a studio library) production; :func:`song_notes` lays a planned
rendition's notes on its beats and in seconds. Nothing here renders or writes: the plan is a
pure function of the arguments and the seed.

Held-out split: the ``train`` and ``eval`` voice sets share no singer (see
:mod:`nextvox.synth.voices`) and no melody either: a tune belongs to the ``eval`` split when
the CRC-32 of its id is a multiple of :data:`EVAL_MELODY_MODULUS` (about a quarter of the
corpus), and a ``train`` library never sings it. The ``demo`` set draws from every tune.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nextvox.errors import NextvoxError
from nextvox.synth.accompaniment import STYLES
from nextvox.synth.melodies import Melody, load_melodies, melody_seconds, transpose_into_range
from nextvox.synth.production import LIBRARY_PRODUCTIONS, PLAIN, Production, draw_production
from nextvox.synth.voices import Singer, Voice, select_singers

__all__ = [
    "FORMATS", "EVAL_MELODY_MODULUS", "PRODUCTION_STREAM", "SongPlan", "song_notes", "checked_singers", "melody_split",
    "plan_library",
]  # fmt: skip

FORMATS = ("mp3", "flac", "ogg", "opus", "m4a", "wav")
TARGET_SONG_S = 22.0  # verses are repeated until a song is at least this long (3 at most)
MAX_VERSES = 3
SHORT_SONG_S = 10.0  # songs capped below this start singing at once, without an intro bar
MAX_MELODY_POOL = 100  # tunes shared by a big library (each sung by many singers)
EVAL_MELODY_MODULUS = 4  # one tune in four is held out for evaluation
# Productions are drawn from a generator of their own (seeded by the library seed, the song
# and this stream number), so a plain library's plan is the same as before productions existed.
PRODUCTION_STREAM = 14


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


def checked_singers(*, n_singers: int, n_songs: int, voice_set: str, max_song_s: float | None) -> tuple[Singer, ...]:
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
    singers = checked_singers(n_singers=n_singers, n_songs=n_songs, voice_set=voice_set, max_song_s=max_song_s)
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
