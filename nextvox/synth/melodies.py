"""Real melodies for the library: folk songs of the Essen collection in the music21 corpus.

A melody is a list of notes (MIDI pitch or rest, length in quarter notes) with its key,
metre and a typical tempo. Tunes are taken in a fixed order, round-robin over several
collections, and kept only when they are singable and clearly in a key: one voice, no
chords, a time signature, 8-40 s at their typical tempo, a range of at most 16 semitones,
a last note on the tonic. The Essen collection holds many variants of one song next to
each other, so only every :data:`STRIDE`-th tune is looked at, and a tune is dropped when its
opening notes or two words of its title match a tune already taken: a "melody" label must
not split one tune in two.

Parsing costs ~10-40 ms a tune, so the accepted list is cached as JSON and only scanned as
far as a library needs.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nextvox.errors import NextvoxError
from nextvox.files import write_text_atomic

__all__ = ["Melody", "load_melodies", "transpose_into_range", "melody_seconds", "MELODY_CACHE_VERSION"]

MELODY_CACHE_VERSION = 2  # 2: titles read as their files are encoded (umlauts, not U+0081)

# Collections scanned round-robin (German, Luxembourgish, Chinese and Lorraine folk songs).
COLLECTIONS = ("kinder0", "erk10", "boehme10", "han1", "lux", "fink0", "zuccal0", "altdeu20", "lot", "erk20")
MIN_SECONDS, MAX_SECONDS = 8.0, 40.0
MAX_RANGE_SEMITONES = 16
MIN_NOTES = 12
STRIDE = 5  # tunes apart in a file: neighbours are often variants of one song
OPENING_NOTES = 8  # notes compared to catch variants under different titles
SHORTEST_BEATS = 0.25  # a sixteenth: shorter notes leave no time for a syllable
# Typical tempo in quarter notes per minute by the metre's beat unit: 2/4 at a walking
# pace, 6/8 at a dotted-quarter lilt, 2/2 in half-note pulses.
TEMPO_QPM_BY_DENOMINATOR = {2: 130.0, 4: 100.0, 8: 90.0}


@dataclass(frozen=True)
class Melody:
    """One tune, as written (before transposition).

    Attributes
    ----------
    melody_id : str
        Stable id shared by every rendition, e.g. ``essen-kinder0-3``.
    title : str
    source : str
        Where it came from in the music21 corpus.
    tonic_pc : int
        Pitch class of the key's tonic, 0 = C.
    beats_per_bar : float
        Bar length in quarter notes.
    pickup_beats : float
        Length of the anacrusis before the first full bar, quarter notes.
    tempo_qpm : float
        Typical tempo, quarter notes per minute.
    pitch_midi : tuple of int or None
        MIDI pitch of each note; None is a rest.
    duration_beats : tuple of float
        Length of each note, quarter notes.
    """

    melody_id: str
    title: str
    source: str
    tonic_pc: int
    beats_per_bar: float
    pickup_beats: float
    tempo_qpm: float
    pitch_midi: tuple[int | None, ...]
    duration_beats: tuple[float, ...]


def melody_seconds(*, melody: Melody, tempo_qpm: float) -> float:
    """Length of one pass through the tune at ``tempo_qpm``, seconds."""
    return sum(melody.duration_beats) * 60.0 / tempo_qpm


def transpose_into_range(*, pitch_midi: np.ndarray, low_midi: int, high_midi: int, offset_semitones: int) -> int:
    """Semitones that centre a tune in a singer's range, moved by ``offset_semitones`` if it still fits.

    Parameters
    ----------
    pitch_midi : np.ndarray, shape (N,)
        Sung pitches (no rests), MIDI.
    low_midi, high_midi : int
        The singer's comfortable range, inclusive.
    offset_semitones : int
        A per-rendition nudge away from the centre (dropped where it would leave the range).

    Examples
    --------
    >>> transpose_into_range(pitch_midi=np.array([60, 67]), low_midi=45, high_midi=64, offset_semitones=0)
    -9
    >>> transpose_into_range(pitch_midi=np.array([60, 67]), low_midi=45, high_midi=64, offset_semitones=9)
    -3
    """
    lo, hi = int(pitch_midi.min()), int(pitch_midi.max())
    centred = int(np.floor((low_midi + high_midi) / 2 - (lo + hi) / 2))
    # The nudge is clipped to the headroom on each side (zero when the tune fills the range).
    headroom_up = max(high_midi - (hi + centred), 0)
    headroom_down = max((lo + centred) - low_midi, 0)
    return centred + int(np.clip(offset_semitones, -headroom_down, headroom_up))


def corpus_text(raw: bytes) -> str:
    """The text of an Essen ABC file of music21's corpus, its umlauts restored.

    Some of these files were written in the DOS code page 437 and later stored as UTF-8 as
    though that were Latin-1: ``ü`` (cp437 byte 0x81) became U+0081, ``ß`` (0xE1) became
    ``á``. A file holding such C1 control characters is turned back into its bytes and read
    as cp437; any other file is read as the UTF-8 it is.

    Examples
    --------
    >>> corpus_text("T: Wir haben verloren ein Bl\u0081melein, Das ist ein harte Bu\u00e1".encode())
    'T: Wir haben verloren ein Blümelein, Das ist ein harte Buß'
    >>> corpus_text("T: Grüß Gott".encode())
    'T: Grüß Gott'
    """
    text = raw.decode("utf-8", errors="replace")
    if not re.search("[\u0080-\u009f]", text):
        return text
    try:
        return text.encode("latin-1").decode("cp437")
    except UnicodeEncodeError:  # characters beyond Latin-1: not a mis-stored cp437 file
        return text


def _tunes(text: str) -> list[str]:
    """Split an ABC file into the texts of its tunes."""
    return [chunk.strip() for chunk in re.split(r"\n(?=X:)", "\n" + text) if chunk.strip().startswith("X:")]


def _clean_title(line: str) -> str:
    """``T: NEUJAHRSLIED, (BAND 1), S. 13`` -> ``Neujahrslied`` (no book references)."""
    title = re.sub(r"\(Band \d+\)|,?\s*S\.\s*\d+|\ufffd", "", line[2:], flags=re.IGNORECASE)
    return " ".join(title.replace(",", " ").split()).title()


def _title_words(title: str) -> frozenset[str]:
    """Four-letter stems of a title's longer words (``Kindlein`` and ``Kinderl`` meet as ``kind``)."""
    return frozenset(w[:4] for w in re.findall(r"\w+", title.casefold()) if len(w) >= 4)


