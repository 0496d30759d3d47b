"""The gender head (training, storage, version checks, the CLI) and the embedding maps (PNG and HTML)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nextvox.catalogue import Catalogue
from nextvox.cli import main
from nextvox.errors import NextvoxError
from nextvox.gender import (
    GENDER_VECTOR,
    GenderHead,
    head_scores,
    library_genders,
    predict_library_genders,
    read_gender_tag,
    read_track_labels,
    train_gender_head,
)
from nextvox.plots import embedding_map, map_html, project_2d

CHROMIUM = Path("/usr/bin/chromium")


def _music(root: Path) -> Path:
    """An empty music folder beside the data directory (a data directory inside the library is refused)."""
    (root / "music").mkdir(exist_ok=True)
    return root / "music"


def toy_vectors(n_per_gender: int = 20, dim: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two separable clouds: female voices shifted along the first axis. Shapes (2n, dim), (2n,)."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(2 * n_per_gender, dim))
    vectors[:n_per_gender, 0] += 6.0
    return vectors, np.array(["female"] * n_per_gender + ["male"] * n_per_gender)


# ---- the head ---------------------------------------------------------------------------------

def test_head_separates_toy_vectors_and_round_trips_exactly(tmp_path):
    vectors, genders = toy_vectors()
    head = train_gender_head(vectors, genders, timbre_model_version="timbre-toy-1")
    labels, p_female = head.predict(vectors)
    assert (labels == genders).all()
    assert p_female.shape == (40,) and ((0 <= p_female) & (p_female <= 1)).all()

    loaded = GenderHead.load(head.save(tmp_path / "head.json"))
    for name in ("mean", "scale", "coef"):
        assert np.array_equal(getattr(loaded, name), getattr(head, name))
    assert loaded.intercept == head.intercept
    assert loaded.version == head.version and loaded.timbre_model_version == "timbre-toy-1"
    assert np.array_equal(loaded.p_female(vectors), p_female)
    assert json.loads((tmp_path / "head.json").read_text())["format"] == "nextvox-gender-head-1"


def test_head_refuses_bad_input(tmp_path):
    vectors, genders = toy_vectors()
    with pytest.raises(NextvoxError, match="both genders"):
        train_gender_head(vectors[:20], genders[:20], timbre_model_version="v")
    with pytest.raises(NextvoxError, match="female or male"):
        train_gender_head(vectors, np.where(genders == "male", "baritone", genders), timbre_model_version="v")
    head = train_gender_head(vectors, genders, timbre_model_version="v")
    with pytest.raises(NextvoxError, match="length 16"):
        head.predict(vectors[:, :8])
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(NextvoxError, match="not a nextvox gender head"):
        GenderHead.load(tmp_path / "other.json")
    with pytest.raises(NextvoxError, match="not found"):
        GenderHead.load(tmp_path / "missing.json")


def _catalogue_with_vectors(tmp_path: Path, vectors: np.ndarray, *, version: str) -> tuple[Catalogue, list[str]]:
    catalogue = Catalogue(tmp_path / "data", library=_music(tmp_path))
    hashes = [f"{i:032x}" for i in range(len(vectors))]
    for digest, vector in zip(hashes, vectors):
        catalogue.record_analysis(digest, analysis_version="a", duration_s=1.0, excerpt_start_s=0.0, excerpt_s=1.0,
                                  vectors={"timbre": (version, vector)})  # fmt: skip
    return catalogue, hashes


def test_predictions_only_for_the_timbre_model_the_head_knows(tmp_path):
    vectors, genders = toy_vectors()
    head = train_gender_head(vectors, genders, timbre_model_version="timbre-A")
    catalogue, hashes = _catalogue_with_vectors(tmp_path, vectors, version="timbre-A")
    with catalogue:
        done = predict_library_genders(catalogue, head)
        assert (done.predicted, done.mismatched, done.note) == (40, 0, None)
        stored = library_genders(catalogue)
        assert [stored[h][0] for h in hashes] == genders.tolist()
        assert set(catalogue.vectors(GENDER_VECTOR)[2]) == {head.version}

        other = train_gender_head(vectors, genders, timbre_model_version="timbre-B")
        refused = predict_library_genders(catalogue, other)
        assert refused.predicted == 0 and refused.mismatched == 40
        assert "timbre-A" in refused.note and "timbre-B" in refused.note
        assert library_genders(catalogue) == {}  # the first head's answers no longer apply
    assert head_scores(other, vectors, timbre_model_version="timbre-A", genders=genders)["accuracy"] is None
    scores = head_scores(head, vectors, timbre_model_version="timbre-A", genders=genders)
    assert scores["accuracy"] == scores["balanced_accuracy"] == 1.0


def test_labels_from_csv_and_from_tags(tmp_path):
    import mutagen.flac
    import soundfile as sf

    (tmp_path / "labels.csv").write_text("path,Gender,singer\na.flac, F ,x\nb.flac,male,y\nc.flac,,z\n")
    labels = read_track_labels(tmp_path / "labels.csv", library=tmp_path, required=("gender",))
    assert labels["a.flac"]["gender"] == "female" and labels["b.flac"]["gender"] == "male"
    assert "gender" not in labels["c.flac"]
    (tmp_path / "bad.csv").write_text("path,gender\na.flac,alto\n")
    with pytest.raises(NextvoxError, match="line 2"):
        read_track_labels(tmp_path / "bad.csv", library=tmp_path)

    sf.write(tmp_path / "a.flac", np.zeros(1600, dtype=np.float32), 16000)
    assert read_gender_tag(tmp_path / "a.flac") is None
    tagged = mutagen.flac.FLAC(tmp_path / "a.flac")
    tagged["GENDER"] = "Female"
    tagged.save()
    assert read_gender_tag(tmp_path / "a.flac") == "female"


# ---- on a real library: CLI, PNG, HTML --------------------------------------------------------

@pytest.fixture(scope="module")
def trained(fixture_library, tmp_path_factory):
    """The fixture library analysed, with a gender head trained on its labels and made active."""
    data_dir = tmp_path_factory.mktemp("gender-data")
    code = main(["train", "gender", str(fixture_library), "--labels", str(fixture_library / "labels.csv"),
                 "--data-dir", str(data_dir), "--jobs", "2", "--use", "--json"])  # fmt: skip
    assert code == 0
    return fixture_library, data_dir


def test_cli_train_gender_reports_held_out_accuracy_and_predicts(trained):
    library, data_dir = trained
    head = GenderHead.load(data_dir / "gender_head.json")
    assert head.trained_on["n_tracks"] == 8 and head.trained_on["n_singers"] == 4
    assert 0.0 <= head.trained_on["balanced_accuracy"] <= 1.0
    with Catalogue(data_dir, library=library.resolve()) as catalogue:
        genders = library_genders(catalogue)
        assert len(genders) == 8 and set(catalogue.vectors(GENDER_VECTOR)[2]) == {head.version}
    assert GenderHead.load(data_dir / "models" / "gender_head.json").version == head.version


def test_status_says_which_head_predicted(trained, capsys):
    library, data_dir = trained
    assert main(["status", str(library), "--data-dir", str(data_dir), "--json"]) == 0
    gender = json.loads(capsys.readouterr().out)["gender"]
    assert gender["predicted"] == 8 and gender["head"].startswith("gender-lr-") and gender["note"] is None


def test_cli_train_gender_without_labels_says_what_is_missing(trained, tmp_path, capsys):
    library, data_dir = trained
    code = main(["train", "gender", str(library), "--data-dir", str(data_dir), "--out", str(tmp_path / "h.json")])
    assert code == 1
    err = capsys.readouterr().err
    assert "GENDER tags" in err and "Traceback" not in err


def _colours(image) -> set[tuple[int, int, int]]:
    return {tuple(c) for c in np.asarray(image.convert("RGB")).reshape(-1, 3).tolist()}


def test_plot_png_is_a_real_image(trained, tmp_path):
    from PIL import Image

    library, data_dir = trained
    for by, embedding in (("gender", "timbre"), ("singer", "timbre"), ("singer", "melody")):
        out = tmp_path / f"{by}-{embedding}.png"
        args = ["plot", str(library), "--by", by, "--embedding", embedding, "--method", "tsne", "--out", str(out),
                "--data-dir", str(data_dir)]  # fmt: skip
        assert main(args + (["--labels", str(library / "labels.csv")] if by == "singer" else [])) == 0
        with Image.open(out) as image:
            assert image.format == "PNG" and image.size == (800, 600)
            pixels = np.asarray(image.convert("RGB")).astype(int)
            colours = _colours(image)
        assert (pixels < 250).any(axis=2).mean() > 0.01  # not blank
        assert len(colours) > 20
        saturated = {c for c in colours if max(c) - min(c) > 80}  # the groups' colours, not greys
        assert len(saturated) >= 2
    assert main(["plot", str(library), "--by", "genre", "--out", str(tmp_path / "x.svg"), "--data-dir", str(data_dir)]) == 1


def test_map_of_too_few_tracks_and_unknown_method_fail_clearly():
    with pytest.raises(NextvoxError, match="at least 3"):
        project_2d(np.ones((2, 4)), method="pca")
    with pytest.raises(NextvoxError, match="unknown projection"):
        project_2d(np.ones((5, 4)), method="mds")


def test_html_map_in_headless_chromium(trained, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (/usr/bin/chromium): apt-get install chromium")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    library, data_dir = trained
    out = tmp_path / "map.html"
    assert main(["plot", str(library), "--by", "singer", "--method", "pca", "--out", str(out), "--data-dir", str(data_dir)]) == 0
    page_html = out.read_text()
    assert "<script src" not in page_html and "http://" not in page_html.replace("http://www.w3.org/2000/svg", "")

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(out.as_uri())
            points = page.locator("circle.point")
            assert points.count() == 8
            first = points.nth(0)
            first.hover()
            tip = page.locator("#tip")
            assert tip.is_visible()
            with Catalogue(data_dir, library=library.resolve()) as catalogue:
                paths = {t.path for t in catalogue.tracks()}
            shown = tip.inner_text()
            assert " — " in shown and any(path in shown for path in paths)
            first.click()
            src = page.evaluate("document.getElementById('player').src")
            assert src.startswith(library.resolve().as_uri()) and any(src.endswith(path.replace(" ", "%20")) for path in paths)
            assert errors == []
        finally:
            browser.close()


def test_html_takes_an_audio_url_template_for_a_server(trained):
    library, data_dir = trained
    with Catalogue(data_dir, library=library.resolve()) as catalogue:
        emap = embedding_map(catalogue, by="gender", method="pca")
    page = map_html(emap, audio_url_template="/api/audio/{path}")
    assert page.count('"url": "/api/audio/songs/') == 8
    assert emap.xy.shape == (8, 2) and len(emap.paths) == 8
    with pytest.raises(NextvoxError, match="{path}"):
        map_html(emap, audio_url_template="/api/audio/")
