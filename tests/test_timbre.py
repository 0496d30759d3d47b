"""The timbre encoder: augmentations, NT-Xent, the encoder, a tiny training run, and analyze's learned vector."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nextvox.augmentations import (
    BackgroundMix, Equalizer, Gain, Harmony, Noise, PitchShift, RegisterShift, Reverb, TimeStretch, ViewAugment, envelope,
    mel_band_hz, random_crops,
)  # fmt: skip
from nextvox.constants import N_MELS, SAMPLE_RATE_HZ
from nextvox.errors import NextvoxError
from nextvox.features import log_mel
from nextvox.losses import NTXentLoss
from nextvox.models.timbre import (
    DEFAULT_WEIGHTS, TimbreConfig, TimbreEncoder, embed_excerpt, load_weights, save_weights, weights_version,
)  # fmt: skip
from nextvox.training import TrainConfig, library_log_mels, train_timbre
from resume_check import assert_resumes_exactly


def _tone_log_mel(f0_hz: float, *, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    return log_mel((0.3 * np.sin(2 * np.pi * f0_hz * t)).astype(np.float32))


def _peak_band(spectrogram: np.ndarray | torch.Tensor) -> int:
    return int(np.asarray(spectrogram).mean(axis=1).argmax())


# ---- augmentations ------------------------------------------------------------------------------

@pytest.mark.parametrize("semitones", [-4.0, -2.0, 2.0, 3.0, 5.0])
def test_pitch_shift_moves_a_tone_as_the_audio_shift_does(semitones):
    """Warping the mel axis puts a tone's peak within one band of where shifting the audio puts it."""
    for f0 in (300.0, 700.0, 1500.0):
        shifted = PitchShift()(torch.from_numpy(_tone_log_mel(f0))[None], torch.tensor([semitones]))[0]
        expected = _peak_band(_tone_log_mel(f0 * 2 ** (semitones / 12)))
        assert abs(_peak_band(shifted) - expected) <= 1, (f0, semitones)


def test_pitch_shift_by_zero_is_the_identity():
    x = torch.randn(2, N_MELS, 30)
    assert torch.allclose(PitchShift()(x, torch.zeros(2)), x, atol=1e-5)
    assert np.all(np.diff(mel_band_hz()) > 0)


def test_register_shift_moves_the_harmonics_and_keeps_the_formants():
    """Sung higher with the voice kept: a tone moves as PitchShift moves it; a formant bump stays where it was."""
    for f0, semitones in ((300.0, 4.0), (700.0, -4.0)):
        shifted = RegisterShift()(torch.from_numpy(_tone_log_mel(f0))[None], torch.tensor([semitones]))[0]
        assert abs(_peak_band(shifted) - _peak_band(_tone_log_mel(f0 * 2 ** (semitones / 12)))) <= 1
    bands = torch.arange(N_MELS, dtype=torch.float32)
    formant = 4.0 * torch.exp(-0.5 * ((bands - 20) / 3) ** 2)  # a smooth bump: the vocal tract's resonance
    comb = torch.cos(2 * torch.pi * bands / 3)  # fine structure across the bands: the harmonics
    voice = (formant + comb - 8.0)[None, :, None].repeat(1, 1, 10)  # (1, F, T)
    register, pitch = RegisterShift()(voice, torch.tensor([4.0])), PitchShift()(voice, torch.tensor([4.0]))
    moved = (envelope(pitch) - envelope(voice)).norm()
    assert (envelope(register) - envelope(voice)).norm() < 0.3 * moved
    assert (register - voice).norm() > 0.3 * (pitch - voice).norm()  # the harmonics did move
    assert torch.equal(RegisterShift()(voice, torch.zeros(1)), voice)


def test_time_stretch_reads_rate_times_the_frames_and_keeps_the_pitch():
    stretch = TimeStretch()
    rates = torch.tensor([0.8, 1.25])
    assert TimeStretch.source_frames(rates, 100).tolist() == [80, 125]
    ramp = torch.arange(125.0).expand(N_MELS, -1)
    out = stretch([ramp[:, :80], ramp], 100)  # (2, F, 100)
    assert out.shape == (2, N_MELS, 100)
    assert out[1, 0, -1] == pytest.approx(124.0) and out[0, 0, -1] == pytest.approx(79.0)  # the whole source is read
    tone = torch.from_numpy(_tone_log_mel(440.0))
    assert _peak_band(stretch([tone], 40)[0]) == _peak_band(tone)  # pitch (the band) unchanged


