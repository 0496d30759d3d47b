"""The scan at scale: what it lists, what it hashes, what an unchanged library costs, and bulk writes.

These use small files named like audio (no decoding happens in a scan) and analyses written
straight into the catalogue, so they run in a second.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nextvox.catalogue import Catalogue, StoredAnalysis, scan, scan_library

VERSION = "v1"


def write_song(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def analysis(digest: str, *, version: str = VERSION, seed: int = 0) -> StoredAnalysis:
    rng = np.random.default_rng(seed)
    return StoredAnalysis(digest, analysis_version=version, duration_s=30.0, excerpt_start_s=0.0, excerpt_s=30.0,
                          vectors={"timbre": ("t1", rng.standard_normal(8).astype(np.float32))},
                          sequences={"melody": ("m1", rng.standard_normal((6, 4)).astype(np.float32))})  # fmt: skip


@pytest.fixture()
def music(tmp_path: Path) -> Path:
    root = tmp_path / "music"
    write_song(root / "b/one.mp3", "one")
    write_song(root / "a/two.FLAC", "two")
    write_song(root / "a/deeper/three.ogg", "three")
    write_song(root / "a/notes.txt", "not audio")
    write_song(root / ".hidden/four.mp3", "hidden folder")
    write_song(root / "a/.five.mp3", "hidden file")
    write_song(root / "skipped/six.mp3", "a folder marked .nomedia")
    write_song(root / "skipped/.nomedia", "")
    return root


def test_the_listing_keeps_audio_names_in_name_order_and_skips_hidden_marked_and_linked_folders(music: Path) -> None:
    os.symlink(music / "b", music / "link-to-b")  # a link to a folder is not followed (a loop would never end)
    os.symlink(music / "b/one.mp3", music / "b/link.mp3")  # a link to a file is a file
    listed = [rel for rel, _ in scan.audio_files(music)]
    assert listed == ["a/two.FLAC", "a/deeper/three.ogg", "b/link.mp3", "b/one.mp3"]  # a folder's files, then its folders


def test_an_unchanged_rescan_hashes_nothing_and_touches_no_analysis(music: Path, tmp_path: Path, monkeypatch) -> None:
    with Catalogue(tmp_path / "data", library=music) as catalogue:
        first = scan_library(catalogue, analysis_version=VERSION)
        assert (first.total, first.new) == (3, 3)
        catalogue.record_analyses(analysis(t.content_hash, seed=i) for i, t in enumerate(catalogue.tracks()))
        generation = catalogue.vectors_generation("timbre")

        def no_hashing(path: Path) -> str:
            raise AssertionError(f"an unchanged file was hashed: {path}")

        monkeypatch.setattr(scan, "content_hash", no_hashing)
        again = scan_library(catalogue, analysis_version=VERSION)
        assert (again.total, again.unchanged, again.new, again.changed, again.removed) == (3, 3, 0, 0, 0)
        assert catalogue.status_counts() == {"analyzed": 3, "failed": 0, "pending": 0}
        assert catalogue.vectors_generation("timbre") == generation
        assert catalogue.contents_to_analyse(VERSION) == {}


def test_a_changed_or_removed_file_drops_only_analyses_no_track_holds(music: Path, tmp_path: Path) -> None:
    shutil.copy(music / "b/one.mp3", music / "b/copy.mp3")  # one content, two files
    with Catalogue(tmp_path / "data", library=music) as catalogue:
        scan_library(catalogue, analysis_version=VERSION)
        catalogue.record_analyses(analysis(digest) for digest in {t.content_hash for t in catalogue.tracks()})
        shared = catalogue.track("b/one.mp3").content_hash
        old_two = catalogue.track("a/two.FLAC").content_hash

        (music / "b/one.mp3").unlink()  # its copy still holds the content
        write_song(music / "a/two.FLAC", "two, sung again")  # a new content: the old one has no track left
        os.utime(music / "a/two.FLAC", ns=(1, 1))
        report = scan_library(catalogue, analysis_version=VERSION)

        assert (report.removed, report.changed) == (1, 1)
        assert catalogue.track("b/copy.mp3").status == "analyzed"
        assert set(catalogue.vectors_for("timbre", [shared, old_two])) == {shared}
        assert catalogue.analysis_version(old_two) is None and catalogue.sequences("melody", [old_two]) == {}
        assert catalogue.contents_to_analyse(VERSION) == {catalogue.track("a/two.FLAC").content_hash: "a/two.FLAC"}


def test_contents_to_analyse_names_pending_stale_and_on_request_failed_ones(music: Path, tmp_path: Path) -> None:
    with Catalogue(tmp_path / "data", library=music) as catalogue:
        scan_library(catalogue, analysis_version=VERSION)
        three, two, one = (catalogue.track(p).content_hash for p in ("a/deeper/three.ogg", "a/two.FLAC", "b/one.mp3"))
        catalogue.record_analysis(three, **{k: v for k, v in vars(analysis(three, version="old")).items() if k != "content_hash"})
        catalogue.record_failure(content_hash=two, error="cannot decode")
        assert catalogue.contents_to_analyse(VERSION) == {three: "a/deeper/three.ogg", one: "b/one.mp3"}
        assert catalogue.contents_to_analyse(VERSION, retry_failed=True) == {three: "a/deeper/three.ogg", two: "a/two.FLAC",
                                                                             one: "b/one.mp3"}  # fmt: skip
        assert list(catalogue.contents_to_analyse("old")) == [one]


def test_a_batch_of_analyses_is_one_transaction(music: Path, tmp_path: Path) -> None:
    with Catalogue(tmp_path / "data", library=music) as catalogue:
        scan_library(catalogue, analysis_version=VERSION)
        hashes = [t.content_hash for t in catalogue.tracks()]
        broken = StoredAnalysis(hashes[2], analysis_version=VERSION, duration_s=1.0, excerpt_start_s=0.0, excerpt_s=1.0,
                                vectors={"timbre": ("t1", np.zeros(8, np.float32))}, sequences={"melody": ("m1", np.zeros(4))})  # fmt: skip
        with pytest.raises(IndexError):  # a 1-d "sequence" fails midway through the batch ...
            catalogue.record_analyses([analysis(hashes[0]), analysis(hashes[1]), broken])
        assert catalogue.status_counts()["analyzed"] == 0  # ... and nothing of it was kept
        catalogue.record_analyses([analysis(h, seed=i) for i, h in enumerate(hashes)])
        assert catalogue.status_counts()["analyzed"] == 3
        stored = catalogue.sequences("melody", hashes)
        assert all(stored[h][1].shape == (6, 4) for h in hashes)
