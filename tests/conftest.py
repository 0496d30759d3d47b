"""Shared fixtures: a tiny singing library rendered once per test session by nextvox.synth."""

import os
from pathlib import Path

import pytest

from nextvox.synth import render_library

# Four singers (two female, two male, three engines), two songs each, four seconds a song.
FIXTURE_LIBRARY_SETTINGS = {"n_singers": 4, "n_songs": 2, "seed": 0, "voice_set": "demo", "max_song_s": 4.0}


@pytest.fixture(scope="session", autouse=True)
def private_data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$XDG_DATA_HOME of this test session (and of the commands it runs): what the commands
    remember about libraries (their data directories) stays out of the user's home."""
    home = tmp_path_factory.mktemp("xdg-data-home")
    os.environ["XDG_DATA_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def fixture_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a rendered library: ``songs/``, ``vocals/`` and ``labels.csv`` (8 songs, 6 formats)."""
    out_dir = tmp_path_factory.mktemp("library")
    render_library(out_dir, jobs=2, **FIXTURE_LIBRARY_SETTINGS)
    return out_dir
