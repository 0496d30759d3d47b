"""Analyse a library: scan, then decode, separate, log-mel and embed every new track in worker processes.

:func:`analyze_track` is the whole per-track pipeline, a plain function of a file, so that
a worker process, the recommender (for a query file outside the library) and a distributed
engine can all call it unchanged. :func:`analyze_library` runs it over a library with a
process pool and writes each result to the catalogue as it arrives: a run killed at any
moment loses only the tracks in flight, and the next run takes up the rest.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nextvox.audio import load_excerpt, redirect_native_stderr
from nextvox.catalogue import Catalogue, ScanReport, command_hint, exclusive_analysis, resolve_library, scan_library, track_file
from nextvox.catalogue import content_hash as file_content_hash
from nextvox.constants import EXCERPT_S, FRAME_RATE_HZ, SAMPLE_RATE_HZ
from nextvox.errors import AudioError, FileChangedError, NextvoxError
from nextvox.features import MelCache, log_mel, recording_fingerprint
from nextvox.models import tcae
from nextvox.models.tcae import AUTOCORRELATION_LAGS, KEY_SHIFTS, SEQUENCE_HOP_FRAMES, SEQUENCE_MAX_STEPS
from nextvox.models.timbre import DEFAULT_WEIGHTS, cached_encoder, embed_excerpt, weights_version
from nextvox.processes import TimeLimitExceeded, time_limit
from nextvox.separation import DEFAULT_SEPARATOR, SEPARATORS, separate, separator_version
from nextvox.workers import WorkerPool

__all__ = [
    "EXCERPT_VERSION",
    "AnalysisSettings",
    "library_settings",
    "TrackAnalysis",
    "AnalyzeReport",
    "timbre_model_version",
    "melody_model_version",
    "track_log_mel",
    "analyze_track",
    "analyze_file",
    "load_worker_models",
    "analyze_library",
    "embed",
]

EXCERPT_VERSION = 1  # bump when the excerpt rule of nextvox.audio changes
FINGERPRINT_VERSION = "mel-thumbnail-1"
STAGES = ("decode", "separation", "features", "inference")
# A track that gives no result in this time is abandoned (a file on a stalled network disk, a
# decoder stuck on a damaged stream). The slowest separator, Demucs on one core, takes about
# 20 s for an excerpt: the limit is well above any honest track.
TRACK_TIME_LIMIT_S = 300.0
# bf16 autocast for the timbre encoder and the TCAE: about 2x and 1.4x the excerpts per second
# of float32 on this project's CPUs (bench/results/timbre_speed.md, bench/results/analyze.md),
# vectors within 0.01 cosine of float32 (the TCAE's within 1e-5; tests/test_analysis_reference.py).
INFERENCE_BF16 = True


def _shipped_weights(path: Path, *, model: str, command: str, file: str) -> Path:
    """``path`` when it exists; otherwise a NextvoxError that says how to get it (no silent fallback)."""
    if not path.is_file():
        raise NextvoxError(
            f"the {model}'s weights are missing ({path}): reinstall nextvox, "
            f"or train them with `{command} LIBRARY --from-scratch` and copy {file} there"
        )
    return path


def timbre_model_version() -> str:
    """The version of the shipped timbre encoder (a hash of its weights file).

    Raises
    ------
    NextvoxError
        When the weights file is missing: there is no silent fallback to another vector.
    """
    return weights_version(_shipped_weights(DEFAULT_WEIGHTS, model="timbre encoder", command="nextvox train timbre", file="timbre.pt"))


def melody_model_version() -> str:
    """The version of the shipped TCAE (a hash of its weights file).

    Raises
    ------
    NextvoxError
        When the weights file is missing.
    """
    return tcae.weights_version(_shipped_weights(tcae.DEFAULT_WEIGHTS, model="TCAE melody model", command="nextvox train tcae", file="tcae.pt"))


@dataclass(frozen=True)
class AnalysisSettings:
    """What shapes an analysis; its :attr:`version` is stored beside every result.

    The version names the timbre encoder's and the TCAE's weights, so new weights make every
    track stale and ``analyze`` embeds it again (from the cached log-mel: nothing is decoded twice).
    """

    separator: str = DEFAULT_SEPARATOR
    # Model file of the mask or demucs separator (None: mask's shipped weights).
    separator_weights: Path | None = None

    @property
    def separator_version(self) -> str:
        """The separator with a hash of its weights (``mask-1a2b3c4d``): part of the version and the mel cache key."""
        return separator_version(self.separator, weights=self.separator_weights)

    @property
    def version(self) -> str:
        """The analysis version stored beside every result.

        Cheap to ask per track: every weights file is hashed once per process and file
        version (:func:`nextvox.models.weights_file.file_digest`), later calls cost a stat.
        """
        return (f"excerpt{EXCERPT_VERSION}/sep-{self.separator_version}/{timbre_model_version()}/{melody_model_version()}"
                f"-seq{SEQUENCE_HOP_FRAMES}x{SEQUENCE_MAX_STEPS}k{len(KEY_SHIFTS)}-ac{AUTOCORRELATION_LAGS}/{FINGERPRINT_VERSION}")

    def to_stored(self) -> dict:
        """The JSON-ready form kept in the catalogue (:meth:`Catalogue.store_analysis_settings`)."""
        weights = None if self.separator_weights is None else str(Path(self.separator_weights).expanduser().resolve())
        return {"separator": self.separator, "separator_weights": weights, "separator_version": self.separator_version}

    @classmethod
    def from_options(cls, separator: str | None, separator_weights: Path | None) -> AnalysisSettings | None:
        """The settings a command's ``--separator`` and ``--separator-weights`` ask for; None when neither is given
        (the library's own settings then apply)."""
        if separator is None and separator_weights is None:
            return None
        return cls(separator=separator or DEFAULT_SEPARATOR, separator_weights=separator_weights)

    @classmethod
    def from_stored(cls, stored: dict) -> AnalysisSettings:
        weights = stored.get("separator_weights")
        return cls(separator=stored["separator"], separator_weights=Path(weights) if weights else None)


def _settings_from_version(catalogue: Catalogue, analysis_version: str) -> AnalysisSettings:
    """The settings that wrote ``analysis_version``, for a catalogue from before they were stored.

    The separator is named in the version (``.../sep-mask-1a2b3c4d/...``); the path of
    weights other than the shipped ones is not, and is asked for.
    """
    separator = analysis_version.split("/sep-", 1)[-1].split("/", 1)[0]
    method = separator.split("-", 1)[0]
    if method not in SEPARATORS:
        raise NextvoxError(f"the catalogue {catalogue.path} names an unknown separator ({separator}); "
                           f"run `{command_hint('analyze', catalogue.library, catalogue.data_dir)}` again")
    settings = AnalysisSettings(separator=method)
    if method in ("mask", "demucs") and (method == "demucs" or settings.separator_version != separator):
        raise NextvoxError(
            f"{catalogue.library} was analysed with the {separator} separator, whose weights file this catalogue "
            f"does not name: run `{command_hint('analyze', catalogue.library, catalogue.data_dir, '--separator', method, '--separator-weights', 'PATH')}` once"
        )
    return settings


def library_settings(catalogue: Catalogue) -> AnalysisSettings:
    """The settings ``catalogue``'s library was analysed with, so that a query file is treated like its tracks.

    The settings stored by ``analyze``; for a catalogue from before they were stored, those
    named by the analysis version of most of its tracks (nothing is analysed again); for a
    library not analysed yet, the defaults.

    Raises
    ------
    NextvoxError
        An old catalogue analysed with separator weights whose path it does not know.
    """
    stored = catalogue.analysis_settings()
    if stored is not None:
        return AnalysisSettings.from_stored(stored)
    versions = catalogue.analysis_versions()
    return _settings_from_version(catalogue, next(iter(versions))) if versions else AnalysisSettings()


@dataclass
class TrackAnalysis:
    """The result of :func:`analyze_track`. ``vectors`` and ``sequences`` map a name to (model version, array)."""

    duration_s: float
    excerpt_start_s: float
    excerpt_s: float
    vectors: dict[str, tuple[str, np.ndarray]]
    sequences: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    seconds_per_stage: dict[str, float] = field(default_factory=dict)


@dataclass
class AnalyzeReport:
    """What one ``analyze`` run did."""

    scan: ScanReport
    analyzed: int = 0
    failed: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    seconds_per_stage: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in (*STAGES, "write")})
    counts: dict[str, int] = field(default_factory=dict)
    # Why some or all tracks have no predicted gender (no head, or a head of another timbre model);
    # set by nextvox.workflows.analyze_library, which predicts the genders after the analysis.
    gender_note: str | None = None
    # What the run analysed with (now stored in the catalogue).
    settings: AnalysisSettings | None = None
    engine: str = "local"
    # Tracks analysed or failed in this run on each machine (a Ray node id; "local" for the local engine).
    tracks_per_node: dict[str, int] = field(default_factory=dict)


