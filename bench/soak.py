"""Soak test: ``analyze`` killed with SIGKILL at random moments, over a library with odd files.

    .venv/bin/python bench/soak.py [--kills 20] [--seed 0] [--jobs 2] [--work DIR]

Renders a small demo library (16 songs) and adds the files a real music folder holds: a name
that is not UTF-8, a FIFO named like a song, an empty file, random bytes, a truncated copy
and an mp3 with junk over a stretch. A clean run analyses it into one data directory. Then,
into another, ``nextvox analyze`` is started again and again and its main process alone is
killed (``kill -9``, as the OOM killer does) at a random moment between its start and the
clean run's wall time; once runs end before that (nothing left to analyse), the window
shrinks to the length of the last run, so that every round is a kill, during the scan or
even at start-up. After every kill it checks that:

- ``PRAGMA integrity_check`` of the catalogue says ``ok``;
- no process the run had started (workers, the resource tracker) is alive 10 s later.

A last run goes to the end, and its catalogue must equal the clean run's: the same tracks
with the same status, content hash and failure reason, and the same vectors.
Prints the table it writes to ``bench/results/soak.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nextvox.catalogue import decode_vector  # noqa: E402
from nextvox.synth import render_library  # noqa: E402

# Seconds a process started by a killed run may take to notice and end.
HELPERS_GRACE_S = 10.0


def build_library(work: Path) -> Path:
    """16 rendered songs under ``songs/`` plus six odd files; returns the library folder."""
    library = work / "demo" / "songs"
    odd = library / "odd"
    if not library.is_dir():  # rendered once per work folder
        render_library(work / "demo", n_singers=4, n_songs=4, seed=3, max_song_s=30.0)
    shutil.rmtree(odd, ignore_errors=True)
    songs = sorted(p for p in library.rglob("*") if p.is_file())
    odd.mkdir()
    # An old Latin-1 rip: the name's bytes are not UTF-8.
    shutil.copyfile(songs[0], os.fsdecode(bytes(odd) + b"/caf\xe9 \xff" + songs[0].suffix.encode()))
    os.mkfifo(odd / "pipe.mp3")
    (odd / "empty.mp3").write_bytes(b"")
    (odd / "noise.flac").write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    (odd / f"truncated{songs[1].suffix}").write_bytes(songs[1].read_bytes()[: songs[1].stat().st_size * 2 // 5])
    mp3 = next((p for p in songs if p.suffix == ".mp3"), None)
    if mp3 is not None:
        damaged = bytearray(mp3.read_bytes())
        middle = len(damaged) // 2
        damaged[middle : middle + 4000] = np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()
        (odd / "damaged.mp3").write_bytes(bytes(damaged))
    return library


def analyze_command(library: Path, data: Path, jobs: int) -> list[str]:
    return [sys.executable, "-m", "nextvox", "analyze", str(library), "--data-dir", str(data), "--jobs", str(jobs), "--json"]


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children ...), from /proc."""
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def integrity(data: Path) -> str:
    if not (data / "catalogue.sqlite").exists():
        return "no catalogue yet"
    with sqlite3.connect(data / "catalogue.sqlite", timeout=30) as db:
        return db.execute("PRAGMA integrity_check").fetchone()[0]


def analysed_count(data: Path) -> int:
    try:
        with sqlite3.connect(data / "catalogue.sqlite", timeout=30) as db:
            return db.execute("SELECT COUNT(*) FROM tracks WHERE status = 'analyzed'").fetchone()[0]
    except sqlite3.Error:
        return 0


