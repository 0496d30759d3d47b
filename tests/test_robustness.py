"""Hostile but realistic use: kills at odd moments, odd files, bad options, abusive requests.

Each test here stands for a defect once found: nothing indexed is lost, nothing hangs, and
every failure is one clear line or an HTTP 4xx.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from factories import make_library

NEXTVOX = [sys.executable, "-m", "nextvox"]
LINUX_PROC = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*NEXTVOX, *args], capture_output=True, text=True, timeout=timeout)


def _analysed_count(data: Path) -> int:
    try:
        with sqlite3.connect(data / "catalogue.sqlite", timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM tracks WHERE status = 'analyzed'").fetchone()[0]
    except sqlite3.Error:
        return 0


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
        while _analysed_count(data) < 1 and time.monotonic() < deadline and process.poll() is None:
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
