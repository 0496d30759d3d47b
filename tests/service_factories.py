"""A real catalogue with hand-made vectors, for tests of the index, the recommender and radio.

The audio files exist (short WAVs with ID3 tags: artist, title, genre) and are scanned by
the real ``scan_library``; their vectors are then written with ``record_analysis`` instead
of being computed, so that every similarity in a test is known in advance.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from nextvox.catalogue import Catalogue, scan_library

ANALYSIS_VERSION = "test-analysis"
DIM = 16


@dataclass(frozen=True)
class Song:
    path: str
    artist: str
    genre: str
    timbre: np.ndarray  # (DIM,)
    fingerprint: np.ndarray  # (8,)
    female: float | None = None  # stored gender probability; None stores none


def write_tagged_wav(path: Path, *, artist: str, title: str, genre: str, seed: int, seconds: float = 0.1) -> None:
    from mutagen.id3 import TCON, TIT2, TPE1
    from mutagen.wave import WAVE

    path.parent.mkdir(parents=True, exist_ok=True)
    samples = 0.1 * np.random.default_rng(seed).standard_normal(int(8000 * seconds)).astype(np.float32)
    sf.write(path, samples, 8000)
    audio = WAVE(path)
    audio.add_tags()
    for frame, text in ((TPE1, artist), (TIT2, title), (TCON, genre)):
        audio.tags.add(frame(encoding=3, text=text))
    audio.save()


def make_catalogue(root: Path, songs: list[Song], *, seconds: float | None = None) -> Catalogue:
    """Files under ``root/music``, the catalogue under ``root/data``, every song 'analysed' with its vectors.

    The files are ``seconds`` long and their stored duration is that (by default 0.1 s files stored as 30 s).
    """
    library = root / "music"
    for i, song in enumerate(songs):
        write_tagged_wav(library / song.path, artist=song.artist, title=Path(song.path).stem, genre=song.genre, seed=i,
                         seconds=seconds or 0.1)
    catalogue = Catalogue(root / "data", library=library.resolve())
    scan_library(catalogue, analysis_version=ANALYSIS_VERSION)
    by_path = {t.path: t for t in catalogue.tracks()}
    for song in songs:
        vectors = {"timbre": ("timbre-test", song.timbre), "fingerprint": ("fp-test", song.fingerprint)}
        if song.female is not None:
            vectors["gender"] = ("gender-test", np.array([song.female], dtype=np.float32))
        catalogue.record_analysis(by_path[song.path].content_hash, analysis_version=ANALYSIS_VERSION, duration_s=seconds or 30.0,
                                  excerpt_start_s=0.0, excerpt_s=30.0, vectors=vectors)
    return catalogue


def voice_songs(*, artists: dict[str, tuple[str, float | None]], songs_per_artist: int, seed: int = 0) -> list[Song]:
    """Songs clustered by artist: each artist a random direction, each song a small step from it.

    ``artists`` maps an artist to (genre, stored female probability or None).
    """
    rng = np.random.default_rng(seed)
    songs = []
    for a, (artist, (genre, female)) in enumerate(artists.items()):
        centre = rng.standard_normal(DIM)
        for j in range(songs_per_artist):
            timbre = (centre + 0.3 * rng.standard_normal(DIM)).astype(np.float32)
            songs.append(Song(f"{artist}/song{j}.wav", artist, genre, timbre, rng.standard_normal(8).astype(np.float32), female))
    return songs
