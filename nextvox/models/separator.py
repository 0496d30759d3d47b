"""The mask separator: a compact network that predicts a soft vocal mask over the STFT of a mix.

Read top to bottom: the config, the residual unit, the network, then the waveform in/out
helpers that training and inference share, and loading/saving with a version hash.

Design, for speed (the analysis budget is >= 200x real time on one core):

* frequency bins are the channels of a 1-D convolution over time (as Open-Unmix treats a
  frame), so a 120 s excerpt is one (257, 7501) sequence and no 2-D convolution runs at full
  resolution;
* a strided stem halves the frame rate before the dilated residual stack (dilations
  1, 2, 4, 8: about 1 s of context, enough to hear vibrato and a held note), and a transposed
  convolution brings it back, with a skip connection from the full-rate stem;
* the mask is a sigmoid per STFT bin and frame, applied to the complex mix spectrum, so the
  output keeps the mix's phase and needs no phase model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from nextvox.models.weights_file import file_digest
from nextvox.files import atomic_path

__all__ = [
    "SeparatorConfig",
    "ResidualUnit",
    "MaskNet",
    "stft",
    "overlap_add",
    "istft",
    "separate_batch",
    "save_weights",
    "load_weights",
    "weights_version",
]


@dataclass
class SeparatorConfig:
    n_fft: int = 512  # samples per window at 16 kHz (32 ms): the analysis's own STFT, 257 bins
    hop_length: int = 256  # samples between frames (16 ms)
    channels: int = 128  # hidden channels of the 1-D stack
    dilations: tuple[int, ...] = (1, 2, 4, 8)  # at half the frame rate: receptive field ~ 1 s
    kernel_size: int = 3
    log_floor: float = 1e-3  # relative magnitude floor of the input's log (-60 dB under the mean)

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def receptive_field_frames(self) -> int:
        """Frames of mix that one output frame sees."""
        half_rate = 1 + sum((self.kernel_size - 1) * d for d in self.dilations)
        return 2 * half_rate + 2 * (self.kernel_size - 1)


class ResidualUnit(nn.Module):
    """Dilated conv -> GELU -> 1x1 conv, added to the input (time length kept)."""

    def __init__(self, channels: int, *, kernel_size: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T) -> (B, C, T)
        return x + self.mix(F.gelu(self.conv(x)))


class MaskNet(nn.Module):
    """Magnitude spectrogram of a mix -> soft vocal mask of the same shape, in [0, 1]."""

    def __init__(self, config: SeparatorConfig):
        super().__init__()
        self.config = config
        c, k = config.channels, config.kernel_size
        self.stem = nn.Conv1d(config.n_bins, c, k, padding=k // 2)
        self.down = nn.Conv1d(c, c, 2, stride=2)
        self.units = nn.Sequential(*[ResidualUnit(c, kernel_size=k, dilation=d) for d in config.dilations])
        self.up = nn.ConvTranspose1d(c, c, 2, stride=2)
        self.head = nn.Conv1d(c, config.n_bins, k, padding=k // 2)

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        """(B, n_bins, T) linear magnitude -> (B, n_bins, T) mask."""
        t = magnitude.shape[-1]
        # Gain invariance: the log of the magnitude relative to the excerpt's mean magnitude.
        scale = magnitude.mean(dim=(1, 2), keepdim=True) + 1e-8
        x = torch.log(magnitude / scale + self.config.log_floor)  # (B, F, T)
        x = F.pad(x, (0, t % 2))  # even length for the stride-2 round trip
        skip = F.gelu(self.stem(x))  # (B, C, T')
        h = self.units(F.gelu(self.down(skip)))  # (B, C, T'/2)
        h = F.gelu(self.up(h)) + skip  # (B, C, T')
        return torch.sigmoid(self.head(h))[..., :t]  # (B, F, T)


def stft(audio: torch.Tensor, config: SeparatorConfig) -> torch.Tensor:
    """(B, N) samples -> (B, n_bins, N // hop + 1) complex spectrum (centred Hann frames)."""
    window = torch.hann_window(config.n_fft, device=audio.device)
    return torch.stft(audio, config.n_fft, config.hop_length, window=window, center=True, return_complex=True)


def overlap_add(frames: torch.Tensor, *, hop: int) -> torch.Tensor:
    """Frames laid ``hop`` samples apart and summed: (..., T, n) -> (..., (T + n // hop - 1) * hop), for a hop that divides n.

    >>> overlap_add(torch.ones(3, 4), hop=2)
    tensor([1., 1., 2., 2., 2., 2., 1., 1.])
    """
    overlap = frames.shape[-1] // hop
    # Part j of every frame (samples j*hop ... (j+1)*hop) lands j hops after the frame's start.
    parts = [F.pad(frames[..., j * hop : (j + 1) * hop], (0, 0, j, overlap - 1 - j)) for j in range(overlap)]  # (..., T + overlap - 1, hop)
    return sum(parts[1:], parts[0]).flatten(-2)


def istft(spectrum: torch.Tensor, config: SeparatorConfig, *, length: int) -> torch.Tensor:
    """Inverse of :func:`stft`: (B, n_bins, T) complex -> (B, length) samples.

    The same numbers as ``torch.istft`` (a test compares them bit for bit) in half its time:
    with a hop that divides the window, the overlap-add is a sum of ``n_fft // hop`` shifted
    copies of the frames (:func:`overlap_add`), where ``torch.istft`` folds the frames into
    the output with a general col2im.
    """
    n_fft, hop = config.n_fft, config.hop_length
    if n_fft % hop or n_fft // hop < 2:
        raise ValueError(f"the separator's hop ({hop}) must divide its window ({n_fft}) at least twice")
    window = torch.hann_window(n_fft, device=spectrum.device)
    frames = torch.fft.irfft(spectrum.transpose(1, 2), n=n_fft, dim=2) * window  # (B, T, n_fft)
    envelope = overlap_add((window**2).expand(frames.shape[1], -1), hop=hop)  # the window's own overlap-add normalises
    start = n_fft // 2  # centred frames: the signal starts half a window in
    return overlap_add(frames, hop=hop)[:, start : start + length] / envelope[start : start + length]


def separate_batch(model: MaskNet, audio: torch.Tensor, *, bf16: bool = False) -> torch.Tensor:
    """Vocal estimate of mixes: (B, N) float32 samples -> (B, N) float32 samples."""
    spectrum = stft(audio, model.config)  # (B, F, T)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        mask = model(spectrum.abs())
    return istft(spectrum * mask.float(), model.config, length=audio.shape[-1])


def save_weights(model: MaskNet, path: Path) -> Path:
    """Write the config and float32 weights (what a release ships: ~1 MB), atomically."""
    with atomic_path(path) as part:
        torch.save({"config": asdict(model.config), "state_dict": model.state_dict()}, part)
    return Path(path)


def load_weights(path: Path) -> MaskNet:
    """A :class:`MaskNet` in eval mode from a file written by :func:`save_weights`."""
    stored = torch.load(Path(path), map_location="cpu", weights_only=True)
    config = dict(stored["config"])
    config["dilations"] = tuple(config["dilations"])
    model = MaskNet(SeparatorConfig(**config))
    model.load_state_dict(stored["state_dict"])
    return model.eval()


def weights_version(path: Path) -> str:
    """8 hex digits of the weights file's hash (once per process and file version): part of the separator's name in every cache key."""
    return file_digest(path, digest_size=4)


if __name__ == "__main__":  # parameter count, receptive field and speed of the default config
    import time

    torch.set_num_threads(1)
    net = MaskNet(SeparatorConfig()).eval()
    print(f"parameters: {sum(p.numel() for p in net.parameters()):,}; "
          f"receptive field: {net.config.receptive_field_frames} frames")
    from nextvox.constants import EXCERPT_S, EXCERPT_SAMPLES, SAMPLE_RATE_HZ

    audio = torch.randn(1, EXCERPT_SAMPLES)
    for bf16 in (False, True):
        with torch.inference_mode():
            separate_batch(net, audio[:, :SAMPLE_RATE_HZ], bf16=bf16)
            t0 = time.perf_counter()
            separate_batch(net, audio, bf16=bf16)
        print(f"bf16={bf16}: {EXCERPT_S / (time.perf_counter() - t0):.0f}x real time on one core")
