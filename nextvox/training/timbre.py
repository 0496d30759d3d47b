"""Self-supervised training of the timbre encoder (SimCLR-style, with pitch-shift / time-stretch roles).

No labels are read: two random views of one excerpt are the only "same voice" signal. Pitch
shift and time stretch each play a role (Yakura et al. 2022):

``positive``   an ordinary augmentation of both views (the embedding learns to ignore it);
``negative``   a transformed copy of each excerpt is an extra negative (the embedding learns
               to tell the voice from its transposed / re-timed copy);
``off``        not used.

The loop is linear, in commented sections, as in nanoGPT's ``train.py``; its bookkeeping
(learning rate, checkpoints, progress, report) is :class:`nextvox.training.core.Run`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nextvox.augmentations import ROLES, PitchShift, RegisterShift, TimeStretch, ViewAugment, random_crops
from nextvox.errors import NextvoxError
from nextvox.losses import NTXentLoss
from nextvox.models.timbre import DEFAULT_WEIGHTS, TimbreConfig, TimbreEncoder, load_weights, projection_head, save_weights
from nextvox.training.core import ProgressCallback, Run, TrainResult, new_model, start_or_resume
from nextvox.training.data import data_summary, make_batcher, mix_background

__all__ = ["WEIGHTS", "TrainConfig", "ContrastiveBatch", "train_timbre", "default_init"]

WEIGHTS = "timbre.pt"  # the encoder alone: what analyze and evaluate --model load


@dataclass
class TrainConfig:
    """One training run, passed whole; saved in every checkpoint."""

    pitch_shift: str = "negative"  # role: positive | negative | off
    time_stretch: str = "positive"  # role (bench/results/timbre_roles.md: neg/pos found the held-out singers best)
    register_semitones: float = 4.0  # every view sung up to this many semitones higher or lower, formants kept (0: off)
    background_max_db: float = 30.0  # another song mixed 0 to this many dB under each view: loud backing to nearly a cappella
    production_views: bool = False  # some views also get a backing harmony and a reverb tail (ViewAugment's production)
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
        self.augment = ViewAugment(background_max_db=config.background_max_db, production=config.production_views)

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
        return mix_background(x, self.backgrounds, stretch=self.stretch, augment=self.augment, generator=g)

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
    checkpoint, config = start_or_resume(out_dir, config, resume=resume, module="encoder", model_type=TimbreConfig)

    # -- data ------------------------------------------------------------------------------------
    batcher = make_batcher(ContrastiveBatch, config, excerpts, backgrounds)

    # -- model, loss, optimiser ---------------------------------------------------------------------
    encoder = new_model(TimbreEncoder, config, checkpoint=checkpoint, load=load_weights)
    head = projection_head(config.model)
    loss_fn = NTXentLoss(config.temperature)
    run = Run(out_dir=out_dir, config=config, modules={"encoder": encoder, "head": head}, checkpoint=checkpoint, progress=progress,
              save_weights=lambda: save_weights(encoder, out_dir / WEIGHTS))  # fmt: skip

    # -- loop -------------------------------------------------------------------------------------
    encoder.train(), head.train()
    while run.running:
        run.start_step()
        views, n = batcher(run.generator)  # (V * B, F, crop)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            z = head(encoder(views))  # (V * B, projection_dim)
        loss = loss_fn(z[:n], z[n : 2 * n], list(z[2 * n :].split(n)))
        run.update(loss)
        run.step_done(loss, crops=len(views))

    # -- report -----------------------------------------------------------------------------------
    summary = {"final_loss_note": "mean NT-Xent over the last 10 % of steps", **data_summary(batcher, data_note),
               "views_per_step": batcher.views_per_excerpt * config.batch_size}  # fmt: skip
    title = f"pitch shift {config.pitch_shift}, time stretch {config.time_stretch}"
    return run.finish(n_excerpts=len(batcher.excerpts), summary=summary, title=title, ylabel="NT-Xent loss")


def default_init() -> str | None:
    """The shipped weights, the starting point of ``train`` on a user's library (None when absent)."""
    return str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.is_file() else None
