"""Voice paths over a real catalogue with known vectors: the library function, the command and ``POST /api/path``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from nextvox.errors import NextvoxError
from nextvox.recommend import Filters, Recommender
from nextvox.voicepath import arc_progress, step_similarities, voice_path

from service_factories import DIM, Song, make_catalogue

# Artists whose voices lie in this order along an arc: each is near the ones beside it.
ARTISTS = {"ann": "folk", "bob": "rock", "cat": "folk", "dan": "jazz", "eve": "rock", "fay": "folk", "gus": "jazz",
           "hal": "rock", "ida": "folk", "jon": "jazz", "kim": "rock", "lou": "folk"}


def arc_songs(songs_per_artist: int = 3, seed: int = 3) -> list[Song]:
    """Songs of each artist scattered around the artist's point on a quarter circle in DIM dimensions."""
    rng = np.random.default_rng(seed)
    u, w = np.linalg.qr(rng.standard_normal((DIM, 2)))[0].T  # two orthonormal directions
    songs = []
    for a, (artist, genre) in enumerate(ARTISTS.items()):
        angle = np.pi / 2 * a / (len(ARTISTS) - 1)
        centre = np.cos(angle) * u + np.sin(angle) * w
        for j in range(songs_per_artist):
            timbre = (centre + 0.08 * rng.standard_normal(DIM)).astype(np.float32)
            songs.append(Song(f"{artist}/song{j}.wav", artist, genre, timbre, rng.standard_normal(8).astype(np.float32)))
    return songs


