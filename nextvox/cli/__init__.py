"""The ``nextvox`` command line: a thin layer over the library.

Contract (DESIGN.md): every command takes ``--data-dir`` and ``--help``; ``--json`` prints
one JSON document on stdout and nothing else there; exit 0 on success, 2 on a usage error,
1 on any other failure, with one clear line on stderr and never a traceback.

Each command is a short function (parse, call the library or :mod:`nextvox.workflows`,
print), in a module of its concern: :mod:`.library` (demo, analyze, status), :mod:`.queries`
(recommend, radio, path), :mod:`.players` (subsonic, mpd), :mod:`.serve`, :mod:`.train`
(evaluate, train), :mod:`.plot`; they share the group, options and progress bars of
:mod:`.common` and the query filters of :mod:`.filters`. This module runs them: :func:`main`
turns every failure into one line and an exit status. No module of the package imports torch,
librosa or the HTTP stack at its top: each command imports what it needs, so ``nextvox --help``
and a query from stored vectors start quickly.
"""

from __future__ import annotations

import os
import sqlite3
import sys

import click

# Importing a command module registers its commands on the group.
from nextvox.cli import library, players, plot, queries, serve, train  # noqa: F401
from nextvox.cli.common import app, stderr
from nextvox.errors import NextvoxError
from nextvox.processes import sigterm_as_interrupt

__all__ = ["app", "main"]


def _fail(message: str, code: int) -> int:
    stderr.print(f"nextvox: error: {' '.join(message.split())}", markup=False, highlight=False, soft_wrap=True)
    return code


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 usage error, 1 any other failure)."""
    try:
        # SIGTERM (kill, a service manager) stops a command as Ctrl-C does: what is done is saved.
        with sigterm_as_interrupt():
            result = app.main(args=argv, prog_name="nextvox", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:
        print(error.ctx.get_help() if error.ctx else "usage: nextvox COMMAND ...", file=sys.stderr)
        return 2
    except click.UsageError as error:
        return _fail(error.format_message(), 2)
    except (KeyboardInterrupt, click.exceptions.Abort):
        return _fail("interrupted", 1)
    except NextvoxError as error:
        return _fail(str(error), 1)
    except BrokenPipeError:
        # The reader of our output went away (`nextvox status | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        return _fail(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "), 1)
    except sqlite3.DatabaseError as error:
        # A damaged page is found only when a query reads it, long after the catalogue opened.
        return _fail(f"the catalogue is damaged ({error}): move catalogue.sqlite out of the data directory and run "
                     "`nextvox analyze` again (cached spectrograms make that quick)", 1)
    except Exception as error:  # a bug: still one line, and the way to report it
        return _fail(f"internal error ({type(error).__name__}: {error}); please report it with the command you ran", 1)
    return result if isinstance(result, int) else 0

