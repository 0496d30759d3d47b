"""The Ray engine: run a per-item function over many items as a Ray Data job.

A thin layer over Ray Data (``pip install 'nextvox[ray]'``): the items become a dataset,
``map_batches`` hands batches of them to a pool of actors (each loads what it needs once, in
its constructor, then serves batch after batch), and the results stream back to the driver
as each batch finishes, in no fixed order, so the caller can commit them as they land.
:mod:`nextvox.analysis` runs :func:`nextvox.analysis.analyze_file` through it for
``nextvox analyze --engine ray``; this module knows nothing of audio.

Every result comes back with the id of the Ray node that computed it and with what the
actor's set-up returned there (the analysis uses that to check that every node runs the same
models as the driver).

An actor that dies (a decoder crash, the OOM killer) takes its batch with it: Ray restarts
the actor, and the items of that batch are tried again one batch at a time (``batch_size``
1); those that still kill their actor are returned as lost, for the caller to mark.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nextvox.errors import MissingDependencyError, NextvoxError
from nextvox.workers import compile_shared_kernels

__all__ = ["RemoteResult", "import_ray", "check_address", "map_on_ray", "local_cluster"]

INSTALL_HINT = "pip install 'nextvox[ray]'"
# Batches small enough that results land steadily (a killed driver loses at most the
# batches in flight) and large enough that the per-task cost of Ray (~ms) stays negligible
# beside a track's ~1 s of analysis.
MAX_BATCH_ITEMS = 8
# How long the pool may take to start (a busy cluster frees CPUs late; an autoscaler adds nodes).
ACTOR_START_TIMEOUT_S = 600


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or a MissingDependencyError that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401  (Ray Data is the part nextvox uses: ray[data])
    except ImportError:
        raise MissingDependencyError(f"the Ray engine needs Ray Data, which is not installed: {INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class RemoteResult:
    """One item's result. ``item`` is the item as given; ``result`` what the function returned
    (None when ``lost``: the actor died on it twice); ``node_id`` the Ray node that ran it;
    ``setup`` what the actor's set-up returned on that node."""

    item: dict[str, str]
    result: object
    node_id: str
    setup: object
    lost: bool = False


class _Actor:
    """One worker of the pool: sets up once, then maps batches of items through ``function``."""

    def __init__(self, function: Callable[..., object], setup: Callable[[], object] | None):
        import ray

        self.function = function
        self.setup = setup() if setup is not None else None
        self.node_id = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        columns = list(batch)
        n = len(batch[columns[0]])
        items = [{c: str(batch[c][i]) for c in columns} for i in range(n)]
        # Pickled by hand: a result holds numpy arrays in dictionaries, which Arrow has no type for.
        results = [pickle.dumps(self.function(**item), protocol=pickle.HIGHEST_PROTOCOL) for item in items]
        return {**{c: [item[c] for item in items] for c in columns}, "result": results,
                "node_id": [self.node_id] * n, "setup": [pickle.dumps(self.setup)] * n}  # fmt: skip