def _opening(melody: Melody) -> tuple[int, ...]:
    """First sung notes relative to the tonic: variants under other titles share them."""
    sung = [p for p in melody.pitch_midi if p is not None][:OPENING_NOTES]
    return tuple((p - melody.tonic_pc) % 12 for p in sung)


def _melody_from_abc(*, abc: str, melody_id: str, source: str) -> Melody | None:
    """Parse one ABC tune; None when it is not a singable, clearly keyed melody."""
    from music21 import converter, key, meter, note

    title = _clean_title(next((line for line in abc.splitlines() if line.startswith("T:")), "T:"))
    try:
        score = converter.parseData(abc, format="abc")
    except Exception:  # music21 raises many types on odd ABC; such tunes are simply skipped
        return None
    parts = score.parts if hasattr(score, "parts") else []
    if len(parts) != 1 or not title:
        return None
    part = parts[0].stripTies()
    keys = list(part.recurse().getElementsByClass(key.Key))
    metres = list(part.recurse().getElementsByClass(meter.TimeSignature))
    if len(keys) != 1 or len(metres) != 1 or keys[0].mode != "major":
        return None
    pitches: list[int | None] = []
    beats: list[float] = []
    for element in part.recurse().notesAndRests:
        length = float(element.quarterLength)
        if length <= 0:
            continue  # grace notes
        if isinstance(element, note.Rest):
            pitches.append(None)
        elif isinstance(element, note.Note):
            pitches.append(int(element.pitch.midi))
        else:
            return None  # a chord: not a monophonic melody
        beats.append(length)
    while pitches and pitches[-1] is None:  # trailing rests belong to the accompaniment
        pitches.pop()
        beats.pop()
    sung = np.array([p for p in pitches if p is not None])
    if len(sung) < MIN_NOTES or min(beats) < SHORTEST_BEATS:
        return None
    tonic_pc = keys[0].tonic.pitchClass
    if int(sung[-1]) % 12 != tonic_pc or np.ptp(sung) > MAX_RANGE_SEMITONES:
        return None
    metre = metres[0]
    tempo = TEMPO_QPM_BY_DENOMINATOR.get(metre.denominator)
    if tempo is None:
        return None
    measures = list(part.getElementsByClass("Measure"))
    bar = float(metre.barDuration.quarterLength)
    first = float(measures[0].duration.quarterLength) if measures else bar
    melody = Melody(
        melody_id=melody_id,
        title=title,
        source=source,
        tonic_pc=int(tonic_pc),
        beats_per_bar=bar,
        pickup_beats=first if first < bar else 0.0,
        tempo_qpm=tempo,
        pitch_midi=tuple(pitches),
        duration_beats=tuple(beats),
    )
    if not MIN_SECONDS <= melody_seconds(melody=melody, tempo_qpm=tempo) <= MAX_SECONDS:
        return None
    return melody


