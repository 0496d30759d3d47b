"""Decode any common audio file to 16 kHz mono float32, reading only the excerpt window.

The decoder contract: :func:`load_excerpt` returns mono float32 samples at
``SAMPLE_RATE_HZ``, at most ``EXCERPT_S`` long, zero-padded to exactly
``EXCERPT_SAMPLES`` with the number of real samples beside them, so that short songs are
masked rather than dropped.

Two decoders, chosen for speed and coverage: libsndfile (``soundfile``) reads wav, flac,
ogg/vorbis, opus and mp3 about twice as fast as FFmpeg on one core; PyAV (FFmpeg bundled
in its wheel) reads everything else, m4a/aac included. Both decode in-process, seek to the
window and never read the rest of a long file. A file is opened once for all the windows
read from it (the excerpt's probes and the excerpt): libsndfile then finds its way through
an mp3 once, not once per window (a third of an mp3's decoding time).

Where the excerpt lies. A song of at most ``EXCERPT_S`` is taken whole. For a longer song
nine 2 s probes, spread evenly over it, are decoded and scored by their loudness in the
voice band (300-3400 Hz); the window is centred where that loudness is, on average (its
centre of mass). Intros and outros, usually quieter and thinner in that band, pull the
window away from them; a song sung throughout is taken from its middle.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from nextvox.constants import EXCERPT_S, EXCERPT_SAMPLES, SAMPLE_RATE_HZ
from nextvox.errors import AudioError

__all__ = [
    "AUDIO_EXTENSIONS",
    "Excerpt",
    "probe_duration_s",
    "read_window",
    "choose_excerpt_start_s",
    "load_excerpt",
    "redirect_native_stderr",
]

AUDIO_EXTENSIONS = frozenset(
    {".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".wav", ".wma", ".aif", ".aiff"}
)
MIN_DURATION_S = 1.0  # shorter than this holds no usable voice
SILENCE_RMS = 1e-4  # -80 dBFS: below this the excerpt is treated as silent
N_PROBES = 9
PROBE_S = 2.0
VOICE_BAND_HZ = (300.0, 3400.0)


@dataclass(frozen=True)
class Excerpt:
    """The analysed stretch of one song.

    Attributes
    ----------
    samples : np.ndarray, shape (EXCERPT_SAMPLES,), float32
        Mono audio at ``SAMPLE_RATE_HZ``, zero-padded after ``n_valid``.
    n_valid : int
        Number of real samples at the start of ``samples``.
    start_s : float
        Where the excerpt starts in the song, seconds.
    duration_s : float
        Length of the whole song, seconds.
    """

    samples: np.ndarray
    n_valid: int
    start_s: float
    duration_s: float

    @property
    def valid_samples(self) -> np.ndarray:
        """The real samples, without padding: shape (n_valid,)."""
        return self.samples[: self.n_valid]


def redirect_native_stderr(path: str | os.PathLike) -> None:
    """From now on, send what native decoders (mpg123, FFmpeg) print on file descriptor 2 to ``path``.

    They write notes about damaged files straight to the process's stderr, which would
    break the command line's one-line error contract and draw over progress bars. Python's
    own stderr (messages, logging, tracebacks) keeps going where fd 2 went before, through a
    copy of that descriptor.

    File descriptor 2 belongs to the whole process: it is changed here once, for the rest
    of the process's life, and only from the main thread. Swapping it around each piece of
    work would race between threads (two concurrent uploads each restoring the other's
    redirection left the server without a stderr).

    Raises
    ------
    RuntimeError
        When called from another thread than the main one.
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("redirect_native_stderr changes the whole process's fd 2: call it from the main thread")
    global _python_stderr_kept
    if not _python_stderr_kept and _writes_to_fd_2(sys.stderr):
        # Only a sys.stderr on fd 2 is moved: one that a caller (a test's capture, an embedding
        # program) put in its place never wrote to fd 2 and is left where it is.
        sys.stderr.flush()
        sys.stderr = open(os.dup(2), "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
        _python_stderr_kept = True
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 2)
    os.close(target)


_python_stderr_kept = False  # whether sys.stderr already writes to its own copy of fd 2


def _writes_to_fd_2(stream) -> bool:
    """Whether ``stream`` writes to file descriptor 2."""
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return False