def test_augmentations_are_seeded_and_do_what_they_say():
    x = torch.from_numpy(_tone_log_mel(440.0))[None].repeat(4, 1, 1)  # (4, F, T)
    for make in (lambda g: Gain()(x, generator=g), lambda g: Equalizer()(x, generator=g), lambda g: Noise()(x, generator=g),
                 lambda g: PitchShift().semitones(4, generator=g, negative=True)):
        first, again = make(torch.Generator().manual_seed(3)), make(torch.Generator().manual_seed(3))
        assert torch.equal(first, again)
        assert not torch.equal(first, make(torch.Generator().manual_seed(4)))
    loud = Gain(max_db=6.0)(x, generator=torch.Generator().manual_seed(0))
    peak = _peak_band(x[0])
    change_db = (loud - x)[:, peak, :].mean(dim=1) * 10 / np.log(10)  # at the tone's band, far above the log floor
    assert torch.all(change_db.abs() <= 6.0 + 1e-3) and torch.all(change_db.abs() > 0)
    negative = PitchShift().semitones(200, generator=torch.Generator().manual_seed(0), negative=True).abs()
    assert negative.min() >= 3.0 and negative.max() <= 5.0
    rates = TimeStretch().rates(200, generator=torch.Generator().manual_seed(0), negative=True)
    assert torch.all((rates >= 1.4 - 1e-6) | (rates <= 1 / 1.4 + 1e-6))
    mixed = BackgroundMix()(x, torch.flip(x, dims=[2]), generator=torch.Generator().manual_seed(0))
    assert torch.all(mixed >= x - 1e-5)  # power is only added
    crops = random_crops([torch.zeros(N_MELS, 50)], torch.tensor([0, 0]), source_frames=torch.tensor([20, 80]),
                         generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert [c.shape[1] for c in crops] == [20, 50]


def test_reverb_tail_decays_60_db_in_rt60_and_only_adds_after_the_sound():
    """A click's tail: nothing before it, power after it falling 60 dB in RT60, total wet power as drawn."""
    from nextvox.constants import FRAME_RATE_HZ

    tail = Reverb.tail(torch.tensor([1.0]), 200)[0]  # RT60 1 s
    assert float(tail.sum()) == pytest.approx(1.0, abs=1e-5)
    frames_per_rt60 = int(FRAME_RATE_HZ)
    assert float(10 * torch.log10(tail[0] / tail[frames_per_rt60])) == pytest.approx(60.0, abs=1.5)
    click = torch.full((1, N_MELS, 120), -20.0)
    click[:, :, 10] = 0.0
    reverb = Reverb(probability=1.0, rt60_s=(1.0, 1.0), wet_db=(0.0, 0.0))
    wet = reverb(click, generator=torch.Generator().manual_seed(0))
    silence = reverb(torch.full_like(click, -20.0), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(wet[:, :, :10], silence[:, :, :10])  # causal: nothing of the click before it
    assert torch.allclose(wet[:, :, 10], click[:, :, 10], atol=1e-4)  # the dry frame keeps its power
    assert torch.all(wet[:, :, 11:] > click[:, :, 11:]) and torch.all(torch.diff(wet[0, 0, 11:]) < 0)  # a decaying tail
    added = (torch.exp(wet) - torch.exp(click)).sum(dim=2) / torch.exp(click[:, :, 10])
    assert torch.allclose(added, torch.ones_like(added), atol=0.02)  # 0 dB wet: the tail carries the click's power again
    off = Reverb(probability=0.0)(click, generator=torch.Generator().manual_seed(0))
    assert torch.equal(off, torch.log(torch.exp(click)))


def test_harmony_adds_a_shifted_copy_under_the_lead():
    tone = torch.from_numpy(_tone_log_mel(440.0))[None]  # (1, F, T)
    harmony = Harmony(probability=1.0, intervals=(7.0,), level_db=(6.0, 6.0))(tone, generator=torch.Generator().manual_seed(0))
    assert torch.all(harmony >= tone - 1e-5)  # power only added
    peak, fifth = _peak_band(tone), _peak_band(_tone_log_mel(440.0 * 2 ** (7 / 12)))
    assert fifth > peak + 1
    gain_db = (harmony - tone).mean(dim=2)[0] * 10 / np.log(10)  # (F,)
    assert float(gain_db[fifth]) > 3.0 and float(gain_db[peak]) < 1.5  # the copy sits a fifth up, 6 dB under
    x = torch.randn(3, N_MELS, 40)
    for production in (False, True):
        augment = ViewAugment(production=production)
        first = augment(x, x.flip(2), generator=torch.Generator().manual_seed(1))
        assert torch.equal(first, augment(x, x.flip(2), generator=torch.Generator().manual_seed(1)))  # seeded


# ---- NT-Xent ------------------------------------------------------------------------------------

def test_nt_xent_by_hand():
    loss = NTXentLoss(temperature=1.0)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # Anchor 0: positive cos 1, negatives (the other item's two views) cos 0: -log(e / (e + 2)).
    assert float(loss(a, a)) == pytest.approx(-np.log(np.e / (np.e + 2)), rel=1e-6)
    # One pair of views per item, nothing else: the loss is 0.
    assert float(loss(a[:1], a[:1])) == pytest.approx(0.0, abs=1e-7)


def test_nt_xent_identical_views_beat_random_and_close_negatives_hurt():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(16, 32, generator=g), dim=1)
    loss = NTXentLoss(temperature=0.1)
    identical = float(loss(z, z))
    random_views = float(loss(z, F.normalize(torch.randn(16, 32, generator=g), dim=1)))
    assert identical < random_views
    far = F.normalize(-z, dim=1)
    close = F.normalize(z + 0.05 * torch.randn(16, 32, generator=g), dim=1)
    assert float(loss(z, z, [far])) < float(loss(z, z, [close]))  # a negative-role copy close to its anchor raises the loss


# ---- encoder ------------------------------------------------------------------------------------

def test_encoder_output_is_unit_length_and_any_length_works():
    encoder = TimbreEncoder(TimbreConfig()).eval()
    with torch.inference_mode():
        for frames in (16, 250, 401):
            z = encoder(torch.randn(3, N_MELS, frames))
            assert z.shape == (3, encoder.embedding_dim)
            assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)


