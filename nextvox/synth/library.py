"""Render a labelled singing library: songs, isolated vocals and ``labels.csv``.

Layout of a library folder ``DIR``::

    DIR/songs/<singer>/<NN> <Title>.<ext>    the mixes (what a user's ``analyze`` indexes)
    DIR/vocals/<singer>/<NN> <Title>.flac    the isolated vocal of each song, 16 kHz mono
    DIR/vocals/.nomedia                      tells media scanners (and nextvox analyze) to skip vocals/
    DIR/labels.csv                           one row per song, paths relative to DIR
    DIR/.nextvox-synth/                      caches (syllable banks, melodies) and temp files

The plan (:mod:`nextvox.synth.plan`) is a pure function of the arguments and the seed, so a
re-run renders only the songs whose files are missing; every file is written under a
temporary name and renamed, so an interrupted run never leaves a half file that counts as done.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import soundfile as sf

from nextvox.constants import SAMPLE_RATE_HZ
from nextvox.errors import NextvoxError
from nextvox.synth.accompaniment import STYLE_BASS_CHANNEL, accompaniment_midi, choose_chords, render_midi
from nextvox.synth.plan import PRODUCTION_STREAM, SongPlan, checked_singers, plan_library, song_notes
from nextvox.synth.singing import render_vocal
from nextvox.synth.syllables import SYLLABLES, build_bank, load_bank
from nextvox.synth.mbrola import build_phonemes, render_vocal_mbrola
from nextvox.synth.production import (
    BASS_CHANNEL, LEAD_CHANNEL, LIBRARY_PRODUCTIONS, PAD_CHANNEL, PRODUCTION_COLUMNS, bass_events, drum_events,
    harmony_pitches, lead_events, pad_events, produce_mix, production_labels,
)  # fmt: skip
from nextvox.synth.voices import METHOD_MBROLA, Voice, check_dependencies
from nextvox.files import atomic_path
from nextvox.workers import WorkerPool

__all__ = ["LABEL_COLUMNS", "CACHE_DIR_NAME", "mix_song", "render_song_audio", "render_song", "label_row", "render_library"]

LABEL_COLUMNS = (
    "path", "singer", "gender", "melody", "genre", "vocal_path", "ratio_db", "transposition", "tempo_bpm",
    "title", "voice", "engine", "method", "synthetic", "language", "licence", "format", "duration_s", "age",
    *PRODUCTION_COLUMNS,
)  # fmt: skip
CACHE_DIR_NAME = ".nextvox-synth"
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
    check_dependencies(checked_singers(n_singers=n_singers, n_songs=n_songs, voice_set=voice_set, max_song_s=max_song_s))
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

