"""The TCAE melody model: causality, receptive field, pooling, weights, training and analyze's melody vector."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nextvox.constants import FRAME_RATE_HZ, N_MELS
from nextvox.errors import NextvoxError
from nextvox.models.tcae import (
    AUTOCORRELATION_LAGS, DEFAULT_WEIGHTS, KEY_SHIFTS, SEQUENCE_HOP_FRAMES, SEQUENCE_MAX_STEPS, TCAE, TCAEConfig,
    causal_running_mean, load_weights, local_alignment, loudest_window, melody_sequence, melody_vector, melody_vector_and_sequence,
    save_weights, sequence_autocorrelation, sequence_keys, sequence_similarity, weights_version,
)  # fmt: skip
from nextvox.training import TCAETrainConfig, library_log_mels, train_tcae
from resume_check import assert_resumes_exactly

SMALL = TCAEConfig(channels=8, skip_channels=8, latent_dim=4, dilations=(1, 2, 4), projection_dim=8)


@pytest.mark.parametrize("centre_s", [0.0, 2.0])
def test_encoder_is_causal(centre_s):
    """Changing the input after frame t leaves the latent up to t unchanged (and does change what follows)."""
    torch.manual_seed(0)
    tcae = TCAE(TCAEConfig(centre_s=centre_s)).eval()
    x = torch.randn(1, N_MELS, 600) - 7.0
    t = 300
    changed = x.clone()
    changed[:, :, t + 1 :] = torch.randn(1, N_MELS, 600 - t - 1) - 3.0
    with torch.no_grad():
        before, after = tcae.encode(x), tcae.encode(changed)
        reconstruction_before, _, _ = tcae(x)
        reconstruction_after, _, _ = tcae(changed)
    assert torch.allclose(before[:, :, : t + 1], after[:, :, : t + 1], rtol=0, atol=1e-6)
    assert torch.allclose(reconstruction_before[:, :, : t + 1], reconstruction_after[:, :, : t + 1], rtol=0, atol=1e-6)  # the decoder is causal too
    assert not torch.allclose(before[:, :, t + 1 :], after[:, :, t + 1 :])


def test_receptive_field_is_what_the_model_says():
    """An impulse at frame s reaches the latent exactly from s to s + receptive_field - 1."""
    torch.manual_seed(0)
    tcae = TCAE(TCAEConfig()).eval()
    assert tcae.receptive_field == 1 + 2 * (1 + 2 + 4 + 8 + 16 + 32 + 64) == 255
    assert tcae.receptive_field / FRAME_RATE_HZ == pytest.approx(4.08)
    x = torch.full((1, N_MELS, 800), -7.0)
    bumped = x.clone()
    bumped[:, :, 100] += 3.0
    with torch.no_grad():
        difference = (tcae.encode(bumped) - tcae.encode(x)).abs().amax(dim=1)[0]  # (T,)
    reached = torch.nonzero(difference > 0).flatten()
    assert int(reached.min()) == 100 and int(reached.max()) == 100 + tcae.receptive_field - 1


def test_causal_running_mean_removes_a_constant_envelope():
    x = torch.randn(2, N_MELS, 200)
    envelope = torch.linspace(-5, 5, N_MELS)[None, :, None]
    centred = x - causal_running_mean(x, window_frames=50)
    assert torch.allclose(centred, (x + envelope) - causal_running_mean(x + envelope, window_frames=50), atol=1e-4)
    assert torch.allclose(causal_running_mean(x, window_frames=1), x)


def test_melody_vector_is_unit_length_and_ignores_the_padding():
    torch.manual_seed(0)
    tcae = TCAE(SMALL).eval()
    song = np.random.default_rng(0).normal(-7, 2, (N_MELS, 400)).astype(np.float32)
    padded = np.concatenate([song, np.full((N_MELS, 300), -13.8, np.float32)], axis=1)
    vector = melody_vector(tcae, padded, n_valid_frames=400)
    assert vector.shape == (SMALL.melody_dim,) and vector.dtype == np.float32
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert np.allclose(vector, melody_vector(tcae, song, n_valid_frames=400), atol=1e-6)
    assert not np.allclose(vector, melody_vector(tcae, padded, n_valid_frames=700), atol=1e-3)
    with pytest.raises(NextvoxError, match="at least one valid frame"):
        melody_vector(tcae, song, n_valid_frames=0)


def test_melody_vector_hears_how_a_phrase_recurs_wherever_the_song_starts():
    rng = np.random.default_rng(0)
    phrase = rng.normal(size=(12, 4))  # a 3 s phrase of 12 steps, sung over and over
    song = np.tile(phrase, (10, 1)) + 0.1 * rng.normal(size=(120, 4))
    vector = sequence_autocorrelation(song)
    assert vector.shape == (4 * AUTOCORRELATION_LAGS,) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)
    by_lag = vector.reshape(AUTOCORRELATION_LAGS, 4).sum(axis=1)
    assert set(np.argsort(-by_lag)[:2] + 1) == {12, 24}  # the phrase's period and its double
    later = sequence_autocorrelation(song[5:])  # the same song heard from 1.3 s in
    other = sequence_autocorrelation(np.tile(rng.normal(size=(7, 4)), (17, 1)))  # another phrase, another period
    assert later @ vector > 0.99 and other @ vector < 0.5
    # Lags longer than the song are 0; a one-step song has no autocorrelation at all.
    assert not sequence_autocorrelation(song[:10]).reshape(AUTOCORRELATION_LAGS, 4)[9:].any()
    assert not sequence_autocorrelation(song[:1]).any()


def test_melody_sequence_is_standardised_and_kept_in_every_key():
    torch.manual_seed(0)
    tcae = TCAE(SMALL).eval()
    song = np.random.default_rng(0).normal(-7, 2, (N_MELS, 800)).astype(np.float32)
    sequence = melody_sequence(tcae, song, n_valid_frames=800)
    steps = 800 // SEQUENCE_HOP_FRAMES
    assert sequence.shape == (len(KEY_SHIFTS) * steps, SMALL.latent_dim) and sequence.dtype == np.float16
    vector, same = melody_vector_and_sequence(tcae, song, n_valid_frames=800)
    assert np.array_equal(same, sequence) and np.allclose(vector, melody_vector(tcae, song, n_valid_frames=800))
    # Averaging over hops keeps the mean of the standardised channels at about 0, in every key.
    assert np.abs(sequence.astype(np.float32).reshape(len(KEY_SHIFTS), steps, -1).mean(axis=1)).max() < 0.05
    assert melody_sequence(tcae, song[:, :5], n_valid_frames=5).shape == (len(KEY_SHIFTS), SMALL.latent_dim)  # shorter than a hop
    # A long song keeps SEQUENCE_MAX_STEPS steps, where the voice is loudest.
    long_song = np.full((N_MELS, (SEQUENCE_MAX_STEPS + 100) * SEQUENCE_HOP_FRAMES), -13.0, np.float32)
    long_song[:, 100 * SEQUENCE_HOP_FRAMES :] = song[:, :1].repeat(SEQUENCE_MAX_STEPS * SEQUENCE_HOP_FRAMES, axis=1)
    assert loudest_window(long_song, frames=SEQUENCE_MAX_STEPS * SEQUENCE_HOP_FRAMES) == 100 * SEQUENCE_HOP_FRAMES
    assert melody_sequence(tcae, long_song, n_valid_frames=long_song.shape[1]).shape[0] == len(KEY_SHIFTS) * SEQUENCE_MAX_STEPS


def test_sequence_match_finds_the_song_in_another_key(spectrograms):
    """Sung 4 semitones higher (or 6 lower), a song matches itself fully: one of its keys is that rendition as sung."""
    from nextvox.augmentations import PitchShift

    tcae = load_weights(DEFAULT_WEIGHTS)
    songs = [x.astype(np.float32) for x in spectrograms[0][:3]]

    def sequence(mel: np.ndarray) -> np.ndarray:
        return melody_sequence(tcae, mel, n_valid_frames=mel.shape[1])

    a = sequence(songs[0])
    for semitones in (4.0, -6.0):
        b = sequence(PitchShift()(torch.from_numpy(songs[0])[None], torch.tensor([semitones]))[0].numpy())
        assert sequence_similarity(a, b) == pytest.approx(1.0, abs=0.01)
        assert sequence_similarity(b, a) == pytest.approx(sequence_similarity(a, b), abs=1e-6)
        assert local_alignment(sequence_keys(a)[0], sequence_keys(b)[0]) < sequence_similarity(a, b) - 0.01  # as sung only, it matches less
    assert sequence_similarity(a, a) == pytest.approx(1.0, abs=1e-3)
    assert all(sequence_similarity(a, sequence(other)) < 0.95 for other in songs[1:])


def test_weights_round_trip_and_version(tmp_path):
    torch.manual_seed(1)
    tcae = TCAE(SMALL)
    save_weights(tcae, tmp_path / "tcae.pt")
    loaded = load_weights(tmp_path / "tcae.pt")
    assert loaded.config == SMALL and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(tcae.state_dict().values(), loaded.state_dict().values()))
    assert weights_version(tmp_path / "tcae.pt").startswith("tcae-") and len(weights_version(tmp_path / "tcae.pt")) == 15
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(NextvoxError, match="not TCAE weights"):
        load_weights(tmp_path / "bad.pt")
    with pytest.raises(NextvoxError, match="not found"):
        load_weights(tmp_path / "absent.pt")


def test_shipped_weights_are_small_and_load():
    assert DEFAULT_WEIGHTS.is_file() and DEFAULT_WEIGHTS.stat().st_size < 3_000_000
    shipped = load_weights(DEFAULT_WEIGHTS)
    assert shipped.config.melody_dim >= 16 and shipped.receptive_field >= 2 * FRAME_RATE_HZ


# ---- training -----------------------------------------------------------------------------------

TINY = dict(batch_size=4, crop_frames=64, checkpoint_every=2, warmup_steps=2, bf16=False, model=SMALL)


@pytest.fixture(scope="module")
def spectrograms(fixture_library, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tcae-data")
    return [x for _, x in library_log_mels(fixture_library, data_dir=data_dir, jobs=2)], data_dir


@pytest.mark.parametrize("contrastive_weight", [0.0, 1.0])
def test_training_resumes_exactly_after_an_interruption(spectrograms, tmp_path, contrastive_weight):
    excerpts, _ = spectrograms
    config = dict(TINY, contrastive_weight=contrastive_weight, steps=4)
    assert_resumes_exactly(train_tcae, TCAETrainConfig(**config), TCAETrainConfig(), excerpts, tmp_path, module="tcae")
    for name in ("tcae.pt", "train.json", "loss.png"):
        assert (tmp_path / "cut" / name).is_file()
    assert load_weights(tmp_path / "cut" / "tcae.pt").config == SMALL


def test_reconstruction_loss_falls(spectrograms, tmp_path):
    """The plain TCAE learns: its reconstruction error after 60 steps is well under the first steps'."""
    excerpts, _ = spectrograms
    model = TCAEConfig(channels=16, skip_channels=16, latent_dim=8, dilations=(1, 2, 4, 8))
    config = TCAETrainConfig(**dict(TINY, steps=60, checkpoint_every=60, lr=3e-3, model=model))
    result = train_tcae(config, excerpts, out_dir=tmp_path)
    assert np.mean(result.losses[-5:]) < 0.6 * np.mean(result.losses[:3])