def test_excerpt_embedding_looks_only_at_valid_frames():
    encoder = TimbreEncoder(TimbreConfig()).eval()
    rng = np.random.default_rng(0)
    for frames in (40, 600):
        valid = rng.normal(-6, 2, (N_MELS, frames)).astype(np.float32)
        padded = np.concatenate([valid, rng.normal(3, 5, (N_MELS, 300)).astype(np.float32)], axis=1)
        a = embed_excerpt(encoder, valid, bf16=False)
        b = embed_excerpt(encoder, padded, n_valid_frames=frames, bf16=False)
        assert np.array_equal(a, b) and np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
        assert float(embed_excerpt(encoder, valid, bf16=True) @ a) > 0.99  # bf16 inference agrees
    with pytest.raises(NextvoxError, match="too short"):
        embed_excerpt(encoder, np.zeros((N_MELS, 10), np.float32))


def test_weights_round_trip_and_version(tmp_path):
    encoder = TimbreEncoder(TimbreConfig(channels=(8, 8, 8), stem_channels=8, embedding_dim=16)).eval()
    save_weights(encoder, tmp_path / "w.pt")
    loaded = load_weights(tmp_path / "w.pt")
    x = torch.randn(2, N_MELS, 64)
    with torch.inference_mode():
        assert torch.equal(loaded(x), encoder(x))
    assert weights_version(tmp_path / "w.pt").startswith("timbre-cnn-")
    (tmp_path / "bad.pt").write_bytes(b"not weights")
    with pytest.raises(NextvoxError, match="not timbre-encoder weights"):
        load_weights(tmp_path / "bad.pt")
    with pytest.raises(NextvoxError, match="not found"):
        load_weights(tmp_path / "absent.pt")


def test_shipped_weights_are_small_and_load():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 5_000_000
    assert load_weights(DEFAULT_WEIGHTS).embedding_dim >= 128


# ---- training -----------------------------------------------------------------------------------

TINY = dict(batch_size=4, crop_frames=64, checkpoint_every=2, warmup_steps=2, bf16=False,
            model=TimbreConfig(stem_channels=8, channels=(8, 16, 16), embedding_dim=16, projection_dim=16, crop_frames=64))  # fmt: skip


