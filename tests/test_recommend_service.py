"""Recommending over a real catalogue with known vectors: filters, diversity, history weights,
near-duplicates, reasons, the approximate index, radio order and playlist export."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nextvox.errors import NextvoxError
from nextvox.playlists import playlist_entries, radio, to_m3u8, write_playlist
from nextvox.recommend import Diversity, Filters, Recommender

from service_factories import make_catalogue, voice_songs

ARTISTS = {  # artist: (genre, stored probability of a female voice; None: no gender stored)
    "ann": ("folk", 0.9), "bob": ("rock", 0.1), "cat": ("folk", 0.8), "dan": ("jazz", 0.2), "eve": ("rock", None),
}


def _music(root: Path) -> Path:
    """An empty music folder beside the data directory (a data directory inside the library is refused)."""
    (root / "music").mkdir(exist_ok=True)
    return root / "music"


@pytest.fixture(scope="module")
def recommender(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    songs = voice_songs(artists=ARTISTS, songs_per_artist=6)
    # ann/song5 is the same recording as ann/song0 in another format: same fingerprint, nearly the same voice.
    songs[5] = replace(songs[5], timbre=songs[0].timbre + 0.01, fingerprint=songs[0].fingerprint * 1.01)
    return Recommender(make_catalogue(tmp_path_factory.mktemp("service"), songs))


def artist_of(path: str) -> str:
    return path.split("/")[0]


def test_same_voice_first_with_reasons_and_no_near_duplicate(recommender: Recommender) -> None:
    results = recommender.recommend([recommender.track_query("ann/song0.wav")], k=4, diversity=Diversity(per_artist=None))
    paths = [r.path for r in results]
    assert "ann/song0.wav" not in paths and "ann/song5.wav" not in paths  # itself, and its other encoding
    assert {artist_of(p) for p in paths} == {"ann"}
    first = results[0]
    assert first.melody_similarity is None and "timbre" in first.reason and "voice" in first.tags[0]
    assert "same genre: folk" in first.tags and "same gender: female" in first.tags


def test_per_artist_cap_and_mmr(recommender: Recommender) -> None:
    query = [recommender.track_query("ann/song0.wav")]
    capped = recommender.recommend(query, k=6, diversity=Diversity(per_artist=2))
    counts = {a: [artist_of(r.path) for r in capped].count(a) for a in ARTISTS}
    assert max(counts.values()) <= 2 and len(capped) == 6
    plain = recommender.recommend(query, k=5, diversity=Diversity(per_artist=None))
    varied = recommender.recommend(query, k=5, diversity=Diversity(mmr_lambda=0.3, per_artist=None))
    assert len({artist_of(r.path) for r in varied}) > len({artist_of(r.path) for r in plain})


def test_filters(recommender: Recommender) -> None:
    query = [recommender.track_query("ann/song0.wav")]
    no_ann = recommender.recommend(query, k=10, filters=Filters(exclude_query_artists=True))
    assert no_ann and "ann" not in {artist_of(r.path) for r in no_ann}
    others = recommender.recommend(query, k=10, filters=Filters(exclude_artists=frozenset({"CAT"})))
    assert "cat" not in {artist_of(r.path) for r in others}
    heard = frozenset({"ann/song1.wav", "ann/song2.wav"})
    assert not heard & {r.path for r in recommender.recommend(query, k=10, filters=Filters(heard=heard))}
    rock = recommender.recommend(query, k=10, filters=Filters(genres=frozenset({"Rock"})))
    assert rock and {r.genre for r in rock} == {"rock"}
    # Gender: male voices only; eve has no stored gender and is kept, never guessed.
    male = recommender.recommend(query, k=30, filters=Filters(gender="male"), diversity=Diversity(per_artist=None))
    assert {artist_of(r.path) for r in male} == {"bob", "dan", "eve"}
    assert {r.gender for r in male} == {"male", None}
    with pytest.raises(NextvoxError, match="gender"):
        recommender.recommend(query, filters=Filters(gender="robot"))


def test_history_weights_pull_towards_the_heavier_voice(recommender: Recommender) -> None:
    def top_artist(weight_ann: float, weight_bob: float) -> str:
        history = [recommender.track_query("ann/song0.wav", weight=weight_ann), recommender.track_query("bob/song0.wav", weight=weight_bob)]
        return artist_of(recommender.recommend(history, k=1, diversity=Diversity(per_artist=None))[0].path)

    assert top_artist(10.0, 1.0) == "ann" and top_artist(1.0, 10.0) == "bob"


def test_bad_arguments_are_nextvox_errors(recommender: Recommender) -> None:
    query = [recommender.track_query("ann/song0.wav")]
    for kwargs in ({"k": 0}, {"w_timbre": 0.0, "w_melody": 0.0}, {"diversity": Diversity(mmr_lambda=2.0)},
                   {"diversity": Diversity(per_artist=0)}):
        with pytest.raises(NextvoxError):
            recommender.recommend(query, **kwargs)
    with pytest.raises(NextvoxError, match="no such track"):
        recommender.track_query("nobody/song.wav")


def test_approximate_index_gives_the_exact_answers(recommender: Recommender) -> None:
    approximate = Recommender(recommender.catalogue, exact_max_vectors=10)
    assert approximate.timbre.kind == "ivf"
    query = [recommender.track_query("dan/song3.wav")]
    exact = [r.path for r in recommender.recommend(query, k=5, diversity=Diversity(per_artist=None))]
    assert [r.path for r in approximate.recommend(query, k=5, diversity=Diversity(per_artist=None))] == exact


def test_radio_follows_the_voice_without_back_to_back_artists(recommender: Recommender) -> None:
    songs = radio(recommender, [recommender.track_query("ann/song0.wav")], n=20)
    paths = [r.path for r in songs]
    assert len(paths) == 20 and len(set(paths)) == 20 and "ann/song0.wav" not in paths
    artists = [artist_of(p) for p in paths]
    assert all(a != b for a, b in zip(artists, artists[1:]))
    # It follows the voice: the seed singer's other songs (not its near-duplicate) come early, every other song.
    assert sorted(p for p in paths[:8] if artist_of(p) == "ann") == [f"ann/song{i}.wav" for i in range(1, 5)]
    # Only one artist left: the radio stops rather than repeat it back to back.
    only_bob = radio(recommender, [recommender.track_query("ann/song0.wav")], n=10,
                     filters=Filters(genres=frozenset({"rock"}), exclude_artists=frozenset({"eve"})))
    assert len(only_bob) == 1
    with pytest.raises(NextvoxError):
        radio(recommender, [recommender.track_query("ann/song0.wav")], n=0)


def test_playlist_export(recommender: Recommender, tmp_path: Path) -> None:
    songs = radio(recommender, [recommender.track_query("bob/song0.wav")], n=3)
    entries = playlist_entries(songs, library=recommender.catalogue.library)
    text = to_m3u8(entries, title="bob radio")
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U" and lines[2].startswith("#EXTINF:30,") and Path(lines[3]).is_file()
    write_playlist(entries, tmp_path / "radio.xspf", title="bob radio")
    tree = ElementTree.parse(tmp_path / "radio.xspf")
    ns = {"x": "http://xspf.org/ns/0/"}
    locations = [e.text for e in tree.findall(".//x:track/x:location", ns)]
    assert len(locations) == 3 and all(loc.startswith("file:///") for loc in locations)
    assert tree.find(".//x:track/x:duration", ns).text == "30000"
    with pytest.raises(NextvoxError, match="m3u8 or .xspf"):
        write_playlist(entries, tmp_path / "radio.txt", title="x")
    urls = playlist_entries(songs, library=recommender.catalogue.library, base_url="http://127.0.0.1:8000/api/audio")
    assert urls[0].location.startswith("http://127.0.0.1:8000/api/audio/bob%2F") or "/api/audio/" in urls[0].location


def test_cli_radio_and_recommend_filters(recommender: Recommender, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from nextvox.cli import main

    library, data = str(recommender.catalogue.library), str(recommender.catalogue.data_dir)
    out = tmp_path / "radio.m3u8"
    assert main(["radio", library, "ann/song0.wav", "-n", "5", "--out", str(out), "--data-dir", data]) == 0
    assert out.read_text().startswith("#EXTM3U") and out.read_text().count("#EXTINF") == 5
    heard = tmp_path / "heard.m3u8"
    heard.write_text("#EXTM3U\nann/song1.wav\n" + str(recommender.catalogue.library / "ann/song2.wav") + "\n")
    capsys.readouterr()
    assert main(["recommend", library, "ann/song0.wav", "--heard", str(heard), "--per-artist", "0", "--genre", "folk",
                 "--json", "--data-dir", data]) == 0
    paths = [r["path"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert paths and not {"ann/song1.wav", "ann/song2.wav"} & set(paths) and {artist_of(p) for p in paths} <= {"ann", "cat"}
    assert main(["radio", library, "ann/song0.wav", "--out", str(tmp_path / "radio.txt"), "--data-dir", data]) == 2
    assert main(["recommend", library, "ann/song0.wav", "ann/song1.wav", "--weights", "1", "--data-dir", data]) == 2


def _tune_library(tmp_path: Path) -> Recommender:
    """150 songs of 15 singers, each with its own tune, but the first and last songs share one (the last by singer 14)."""
    from nextvox.catalogue import Catalogue

    rng = np.random.default_rng(3)
    catalogue = Catalogue(tmp_path / "data", library=_music(tmp_path))
    voices = rng.standard_normal((15, 32))
    tune = rng.standard_normal((7 * 40, 16))  # 7 keys x 40 steps x 16 channels
    for i in range(150):
        singer, is_cover = i // 10, i == 149  # the last song: the query's tune, by singer 14
        sequence = tune + 0.3 * rng.standard_normal(tune.shape) if is_cover or i == 0 else rng.standard_normal(tune.shape)
        melody = tune[:40].ravel() if is_cover or i == 0 else rng.standard_normal(640)
        catalogue.record_analysis(
            f"{i:032x}", analysis_version="a", duration_s=30.0, excerpt_start_s=0.0, excerpt_s=30.0,
            vectors={"timbre": ("t", voices[singer] + 0.2 * rng.standard_normal(32)), "melody": ("m", melody)},
            sequences={"melody": ("m", sequence)},
        )
    with catalogue.transaction() as db:
        db.executemany("INSERT INTO tracks VALUES (?, ?, 1, 1, ?, NULL, NULL, NULL, 'analyzed', NULL)",
                       [(f"s{i // 10}/song{i}.wav", f"{i:032x}", f"s{i // 10}") for i in range(150)])
    return Recommender(catalogue)


def test_a_melody_weight_finds_the_same_tune_in_another_voice(tmp_path: Path) -> None:
    """The melody index brings a far voice singing the query's tune into the pool; its sequence match ranks it first."""
    recommender = _tune_library(tmp_path)
    query = [recommender.track_query("s0/song0.wav")]
    by_voice = recommender.recommend(query, k=3, diversity=Diversity(per_artist=None))
    assert {r.artist for r in by_voice} == {"s0"}  # the voice alone: the same singer
    by_tune = recommender.recommend(query, k=3, w_melody=2.0, diversity=Diversity(per_artist=None))
    assert by_tune[0].path == "s14/song149.wav" and by_tune[0].melody_similarity > 0.8
    assert "note by note" in by_tune[0].reason and all(r.melody_similarity < 0.5 for r in by_tune[1:])


