"""Vocal separation: the interface, each method's effect on a synthetic mixture, training, errors."""

import json

import numpy as np
import pytest
import torch

from nextvox.analysis import AnalysisSettings
from nextvox.cli import main
from nextvox.errors import MissingDependencyError, NextvoxError
from nextvox.models.separator import SeparatorConfig, istft, load_weights, stft
from nextvox.models.weights_file import load_tensors
from nextvox.separation import SEPARATORS, SHIPPED_MASK_WEIGHTS, separate, separator_version, si_sdr
from nextvox.training import SeparatorTrainConfig, load_stems, train_separator

SR = 16_000


def _voice_and_band(seconds: float = 6.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A sung line (harmonics with vibrato, one note a second, syllable envelopes) and a band
    (a held low chord, a bass note and noise-burst drums on every beat), float32 at 16 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    notes_hz = 220.0 * 2 ** (rng.choice([0, 2, 4, 5, 7, 9], size=int(seconds) + 1) / 12)
    f0 = notes_hz[t.astype(int)] * 2 ** (0.4 / 12 * np.sin(2 * np.pi * 5.5 * t))  # ~40 cents of vibrato at 5.5 Hz
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 16))
    voice *= np.clip(np.sin(np.pi * (t % 1.0) / 0.9), 0, 1) * (t % 1.0 < 0.9)  # a syllable per note
    chord = sum(np.sin(2 * np.pi * f * t) * 0.5 / (1 + i) for i, f in enumerate((130.8, 164.8, 196.0, 261.6, 65.4)))
    drums = np.zeros_like(t)
    for beat in np.arange(0, seconds, 0.5):
        start = int(beat * SR)
        burst = rng.standard_normal(int(0.08 * SR)) * np.exp(-np.arange(int(0.08 * SR)) / (0.015 * SR))
        drums[start : start + len(burst)] += burst[: len(drums) - start]
    band = chord + 0.8 * drums
    voice = voice / np.sqrt(np.mean(voice**2))
    band = band / np.sqrt(np.mean(band**2))
    return (0.1 * voice).astype(np.float32), (0.1 * band).astype(np.float32)


@pytest.mark.parametrize("method", ["none", "classical", "mask"])
def test_each_method_keeps_shape_and_dtype(method):
    mix = np.random.default_rng(1).standard_normal(SR + 123).astype(np.float32) * 0.1
    out = separate(mix, method=method)
    assert out.shape == mix.shape and out.dtype == np.float32 and np.isfinite(out).all()


def test_none_is_identity():
    mix = np.random.default_rng(2).standard_normal(SR).astype(np.float32)
    assert np.array_equal(separate(mix, method="none"), mix)


@pytest.mark.parametrize("method", ["classical", "mask"])
def test_methods_improve_si_sdr_of_a_synthetic_mixture(method):
    voice, band = _voice_and_band()
    mix = voice + band
    before = si_sdr(mix, voice)
    after = si_sdr(separate(mix, method=method), voice)
    assert after > before + 0.5, (before, after)  # dB


def test_unknown_separator_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(NextvoxError, match="unknown separator 'spleeter'; choose one of: none, classical, mask, demucs"):
        separate(np.zeros(10, np.float32), method="spleeter")
    assert main(["analyze", str(tmp_path), "--separator", "spleeter", "--data-dir", str(tmp_path / "d")]) == 2
    assert "'spleeter' is not one of" in capsys.readouterr().err


