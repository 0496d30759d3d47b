"""The HTTP API over a real analysed library: answers, bad requests (4xx JSON, never a 500),
path traversal on the audio endpoint, upload caps, and Range streaming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nextvox.analysis import analyze_library
from nextvox.api import create_app

from factories import make_library

UPLOAD_CAP_BYTES = 400_000


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("api")
    library = root / "music"
    labels = make_library(library, songs_per_singer=3, seconds=5.0)
    outside = root / "outside"
    outside.mkdir()
    (outside / "secret.wav").write_bytes((library / "low/song0.wav").read_bytes())  # real audio, outside the library
    os.symlink(outside / "secret.wav", library / "link-out.wav")  # a link inside pointing outside
    os.symlink("/etc/passwd", library / "passwd.mp3")
    analyze_library(library, data_dir=root / "data", jobs=1)
    app = create_app(library, root / "data", max_upload_bytes=UPLOAD_CAP_BYTES)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, library, labels


def assert_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body["error"], str) and body["error"] and "Traceback" not in response.text
    return body


def test_health_and_openapi(served) -> None:
    client, library, _ = served
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["counts"]["analyzed"] >= 9 and health["index"] == "exact"
    from nextvox.models.tcae import DEFAULT_WEIGHTS, weights_version

    assert health["has_melody"] and health["melody_model_versions"] == [weights_version(DEFAULT_WEIGHTS)]
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/api/tracks", "/api/similar", "/api/recommend", "/api/query", "/api/radio", "/api/playlists/export",
                  "/api/map", "/api/health", "/api/audio/{path}"):
        assert route in paths, route


def test_tracks_search_list_and_one(served) -> None:
    client, _, labels = served
    page = client.get("/api/tracks", params={"q": "low", "status": "analyzed"}).json()
    assert page["total"] == 3 and {t["path"] for t in page["tracks"]} == {p for p, s in labels.items() if s == "low"}
    assert client.get("/api/tracks", params={"limit": 2, "offset": 1}).json()["total"] >= 9
    one = client.get("/api/tracks/mid/song0.flac").json()
    assert one["status"] == "analyzed" and one["audio_url"] == "/api/audio/mid/song0.flac"
    assert_error(client.get("/api/tracks/mid/nope.flac"), 404)


def test_similar_history_and_upload(served) -> None:
    client, library, labels = served
    similar = client.get("/api/similar", params={"path": "low/song0.wav", "k": 2}).json()
    assert [labels[r["path"]] for r in similar["results"]] == ["low", "low"]
    first = similar["results"][0]
    assert -1.0 <= first["melody_similarity"] <= 1.0 and first["reason"] and first["tags"]
    assert "matched note by note" not in first["reason"]
    with_melody = client.get("/api/similar", params={"path": "low/song0.wav", "k": 2, "w_melody": 0.5}).json()["results"]
    assert all("matched note by note" in r["reason"] for r in with_melody)
    assert all(r["score"] == pytest.approx(r["timbre_similarity"] + 0.5 * r["melody_similarity"], abs=1e-5) for r in with_melody)
    history = client.post("/api/recommend", json={
        "history": [{"path": "high/song0.mp3", "weight": 2}, {"path": "high/song1.wav"}], "k": 1,
        "filters": {"gender": "female"}, "diversity": {"per_artist": None}}).json()
    assert [r["path"] for r in history["results"]] == ["high/song2.flac"]
    # analyze stores genders when the shipped gender head knows the timbre model; else the answer says so.
    has_genders = client.get("/api/health").json()["has_genders"]
    assert has_genders != any("gender filter not applied" in note for note in history["notes"])
    data = (library / "mid/song1.mp3").read_bytes()
    upload = client.post("/api/query", params={"filename": "me.mp3", "k": 3}, content=data, headers={"content-type": "audio/mpeg"})
    answer = upload.json()
    assert upload.status_code == 200 and "mid/song1.mp3" not in [r["path"] for r in answer["results"]]
    assert labels[answer["results"][0]["path"]] == "mid"
    # An uploaded recording is matched by its own melody sequence too.
    upload = client.post("/api/query", params={"filename": "me.mp3", "k": 3, "w_melody": 1.0}, content=data,
                         headers={"content-type": "audio/mpeg"})  # fmt: skip
    assert upload.status_code == 200 and all("matched note by note" in r["reason"] for r in upload.json()["results"])


def test_radio_and_playlist_export(served) -> None:
    client, library, _ = served
    tracks = client.post("/api/radio", json={"seeds": ["low/song0.wav"], "n": 5}).json()["tracks"]
    paths = [t["path"] for t in tracks]
    assert len(paths) == 5 and "low/song0.wav" not in paths
    m3u8 = client.post("/api/playlists/export", json={"paths": paths, "format": "m3u8"})
    assert m3u8.status_code == 200 and m3u8.headers["content-type"].startswith("audio/x-mpegurl")
    lines = m3u8.text.splitlines()
    assert lines[0] == "#EXTM3U" and lines[3] == str(library / paths[0])
    xspf = client.post("/api/playlists/export", json={"paths": paths, "format": "xspf", "locations": "url"})
    assert "<location>http://testserver/api/audio/" in xspf.text
    assert_error(client.post("/api/playlists/export", json={"paths": ["../../etc/passwd"]}), 404)


def test_map(served) -> None:
    client, _, _ = served
    answer = client.get("/api/map").json()
    assert answer["projection"] == "pca" and len(answer["points"]) == answer["n_total"] >= 9
    assert {"path", "x", "y", "artist", "genre", "gender"} <= set(answer["points"][0])
    assert len(client.get("/api/map", params={"limit": 3}).json()["points"]) == 3


@pytest.mark.parametrize("method, url, kwargs, status", [
    ("get", "/api/similar", {"params": {"path": "low/song0.wav", "k": 0}}, 422),
    ("get", "/api/similar", {"params": {"path": "low/song0.wav", "k": "ten"}}, 422),
    ("get", "/api/similar", {}, 422),
    ("get", "/api/similar", {"params": {"path": "nobody.mp3"}}, 404),
    ("get", "/api/similar", {"params": {"path": "low/song0.wav", "gender": "robot"}}, 422),
    ("get", "/api/similar", {"params": {"path": "low/song0.wav", "mmr_lambda": 3}}, 422),
    ("get", "/api/similar", {"params": {"path": "passwd.mp3"}}, 400),  # in the library, but failed analysis
    ("post", "/api/recommend", {"json": {"history": []}}, 422),
    ("post", "/api/recommend", {"json": {"history": [{"path": "low/song0.wav", "weight": -1}]}}, 422),
    ("post", "/api/recommend", {"json": {"history": [{"path": "low/song0.wav"}], "bogus": 1}}, 422),
    ("post", "/api/recommend", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
    ("post", "/api/recommend", {"json": {"history": [{"path": "low/song0.wav"}], "w_timbre": 0}}, 400),
    ("post", "/api/radio", {"json": {"seeds": ["low/song0.wav"], "n": 0}}, 422),
    ("post", "/api/playlists/export", {"json": {"paths": ["low/song0.wav"], "format": "pls"}}, 422),
    ("get", "/api/tracks", {"params": {"limit": 100000}}, 422),
    ("get", "/api/no/such/route", {}, 404),
    ("delete", "/api/health", {}, 405),
])
def test_bad_requests_are_clear_4xx_json(served, method: str, url: str, kwargs: dict, status: int) -> None:
    client, _, _ = served
    assert_error(getattr(client, method)(url, **kwargs), status)


@pytest.mark.parametrize("url, status", [
    ("/api/audio/../../etc/passwd", 404),
    ("/api/audio/..%2f..%2fetc%2fpasswd", 404),
    ("/api/audio/%2e%2e/%2e%2e/etc/passwd", 404),
    ("/api/audio/%2Fetc%2Fpasswd", 404),
    ("/api/audio//etc/passwd", 404),
    ("/api/audio/low/..%2f..%2f..%2fetc/passwd", 404),
    ("/api/audio/link-out.wav", 403),  # catalogued, but a link to a file outside the library
    ("/api/audio/passwd.mp3", 403),
])
def test_audio_never_leaves_the_library(served, url: str, status: int) -> None:
    client, _, _ = served
    response = client.get(url)
    assert response.status_code == status, (url, response.text)
    assert "root:" not in response.text


def test_audio_range_streaming(served) -> None:
    client, library, _ = served
    data = (library / "mid/song0.flac").read_bytes()
    whole = client.get("/api/audio/mid/song0.flac")
    assert whole.status_code == 200 and whole.content == data and whole.headers["content-type"] == "audio/flac"
    assert whole.headers.get("accept-ranges") == "bytes"
    part = client.get("/api/audio/mid/song0.flac", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = client.get("/api/audio/mid/song0.flac", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.content == data[-50:]
    beyond = client.get("/api/audio/mid/song0.flac", headers={"Range": f"bytes={len(data) + 10}-"})
    assert beyond.status_code == 416


def test_upload_caps_size_and_type(served) -> None:
    client, library, _ = served
    big = b"\0" * (UPLOAD_CAP_BYTES + 1)
    assert_error(client.post("/api/query", params={"filename": "big.wav"}, content=big, headers={"content-type": "audio/wav"}), 413)

    def chunks():  # no Content-Length: the cap must hold while streaming
        for _ in range(10):
            yield b"\0" * (UPLOAD_CAP_BYTES // 4)

    assert_error(client.post("/api/query", params={"filename": "big.wav"}, content=chunks(), headers={"content-type": "audio/wav"}), 413)
    wav = (library / "low/song0.wav").read_bytes()
    assert_error(client.post("/api/query", params={"filename": "me.exe"}, content=wav, headers={"content-type": "audio/wav"}), 415)
    assert_error(client.post("/api/query", params={"filename": "me.wav"}, content=wav, headers={"content-type": "text/html"}), 415)
    assert_error(client.post("/api/query", params={"filename": "me.wav"}, content=b"", headers={"content-type": "audio/wav"}), 415)
    junk = client.post("/api/query", params={"filename": "junk.mp3"}, content=b"not audio at all" * 100,
                       headers={"content-type": "audio/mpeg"})
    assert "cannot use junk.mp3" in assert_error(junk, 400)["error"]
    assert_error(client.post("/api/query", content=wav, headers={"content-type": "audio/wav"}), 422)  # no filename


def test_serves_an_unanalysed_library_with_a_clear_message(tmp_path: Path) -> None:
    library = tmp_path / "music"
    make_library(library, songs_per_singer=1, seconds=2.0, formats=("wav",))
    with TestClient(create_app(library, tmp_path / "data"), raise_server_exceptions=False) as client:
        assert client.get("/api/health").json()["counts"]["analyzed"] == 0
        assert client.get("/api/map").json()["points"] == []
        body = assert_error(client.get("/api/similar", params={"path": "low/song0.wav"}), 404)
        assert "nothing in this library is analysed yet" in body["error"]
        assert f"nextvox analyze {library} --data-dir {tmp_path / 'data'}" in body["error"]  # the command to paste
        assert client.get("/").status_code == 200


def test_results_carry_voice_and_melody_percent_with_one_meaning_each(served) -> None:
    client, _, _ = served
    plain = client.get("/api/similar", params={"path": "low/song0.wav", "k": 5}).json()["results"]
    assert all(0 <= r["voice_percent"] <= 100 and r["melody_percent"] is None for r in plain)
    assert [r["voice_percent"] for r in plain] == sorted((r["voice_percent"] for r in plain), reverse=True)
    assert all(f"closer than {r['voice_percent']:.0f}% of the library" in r["reason"] for r in plain)
    with_melody = client.get("/api/similar", params={"path": "low/song0.wav", "k": 5, "w_melody": 0.5}).json()["results"]
    # The melody % is the note-by-note match itself (the same number the reason gives), never a vector cosine.
    assert all(r["melody_percent"] == pytest.approx(100 * max(r["melody_similarity"], 0.0), abs=0.06) for r in with_melody)
    assert all(0 <= r["melody_percent"] <= 100 for r in with_melody)


def test_playlists_travel_relative_or_under_a_prefix(served) -> None:
    client, library, _ = served
    paths = ["low/song0.wav", "mid/song1.mp3"]
    relative = client.post("/api/playlists/export", json={"paths": paths, "format": "m3u8", "locations": "relative"}).text
    assert [line for line in relative.splitlines() if not line.startswith("#")] == paths
    prefixed = client.post("/api/playlists/export", json={"paths": paths, "format": "xspf", "locations": "prefix",
                                                          "prefix": "http://nas/my music/"}).text
    assert "<location>http://nas/my music/low/song0.wav</location>" in prefixed
    folder = client.post("/api/playlists/export", json={"paths": paths, "locations": "prefix", "prefix": "/mnt/music"}).text
    assert "/mnt/music/mid/song1.mp3" in folder.splitlines()
    assert_error(client.post("/api/playlists/export", json={"paths": paths, "locations": "prefix"}), 400)


def test_track_search_pages_a_large_library_on_the_server() -> None:
    from nextvox.api.service import TrackSearch
    from nextvox.catalogue import Track

    fields = {name: None for name in Track.__dataclass_fields__}
    tracks = [Track(**{**fields, "path": f"a{i // 1000:03d}/{i:06d}.mp3", "artist": f"singer {i % 97}", "title": f"song {i}",
                       "status": "analyzed" if i % 10 else "failed"}) for i in range(100_000)]
    search = TrackSearch(tracks)
    total, page = search.find("singer 5", status="analyzed", offset=20, limit=10)
    # Every word somewhere in path, artist, title, album or genre.
    expected = sorted(t.path for t in tracks if t.status == "analyzed" and "singer" in t.artist and "5" in f"{t.path} {t.artist} {t.title}")
    assert total == len(expected) and [t.path for t in page] == expected[20:30]
    total, page = search.find("", offset=99_990, limit=50)
    assert total == 100_000 and len(page) == 10


def test_docs_are_served_without_a_cdn(served) -> None:
    client, _, _ = served
    html = client.get("/docs").text
    assert "cdn" not in html.lower() and "/docs-assets/swagger-ui-bundle.js" in html
    script = client.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text[:100_000] + script.text[-100_000:]


def test_the_server_answers_from_stored_vectors_without_torch(served) -> None:
    """The analysis (PyTorch, librosa) loads only for an uploaded query: a server starts and answers without it."""
    client, library, _ = served
    data = client.app.state.service.data_dir
    script = ("import sys\nfrom fastapi.testclient import TestClient\nfrom nextvox.api import create_app\n"
              f"client = TestClient(create_app({str(library)!r}, {str(data)!r}))\n"
              "answer = client.get('/api/similar', params={'path': 'low/song0.wav'})\n"
              "print(answer.text)\n"
              "print(*(m for m in ('torch', 'librosa', 'nextvox.analysis') if m in sys.modules), 'loaded', file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert json.loads(result.stdout)["results"], result.stderr
    assert result.stderr.strip().splitlines()[-1] == "loaded", result.stderr  # nothing named before "loaded"