def test_only_the_best_of_the_melody_pool_as_sung_are_matched_in_every_key(tmp_path: Path) -> None:
    """The two-stage pool answers as matching every candidate in every key does here, from fewer full matches."""
    recommender = _tune_library(tmp_path)
    query = [recommender.track_query("s0/song0.wav")]
    options = dict(k=3, w_melody=0.5, diversity=Diversity(per_artist=None))
    two_stage, share = recommender.recommend(query, **options), recommender.full_match_share
    every = Recommender(recommender.catalogue, full_match_share=1.0).recommend(query, **options)
    assert [(r.path, r.score, r.melody_similarity) for r in two_stage] == [(r.path, r.score, r.melody_similarity) for r in every]

    def matched(r) -> int:  # the songs matched note by note, the query's own left out
        return int(re.search(r"of the (\d+) songs matched note by note", r.reason).group(1))

    pool = matched(every[0]) + 1  # every pooled candidate with a sequence, the query's own included
    assert matched(two_stage[0]) == max(2 * 3, math.ceil(share * pool)) - 1 < pool - 1


def test_player_paths_are_looked_up_in_the_catalogue_as_in_a_path_set(recommender: Recommender) -> None:
    from nextvox.integrations.library_paths import CataloguePaths, PathSet, matching_library_path

    in_memory = PathSet(t.path for t in recommender.catalogue.tracks())
    looked_up = CataloguePaths(recommender)
    player_paths = ["ann/song1.wav", "/srv/Music/bob/song2.wav", "song3.wav", "n/song3.wav", "ANN/song1.wav", "", "x/y.wav"]
    found = [matching_library_path(p, looked_up) for p in player_paths]
    assert found == [matching_library_path(p, in_memory) for p in player_paths]
    assert found == ["ann/song1.wav", "bob/song2.wav", "ann/song3.wav", None, None, None, None]  # first in path order; case counts
    assert "tracks_by_path" not in recommender.__dict__  # nothing listed the library