def embed(
    log_mel_spectrogram: np.ndarray, *, n_valid_frames: int
) -> tuple[dict[str, tuple[str, np.ndarray]], dict[str, tuple[str, np.ndarray]]]:
    """The vectors and sequences of one excerpt's vocal log-mel, by name, with the version of what made them.

    Vectors: ``timbre`` is the shipped timbre encoder's vector (:mod:`nextvox.models.timbre`),
    ``melody`` the shipped TCAE's pooled latent (:mod:`nextvox.models.tcae`), each model loaded
    once per process; ``fingerprint`` tells one recording from another (near-duplicates).
    Sequences: ``melody``, the TCAE's latent sequence in the keys of ``melody_match.KEY_SHIFTS`` for order-aware, key-free matching.

    Parameters
    ----------
    log_mel_spectrogram : np.ndarray, shape (N_MELS, T)
    n_valid_frames : int
        Frames before the padding; the padding is never looked at.

    Raises
    ------
    NextvoxError
        When the timbre encoder's or the TCAE's weights are missing.
    """
    version = timbre_model_version()
    timbre_vector = embed_excerpt(cached_encoder(DEFAULT_WEIGHTS), log_mel_spectrogram, n_valid_frames=n_valid_frames,
                                  bf16=INFERENCE_BF16)  # fmt: skip
    melody_version = melody_model_version()
    melody, melody_sequence = tcae.melody_vector_and_sequence(tcae.cached_tcae(tcae.DEFAULT_WEIGHTS), log_mel_spectrogram,
                                                              n_valid_frames=n_valid_frames, bf16=INFERENCE_BF16)  # fmt: skip
    vectors = {
        "timbre": (version, timbre_vector),
        "melody": (melody_version, melody),
        "fingerprint": (FINGERPRINT_VERSION, recording_fingerprint(log_mel_spectrogram, n_valid_frames=n_valid_frames)),
    }
    return vectors, {"melody": (melody_version, melody_sequence)}


