"""The timbre encoder: a small 2-D CNN over log-mel crops of a voice, read top to bottom.

Input: 48-band log-mel crops (natural log of mel power, as :func:`nextvox.features.log_mel`
gives), 250 frames = 4 s in training. Output: a vector of ``embedding_dim`` numbers, L2
normalised, that places recordings of one voice close together (cosine similarity).

Why it looks like this (measured on a 2-core CPU, see bench/results/timbre_speed.md):

- a **strided stem** halves both axes before any wide layer: a plain CNN whose first block
  ran at full 48 x 250 resolution spent most of its training time there;
- three stages, each a stride-2 convolution then a residual 3 x 3 convolution, widen the
  channels as the map shrinks (24 x 125 -> 12 x 63 -> 6 x 32 -> 3 x 16);
- the map keeps its frequency axis to the end: the mean and the standard deviation over time
  of every (channel, band) pair are pooled (statistics pooling, as in x-vector speaker
  embeddings), so *where* in the spectrum a resonance sits — the formants that make a voice
  itself — reaches the embedding. Averaging over frequency as well, as the first version of
  this encoder did, made it blind to that and found the singer far less often
  (docs/models.md). Time is pooled away, so a crop of any length >= 16
  frames gives a vector;
- a linear layer gives the embedding; the contrastive projection head (SimCLR, Chen et al.
  2020, section 2.1) is a separate small MLP used only in training, so the embedding itself
  keeps the information the contrastive loss would discard.

A whole excerpt is embedded by :func:`embed_excerpt`: it tiles the *valid* frames with
overlapping crops (never the padding after a short song), embeds them and averages.
"""

from __future__ import annotations

import pickle
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nextvox.constants import LOG_MEL_SCALE, N_MELS
from nextvox.errors import NextvoxError
from nextvox.models.weights_file import cached_loader, file_digest
from nextvox.files import atomic_path
from nextvox.models.projection import ProjectionHead

__all__ = [
    "DEFAULT_WEIGHTS",
    "TimbreConfig",
    "TimbreEncoder",
    "projection_head",
    "MIN_FRAMES",
    "save_weights",
    "load_weights",
    "cached_encoder",
    "weights_version",
    "embed_crops",
    "excerpt_crops",
    "embed_excerpt",
]

#: The weights that ship in the package (docs/models.md: how they were trained, on what).
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "timbre.pt"
MIN_FRAMES = 16  # shortest input: the three stride-2 stages and the stem leave one frame


@dataclass
class TimbreConfig:
    """Shape of the encoder; saved whole beside the weights."""

    n_mels: int = N_MELS
    stem_channels: int = 32
    channels: tuple[int, ...] = (48, 96, 192)  # one stage per entry, each halving both axes
    embedding_dim: int = 128
    projection_dim: int = 128  # the contrastive head's output (training only)
    crop_frames: int = 250  # 4 s at 62.5 frames/s: a crop in training and at inference

    @property
    def pooled_bands(self) -> int:
        """Frequency rows left after the stem and the stages, each halving them (48 -> 3)."""
        bands = self.n_mels
        for _ in range(len(self.channels) + 1):
            bands = (bands + 1) // 2
        return bands