@pytest.fixture(scope="module")
def fixture_spectrograms(fixture_library, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("train-data")
    spectrograms = library_log_mels(fixture_library, data_dir=data_dir, jobs=2)
    return [x for _, x in spectrograms], data_dir


def test_library_log_mels_reads_every_song_once(fixture_library, fixture_spectrograms):
    spectrograms, data_dir = fixture_spectrograms
    assert len(spectrograms) == 8 and all(x.shape[0] == N_MELS and x.dtype == np.float16 for x in spectrograms)
    again = library_log_mels(fixture_library, data_dir=data_dir, jobs=1)  # from the cache: no pool is started
    assert all(np.array_equal(a, b) for a, (_, b) in zip(spectrograms, again))


@pytest.mark.parametrize("roles", [("negative", "negative"), ("positive", "off")])
def test_training_resumes_exactly_after_an_interruption(fixture_spectrograms, tmp_path, roles):
    spectrograms, _ = fixture_spectrograms
    config = dict(TINY, pitch_shift=roles[0], time_stretch=roles[1], steps=4)
    checkpoint = assert_resumes_exactly(train_timbre, TrainConfig(**config), TrainConfig(), spectrograms, tmp_path, module="encoder")
    assert checkpoint["step"] == 4 and set(checkpoint) >= {"model_config", "train_config", "optimizer", "rng"}
    for name in ("timbre.pt", "train.json", "loss.png"):
        assert (tmp_path / "cut" / name).is_file()
    assert load_weights(tmp_path / "cut" / "timbre.pt").embedding_dim == 16


def test_training_refuses_what_it_cannot_use(fixture_spectrograms, tmp_path):
    spectrograms, _ = fixture_spectrograms
    with pytest.raises(NextvoxError, match="pitch-shift role"):
        train_timbre(TrainConfig(**dict(TINY, pitch_shift="sideways")), spectrograms, out_dir=tmp_path)
    with pytest.raises(NextvoxError, match="register shift"):
        train_timbre(TrainConfig(**dict(TINY, register_semitones=-1.0)), spectrograms, out_dir=tmp_path)
    with pytest.raises(NextvoxError, match="nothing to resume"):
        train_timbre(TrainConfig(**TINY), spectrograms, out_dir=tmp_path / "empty", resume=True)
    with pytest.raises(NextvoxError, match="long enough"):
        train_timbre(TrainConfig(**TINY), [x[:, :20] for x in spectrograms], out_dir=tmp_path)


# ---- analyze stores the learned vector ----------------------------------------------------------

def test_analyze_stores_the_learned_timbre_vector(fixture_library, tmp_path):
    from nextvox.analysis import AnalysisSettings, analyze_library
    from nextvox.catalogue import Catalogue

    report = analyze_library(fixture_library, data_dir=tmp_path, jobs=2)
    assert report.analyzed == 8
    with Catalogue(tmp_path, library=fixture_library) as catalogue:
        hashes, vectors, versions = catalogue.vectors("timbre")
    assert set(versions) == {weights_version(DEFAULT_WEIGHTS)}
    assert weights_version(DEFAULT_WEIGHTS) in AnalysisSettings().version
    assert vectors.shape == (8, load_weights(DEFAULT_WEIGHTS).embedding_dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    with open(fixture_library / "labels.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 8


def test_cli_train_timbre_fine_tunes_the_shipped_weights(fixture_library, fixture_spectrograms, tmp_path):
    import json as json_module
    import subprocess
    import sys

    _, data_dir = fixture_spectrograms  # the spectrograms are cached there already
    command = [sys.executable, "-m", "nextvox", "train", "timbre", str(fixture_library), "--data-dir", str(data_dir),
               "--time-stretch", "off", "--register-shift", "2", "--steps", "2", "--batch-size", "4", "--out", str(tmp_path / "model"),
               "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    summary = json_module.loads(done.stdout)
    assert summary["steps"] == 2 and Path(summary["weights"]).is_file()
    trained = json_module.loads((tmp_path / "model" / "train.json").read_text())
    assert trained["train_config"]["init_weights"] == str(DEFAULT_WEIGHTS) and trained["train_config"]["register_semitones"] == 2.0
    stretching = [c for c in command if c not in ("--time-stretch", "off", "--json")]  # stretch reads over 4 s per crop
    short = subprocess.run(stretching, capture_output=True, text=True, check=False)
    assert short.returncode == 1 and short.stderr.count("\n") == 1 and "long enough" in short.stderr  # 4 s songs, stretch on