def track_log_mel(
    path: Path, *, content_hash: str | None, settings: AnalysisSettings, cache: MelCache | None
) -> tuple[np.ndarray, float, float, dict[str, float]]:
    """Decode, separate and log-mel one file, or take its spectrogram from the cache.

    Returns
    -------
    spectrogram : np.ndarray, shape (N_MELS, T_valid), float32
    excerpt_start_s, duration_s : float
        Where the excerpt starts in the song, and the song's length.
    seconds_per_stage : dict
        ``decode``, ``separation``, ``features`` (zeros for a cached spectrogram).

    With a ``content_hash``, the result is bound to those bytes: the file is hashed before
    decoding and checked unchanged after it, so a file replaced in the meantime never puts
    its spectrogram under the old content's hash.

    Raises
    ------
    AudioError
        When the file cannot give usable audio; the message is the reason.
    FileChangedError
        When the file's bytes are not those of ``content_hash`` or changed while decoding.
    """
    timings = {stage: 0.0 for stage in ("decode", "separation", "features")}
    cached = cache.load(content_hash) if cache is not None and content_hash else None
    if cached is not None:
        spectrogram, start_s, duration_s = cached
        return spectrogram, start_s, duration_s, timings
    t0 = time.perf_counter()
    if content_hash:
        try:
            before = _file_identity(path)
            now = file_content_hash(path)
        except FileNotFoundError:
            raise AudioError("file vanished before it could be read") from None
        if now != content_hash:
            raise FileChangedError(f"{path} changed after it was scanned")
    excerpt = load_excerpt(path)
    if content_hash and _file_identity(path) != before:
        raise FileChangedError(f"{path} changed while it was decoded")
    t1 = time.perf_counter()
    vocals = separate(excerpt.valid_samples, method=settings.separator, weights=settings.separator_weights)
    t2 = time.perf_counter()
    spectrogram = log_mel(vocals)
    t3 = time.perf_counter()
    timings.update(decode=t1 - t0, separation=t2 - t1, features=t3 - t2)
    if cache is not None and content_hash:
        cache.store(content_hash, spectrogram, start_s=excerpt.start_s, duration_s=excerpt.duration_s)
    return spectrogram, excerpt.start_s, excerpt.duration_s, timings


