"""Training of the TCAE melody autoencoder.

The plain TCAE (the seed's) learns to reconstruct its input; nothing asks its latent to hold
the melody rather than the voice. The improved objective adds, on the pooled melody vector,
an NT-Xent term whose two views of one crop are sung in other keys and at other tempi
(each view its own pitch shift and time stretch), under other EQ, noise and backgrounds:
what stays is the tune.

The loop is linear, in commented sections, as in nanoGPT's ``train.py``; its bookkeeping
(learning rate, checkpoints, progress, report) is :class:`nextvox.training.core.Run`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nextvox.augmentations import PitchShift, TimeStretch, ViewAugment, random_crops
from nextvox.errors import NextvoxError
from nextvox.losses import NTXentLoss
from nextvox.models.tcae import DEFAULT_WEIGHTS as DEFAULT_TCAE_WEIGHTS
from nextvox.models.tcae import TCAE, TCAEConfig
from nextvox.models.tcae import load_weights as load_tcae_weights
from nextvox.models.tcae import projection_head as melody_projection_head
from nextvox.models.tcae import save_weights as save_tcae_weights
from nextvox.training.core import ProgressCallback, Run, TrainResult, new_model, start_or_resume
from nextvox.training.data import data_summary, make_batcher, mix_background

__all__ = ["TCAE_WEIGHTS", "TCAETrainConfig", "MelodyViews", "train_tcae", "default_tcae_init"]

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
        return mix_background(x, self.backgrounds, stretch=self.stretch, augment=self.augment, generator=g)

    def __call__(self, g: torch.Generator) -> torch.Tensor:
        """(B, F, crop) plain crops, or (2B, F, crop) stacked as [view a, view b]."""
        c = self.config
        items = torch.randint(len(self.excerpts), (c.batch_size,), generator=g)
        regions = random_crops(self.excerpts, items, source_frames=torch.full((c.batch_size,), self.min_frames), generator=g)
        if c.contrastive_weight <= 0:
            return torch.stack([r[:, : c.crop_frames] for r in regions])  # (B, F, crop)
        return torch.cat([self._view(regions, g), self._view(regions, g)])  # (2B, F, crop)


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
    checkpoint, config = start_or_resume(out_dir, config, resume=resume, module="tcae", model_type=TCAEConfig)

    # -- data ------------------------------------------------------------------------------------
    batcher = make_batcher(MelodyViews, config, excerpts, backgrounds)

    # -- model, loss, optimiser ---------------------------------------------------------------------
    tcae = new_model(TCAE, config, checkpoint=checkpoint, load=load_tcae_weights)
    head = melody_projection_head(config.model)
    contrastive = NTXentLoss(config.temperature)
    run = Run(out_dir=out_dir, config=config, modules={"tcae": tcae, "head": head}, checkpoint=checkpoint, progress=progress,
              save_weights=lambda: save_tcae_weights(tcae, out_dir / TCAE_WEIGHTS))  # fmt: skip

    # -- loop -------------------------------------------------------------------------------------
    tcae.train(), head.train()
    while run.running:
        run.start_step()
        crops = batcher(run.generator)  # (B or 2B, F, crop)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            reconstruction, target, latent = tcae(crops)
        loss = F.mse_loss(reconstruction.float(), target.float())
        if config.contrastive_weight > 0:
            z = head(TCAE.pool(latent))  # (2B, projection_dim)
            loss = loss + config.contrastive_weight * contrastive(*z.chunk(2))
        run.update(loss)
        run.step_done(loss, crops=len(crops))

    # -- report -----------------------------------------------------------------------------------
    objective = "reconstruction MSE" + (f" + {config.contrastive_weight:g} x NT-Xent" if config.contrastive_weight > 0 else "")
    summary = {"final_loss_note": f"mean {objective} over the last 10 % of steps", **data_summary(batcher, data_note),
               "receptive_field_frames": tcae.receptive_field}  # fmt: skip
    return run.finish(n_excerpts=len(batcher.excerpts), summary=summary, title=f"TCAE, {objective}", ylabel="loss")


def default_tcae_init() -> str | None:
    """The shipped TCAE weights, the starting point of ``train tcae`` on a user's library (None when absent)."""
    return str(DEFAULT_TCAE_WEIGHTS) if DEFAULT_TCAE_WEIGHTS.is_file() else None
