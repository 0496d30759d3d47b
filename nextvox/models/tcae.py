"""The TCAE (Time Causal AutoEncoder): the melody embedding, read top to bottom.

Input: 48-band log-mel spectrograms (natural log of mel power, as
:func:`nextvox.features.log_mel` gives), mel bands as channels, frames as time. The encoder
and the decoder are each a WaveNet stack (van den Oord et al. 2016): a 1 x 1 convolution in,
then residual layers of *dilated causal* 1-D convolutions (dilations 1, 2, 4, ... per stack,
a gated tanh x sigmoid unit, a residual and a skip connection each), the sum of the skips
through two 1 x 1 convolutions out. The encoder maps the log-mel to a **latent sequence** of
``latent_dim`` channels per frame, the bottleneck; the decoder reconstructs the (normalised)
log-mel from it. Everything is causal: the latent at frame t depends on frames <= t only
(tests/test_tcae.py proves it), with a receptive field of :attr:`TCAE.receptive_field` frames.

The **melody sequence** is the latent sequence with each channel standardised over the song
(what stays the same all song long, the voice above all, is removed) and averaged over
``SEQUENCE_HOP_FRAMES``, over the loudest ``SEQUENCE_MAX_STEPS`` steps of the excerpt and in
each of ``KEY_SHIFTS`` (the log-mel transposed before encoding, as chroma baselines try every
rotation). Two songs' sequences are compared by local alignment in the best key of either
(:func:`sequence_similarity`): the best-matching stretches line up whatever the tempo, the
key and the verse each excerpt starts in. The **melody vector**, what
the vector index searches, is the sequence's autocorrelation: for each latent channel, how
much it resembles itself ``1 ... AUTOCORRELATION_LAGS`` steps (0.26 - 8.2 s) later
(:func:`sequence_autocorrelation`). It keeps how the tune's phrases recur in time, which a
mean over the song throws away, and it does not depend on where the song starts; on the
held-out songs it found the same tune sung by another singer more than twice as often as the
channels' mean and standard deviation (bench/results/tcae.md).

Two input normalisations, a config choice (``centre_s``), both causal:

- ``centre_s = 0`` (the seed's plain TCAE): a fixed affine map of the log-mel;
- ``centre_s > 0``: each band minus its causal running mean over about ``centre_s``
  seconds. A singer's average spectral envelope, the room and the mix's EQ are slowly
  varying per band, so this removes most of what says *who* sings and keeps the note-to-note
  movement that says *what* is sung.

The training objective (reconstruction alone, or reconstruction plus a key- and
tempo-invariant contrastive term on the melody vector) lives in :mod:`nextvox.training`.
"""

from __future__ import annotations

import pickle
from functools import lru_cache
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nextvox.augmentations import PitchShift
from nextvox.constants import FRAME_RATE_HZ, LOG_MEL_SCALE, N_MELS
from nextvox.errors import NextvoxError
# The match of two melody sequences needs no torch: it lives in nextvox.melody_match (a
# stored-vector query then never imports torch); its names are kept here for the model's users.
from nextvox.melody_match import KEY_SHIFTS, local_alignment, sequence_keys, sequence_similarity  # noqa: F401
from nextvox.models.weights_file import cached_loader, file_digest
from nextvox.files import atomic_path
from nextvox.models.projection import ProjectionHead

__all__ = [
    "DEFAULT_WEIGHTS",
    "TCAEConfig",
    "CausalConv1d",
    "ResidualLayer",
    "WaveNetStack",
    "TCAE",
    "projection_head",
    "save_weights",
    "load_weights",
    "cached_tcae",
    "weights_version",
    "melody_vector",
    "melody_vector_and_sequence",
    "SEQUENCE_HOP_FRAMES",
    "AUTOCORRELATION_LAGS",
    "melody_sequence",
    "sequence_autocorrelation",
    "KEY_SHIFTS",
    "SEQUENCE_MAX_STEPS",
    "sequence_keys",
    "local_alignment",
    "sequence_similarity",
]

