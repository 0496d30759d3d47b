"""nextvox against a real Subsonic server: supysonic (from PyPI) started here on loopback over a
library of tagged WAV files, spoken to by a real client library (py-sonic).

The library's vectors are hand-made (``service_factories``) so that who sounds like whom is
known; the server scans the same files for real. A second music folder on the server holds a
renamed copy of one song (matched by its tags and duration) and a song nextvox does not know.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import httpx
import pytest

from nextvox.errors import NextvoxError
from nextvox.integrations.subsonic import (SubsonicClient, SubsonicConfig, SubsonicError, load_config, map_songs, push_playlist,
                                           server_songs, songs_by_album, songs_by_search)

from service_factories import make_catalogue, voice_songs, write_tagged_wav

pytest.importorskip("supysonic")
libsonic = pytest.importorskip("libsonic")

ARTISTS = {"ann": ("folk", None), "bob": ("rock", None), "cat": ("folk", None), "dan": ("jazz", None)}
USER, PASSWORD = "alice", "s3cret-Pw"
SONG_SECONDS = 3.0
NS = "{http://subsonic.org/restapi}"

RUN_SUPYSONIC = """
import sys
from werkzeug.serving import make_server
from supysonic.config import IniConfig
from supysonic.web import create_application
server = make_server("127.0.0.1", 0, create_application(IniConfig([sys.argv[1]])), threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


def supysonic_cli(conf_dir: Path, *args: str) -> None:
    command = [str(Path(sys.executable).parent / "supysonic-cli"), *args]
    result = subprocess.run(command, cwd=conf_dir, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


class Served:
    """A uvicorn server in a thread of this process, on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not (self.server.started and self.server.servers):
            assert self.thread.is_alive() and time.monotonic() < deadline, "the proxy did not start"
            time.sleep(0.05)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("subsonic")
    songs = voice_songs(artists=ARTISTS, songs_per_artist=4, seed=5)
    catalogue = make_catalogue(root, songs, seconds=SONG_SECONDS)
    library = catalogue.library
    extra = root / "extra"  # a second music folder of the server
    (extra / "renamed").mkdir(parents=True)
    (extra / "renamed" / "take.wav").write_bytes((library / "bob/song1.wav").read_bytes())
    write_tagged_wav(extra / "stranger.wav", artist="zed", title="unknown", genre="pop", seed=99, seconds=SONG_SECONDS)

    conf_dir = root / "supysonic"
    conf_dir.mkdir()
    (conf_dir / "supysonic.conf").write_text(
        f"[base]\ndatabase_uri = sqlite:///{conf_dir}/supysonic.db\n[webapp]\ncache_dir = {conf_dir}/cache\n"
        f"mount_webui = no\nlog_level = WARNING\n[daemon]\nsocket = {conf_dir}/daemon.sock\nrun_watcher = no\n")
    supysonic_cli(conf_dir, "folder", "add", "music", str(library))
    supysonic_cli(conf_dir, "folder", "add", "extra", str(extra))
    supysonic_cli(conf_dir, "user", "add", USER, "-p", PASSWORD)
    supysonic_cli(conf_dir, "folder", "scan", "--foreground")
    server = subprocess.Popen([sys.executable, "-c", RUN_SUPYSONIC, str(conf_dir / "supysonic.conf")], cwd=conf_dir,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    proxy = None
    try:
        server_port = int(server.stdout.readline())
        config = SubsonicConfig(f"http://127.0.0.1:{server_port}", USER, password=PASSWORD)
        from nextvox.integrations.subsonic_proxy import create_proxy_app

        proxy = Served(create_proxy_app(library, catalogue.data_dir, config))
        yield {"root": root, "library": library, "data": catalogue.data_dir, "config": config, "server_port": server_port,
               "proxy_port": proxy.port, "songs": songs}
    finally:
        if proxy is not None:
            proxy.stop()
        server.terminate()
        server.wait(timeout=30)
        catalogue.close()


def client(port: int, password: str = PASSWORD):
    """py-sonic's connection (supysonic speaks API 1.12: the password, hex-encoded, not a token)."""
    return libsonic.Connection("http://127.0.0.1", USER, password, port=port, appName="tests", legacyAuth=True,
                               apiVersion="1.12.0")


def ask(connection, endpoint: str, **params) -> dict:
    """A call py-sonic has no method for, through its own request machinery (form POST, JSON answer)."""
    return connection._doInfoReq(connection._getRequest(f"{endpoint}.view", params))


def song_ids(world) -> dict[str, str]:
    """library path -> server song id, as the server itself lists them (its `path` is relative to its folder)."""
    with SubsonicClient(world["config"]) as c:
        return {s["path"]: s["id"] for s in server_songs(c)}


def test_settings_from_the_environment_or_a_file_never_show_the_password(tmp_path: Path) -> None:
    file = tmp_path / "subsonic.toml"
    file.write_text('[subsonic]\nurl = "http://127.0.0.1:4533"\nuser = "ann"\npassword = "from-file"\n')
    config = load_config(file, environ={})
    assert (config.url, config.user, config.password) == ("http://127.0.0.1:4533", "ann", "from-file")
    assert "from-file" not in repr(config)
    config = load_config(file, environ={"NEXTVOX_SUBSONIC_PASSWORD": "from-env", "NEXTVOX_SUBSONIC_USER": "bob"})
    assert (config.user, config.password) == ("bob", "from-env")
    (tmp_path / "empty.toml").write_text("")
    with pytest.raises(NextvoxError, match="lack password"):
        load_config(environ={"NEXTVOX_SUBSONIC_URL": "http://x", "NEXTVOX_SUBSONIC_USER": "u",
                             "NEXTVOX_SUBSONIC_CONFIG": str(tmp_path / "empty.toml")})
    with pytest.raises(NextvoxError, match="no Subsonic settings file"):
        load_config(tmp_path / "absent.toml", environ={})


def test_server_songs_map_to_library_tracks(world) -> None:
    with SubsonicClient(world["config"]) as c:
        songs = server_songs(c)
        assert sorted(s["id"] for s in songs_by_album(c)) == sorted(s["id"] for s in songs_by_search(c)) \
            == sorted(s["id"] for s in songs)
    from nextvox.catalogue import Catalogue

    with Catalogue(world["data"], library=world["library"], create=False) as catalogue:
        song_map = map_songs(songs, catalogue.tracks())
    assert song_map.counts == {"server_songs": 18, "matched": 17, "by_path": 16, "by_tags": 1, "unmatched_server_songs": 1,
                               "library_tracks": 16, "library_tracks_not_on_server": 0}
    by_id = {s["id"]: s for s in songs}
    for song_id, path in song_map.path_of.items():
        song = by_id[song_id]
        assert song["path"] == path or (song["path"] == "renamed/take.wav" and path == "bob/song1.wav")
    # The command line says the same, and never shows the password.
    env = {**os.environ, "NEXTVOX_SUBSONIC_URL": world["config"].url, "NEXTVOX_SUBSONIC_USER": USER,
           "NEXTVOX_SUBSONIC_PASSWORD": PASSWORD, "NEXTVOX_SUBSONIC_CONFIG": ""}
    result = subprocess.run([sys.executable, "-m", "nextvox", "subsonic", "map", str(world["library"]), "--data-dir",
                             str(world["data"]), "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"] == song_map.counts
    wrong = subprocess.run([sys.executable, "-m", "nextvox", "subsonic", "map", str(world["library"]), "--data-dir",
                            str(world["data"])], capture_output=True, text=True, timeout=120,
                           env={**env, "NEXTVOX_SUBSONIC_PASSWORD": "not-it-at-all"})
    assert wrong.returncode == 1 and "Subsonic error 40" in wrong.stderr and "Traceback" not in wrong.stderr
    assert "not-it-at-all" not in wrong.stderr + wrong.stdout and PASSWORD not in wrong.stderr + wrong.stdout


def test_playlists_are_pushed_and_updated_in_place(world) -> None:
    ids = song_ids(world)
    first, second = [ids["ann/song0.wav"], ids["bob/song2.wav"]], [ids["cat/song1.wav"], ids["dan/song0.wav"], ids["ann/song3.wav"]]
    with SubsonicClient(world["config"]) as c:
        playlist_id, created = push_playlist(c, "voices", first)
        again_id, created_again = push_playlist(c, "voices", second)
    assert created and not created_again and again_id == playlist_id
    seen = client(world["server_port"])
    named = [p for p in seen.getPlaylists()["playlists"]["playlist"] if p["name"] == "voices"]
    assert [p["id"] for p in named] == [playlist_id]
    assert [e["id"] for e in seen.getPlaylist(playlist_id)["playlist"]["entry"]] == second
    # From the command line: a voice path saved on the server.
    env = {**os.environ, "NEXTVOX_SUBSONIC_URL": world["config"].url, "NEXTVOX_SUBSONIC_USER": USER,
           "NEXTVOX_SUBSONIC_PASSWORD": PASSWORD, "NEXTVOX_SUBSONIC_CONFIG": ""}
    result = subprocess.run([sys.executable, "-m", "nextvox", "path", str(world["library"]), "ann/song0.wav", "dan/song3.wav",
                             "-n", "5", "--to-server", "ann to dan", "--data-dir", str(world["data"]), "--json"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    pushed = [p for p in seen.getPlaylists()["playlists"]["playlist"] if p["name"] == "ann to dan"]
    assert len(pushed) == 1 and document["server_playlist"]["id"] == pushed[0]["id"]
    entries = seen.getPlaylist(pushed[0]["id"])["playlist"]["entry"]
    assert [e["path"] for e in entries] == [t["path"] for t in document["tracks"]]


def test_the_extension_answers_per_spec_in_json(world) -> None:
    ids = song_ids(world)
    path_of = {v: k for k, v in ids.items()}
    proxy = client(world["proxy_port"])
    extensions = ask(proxy, "getOpenSubsonicExtensions")
    assert {"name": "sonicSimilarity", "versions": [1]} in extensions["openSubsonicExtensions"]
    answer = ask(proxy, "getSonicSimilarTracks", id=ids["ann/song0.wav"], count=5)
    assert answer["status"] == "ok" and answer["openSubsonic"] is True
    matches = answer["sonicMatch"]
    assert len(matches) == 5
    similarities = [m["similarity"] for m in matches]
    assert similarities == sorted(similarities, reverse=True) and all(0.0 <= s <= 1.0 for s in similarities)
    assert all(path_of[m["entry"]["id"]] == m["entry"]["path"] for m in matches)  # the server's own ids and Child entries
    assert ids["ann/song0.wav"] not in {m["entry"]["id"] for m in matches}
    assert {m["entry"]["artist"] for m in matches[:3]} == {"ann"}  # the same voice first
    assert ask(proxy, "getSonicSimilarTracks", id=ids["ann/song0.wav"], count=0)["sonicMatch"] == []

    path = ask(proxy, "findSonicPath", startSongId=ids["ann/song0.wav"], endSongId=ids["dan/song2.wav"], count=6)["sonicMatch"]
    assert path[0]["entry"]["id"] == ids["ann/song0.wav"] and path[-1]["entry"]["id"] == ids["dan/song2.wav"]
    assert 3 <= len(path) <= 6 and path[0]["similarity"] == 1.0
    assert len({m["entry"]["id"] for m in path}) == len(path)

    radio = ask(proxy, "getSimilarSongs2", id=ids["cat/song0.wav"], count=6)["similarSongs2"]["song"]
    assert 1 <= len(radio) <= 6 and ids["cat/song0.wav"] not in {s["id"] for s in radio}
    assert all(a["artist"] != b["artist"] for a, b in zip(radio, radio[1:]))
    artist_id = proxy.getSong(ids["bob/song0.wav"])["song"]["artistId"]
    by_artist = ask(proxy, "getSimilarSongs", id=artist_id, count=4)["similarSongs"]["song"]
    assert by_artist and not {s["id"] for s in by_artist} & {ids[f"bob/song{i}.wav"] for i in range(4)}

    missing = ask(proxy, "getSonicSimilarTracks")
    assert missing["status"] == "failed" and missing["error"]["code"] == 10 and missing["version"] == "1.12.0"  # the server's
    # A song nextvox has not analysed: not found for the extension, the server's own answer for song radio.
    unknown = ids["stranger.wav"]
    answer = ask(proxy, "getSonicSimilarTracks", id=unknown)
    assert answer["status"] == "failed" and answer["error"]["code"] == 70
    params = {"u": USER, "p": PASSWORD, "v": "1.12.0", "c": "tests", "f": "json", "id": unknown}
    through, direct = (httpx.get(f"http://127.0.0.1:{port}/rest/getSimilarSongs2", params=params)
                       for port in (world["proxy_port"], world["server_port"]))
    assert (through.status_code, through.content) == (direct.status_code, direct.content)  # supysonic: 404, no such call


def test_the_extension_answers_per_spec_in_xml(world) -> None:
    ids = song_ids(world)
    params = {"u": USER, "p": PASSWORD, "v": "1.12.0", "c": "tests", "id": ids["bob/song0.wav"], "count": "3"}
    response = httpx.get(f"http://127.0.0.1:{world['proxy_port']}/rest/getSonicSimilarTracks.view", params=params)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/xml")
    root = ElementTree.fromstring(response.content)
    assert root.tag == f"{NS}subsonic-response" and root.get("status") == "ok" and root.get("openSubsonic") == "true"
    matches = root.findall(f"{NS}sonicMatch")
    assert len(matches) == 3
    for match in matches:
        entry = match.find(f"{NS}entry")
        assert 0.0 <= float(match.get("similarity")) <= 1.0 and entry.get("id") in ids.values() and entry.get("title")
    path_params = {**params, "startSongId": ids["bob/song0.wav"], "endSongId": ids["cat/song3.wav"], "count": "4"}
    path = ElementTree.fromstring(httpx.post(f"http://127.0.0.1:{world['proxy_port']}/rest/findSonicPath", data=path_params).content)
    entries = [m.find(f"{NS}entry").get("id") for m in path.findall(f"{NS}sonicMatch")]
    assert entries[0] == ids["bob/song0.wav"] and entries[-1] == ids["cat/song3.wav"] and 3 <= len(entries) <= 4
    jsonp = httpx.get(f"http://127.0.0.1:{world['proxy_port']}/rest/getSonicSimilarTracks", params={**params, "f": "jsonp", "callback": "cb"})
    assert jsonp.text.startswith("cb(") and json.loads(jsonp.text[3:-1])["subsonic-response"]["status"] == "ok"
    extensions = ElementTree.fromstring(httpx.get(f"http://127.0.0.1:{world['proxy_port']}/rest/getOpenSubsonicExtensions").content)
    assert [(e.get("name"), [v.text for v in e.findall(f"{NS}versions")]) for e in extensions.findall(f"{NS}openSubsonicExtensions")] \
        == [("sonicSimilarity", ["1"])]


def test_a_wrong_password_is_refused_by_the_server(world) -> None:
    ids = song_ids(world)
    intruder = client(world["proxy_port"], password="guess")
    for endpoint, params in (("getSonicSimilarTracks", {"id": ids["ann/song0.wav"]}),
                             ("findSonicPath", {"startSongId": ids["ann/song0.wav"], "endSongId": ids["bob/song0.wav"]}),
                             ("getSimilarSongs2", {"id": ids["ann/song0.wav"]}), ("getMusicFolders", {})):
        answer = ask(intruder, endpoint, **params)
        assert answer["status"] == "failed" and answer["error"]["code"] == 40, (endpoint, answer)
        assert "sonicMatch" not in answer and "similarSongs2" not in answer


def test_forwarded_calls_return_what_the_server_returns(world) -> None:
    ids = song_ids(world)
    direct, proxied = client(world["server_port"]), client(world["proxy_port"])
    assert proxied.getMusicFolders() == direct.getMusicFolders()
    assert proxied.getAlbumList2("alphabeticalByName") == direct.getAlbumList2("alphabeticalByName")
    assert proxied.getSong(ids["dan/song1.wav"]) == direct.getSong(ids["dan/song1.wav"])
    streamed = proxied.stream(ids["dan/song1.wav"]).read()
    assert streamed == (world["library"] / "dan/song1.wav").read_bytes()
    params = {"u": USER, "p": PASSWORD, "v": "1.12.0", "c": "tests", "id": "not-a-uuid"}
    base = "http://127.0.0.1:{}/rest/getSong.view"
    assert httpx.get(base.format(world["proxy_port"]), params=params).content == \
        httpx.get(base.format(world["server_port"]), params=params).content
    assert httpx.get(f"http://127.0.0.1:{world['proxy_port']}/elsewhere").status_code == 404


def test_an_unreachable_server_is_a_clear_error() -> None:
    config = SubsonicConfig("http://127.0.0.1:9", USER, password=PASSWORD)
    with SubsonicClient(config) as c, pytest.raises(SubsonicError, match="cannot reach") as caught:
        c.call("ping")
    assert PASSWORD not in str(caught.value)