def _file_identity(path: Path) -> tuple[int, ...]:
    """What changes when a file is replaced or written: device, inode, size, mtime, ctime (ns)."""
    info = os.stat(path)
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def analyze_track(
    path: Path, *, content_hash: str | None, settings: AnalysisSettings, cache: MelCache | None
) -> TrackAnalysis:
    """Decode, separate, log-mel and embed one file.

    Raises
    ------
    AudioError
        When the file cannot give usable audio; the message is the reason.
    """
    spectrogram, start_s, duration_s, timings = track_log_mel(path, content_hash=content_hash, settings=settings, cache=cache)
    t3 = time.perf_counter()
    vectors, sequences = embed(spectrogram, n_valid_frames=spectrogram.shape[1])
    timings["inference"] = time.perf_counter() - t3
    return TrackAnalysis(
        duration_s=duration_s,
        excerpt_start_s=start_s,
        excerpt_s=min(EXCERPT_S, spectrogram.shape[1] / FRAME_RATE_HZ),
        vectors=vectors,
        sequences=sequences,
        seconds_per_stage=timings,
    )


# ---- worker processes ----------------------------------------------------------------------

def _worker_init(log_path: str) -> None:
    """The analysis worker's own set-up (:class:`nextvox.workers.WorkerPool` does the rest)."""
    import torch

    # One process per core: more threads per process only contend.
    torch.set_num_threads(1)
    # For the worker's whole life: native decoders' notes go to a log under the data directory.
    redirect_native_stderr(log_path)


def analyze_file(path: str, content_hash: str, settings: AnalysisSettings, cache_root: str | None) -> tuple[str, object]:
    """:func:`analyze_track` as a worker runs it: ("ok", TrackAnalysis), ("failed", reason) or ("changed", reason).

    Never raises for bad input: a file's failure is a result, recorded with its reason; a
    file whose bytes changed since its scan gives "changed" (nothing to record: the next scan
    hashes it again). A track that gives no result in ``TRACK_TIME_LIMIT_S`` is abandoned.
    """
    cache = MelCache(Path(cache_root), separator=settings.separator_version, excerpt_version=EXCERPT_VERSION) if cache_root else None
    try:
        with time_limit(TRACK_TIME_LIMIT_S):
            return "ok", analyze_track(Path(path), content_hash=content_hash, settings=settings, cache=cache)
    except TimeLimitExceeded:
        return "failed", f"abandoned: no result after {TRACK_TIME_LIMIT_S:g} s (a stalled disk or decoder)"
    except FileChangedError as error:
        return "changed", str(error)
    except AudioError as error:
        return "failed", str(error)
    except NextvoxError:
        raise  # a configuration error (missing weights, a separator that cannot run) stops the run: no track is at fault
    except FileNotFoundError:
        return "failed", "file vanished during analysis"
    except MemoryError:
        return "failed", "out of memory while analysing this file"
    except Exception as error:  # a decoder's unexpected failure on one file must not stop the run
        return "failed", f"could not analyse: {type(error).__name__}: {error}"


def load_worker_models(settings: AnalysisSettings) -> str:
    """Load the models of an analysis into this process (a Ray actor's set-up): one thread, like a local worker.

    Returns
    -------
    str
        The analysis version as this process sees it (its weights' hashes), for the driver to
        check against its own: a node with other weights would store vectors under a wrong version.
    """
    import torch

    torch.set_num_threads(1)
    # Four seconds of quiet noise through every stage: loads the weights and warms torch's kernels.
    noise = (0.01 * np.random.default_rng(0).standard_normal(4 * SAMPLE_RATE_HZ)).astype(np.float32)
    spectrogram = log_mel(separate(noise, method=settings.separator, weights=settings.separator_weights))
    embed(spectrogram, n_valid_frames=spectrogram.shape[1])
    return settings.version


