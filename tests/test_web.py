"""The web page end to end: a real uvicorn server on loopback, driven by headless Debian Chromium.

At 1366×768 by keyboard alone and by pointer, at 390×844 (a phone, dark mode) by touch: pick
a track, hear it and the voices alike after it, move the melody weight without restarting the
song, filter, start a radio, step through the queue, export it, use the map (tooltips, a legend
that filters, arrow keys), upload a recording; a two-song queue plays through; /docs works
with nothing loaded from outside. axe-core (npm, in build/npm) checks every view for serious
or critical violations; screenshots are taken and checked to be drawn (not blank) while the
expected text is on screen.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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

AXE = Path(__file__).resolve().parents[1] / "build" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
PLAYABLE = (".mp3", ".flac", ".wav", ".ogg")  # formats every Chromium build decodes
DESKTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
expect = playwright_api.expect
expect.set_options(timeout=30_000)  # a melody match on a busy 2-core machine takes seconds


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
def browser():
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE}): run scripts/setup.sh --test, or npm install --prefix build/npm axe-core@4.14.1")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--autoplay-policy=no-user-gesture-required"])
        yield browser
        browser.close()


@contextmanager
def open_page(browser, url: str, *, viewport: dict, dark: bool = False, touch: bool = False, path: str = "") -> Iterator:
    """A fresh page; it fails the test on a script error or on any request leaving the server."""
    context = browser.new_context(viewport=viewport, color_scheme="dark" if dark else "light", has_touch=touch,
                                  is_mobile=touch, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    def only_this_server(route) -> None:
        if route.request.url.startswith(url) or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(url + path)
    yield page
    context.close()
    assert not errors, errors
    assert not outside, f"the page asked for outside resources: {outside}"


def assert_accessible(page, view: str) -> None:
    """axe-core finds no serious or critical violation in what the page shows now."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    violations = page.evaluate("""async () => (await axe.run()).violations.map(v => (
        {id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))""")
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not serious, (view, serious)


def assert_drawn(png: Path, *, min_colours: int, min_ink: float) -> None:
    """The screenshot is not blank: enough distinct colours, and at least ``min_ink`` of the
    pixels differ from the background (its most common colour)."""
    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    ink = 1 - counts.max() / counts.sum()
    assert len(colours) >= min_colours and ink >= min_ink, (png, len(colours), ink)


def screenshot(page, png: Path, *texts: str, min_colours: int = 50, min_ink: float = 0.05) -> None:
    """A screenshot that is drawn, taken while each of ``texts`` is visible on the page."""
    for text in texts:
        expect(page.get_by_text(text, exact=False).first).to_be_visible()
    page.screenshot(path=png)
    assert_drawn(png, min_colours=min_colours, min_ink=min_ink)


def tab_to(page, selector: str, *, limit: int = 60) -> None:
    """Press Tab until the focus is on an element matching ``selector`` (reachable by keyboard)."""
    for _ in range(limit):
        if page.evaluate("s => document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


def focus_is_visible(page) -> bool:
    """The focused element draws an outline (the page's :focus-visible style)."""
    return page.evaluate("() => { const s = getComputedStyle(document.activeElement); "
                         "return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2; }")


def playable_artist(page) -> tuple[str, str]:
    """(artist, path) of a library track Chromium can play."""
    paths = page.eval_on_selector_all("#track-list li.track", "items => items.map(li => li.dataset.path)")
    chosen = next(p for p in paths if p.endswith(PLAYABLE))
    artist = page.locator(f'#track-list li[data-path="{chosen}"] .title').inner_text().split(" — ")[0]
    return artist, chosen


@pytest.mark.slow  # about a minute: every view, by keyboard
def test_keyboard_alone_at_1366(server, browser, tmp_path: Path) -> None:
    url, library = server
    with open_page(browser, url, viewport=DESKTOP) as page:
        expect(page.locator("#track-list li.track")).to_have_count(8)
        expect(page.locator("#status")).to_contain_text("8 tracks analysed")
        expect(page.locator("#track-count")).to_have_text("1–8 of 8 tracks")
        assert_accessible(page, "library")
        screenshot(page, tmp_path / "1-library.png", "Library", "Voice map", "nothing playing")
        artist, chosen = playable_artist(page)

        # Search, then Tab to the track and press Enter: it plays and its voices alike follow it.
        tab_to(page, "#search")
        assert focus_is_visible(page)
        page.keyboard.type(artist)
        page.wait_for_function("document.querySelectorAll('#track-list li.track').length === 2")  # two songs a singer
        tab_to(page, f'#track-list .pick[data-path="{chosen}"]')
        assert focus_is_visible(page)
        page.keyboard.press("Enter")
        page.wait_for_function("document.getElementById('player').duration > 0", timeout=15_000)
        assert page.evaluate("decodeURIComponent(document.getElementById('player').currentSrc)").endswith(chosen)
        expect(page.locator("#recommendations li.rec").first).to_be_visible()
        first = page.locator("#recommendations li.rec .scores").first.inner_text()
        assert re.fullmatch(r"voice \d{1,3}%", first), first
        assert "matched note by note" not in page.locator("#recommendations .reason").first.inner_text()
        expect(page.locator("#queue-position")).to_contain_text("song 1 of")
        expect(page.locator("#announcer")).to_contain_text("voices like")

        # The melody weight by arrow key: the results change, the song playing goes on.
        # (Paused first: a 4-second song would otherwise end and the queue move on by itself.)
        page.evaluate("() => { const player = document.getElementById('player'); player.pause(); window.loads = 0; "
                      "window.at = player.currentTime; player.addEventListener('loadstart', () => window.loads++); }")
        tab_to(page, "#filters summary")
        page.keyboard.press("Enter")
        tab_to(page, "#melody-weight")
        page.keyboard.press("ArrowRight")
        expect(page.locator("#melody-weight-value")).to_have_text("0.25")
        expect(page.locator("#recommendations .reason").first).to_contain_text("matched note by note")
        assert re.fullmatch(r"voice \d{1,3}% · melody \d{1,3}%", page.locator("#recommendations .scores").first.inner_text())
        assert page.evaluate("window.loads") == 0 and page.evaluate("document.getElementById('player').currentTime === window.at")
        assert page.evaluate("decodeURIComponent(document.getElementById('player').currentSrc)").endswith(chosen)
        assert_accessible(page, "results with the filters open")
        screenshot(page, tmp_path / "2-results.png", "Filters and weights", "voice ")

        # A filter: leave out the artists of the first two results.
        shown = page.eval_on_selector_all("#recommendations li.rec .title", "items => items.map(t => t.textContent.split(' — ')[0])")
        excluded = sorted(set(shown[:2]))
        tab_to(page, "#filter-exclude-artists")
        page.keyboard.type(", ".join(excluded))
        page.keyboard.press("Tab")  # leaving the field commits it
        page.wait_for_function("a => !Array.from(document.querySelectorAll('#recommendations li.rec .title')).some("
                               "t => a.includes(t.textContent.split(' — ')[0]))", arg=excluded)

        # Space on a recommendation plays it; then a radio; Next steps through the queue.
        target = page.locator("#recommendations .pick").first
        target.focus()
        page.keyboard.press("Space")
        expect(page.locator("#now-playing")).to_have_text(target.locator(".title").inner_text())
        tab_to(page, "#radio-button")
        page.keyboard.press("Enter")
        expect(page.locator("#radio-list li.item").first).to_be_visible()
        assert page.locator("#radio-list li.item").count() >= 3
        tab_to(page, "#next-track")
        page.keyboard.press("Enter")
        expect(page.locator("#queue-position")).to_contain_text("song 2 of")
        tab_to(page, "#queue-box summary")
        page.keyboard.press("Enter")
        expect(page.locator("#queue li").nth(1).locator("[aria-current=true]")).to_be_visible()
        assert_accessible(page, "radio and queue")
        screenshot(page, tmp_path / "3-queue.png", "Queue", "song 2 of")

        # A voice path from the song playing to another singer's song (the server has POST /api/path).
        expect(page.locator("#path-controls")).to_be_visible()
        other = page.evaluate("() => state.points.find(p => p.artist !== state.queue[state.position].artist)")
        tab_to(page, "#path-end")
        page.keyboard.type(f"{other['artist']} {other['title']}")
        tab_to(page, "#path-button")
        page.keyboard.press("Enter")
        expect(page.locator("#radio-title")).to_contain_text(f"voice path to {other['artist']}")
        assert page.eval_on_selector_all("#radio-list li.item", "items => items.map(li => li.dataset.path)")[-1] == other["path"]

        # A listening history of two tracks is one query.
        search = page.locator("#search")
        search.focus()
        page.keyboard.press("Control+A")
        page.keyboard.press("Backspace")
        expect(page.locator("#track-list li.track")).to_have_count(8)
        for n in (0, 3):
            page.locator("#track-list .add").nth(n).focus()
            page.keyboard.press("Enter")
        expect(page.locator("#history li")).to_have_count(2)
        tab_to(page, "#history-recommend")
        page.keyboard.press("Enter")
        expect(page.locator("#results-for")).to_contain_text("your history (2 tracks)")
        expect(page.locator("#queue-position")).to_contain_text("song 1 of")

        # The map by keyboard: arrows move between songs (with a tooltip), Enter plays.
        tab_to(page, "#map")
        assert focus_is_visible(page)
        page.keyboard.press("ArrowRight")
        expect(page.locator("#map-tooltip")).to_be_visible()
        focused = page.evaluate("state.points[state.focusedPoint].path")
        page.keyboard.press("Enter")
        page.wait_for_function("p => state.selected && state.selected.path === p", arg=focused, timeout=10_000)
        legend = page.locator("#legend button").first
        legend.focus()
        before = page.evaluate("visiblePoints().length")
        page.keyboard.press("Enter")
        expect(legend).to_have_attribute("aria-pressed", "false")
        assert page.evaluate("visiblePoints().length") < before
        page.locator("#map-list-box summary").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#map-list .pick")).to_have_count(page.evaluate("visiblePoints().length"))
        assert_accessible(page, "map and its list")

        # Voices like mine: the upload is its own card and starts a radio.
        recording = next(p for p in sorted(library.rglob("*")) if p.suffix in PLAYABLE)
        page.set_input_files("#upload", str(recording))
        expect(page.locator("#your-recording")).to_be_visible(timeout=30_000)
        page.locator("#your-recording-radio").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#radio-title")).to_contain_text("your recording")
        assert_accessible(page, "your recording")
        screenshot(page, tmp_path / "4-upload.png", "Your recording")


def test_pointer_at_1366_queue_plays_through_and_exports(server, browser, tmp_path: Path) -> None:
    url, library = server
    with open_page(browser, url, viewport=DESKTOP) as page:
        expect(page.locator("#track-list li.track")).to_have_count(8)
        _, chosen = playable_artist(page)
        page.click(f'#track-list .pick[data-path="{chosen}"]')
        expect(page.locator("#recommendations li.rec").first).to_be_visible()
        # A queue of two songs plays through: the second starts when the first ends.
        second = next(p for p in page.eval_on_selector_all("#recommendations li.rec", "items => items.map(li => li.dataset.path)")
                      if p.endswith(PLAYABLE))
        page.evaluate("s => { state.queue = state.queue.filter((t, i) => i === 0 || t.path === s); renderQueue(); }", second)
        expect(page.locator("#queue-position")).to_have_text("song 1 of 2 in the queue")
        page.wait_for_function("s => document.getElementById('player').dataset.path === s && "
                               "document.getElementById('player').currentTime > 0.5", arg=second, timeout=30_000)
        expect(page.locator("#queue-position")).to_have_text("song 2 of 2 in the queue")
        page.wait_for_function("document.getElementById('player').ended", timeout=30_000)
        expect(page.locator("#announcer")).to_have_text("end of the queue")

        # Export the queue with paths relative to the library folder: it travels with the music.
        page.click("#queue-box summary")
        page.select_option("#export-locations", "relative")
        with page.expect_download() as download:
            page.click("#export-m3u8")
        lines = [line for line in Path(download.value.path()).read_text().splitlines() if not line.startswith("#")]
        assert lines == [chosen, second] and all((library / line).is_file() for line in lines)
        page.select_option("#export-locations", "prefix")
        page.fill("#export-prefix", "http://nas/music")
        with page.expect_download() as download:
            page.click("#export-xspf")
        assert Path(download.value.path()).read_text().count("<location>http://nas/music/") == 2

        # The map: a tooltip under the pointer, a click plays the point.
        expect(page.locator("#map-caption")).to_contain_text("PCA")
        assert page.locator("#legend li").count() == 4  # four singers, four colours
        assert len(set(page.evaluate("[...state.colours.values()]"))) == 4
        # Eleven artists get eleven colours (a hash of the names once gave 8 artists about 5).
        assert page.evaluate("""() => {
            const saved = state.points;
            state.points = Array.from({length: 11}, (_, i) => ({artist: `singer ${i}`, x: i, y: i, path: `p${i}`}));
            assignColours();
            const distinct = new Set(state.colours.values()).size;
            state.points = saved;
            recolour();
            return distinct;
        }""") == 11
        page.evaluate("document.getElementById('map').scrollIntoView({block: 'start'})")  # clear of the player bar
        x, y, target = page.evaluate("""() => {
            const canvas = document.getElementById('map'), box = canvas.getBoundingClientRect();
            const point = state.points.find(p => p.path !== state.selected.path);
            const [px, py] = mapLayout(canvas)(point);
            return [box.left + px * box.width / canvas.width, box.top + py * box.height / canvas.height, point.path];
        }""")
        page.mouse.move(x, y)
        expect(page.locator("#map-tooltip")).to_be_visible()
        page.mouse.click(x, y)
        page.wait_for_function("p => state.selected && state.selected.path === p", arg=target, timeout=10_000)
        page.locator("#map").screenshot(path=tmp_path / "map.png")
        assert_drawn(tmp_path / "map.png", min_colours=5, min_ink=0.002)  # 8 dots on the card's colour


def test_phone_by_touch_in_dark_mode(server, browser, tmp_path: Path) -> None:
    url, _ = server
    with open_page(browser, url, viewport=PHONE, dark=True, touch=True) as page:
        expect(page.locator("#track-list li.track")).to_have_count(8)
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert sum(map(int, re.findall(r"\d+", background)[:3])) < 3 * 64, background  # dark, as the browser prefers
        assert_accessible(page, "phone library, dark")
        _, chosen = playable_artist(page)
        page.tap(f'#track-list .pick[data-path="{chosen}"]')
        expect(page.locator("#recommendations li.rec").first).to_be_visible()
        # The player stays on screen wherever the page is scrolled.
        for where in ("document.body.scrollHeight", "0"):
            page.evaluate(f"window.scrollTo(0, {where})")
            box = page.locator("#player-bar").bounding_box()
            assert box and box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"] + 1, box
            expect(page.locator("#now-playing")).to_be_in_viewport()
        # A finger need not hit the dot: the reach is wider on a touch screen.
        page.locator("#map").scroll_into_view_if_needed()
        x, y, target = page.evaluate("""() => {
            const canvas = document.getElementById('map'), box = canvas.getBoundingClientRect();
            const point = state.points.find(p => p.path !== state.selected.path);
            const [px, py] = mapLayout(canvas)(point);
            return [box.left + px * box.width / canvas.width, box.top + py * box.height / canvas.height, point.path];
        }""")
        page.touchscreen.tap(x + 9, y + 9)
        page.wait_for_function("p => state.selected && state.selected.path === p", arg=target, timeout=10_000)
        assert_accessible(page, "phone results, dark")
        page.evaluate("window.scrollTo(0, 0)")
        screenshot(page, tmp_path / "phone.png", "Library", min_colours=30)


def test_docs_work_offline(server, browser) -> None:
    url, _ = server
    with open_page(browser, url, viewport=DESKTOP, path="docs") as page:
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("nextvox")
        expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
        assert page.locator(".swagger-ui .opblock").count() >= 8
