"""The web page end to end: a real uvicorn server on loopback, driven by headless Debian Chromium.

Search and pick a track, play it, read the recommendations with their reasons, upload a
recording, start a radio, export it, and click a point of the voice map; screenshots are
taken and checked to be drawn (not blank) with the expected parts visible.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian chromium is not installed (/usr/bin/chromium): apt-get install chromium", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

import uvicorn  # noqa: E402
from PIL import Image  # noqa: E402

from nextvox.analysis import analyze_library  # noqa: E402
from nextvox.api import create_app  # noqa: E402

PLAYABLE = (".mp3", ".flac", ".wav", ".ogg")  # formats every Chromium build decodes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(fixture_library: Path, tmp_path_factory: pytest.TempPathFactory):
    """The page's URL, served by uvicorn in a background thread over the analysed fixture library."""
    data = tmp_path_factory.mktemp("web-data")
    library = fixture_library / "songs"
    analyze_library(library, data_dir=data, jobs=1)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(library, data), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/", library
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(server):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--autoplay-policy=no-user-gesture-required"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(server[0])
        yield page
        browser.close()
        assert not errors, errors


def assert_drawn(png: Path, *, min_colours: int, min_ink: float) -> None:
    """The screenshot is not blank: enough distinct colours, and at least ``min_ink`` of the
    pixels differ from the background (its most common colour)."""
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    ink = 1 - counts.max() / counts.sum()
    assert len(colours) >= min_colours and ink >= min_ink, (png, len(colours), ink)


def test_the_page_end_to_end(server, page, tmp_path: Path) -> None:
    url, library = server
    expect = playwright_api.expect
    expect(page.locator("#track-list li.track")).to_have_count(8)
    expect(page.locator("#status")).to_contain_text("8 tracks analysed")
    page.screenshot(path=tmp_path / "1-library.png", full_page=True)
    assert_drawn(tmp_path / "1-library.png", min_colours=50, min_ink=0.05)

    # Search, then pick a track that Chromium can play.
    tracks = page.eval_on_selector_all("#track-list li.track", "items => items.map(li => li.dataset.path)")
    chosen = next(p for p in tracks if p.endswith(PLAYABLE))
    artist = page.locator(f'#track-list li[data-path="{chosen}"] .title').inner_text().split(" — ")[0]
    page.fill("#search", artist)
    page.wait_for_function("document.querySelectorAll('#track-list li.track').length === 2")  # two songs a singer
    expect(page.locator(f'#track-list li[data-path="{chosen}"]')).to_be_visible()
    page.click(f'#track-list li[data-path="{chosen}"]')
    expect(page.locator("#now-playing")).not_to_have_text("pick a track")
    page.wait_for_function("document.getElementById('player').duration > 0", timeout=15_000)
    assert page.evaluate("decodeURIComponent(document.getElementById('player').currentSrc)").endswith(chosen)

    # Recommendations with their reasons and tags.
    expect(page.locator("#recommendations li.rec").first).to_be_visible()
    assert page.locator("#recommendations li.rec").count() >= 5
    assert "timbre" in page.locator("#recommendations .reason").first.inner_text()
    expect(page.locator("#recommendations .tag").first).to_be_visible()
    paths = page.eval_on_selector_all("#recommendations li.rec", "items => items.map(li => li.dataset.path)")
    assert chosen not in paths
    assert "matched note by note" not in page.locator("#recommendations .reason").first.inner_text()

    # A melody weight brings the melody into the score and the reasons.
    page.locator("#melody-weight").fill("0.5")
    page.locator("#melody-weight").dispatch_event("change")
    expect(page.locator("#melody-weight-value")).to_have_text("0.5")
    expect(page.locator("#recommendations .reason").first).to_contain_text("matched note by note")

    # Radio, then export it as M3U8 and XSPF.
    page.click("#radio-button")
    expect(page.locator("#radio-list li").first).to_be_visible()
    radio = page.eval_on_selector_all("#radio-list li", "items => items.map(li => li.dataset.path)")
    assert len(radio) >= 3 and chosen not in radio
    with page.expect_download() as download:
        page.click("#export-m3u8")
    m3u8 = Path(download.value.path()).read_text()
    assert m3u8.startswith("#EXTM3U") and m3u8.count("/api/audio/") == len(radio)
    with page.expect_download() as download:
        page.click("#export-xspf")
    assert "<trackList>" in Path(download.value.path()).read_text()
    page.screenshot(path=tmp_path / "2-listening.png", full_page=True)
    assert_drawn(tmp_path / "2-listening.png", min_colours=50, min_ink=0.05)

    # The map: drawn, coloured by artist, and a click on a point selects that track.
    expect(page.locator("#map-caption")).to_contain_text("PCA")
    assert page.locator("#legend li").count() == 4  # four singers
    page.locator("#map").screenshot(path=tmp_path / "3-map.png")
    assert_drawn(tmp_path / "3-map.png", min_colours=5, min_ink=0.002)  # 8 dots on white
    x, y, target = page.evaluate("""() => {
        const canvas = document.getElementById('map'), box = canvas.getBoundingClientRect();
        const point = state.points.find(p => p.path !== state.selected.path);
        const [px, py] = mapLayout(canvas)(point);
        return [box.left + px * box.width / canvas.width, box.top + py * box.height / canvas.height, point.path];
    }""")
    page.mouse.click(x, y)
    page.wait_for_function("p => state.selected && state.selected.path === p", arg=target, timeout=10_000)
    page.select_option("#color-by", "genre")
    assert page.locator("#legend li").count() >= 1

    # Voices like mine: upload a recording.
    recording = next(p for p in sorted(library.rglob("*")) if p.suffix in PLAYABLE)
    page.set_input_files("#upload", str(recording))
    expect(page.locator("#upload-status")).to_contain_text("voices like", timeout=30_000)
    expect(page.locator("#recommendations li.rec").first).to_be_visible()
    page.screenshot(path=tmp_path / "4-upload.png", full_page=True)
    assert_drawn(tmp_path / "4-upload.png", min_colours=50, min_ink=0.05)
