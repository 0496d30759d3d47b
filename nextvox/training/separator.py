"""Train the mask separator on a library that has isolated vocals (labels.csv ``vocal_path``).

The project's own libraries (``nextvox demo``, :mod:`nextvox.synth`) keep every song's vocal
exactly as it sits in the mix, so the target is known: the network learns a soft mask whose
product with the mix's magnitude spectrum is the vocal's (L1 loss on magnitudes, as Open-Unmix).

Data: random crops of the mixes; with ``remix_probability`` a crop's vocal is laid at a random
gain over another song's accompaniment (mix minus vocal), so the network hears more pairs of
voice and band than the library holds. Every step's randomness comes from ``(seed, step)``,
so a resumed run draws exactly the crops an uninterrupted one would.

Outputs in ``out_dir``: ``checkpoint.pt`` (resumable), ``separator.pt`` (the weights, what
``--separator-weights`` takes and what the package ships), ``train.json``, ``loss.png``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from nextvox.audio import read_window
from nextvox.constants import SAMPLE_RATE_HZ
from nextvox.errors import NextvoxError
from nextvox.labels import read_track_labels
from nextvox.models.separator import MaskNet, SeparatorConfig, load_weights, save_weights, stft
from nextvox.training.core import ProgressCallback, Run, new_model, start_or_resume

__all__ = ["SeparatorTrainConfig", "Stem", "SeparatorTrainResult", "load_stems", "train_separator"]

# Lossy codecs whose decoded mix is not sample-aligned with the vocal (AAC priming): their
# mix minus vocal still holds some voice, so they give no accompaniment to remixes.
UNALIGNED_FORMATS = frozenset({"m4a"})
WEIGHTS = "separator.pt"  # what --separator-weights takes and what the package ships


@dataclass
class SeparatorTrainConfig:
    """One separator training run, passed whole; saved in every checkpoint."""

    steps: int = 1200
    batch_size: int = 16
    crop_s: float = 4.0  # 250 frames: four times the network's receptive field
    lr: float = 2e-3
    min_lr: float = 1e-4  # cosine decay ends here
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    remix_probability: float = 0.5
    remix_gain_db: float = 6.0  # a remixed vocal's gain is drawn from +-this, dB
    checkpoint_every: int = 100  # steps
    seed: int = 0
    init_weights: str | None = None  # separator weights to fine-tune from; None trains from scratch
    model: SeparatorConfig = field(default_factory=SeparatorConfig)


@dataclass
class Stem:
    """One song: its decoded mono mix and its isolated vocal, 16 kHz float32, same length."""

    name: str
    mix: np.ndarray
    vocal: np.ndarray
    aligned: bool  # mix - vocal is the accompaniment


@dataclass
class SeparatorTrainResult:
    out_dir: Path
    steps: int
    final_loss: float
    seconds: float
    crops_per_s: float
    n_songs: int


def load_stems(library: Path, *, min_s: float = 1.0) -> list[Stem]:
    """Every song of ``library/labels.csv`` with its vocal stem, decoded to 16 kHz mono.

    Raises
    ------
    NextvoxError
        No labels.csv, no ``vocal_path`` column, a missing stem, or no song of ``min_s`` seconds.
    """
    labels = Path(library) / "labels.csv"
    if not labels.is_file():
        raise NextvoxError(f"no labels.csv in {library}: training the separator needs a library with vocal stems "
                           "(make one with `nextvox demo DIR`)")  # fmt: skip
    stems = []  # a labels file without a vocal_path column is refused: the separator learns from isolated vocals
    for row in read_track_labels(labels, library=Path(library).resolve(), required=("vocal_path",)).values():
        vocal_path = Path(library) / row["vocal_path"]
        if not vocal_path.is_file():
            raise NextvoxError(f"vocal stem missing: {vocal_path}")
        vocal, rate = sf.read(vocal_path, dtype="float32")
        if rate != SAMPLE_RATE_HZ or vocal.ndim != 1:
            raise NextvoxError(f"{vocal_path} is not 16 kHz mono")
        mix = read_window(Path(library) / row["path"], start_s=0.0, length_s=None)
        n = min(len(mix), len(vocal))
        if n >= min_s * SAMPLE_RATE_HZ:
            aligned = Path(row["path"]).suffix.lower().lstrip(".") not in UNALIGNED_FORMATS
            stems.append(Stem(name=row["path"], mix=mix[:n], vocal=vocal[:n], aligned=aligned))
    if not stems:
        raise NextvoxError(f"no song of at least {min_s:g} s in {library}")
    return stems


def _batch(stems: list[Stem], config: SeparatorTrainConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(mixes (B, N), vocals (B, N)) of random crops, some remixed over another song's band."""
    n = int(config.crop_s * SAMPLE_RATE_HZ)
    donors = [s for s in stems if s.aligned]
    mixes, vocals = np.zeros((config.batch_size, n), np.float32), np.zeros((config.batch_size, n), np.float32)
    for b in range(config.batch_size):
        stem = stems[rng.integers(len(stems))]
        start = rng.integers(max(1, len(stem.mix) - n + 1))
        vocal = stem.vocal[start : start + n]
        if donors and rng.random() < config.remix_probability:
            donor = donors[rng.integers(len(donors))]
            d_start = rng.integers(max(1, len(donor.mix) - n + 1))
            band = donor.mix[d_start : d_start + n] - donor.vocal[d_start : d_start + n]
            vocal = vocal * np.float32(10 ** (rng.uniform(-config.remix_gain_db, config.remix_gain_db) / 20))
            m = min(len(vocal), len(band))
            vocals[b, :m], mixes[b, :m] = vocal[:m], vocal[:m] + band[:m]
        else:
            vocals[b, : len(vocal)], mixes[b, : len(vocal)] = vocal, stem.mix[start : start + n]
    return torch.from_numpy(mixes), torch.from_numpy(vocals)