@pytest.fixture(scope="module")
def recommender(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    return Recommender(make_catalogue(tmp_path_factory.mktemp("paths"), arc_songs()))


def vectors_of(recommender: Recommender, paths: list[str]) -> np.ndarray:
    return np.stack([recommender.timbre_vector(recommender.tracks_by_path[p].content_hash) for p in paths])


def test_a_path_runs_from_start_to_end_in_small_steps(recommender: Recommender) -> None:
    start, end = recommender.track_query("ann/song0.wav"), recommender.track_query("lou/song0.wav")
    songs = voice_path(recommender, start, end, n=10)
    paths = [s.path for s in songs]
    assert len(songs) == 10 and paths[0] == "ann/song0.wav" and paths[-1] == "lou/song0.wav"
    assert len(set(paths)) == len(paths)
    artists = [s.artist for s in songs]
    assert all(a != b for a, b in zip(artists[1:-1], artists[2:-1])), artists  # no artist back to back between the ends
    assert artists[-2] != "lou"
    vectors = vectors_of(recommender, paths)
    steps = step_similarities(vectors)
    np.testing.assert_allclose([s.timbre_similarity for s in songs[1:]], steps, atol=1e-5)
    # Smoother than random songs between the same ends (mean over 50 draws).
    rng = np.random.default_rng(0)
    every = vectors_of(recommender, list(recommender.tracks_by_path))
    randomly = [step_similarities(np.vstack([vectors[0], every[rng.choice(len(every), 8, replace=False)], vectors[-1]])).mean()
                for _ in range(50)]
    assert steps.mean() > np.mean(randomly) + 0.1 and steps.min() > 0.8, steps
    # Moving steadily toward the end: never a step back along the arc, and nearer TO's voice by halves.
    progress = arc_progress(vectors, vectors[0], vectors[-1])
    assert (np.diff(progress) >= -1e-6).all() and progress[0] == pytest.approx(0, abs=1e-6), progress
    to_end = vectors @ vectors[-1]
    assert to_end[5:9].mean() > to_end[1:5].mean() + 0.3, to_end
    assert songs[0].reason.startswith("step 1 of 10") and "voice path" in songs[3].tags


def test_filters_and_the_endpoints_copies(recommender: Recommender) -> None:
    start, end = recommender.track_query("ann/song0.wav"), recommender.track_query("bob/song0.wav")
    songs = voice_path(recommender, start, end, n=8, filters=Filters(exclude_query_artists=True))
    assert {s.artist for s in songs[1:-1]}.isdisjoint({"ann", "bob"})
    folk = voice_path(recommender, start, end, n=6, filters=Filters(genres=frozenset({"folk"})))
    assert {s.genre for s in folk[1:-1]} == {"folk"}
    heard = frozenset({"cat/song0.wav", "cat/song1.wav"})
    assert not heard & {s.path for s in voice_path(recommender, start, end, n=12, filters=Filters(heard=heard))}


def test_a_small_library_gives_a_shorter_path_not_a_repeat(recommender: Recommender) -> None:
    start, end = recommender.track_query("ann/song0.wav"), recommender.track_query("cat/song0.wav")
    songs = voice_path(recommender, start, end, n=200)
    paths = [s.path for s in songs]
    assert 3 <= len(songs) < 200 and len(set(paths)) == len(paths) and paths[-1] == "cat/song0.wav"
    assert len(voice_path(recommender, start, end, n=2)) == 2


def test_bad_paths_are_nextvox_errors(recommender: Recommender) -> None:
    start = recommender.track_query("ann/song0.wav")
    for kwargs, message in (({"n": 1}, "at least 2"), ({"follow": 1.5}, "between 0 and 1")):
        with pytest.raises(NextvoxError, match=message):
            voice_path(recommender, start, recommender.track_query("bob/song0.wav"), **kwargs)
    with pytest.raises(NextvoxError, match="same song"):
        voice_path(recommender, start, start)


def test_cli_path(recommender: Recommender, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nextvox.cli import main

    library, data = str(recommender.catalogue.library), str(recommender.catalogue.data_dir)
    out = tmp_path / "path.m3u8"
    assert main(["path", library, "ann/song0.wav", "dan/song1.wav", "-n", "6", "--out", str(out), "--json",
                 "--data-dir", data]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"from", "to", "out", "tracks"} and len(document["tracks"]) == 6
    assert document["tracks"][0]["path"] == "ann/song0.wav" and document["tracks"][-1]["path"] == "dan/song1.wav"
    text = out.read_text()
    assert text.startswith("#EXTM3U") and text.count("#EXTINF") == 6 and text.rstrip().endswith("dan/song1.wav")
    assert main(["path", library, "ann/song0.wav", "dan/song1.wav", "--out", str(tmp_path / "p.txt"), "--data-dir", data]) == 2
    assert main(["path", library, "ann/song0.wav", "nobody/x.wav", "--data-dir", data]) == 1
    assert "query not found" in capsys.readouterr().err
    assert main(["path", library, "ann/song0.wav", "ann/song0.wav", "--data-dir", data]) == 1


def test_http_path(recommender: Recommender) -> None:
    from nextvox.api import create_app

    app = create_app(recommender.catalogue.library, recommender.catalogue.data_dir)
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.post("/api/path", json={"start": "bob/song2.wav", "end": "fay/song1.wav", "n": 5,
                                                "filters": {"exclude_query_artists": True}})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        paths = [t["path"] for t in body["tracks"]]
        assert body["start"] == "bob/song2.wav" and len(paths) == 5 and paths[0] == "bob/song2.wav" and paths[-1] == "fay/song1.wav"
        assert body["notes"] == [] and all(t["audio_url"].startswith("/api/audio/") for t in body["tracks"])
        assert {t["artist"] for t in body["tracks"][1:-1]}.isdisjoint({"bob", "fay"})
        assert client.post("/api/path", json={"start": "bob/song2.wav", "end": "nobody.wav"}).status_code == 404
        assert client.post("/api/path", json={"start": "bob/song2.wav", "end": "fay/song1.wav", "n": 1}).status_code == 422
        same = client.post("/api/path", json={"start": "bob/song2.wav", "end": "bob/song2.wav"})
        assert same.status_code in (400, 422) and "same song" in same.json()["error"]
        short = client.post("/api/path", json={"start": "bob/song2.wav", "end": "fay/song1.wav", "n": 500}).json()
        assert len(short["tracks"]) < 500 and short["notes"]
