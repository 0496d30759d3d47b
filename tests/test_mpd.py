"""``nextvox mpd`` against Debian's real MPD, started here on loopback with a null audio output
over a library of tagged WAV files whose voices are known (``service_factories``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nextvox.errors import NextvoxError
from nextvox.integrations.mpd import CHANNEL, connect, queue_path, queue_state, top_up, watch
from nextvox.recommend import Recommender

from service_factories import make_catalogue, voice_songs

pytest.importorskip("mpd")
MPD = shutil.which("mpd") or "/usr/bin/mpd"
pytestmark = pytest.mark.skipif(not Path(MPD).exists(), reason="Debian's mpd is not installed (scripts/setup.sh --test)")

ARTISTS = {"ann": ("folk", None), "bob": ("rock", None), "cat": ("folk", None), "dan": ("jazz", None)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def player(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mpd")
    catalogue = make_catalogue(root, voice_songs(artists=ARTISTS, songs_per_artist=4, seed=7), seconds=20.0)
    recommender = Recommender(catalogue)
    port = free_port()
    (root / "playlists").mkdir()
    conf = root / "mpd.conf"
    conf.write_text(
        f'music_directory "{catalogue.library}"\nplaylist_directory "{root}/playlists"\ndb_file "{root}/mpd.db"\n'
        f'bind_to_address "127.0.0.1"\nport "{port}"\n'
        'audio_output {\n  type "null"\n  name "silence"\n}\n')
    server = subprocess.Popen([MPD, "--no-daemon", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client = connect("127.0.0.1", port)
                break
            except NextvoxError:
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline, "mpd did not start"
                time.sleep(0.1)
        client.update()
        while "updating_db" in client.status():
            assert time.monotonic() < deadline, "mpd did not index the library"
            time.sleep(0.1)
        assert len(client.listall()) >= 16
        yield client, recommender, port, catalogue
        client.disconnect()
    finally:
        server.terminate()
        server.wait(timeout=30)
        catalogue.close()


def start(client, file: str) -> None:
    """A queue holding only ``file``, paused at its start."""
    client.clear()
    client.add(file)
    client.play(0)
    client.pause(1)


def artist(file: str) -> str:
    return file.split("/")[0]


def test_the_queue_is_topped_up_with_voice_alike_songs(player) -> None:
    client, recommender, _, _ = player
    start(client, "ann/song0.wav")
    added = top_up(client, recommender, keep=4)
    state = queue_state(client)
    assert state.current == 0 and state.files == ["ann/song0.wav", *added] and len(added) == 4
    assert len(set(state.files)) == 5 and all(f in recommender.tracks_by_path for f in added)
    assert all(artist(a) != artist(b) for a, b in zip(state.files, state.files[1:]))
    assert top_up(client, recommender, keep=4) == []  # enough queued already
    client.delete((2,))  # the listener removed the last three: topped up again, no song twice, no artist twice in a row
    assert len(top_up(client, recommender, keep=4)) == 3
    files = queue_state(client).files
    assert len(set(files)) == 5 and all(artist(a) != artist(b) for a, b in zip(files, files[1:]))


def test_a_path_replaces_what_follows_the_song_playing(player) -> None:
    client, recommender, _, _ = player
    start(client, "bob/song0.wav")
    top_up(client, recommender, keep=3)
    files = queue_path(client, recommender, "dan/song3.wav", n=5)
    state = queue_state(client)
    assert state.files == ["bob/song0.wav", *files] and files[-1] == "dan/song3.wav" and 2 <= len(files) <= 4
    client.stop()
    with pytest.raises(NextvoxError, match="nothing is playing"):
        queue_path(client, recommender, "dan/song3.wav")
    client.play(0)
    with pytest.raises(NextvoxError, match="no such track"):
        queue_path(client, recommender, "nobody/none.wav")


def test_watching_answers_messages_from_any_client(player) -> None:
    client, recommender, port, _ = player
    start(client, "cat/song1.wav")
    stop, lines = threading.Event(), []
    watcher_client = connect("127.0.0.1", port)
    watcher = threading.Thread(target=watch, args=(watcher_client, lambda: recommender),
                               kwargs={"keep": 3, "n": 4, "should_stop": stop.is_set, "report": lines.append, "poll_s": 0.2})
    watcher.start()
    try:
        deadline = time.monotonic() + 30
        while queue_state(client).upcoming < 3:
            assert time.monotonic() < deadline and watcher.is_alive(), lines
            time.sleep(0.1)
        client.sendmessage(CHANNEL, "path ann/song2.wav")  # as `mpc sendmessage nextvox "path ..."` does
        while queue_state(client).files[-1] != "ann/song2.wav" and not any("path" in line for line in lines):
            assert time.monotonic() < deadline and watcher.is_alive(), lines
            time.sleep(0.1)
        client.sendmessage(CHANNEL, "dance")
        while not any("unknown message" in line for line in lines):
            assert time.monotonic() < deadline and watcher.is_alive(), lines
            time.sleep(0.1)
    finally:
        stop.set()
        watcher.join(timeout=30)
        watcher_client.disconnect()
    assert any(line.startswith("queued a voice path") for line in lines), lines
    assert "ann/song2.wav" in queue_state(client).files


def test_the_command_line(player) -> None:
    client, recommender, port, catalogue = player
    start(client, "dan/song0.wav")
    run = [sys.executable, "-m", "nextvox", "mpd", str(catalogue.library), "--data-dir", str(catalogue.data_dir),
           "--port", str(port), "--host", "127.0.0.1"]
    result = subprocess.run([*run, "--once", "--path-to", "bob/song3.wav", "-n", "4"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    files = queue_state(client).files
    assert files[0] == "dan/song0.wav" and "bob/song3.wav" in files and len(files) >= 6
    closed = subprocess.run([*run[:-4], "--port", str(free_port()), "--once"], capture_output=True, text=True, timeout=120)
    assert closed.returncode == 1 and "cannot connect to MPD" in closed.stderr and "Traceback" not in closed.stderr
