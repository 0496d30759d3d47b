"""The data of the self-supervised loops: a library's cached log-mels, and the batchers' excerpts.

No labels are read: the data is a library's log-mel spectrograms, computed once and cached by
content hash (shared with ``analyze``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from nextvox.analysis import EXCERPT_VERSION, AnalysisSettings, library_settings, track_log_mel
from nextvox.augmentations import random_crops
from nextvox.catalogue import Catalogue, resolve_library, scan_library, track_file
from nextvox.constants import FRAME_RATE_HZ
from nextvox.errors import AudioError, NextvoxError
from nextvox.features import MelCache
from nextvox.workers import WorkerPool

__all__ = ["library_log_mels", "make_batcher", "mix_background", "data_summary"]


def _log_mel_work(path: str, digest: str, settings: AnalysisSettings, cache_root: str) -> tuple[str, str | None]:
    """Run in a worker: make sure the cache holds the file's log-mel. (hash, failure reason or None)."""
    import torch

    torch.set_num_threads(1)  # one process per core
    cache = MelCache(Path(cache_root), separator=settings.separator_version, excerpt_version=EXCERPT_VERSION)
    try:
        if cache.load(digest) is None:
            track_log_mel(Path(path), content_hash=digest, settings=settings, cache=cache)
        return digest, None
    except (AudioError, OSError) as error:
        return digest, str(error)
    except Exception as error:  # a decoder's unexpected failure on one file must not stop the run
        return digest, f"{type(error).__name__}: {error}"


def library_log_mels(
    library: Path, *, data_dir: Path, separator: str | None = None, jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[str, np.ndarray]]:  # fmt: skip
    """Every track's log-mel, (content hash, (N_MELS, T) float16), sorted by hash.

    Tracks are scanned into the library's catalogue (so ``analyze`` later knows them) and
    their spectrograms come from the cache under ``data_dir`` when ``analyze`` or an earlier
    run made them; the others are decoded (and separated by ``separator``, by default the
    library's own as ``analyze`` stored it) once, in ``jobs`` worker processes, and cached.
    Files that cannot be decoded are left out. No tag or label is read.
    """
    library = resolve_library(library)
    with Catalogue(data_dir, library=library) as catalogue:
        settings = AnalysisSettings(separator=separator) if separator else library_settings(catalogue)
        try:
            version = settings.version
        except NextvoxError:
            version = "untrained"  # first training run: no weights yet, every track stays pending
        scan_library(catalogue, analysis_version=version)
        files = {t.content_hash: track_file(catalogue.library, t.path) for t in catalogue.tracks() if t.content_hash}
    cache_root = Path(data_dir) / "cache"
    cache = MelCache(cache_root, separator=settings.separator_version, excerpt_version=EXCERPT_VERSION)
    todo = [(str(path), digest) for digest, path in files.items() if not cache.path(digest).exists()]
    if todo:
        done = 0

        def cached(_digest: str, _result: object = None) -> None:  # a file that fails or crashes is left out
            nonlocal done
            done += 1
            if progress:
                progress(done, len(todo))

        with WorkerPool(max(1, jobs or os.cpu_count() or 1)) as pool:
            pool.run(_log_mel_work, [(digest, (path, digest, settings, str(cache_root))) for path, digest in todo],
                     on_result=cached, on_crash=cached)  # fmt: skip
    spectrograms = []
    for digest in sorted(files):
        cached = cache.load(digest)
        if cached is not None:
            spectrograms.append((digest, cached[0].astype(np.float16)))
    if not spectrograms:
        raise NextvoxError(f"no track of {library} gave a spectrogram to train on")
    return spectrograms


def make_batcher(kind: type, config, excerpts: list[np.ndarray], backgrounds: list[np.ndarray] | None):
    """``kind(config, anchors, backgrounds)`` over the excerpts long enough for its crops (float16 tensors).

    Raises
    ------
    NextvoxError
        When fewer than two excerpts are long enough.
    """
    anchors = [torch.from_numpy(np.asarray(x, dtype=np.float16)) for x in excerpts]
    under = anchors if backgrounds is None else [torch.from_numpy(np.asarray(x, dtype=np.float16)) for x in backgrounds]
    batcher = kind(config, anchors, under)
    batcher.excerpts = [x for x in anchors if x.shape[1] >= batcher.min_frames]
    batcher.backgrounds = [x for x in under if x.shape[1] >= config.crop_frames] or batcher.excerpts
    if len(batcher.excerpts) < 2:
        raise NextvoxError(
            f"{len(batcher.excerpts)} excerpts are long enough to train on (at least {batcher.min_frames} frames, "
            f"{batcher.min_frames / FRAME_RATE_HZ:.1f} s, are needed); at least 2 are needed"
        )
    return batcher


def mix_background(x: torch.Tensor, backgrounds: list[torch.Tensor], *, stretch, augment, generator: torch.Generator) -> torch.Tensor:
    """Views ``x`` (B, F, crop), each with a random crop of a random background mixed under it by
    ``augment`` (a :class:`nextvox.augmentations.ViewAugment`), its crop read through ``stretch``
    (a :class:`nextvox.augmentations.TimeStretch`): (B, F, crop)."""
    n, crop = x.shape[0], x.shape[-1]
    under = torch.randint(len(backgrounds), (n,), generator=generator)
    crops = random_crops(backgrounds, under, source_frames=torch.full((n,), crop), generator=generator)
    return augment(x, stretch(crops, crop), generator=generator)


def data_summary(batcher, data_note: str) -> dict:
    """What a self-supervised run read, for its ``train.json``: n_excerpts, n_backgrounds, data (``data_note``)."""
    return {"n_excerpts": len(batcher.excerpts), "n_backgrounds": len(batcher.backgrounds), "data": data_note}