#: The weights that ship in the package (docs/models.md: how they were trained, on what).
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "tcae.pt"
LOG_MEL_OFFSET = -7.0  # rough middle of natural-log mel power between the floor (-13.8) and a loud band (~0)
SEQUENCE_HOP_FRAMES = 16  # 256 ms per melody-sequence step: about a sung note (8 and 16 matched equally well, 32 worse)
AUTOCORRELATION_LAGS = 32  # 8.2 s of lags: two to four bars at 60 - 120 bpm (16 lags found fewer tunes, docs/models.md)
SEQUENCE_MAX_STEPS = 120  # a sequence keeps the 31 s where the voice is loudest: a verse or more, and a match of two takes 8 ms


@dataclass
class TCAEConfig:
    """Shape of the TCAE; saved whole beside the weights."""

    n_mels: int = N_MELS
    channels: int = 48  # residual channels of every layer
    skip_channels: int = 48
    latent_dim: int = 16  # channels per frame of the latent sequence: the bottleneck (48 bands -> 16)
    kernel_size: int = 3
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)  # one stack; receptive field 255 frames = 4.1 s
    n_stacks: int = 1  # stacks in the encoder, and again in the decoder
    centre_s: float = 0.0  # causal running-mean removal per band (seconds); 0: a fixed affine map (the plain TCAE)
    projection_dim: int = 64  # the contrastive head's output (training only)

    @property
    def pooled_dim(self) -> int:
        """Length of :meth:`TCAE.pool`'s output, on which the contrastive term is trained: mean and std per channel."""
        return 2 * self.latent_dim

    @property
    def melody_dim(self) -> int:
        """Length of the melody vector: one autocorrelation per latent channel and lag."""
        return self.latent_dim * AUTOCORRELATION_LAGS