def test_training_refuses_what_it_cannot_use(spectrograms, tmp_path):
    excerpts, _ = spectrograms
    with pytest.raises(NextvoxError, match="contrastive weight"):
        train_tcae(TCAETrainConfig(**dict(TINY, contrastive_weight=-1.0)), excerpts, out_dir=tmp_path)
    with pytest.raises(NextvoxError, match="nothing to resume"):
        train_tcae(TCAETrainConfig(**TINY), excerpts, out_dir=tmp_path / "empty", resume=True)
    with pytest.raises(NextvoxError, match="long enough"):
        train_tcae(TCAETrainConfig(**TINY), [x[:, :20] for x in excerpts], out_dir=tmp_path)


# ---- analyze and the CLI ------------------------------------------------------------------------

def test_analyze_stores_the_melody_vector(fixture_library, tmp_path):
    from nextvox.analysis import AnalysisSettings, analyze_library
    from nextvox.catalogue import Catalogue

    assert analyze_library(fixture_library, data_dir=tmp_path, jobs=2).analyzed == 8
    with Catalogue(tmp_path, library=fixture_library) as catalogue:
        _, vectors, versions = catalogue.vectors("melody")
    assert set(versions) == {weights_version(DEFAULT_WEIGHTS)}
    assert weights_version(DEFAULT_WEIGHTS) in AnalysisSettings().version
    assert vectors.shape == (8, load_weights(DEFAULT_WEIGHTS).config.melody_dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    with Catalogue(tmp_path, library=fixture_library) as catalogue:
        sequences = catalogue.sequences("melody", [t.content_hash for t in catalogue.tracks()])
    assert len(sequences) == 8
    assert all(v == weights_version(DEFAULT_WEIGHTS) and x.shape[1] == load_weights(DEFAULT_WEIGHTS).config.latent_dim
               for v, x in sequences.values())  # fmt: skip


def test_melody_weight_ranks_by_the_sequence_match(fixture_library, tmp_path):
    """With a melody weight, each result's melody similarity is its melody sequence's match with the query's."""
    from nextvox.analysis import analyze_library
    from nextvox.catalogue import Catalogue
    from nextvox.recommend import Diversity, Recommender

    analyze_library(fixture_library, data_dir=tmp_path, jobs=2)
    with Catalogue(tmp_path, library=fixture_library) as catalogue:
        recommender = Recommender(catalogue)
        query = recommender.track_query(catalogue.tracks()[0].path)
        results = recommender.recommend([query], k=5, w_timbre=1.0, w_melody=0.5, diversity=Diversity(per_artist=None))
        by_path = {t.path: t.content_hash for t in catalogue.tracks()}
        stored = catalogue.sequences("melody", by_path.values())
    assert len(results) == 5
    for r in results:
        digest = by_path[r.path]
        expected = sequence_similarity(query.sequences["melody"], stored[digest][1])
        assert r.melody_similarity == pytest.approx(expected, abs=1e-6)
        assert r.score == pytest.approx(r.timbre_similarity + 0.5 * r.melody_similarity, abs=1e-5)
        assert "matched note by note" in r.reason
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)