def _scan(count: int) -> list[Melody]:
    """Accept tunes round-robin over :data:`COLLECTIONS` until ``count`` are found."""
    from music21 import corpus

    files = {}
    for name in COLLECTIONS:
        paths = corpus.getWork(f"essenFolksong/{name}")
        path = Path(paths[0] if isinstance(paths, list) else paths)
        files[name] = _tunes(corpus_text(path.read_bytes()))
    found: list[Melody] = []
    titles: list[frozenset[str]] = []
    openings: set[tuple[int, ...]] = set()
    for index in range(0, max(len(t) for t in files.values()), STRIDE):
        for name, tunes in files.items():
            if index >= len(tunes):
                continue
            number = re.match(r"X:\s*(\d+)", tunes[index])
            melody_id = f"essen-{name}-{number.group(1) if number else index + 1}"
            melody = _melody_from_abc(
                abc=tunes[index], melody_id=melody_id, source=f"music21 corpus essenFolksong/{name}.abc"
            )
            if melody is None or _opening(melody) in openings:
                continue
            words = _title_words(melody.title)
            if any(len(words & seen) >= 2 for seen in titles):
                continue
            titles.append(words)
            openings.add(_opening(melody))
            found.append(melody)
            if len(found) == count:
                return found
    raise NextvoxError(f"the music21 corpus yields only {len(found)} usable melodies; asked for {count}")


def load_melodies(*, count: int, cache_dir: Path) -> list[Melody]:
    """The first ``count`` accepted melodies, from the JSON cache when it holds enough.

    Parameters
    ----------
    count : int
        How many melodies; the same count always gives the same list, and a larger count
        extends a smaller one.
    cache_dir : Path
        Folder for ``melodies.json``.
    """
    path = cache_dir / "melodies.json"
    if path.exists():
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("version") == MELODY_CACHE_VERSION and len(cached["melodies"]) >= count:
            return [
                Melody(**{**m, "pitch_midi": tuple(m["pitch_midi"]), "duration_beats": tuple(m["duration_beats"])})
                for m in cached["melodies"][:count]
            ]
    melodies = _scan(count)
    write_text_atomic(path, json.dumps({"version": MELODY_CACHE_VERSION, "melodies": [asdict(m) for m in melodies]}))
    return melodies
