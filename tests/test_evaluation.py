"""Evaluation: metrics against hand-computed cases, the melody rule, chance levels, labels checks, end to end."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from factories import voice, write_audio
from nextvox.models.timbre import DEFAULT_WEIGHTS, TimbreConfig, TimbreEncoder, save_weights, weights_version
from nextvox.models.tcae import DEFAULT_WEIGHTS as TCAE_WEIGHTS
from nextvox.models.tcae import weights_version as tcae_weights_version
from nextvox.errors import NextvoxError
from nextvox.gender import shipped_head
from nextvox.evaluation import (
    expected_random_average_precision,
    evaluate_library,
    format_table,
    gender_cross_validation,
    melody_retrieval,
    ranking_scores,
    read_labels,
    singer_retrieval,
    transposition_invariant_similarity,
)


def one_ranking(relevant_in_rank_order: list[int], *, k: int = 5):
    """Scores of one query whose candidates are ranked in the given order (1 = relevant)."""
    n = len(relevant_in_rank_order)
    similarity = np.arange(n, 0, -1, dtype=float)[None, :]  # strictly decreasing: rank order = list order
    return ranking_scores(similarity, relevant=np.array([relevant_in_rank_order], bool), candidates=np.ones((1, n), bool), k=k)


# ---- average precision and precision@k -------------------------------------------------------

def test_average_precision_of_a_ranking_worked_out_on_paper():
    # Ranking: miss, HIT, miss, HIT, miss. Precision at each hit: 1/2 at rank 2, 2/4 at rank 4.
    # AP = (1/2 + 2/4) / 2 = 0.5. P@5 = 2/5 = 0.4; P@2 = 1/2.
    scores = one_ranking([0, 1, 0, 1, 0])
    assert scores.average_precision[0] == pytest.approx(0.5)
    assert scores.precision_at_k[0] == pytest.approx(0.4)
    assert one_ranking([0, 1, 0, 1, 0], k=2).precision_at_k[0] == pytest.approx(0.5)


def test_average_precision_perfect_and_worst():
    assert one_ranking([1, 1, 0, 0]).average_precision[0] == pytest.approx(1.0)
    # Both hits last of 4: (1/3 + 2/4) / 2 = 5/12.
    assert one_ranking([0, 0, 1, 1]).average_precision[0] == pytest.approx(5 / 12)


def test_ranking_follows_similarity_not_column_order():
    # Candidates in columns a, b, c, d with similarities 0.1, 0.9, 0.5, 0.3; only a is relevant.
    # a ranks 4th: AP = 1/4.
    scores = ranking_scores(np.array([[0.1, 0.9, 0.5, 0.3]]), relevant=np.array([[1, 0, 0, 0]], bool),
                            candidates=np.ones((1, 4), bool))
    assert scores.average_precision[0] == pytest.approx(0.25)


def test_ties_give_no_credit():
    # All four candidates tie; the one relevant item is ranked after the three others.
    scores = ranking_scores(np.zeros((1, 4)), relevant=np.array([[0, 1, 0, 0]], bool), candidates=np.ones((1, 4), bool))
    assert scores.average_precision[0] == pytest.approx(0.25)
    assert scores.precision_at_k[0] == pytest.approx(0.25)


def test_non_candidates_are_not_ranked_and_rows_without_relevant_are_not_queries():
    similarity = np.array([[0.9, 0.1, 0.5], [0.9, 0.1, 0.5]])
    relevant = np.array([[1, 1, 0], [1, 0, 0]], bool)
    candidates = np.array([[False, True, True], [False, True, True]])
    scores = ranking_scores(similarity, relevant=relevant, candidates=candidates)
    # Row 0 ranks c (0.5) then b (0.1, relevant): AP 1/2; the left-out a does not count.
    assert scores.average_precision[0] == pytest.approx(0.5)
    assert scores.precision_at_k[0] == pytest.approx(0.5)  # 2 candidates < k: precision over 2
    assert np.isnan(scores.average_precision[1])
    assert scores.n_queries == 1


# ---- chance levels ---------------------------------------------------------------------------

@pytest.mark.parametrize(("n_relevant", "n_candidates"), [(1, 4), (2, 5), (3, 6), (5, 5)])
def test_expected_random_average_precision_is_exact(n_relevant, n_candidates):
    # Average AP over every distinct placement of the relevant items among the candidates.
    placements = list(itertools.combinations(range(n_candidates), n_relevant))
    relevant = np.zeros((len(placements), n_candidates), bool)
    for row, ranks in enumerate(placements):
        relevant[row, list(ranks)] = True
    similarity = np.tile(np.arange(n_candidates, 0, -1, dtype=float), (len(placements), 1))
    scores = ranking_scores(similarity, relevant=relevant, candidates=np.ones_like(relevant))
    expected = expected_random_average_precision(np.array([n_relevant]), np.array([n_candidates]))[0]
    assert expected == pytest.approx(scores.average_precision.mean())
    assert scores.chance_average_precision[0] == pytest.approx(expected)
    # P@k of a random ranking: the share of relevant candidates.
    assert scores.precision_at_k.mean() == pytest.approx(n_relevant / n_candidates)
    assert scores.chance_precision_at_k[0] == pytest.approx(n_relevant / n_candidates)


def test_one_relevant_among_four_by_hand():
    # E[1/rank] over ranks 1..4 = (1 + 1/2 + 1/3 + 1/4) / 4 = 25/48.
    assert expected_random_average_precision(np.array([1]), np.array([4]))[0] == pytest.approx(25 / 48)


# ---- singer and melody rules -----------------------------------------------------------------

def test_singer_retrieval_leaves_the_query_out():
    singers = np.array(["a", "a", "b", "b"])
    # Each track is most similar to itself (1.0); were it not left out, AP would differ.
    similarity = np.array([
        [1.0, 0.2, 0.8, 0.1],  # a0: ranks b0 (0.8), a1 (0.2), b1: AP 1/2
        [0.2, 1.0, 0.1, 0.3],  # a1: ranks b1, a0, b0: AP 1/2
        [0.8, 0.1, 1.0, 0.9],  # b0: ranks b1 first: AP 1
        [0.1, 0.3, 0.9, 1.0],  # b1: ranks b0 first: AP 1
    ])
    scores = singer_retrieval(similarity, singers=singers)
    np.testing.assert_allclose(scores.average_precision, [0.5, 0.5, 1.0, 1.0])
    assert scores.means()["map"] == pytest.approx(0.75)
    # Blocks of rows give the same scores as the full matrix.
    block = singer_retrieval(similarity[2:], singers=singers, query_indices=np.array([2, 3]))
    np.testing.assert_allclose(block.average_precision, [1.0, 1.0])


def test_melody_rule_excludes_the_query_singers_own_tracks():
    singers = np.array(["a", "a", "b", "b", "c"])
    melodies = np.array(["x", "y", "x", "z", "y"])
    similarity = np.array([
        # a's own y-track (col 1) is the most similar to a/x; it must not count either way.
        [1.0, 0.95, 0.2, 0.9, 0.3],   # a/x: candidates b/x .2, b/z .9, c/y .3 -> b/x ranks 3rd: AP 1/3
        [0.95, 1.0, 0.1, 0.2, 0.4],   # a/y: candidates b/x .1, b/z .2, c/y .4 -> c/y 1st: AP 1
        [0.2, 0.1, 1.0, 0.5, 0.3],    # b/x: candidates a/x .2, a/y .1, c/y .3 -> a/x 2nd: AP 1/2
        [0.9, 0.2, 0.5, 1.0, 0.6],    # b/z: nobody else sang z: not a query
        [0.3, 0.4, 0.3, 0.6, 1.0],    # c/y: candidates a/x .3, a/y .4, b/x .3, b/z .6 -> a/y 2nd: AP 1/2
    ])
    scores = melody_retrieval(similarity, singers=singers, melodies=melodies)
    np.testing.assert_allclose(scores.average_precision, [1 / 3, 1.0, 0.5, np.nan, 0.5])
    assert scores.n_queries == 4


def test_unknown_melody_is_never_a_query_or_a_match():
    singers = np.array(["a", "b", "c"])
    melodies = np.array(["", "", "x"])
    scores = melody_retrieval(np.eye(3), singers=singers, melodies=melodies)
    assert scores.n_queries == 0


def test_transposition_invariant_similarity_ignores_the_key():
    rng = np.random.default_rng(0)
    profile = rng.random((1, 12))
    other = rng.random((1, 12))
    transposed = np.roll(profile, 5, axis=1)
    assert transposition_invariant_similarity(profile, transposed)[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert transposition_invariant_similarity(profile, other)[0, 0] < 0.999


# ---- gender ----------------------------------------------------------------------------------

def test_gender_head_is_tested_on_unseen_singers():
    rng = np.random.default_rng(1)
    singers = np.repeat(np.arange(6), 4)
    genders = np.where(singers % 2 == 0, "female", "male")
    # Gender in feature 0; feature 1 identifies the singer only.
    features = np.stack([np.where(genders == "female", 1.0, -1.0) + 0.1 * rng.standard_normal(24), singers * 1.0], axis=1)
    scores = gender_cross_validation(features, genders=genders, singers=singers)
    assert scores == {"accuracy": 1.0, "balanced_accuracy": 1.0}
    # Features that only name the singer say nothing about an unseen singer's gender.
    identity_only = np.eye(6)[singers]
    assert gender_cross_validation(identity_only, genders=genders, singers=singers)["balanced_accuracy"] <= 0.5


def test_gender_needs_two_genders():
    with pytest.raises(ValueError):
        gender_cross_validation(np.zeros((4, 2)), genders=np.array(["male"] * 4), singers=np.array([0, 0, 1, 1]))


# ---- labels CSV ------------------------------------------------------------------------------

def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_labels_are_read_leniently_but_checked(tmp_path):
    labels = read_labels(write_csv(tmp_path / "l.csv", " Path ,Singer,genre\n./a/x.wav,ann,pop\n\nb.wav,bob,rock\n"), library=tmp_path)
    assert labels.paths == ["a/x.wav", "b.wav"]
    assert labels.line_numbers == [2, 4]
    assert list(labels.singers) == ["ann", "bob"]
    assert not labels.has_gender and not labels.has_melody
    absolute = read_labels(write_csv(tmp_path / "m.csv", f"path,singer\n{tmp_path / 'a.wav'},ann\n"), library=tmp_path)
    assert absolute.paths == ["a.wav"]


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty file"),
    ("file,singer\na.wav,ann\n", "no 'path' column"),
    ("path,gender\na.wav,male\n", "no 'singer' column"),
    ("path,singer\n", "no labelled tracks"),
    ("path,singer\na.wav,ann,extra\n", "line 2: 3 fields, but the header has 2"),
    ("path,singer\na.wav\n", "line 2: 1 fields"),
    ("path,singer\n,ann\n", "line 2: empty path"),
    ("path,singer\na.wav,ann\nb.wav, \n", "line 3: empty singer"),
    ("path,singer,gender\na.wav,ann,alto\n", "gender 'alto' is not one of: female, male"),
    ("path,singer\na.wav,ann\n./a.wav,bob\n", "a.wav is listed twice (first on line 2)"),
    ("path,singer\n../a.wav,ann\n", "is not a path inside the library"),
    ("path,singer\n/elsewhere/a.wav,ann\n", "is outside the library"),
])
def test_bad_labels_files_say_what_is_wrong(tmp_path, text, message):
    with pytest.raises(NextvoxError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_labels(write_csv(tmp_path / "labels.csv", text), library=tmp_path)


def test_missing_labels_file(tmp_path):
    with pytest.raises(NextvoxError, match="labels file not found"):
        read_labels(tmp_path / "nope.csv", library=tmp_path)


# ---- end to end ------------------------------------------------------------------------------

SINGERS = {  # name: (formants Hz, f0 Hz, gender)
    "ann": ((350.0, 2300.0, 3300.0), 260.0, "female"),
    "bea": ((400.0, 2000.0, 3000.0), 240.0, "female"),
    "carl": ((500.0, 1000.0, 2400.0), 120.0, "male"),
    "dan": ((700.0, 1800.0, 2900.0), 140.0, "male"),
}


@pytest.fixture(scope="module")
def tiny_library(tmp_path_factory):
    """4 singers x 3 tunes of 4 s (the tune is the note sequence: the seed), plus one broken file."""
    root = tmp_path_factory.mktemp("evaluation-library")
    rows = []
    for name, (formants_hz, f0_hz, gender) in SINGERS.items():
        for tune in range(3):
            rel = f"{name}/tune{tune}.wav"
            write_audio(root / rel, voice(seconds=4.0, formants_hz=formants_hz, f0_hz=f0_hz, seed=tune))
            rows.append([rel, name, gender, f"tune{tune}"])
    (root / "broken.wav").write_bytes(b"RIFF but not audio")
    rows.append(["broken.wav", "eve", "female", "tune0"])
    with open(root / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "singer", "gender", "melody"])
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def evaluated(tiny_library, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("evaluation-data")
    stages: list[tuple[str, int, int]] = []
    result = evaluate_library(tiny_library, tiny_library / "labels.csv", data_dir=data_dir, jobs=2,
                              progress=lambda *event: stages.append(event))
    return result, data_dir, stages


def test_evaluate_library_result_has_the_contract_shape(evaluated):
    result, _, stages = evaluated
    json.dumps(result, allow_nan=False)  # valid JSON: no NaN
    assert result["n_tracks"] == 12 and result["n_singers"] == 4
    assert result["n_failed"] == 1 and result["failed"][0]["path"] == "broken.wav"
    assert set(result["embeddings"]) == {"timbre", "melody", "melody_vector", "combined", "mfcc", "resemblyzer", "chroma"}
    for row in result["embeddings"].values():
        assert {"singer_map", "singer_p_at_5", "melody_map"} <= set(row)
    assert set(result["gender"]) == {*result["embeddings"], "default_head"}
    assert set(result["gender"]["mfcc"]) >= {"leave_one_singer_out_accuracy", "balanced_accuracy"}
    assert ("baselines", 12, 12) in stages


def test_missing_embeddings_say_so_instead_of_numbers(evaluated):
    result, _, _ = evaluated
    # The melody rows are the shipped TCAE's, with its version: the sequence match, and the vector alone.
    melody, vector = result["embeddings"]["melody"], result["embeddings"]["melody_vector"]
    assert melody["model_version"] == vector["model_version"] == tcae_weights_version(TCAE_WEIGHTS)
    assert melody["note"] == "the melody sequences' match (local alignment, best of 7 relative keys)" and melody["singer_map"] is not None
    assert vector["singer_map"] is not None and vector["melody_map"] != melody["melody_map"]
    head_row, head = result["gender"]["default_head"], shipped_head()
    if head is None:
        assert head_row["accuracy"] is None and "no shipped gender head" in head_row["note"]
    elif head.timbre_model_version == weights_version(DEFAULT_WEIGHTS):  # the shipped head, as is, on unseen voices
        assert 0.0 <= head_row["accuracy"] <= 1.0 and head_row["version"] == head.version
    else:  # never a prediction from vectors of a timbre model the head does not know
        assert head_row["accuracy"] is None and "not measured" in head_row["note"]
    # The timbre row is the learned encoder's, and names the shipped weights' version.
    assert result["embeddings"]["timbre"]["model_version"] == weights_version(DEFAULT_WEIGHTS)
    assert "note" not in result["embeddings"]["timbre"]


def test_baselines_are_real_and_beat_chance(evaluated):
    result, _, _ = evaluated
    chance = result["chance"]
    # 12 tracks, 4 singers: each query has 2 relevant among 11 candidates.
    assert chance["singer_p_at_5"] == pytest.approx(2 / 11)
    assert chance["singer_map"] == pytest.approx(float(expected_random_average_precision(np.array([2]), np.array([11]))[0]))
    assert chance["gender_accuracy"] == pytest.approx(0.5)
    for name in ("mfcc", "resemblyzer", "timbre"):
        assert result["embeddings"][name]["singer_map"] > chance["singer_map"] + 0.3, name
    assert result["gender"]["mfcc"]["balanced_accuracy"] > 0.5
    # With w_melody = 0 the recommender's score ranks exactly like timbre.
    assert result["embeddings"]["combined"]["singer_map"] == pytest.approx(result["embeddings"]["timbre"]["singer_map"])


def test_second_run_reads_baselines_from_the_cache(tiny_library, evaluated):
    first, data_dir, _ = evaluated
    stages: list[tuple[str, int, int]] = []
    again = evaluate_library(tiny_library, tiny_library / "labels.csv", data_dir=data_dir, jobs=2,
                             progress=lambda *event: stages.append(event))
    assert [s for s in stages if s[0] == "baselines"] == [("baselines", 0, 0)]
    assert again["embeddings"] == first["embeddings"]
    assert list((data_dir / "cache" / "baselines").glob("resemblyzer-*/*/*.npy"))


def test_table_lists_every_row(evaluated):
    table = format_table(evaluated[0])
    for name in ("timbre", "melody", "melody_vector", "combined", "mfcc", "resemblyzer", "chroma", "*chance*", "default_head"):
        assert f"| {name} |" in table
    assert "12 tracks, 4 singers (1 labelled track could not be analysed and is left out)." in table


def test_a_labelled_path_outside_the_catalogue_is_an_error(tiny_library, evaluated, tmp_path):
    _, data_dir, _ = evaluated
    labels = write_csv(tmp_path / "labels.csv", "path,singer\nann/tune0.wav,ann\nann/missing.wav,ann\n")
    with pytest.raises(NextvoxError, match=r"line 3: ann/missing.wav is not a track of the library .* \(no such file\)"):
        evaluate_library(tiny_library, labels, data_dir=data_dir, jobs=1)


def test_too_few_analysable_tracks_is_an_error(tiny_library, evaluated, tmp_path):
    _, data_dir, _ = evaluated
    labels = write_csv(tmp_path / "labels.csv", "path,singer\nann/tune0.wav,ann\nbroken.wav,eve\n")
    with pytest.raises(NextvoxError, match=r"only 1 of the 2 labelled tracks could be analysed.*broken.wav: not a readable"):
        evaluate_library(tiny_library, labels, data_dir=data_dir, jobs=1)


def test_melody_weight_makes_the_combined_score(tiny_library, evaluated):
    first, data_dir, _ = evaluated
    result = evaluate_library(tiny_library, tiny_library / "labels.csv", data_dir=data_dir, jobs=1, w_melody=0.5)
    combined = result["embeddings"]["combined"]
    assert combined["note"] == "score = 1·cos(timbre) + 0.5·melody (melody sequences matched)" and combined["singer_map"] is not None
    only_melody = evaluate_library(tiny_library, tiny_library / "labels.csv", data_dir=data_dir, jobs=1, w_timbre=0.0, w_melody=1.0)
    assert only_melody["embeddings"]["combined"]["singer_map"] == pytest.approx(first["embeddings"]["melody"]["singer_map"])


def test_missing_melody_vectors_are_not_faked(tiny_library, evaluated):
    from nextvox.catalogue import Catalogue
    from nextvox.evaluation import project_embeddings

    _, data_dir, _ = evaluated
    with Catalogue(data_dir, library=tiny_library) as catalogue:
        hashes = catalogue.vectors("timbre")[0][:3] + ["0" * 32]  # one track the catalogue never analysed
        embeddings = project_embeddings(catalogue, hashes, w_timbre=1.0, w_melody=0.5)
    assert embeddings["melody"].similarity_rows is None and "melody vectors missing for 1 of 4" in embeddings["melody"].note
    assert embeddings["combined"].similarity_rows is None and "melody vectors missing" in embeddings["combined"].note


def test_bad_settings_are_refused(tiny_library, tmp_path):
    with pytest.raises(NextvoxError, match="model folder not found"):
        evaluate_library(tiny_library, tiny_library / "labels.csv", data_dir=tmp_path, model_dir=tmp_path / "none")
    with pytest.raises(NextvoxError, match="no timbre.pt or tcae.pt in"):
        evaluate_library(tiny_library, tiny_library / "labels.csv", data_dir=tmp_path, model_dir=tmp_path)
    with pytest.raises(NextvoxError, match="both 0"):
        evaluate_library(tiny_library, tiny_library / "labels.csv", data_dir=tmp_path, w_timbre=0.0)


def test_other_weights_are_evaluated_with_model(tiny_library, evaluated, tmp_path):
    """--model DIR: that folder's timbre.pt makes the timbre (and combined) rows, from the cached log-mels."""
    first, data_dir, _ = evaluated
    save_weights(TimbreEncoder(TimbreConfig(channels=(8, 8, 8), stem_channels=8)).eval(), tmp_path / "timbre.pt")
    result = evaluate_library(tiny_library, tiny_library / "labels.csv", data_dir=data_dir, jobs=1, model_dir=tmp_path)
    timbre = result["embeddings"]["timbre"]
    assert timbre["model_version"] == weights_version(tmp_path / "timbre.pt") != first["embeddings"]["timbre"]["model_version"]
    assert "weights under evaluation" in timbre["note"]
    assert result["embeddings"]["combined"]["singer_map"] == pytest.approx(timbre["singer_map"])
    assert result["embeddings"]["mfcc"] == first["embeddings"]["mfcc"]  # baselines unchanged
    assert result["settings"]["timbre_weights"] == str(tmp_path / "timbre.pt")