def analyze_library(
    library: Path,
    *,
    data_dir: Path,
    jobs: int | None = None,
    settings: AnalysisSettings | None = None,
    retry_failed: bool = False,
    on_scan: Callable[[int, int], None] | None = None,
    on_track: Callable[[int, int, float], None] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
) -> AnalyzeReport:
    """Scan ``library`` and analyse every track that has no up-to-date analysis.

    Parameters
    ----------
    library : Path
        The music folder (read only; nothing is written there).
    data_dir : Path
        Where the catalogue and the spectrogram cache live.
    jobs : int, optional
        Worker processes (``local``) or actors (``ray``); one per core of the machine or cluster by default.
    settings : AnalysisSettings, optional
        What to analyse with; they become the library's stored settings. None: the library's
        own (:func:`library_settings`), so that a later run keeps what the first one chose.
    retry_failed : bool
        Try failed files again (by default a file that failed is retried only once it changes).
    on_scan : callable(done, total), optional
        Called as new files are hashed.
    on_track : callable(done, total, audio_seconds), optional
        Called as tracks finish, with the seconds of audio analysed so far.
    engine : {"local", "ray"}
        ``local``: a process pool on this machine. ``ray``: a Ray Data job
        (:mod:`nextvox.distributed`) on the cluster at ``ray_address``, or on a local Ray
        instance when None; every node must see the library at the same path.
    ray_address : str, optional
        The Ray cluster (``host:port``, ``auto``, ``ray://host:10001``); only with ``engine="ray"``.
    """
    if engine not in ("local", "ray"):
        raise NextvoxError(f"unknown engine {engine!r}: choose local or ray")
    if ray_address is not None and engine != "ray":
        raise NextvoxError("a Ray address needs the ray engine (--engine ray)")
    library = resolve_library(library)
    if engine == "ray":
        from nextvox.distributed import import_ray

        import_ray()  # without Ray, say how to install it before scanning anything
    ray_actors = jobs
    jobs = max(1, jobs or os.cpu_count() or 1)
    started = time.perf_counter()
    catalogue = Catalogue(data_dir, library=library)
    try:
        with exclusive_analysis(catalogue.data_dir):
            settings = settings or library_settings(catalogue)
            version = settings.version  # a missing separator or weights file: one error now, not one per track
            if catalogue.analysis_settings() != settings.to_stored():
                catalogue.store_analysis_settings(settings.to_stored())
            report = AnalyzeReport(scan=scan_library(catalogue, analysis_version=version, progress=on_scan), settings=settings)
            todo = catalogue.contents_to_analyse(version, retry_failed=retry_failed)  # content hash -> one path holding it
            report.engine = engine
            if engine == "ray":
                _run_ray(catalogue, todo, actors=ray_actors, address=ray_address, settings=settings, report=report, on_track=on_track)
            else:
                _run_pool(catalogue, todo, jobs=jobs, settings=settings, report=report, on_track=on_track)
                report.tracks_per_node = {"local": report.analyzed + report.failed} if todo else {}
            report.counts = catalogue.status_counts()
    finally:
        catalogue.close()
    report.wall_s = time.perf_counter() - started
    return report


