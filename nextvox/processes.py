"""How nextvox's processes end: workers die with their parent, and SIGTERM stops a command like Ctrl-C.

A worker process left behind by a parent that was killed (``kill -9``, the OOM killer, a
closed terminal) keeps its models in memory (about 470 MB each) and goes on decoding for
nobody; :func:`die_with_parent` makes the kernel end it. SIGTERM (``kill``, systemd, a
container stop) must save what is done and print the same line as Ctrl-C:
:func:`sigterm_as_interrupt` turns it into the ``KeyboardInterrupt`` the commands already
handle. :func:`time_limit` bounds a piece of work that may block (a read from a stalled disk).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["die_with_parent", "sigterm_as_interrupt", "TimeLimitExceeded", "time_limit"]

# prctl(2) option: the signal this process gets when the thread that created it ends.
PR_SET_PDEATHSIG = 1
# How often the portable fallback looks for its parent, seconds.
PARENT_POLL_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    """End this process (SIGKILL) as soon as ``parent_pid``, its parent, is gone.

    Call it first thing in a worker process. On Linux the kernel sends the signal
    (``prctl(PR_SET_PDEATHSIG)``); elsewhere a daemon thread polls the parent every
    ``PARENT_POLL_S`` seconds. A parent that died before this call ends the worker at once.

    Parameters
    ----------
    parent_pid : int
        The process id of the parent, as the parent saw itself (``os.getpid()`` there).
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            _watch_parent(parent_pid)
    else:
        _watch_parent(parent_pid)
    # The parent may have died between this process's start and the call above: then the
    # kernel will never send the signal, and this process has been adopted by another.
    if os.getppid() != parent_pid:
        os._exit(1)


def _watch_parent(parent_pid: int) -> None:
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises ``KeyboardInterrupt`` in the main thread, as Ctrl-C does.

    Outside the main thread (where Python cannot set a signal handler) it does nothing.
    The previous handler is put back on leaving.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class TimeLimitExceeded(Exception):
    """Raised by :func:`time_limit` when its body runs too long."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`TimeLimitExceeded` in the body when it runs longer than ``seconds``.

    A real-time alarm (SIGALRM) interrupts a blocking read or open as well as Python code;
    native code that never returns to the interpreter is not interrupted. In the main
    thread only (elsewhere there is no limit); the previous alarm handler is put back.

    Parameters
    ----------
    seconds : float
        Wall-clock seconds, > 0.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise TimeLimitExceeded(f"no result after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
