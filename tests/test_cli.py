"""The command-line contract: exit codes, one-line errors, --json on stdout, interruption."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factories import analysed_count, make_library

NEXTVOX = [sys.executable, "-m", "nextvox"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*NEXTVOX, *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, code: int) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("nextvox: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("cli")
    labels = make_library(root / "music", songs_per_singer=3, seconds=5.0)
    result = run("analyze", str(root / "music"), "--data-dir", str(root / "data"), "--json")
    assert result.returncode == 0, result.stderr
    return root / "music", root / "data", labels


def test_analyze_json_is_one_document(analysed: tuple[Path, Path, dict]) -> None:
    library, data, _ = analysed
    result = run("analyze", str(library), "--data-dir", str(data), "--json")
    summary = json.loads(result.stdout)
    assert summary["analyzed_now"] == 0 and summary["counts"]["analyzed"] == 9


def test_status_json_matches_the_contract(analysed: tuple[Path, Path, dict]) -> None:
    library, data, labels = analysed
    status = json.loads(run("status", str(library), "--data-dir", str(data), "--json").stdout)
    assert {t["path"] for t in status["tracks"]} == set(labels)
    assert all(t["status"] == "analyzed" and t["error"] is None for t in status["tracks"])


def test_recommend_json_finds_the_same_voice_first(analysed: tuple[Path, Path, dict]) -> None:
    library, data, labels = analysed
    result = run("recommend", str(library), "low/song0.wav", "-k", "2", "--data-dir", str(data), "--json")
    answer = json.loads(result.stdout)
    assert answer["query"] == "low/song0.wav"
    paths = [r["path"] for r in answer["results"]]
    assert paths and "low/song0.wav" not in paths
    assert {labels[p] for p in paths} == {"low"}  # the other two songs of that voice
    for r in answer["results"]:
        assert {"score", "timbre_similarity", "melody_similarity", "reason"} <= set(r)


def test_recommend_from_an_outside_file_and_a_history(analysed: tuple[Path, Path, dict], tmp_path: Path) -> None:
    library, data, labels = analysed
    outside = tmp_path / "me.flac"
    outside.write_bytes((library / "mid/song0.flac").read_bytes())
    answer = json.loads(run("recommend", str(library), str(outside), "--data-dir", str(data), "--json").stdout)
    # The same recording inside the library is not a recommendation; the same voice is.
    assert "mid/song0.flac" not in [r["path"] for r in answer["results"]]
    assert labels[answer["results"][0]["path"]] == "mid"
    history = json.loads(run("recommend", str(library), "high/song0.mp3", "high/song1.wav", "-k", "1",
                             "--data-dir", str(data), "--json").stdout)
    assert history["query"] == ["high/song0.mp3", "high/song1.wav"]
    assert [r["path"] for r in history["results"]] == ["high/song2.flac"]


# The keys of every --json document (DESIGN.md's contract): a key may be added, never renamed or dropped.
ANALYZE_KEYS = {"files", "new", "changed", "moved", "removed", "analyzed_now", "failed_now", "audio_s", "wall_s",
                "x_real_time", "seconds_per_stage", "counts", "gender_note"}
STATUS_KEYS = {"library", "counts", "gender", "tracks"}
STATUS_TRACK_KEYS = {"path", "status", "error", "artist", "title", "album", "genre", "duration_s"}
RESULT_KEYS = {"path", "score", "timbre_similarity", "melody_similarity", "reason", "artist", "title", "album", "genre",
               "tags", "gender", "duration_s"}


def test_json_documents_keep_their_keys(analysed: tuple[Path, Path, dict], tmp_path: Path) -> None:
    library, data, labels = analysed
    summary = json.loads(run("analyze", str(library), "--data-dir", str(data), "--json").stdout)
    assert ANALYZE_KEYS <= set(summary)
    assert {"decode", "separation", "features", "inference", "write"} <= set(summary["seconds_per_stage"])
    assert {"analyzed", "failed", "pending"} <= set(summary["counts"])
    status = json.loads(run("status", str(library), "--data-dir", str(data), "--json").stdout)
    assert STATUS_KEYS <= set(status) and {"head", "predicted", "note"} <= set(status["gender"])
    assert all(STATUS_TRACK_KEYS <= set(t) for t in status["tracks"])
    answer = json.loads(run("recommend", str(library), "low/song0.wav", "--data-dir", str(data), "--json").stdout)
    assert {"query", "results"} <= set(answer) and all(RESULT_KEYS <= set(r) for r in answer["results"])
    radio = json.loads(run("radio", str(library), "low/song0.wav", "-n", "3", "--out", str(tmp_path / "r.m3u8"),
                           "--data-dir", str(data), "--json").stdout)
    assert {"seed", "out", "tracks"} <= set(radio) and all(RESULT_KEYS <= set(r) for r in radio["tracks"])
    high = next(p for p, singer in labels.items() if singer == "high")
    path = json.loads(run("path", str(library), "low/song0.wav", high, "-n", "4", "--data-dir", str(data),
                          "--json").stdout)
    assert {"from", "to", "out", "tracks"} <= set(path) and all(RESULT_KEYS <= set(r) for r in path["tracks"])


@pytest.mark.parametrize(
    "args, code",
    [
        (["analyze"], 2),  # missing argument
        (["analyze", ".", "--jobs", "zero"], 2),
        (["recommend", "LIB", "q.mp3", "-k", "0"], 2),
        (["frobnicate"], 2),
        (["analyze", "/no/such/folder"], 1),
        (["status", "/no/such/folder"], 1),
    ],
)
def test_errors_are_one_line_with_the_contract_exit_code(args: list[str], code: int) -> None:
    assert_one_line_error(run(*args), code)


def test_recommend_errors(analysed: tuple[Path, Path, dict], tmp_path: Path) -> None:
    library, data, _ = analysed
    assert_one_line_error(run("recommend", str(library), "missing.mp3", "--data-dir", str(data)), 1)
    (tmp_path / "junk.mp3").write_text("not audio")
    assert_one_line_error(run("recommend", str(library), str(tmp_path / "junk.mp3"), "--data-dir", str(data)), 1)
    fresh = tmp_path / "fresh"
    assert_one_line_error(run("recommend", str(library), "low/song0.wav", "--data-dir", str(fresh)), 1)


def test_help_of_every_command_names_data_dir() -> None:
    for command in ("demo", "analyze", "status", "recommend", "evaluate", "radio", "serve", "plot",
                    "train timbre", "train separator", "train gender", "path", "mpd", "subsonic map", "subsonic serve"):
        result = run(*command.split(), "--help")
        assert result.returncode == 0 and "--data-dir" in result.stdout, command


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_analyze_resumes_without_redoing_tracks(tmp_path: Path, how: signal.Signals) -> None:
    library, data = tmp_path / "music", tmp_path / "data"
    make_library(library, songs_per_singer=10, seconds=30.0, formats=("flac", "mp3"))
    total = 30
    # As from a terminal: Ctrl-C acts even when this suite runs where SIGINT is ignored (a
    # background job of a script), which the child would otherwise inherit.
    process = subprocess.Popen([*NEXTVOX, "analyze", str(library), "--data-dir", str(data), "--jobs", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    while analysed_count(data) < 2 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    if how == signal.SIGINT:
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    else:
        os.killpg(process.pid, signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    done_before = analysed_count(data)
    assert 0 < done_before < total, "the run must be cut mid-way for this test to mean anything"
    if how == signal.SIGINT:
        assert process.returncode == 1 and "interrupted" in stderr and "Traceback" not in stderr
    with sqlite3.connect(data / "catalogue.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    result = run("analyze", str(library), "--data-dir", str(data), "--json")
    summary = json.loads(result.stdout)
    assert summary["analyzed_now"] == total - done_before  # no finished track redone
    assert summary["counts"] == {"analyzed": total, "failed": 0, "pending": 0}


def _worker_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_a_worker_killed_mid_track_is_replaced_and_its_track_redone(tmp_path: Path) -> None:
    """What the OOM killer or a decoder crash does: one worker dies; the run goes on."""
    library, data = tmp_path / "music", tmp_path / "data"
    make_library(library, songs_per_singer=4, seconds=30.0, formats=("flac", "mp3"))
    process = subprocess.Popen([*NEXTVOX, "analyze", str(library), "--data-dir", str(data), "--jobs", "1", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while analysed_count(data) < 1 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    workers = _worker_pids(process.pid)
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["counts"] == {"analyzed": 12, "failed": 0, "pending": 0}


def test_version() -> None:
    from nextvox import __version__

    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"nextvox {__version__}", result


def test_the_data_dir_of_analyze_is_remembered_and_named_in_hints(analysed: tuple[Path, Path, dict], tmp_path: Path) -> None:
    library, data, labels = analysed
    # `analyze --data-dir DATA` ran first: later commands find DATA without being told.
    status = run("status", str(library), "--json")
    assert status.returncode == 0, status.stderr
    assert {t["path"] for t in json.loads(status.stdout)["tracks"]} == set(labels)
    answer = run("recommend", str(library), "low/song0.wav", "-k", "1", "--json")
    assert answer.returncode == 0 and json.loads(answer.stdout)["results"], answer.stderr
    # A data dir with no catalogue: the hint keeps the user's --data-dir.
    fresh = tmp_path / "other data"
    result = run("status", str(library), "--data-dir", str(fresh))
    assert_one_line_error(result, 1)
    assert f"nextvox analyze {library} --data-dir {shlex.quote(str(fresh))}" in result.stderr.replace("\n", "")  # ready to paste


def test_a_query_may_be_words_with_did_you_mean(analysed: tuple[Path, Path, dict]) -> None:
    library, data, _ = analysed
    answer = run("recommend", str(library), "low song0", "-k", "2", "--data-dir", str(data), "--json")
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["query"] == "low/song0.wav"
    several = run("recommend", str(library), "song0", "--data-dir", str(data))
    assert_one_line_error(several, 1)
    assert "matches 3 tracks" in several.stderr
    misspelt = run("recommend", str(library), "lwo song0", "--data-dir", str(data))
    assert_one_line_error(misspelt, 1)
    assert "did you mean 'low/song0.wav'?" in misspelt.stderr


def test_recommend_from_stored_vectors_never_loads_torch(analysed: tuple[Path, Path, dict]) -> None:
    """Importing torch is most of a stored-vector query's time (about 4 s of 5 when it was imported)."""
    library, data, _ = analysed
    script = ("import sys\nfrom nextvox.cli import main\n"
              f"code = main(['recommend', {str(library)!r}, 'low/song0.wav', '--melody-weight', '0.5', '--data-dir', {str(data)!r}, '--json'])\n"
              "print('torch loaded' if 'torch' in sys.modules else 'no torch', code, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert json.loads(result.stdout)["results"], result.stderr
    assert result.stderr.strip().endswith("no torch 0"), result.stderr


def test_plot_says_what_it_is_doing(analysed: tuple[Path, Path, dict], tmp_path: Path) -> None:
    library, data, _ = analysed
    result = run("plot", str(library), "--by", "genre", "--method", "pca", "--out", str(tmp_path / "map.png"), "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert "plot: projecting 9 timbre vectors to 2-D with PCA" in result.stderr and "plot: drawing 9 points" in result.stderr


def test_radio_playlists_travel(analysed: tuple[Path, Path, dict], tmp_path: Path) -> None:
    library, data, _ = analysed
    out = tmp_path / "lists" / "radio.m3u8"
    out.parent.mkdir()
    result = run("radio", str(library), "low/song0.wav", "-n", "3", "--out", str(out), "--relative", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    locations = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert len(locations) == 3 and all(not Path(p).is_absolute() and (out.parent / p).resolve().is_file() for p in locations)
    xspf = tmp_path / "radio.xspf"
    result = run("radio", str(library), "low/song0.wav", "-n", "3", "--out", str(xspf), "--path-prefix", "http://nas/music",
                 "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert xspf.read_text().count("<location>http://nas/music/") == 3
    both = run("radio", str(library), "low/song0.wav", "--out", str(xspf), "--relative", "--path-prefix", "/x", "--data-dir", str(data))
    assert_one_line_error(both, 2)


def test_an_option_group_reaches_its_command_as_one_value() -> None:
    from dataclasses import dataclass

    import click
    from click.testing import CliRunner

    from nextvox.cli.common import option_group

    @dataclass(frozen=True)
    class Pair:
        left: int
        right: str | None

    pair_options = option_group("pair", Pair, [click.option("--left", type=int, default=1), click.option("--right")])
    seen = []

    @click.command()
    @click.option("--other", default="x")
    @pair_options
    def command(other: str, pair: Pair) -> None:
        seen.append((other, pair))

    assert CliRunner().invoke(command, ["--right", "r", "--other", "o"]).exit_code == 0
    assert seen == [("o", Pair(left=1, right="r"))]
    assert "--left" in CliRunner().invoke(command, ["--help"]).output
