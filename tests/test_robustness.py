"""Hostile but realistic use: kills at odd moments, odd files, bad options, abusive requests.

Each test here stands for a defect once found: nothing indexed is lost, nothing hangs, and
every failure is one clear line or an HTTP 4xx.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from factories import analysed_count, make_library, voice, write_audio

NEXTVOX = [sys.executable, "-m", "nextvox"]
LINUX_PROC = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*NEXTVOX, *args], capture_output=True, text=True, timeout=timeout)


def _children(pid: int, marker: bytes) -> list[int]:
    """The child processes of ``pid`` whose command line holds ``marker``."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in children:
        try:
            if marker in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
        except FileNotFoundError:
            pass
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting to be reaped by whoever adopted it does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait_until_gone(pids: list[int], *, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


# ---- process lifetime ----------------------------------------------------------------------------


@LINUX_PROC
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_workers_and_resource_tracker_end_with_analyze(tmp_path: Path, how: signal.Signals) -> None:
    """Only the parent gets the signal (kill PID, the OOM killer): its helpers must not outlive it."""
    library, data = tmp_path / "music", tmp_path / "data"
    make_library(library, songs_per_singer=8, seconds=30.0, formats=("flac", "mp3"))
    # Output to a file, not a pipe: a worker left alive would hold a pipe open and hang the reader.
    log = (tmp_path / "stderr.txt").open("w")
    process = subprocess.Popen([*NEXTVOX, "analyze", str(library), "--data-dir", str(data), "--jobs", "2"],
                               stdout=subprocess.DEVNULL, stderr=log, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while analysed_count(data) < 1 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        workers = _children(process.pid, b"spawn_main")
        trackers = _children(process.pid, b"resource_tracker")
        assert process.poll() is None and len(workers) == 2 and len(trackers) == 1, "the run must be cut mid-way"
        os.kill(process.pid, how)
        process.wait(timeout=60)
        stderr = (tmp_path / "stderr.txt").read_text()
        if how == signal.SIGTERM:
            assert process.returncode == 1, stderr
            assert "interrupted" in stderr and "saved" in stderr and "Traceback" not in stderr
        assert _wait_until_gone(workers + trackers, timeout_s=20) == []
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    with sqlite3.connect(data / "catalogue.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# ---- odd files in the music folder ------------------------------------------------------------

# Undecodable bytes in a file name (a Latin-1 rip), and how the catalogue shows them.
LATIN1_NAME = b"caf\xe9 \xff\xfe.flac"
LATIN1_SHOWN = "caf\\xe9 \\xff\\xfe.flac"


@pytest.fixture(scope="module")
def odd_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    """Three songs; more under a name that is not UTF-8, a name with ? and #, one damaged mid-way; a FIFO named like a song; analysed."""
    root = tmp_path_factory.mktemp("odd")
    library = root / "music"
    make_library(library, songs_per_singer=1, seconds=5.0)
    # Written under a UTF-8 name, then renamed: the encoders take only text names.
    written = write_audio(library / "latin1.flac", voice(seconds=5.0, formants_hz=(500.0, 1500.0)))
    os.rename(written, bytes(library) + b"/" + LATIN1_NAME)
    os.mkfifo(library / "pipe.mp3")
    write_audio(library / "what?#1.wav", voice(seconds=5.0, formants_hz=(300.0, 2300.0), seed=5))  # URL syntax in a name
    # Junk over a stretch of an mp3: mpg123 resyncs, printing notes on fd 2 as it goes.
    damaged = bytearray(write_audio(library / "damaged.mp3", voice(seconds=10.0, formants_hz=(650.0, 1900.0))).read_bytes())
    damaged[len(damaged) * 2 // 3 : len(damaged) * 2 // 3 + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (library / "damaged.mp3").write_bytes(damaged)
    # A FIFO blocks whoever opens it for reading: a hang shows here as a timeout.
    result = run("analyze", str(library), "--data-dir", str(root / "data"), "--json", timeout=240)
    return library, root / "data", {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}


def test_a_file_name_that_is_not_utf8_is_analysed_and_shown_escaped(odd_library) -> None:
    library, data, analyze = odd_library
    assert analyze["returncode"] == 0, analyze["stderr"]
    assert json.loads(analyze["stdout"])["counts"] == {"analyzed": 6, "failed": 0, "pending": 0}
    status = run("status", str(library), "--data-dir", str(data), "--json")
    assert status.returncode == 0, status.stderr
    tracks = {t["path"]: t for t in json.loads(status.stdout)["tracks"]}
    assert tracks[LATIN1_SHOWN]["status"] == "analyzed"
    # As a query: the name as status shows it, and the real file.
    for query in (LATIN1_SHOWN, os.fsdecode(bytes(library) + b"/" + LATIN1_NAME)):
        answer = run("recommend", str(library), query, "-k", "3", "--data-dir", str(data), "--json")
        assert answer.returncode == 0, answer.stderr
        assert json.loads(answer.stdout)["query"] == LATIN1_SHOWN and len(json.loads(answer.stdout)["results"]) == 3
    # Among the results of another query (every other track asked for: how the name is shown is
    # checked here, not where the encoder ranks it), and in a playlist.
    answer = json.loads(run("recommend", str(library), "low/song0.wav", "-k", "5", "--data-dir", str(data), "--json").stdout)
    assert LATIN1_SHOWN in [r["path"] for r in answer["results"]]
    radio = run("radio", str(library), "low/song0.wav", "-n", "5", "--out", str(data / "r.m3u8"), "--data-dir", str(data))
    assert radio.returncode == 0, radio.stderr


def test_the_api_serves_a_track_whose_name_is_not_utf8(odd_library) -> None:
    from urllib.parse import quote

    from fastapi.testclient import TestClient

    from nextvox.api import create_app

    library, data, _ = odd_library
    with TestClient(create_app(library, data), raise_server_exceptions=False) as client:
        listed = client.get("/api/tracks", params={"q": "caf"}).json()["tracks"]
        assert [t["path"] for t in listed] == [LATIN1_SHOWN]
        audio = client.get("/api/audio/" + quote(LATIN1_SHOWN))
        assert audio.status_code == 200 and audio.content == Path(os.fsdecode(bytes(library) + b"/" + LATIN1_NAME)).read_bytes()


def test_a_fifo_named_like_a_song_is_skipped(odd_library) -> None:
    library, data, analyze = odd_library
    assert analyze["returncode"] == 0, analyze["stderr"]
    status = json.loads(run("status", str(library), "--data-dir", str(data), "--json").stdout)
    assert "pipe.mp3" not in {t["path"] for t in status["tracks"]}


def test_hashing_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    from nextvox.catalogue import content_hash

    os.mkfifo(tmp_path / "song.mp3")
    started = time.monotonic()
    with pytest.raises(OSError):
        content_hash(tmp_path / "song.mp3")
    assert time.monotonic() - started < 5


def test_time_limit_abandons_a_blocked_read(tmp_path: Path) -> None:
    from nextvox.processes import TimeLimitExceeded, time_limit

    os.mkfifo(tmp_path / "stalled.mp3")
    started = time.monotonic()
    with pytest.raises(TimeLimitExceeded), time_limit(0.5):
        open(tmp_path / "stalled.mp3", "rb")  # no writer: blocks until the alarm
    assert time.monotonic() - started < 5


def test_a_file_replaced_after_its_scan_leaves_no_result_under_the_old_hash(tmp_path: Path) -> None:
    """The scan hashed the old bytes; the file now holds others: nothing may be stored under the old hash."""
    from nextvox.analysis import EXCERPT_VERSION, AnalysisSettings, track_log_mel
    from nextvox.catalogue import content_hash
    from nextvox.errors import FileChangedError
    from nextvox.features import MelCache

    old = write_audio(tmp_path / "old.flac", voice(seconds=4.0, formants_hz=(400.0, 1200.0)))
    old_hash = content_hash(old)
    write_audio(old, voice(seconds=4.0, formants_hz=(900.0, 2600.0), seed=3))  # replaced in place
    settings = AnalysisSettings(separator="none")
    cache = MelCache(tmp_path / "cache", separator=settings.separator_version, excerpt_version=EXCERPT_VERSION)
    with pytest.raises(FileChangedError):
        track_log_mel(old, content_hash=old_hash, settings=settings, cache=cache)
    assert cache.load(old_hash) is None
    # Unchanged bytes analyse as before, and are cached under their own hash.
    new_hash = content_hash(old)
    track_log_mel(old, content_hash=new_hash, settings=settings, cache=cache)
    assert cache.load(new_hash) is not None


# ---- bad options ----------------------------------------------------------------------------------


def assert_one_line_error(result: subprocess.CompletedProcess, code: int) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("nextvox: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_separator_weights_it_cannot_use_are_one_error_and_fail_no_track(odd_library, tmp_path: Path) -> None:
    import nextvox

    library, data, _ = odd_library
    wrong = tmp_path / "separator.pt"
    wrong.write_bytes((Path(nextvox.__file__).parent / "weights" / "timbre.pt").read_bytes())  # another model's file
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model" * 100)
    for weights in (wrong, garbage):
        result = run("analyze", str(library), "--separator", "mask", "--separator-weights", str(weights), "--data-dir", str(data))
        assert_one_line_error(result, 1)
        assert "separator weights" in result.stderr
    status = json.loads(run("status", str(library), "--data-dir", str(data), "--json").stdout)
    assert status["counts"] == {"analyzed": 6, "failed": 0, "pending": 0}


@pytest.mark.parametrize("args", [
    ["--melody-weight", "nan"], ["--timbre-weight", "inf"], ["--melody-weight", "-inf"], ["--weights", "nan"],
    ["--timbre-weight", "0", "--melody-weight", "0"],
])
def test_weights_that_are_not_finite_or_both_zero_are_usage_errors(odd_library, args: list[str]) -> None:
    library, data, _ = odd_library
    assert_one_line_error(run("recommend", str(library), "low/song0.wav", *args, "--data-dir", str(data), "--json"), 2)


def test_the_library_refuses_weights_that_are_not_finite(odd_library) -> None:
    from nextvox.analysis import AnalysisSettings
    from nextvox.catalogue import Catalogue
    from nextvox.errors import NextvoxError
    from nextvox.recommend import recommend, resolve_query

    library, data, _ = odd_library
    with Catalogue(data, library=library, create=False) as catalogue:
        query = resolve_query(catalogue, Path("low/song0.wav"), settings=AnalysisSettings())
        for weights in ({"w_timbre": float("nan")}, {"w_melody": float("inf")}):
            with pytest.raises(NextvoxError, match="finite"):
                recommend(catalogue, [query], k=2, **weights)


# ---- decoder noise --------------------------------------------------------------------------------


def test_decoder_notes_go_to_the_log_not_to_stderr(odd_library) -> None:
    library, data, analyze = odd_library
    assert analyze["returncode"] == 0 and analyze["stderr"] == "", analyze["stderr"]
    assert "resync" in (data / "decoder.log").read_text(errors="replace")


@LINUX_PROC
def test_a_query_file_analysed_in_a_thread_leaves_the_process_stderr_alone(odd_library) -> None:
    """The server decodes uploads in threads: none may swap the process's fd 2 under the others."""
    import threading

    from nextvox.analysis import AnalysisSettings
    from nextvox.recommend import query_from_file

    library, _, _ = odd_library
    original = os.readlink("/proc/self/fd/2")
    seen = set()
    worker = threading.Thread(target=query_from_file, args=(library / "damaged.mp3",),
                              kwargs={"label": "upload", "settings": AnalysisSettings()})
    worker.start()
    while worker.is_alive():
        seen.add(os.readlink("/proc/self/fd/2"))
        time.sleep(0.001)
    assert seen <= {original} and os.readlink("/proc/self/fd/2") == original


# ---- contract gaps --------------------------------------------------------------------------------


def test_a_data_dir_inside_the_library_is_refused(odd_library) -> None:
    library, _, _ = odd_library
    result = run("analyze", str(library), "--data-dir", str(library / "low" / ".nextvox"))
    assert_one_line_error(result, 1)
    assert "inside the music folder" in result.stderr and not (library / "low" / ".nextvox").exists()


def test_plot_refuses_a_wrong_extension_before_projecting(odd_library, tmp_path: Path) -> None:
    library, data, _ = odd_library
    result = run("plot", str(library), "--by", "gender", "--out", str(tmp_path / "map.jpg"), "--data-dir", str(data))
    assert_one_line_error(result, 1)
    assert "plot:" not in result.stderr  # no projection step was started


def test_a_map_page_keeps_working_when_a_title_holds_script_markup() -> None:
    from html.parser import HTMLParser

    from nextvox.plots import EmbeddingMap, map_html

    hostile = ["<!--<script>", "</script><script>alert(1)</script>"]
    emap = EmbeddingMap(xy=np.array([[0.0, 0.0], [1.0, 1.0]]), paths=("a.mp3", "b&.mp3"), artists=("x", None),
                        titles=tuple(hostile), groups=("female", "male"), by="gender", embedding="timbre",
                        method="pca", model_version="v")

    class Scripts(HTMLParser):
        """The text of every <script> element, as a browser's tokenizer splits them."""

        def __init__(self) -> None:
            super().__init__()
            self.scripts: list[str] = []

        def handle_starttag(self, tag, attrs) -> None:
            if tag == "script":
                self.scripts.append("")

        def handle_data(self, data) -> None:
            if self.scripts and self.lasttag == "script":
                self.scripts[-1] += data

    parser = Scripts()
    parser.feed(map_html(emap, audio_url_template="/api/audio/{path}"))
    assert len(parser.scripts) == 2  # the data and the program: nothing swallowed, nothing added
    assert "<" not in parser.scripts[0]  # nothing in the data can start markup
    assert [p["title"] for p in json.loads(parser.scripts[0])["points"]] == hostile


def test_xspf_holds_no_character_xml_forbids() -> None:
    from xml.dom import minidom

    from nextvox.playlists import PlaylistEntry, to_xspf

    text = to_xspf([PlaylistEntry("/music/a.mp3", "nul\x00 and escape\x1b", "bell\x07", "\x01", 3.0)], title="t\x0c")
    document = minidom.parseString(text.encode("utf-8"))  # raises on a NUL or another forbidden character
    assert document.getElementsByTagName("title")[1].firstChild.data == "nul and escape"
    assert document.getElementsByTagName("creator")[0].firstChild.data == "bell"
    assert not document.getElementsByTagName("album")


def test_serve_on_a_busy_port_is_one_line_and_never_says_serving(odd_library) -> None:
    import socket

    library, data, _ = odd_library
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run("serve", str(library), "--no-analyze", "--port", str(port), "--data-dir", str(data), timeout=60)
    assert_one_line_error(result, 1)
    assert "serving" not in result.stderr and str(port) in result.stderr


def test_a_damaged_catalogue_page_is_one_line_that_says_what_to_do(odd_library, tmp_path: Path) -> None:
    import shutil

    library, data, _ = odd_library
    damaged = tmp_path / "data"
    shutil.copytree(data, damaged)
    catalogue = damaged / "catalogue.sqlite"
    with sqlite3.connect(catalogue) as db:
        page_bytes = db.execute("PRAGMA page_size").fetchone()[0]
        # The pages of the tracks table's rows, not the schema on page 1: found only when read.
        root_page = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'tracks'").fetchone()[0]
    with open(catalogue, "r+b") as f:
        f.seek((root_page - 1) * page_bytes)
        f.write(b"\xff" * page_bytes)
    result = run("status", str(library), "--data-dir", str(damaged))
    assert_one_line_error(result, 1)
    assert "damaged" in result.stderr and "internal error" not in result.stderr


def test_serve_on_port_0_says_its_port_checks_the_host_answers_head_and_stops_on_sigterm(odd_library, tmp_path: Path) -> None:
    import re
    import socket
    import urllib.error
    import urllib.request

    library, data, _ = odd_library
    log = (tmp_path / "stderr.txt").open("w")
    server = subprocess.Popen([*NEXTVOX, "serve", str(library), "--no-analyze", "--port", "0", "--data-dir", str(data)],
                              stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (found := re.search(r"http://127\.0\.0\.1:(\d+)/", (tmp_path / "stderr.txt").read_text())):
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.txt").read_text()
            time.sleep(0.1)
        port = int(found[1])
        assert port != 0
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as answer:
                    assert json.loads(answer.read())["status"] == "ok"
                break
            except ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("the server never answered")
        # Another name for this address (DNS rebinding from a web page) is refused.
        rebound = urllib.request.Request(f"http://127.0.0.1:{port}/api/health", headers={"Host": f"evil.example:{port}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=5)
        assert refused.value.code == 400
        # HEAD of a track's audio: its size and type, no body.
        head = urllib.request.Request(f"http://127.0.0.1:{port}/api/audio/low/song0.wav", method="HEAD")
        with urllib.request.urlopen(head, timeout=5) as answer:
            assert answer.status == 200 and answer.read() == b""
            assert int(answer.headers["content-length"]) == (library / "low/song0.wav").stat().st_size
        # An upload cut off mid-way (the client hangs up): no traceback, and the server goes on.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as upload:
            upload.sendall(b"POST /api/query?filename=me.mp3 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           b"Content-Type: audio/mpeg\r\nContent-Length: 200000\r\n\r\n" + b"\xff" * 5000)
            time.sleep(0.5)
        time.sleep(1.0)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as answer:
            assert answer.status == 200
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) in (0, 1)
        assert "Traceback" not in (tmp_path / "stderr.txt").read_text()
    finally:
        server.kill()


def test_the_page_plays_and_queries_a_track_named_with_question_mark_and_hash(odd_library) -> None:
    import re

    from fastapi.testclient import TestClient

    from nextvox.api import create_app

    library, data, _ = odd_library
    with TestClient(create_app(library, data), raise_server_exceptions=False) as client:
        [track] = client.get("/api/tracks", params={"q": "what"}).json()["tracks"]
        assert track["path"] == "what?#1.wav"
        audio = client.get(track["audio_url"])
        assert audio.status_code == 200 and audio.content == (library / "what?#1.wav").read_bytes()
        answer = client.post("/api/recommend", json={"history": [{"path": track["path"]}], "k": 2})
        assert answer.status_code == 200 and len(answer.json()["results"]) == 2
        # The page names its icon, and the server has it (no 404 for every visit).
        icon = re.search(r'<link rel="icon" href="([^"]+)"', client.get("/").text)
        assert icon and client.get(icon[1]).status_code == 200
        assert client.get(icon[1]).headers["content-type"].startswith("image/svg+xml")


def test_a_second_analyze_of_one_data_dir_is_told_what_is_happening(tmp_path: Path) -> None:
    library, data = tmp_path / "music", tmp_path / "data"
    make_library(library, songs_per_singer=4, seconds=30.0, formats=("flac", "mp3"))
    first = subprocess.Popen([*NEXTVOX, "analyze", str(library), "--data-dir", str(data), "--jobs", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while analysed_count(data) < 1 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        assert first.poll() is None, "the first run must still be going"
        # Held mid-run (its whole process group stopped, the lock still taken), so a fast
        # analysis cannot finish before the second run looks.
        os.killpg(first.pid, signal.SIGSTOP)
        second = run("analyze", str(library), "--data-dir", str(data))
        assert first.poll() is None, "the first run must still be going"
        assert_one_line_error(second, 1)
        assert f"process {first.pid}" in second.stderr and "analysing this library" in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # Killed outright, the first run leaves no lock behind.
    result = run("analyze", str(library), "--data-dir", str(data), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["analyzed"] == 12


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only tmpfs needs root (as root, a chmod would not stop writes)")
def test_status_reads_a_catalogue_on_a_read_only_mount(odd_library, tmp_path: Path) -> None:
    import shutil

    library, data, _ = odd_library
    mounted = tmp_path / "ro"
    mounted.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mounted)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        shutil.copytree(data, mounted / "data", ignore=shutil.ignore_patterns("index"))  # no stored vector index
        subprocess.run(["mount", "-o", "remount,ro", str(mounted)], check=True)
        result = run("status", str(library), "--data-dir", str(mounted / "data"), "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["counts"] == {"analyzed": 6, "failed": 0, "pending": 0}
        query = next(t["path"] for t in json.loads(result.stdout)["tracks"] if t["status"] == "analyzed")
        # A query there builds its index in memory (nothing can be written) and answers.
        found = run("recommend", str(library), query, "--data-dir", str(mounted / "data"), "--json", "-k", "3")
        assert found.returncode == 0, found.stderr
        assert len(json.loads(found.stdout)["results"]) == 3
    finally:
        subprocess.run(["umount", "-l", str(mounted)], check=True)
