"""Self-supervised training of the timbre encoder and of the TCAE melody autoencoder.

The timbre encoder (SimCLR-style, with pitch-shift / time-stretch roles) is trained by
:func:`train_timbre`, the TCAE by :func:`train_tcae` (at the end of this file).

No labels are read: the data is a library's log-mel spectrograms (computed once and cached
by content hash, shared with ``analyze``), and two random views of one excerpt are the only
"same voice" signal. Pitch shift and time stretch each play a role (Yakura et al. 2022):

``positive``   an ordinary augmentation of both views (the embedding learns to ignore it);
``negative``   a transformed copy of each excerpt is an extra negative (the embedding learns
               to tell the voice from its transposed / re-timed copy);
``off``        not used.

The loop is linear, in commented sections, as in nanoGPT's ``train.py``; a checkpoint holds
everything needed to go on exactly where it stopped (model and run config, weights, the
optimiser's state, the random generator's state, the loss history and the time spent).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nextvox.analysis import EXCERPT_VERSION, AnalysisSettings, library_settings, track_log_mel
from nextvox.augmentations import ROLES, PitchShift, RegisterShift, TimeStretch, ViewAugment, random_crops
from nextvox.catalogue import Catalogue, resolve_library, scan_library, track_file
from nextvox.constants import FRAME_RATE_HZ
from nextvox.errors import AudioError, NextvoxError
from nextvox.features import MelCache
from nextvox.losses import NTXentLoss
from nextvox.models.tcae import DEFAULT_WEIGHTS as DEFAULT_TCAE_WEIGHTS
from nextvox.models.tcae import TCAE, TCAEConfig
from nextvox.models.tcae import projection_head as melody_projection_head
from nextvox.models.tcae import load_weights as load_tcae_weights
from nextvox.models.tcae import save_weights as save_tcae_weights
from nextvox.models.timbre import DEFAULT_WEIGHTS, TimbreConfig, TimbreEncoder, load_weights, projection_head, save_weights
from nextvox.files import atomic_path
from nextvox.processes import die_with_parent

__all__ = [
    "TrainConfig", "TrainResult", "library_log_mels", "train_timbre", "CHECKPOINT", "WEIGHTS",
    "TCAETrainConfig", "TCAE_WEIGHTS", "train_tcae",
]

CHECKPOINT = "checkpoint.pt"  # everything needed to resume
WEIGHTS = "timbre.pt"  # the encoder alone: what analyze and evaluate --model load
SUMMARY = "train.json"
LOSS_PLOT = "loss.png"

#: progress(step, steps, loss, crops per second)
ProgressCallback = Callable[[int, int, float, float], None]


@dataclass
class TrainConfig:
    """One training run, passed whole; saved in every checkpoint."""

    pitch_shift: str = "negative"  # role: positive | negative | off
    time_stretch: str = "positive"  # role (bench/results/timbre_roles.md: neg/pos found the held-out singers best)
    register_semitones: float = 4.0  # every view sung up to this many semitones higher or lower, formants kept (0: off)
    background_max_db: float = 30.0  # another song mixed 0 to this many dB under each view: loud backing to nearly a cappella
    crop_frames: int = 250  # 4 s at 62.5 frames/s
    batch_size: int = 48  # excerpts per step; each gives two views and one copy per negative role
    steps: int = 1000
    lr: float = 2e-3  # peak learning rate of AdamW (batch norm everywhere tolerates it)
    min_lr: float = 2e-4  # cosine decay ends here
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    temperature: float = 0.1  # SimCLR (Chen et al. 2020, B.9): 0.1 with normalised projections
    seed: int = 0
    bf16: bool = True  # autocast on CPU: 2.3x the encoder's training crops/s of float32 (bench/results/timbre_speed.md)
    checkpoint_every: int = 100  # steps between checkpoints (and at the end)
    init_weights: str | None = None  # encoder weights to fine-tune from; None trains from scratch
    model: TimbreConfig = field(default_factory=TimbreConfig)

    def check(self) -> None:
        """Raise NextvoxError for a setting no run can use."""
        for name in ("pitch_shift", "time_stretch"):
            if getattr(self, name) not in ROLES:
                raise NextvoxError(f"{name.replace('_', '-')} role must be one of {', '.join(ROLES)}, not {getattr(self, name)!r}")
        if self.batch_size < 2:
            raise NextvoxError(f"batch size must be at least 2 (the other excerpts are the negatives), not {self.batch_size}")
        if self.steps < 1 or self.crop_frames < 16:
            raise NextvoxError("steps must be >= 1 and crop frames >= 16")
        if self.register_semitones < 0 or self.background_max_db < 0:
            raise NextvoxError("register shift and background level must be >= 0")


@dataclass
class TrainResult:
    """What a run left: its folder's files, steps, time and loss."""

    out_dir: Path
    steps: int
    final_loss: float
    seconds: float
    crops_per_s: float
    n_excerpts: int
    losses: list[float]