def _quiet_ray() -> None:
    """Keep Ray's notes (start-up, the executor's plan, a retried task's traceback) off the command's stderr.

    Only the console handlers are raised: Ray Data's own log file in the session directory
    (``logs/ray-data/``) keeps everything for a post-mortem.
    """
    for name in ("ray", "ray.data"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setLevel(logging.CRITICAL)


def check_address(address: str, *, timeout_s: float = 5.0) -> None:
    """Raise a NextvoxError unless something listens at a Ray address (``host:port`` or ``ray://host:port``).

    ``ray.init`` waits minutes for a cluster that is not there; a plain TCP connection says so
    in seconds. ``auto`` (the cluster this machine belongs to) is left to Ray.
    """
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise NextvoxError(f"not a Ray address: {address!r} (use host:port, ray://host:port or auto)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise NextvoxError(f"no Ray cluster answers at {address} ({error.strerror or error})") from None


def _connect(ray: Any, address: str | None, *, num_cpus: int | None) -> None:
    if ray.is_initialized():
        return
    if address is not None:
        check_address(address)
    options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    try:
        if address is None:  # "local": a new instance, even where `ray start` left a cluster running
            ray.init(address="local", num_cpus=num_cpus, **options)
        else:
            ray.init(address=address, **options)
    except Exception as error:  # refused, timed out, a wrong token, a version mismatch: one line for each
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise NextvoxError(f"cannot start or reach {where}: {' '.join(str(error).split())[:300]}") from None
    _quiet_ray()  # after ray.init, which sets up the "ray" logger's handlers


def _cluster_cpus(ray: Any) -> dict[str, float]:
    """Alive nodes that offer CPUs: node id -> CPUs."""
    return {n["NodeID"]: float(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")}


def _run_dataset(ray: Any, items: Sequence[dict[str, str]], *, function: Callable, setup: Callable | None,
                 actors: int, batch_size: int) -> Iterator[RemoteResult]:
    from ray.data import ActorPoolStrategy, DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    # A batch whose actor died more than Ray's retries allow is skipped, not fatal: its items
    # come back missing and are retried alone by the caller of this function.
    context.max_errored_blocks = -1
    # Every actor up before the first batch: the first to load its models would otherwise take
    # the whole of a short job (and the stats would show one node at work).
    context.wait_for_min_actors_s = ACTOR_START_TIMEOUT_S
    dataset = ray.data.from_items(list(items), override_num_blocks=max(1, -(-len(items) // batch_size)))
    with warnings.catch_warnings():
        # Ray 2.60 announces that actor options passed this way go in 2.64; the extra pins 2.60.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
        mapped = dataset.map_batches(
            _Actor,
            fn_constructor_kwargs={"function": function, "setup": setup},
            batch_size=batch_size,
            batch_format="numpy",
            # Two batches queued per actor: none waits for work, and the first actor to start
            # does not take a queue of batches that the others would have shared.
            compute=ActorPoolStrategy(size=actors, max_tasks_in_flight_per_actor=2),
            # One CPU per actor: the analysis runs one thread per track, like a local worker.
            num_cpus=1,
            # Ray Data retries a dead actor's task forever by default, so a file that kills its
            # worker would never let the job end: one retry, then the batch is skipped.
            max_restarts=-1,
            max_task_retries=1,
        )
    rows = iter(mapped.iter_rows())
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except ray.exceptions.GetTimeoutError:
            raise NextvoxError(
                f"the Ray cluster found no room for {actors} actors of 1 CPU in {ACTOR_START_TIMEOUT_S} s: "
                "add nodes, or ask for fewer actors with --jobs"
            ) from None
        yield RemoteResult(
            item={k: row[k] for k in items[0]},
            result=pickle.loads(row["result"]),
            node_id=str(row["node_id"]),
            setup=pickle.loads(row["setup"]),
        )


def map_on_ray(
    items: Sequence[dict[str, str]],
    *,
    key: str,
    function: Callable[..., object],
    setup: Callable[[], object] | None = None,
    address: str | None = None,
    actors: int | None = None,
) -> Iterator[RemoteResult]:
    """Call ``function(**item)`` for every item on a Ray cluster; yield each result as it lands.

    Parameters
    ----------
    items : sequence of dict of str -> str
        The work, one dictionary of string fields per item (e.g. a file's path and hash);
        every item has the same keys.
    key : str
        The field that tells items apart (to find the ones a dead actor lost).
    function : callable(**item) -> object
        Run in the actors; must not raise for bad input (return the failure instead).
        Pickled by reference: it must be importable on every node.
    setup : callable() -> object, optional
        Run once in each actor before its first batch (load models); its result comes back
        with every item the actor processed.
    address : str, optional
        A running cluster (``host:port``, ``auto``, ``ray://host:10001``). None starts a
        local Ray instance for this job, with ``actors`` CPUs.
    actors : int, optional
        Size of the actor pool (one CPU each); by default one per CPU the cluster has when the job starts.

    Yields
    ------
    RemoteResult
        In the order results finish, not the order of ``items``; the items whose actor died
        twice come last, with ``lost=True``.

    Raises
    ------
    MissingDependencyError
        Ray is not installed.
    NextvoxError
        The cluster cannot be reached.
    """
    if not items:
        return
    ray = import_ray()
    # Actors on the driver's machine share its numba cache: fill it before they start (see
    # nextvox.workers). Other nodes fill theirs on first use; docs/scale.md says how to warm them.
    compile_shared_kernels()
    connected_here = not ray.is_initialized()
    _connect(ray, address, num_cpus=actors or os.cpu_count() or 1)
    try:
        cpus = int(sum(_cluster_cpus(ray).values()))
        # By default one actor per CPU the cluster has now; more when asked (an autoscaler may add nodes).
        pool = max(1, min(actors or cpus or 1, len(items)))
        batch_size = max(1, min(MAX_BATCH_ITEMS, len(items) // (4 * pool)))
        seen: set[str] = set()
        for result in _run_dataset(ray, items, function=function, setup=setup, actors=pool, batch_size=batch_size):
            seen.add(result.item[key])
            yield result
        missing = [item for item in items if item[key] not in seen]
        if missing:  # their batch's actor died: each alone, so one bad item loses only itself
            for result in _run_dataset(ray, missing, function=function, setup=setup, actors=min(pool, len(missing)), batch_size=1):
                seen.add(result.item[key])
                yield result
            for item in missing:
                if item[key] not in seen:
                    yield RemoteResult(item=item, result=None, node_id="", setup=None, lost=True)
    finally:
        if connected_here:  # a local instance started for this job ends with it
            ray.shutdown()


def _free_port() -> int:
    """A free TCP port from the kernel's ephemeral range (Ray's workers take 10002-19999)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_cluster(*, n_nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 300,
                  pythonpath: str | None = None, timeout_s: float = 180.0) -> Iterator[tuple[str, dict[str, str]]]:
    """A real Ray cluster of ``n_nodes`` nodes on this machine, on loopback, for trying the engine and for tests.

    Each node is one ``ray start --block`` process (the head, then ``ray start --address``)
    with its own CPUs and object store; leaving the block stops exactly these processes (SIGTERM,
    then SIGKILL of their process groups), never another Ray on the machine. Token
    authentication is on, with a token of this cluster's own.

    Yields
    ------
    address : str
        ``127.0.0.1:PORT``, for ``--ray-address``.
    env : dict
        The environment a driver needs to join (the token); pass it to ``subprocess``.
    """
    import shutil
    import subprocess
    import sys
    import tempfile
    import time
    import uuid

    import_ray()
    ray_cli = Path(sys.executable).with_name("ray")
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="nvray-")  # short: Ray's socket paths must fit in 107 bytes
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=uuid.uuid4().hex, RAY_USAGE_STATS_ENABLED="0")
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, os.environ.get("PYTHONPATH")]))
    node_options = ["--block", "--num-cpus", str(cpus_per_node), "--object-store-memory", str(object_store_mb * 2**20),
                    "--disable-usage-stats"]  # fmt: skip
    address = f"127.0.0.1:{port}"
    processes: list[subprocess.Popen] = []

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if processes[-1].poll() is not None:
                raise NextvoxError(f"ray start exited with status {processes[-1].returncode}")
            status = subprocess.run([str(ray_cli), "status", "--address", address], env=env, capture_output=True, text=True)
            if status.returncode == 0 and status.stdout.count(" node_") >= n:
                return
            time.sleep(1.0)
        raise NextvoxError(f"the Ray cluster at {address} did not reach {n} nodes in {timeout_s:.0f} s")

    try:
        for i in range(n_nodes):
            role = ["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", temp_dir] if i == 0 else ["--address", address]
            processes.append(subprocess.Popen([str(ray_cli), "start", *role, *node_options], env=env, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
            wait_for(i + 1)
        yield address, env
    finally:
        for process in reversed(processes):  # `ray start --block` stops its node's processes on SIGTERM
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(process.pid, signal.SIGKILL)  # whatever of that node is still running
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)
