"""`analyze --engine ray`: the same catalogue as the local engine, on a local Ray instance and on
a real two-node Ray cluster on loopback (two `ray start` processes with one CPU each).

Ray runs for real here. Its processes belong to this module: the local instance lives and dies
with each `nextvox analyze` process, the cluster with the module-scoped fixture, which ends the
`ray start --block` processes it started (and their process groups) and nothing else.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from factories import analysed_count, make_library, write_audio

from nextvox.catalogue import decode_sequence, decode_vector
from nextvox.distributed import local_cluster, map_on_ray

NEXTVOX = [sys.executable, "-m", "nextvox"]
ROOT = Path(__file__).resolve().parent.parent
N_GOOD = 12
BAD_FILES = {"bad/empty.mp3": "empty file (0 bytes)", "bad/notes.wav": None, "bad/silent.wav": "silent"}


def _catalogue(data: Path) -> dict:
    """Everything an analysis stores, keyed so that two catalogues compare: tracks, analyses, vectors, sequences."""
    with sqlite3.connect(data / "catalogue.sqlite") as db:
        tracks = {p: (h, s, e) for p, h, s, e in db.execute("SELECT path, content_hash, status, error FROM tracks")}
        analyses = {h: (v, d, s, x) for h, v, d, s, x in db.execute(
            "SELECT content_hash, analysis_version, duration_s, excerpt_start_s, excerpt_s FROM analyses")}
        vectors = {(h, n): (v, decode_vector(b, encoding=e)) for h, n, v, b, e in db.execute(
            "SELECT content_hash, name, model_version, vector, encoding FROM vectors")}
        sequences = {(h, n): (v, decode_sequence(b, encoding=e, n_channels=c).ravel()) for h, n, v, b, e, c in db.execute(
            "SELECT content_hash, name, model_version, sequence, encoding, n_channels FROM sequences")}
    return {"tracks": tracks, "analyses": analyses, "vectors": vectors, "sequences": sequences}


def assert_same_catalogue(ours: dict, reference: dict) -> None:
    """Same tracks, statuses, reasons, versions and excerpts; the same vectors and sequences up to rounding.

    Rounding: a track whose spectrogram an interrupted run had cached is embedded from the
    float16 cache, not from the float32 spectrogram (both engines do so), and inference runs in bf16.
    Stored sequences are integer levels (int4 since catalogue schema 3: -7 ... 7 a row), so such a
    difference may move a value by one level where it sat near a rounding boundary, never more.
    """
    assert ours["tracks"] == reference["tracks"]  # same statuses, same failure reasons
    assert ours["analyses"] == reference["analyses"]  # same versions, durations and excerpts
    for kind in ("vectors", "sequences"):
        assert ours[kind].keys() == reference[kind].keys()
        for key, (version, expected) in reference[kind].items():
            got_version, got = ours[kind][key]
            assert got_version == version
            got, expected = got.astype(np.float64), expected.astype(np.float64)
            cosine = got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected))
            assert cosine > 0.999, (key, cosine)
            if kind == "vectors":
                assert np.abs(got - expected).max() <= 0.01 * np.abs(expected).max(), key
            else:
                assert np.abs(got - expected).max() <= 1, key  # one stored level; the cosine bounds the rest


def _analyze(library: Path, data: Path, *extra: str, env: dict | None = None) -> dict:
    result = subprocess.run([*NEXTVOX, "analyze", str(library), "--data-dir", str(data), "--json", *extra],
                            capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 songs of 30 s (three singers, flac/mp3/wav) and three files that cannot be analysed."""
    root = tmp_path_factory.mktemp("ray-library") / "music"
    make_library(root, songs_per_singer=4, seconds=30.0, formats=("flac", "mp3", "wav"))
    (root / "bad").mkdir()
    (root / "bad/empty.mp3").write_bytes(b"")
    (root / "bad/notes.wav").write_text("this is a text file, not audio\n" * 20)
    write_audio(root / "bad/silent.wav", np.zeros(5 * 16_000, dtype=np.float32), rate_hz=16_000)
    return root