# ---- data: cached log-mels of a library ---------------------------------------------------------

def _log_mel_work(path: str, digest: str, settings: AnalysisSettings, cache_root: str) -> tuple[str, str | None]:
    """Run in a worker: make sure the cache holds the file's log-mel. (hash, failure reason or None)."""
    import torch as _torch

    _torch.set_num_threads(1)
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
        jobs = max(1, jobs or os.cpu_count() or 1)
        # spawn, not fork: torch's thread pools do not survive a fork safely.
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(_log_mel_work, path, digest, settings, str(cache_root)) for path, digest in todo]
            for done, future in enumerate(futures, 1):
                future.result()
                if progress:
                    progress(done, len(todo))
    spectrograms = []
    for digest in sorted(files):
        cached = cache.load(digest)
        if cached is not None:
            spectrograms.append((digest, cached[0].astype(np.float16)))
    if not spectrograms:
        raise NextvoxError(f"no track of {library} gave a spectrogram to train on")
    return spectrograms


# ---- schedule -------------------------------------------------------------------------------------

def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr`` (as nanoGPT's ``get_lr``)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))) * (config.lr - config.min_lr)


# ---- one batch of views -------------------------------------------------------------------------

class ContrastiveBatch:
    """Makes a step's views: two per excerpt, plus one transformed copy per ``negative`` role."""

    def __init__(self, config: TrainConfig, excerpts: list[torch.Tensor], backgrounds: list[torch.Tensor]):
        self.config = config
        self.excerpts = excerpts
        self.backgrounds = backgrounds
        self.stretch = TimeStretch()
        self.pitch = PitchShift()
        self.register = RegisterShift(max_semitones=config.register_semitones)
        self.augment = ViewAugment(background_max_db=config.background_max_db)

    @property
    def min_frames(self) -> int:
        """Frames an excerpt needs for every crop this run can read (the fastest stretch)."""
        rates = [1.0]
        if self.config.time_stretch == "positive":
            rates.append(self.stretch.max_rate)
        if self.config.time_stretch == "negative":
            rates.append(self.stretch.negative_rates[1])
        return int(math.ceil(max(rates) * self.config.crop_frames))

    @property
    def views_per_excerpt(self) -> int:
        """Two views, and a copy per negative role."""
        return 2 + [self.config.pitch_shift, self.config.time_stretch].count("negative")

    def _view(self, items: torch.Tensor, *, g: torch.Generator, pitch: str, stretch: str) -> torch.Tensor:
        """Views of ``items`` (B,) with the given pitch / stretch role for this copy: (B, F, crop)."""
        n, crop = len(items), self.config.crop_frames
        rates = self.stretch.rates(n, generator=g, negative=stretch == "negative") if stretch != "off" else torch.ones(n)
        crops = random_crops(self.excerpts, items, source_frames=TimeStretch.source_frames(rates, crop), generator=g)
        x = self.stretch(crops, crop)  # (B, F, crop)
        if pitch != "off":
            x = self.pitch(x, self.pitch.semitones(n, generator=g, negative=pitch == "negative"))
        if self.config.register_semitones > 0:
            x = self.register(x, self.register.semitones(n, generator=g))
        under = torch.randint(len(self.backgrounds), (n,), generator=g)
        background = self.stretch(random_crops(self.backgrounds, under, source_frames=torch.full((n,), crop), generator=g), crop)
        return self.augment(x, background, generator=g)

    def __call__(self, g: torch.Generator) -> tuple[torch.Tensor, int]:
        """(views (V * B, F, crop) stacked as [view a, view b, negative copies...], B)."""
        c = self.config
        items = torch.randint(len(self.excerpts), (c.batch_size,), generator=g)
        ordinary = {"pitch": "positive" if c.pitch_shift == "positive" else "off",
                    "stretch": "positive" if c.time_stretch == "positive" else "off"}  # fmt: skip
        views = [self._view(items, g=g, **ordinary), self._view(items, g=g, **ordinary)]
        if c.pitch_shift == "negative":
            views.append(self._view(items, g=g, pitch="negative", stretch=ordinary["stretch"]))
        if c.time_stretch == "negative":
            views.append(self._view(items, g=g, pitch=ordinary["pitch"], stretch="negative"))
        return torch.cat(views), c.batch_size  # (V * B, F, crop)


# ---- the run ---------------------------------------------------------------------------------------

def _resume_from(checkpoint_path: Path) -> dict:
    """A run's checkpoint, to go on from it."""
    if not checkpoint_path.is_file():
        raise NextvoxError(f"nothing to resume: {checkpoint_path} does not exist")
    return torch.load(checkpoint_path, map_location="cpu", weights_only=True)


def _restore(checkpoint: dict, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer,
             g: torch.Generator) -> tuple[int, list[float], float]:  # fmt: skip
    """Load a checkpoint's weights, optimiser and generator state; (step, losses, elapsed seconds)."""
    for name, module in modules.items():
        module.load_state_dict(checkpoint[name])
    optimizer.load_state_dict(checkpoint["optimizer"])
    g.set_state(checkpoint["rng"])
    return checkpoint["step"], list(checkpoint["losses"]), checkpoint["elapsed_s"]


def _save_checkpoint(
    path: Path, *, config, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer, g: torch.Generator,
    step: int, losses: list[float], elapsed: float,
) -> None:  # fmt: skip
    """Everything a run needs to go on exactly (model and run config, weights, optimiser, generator, losses), atomically."""
    with atomic_path(path) as part:
        torch.save({
            "model_config": asdict(config.model), "train_config": asdict(config),
            **{name: module.state_dict() for name, module in modules.items()},
            "optimizer": optimizer.state_dict(), "step": step, "rng": g.get_state(), "losses": losses, "elapsed_s": elapsed,
        }, part)  # fmt: skip


def _batcher(kind: type, config, excerpts: list[np.ndarray], backgrounds: list[np.ndarray] | None):
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


def _config_from_dict(stored: dict) -> TrainConfig:
    model = dict(stored["model"])
    model["channels"] = tuple(model["channels"])
    return TrainConfig(**{**stored, "model": TimbreConfig(**model)})


def train_timbre(
    config: TrainConfig,
    excerpts: list[np.ndarray],
    *,
    out_dir: Path,
    backgrounds: list[np.ndarray] | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    data_note: str = "",
) -> TrainResult:
    """Train (or go on training) the timbre encoder; write checkpoint, weights, summary and loss plot.

    Parameters
    ----------
    config : TrainConfig
        Ignored when resuming: the checkpoint's own config is used, so the run ends exactly
        as the uninterrupted one would.
    excerpts : list of np.ndarray, each (N_MELS, T)
        Log-mel spectrograms to learn voices from (the anchors), in a fixed order.
    out_dir : Path
        Holds ``checkpoint.pt``, ``timbre.pt``, ``train.json`` and ``loss.png``.
    backgrounds : list of np.ndarray, optional
        Spectrograms mixed under the views (:class:`nextvox.augmentations.BackgroundMix`);
        the excerpts themselves when None.
    resume : bool
        Go on from ``out_dir/checkpoint.pt`` (exactly: same batches, same weights as an
        uninterrupted run).
    progress : callable(step, steps, loss, crops_per_s), optional
    data_note : str
        What the excerpts are, written into ``train.json``.

    Raises
    ------
    NextvoxError
        Bad config, too few usable excerpts, no checkpoint to resume, unwritable folder.
    """
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / CHECKPOINT
    checkpoint = _resume_from(checkpoint_path) if resume else None
    if checkpoint is not None:
        config = _config_from_dict(checkpoint["train_config"])
    config.check()

    # -- data ------------------------------------------------------------------------------------
    batcher = _batcher(ContrastiveBatch, config, excerpts, backgrounds)
    anchors = batcher.excerpts

    # -- model, loss, optimiser ---------------------------------------------------------------------
    torch.manual_seed(config.seed)  # initial weights
    encoder = TimbreEncoder(config.model)
    if config.init_weights and checkpoint is None:
        start = load_weights(Path(config.init_weights))
        if start.config != config.model:
            raise NextvoxError(f"{config.init_weights} has another model shape than this run's config")
        encoder.load_state_dict(start.state_dict())
    head = projection_head(config.model)
    loss_fn = NTXentLoss(config.temperature)
    parameters = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    g = torch.Generator().manual_seed(config.seed)  # every random draw of the data and augmentations
    modules = {"encoder": encoder, "head": head}
    step, losses, elapsed = _restore(checkpoint, modules, optimizer, g) if checkpoint is not None else (0, [], 0.0)

    def save() -> None:
        _save_checkpoint(checkpoint_path, config=config, modules=modules, optimizer=optimizer, g=g, step=step, losses=losses,
                         elapsed=elapsed)  # fmt: skip
        save_weights(encoder, out_dir / WEIGHTS)

    # -- loop -------------------------------------------------------------------------------------
    encoder.train(), head.train()
    while step < config.steps:
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        views, n = batcher(g)  # (V * B, F, crop)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            z = head(encoder(views))  # (V * B, projection_dim)
        loss = loss_fn(z[:n], z[n : 2 * n], list(z[2 * n :].split(n)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        losses.append(float(loss.detach()))
        seconds = time.perf_counter() - t0
        elapsed += seconds
        if step % config.checkpoint_every == 0 or step == config.steps:
            save()
        if progress:
            progress(step, config.steps, losses[-1], len(views) / seconds)

    # -- report -----------------------------------------------------------------------------------
    tail = losses[-max(1, len(losses) // 10) :]
    crops_per_s = batcher.views_per_excerpt * config.batch_size * step / elapsed if elapsed else 0.0
    result = TrainResult(out_dir, step, float(np.mean(tail)), elapsed, crops_per_s, len(anchors), losses)
    summary = {
        "train_config": asdict(config), "steps": step, "final_loss": result.final_loss,
        "final_loss_note": "mean NT-Xent over the last 10 % of steps", "seconds": round(elapsed, 1),
        "crops_per_s": round(crops_per_s, 1),
        "n_excerpts": len(anchors), "n_backgrounds": len(batcher.backgrounds), "data": data_note,
        "views_per_step": batcher.views_per_excerpt * config.batch_size, "torch_threads": torch.get_num_threads(),
    }  # fmt: skip
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    plot_losses(losses, out_dir / LOSS_PLOT, title=f"pitch shift {config.pitch_shift}, time stretch {config.time_stretch}")
    return result


def plot_losses(losses: list[float], path: Path, *, title: str, ylabel: str = "NT-Xent loss") -> None:
    """The loss curve (each step, and a running mean over 20) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(np.arange(1, len(losses) + 1), losses, color="0.75", linewidth=0.8, label="step")
    if len(losses) >= 20:
        smooth = np.convolve(losses, np.ones(20) / 20, mode="valid")
        ax.plot(np.arange(20, len(losses) + 1), smooth, color="C0", label="mean of 20")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def default_init() -> str | None:
    """The shipped weights, the starting point of ``train`` on a user's library (None when absent)."""
    return str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.is_file() else None


# ==== the TCAE ======================================================================================
#
# The plain TCAE (the seed's) learns to reconstruct its input; nothing asks its latent to hold
# the melody rather than the voice. The improved objective adds, on the pooled melody vector,
# an NT-Xent term whose two views of one crop are sung in other keys and at other tempi
# (each view its own pitch shift and time stretch), under other EQ, noise and backgrounds:
# what stays is the tune.

TCAE_WEIGHTS = "tcae.pt"


@dataclass
class TCAETrainConfig:
    """One TCAE training run, passed whole; saved in every checkpoint."""

    contrastive_weight: float = 0.0  # 0: the plain reconstruction TCAE; > 0: + key/tempo-invariant NT-Xent
    crop_frames: int = 384  # 6.1 s: the receptive field (4.1 s) and some context
    batch_size: int = 32  # crops per step (two views each when contrastive)
    steps: int = 600
    lr: float = 2e-3  # peak learning rate of AdamW
    min_lr: float = 2e-4  # cosine decay ends here
    warmup_steps: int = 30
    weight_decay: float = 1e-4
    temperature: float = 0.1
    max_semitones: float = 6.0  # key change of a view, up or down: renditions of one tune sit in any key
    max_rate: float = 1.25  # tempo change of a view, up to this factor either way
    seed: int = 0
    bf16: bool = True  # autocast on CPU
    checkpoint_every: int = 100
    init_weights: str | None = None  # TCAE weights to fine-tune from; None trains from scratch
    model: TCAEConfig = field(default_factory=TCAEConfig)

    def check(self) -> None:
        """Raise NextvoxError for a setting no run can use."""
        if self.contrastive_weight < 0:
            raise NextvoxError(f"the contrastive weight must be >= 0, not {self.contrastive_weight}")
        if self.contrastive_weight > 0 and self.batch_size < 2:
            raise NextvoxError(f"batch size must be at least 2 for the contrastive term, not {self.batch_size}")
        if self.steps < 1 or self.crop_frames < 16 or self.batch_size < 1:
            raise NextvoxError("steps and batch size must be >= 1 and crop frames >= 16")


class MelodyViews:
    """A step's crops: one per excerpt (plain), or two views of the same stretch of song (contrastive)."""

    def __init__(self, config: TCAETrainConfig, excerpts: list[torch.Tensor], backgrounds: list[torch.Tensor]):
        self.config = config
        self.excerpts = excerpts
        self.backgrounds = backgrounds
        self.stretch = TimeStretch(max_rate=config.max_rate)
        self.pitch = PitchShift(max_semitones=config.max_semitones)
        self.augment = ViewAugment()

    @property
    def min_frames(self) -> int:
        """Frames an excerpt needs for the longest read (the fastest stretch)."""
        rate = self.config.max_rate if self.config.contrastive_weight > 0 else 1.0
        return int(math.ceil(rate * self.config.crop_frames))

    def _view(self, regions: list[torch.Tensor], g: torch.Generator) -> torch.Tensor:
        """A transformed view of each region, read from its start: (B, F, crop)."""
        n, crop = len(regions), self.config.crop_frames
        frames = TimeStretch.source_frames(self.stretch.rates(n, generator=g), crop).tolist()
        x = self.stretch([r[:, :f] for r, f in zip(regions, frames)], crop)  # (B, F, crop)
        x = self.pitch(x, self.pitch.semitones(n, generator=g))
        under = torch.randint(len(self.backgrounds), (n,), generator=g)
        background = self.stretch(random_crops(self.backgrounds, under, source_frames=torch.full((n,), crop), generator=g), crop)
        return self.augment(x, background, generator=g)

    def __call__(self, g: torch.Generator) -> torch.Tensor:
        """(B, F, crop) plain crops, or (2B, F, crop) stacked as [view a, view b]."""
        c = self.config
        items = torch.randint(len(self.excerpts), (c.batch_size,), generator=g)
        regions = random_crops(self.excerpts, items, source_frames=torch.full((c.batch_size,), self.min_frames), generator=g)
        if c.contrastive_weight <= 0:
            return torch.stack([r[:, : c.crop_frames] for r in regions])  # (B, F, crop)
        return torch.cat([self._view(regions, g), self._view(regions, g)])  # (2B, F, crop)


def _tcae_config_from_dict(stored: dict) -> TCAETrainConfig:
    model = dict(stored["model"])
    model["dilations"] = tuple(model["dilations"])
    return TCAETrainConfig(**{**stored, "model": TCAEConfig(**model)})


def train_tcae(
    config: TCAETrainConfig,
    excerpts: list[np.ndarray],
    *,
    out_dir: Path,
    backgrounds: list[np.ndarray] | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
    data_note: str = "",
) -> TrainResult:
    """Train (or go on training) the TCAE; write checkpoint, weights, summary and loss plot.

    Parameters
    ----------
    config : TCAETrainConfig
        Ignored when resuming: the checkpoint's own config is used.
    excerpts : list of np.ndarray, each (N_MELS, T)
        Log-mel spectrograms of (separated) vocals, in a fixed order.
    out_dir : Path
        Holds ``checkpoint.pt``, ``tcae.pt``, ``train.json`` and ``loss.png``.
    backgrounds : list of np.ndarray, optional
        Spectrograms mixed under the contrastive views; the excerpts themselves when None.
    resume : bool
        Go on from ``out_dir/checkpoint.pt`` exactly.
    progress : callable(step, steps, loss, crops_per_s), optional
    data_note : str
        What the excerpts are, written into ``train.json``.

    Raises
    ------
    NextvoxError
        Bad config, too few usable excerpts, no checkpoint to resume.
    """
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / CHECKPOINT
    checkpoint = _resume_from(checkpoint_path) if resume else None
    if checkpoint is not None:
        if "tcae" not in checkpoint:
            raise NextvoxError(f"{checkpoint_path} is not a TCAE training checkpoint")
        config = _tcae_config_from_dict(checkpoint["train_config"])
    config.check()

    # -- data ------------------------------------------------------------------------------------
    batcher = _batcher(MelodyViews, config, excerpts, backgrounds)
    anchors = batcher.excerpts

    # -- model, loss, optimiser ---------------------------------------------------------------------
    torch.manual_seed(config.seed)  # initial weights
    tcae = TCAE(config.model)
    if config.init_weights and checkpoint is None:
        start = load_tcae_weights(Path(config.init_weights))
        if start.config != config.model:
            raise NextvoxError(f"{config.init_weights} has another model shape than this run's config")
        tcae.load_state_dict(start.state_dict())
    head = melody_projection_head(config.model)
    contrastive = NTXentLoss(config.temperature)
    optimizer = torch.optim.AdamW([*tcae.parameters(), *head.parameters()], lr=config.lr, weight_decay=config.weight_decay)
    g = torch.Generator().manual_seed(config.seed)  # every random draw of the data and augmentations
    modules = {"tcae": tcae, "head": head}
    step, losses, elapsed = _restore(checkpoint, modules, optimizer, g) if checkpoint is not None else (0, [], 0.0)

    def save() -> None:
        _save_checkpoint(checkpoint_path, config=config, modules=modules, optimizer=optimizer, g=g, step=step, losses=losses,
                         elapsed=elapsed)  # fmt: skip
        save_tcae_weights(tcae, out_dir / TCAE_WEIGHTS)

    # -- loop -------------------------------------------------------------------------------------
    tcae.train(), head.train()
    while step < config.steps:
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        crops = batcher(g)  # (B or 2B, F, crop)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            reconstruction, target, latent = tcae(crops)
        loss = F.mse_loss(reconstruction.float(), target.float())
        if config.contrastive_weight > 0:
            z = head(TCAE.pool(latent))  # (2B, projection_dim)
            loss = loss + config.contrastive_weight * contrastive(*z.chunk(2))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        losses.append(float(loss.detach()))
        seconds = time.perf_counter() - t0
        elapsed += seconds
        if step % config.checkpoint_every == 0 or step == config.steps:
            save()
        if progress:
            progress(step, config.steps, losses[-1], len(crops) / seconds)

    # -- report -----------------------------------------------------------------------------------
    tail = losses[-max(1, len(losses) // 10) :]
    views = 2 if config.contrastive_weight > 0 else 1
    crops_per_s = views * config.batch_size * step / elapsed if elapsed else 0.0
    result = TrainResult(out_dir, step, float(np.mean(tail)), elapsed, crops_per_s, len(anchors), losses)
    objective = "reconstruction MSE" + (f" + {config.contrastive_weight:g} x NT-Xent" if config.contrastive_weight > 0 else "")
    summary = {
        "train_config": asdict(config), "steps": step, "final_loss": result.final_loss,
        "final_loss_note": f"mean {objective} over the last 10 % of steps", "seconds": round(elapsed, 1),
        "crops_per_s": round(crops_per_s, 1), "n_excerpts": len(anchors), "n_backgrounds": len(batcher.backgrounds),
        "data": data_note, "receptive_field_frames": tcae.receptive_field, "torch_threads": torch.get_num_threads(),
    }  # fmt: skip
    (out_dir / SUMMARY).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    plot_losses(losses, out_dir / LOSS_PLOT, title=f"TCAE, {objective}", ylabel="loss")
    return result


def default_tcae_init() -> str | None:
    """The shipped TCAE weights, the starting point of ``train tcae`` on a user's library (None when absent)."""
    return str(DEFAULT_TCAE_WEIGHTS) if DEFAULT_TCAE_WEIGHTS.is_file() else None
