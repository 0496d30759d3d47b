"""The README and docs/ for a newcomer: the page is shown, and every link stays inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def test_every_link_of_the_docs_points_inside_the_repository() -> None:
    problems = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if target.startswith("#"):
                continue
            file = (page.parent / target.split("#")[0]).resolve()
            if "://" in target or not file.is_relative_to(ROOT) or not file.exists():
                problems.append(f"{page.relative_to(ROOT)}: {target}")
    assert not problems, problems


def test_the_readme_shows_the_page_and_starts_with_your_own_music() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/images/web-page.png)" in readme
    with Image.open(ROOT / "docs" / "images" / "web-page.png") as image:
        assert image.size[0] >= 1000 and len(set(image.convert("RGB").getdata())) > 200  # a real screenshot
    own_music = readme.index("## Your own music in three steps")
    assert own_music < readme.index("## The project's own songs") and own_music < readme.index("### The timbre vector")
    assert readme.index("## Words used here") < readme.index("### The timbre vector")