def test_demucs_without_weights_says_how_to_get_them(tmp_path, capsys):
    with pytest.raises(MissingDependencyError, match="--separator-weights"):
        separate(np.zeros(SR, np.float32), method="demucs")
    code = main(["analyze", str(tmp_path), "--separator", "demucs", "--separator-weights", str(tmp_path / "htdemucs.th"),
                 "--data-dir", str(tmp_path / "d")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "demucs" in err and "--separator-weights" in err


class _OpensAFile:
    """Unpickling this runs code: it calls ``open(path, "w")``, which leaves a file behind."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_carrying_a_pickled_object_is_refused_not_run(tmp_path):
    import torch

    marker = tmp_path / "code-ran"
    path = tmp_path / "htdemucs.th"
    torch.save({"klass": _OpensAFile(marker), "args": (), "kwargs": {}, "state": {"w": torch.zeros(2)}}, path)
    with pytest.raises(NextvoxError, match="never unpickled.*it names io.open; give a checkpoint") as refused:
        load_tensors(path, what="a Demucs checkpoint", advice="give a checkpoint (*.th) as Demucs's own downloader stores it")
    assert str(path) in str(refused.value) and not marker.exists()
    torch.load(path, weights_only=False)  # what the loader did before: the file really runs its code
    assert marker.exists()


def test_a_checkpoint_may_name_exactly_the_allowed_classes(tmp_path):
    from fractions import Fraction

    import torch

    path = tmp_path / "model.th"
    torch.save({"klass": torch.nn.Linear, "kwargs": {"segment": Fraction(39, 5)}, "state": {"w": torch.ones(2)}}, path)
    with pytest.raises(NextvoxError, match="never unpickled"):
        load_tensors(path, what="a checkpoint", advice="-")
    stored = load_tensors(path, allowed=(torch.nn.Linear, Fraction), what="a checkpoint", advice="-")
    assert stored["klass"] is torch.nn.Linear and stored["kwargs"]["segment"] == Fraction(39, 5)
    assert torch.equal(stored["state"]["w"], torch.ones(2))


def test_training_writes_and_resumes_a_checkpoint(fixture_library, tmp_path):
    stems = load_stems(fixture_library)
    config = SeparatorTrainConfig(steps=2, batch_size=2, crop_s=1.0, checkpoint_every=1, warmup_steps=1,
                                  model=SeparatorConfig(channels=16, dilations=(1, 2)))  # fmt: skip
    first = train_separator(config, stems, out_dir=tmp_path / "a")
    assert first.steps == 2 and {"checkpoint.pt", "separator.pt", "train.json", "loss.png"} <= {p.name for p in (tmp_path / "a").iterdir()}
    resumed = train_separator(SeparatorTrainConfig(steps=3), stems, out_dir=tmp_path / "a", resume=True)
    straight = train_separator(SeparatorTrainConfig(**{**config.__dict__, "steps": 3}), stems, out_dir=tmp_path / "b")
    assert resumed.steps == 3
    assert resumed.final_loss == pytest.approx(straight.final_loss, rel=1e-4)  # the same crops, the same updates
    assert load_weights(tmp_path / "a" / "separator.pt").config.channels == 16
    # Weights of another training are another separator version, so the analysis is redone.
    weights = tmp_path / "a" / "separator.pt"
    assert separator_version("mask", weights=weights) != separator_version("mask")
    assert AnalysisSettings(separator="mask", separator_weights=weights).version != AnalysisSettings(separator="mask").version


def test_fine_tuning_starts_from_the_shipped_weights_and_takes_more_libraries(fixture_library, tmp_path, capsys):
    out = tmp_path / "tuned"
    assert main(["train", "separator", str(fixture_library), "--also", str(fixture_library), "--fine-tune", "--steps", "1",
                 "--batch-size", "2", "--lr", "1e-9", "--out", str(out), "--json"]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["songs"] == 2 * len(load_stems(fixture_library))
    shipped, tuned = load_weights(SHIPPED_MASK_WEIGHTS).state_dict(), load_weights(out / "separator.pt").state_dict()
    assert all(torch.allclose(tuned[name], shipped[name], atol=1e-6) for name in shipped)  # one step at lr 1e-9


def test_separator_names_its_version_in_the_analysis_version():
    versions = {method: AnalysisSettings(separator=method).version for method in ("none", "classical", "mask")}
    assert "/sep-none/" in versions["none"] and "/sep-classical-" in versions["classical"]
    assert "/sep-mask-" in versions["mask"] and len(set(versions.values())) == 3
    assert SHIPPED_MASK_WEIGHTS.stat().st_size < 4_000_000  # small enough to ship
    assert set(SEPARATORS) == {"none", "classical", "mask", "demucs"}


@pytest.mark.parametrize("n_samples", [1000, 12345, 16000 * 30])
def test_the_separators_istft_is_torchs_bit_for_bit(n_samples):
    import torch

    config = SeparatorConfig()
    audio = 0.1 * torch.randn(2, n_samples, generator=torch.Generator().manual_seed(0))
    spectrum = stft(audio, config) * torch.rand(2, config.n_bins, n_samples // config.hop_length + 1)  # a masked mix
    window = torch.hann_window(config.n_fft)
    expected = torch.istft(spectrum, config.n_fft, config.hop_length, window=window, center=True, length=n_samples)
    assert torch.equal(istft(spectrum, config, length=n_samples), expected)
    assert torch.allclose(istft(stft(audio, config), config, length=n_samples), audio, atol=1e-5)  # and it inverts stft
