"""The baselines every embedding is measured beside, computed on the excerpt nextvox analyses (before separation).

``mfcc`` (MFCC mean and standard deviation), ``resemblyzer`` (a pre-trained speaker encoder
whose wheel ships its weights) and ``chroma`` (mean chroma, compared under the best of the 12
transpositions: a melody baseline). They are computed in worker processes and cached under
the data directory by content hash and baseline version.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from functools import cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from nextvox.analysis import EXCERPT_VERSION
from nextvox.audio import load_excerpt
from nextvox.constants import SAMPLE_RATE_HZ
from nextvox.errors import AudioError, MissingDependencyError
from nextvox.features import log_mel, mfcc_statistics
from nextvox.files import atomic_path
from nextvox.workers import WorkerPool

BASELINES = ("mfcc", "resemblyzer", "chroma")
#: Bump a version when its baseline's computation changes: the cache key holds it.
BASELINE_VERSIONS = {
    "mfcc": "mfcc-stats-1",
    "resemblyzer": "resemblyzer-0.1.4-1",
    "chroma": "chroma-cqt-mean-1",
}
CHROMA_HOP_LENGTH = 512  # samples between chroma frames (32 ms)

#: progress(stage, done, total); stage is "scan", "analyze" or "baselines".
ProgressCallback = Callable[[str, int, int], None]


def mfcc_baseline(samples: np.ndarray) -> np.ndarray:
    """MFCC 1..19 mean and standard deviation of an excerpt (mono float32 samples at ``SAMPLE_RATE_HZ``):
    shape (38,), float32."""
    return mfcc_statistics(log_mel(samples))


def chroma_baseline(samples: np.ndarray) -> np.ndarray:
    """Mean constant-Q chroma of an excerpt (mono float32 samples at ``SAMPLE_RATE_HZ``), its pitch-class
    profile: shape (12,), float32, the mean over frames of chroma normalised per frame (max 1), C first."""
    import librosa

    chroma = librosa.feature.chroma_cqt(y=samples, sr=SAMPLE_RATE_HZ, hop_length=CHROMA_HOP_LENGTH)  # (12, T)
    return chroma.mean(axis=1).astype(np.float32)


@cache
def _voice_encoder():
    """The resemblyzer speaker encoder, loaded once per process (weights from its wheel)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its VAD dependency warns about pkg_resources on import
        try:
            from resemblyzer import VoiceEncoder
        except ImportError:
            raise MissingDependencyError("the resemblyzer baseline needs the resemblyzer package: pip install resemblyzer") from None
    return VoiceEncoder("cpu", verbose=False)


def resemblyzer_baseline(samples: np.ndarray) -> np.ndarray:
    """Resemblyzer's speaker embedding of an excerpt, with its own preprocessing.

    Its preprocessing normalises the level and cuts long non-voice stretches (WebRTC VAD);
    when that leaves under a second (an instrumental), the whole excerpt is embedded.

    Parameters
    ----------
    samples : np.ndarray, shape (n,), float32
        Mono audio at ``SAMPLE_RATE_HZ`` (resemblyzer's own rate).

    Returns
    -------
    np.ndarray, shape (256,), float32, unit length
    """
    encoder = _voice_encoder()
    from resemblyzer import preprocess_wav

    voiced = preprocess_wav(samples, source_sr=SAMPLE_RATE_HZ)
    return encoder.embed_utterance(voiced if voiced.size >= SAMPLE_RATE_HZ else samples).astype(np.float32)


_BASELINE_FUNCTIONS = {"mfcc": mfcc_baseline, "resemblyzer": resemblyzer_baseline, "chroma": chroma_baseline}


class BaselineCache:
    """Baseline vectors on disk: ``DATA_DIR/cache/baselines/<name>-<version>-excerpt<v>/<hash>.npy``."""

    def __init__(self, data_dir: Path):
        self.root = Path(data_dir) / "cache" / "baselines"

    def path(self, name: str, content_hash: str) -> Path:
        folder = f"{name}-{BASELINE_VERSIONS[name]}-excerpt{EXCERPT_VERSION}"
        return self.root / folder / content_hash[:2] / f"{content_hash}.npy"

    def load(self, name: str, content_hash: str) -> np.ndarray | None:
        try:
            return np.load(self.path(name, content_hash))
        except (OSError, ValueError, EOFError):
            return None

    def store(self, name: str, content_hash: str, vector: np.ndarray) -> None:
        """Write atomically; a refused write only costs time on the next run."""
        try:
            with atomic_path(self.path(name, content_hash)) as part:
                np.save(part, vector)
        except OSError:
            pass


def _baseline_worker_init() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core


def _compute_baselines(path: str, names: tuple[str, ...]) -> tuple[str, dict[str, np.ndarray] | str]:
    """In a worker: ("ok", {name: vector}) or ("failed", reason) for one file."""
    try:
        samples = load_excerpt(Path(path)).valid_samples
        return "ok", {name: _BASELINE_FUNCTIONS[name](samples) for name in names}
    except AudioError as error:
        return "failed", str(error)
    except MissingDependencyError:
        raise
    except Exception as error:  # one odd file must not stop the evaluation
        return "failed", f"baseline failed: {type(error).__name__}: {error}"


def baseline_vectors(
    files: dict[str, Path], *, data_dir: Path, jobs: int, progress: ProgressCallback | None
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Every baseline of every file, from the cache or computed in ``jobs`` worker processes.

    Parameters
    ----------
    files : dict
        Content hash -> path of one file holding it.

    Returns
    -------
    vectors : dict
        Baseline name -> {content hash: vector}.
    failures : dict
        Content hash -> reason, for files whose baselines could not be computed.
    """
    cache_store = BaselineCache(data_dir)
    vectors: dict[str, dict[str, np.ndarray]] = {name: {} for name in BASELINES}
    missing: dict[str, tuple[str, ...]] = {}
    for digest in files:
        for name in BASELINES:
            cached = cache_store.load(name, digest)
            if cached is not None:
                vectors[name][digest] = cached
        absent = tuple(name for name in BASELINES if digest not in vectors[name])
        if absent:
            missing[digest] = absent
    failures: dict[str, str] = {}
    if progress:
        progress("baselines", 0, len(missing))
    if not missing:
        return vectors, failures
    if "resemblyzer" in {name for names in missing.values() for name in names} and find_spec("resemblyzer") is None:
        raise MissingDependencyError("the resemblyzer baseline needs the resemblyzer package: pip install resemblyzer")
    done = 0

    def computed(digest: str, result: tuple[str, dict[str, np.ndarray] | str]) -> None:
        nonlocal done
        kind, value = result
        if kind == "ok":
            for name, vector in value.items():
                vectors[name][digest] = vector
                cache_store.store(name, digest, vector)
        else:
            failures[digest] = str(value)
        done += 1
        if progress:
            progress("baselines", done, len(missing))

    def crashed(digest: str) -> None:
        computed(digest, ("failed", "the decoder crashed on this file"))

    with WorkerPool(min(jobs, len(missing)), initializer=_baseline_worker_init) as pool:
        pool.run(_compute_baselines, [(digest, (str(files[digest]), names)) for digest, names in missing.items()],
                 on_result=computed, on_crash=crashed)  # fmt: skip
    return vectors, failures