def snapshot(data: Path) -> tuple[list[tuple], dict[tuple[str, str], np.ndarray]]:
    """The catalogue's tracks (path, status, hash, reason) and every vector by (hash, name)."""
    with sqlite3.connect(data / "catalogue.sqlite") as db:
        tracks = db.execute("SELECT path, status, content_hash, error FROM tracks ORDER BY path").fetchall()
        vectors = {(h, name): decode_vector(blob, encoding=encoding)
                   for h, name, blob, encoding in db.execute("SELECT content_hash, name, vector, encoding FROM vectors")}
    return tracks, vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, help="Working folder (default: a temporary one, removed at the end).")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="nextvox-soak-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = np.random.default_rng(args.seed)

    library = build_library(work)
    n_files = sum(1 for p in library.rglob("*") if p.is_file() or p.is_fifo())
    clean = work / "clean"
    shutil.rmtree(clean, ignore_errors=True)
    started = time.monotonic()
    subprocess.run(analyze_command(library, clean, args.jobs), env=env, cwd=ROOT, check=True, capture_output=True)
    clean_wall_s = time.monotonic() - started
    print(f"clean run: {clean_wall_s:.1f} s for {n_files} files", flush=True)

    soak = work / "soak"
    shutil.rmtree(soak, ignore_errors=True)
    rows, outlived, damaged = [], 0, 0
    window_s = clean_wall_s
    for round_ in range(1, 3 * args.kills + 1):
        if sum(row[2] == "killed" for row in rows) == args.kills:
            break
        kill_at_s = float(rng.uniform(0.2, window_s))
        run = subprocess.Popen(analyze_command(library, soak, args.jobs), env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        started = time.monotonic()
        helpers: set[int] = set()
        while time.monotonic() - started < kill_at_s and run.poll() is None:
            helpers |= descendants(run.pid)
            time.sleep(0.05)
        finished = run.poll() is not None
        if finished:
            window_s = max(0.5, time.monotonic() - started)  # nothing left to do: kill within a run's length
        else:
            helpers |= descendants(run.pid)
            os.kill(run.pid, signal.SIGKILL)  # the main process alone
        run.wait()
        deadline = time.monotonic() + HELPERS_GRACE_S
        while time.monotonic() < deadline and any(alive(p) for p in helpers):
            time.sleep(0.1)
        left = [p for p in helpers if alive(p)]
        for pid in left:  # count them, then clean up so that the next round starts alike
            os.kill(pid, signal.SIGKILL)
        check = integrity(soak)
        outlived += len(left)
        damaged += check not in ("ok", "no catalogue yet")
        rows.append((round_, f"{kill_at_s:.1f}", "finished first" if finished else "killed", len(helpers), len(left),
                     analysed_count(soak), check))
        print(" | ".join(map(str, rows[-1])), flush=True)

    final = subprocess.run(analyze_command(library, soak, args.jobs), env=env, cwd=ROOT, capture_output=True, text=True)
    clean_tracks, clean_vectors = snapshot(clean)
    soak_tracks, soak_vectors = snapshot(soak)
    same_tracks = clean_tracks == soak_tracks
    same_keys = clean_vectors.keys() == soak_vectors.keys()
    max_difference = max((float(np.abs(clean_vectors[k] - soak_vectors[k]).max()) for k in clean_vectors if k in soak_vectors),
                         default=0.0)
    statuses = {}
    for _, status, _, _ in soak_tracks:
        statuses[status] = statuses.get(status, 0) + 1

    lines = [
        "# Soak: `analyze` killed with SIGKILL at random moments",
        "",
        f"`bench/soak.py --kills {args.kills} --seed {args.seed} --jobs {args.jobs}`, {datetime.date.today()}: "
        f"{n_files} files (16 rendered songs; a non-UTF-8 name, a FIFO, an empty file, random bytes, a truncated "
        f"copy, a damaged mp3). The clean run took {clean_wall_s:.1f} s; each round kills the main process alone "
        f"at a random moment up to that time.",
        "",
        "| round | killed at (s) | run | helper processes seen | alive 10 s after | analysed so far | integrity_check |",
        "|---:|---:|---|---:|---:|---:|---|",
        *[f"| {' | '.join(map(str, row))} |" for row in rows],
        "",
        "| check | result |",
        "|---|---|",
        f"| rounds killed mid-run | {sum(row[2] == 'killed' for row in rows)} of {len(rows)} |",
        f"| processes that outlived their run | {outlived} |",
        f"| integrity_check other than ok | {damaged} |",
        f"| final run's exit status | {final.returncode} |",
        f"| final catalogue: tracks, status, hash and reason equal to the clean run's | {'yes' if same_tracks else 'NO'} |",
        f"| final catalogue: the same vectors | {'yes' if same_keys else 'NO'}, largest difference {max_difference:.2g} |",
        f"| final counts | {', '.join(f'{n} {s}' for s, n in sorted(statuses.items()))} |",
    ]
    if not same_tracks:
        lines += ["", "Tracks that differ (clean, then soak):", "",
                  *[f"- {a} / {b}" for a, b in zip(clean_tracks, soak_tracks) if a != b]]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "bench" / "results" / "soak.md"
    out.write_text(text)
    print(f"written to {out}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(0 if same_tracks and same_keys and not outlived and not damaged and final.returncode == 0 else 1)


if __name__ == "__main__":
    main()
