"""The workflows: the one place where stages run one after another.

Each stage module does one job and imports only the stages below it (docs/architecture.md):
``analysis`` analyses tracks, ``gender`` trains and applies a head to stored vectors. What a
command does end to end — analyse the library, then predict genders; analyse, then train a
head — is chained here, and the command line, the HTTP server and the benchmarks call these
functions rather than chaining stages themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nextvox import analysis
from nextvox.analysis import AnalyzeReport
from nextvox.catalogue import Catalogue, resolve_library
from nextvox.gender import GenderTraining, active_head, predict_library_genders, train_catalogue_head
from nextvox.index import refresh_indexes

__all__ = ["analyze_library", "train_library_head"]


def analyze_library(library: Path, *, data_dir: Path, **options: Any) -> AnalyzeReport:
    """``nextvox analyze``: analyse new and changed tracks (:func:`nextvox.analysis.analyze_library`,
    whose keyword ``options`` these are: ``jobs``, ``settings``, ``retry_failed``, ``on_scan``,
    ``on_track``, ``engine``, ``ray_address``), then predict every track's voice gender with the data directory's active head,
    and bring the vector indexes up to date.

    The report's ``gender_note`` says why some tracks have no predicted gender.
    """
    report = analysis.analyze_library(library, data_dir=data_dir, **options)
    started = time.perf_counter()
    with Catalogue(data_dir, library=resolve_library(library)) as catalogue:
        report.gender_note = predict_library_genders(catalogue, active_head(data_dir)).note
        refresh_indexes(catalogue)  # queries then open the indexes as they are, memory-mapped
    report.wall_s += time.perf_counter() - started
    return report


def train_library_head(
    library: Path, *, data_dir: Path, labels_csv: Path | None = None, jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> GenderTraining:  # fmt: skip
    """``nextvox train gender``: analyse the library as needed, then train a gender head on its
    labelled timbre vectors (:func:`nextvox.gender.train_catalogue_head`).

    Parameters
    ----------
    library, data_dir : Path
    labels_csv : Path, optional
        ``path`` and ``gender`` columns; without it, the files' ``GENDER`` tags.
    jobs : int, optional
        Worker processes of the analysis.
    progress : callable(done, total), optional
        Called as tracks are analysed.
    """
    library = resolve_library(library)
    report = analyze_library(library, data_dir=data_dir, jobs=jobs,
                             on_track=(lambda done, total, _audio_s: progress(done, total)) if progress else None)  # fmt: skip
    with Catalogue(data_dir, library=library) as catalogue:
        return train_catalogue_head(catalogue, labels_csv=labels_csv, analysis_version=report.settings.version)