def test_a_server_sees_a_change_committed_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nextvox.api.service as service_module
    from nextvox.api.service import LibraryService
    from nextvox.catalogue import Catalogue

    monkeypatch.setattr(service_module, "REFRESH_INTERVAL_S", 0.0)
    beside = make_catalogue(tmp_path, voice_songs(artists=ARTISTS, songs_per_artist=2))
    service = LibraryService(beside.library, beside.data_dir)
    try:
        first = service.recommender()
        assert service.recommender() is first  # nothing changed: the same recommender
        ann = beside.track("ann/song0.wav")
        beside.record_failure(error="re-analysis failed", content_hash=ann.content_hash)  # another connection commits
        with Catalogue(beside.data_dir, library=beside.library) as reader:
            assert reader.track("ann/song0.wav").status == "failed"
        assert service.recommender() is not first
    finally:
        service.close()
        beside.close()


def test_a_query_by_words_is_found_in_the_catalogue_with_case_folding(tmp_path: Path) -> None:
    from nextvox.recommend import track_by_words

    songs = voice_songs(artists={"ann": ("folk", None), "bob": ("rock", None)}, songs_per_artist=2)
    songs.append(replace(songs[0], path="ann/Straße.wav"))
    catalogue = make_catalogue(tmp_path, songs)
    try:
        assert track_by_words(catalogue, "STRASSE").path == "ann/Straße.wav"  # casefold, not SQLite's ASCII-only lower()
        assert track_by_words(catalogue, "bob song1").path == "bob/song1.wav"
        with pytest.raises(NextvoxError, match="matches 3 tracks"):
            track_by_words(catalogue, "ann")
        with pytest.raises(NextvoxError, match="did you mean 'bob — song1'"):
            track_by_words(catalogue, "bob sogn1")
    finally:
        catalogue.close()


def test_a_server_lists_tracks_without_words_from_the_catalogue_as_its_search_would(tmp_path: Path) -> None:
    from nextvox.api.service import LibraryService, TrackSearch

    songs = voice_songs(artists=ARTISTS, songs_per_artist=3)
    catalogue = make_catalogue(tmp_path, songs)
    catalogue.record_failure(error="broken", content_hash=catalogue.track("bob/song1.wav").content_hash)
    service = LibraryService(catalogue.library, catalogue.data_dir)
    try:
        search = TrackSearch(catalogue.tracks())
        for status, offset, limit in ((None, 0, 100), (None, 4, 5), ("analyzed", 2, 3), ("failed", 0, 10), (None, 50, 10)):
            total, page = service.find_tracks("", status=status, offset=offset, limit=limit)
            expected_total, expected = search.find("", status=status, offset=offset, limit=limit)
            assert (total, page) == (expected_total, expected)
        assert service._search is None  # noqa: SLF001 - listing without words built no search over every track
        assert service.find_tracks("ann song2")[0] == 1
    finally:
        service.close()
        catalogue.close()
