"""Real audio files for the tests, made with numpy, libsndfile and FFmpeg (through PyAV).

A "voice" here is a harmonic tone with a fixed spectral envelope (formants) and a melody of
a few notes: distinct envelopes stand for distinct singers, which is what the MFCC stand-in
and the catalogue tests need, with no dependence on the song generator.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import av
import numpy as np
import soundfile as sf

RATE_HZ = 22_050


def voice(*, seconds: float, formants_hz: tuple[float, ...], f0_hz: float = 200.0, seed: int = 0,
          rate_hz: int = RATE_HZ) -> np.ndarray:
    """A sung-like tone: harmonics of a stepping f0 shaped by formant peaks. Shape (n,), float32."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    t = np.arange(n) / rate_hz
    notes = f0_hz * 2 ** (rng.integers(-4, 5, size=max(1, int(seconds * 2))) / 12)
    f0 = np.repeat(notes, int(np.ceil(n / notes.size)))[:n] * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    phase = 2 * np.pi * np.cumsum(f0) / rate_hz
    signal = np.zeros(n)
    for h in range(1, 30):
        freq = f0 * h
        gain = sum(np.exp(-(((freq - f) / 120.0) ** 2)) for f in formants_hz) + 0.02
        signal += np.where(freq < rate_hz / 2, gain * np.sin(h * phase), 0.0)
    signal += 0.01 * rng.standard_normal(n)
    return (0.3 * signal / np.abs(signal).max()).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, *, rate_hz: int = RATE_HZ) -> Path:
    """Write mono float samples in the format of ``path``'s extension (wav, flac, ogg, mp3, opus, m4a)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".wav", ".flac", ".ogg"):
        sf.write(path, samples, rate_hz)
        return path
    codec, rate = {".mp3": ("libmp3lame", rate_hz), ".opus": ("libopus", 48_000), ".m4a": ("aac", rate_hz)}[suffix]
    if rate != rate_hz:
        import soxr

        samples = soxr.resample(samples, rate_hz, rate).astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        frame_size = 960 if codec == "libopus" else 1152
        for start in range(0, samples.size, frame_size):
            block = samples[start : start + frame_size]
            if block.size < frame_size:
                block = np.pad(block, (0, frame_size - block.size))
            frame = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


SINGER_FORMANTS_HZ = {
    "low": (500.0, 1000.0, 2400.0),
    "mid": (700.0, 1800.0, 2900.0),
    "high": (350.0, 2300.0, 3300.0),
}


def make_library(root: Path, *, songs_per_singer: int = 3, seconds: float = 6.0,
                 formats: tuple[str, ...] = ("wav", "flac", "mp3")) -> dict[str, str]:
    """A small library, one folder per singer; returns {relative path: singer}."""
    labels = {}
    for s, (singer, formants) in enumerate(SINGER_FORMANTS_HZ.items()):
        for i in range(songs_per_singer):
            rel = f"{singer}/song{i}.{formats[(s + i) % len(formats)]}"
            write_audio(root / rel, voice(seconds=seconds, formants_hz=formants, f0_hz=150 + 40 * s, seed=10 * s + i))
            labels[rel] = singer
    return labels


def analysed_count(data_dir: Path) -> int:
    """How many tracks the catalogue in ``data_dir`` holds as analysed (0 while it cannot be read).

    Polled while an ``analyze`` runs, so the connection is closed each time (``with connect()``
    alone only ends the transaction).
    """
    try:
        with closing(sqlite3.connect(data_dir / "catalogue.sqlite", timeout=5)) as db:
            return db.execute("SELECT COUNT(*) FROM tracks WHERE status = 'analyzed'").fetchone()[0]
    except sqlite3.Error:
        return 0