class CausalConv1d(nn.Conv1d):
    """A dilated 1-D convolution padded on the left only: output frame t sees input frames <= t."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, *, dilation: int = 1):
        super().__init__(c_in, c_out, kernel_size, dilation=dilation)
        self.left_padding = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_padding, 0)))  # (B, C_out, T)


class ResidualLayer(nn.Module):
    """WaveNet's layer: gated dilated causal convolution, then a residual and a skip output."""

    def __init__(self, channels: int, skip_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.dilated = CausalConv1d(channels, 2 * channels, kernel_size, dilation=dilation)
        self.residual = nn.Conv1d(channels, channels, 1)
        self.skip = nn.Conv1d(channels, skip_channels, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        filtered, gate = self.dilated(x).chunk(2, dim=1)  # (B, C, T) each
        h = torch.tanh(filtered) * torch.sigmoid(gate)
        return x + self.residual(h), self.skip(h)


class WaveNetStack(nn.Module):
    """``c_in`` channels -> ``c_out`` channels per frame, through stacked residual layers."""

    def __init__(self, c_in: int, c_out: int, config: TCAEConfig):
        super().__init__()
        self.input = nn.Conv1d(c_in, config.channels, 1)
        self.layers = nn.ModuleList(
            ResidualLayer(config.channels, config.skip_channels, config.kernel_size, dilation)
            for _ in range(config.n_stacks)
            for dilation in config.dilations
        )
        self.output = nn.Sequential(
            nn.ReLU(), nn.Conv1d(config.skip_channels, config.skip_channels, 1), nn.ReLU(), nn.Conv1d(config.skip_channels, c_out, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)  # (B, C, T)
        skips = torch.zeros((), dtype=x.dtype)
        for layer in self.layers:
            x, skip = layer(x)
            skips = skips + skip  # (B, C_skip, T)
        return self.output(skips)  # (B, c_out, T)


class TCAE(nn.Module):
    """Log-mel -> latent sequence -> reconstructed log-mel, all causal.

    Examples
    --------
    >>> tcae = TCAE(TCAEConfig()).eval()
    >>> tcae.receptive_field, round(tcae.receptive_field / FRAME_RATE_HZ, 2)
    (255, 4.08)
    >>> tcae.encode(torch.zeros(2, 48, 300)).shape
    torch.Size([2, 16, 300])
    >>> tcae.pool(tcae.encode(torch.zeros(2, 48, 300))).shape
    torch.Size([2, 32])
    """

    def __init__(self, config: TCAEConfig):
        super().__init__()
        self.config = config
        self.encoder = WaveNetStack(config.n_mels, config.latent_dim, config)
        self.decoder = WaveNetStack(config.latent_dim, config.n_mels, config)

    @property
    def receptive_field(self) -> int:
        """Frames of input that one latent frame sees (the current one and those before it)."""
        c = self.config
        return 1 + c.n_stacks * sum((c.kernel_size - 1) * d for d in c.dilations)

    @property
    def context_frames(self) -> int:
        """Frames of log-mel that one latent frame depends on, the running mean of ``centre_s`` included.

        A latent frame at least this many frames into a stretch of log-mel is the same whether
        the stretch was encoded alone or as part of a longer one.
        """
        window = round(self.config.centre_s * FRAME_RATE_HZ) if self.config.centre_s > 0 else 1
        return self.receptive_field + window - 1

    def normalise(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) natural-log mel power -> the encoder's input, same shape, causally."""
        if self.config.centre_s <= 0:
            return (log_mel - LOG_MEL_OFFSET) / LOG_MEL_SCALE
        return (log_mel - causal_running_mean(log_mel, window_frames=round(self.config.centre_s * FRAME_RATE_HZ))) / LOG_MEL_SCALE

    def encode(self, log_mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, T) log-mel -> (B, latent_dim, T) latent sequence."""
        return self.encoder(self.normalise(log_mel))

    def forward(self, log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reconstruction, target, latent): the first two (B, n_mels, T), the latent (B, latent_dim, T)."""
        target = self.normalise(log_mel)
        latent = self.encoder(target)
        return self.decoder(latent), target, latent

    @staticmethod
    def pool(latent: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim, T) -> (B, 2 * latent_dim): mean and standard deviation of each channel over time."""
        latent = latent.float()
        return torch.cat([latent.mean(dim=2), latent.std(dim=2, unbiased=False)], dim=1)


def causal_running_mean(x: torch.Tensor, *, window_frames: int) -> torch.Tensor:
    """Mean of each channel over the ``window_frames`` frames ending at each frame (fewer at the start).

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, T)
    window_frames : int
        Frames averaged, the current one included.

    Returns
    -------
    torch.Tensor, shape (B, C, T)

    Examples
    --------
    >>> causal_running_mean(torch.tensor([[[1.0, 3.0, 5.0, 7.0]]]), window_frames=2)
    tensor([[[1., 2., 4., 6.]]])
    """
    # float64: over 7501 frames a float32 running sum of log powers loses the second decimal.
    total = F.pad(x.double().cumsum(dim=2), (window_frames, 0))  # (B, C, T + w): sums up to each frame, zeros before
    window_sum = total[..., window_frames:] - total[..., :-window_frames]  # (B, C, T)
    count = torch.arange(1, x.shape[2] + 1, device=x.device).clamp(max=window_frames)  # (T,)
    return (window_sum / count).to(x.dtype)


def projection_head(config: TCAEConfig) -> ProjectionHead:
    """The training-only projection g(h) of the melody vector: (B, pooled_dim) -> (B, projection_dim)."""
    return ProjectionHead(config.pooled_dim, 2 * config.pooled_dim, config.projection_dim)


# ---- weights -----------------------------------------------------------------------------------

def save_weights(tcae: TCAE, path: Path) -> Path:
    """Write the TCAE's config and weights (float32), atomically."""
    state = {name: tensor.detach().float().clone() for name, tensor in tcae.state_dict().items()}
    with atomic_path(path) as part:
        torch.save({"kind": "tcae", "config": asdict(tcae.config), "state_dict": state}, part)
    return Path(path)


def load_weights(path: Path) -> TCAE:
    """A TCAE in eval mode from a file of :func:`save_weights`.

    Raises
    ------
    NextvoxError
        When the file is missing or is not a TCAE weights file.
    """
    path = Path(path)
    if not path.is_file():
        raise NextvoxError(f"TCAE weights not found: {path}")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        config = dict(stored["config"])
        config["dilations"] = tuple(config["dilations"])
        tcae = TCAE(TCAEConfig(**config))
        tcae.load_state_dict(stored["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, AttributeError, EOFError, pickle.UnpicklingError) as error:
        raise NextvoxError(f"{path} is not TCAE weights ({type(error).__name__}: {error})") from None
    return tcae.eval()


#: :func:`load_weights`, once per process and file version (a changed file is loaded again).
cached_tcae = cached_loader(load_weights, what="TCAE weights")


def weights_version(path: Path) -> str:
    """The model version stored beside every melody vector: ``tcae-`` and 10 hex digits of the file's hash."""
    return "tcae-" + file_digest(path)


# ---- inference ------------------------------------------------------------------------------------

@torch.no_grad()
def melody_vector_and_sequence(
    tcae: TCAE, log_mel_spectrogram: np.ndarray, *, n_valid_frames: int, hop_frames: int = SEQUENCE_HOP_FRAMES,
    bf16: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The melody vector and the melody sequence (in every key of KEY_SHIFTS) of one excerpt.

    Parameters
    ----------
    tcae : TCAE
    log_mel_spectrogram : np.ndarray, shape (N_MELS, T)
    n_valid_frames : int
        Frames before the padding of a short song; the padding is never looked at.
    hop_frames : int
        Latent frames averaged into one sequence step (16: 256 ms).
    bf16 : bool
        bfloat16 autocast for the encoder: about 1.4x faster on CPUs with AVX-512 BF16; the
        melody vector agrees with float32's to 1e-5 in cosine and the sequence to 0.02, less
        than one step of its int8 storage (tests/test_analysis_reference.py).

    Returns
    -------
    vector : np.ndarray, shape (latent_dim * AUTOCORRELATION_LAGS,), float32, L2 norm 1 (or all zero)
        :func:`sequence_autocorrelation` of the whole excerpt's sequence as sung.
    sequence : np.ndarray, shape (len(KEY_SHIFTS) * steps, latent_dim), float16
        The melody sequence (see :func:`melody_sequence`) of the excerpt's loudest
        SEQUENCE_MAX_STEPS * hop_frames frames (:func:`loudest_window`), shifted by each of
        KEY_SHIFTS, one after the other; steps = min(SEQUENCE_MAX_STEPS, max(1, n_valid_frames // hop_frames)).
    """
    if n_valid_frames < 1:
        raise NextvoxError("an excerpt needs at least one valid frame for a melody vector")
    x = torch.from_numpy(np.ascontiguousarray(log_mel_spectrogram[:, :n_valid_frames], dtype=np.float32))[None]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return _vector_and_sequence(tcae, x, hop_frames=hop_frames)


def _vector_and_sequence(tcae: TCAE, x: torch.Tensor, *, hop_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`melody_vector_and_sequence` of x, (1, n_mels, n_valid_frames) valid log-mel frames."""
    whole = tcae.encode(x)[0]  # (latent_dim, n_valid_frames)
    vector = sequence_autocorrelation(_sequence(whole.float().numpy(), hop_frames=hop_frames))
    start = loudest_window(x[0].numpy(), frames=SEQUENCE_MAX_STEPS * hop_frames)
    sung = x[..., start : start + SEQUENCE_MAX_STEPS * hop_frames]  # (1, n_mels, frames)
    # Each key's stretch is encoded afresh (the causal encoder starts at its first frame). As
    # sung, only its first context_frames differ from the whole excerpt's latent: the rest is
    # taken from there instead of being encoded a second time.
    head = min(sung.shape[2], tcae.context_frames)
    as_sung = torch.cat([tcae.encode(sung[..., :head])[0], whole[:, start + head : start + sung.shape[2]]], dim=1)
    shifts = [shift for shift in KEY_SHIFTS if shift != 0]
    shifted = tcae.encode(_key_shifter()(sung.expand(len(shifts), -1, -1), torch.tensor(shifts)))  # (keys - 1, latent_dim, frames)
    latents = iter(shifted)
    keys = [_sequence((as_sung if shift == 0 else next(latents)).float().numpy(), hop_frames=hop_frames) for shift in KEY_SHIFTS]
    return vector, np.concatenate(keys).astype(np.float16)


def loudest_window(log_mel_spectrogram: np.ndarray, *, frames: int) -> int:
    """First frame of the ``frames``-long stretch with the most total power (0 when the song is shorter).

    Parameters
    ----------
    log_mel_spectrogram : np.ndarray, shape (N_MELS, T)
        Natural-log mel power of the (separated) vocals: the loudest stretch is where they sing.
    frames : int

    Examples
    --------
    >>> mel = np.full((48, 10), -13.8); mel[:, 6:9] = -2.0
    >>> loudest_window(mel, frames=3), loudest_window(mel, frames=20)
    (6, 0)
    """
    if log_mel_spectrogram.shape[1] <= frames:
        return 0
    power = np.exp(np.asarray(log_mel_spectrogram, np.float64)).sum(axis=0)  # (T,)
    window_power = np.convolve(power, np.ones(frames), mode="valid")  # (T - frames + 1,)
    return int(np.argmax(window_power))


@lru_cache(maxsize=1)
def _key_shifter() -> PitchShift:
    """The warp of the mel axis that moves a log-mel to another key, built once per process (its band table)."""
    return PitchShift()


def melody_vector(tcae: TCAE, log_mel_spectrogram: np.ndarray, *, n_valid_frames: int) -> np.ndarray:
    """The melody vector of one excerpt (what the index searches); see :func:`melody_vector_and_sequence`."""
    return melody_vector_and_sequence(tcae, log_mel_spectrogram, n_valid_frames=n_valid_frames)[0]


def sequence_autocorrelation(sequence: np.ndarray, *, max_lag: int = AUTOCORRELATION_LAGS) -> np.ndarray:
    """Autocorrelation of every channel of a melody sequence at lags 1 ... ``max_lag`` steps, unit length.

    Parameters
    ----------
    sequence : np.ndarray, shape (steps, channels)
        Channels standardised over the song (:func:`melody_sequence`).
    max_lag : int
        Longest lag, in sequence steps. Lags the song is too short for are 0.

    Returns
    -------
    np.ndarray, shape (channels * max_lag,), float32, lag-major; L2 norm 1, or all zero for a
        sequence of one step.

    Examples
    --------
    >>> alternating = np.array([[1.0], [-1.0]] * 4)
    >>> (sequence_autocorrelation(alternating, max_lag=2) * np.sqrt(2)).round(6)  # anti-correlated at lag 1, alike at lag 2
    array([-1.,  1.])
    """
    sequence = np.asarray(sequence, dtype=np.float32)
    steps, channels = sequence.shape
    lags = np.zeros((max_lag, channels), np.float32)
    for lag in range(1, min(max_lag, steps - 1) + 1):
        lags[lag - 1] = (sequence[:-lag] * sequence[lag:]).mean(axis=0)
    norm = np.linalg.norm(lags)
    return (lags / norm if norm > 0 else lags).ravel()


def _sequence(latent: np.ndarray, *, hop_frames: int) -> np.ndarray:
    """(latent_dim, T) -> (T // hop_frames or 1, latent_dim) float32: channels standardised over the song, then averaged per hop."""
    standardised = (latent - latent.mean(axis=1, keepdims=True)) / (latent.std(axis=1, keepdims=True) + 1e-6)
    steps = max(1, standardised.shape[1] // hop_frames)
    used = standardised[:, : steps * hop_frames] if standardised.shape[1] >= hop_frames else standardised
    pooled = used.reshape(used.shape[0], steps, -1).mean(axis=2)  # (latent_dim, steps)
    return np.ascontiguousarray(pooled.T)  # (steps, latent_dim)


def melody_sequence(
    tcae: TCAE, log_mel_spectrogram: np.ndarray, *, n_valid_frames: int, hop_frames: int = SEQUENCE_HOP_FRAMES
) -> np.ndarray:
    """The melody sequence of one excerpt in every key of KEY_SHIFTS, for :func:`sequence_similarity`.

    Parameters
    ----------
    tcae : TCAE
    log_mel_spectrogram : np.ndarray, shape (N_MELS, T)
    n_valid_frames : int
        Frames before the padding of a short song.
    hop_frames : int
        Latent frames averaged into one step (16: 256 ms).

    Returns
    -------
    np.ndarray, shape (len(KEY_SHIFTS) * steps, latent_dim), float16
        Per key, each latent channel standardised over the song (zero mean, unit variance),
        then averaged over ``hop_frames``; the keys one after the other, as sung first.
    """
    return melody_vector_and_sequence(tcae, log_mel_spectrogram, n_valid_frames=n_valid_frames, hop_frames=hop_frames)[1]


if __name__ == "__main__":
    model = TCAE(TCAEConfig())
    n_params = sum(p.numel() for p in model.parameters())
    print(f"TCAE: {n_params / 1e6:.3f} M parameters, latent {model.config.latent_dim} per frame, "
          f"receptive field {model.receptive_field} frames ({model.receptive_field / FRAME_RATE_HZ:.2f} s)")