class ConvBN(nn.Sequential):
    """Convolution, batch norm, ReLU: the unit everything else is built of."""

    def __init__(self, c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class Stage(nn.Module):
    """Halve both axes with a strided convolution, then refine with a residual 3 x 3 convolution."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.down = ConvBN(c_in, c_out, stride=2)
        self.refine = ConvBN(c_out, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)  # (B, C_out, F/2, T/2)
        return x + self.refine(x)


class TimbreEncoder(nn.Module):
    """Log-mel crop(s) -> L2-normalised timbre embedding.

    Parameters
    ----------
    config : TimbreConfig

    Examples
    --------
    >>> encoder = TimbreEncoder(TimbreConfig()).eval()
    >>> encoder(torch.zeros(2, 48, 250)).shape
    torch.Size([2, 128])
    """

    def __init__(self, config: TimbreConfig):
        super().__init__()
        self.config = config
        self.embedding_dim = config.embedding_dim
        self.stem = ConvBN(1, config.stem_channels, kernel=5, stride=2)
        widths = (config.stem_channels, *config.channels)
        self.stages = nn.Sequential(*(Stage(c_in, c_out) for c_in, c_out in zip(widths[:-1], widths[1:])))
        self.embed = nn.Linear(2 * widths[-1] * config.pooled_bands, config.embedding_dim)  # mean and std per (channel, band)

    def features(self, log_mel: torch.Tensor) -> torch.Tensor:
        """The pooled convolutional features before the embedding layer.

        Parameters
        ----------
        log_mel : torch.Tensor, shape (B, n_mels, T), T >= MIN_FRAMES
            Natural-log mel power.

        Returns
        -------
        torch.Tensor, shape (B, 2 * channels[-1] * pooled_bands)
        """
        # Level carries no voice: centre each crop, so a gain change is a no-op after the log floor.
        x = log_mel - log_mel.mean(dim=(1, 2), keepdim=True)
        x = (x / LOG_MEL_SCALE).unsqueeze(1)  # (B, 1, F, T)
        x = self.stem(x)  # (B, C0, F/2, T/2)
        x = self.stages(x).flatten(1, 2)  # (B, C * F/16, T/16): every channel at every band
        return torch.cat([x.mean(dim=2), x.std(dim=2, correction=0)], dim=1)  # (B, 2 * C * F/16)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) log-mel -> (B, embedding_dim), unit length."""
        return F.normalize(self.embed(self.features(log_mel)).float(), dim=1)


def projection_head(config: TimbreConfig) -> ProjectionHead:
    """The training-only projection g(h) of the timbre vector: (B, embedding_dim) -> (B, projection_dim)."""
    return ProjectionHead(config.embedding_dim, config.embedding_dim, config.projection_dim)


# ---- weights on disk ----------------------------------------------------------------------------

def save_weights(encoder: TimbreEncoder, path: Path) -> Path:
    """Write the encoder alone (config and float32 state), atomically: the form that ships and that ``analyze`` loads."""
    with atomic_path(path) as part:
        torch.save({"config": asdict(encoder.config), "state": encoder.state_dict()}, part)
    return Path(path)


def load_weights(path: Path) -> TimbreEncoder:
    """The encoder saved by :func:`save_weights` (or a training checkpoint), in eval mode.

    Raises
    ------
    NextvoxError
        When the file is missing or is not timbre-encoder weights.
    """
    path = Path(path)
    if not path.is_file():
        raise NextvoxError(f"timbre encoder weights not found: {path}")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        config = dict(stored.get("config") or stored["model_config"])
        config["channels"] = tuple(config["channels"])
        encoder = TimbreEncoder(TimbreConfig(**config))
        encoder.load_state_dict(stored["state"] if "state" in stored else stored["encoder"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, AttributeError, pickle.UnpicklingError) as error:
        raise NextvoxError(f"{path} is not timbre-encoder weights ({type(error).__name__}: {error})") from None
    return encoder.eval()


#: :func:`load_weights`, once per process and file version (a changed file is loaded again).
cached_encoder = cached_loader(load_weights, what="timbre encoder weights")


def weights_version(path: Path) -> str:
    """The model version stored beside every vector: ``timbre-cnn-`` and 10 hex digits of the file's hash."""
    return "timbre-cnn-" + file_digest(path)


# ---- inference -----------------------------------------------------------------------------------

def excerpt_crops(log_mel: np.ndarray, *, crop_frames: int, hop_frames: int | None = None) -> np.ndarray:
    """Overlapping crops that tile an excerpt's valid frames, the last one ending at its end.

    Parameters
    ----------
    log_mel : np.ndarray, shape (n_mels, T)
        Valid frames only.
    crop_frames : int
        Frames per crop; an excerpt shorter than this gives one crop of all its frames.
    hop_frames : int, optional
        Frames between crop starts; half a crop by default.

    Returns
    -------
    np.ndarray, shape (n_crops, n_mels, min(T, crop_frames))

    >>> excerpt_crops(np.zeros((48, 600)), crop_frames=250).shape
    (4, 48, 250)
    """
    total = log_mel.shape[1]
    if total <= crop_frames:
        return log_mel[None]
    hop = hop_frames or crop_frames // 2
    starts = list(range(0, total - crop_frames + 1, hop))
    if starts[-1] != total - crop_frames:
        starts.append(total - crop_frames)
    return np.stack([log_mel[:, s : s + crop_frames] for s in starts])  # (n_crops, F, crop)


def embed_crops(encoder: TimbreEncoder, crops: torch.Tensor, *, bf16: bool, batch: int = 32) -> torch.Tensor:
    """Embed (N, n_mels, T) crops in batches of ``batch`` (about 32 is fastest on CPU); (N, D) float32."""
    out = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(crops), batch):
            out.append(encoder(crops[start : start + batch]).float())
    return torch.cat(out)


def embed_excerpt(encoder: TimbreEncoder, log_mel: np.ndarray, *, n_valid_frames: int | None = None, bf16: bool = True) -> np.ndarray:
    """One excerpt's timbre vector: the mean of its crops' embeddings, re-normalised.

    Parameters
    ----------
    encoder : TimbreEncoder
        In eval mode.
    log_mel : np.ndarray, shape (n_mels, T)
    n_valid_frames : int, optional
        Frames before the padding; only these are looked at. All ``T`` when None.
    bf16 : bool
        bfloat16 autocast (faster on CPUs with AVX-512 BF16; vectors agree to ~1e-2 cosine).

    Returns
    -------
    np.ndarray, shape (embedding_dim,), float32, unit length.

    Raises
    ------
    NextvoxError
        When fewer than MIN_FRAMES frames are valid (0.26 s).
    """
    valid = log_mel[:, : n_valid_frames if n_valid_frames is not None else log_mel.shape[1]]
    if valid.shape[1] < MIN_FRAMES:
        raise NextvoxError(f"an excerpt of {valid.shape[1]} frames is too short to embed (at least {MIN_FRAMES})")
    crops = torch.from_numpy(np.ascontiguousarray(excerpt_crops(valid, crop_frames=encoder.config.crop_frames), dtype=np.float32))
    mean = embed_crops(encoder, crops, bf16=bf16).mean(dim=0)  # (D,)
    return F.normalize(mean, dim=0).numpy()


if __name__ == "__main__":
    model = TimbreEncoder(TimbreConfig())
    n_params = sum(p.numel() for p in model.parameters())
    print(f"timbre encoder: {n_params / 1e6:.2f} M parameters, embedding {model.embedding_dim}")