@pytest.fixture(scope="module")
def local_catalogue(library: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The local engine's catalogue of ``library``: what the Ray engine must reproduce."""
    data = tmp_path_factory.mktemp("local-engine") / "data"
    summary = _analyze(library, data, "--jobs", "2")
    assert summary["counts"] == {"analyzed": N_GOOD, "failed": len(BAD_FILES), "pending": 0}
    catalogue = _catalogue(data)
    for path, reason in BAD_FILES.items():
        _, status, error = catalogue["tracks"][path]
        assert status == "failed" and error and "\n" not in error and (reason is None or reason in error)
    return catalogue


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[tuple[str, dict]]:
    """A two-node Ray cluster on loopback, one CPU per node: (address, environment for its drivers)."""
    with local_cluster(n_nodes=2, cpus_per_node=1, pythonpath=str(ROOT)) as (address, env):
        yield address, env


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- without a cluster -------------------------------------------------------------------------


def test_without_ray_the_error_says_how_to_install(library: Path, tmp_path: Path) -> None:
    # `sys.modules["ray"] = None` makes `import ray` fail exactly as when it is not installed.
    code = ("import sys; sys.modules['ray'] = None; from nextvox.cli import main; "
            f"sys.exit(main(['analyze', {str(library)!r}, '--data-dir', {str(tmp_path / 'data')!r}, '--engine', 'ray']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "nextvox: error: the Ray engine needs Ray Data, which is not installed: pip install 'nextvox[ray]'"]


def test_ray_address_errors_are_one_line(library: Path, tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    usage = subprocess.run([*NEXTVOX, "analyze", str(library), "--data-dir", data, "--ray-address", "127.0.0.1:1"],
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert usage.returncode == 2 and usage.stderr.strip() == "nextvox: error: --ray-address needs --engine ray"
    started = time.monotonic()
    nobody = subprocess.run([*NEXTVOX, "analyze", str(library), "--data-dir", data, "--engine", "ray",
                             "--ray-address", f"127.0.0.1:{unused_port()}"], capture_output=True, text=True, timeout=120)
    assert nobody.returncode == 1 and len(nobody.stderr.strip().splitlines()) == 1
    assert "no Ray cluster answers at 127.0.0.1:" in nobody.stderr
    assert time.monotonic() - started < 60  # not Ray's minutes of retries


# ---- a local Ray instance ----------------------------------------------------------------------


@pytest.mark.slow
def test_local_ray_instance_gives_the_local_engines_catalogue(library: Path, local_catalogue: dict, tmp_path: Path) -> None:
    data = tmp_path / "data"
    summary = _analyze(library, data, "--engine", "ray", "--jobs", "2")
    assert summary["engine"] == "ray"
    assert (summary["analyzed_now"], summary["failed_now"]) == (N_GOOD, len(BAD_FILES))
    assert sum(summary["tracks_per_node"].values()) == N_GOOD + len(BAD_FILES)
    assert_same_catalogue(_catalogue(data), local_catalogue)

    again = _analyze(library, data, "--engine", "ray", "--jobs", "2")
    assert (again["analyzed_now"], again["failed_now"], again["tracks_per_node"]) == (0, 0, {})


# ---- a two-node cluster ------------------------------------------------------------------------


@pytest.mark.slow
def test_two_node_cluster_survives_a_killed_driver_and_uses_both_nodes(
    library: Path, local_catalogue: dict, ray_cluster: tuple[str, dict], tmp_path: Path
) -> None:
    address, env = ray_cluster
    data = tmp_path / "data"
    driver = subprocess.Popen([*NEXTVOX, "analyze", str(library), "--data-dir", str(data), "--engine", "ray",
                               "--ray-address", address, "--json"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while analysed_count(data) < 2 and time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.05)
    driver.kill()  # kill -9 of the driver, mid-job
    driver.communicate(timeout=60)
    done_before = analysed_count(data)
    assert 0 < done_before < N_GOOD, "the run must be cut mid-way for this test to mean anything"
    with sqlite3.connect(data / "catalogue.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    summary = _analyze(library, data, "--engine", "ray", "--ray-address", address, env=env)
    assert summary["analyzed_now"] == N_GOOD - done_before  # no finished track redone
    assert summary["counts"] == {"analyzed": N_GOOD, "failed": len(BAD_FILES), "pending": 0}
    per_node = summary["tracks_per_node"]
    assert len(per_node) == 2 and all(n > 0 for n in per_node.values()), per_node  # both nodes worked
    assert_same_catalogue(_catalogue(data), local_catalogue)


# ---- an item that kills its worker -------------------------------------------------------------


def upper_unless_poison(name: str) -> str:
    """Stands for a file whose decoder crashes the process (a segfault, the OOM killer)."""
    if name == "poison":
        os._exit(1)
    return name.upper()


@pytest.mark.slow
def test_an_item_that_kills_its_actor_is_lost_alone(capfd: pytest.CaptureFixture) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    names = ["a", "b", "poison", "c", "d", "e", "f", "g"]
    results = {r.item["name"]: r for r in map_on_ray([{"name": n} for n in names], key="name",
                                                     function=upper_unless_poison, actors=2)}  # fmt: skip
    assert sorted(results) == sorted(names)
    assert results["poison"].lost and results["poison"].result is None
    assert all(results[n].result == n.upper() and not results[n].lost for n in names if n != "poison")
    assert "Traceback" not in capfd.readouterr().err  # Ray's retries are logged to its files, not the console