def _run_pool(
    catalogue: Catalogue,
    todo: dict[str, str],
    *,
    jobs: int,
    settings: AnalysisSettings,
    report: AnalyzeReport,
    on_track: Callable[[int, int, float], None] | None,
) -> None:
    """Analyse ``todo`` (hash -> path) with ``jobs`` workers, recording each result as it lands.

    A file whose worker dies (a decoder crash, the OOM killer) is found by
    :class:`~nextvox.workers.WorkerPool` and marked failed instead of stopping the run.
    """
    cache_root = str(catalogue.data_dir / "cache")
    version = settings.version
    total, done = len(todo), 0

    def finished() -> None:
        nonlocal done
        done += 1
        if on_track:
            on_track(done, total, report.audio_s)

    def recorded(digest: str, result: tuple[str, object]) -> None:
        kind, value = result
        _record(catalogue, digest, todo[digest], kind, value, report, version)
        finished()

    def crashed(digest: str) -> None:
        catalogue.record_failure(content_hash=digest, error="the decoder crashed on this file")
        report.failed += 1
        finished()

    tasks = [(digest, (str(track_file(catalogue.library, rel)), digest, settings, cache_root)) for digest, rel in todo.items()]
    try:
        # No analysis stage (decoders, separators, log-mel, models) calls librosa's cached kernels.
        with WorkerPool(jobs, initializer=_worker_init, initargs=(str(catalogue.data_dir / "decoder.log"),),
                        librosa_kernels=False) as pool:  # fmt: skip
            pool.run(analyze_file, tasks, on_result=recorded, on_crash=crashed)
    except KeyboardInterrupt:
        raise NextvoxError(
            f"interrupted: {report.analyzed} tracks analysed in this run are saved; run analyze again to go on"
        ) from None


def _run_ray(
    catalogue: Catalogue,
    todo: dict[str, str],
    *,
    actors: int | None,
    address: str | None,
    settings: AnalysisSettings,
    report: AnalyzeReport,
    on_track: Callable[[int, int, float], None] | None,
) -> None:
    """Analyse ``todo`` (hash -> path) as a Ray Data job, recording each result as it lands.

    The actors run :func:`analyze_file` after :func:`load_worker_models`; the driver (this
    process) is the only writer of the catalogue. Every node must see the library folder
    (and, for the spectrogram cache to be shared, the data directory) at the same path.
    """
    from functools import partial

    from nextvox.distributed import map_on_ray

    version = settings.version
    items = [{"path": str(track_file(catalogue.library, rel)), "content_hash": digest} for digest, rel in todo.items()]
    cache_root = str(catalogue.data_dir / "cache")
    done = 0
    results = map_on_ray(
        items, key="content_hash", function=partial(analyze_file, settings=settings, cache_root=cache_root),
        setup=partial(load_worker_models, settings), address=address, actors=actors,
    )  # fmt: skip
    try:
        with closing(results):
            for landed in results:
                digest = landed.item["content_hash"]
                if landed.lost:
                    kind, result = "failed", "the worker process died on this file (a decoder crash or out of memory)"
                elif landed.setup != version:
                    raise NextvoxError(
                        f"Ray node {landed.node_id[:12]} runs other models than this machine (analysis version "
                        f"{landed.setup} instead of {version}): install the same nextvox on every node"
                    )
                else:
                    kind, result = landed.result
                _record(catalogue, digest, todo[digest], kind, result, report, version)
                node = landed.node_id or "lost"
                report.tracks_per_node[node] = report.tracks_per_node.get(node, 0) + 1
                done += 1
                if on_track:
                    on_track(done, len(todo), report.audio_s)
    except KeyboardInterrupt:
        raise NextvoxError(
            f"interrupted: {report.analyzed} tracks analysed in this run are saved; run analyze again to go on"
        ) from None


def _record(
    catalogue: Catalogue, digest: str, rel: str, kind: str, result: object, report: AnalyzeReport, version: str
) -> None:
    if kind == "changed":
        return  # the result belongs to no known content: the track stays pending, the next scan hashes it again
    if kind == "failed":
        if result == "file vanished during analysis":
            catalogue.record_failure(path=rel, error=str(result))
        else:
            catalogue.record_failure(content_hash=digest, error=str(result))
        report.failed += 1
        return
    assert isinstance(result, TrackAnalysis)
    t0 = time.perf_counter()
    catalogue.record_analysis(
        digest,
        analysis_version=version,
        duration_s=result.duration_s,
        excerpt_start_s=result.excerpt_start_s,
        excerpt_s=result.excerpt_s,
        vectors=result.vectors,
        sequences=result.sequences,
    )
    report.seconds_per_stage["write"] += time.perf_counter() - t0
    for stage, seconds in result.seconds_per_stage.items():
        report.seconds_per_stage[stage] += seconds
    report.analyzed += 1
    report.audio_s += result.duration_s
