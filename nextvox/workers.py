"""Worker processes: the one pool that spreads files over the cores, for every stage that does.

The analysis, evaluation's baselines, training's spectrograms and the song generator all run
one function over many files. :class:`WorkerPool` does it with what each of them needs:

- **spawn** processes with one thread per native pool (torch and OpenMP do not survive a fork,
  and two workers with spinning BLAS threads each ran slower than one);
- results handed back **as they land**, with a bounded number of tasks in flight;
- **crash isolation**: a worker that dies (a decoder's segfault, the OOM killer) breaks the
  whole executor; it is rebuilt and the tasks that were in flight run again one at a time,
  so the one that kills a worker is named (``on_crash``) and the run goes on;
- **Ctrl-C and SIGTERM**: only the parent handles them (workers ignore SIGINT, which reaches
  the whole process group); it stops every worker at once and raises ``KeyboardInterrupt``;
- workers **die with their parent** when it is killed outright (:func:`nextvox.processes.die_with_parent`);
- librosa's cached numba kernels are **compiled in the parent first** (:func:`compile_shared_kernels`):
  two workers compiling one ``guvectorize`` kernel at once can pair cache files from different
  processes (numba issue 10128), and every later call to it then segfaults. A pool whose
  workers never reach them (the analysis with the mask separator) says so (``librosa_kernels=False``)
  and starts without those seconds of importing and loading in the parent.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from nextvox.errors import NextvoxError
from nextvox.processes import die_with_parent

__all__ = ["WorkerPool", "worker_setup", "compile_shared_kernels"]

# Native thread pools read these when numpy and torch load in a spawned worker, before any
# initializer runs: one thread each, one process per core.
ONE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
IN_FLIGHT_PER_WORKER = 2  # enough to keep a worker busy while its last result travels back
STOP_WAIT_S = 5.0  # how long a stopped worker is given to end (SIGTERM) before the parent goes on


_kernels_compiled = False


def compile_shared_kernels() -> None:
    """Compile (or load from numba's cache) librosa's cached ``guvectorize`` kernels, once per process.

    The workers' stages reach them through ``estimate_tuning`` (pitch peaks and local maxima,
    in chroma), ``zero_crossings`` and ``peak_pick``, for float32 and float64 input. Run in the
    parent before workers start, so that no two processes write one kernel's cache at once.
    """
    global _kernels_compiled
    if _kernels_compiled:
        return
    import librosa
    import numpy as np

    for dtype in (np.float32, np.float64):
        tone = np.sin(2 * np.pi * 440.0 * np.arange(8192) / 16000.0).astype(dtype)  # 0.5 s at 16 kHz
        librosa.estimate_tuning(y=tone, sr=16000)
        librosa.zero_crossings(tone)
        librosa.util.localmax(tone)
        librosa.util.localmin(tone)
        librosa.util.peak_pick(tone, pre_max=3, post_max=3, pre_avg=3, post_avg=5, delta=0.5, wait=10)
    _kernels_compiled = True


def worker_setup(parent_pid: int, initializer: Callable[..., None] | None, initargs: tuple) -> None:
    """First thing in every worker: die with the parent, leave Ctrl-C to it, then the stage's own set-up."""
    die_with_parent(parent_pid)
    # Ctrl-C reaches the whole process group: only the parent handles it (it saves what is
    # done and stops the workers); a worker killed mid-task would look like a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


