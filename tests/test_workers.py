"""The one worker pool: results as they land, a worker that dies, an error, Ctrl-C."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from nextvox.errors import NextvoxError
from nextvox.workers import WorkerPool


def double_or_die(x: int) -> int:
    """In a worker: 2x, except that 3 kills its worker outright (as a decoder's segfault would)."""
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return 2 * x


def slow_identity(x: int) -> int:
    time.sleep(0.5 if x else 0.0)
    return x


def refuse(x: int) -> int:
    raise ValueError(f"bad input {x}")


def test_a_worker_that_dies_is_named_and_the_run_goes_on() -> None:
    results: dict[int, int] = {}
    crashed: list[int] = []
    with WorkerPool(2) as pool:
        pool.run(double_or_die, [(i, (i,)) for i in range(8)], on_result=results.__setitem__, on_crash=crashed.append)
    assert crashed == [3]
    assert results == {i: 2 * i for i in range(8) if i != 3}
    assert not multiprocessing.active_children()


def test_without_on_crash_a_dead_worker_is_an_error() -> None:
    with pytest.raises(NextvoxError, match="worker process died while working on 3"), WorkerPool(1) as pool:
        pool.run(double_or_die, [(3, (3,))], on_result=lambda key, value: None)
    assert not multiprocessing.active_children()


def test_an_error_of_the_function_stops_the_run_and_is_raised() -> None:
    with pytest.raises(ValueError, match="bad input"), WorkerPool(2) as pool:
        pool.run(refuse, [(i, (i,)) for i in range(4)], on_result=lambda key, value: None)
    assert not multiprocessing.active_children()


def test_ctrl_c_stops_every_worker_at_once() -> None:
    def interrupt(key: int, value: int) -> None:
        raise KeyboardInterrupt  # as Ctrl-C lands in the parent while the others are mid-task

    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), WorkerPool(2) as pool:
        pool.run(slow_identity, [(i, (i,)) for i in range(6)], on_result=interrupt)
    deadline = time.monotonic() + 5
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not multiprocessing.active_children()
    assert time.perf_counter() - started < 30
