"""What every command shares: the ``nextvox`` click group, the common options, the consoles,
progress bars and the data-directory rule. Commands live in the other modules of this package.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

stderr = Console(stderr=True, highlight=False, soft_wrap=True)
# Wide enough that a table piped to a file or a pager keeps one line per row.
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class FiniteFloatRange(click.FloatRange):
    """A float option in a range that refuses ``nan`` and ``inf`` (they pass every comparison test
    or none, and turn a score into ``NaN``, which strict JSON readers reject)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the catalogue, caches and indexes live. Default: $NEXTVOX_DATA_DIR, else "
    "~/.local/share/nextvox/<library name>-<digest> (never inside the music folder).",
)
jobs_option = click.option("--jobs", "-j", type=click.IntRange(min=1), help="Worker processes (default: one per core).")
json_flag = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else there.")
library_argument = click.argument("library", type=click.Path(path_type=Path))
separator_option = click.option(
    "--separator", type=click.Choice(["none", "classical", "mask", "demucs"]),
    help="Vocal separation method (default: the project's; see docs/separation.md).",
)
separator_weights_option = click.option(
    "--separator-weights", type=click.Path(dir_okay=False, path_type=Path),
    help="Model file of the mask separator (from `nextvox train separator`) or of a pretrained Demucs.",
)


def option_group(name: str, group: type, options: list[Callable]) -> Callable[[Callable], Callable]:
    """A decorator that adds ``options`` to a command and hands their values to it as one argument,
    ``name=group(**values)``: commands that share a set of options share one parameter for it.

    ``group`` is a dataclass whose fields are the options' parameter names.
    """
    keys = [field.name for field in dataclasses.fields(group)]

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def run(*args, **kwargs):
            values = {key: kwargs.pop(key) for key in keys}
            return command(*args, **kwargs, **{name: group(**values)})

        for option in reversed(options):
            run = option(run)
        return run

    return decorate


def chosen_data_dir(ctx: click.Context, library: Path, data_dir: Path | None) -> Path:
    """The command's --data-dir, else the one given before the command, else the library's own
    (the default, or the one an earlier ``analyze --data-dir`` remembered)."""
    from nextvox.catalogue import library_data_dir

    chosen = data_dir or (ctx.obj or {}).get("data_dir")
    return Path(chosen).expanduser() if chosen else library_data_dir(library)


def _version() -> str:
    from nextvox import __version__

    return __version__


@click.group(context_settings=CONTEXT, help="Recommend songs by the singer's voice.")
@click.version_option(_version(), "--version", "-V", prog_name="nextvox", message="%(prog)s %(version)s")
@data_dir_option
@click.pass_context
def app(ctx: click.Context, data_dir: Path | None) -> None:
    ctx.obj = {"data_dir": data_dir}


class _RealTimeColumn(ProgressColumn):
    """Audio seconds processed per wall second ("x real time")."""

    def render(self, task) -> Text:
        audio_s = task.fields.get("audio_s")
        if not audio_s or not task.elapsed:
            return Text("")
        return Text(f"{audio_s / task.elapsed:,.0f}x real time", style="cyan")


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[Progress]:
    """Progress bars on stderr, drawn only when stderr is a terminal."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RealTimeColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
        disable=not enabled or not stderr.is_terminal,
    )
    with progress:
        yield progress


def decoder_notes_to_log(data_dir: Path) -> None:
    """Native decoders' notes on damaged files go to DATA_DIR/decoder.log, not over our one-line messages
    (to nowhere where the data directory exists but cannot be written: a read-only copy is still read)."""
    from nextvox.audio import redirect_native_stderr

    data_dir = Path(data_dir)
    writable = not data_dir.is_dir() or os.access(data_dir, os.W_OK)
    redirect_native_stderr(data_dir / "decoder.log" if writable else os.devnull)

