"""The filters of the queries (``recommend``, ``radio``, ``path``, ``mpd``): one set of options,
read into one :class:`nextvox.recommend.Filters`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from nextvox.cli.common import option_group
from nextvox.errors import NextvoxError


def read_heard(heard: Path | None, root: Path) -> frozenset[str]:
    """Library-relative paths listed in a heard-tracks file."""
    if heard is None:
        return frozenset()
    try:
        lines = heard.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        raise NextvoxError(f"cannot read {heard}: {error.strerror}") from None
    paths = set()
    for line in (line.strip() for line in lines):
        if line and not line.startswith("#"):
            path = Path(line)
            if path.is_absolute():
                try:
                    line = path.resolve().relative_to(root).as_posix()
                except ValueError:
                    continue  # outside the library: never a candidate anyway
            paths.add(line)
    return frozenset(paths)


@dataclass(frozen=True)
class FilterChoice:
    """The filter options as given on the command line."""

    exclude_artist: bool
    heard: Path | None
    genre: tuple[str, ...]
    gender: str | None

    def filters(self, root: Path):
        """The :class:`nextvox.recommend.Filters` these options ask for, in the library at ``root``."""
        from nextvox.recommend import Filters

        return Filters(exclude_query_artists=self.exclude_artist, heard=read_heard(self.heard, root),
                       genres=frozenset(self.genre), gender=self.gender)  # fmt: skip


# The filters of recommend, radio, path and mpd: the command gets them as ``filter_choice``.
filter_options = option_group("filter_choice", FilterChoice, [
    click.option("--exclude-artist", is_flag=True, help="Leave out the artists of the query tracks."),
    click.option("--heard", type=click.Path(dir_okay=False, path_type=Path),
                 help="File of tracks already heard, one path a line (relative to LIBRARY or absolute; "
                 "lines starting with # are skipped, so an M3U works): left out."),
    click.option("--genre", multiple=True, help="Keep only this genre (repeat for several)."),
    click.option("--gender", type=click.Choice(["female", "male"]),
                 help="Keep only voices of this gender (applied where the gender stage has stored one)."),
])  # fmt: skip