def _to_mono_16k(block: np.ndarray, sample_rate_hz: int) -> np.ndarray:
    """(n,) or (n, channels) audio at any rate -> (m,) float32 mono at SAMPLE_RATE_HZ."""
    if block.ndim == 2:
        # Averaging two columns by hand is ~9x faster than block.mean(axis=1).
        block = 0.5 * (block[:, 0] + block[:, 1]) if block.shape[1] == 2 else block.mean(axis=1)
    block = np.ascontiguousarray(block, dtype=np.float32)
    if sample_rate_hz != SAMPLE_RATE_HZ and block.size:
        block = soxr.resample(block, sample_rate_hz, SAMPLE_RATE_HZ)
    return block.astype(np.float32, copy=False)


def _soundfile_info(path: Path) -> tuple[float, int] | None:
    """(duration_s, sample_rate_hz) when libsndfile can open the file, else None."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    if info.frames <= 0 or info.samplerate <= 0:
        return None
    return info.frames / info.samplerate, info.samplerate


def _av_duration_s(path: Path) -> float:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError("no audio stream in the file")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / 1_000_000
    except AudioError:
        raise
    except Exception as error:  # PyAV raises one class per FFmpeg error code
        raise AudioError(f"not a readable audio file ({_av_reason(error)})") from None
    # No duration in the header (raw ADTS, some streams): decode once to measure.
    return _av_read(path, 0.0, None).size / SAMPLE_RATE_HZ


def _av_reason(error: Exception) -> str:
    """FFmpeg's own words for a failure, without the errno and the file name PyAV adds."""
    return (getattr(error, "strerror", None) or str(error) or type(error).__name__).strip()


def probe_duration_s(path: Path) -> float:
    """Length of an audio file in seconds, read from its header where it has one.

    Raises
    ------
    AudioError
        When the file is empty, not audio, or unreadable.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise AudioError("file vanished before it could be read") from None
    except OSError as error:
        raise AudioError(f"cannot read the file ({error.strerror})") from None
    if size == 0:
        raise AudioError("empty file (0 bytes)")
    info = _soundfile_info(path)
    if info is not None:
        return info[0]
    return _av_duration_s(path)


def _soundfile_read(f: sf.SoundFile, start_s: float, length_s: float | None) -> np.ndarray:
    """``length_s`` seconds from ``start_s`` of an open libsndfile file, as 16 kHz mono float32."""
    f.seek(int(start_s * f.samplerate))
    frames = -1 if length_s is None else int(length_s * f.samplerate)
    block = f.read(frames, dtype="float32", always_2d=False)
    return _to_mono_16k(block, f.samplerate)


def _av_read(path: Path, start_s: float, length_s: float | None) -> np.ndarray:
    import av

    blocks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError("no audio stream in the file")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE_HZ)
            if start_s > 0:
                container.seek(int(start_s * 1_000_000))  # microseconds, to the key frame before
            need = None if length_s is None else int(length_s * SAMPLE_RATE_HZ)
            have = 0
            skip = None  # samples to drop before start_s, known from the first frame's time
            for frame in container.decode(stream):
                if skip is None:
                    frame_start_s = float(frame.time) if frame.time is not None else start_s
                    skip = max(0, int(round((start_s - frame_start_s) * SAMPLE_RATE_HZ)))
                for out in resampler.resample(frame):
                    blocks.append(out.to_ndarray().reshape(-1))
                    have += blocks[-1].size
                if need is not None and have >= need + skip:
                    break
    except AudioError:
        raise
    except Exception as error:
        if not blocks:
            raise AudioError(f"not a readable audio file ({_av_reason(error)})") from None
        # A truncated or damaged tail: keep what decoded.
    if not blocks:
        return np.zeros(0, dtype=np.float32)
    samples = np.concatenate(blocks)[skip or 0 :]
    return samples if need is None else samples[:need]


class _AudioFile:
    """One audio file, opened once for every window read from it (see the module notes).

    libsndfile reads it when it can, FFmpeg otherwise or when libsndfile fails on a damaged frame.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._soundfile: sf.SoundFile | None = None
        if _soundfile_info(self.path) is not None:
            try:
                self._soundfile = sf.SoundFile(str(self.path))
            except (sf.LibsndfileError, RuntimeError):
                pass

    def read(self, start_s: float, length_s: float | None) -> np.ndarray:
        """``length_s`` seconds (None: to the end) from ``start_s`` as 16 kHz mono float32, shape (n,)."""
        if self._soundfile is not None:
            try:
                return _soundfile_read(self._soundfile, start_s, length_s)
            except (sf.LibsndfileError, RuntimeError):
                self.close()  # libsndfile opened it but cannot decode it (a damaged frame): let FFmpeg try
        return _av_read(self.path, start_s, length_s)

    def close(self) -> None:
        if self._soundfile is not None:
            self._soundfile.close()
            self._soundfile = None

    def __enter__(self) -> _AudioFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_window(path: Path, *, start_s: float, length_s: float | None) -> np.ndarray:
    """Decode ``length_s`` seconds from ``start_s`` as 16 kHz mono float32.

    Parameters
    ----------
    path : Path
        Any audio file.
    start_s : float
        Start of the window in the file, seconds.
    length_s : float or None
        Length of the window, seconds; None reads to the end.

    Returns
    -------
    np.ndarray, shape (n,), float32
        ``n`` is at most ``length_s * SAMPLE_RATE_HZ``; fewer when the file ends early.
    """
    with _AudioFile(path) as audio:
        return audio.read(start_s, length_s)