class WorkerPool:
    """``jobs`` spawned worker processes; use it as a context manager (see the module's notes).

    Parameters
    ----------
    jobs : int
        Worker processes.
    initializer : callable, optional
        Run once in each worker (picklable: a module-level function), with ``initargs``.
    librosa_kernels : bool
        Whether the workers may call librosa's cached kernels (chroma, tuning, peak picking,
        its ``istft``): they are then compiled in the parent before any worker starts.

    Examples
    --------
    >>> results = {}
    >>> with WorkerPool(2) as pool:
    ...     pool.run(abs, [(i, (-i,)) for i in range(4)], on_result=results.__setitem__)
    >>> dict(sorted(results.items()))  # in the order the results landed: sorted here
    {0: 0, 1: 1, 2: 2, 3: 3}
    """

    def __init__(self, jobs: int, *, initializer: Callable[..., None] | None = None, initargs: tuple = (),
                 librosa_kernels: bool = True):  # fmt: skip
        self.jobs = max(1, int(jobs))
        self.librosa_kernels = librosa_kernels
        self._setup_args = (os.getpid(), initializer, tuple(initargs))
        for variable in ONE_THREAD_VARIABLES:
            os.environ.setdefault(variable, "1")
        self._executor: ProcessPoolExecutor | None = None
        self._children_before: set = set()

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            if self.librosa_kernels:
                compile_shared_kernels()
            self._children_before = set(multiprocessing.active_children())
            self._executor = ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                initializer=worker_setup, initargs=self._setup_args,
            )  # fmt: skip
        return self._executor

    def run(
        self,
        function: Callable[..., Any],
        tasks: Iterable[tuple[Hashable, tuple]],
        *,
        on_result: Callable[[Hashable, Any], None],
        on_crash: Callable[[Hashable], None] | None = None,
    ) -> None:
        """Run ``function(*args)`` for every ``(key, args)`` of ``tasks``; ``on_result(key, value)`` as each lands.

        ``function`` must be picklable and should turn a bad input into a value (an exception
        it raises stops the run and is raised here). A task whose worker dies even when run
        alone goes to ``on_crash(key)``; without ``on_crash`` that is a NextvoxError.

        Raises
        ------
        KeyboardInterrupt
            On Ctrl-C (or SIGTERM turned into it): every worker is stopped first.
        """
        queue = list(tasks)
        suspects: list[tuple[Hashable, tuple]] = []  # in flight when a worker died: run again alone
        try:
            while queue or suspects:
                alone = [suspects.pop(0)] if suspects else None
                in_flight: dict[Future, tuple[Hashable, tuple]] = {}
                try:
                    source = alone if alone is not None else queue
                    limit = 1 if alone is not None else IN_FLIGHT_PER_WORKER * self.jobs
                    while source or in_flight:
                        while source and len(in_flight) < limit:
                            future = self._start().submit(function, *source[0][1])  # a broken executor raises here too
                            in_flight[future] = source.pop(0)
                        finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                        for future in finished:
                            value = future.result()  # raises BrokenProcessPool if a worker died
                            key, _ = in_flight.pop(future)
                            on_result(key, value)
                except BrokenProcessPool:
                    self._discard()
                    if alone is None:
                        suspects.extend(in_flight.values())
                        continue
                    if not in_flight:  # found broken before this task was sent: not its doing
                        suspects[:0] = alone
                        continue
                    ((key, _),) = in_flight.values()
                    if on_crash is None:
                        raise NextvoxError(f"a worker process died while working on {key}") from None
                    on_crash(key)
        except BaseException:
            self.stop()
            raise

    def _discard(self) -> None:
        """Drop a broken executor and what is left of its workers; the next task starts a fresh one."""
        self.stop()

    def stop(self) -> None:
        """Stop at once: cancel what has not started and end the workers (not after their tasks)."""
        if self._executor is None:
            return
        # The executor's processes, found through multiprocessing's public list of this process's children.
        workers = set(multiprocessing.active_children()) - self._children_before
        for process in workers:
            process.terminate()
        # The executor's own thread reaps the workers it sees end; waiting for it (the workers
        # are already ending) leaves no second thread reaping them and no child half-counted.
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = None
        for process in workers:
            process.join(timeout=STOP_WAIT_S)

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # Every result is in (or the run failed): the workers are stopped, not waited for. One
        # that ends by itself tears down its interpreter, torch included, which took the
        # analysis about as long as a song, on every run.
        self.stop()