def test_cli_train_tcae_fine_tunes_and_evaluate_measures_it(fixture_library, spectrograms, tmp_path):
    _, data_dir = spectrograms  # the spectrograms are cached there already
    command = [sys.executable, "-m", "nextvox", "train", "tcae", str(fixture_library), "--data-dir", str(data_dir),
               "--steps", "2", "--batch-size", "4", "--crop-frames", "128", "--out", str(tmp_path / "model"), "--json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["steps"] == 2 and Path(summary["weights"]).name == "tcae.pt"
    trained = json.loads((tmp_path / "model" / "train.json").read_text())
    assert trained["train_config"]["init_weights"] == str(DEFAULT_WEIGHTS)
    assert trained["receptive_field_frames"] == load_weights(DEFAULT_WEIGHTS).receptive_field

    evaluated = subprocess.run(
        [sys.executable, "-m", "nextvox", "evaluate", str(fixture_library), "--labels", str(fixture_library / "labels.csv"),
         "--data-dir", str(data_dir), "--model", str(tmp_path / "model"), "--json", str(tmp_path / "eval.json")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads((tmp_path / "eval.json").read_text())
    melody = result["embeddings"]["melody"]
    assert melody["model_version"] == weights_version(tmp_path / "model" / "tcae.pt")
    assert "weights under evaluation" in melody["note"] and melody["singer_map"] is not None
    assert result["settings"]["tcae_weights"] == str(tmp_path / "model" / "tcae.pt")