def _voice_band_loudness(samples: np.ndarray) -> float:
    """Root-mean-square level of ``samples`` inside VOICE_BAND_HZ (any unit; for ranking)."""
    if samples.size < 512:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) ** 2
    freqs_hz = np.fft.rfftfreq(samples.size, d=1.0 / SAMPLE_RATE_HZ)
    band = (freqs_hz >= VOICE_BAND_HZ[0]) & (freqs_hz <= VOICE_BAND_HZ[1])
    return float(np.sqrt(spectrum[band].sum() / samples.size))


def choose_excerpt_start_s(path: Path, *, duration_s: float) -> float:
    """Where the ``EXCERPT_S`` window of a song starts, in seconds (see the module notes).

    Songs no longer than ``EXCERPT_S`` start at 0. Longer songs: the window is centred on
    the centre of mass of the probes' voice-band loudness above the quietest probe, so a
    song sung throughout gets its middle, and quiet intros and outros pull it away from them.
    """
    with _AudioFile(path) as audio:
        return _excerpt_start_s(audio, duration_s=duration_s)


def _excerpt_start_s(audio: _AudioFile, *, duration_s: float) -> float:
    """:func:`choose_excerpt_start_s` of an open file."""
    if duration_s <= EXCERPT_S:
        return 0.0
    probe_starts_s = np.linspace(0.0, duration_s - PROBE_S, N_PROBES)
    scores = np.array([_voice_band_loudness(audio.read(t, PROBE_S)) for t in probe_starts_s])
    weights = scores - scores.min()
    centres_s = probe_starts_s + PROBE_S / 2
    centre_s = float(centres_s @ weights / weights.sum()) if weights.sum() > 0 else duration_s / 2
    return float(np.clip(centre_s - EXCERPT_S / 2, 0.0, duration_s - EXCERPT_S))


def load_excerpt(path: Path) -> Excerpt:
    """Decode the analysed excerpt of one song.

    Raises
    ------
    AudioError
        With the reason, when the file is missing, empty, not audio, truncated to nothing,
        shorter than ``MIN_DURATION_S`` or silent.
    """
    path = Path(path)
    duration_s = probe_duration_s(path)
    try:
        with _AudioFile(path) as audio:
            start_s = _excerpt_start_s(audio, duration_s=duration_s)
            samples = audio.read(start_s, EXCERPT_S)
    except FileNotFoundError:
        raise AudioError("file vanished before it could be read") from None
    if samples.size == 0:
        raise AudioError("no audio could be decoded (truncated or damaged file)")
    if samples.size < MIN_DURATION_S * SAMPLE_RATE_HZ:
        raise AudioError(f"too short: {samples.size / SAMPLE_RATE_HZ:.2f} s of audio (at least {MIN_DURATION_S:g} s needed)")
    if not np.all(np.isfinite(samples)):
        raise AudioError("the decoded audio holds invalid (NaN or infinite) samples")
    if float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) < SILENCE_RMS:
        raise AudioError("silent: the excerpt holds no audible sound")
    padded = np.zeros(EXCERPT_SAMPLES, dtype=np.float32)
    n_valid = min(samples.size, EXCERPT_SAMPLES)
    padded[:n_valid] = samples[:n_valid]
    # The header may overstate the length of a truncated file; trust what decoded.
    if start_s == 0.0 and n_valid < EXCERPT_SAMPLES:
        duration_s = min(duration_s, n_valid / SAMPLE_RATE_HZ)
    return Excerpt(samples=padded, n_valid=n_valid, start_s=start_s, duration_s=duration_s)