def _loss(model: MaskNet, mixes: torch.Tensor, vocals: torch.Tensor) -> torch.Tensor:
    """L1 between the masked mix magnitude and the vocal's, relative to the mix's mean magnitude."""
    mix_magnitude = stft(mixes, model.config).abs()  # (B, F, T)
    vocal_magnitude = stft(vocals, model.config).abs()  # (B, F, T)
    estimate = model(mix_magnitude) * mix_magnitude
    return (estimate - vocal_magnitude).abs().mean() / (mix_magnitude.mean() + 1e-8)


def train_separator(
    config: SeparatorTrainConfig,
    stems: list[Stem],
    *,
    out_dir: Path,
    resume: bool = False,
    data_note: str = "",
    progress: ProgressCallback | None = None,
) -> SeparatorTrainResult:
    """Train (or go on training) the mask separator; write checkpoint, weights, train.json and loss.png.

    Parameters
    ----------
    config : SeparatorTrainConfig
        Ignored on resume except ``steps`` (a resumed run may be extended); the checkpoint's own is used.
    stems : list of Stem
    out_dir : Path
    resume : bool
        Go on from ``out_dir/checkpoint.pt``.
    data_note : str
        What the stems are (stored in train.json).
    progress : callable(step, total, loss, crops_per_s), optional
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # ---- model, optimiser, and the state to go on from --------------------------------------
    steps = config.steps
    checkpoint, config = start_or_resume(out_dir, config, resume=resume, module="model", model_type=SeparatorConfig)
    if checkpoint is not None:
        config.steps = max(steps, checkpoint["step"])  # a resumed run may be extended
    model = new_model(MaskNet, config, checkpoint=checkpoint, load=load_weights)
    run = Run(out_dir=out_dir, config=config, modules={"model": model}, checkpoint=checkpoint, progress=progress,
              save_weights=lambda: save_weights(model, out_dir / WEIGHTS))  # fmt: skip

    # ---- the loop ----------------------------------------------------------------------------
    model.train()
    while run.running:
        run.start_step()
        rng = np.random.default_rng([config.seed, run.step])  # a resumed run draws the crops an uninterrupted one would
        mixes, vocals = _batch(stems, config, rng)
        loss = _loss(model, mixes, vocals)
        run.update(loss, clip_norm=config.grad_clip)
        run.step_done(loss, crops=config.batch_size)

    # ---- outputs -----------------------------------------------------------------------------
    model.eval()
    result = run.finish(n_excerpts=len(stems), summary={
        "final_loss_note": "mean L1 of the masked magnitude over the last 10 % of steps", "n_songs": len(stems),
        "data": data_note, "parameters": sum(p.numel() for p in model.parameters()),
    }, title="mask separator training", ylabel="L1 of masked magnitude / mix magnitude")  # fmt: skip
    return SeparatorTrainResult(out_dir=out_dir, steps=result.steps, final_loss=result.final_loss, seconds=result.seconds,
                                crops_per_s=result.crops_per_s, n_songs=len(stems))  # fmt: skip
