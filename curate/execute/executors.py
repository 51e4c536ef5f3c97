"""Executors: how a pass of a build maps over partitions — in this process, in local worker processes, on Ray.

``Executor.map(fn, items, advance)`` returns ``fn(item)`` for every item, in item order, whatever order they ran
in; an error raised by ``fn`` is raised again here (the first one in item order), so a failing row is reported
the same on every executor. Local workers are spawned processes (polars is not fork-safe); Ray runs the items
as Ray Data ``map_batches`` over a dataset of partition numbers, on the cluster at ``address`` (or a local one).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from concurrent.futures import process as futures_process
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol, TypeVar

from cardtune.curate.cores import usable_cores
from cardtune.curate.errors import UserInputError

T = TypeVar("T")
R = TypeVar("R")
EXECUTORS = ("local", "ray")


class Executor(Protocol):
    """Maps a function over items, results in item order."""

    name: str
    workers: int

    def map(self, fn: Callable[[T], R], items: Sequence[T], advance: Callable[[int], None]) -> list[R]: ...

    def close(self) -> None: ...


def default_workers() -> int:
    """All cores this process may use."""
    return usable_cores()


class LocalExecutor:
    """This process (``workers=1``) or a pool of spawned worker processes."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers if workers is not None else default_workers())
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[T], R], items: Sequence[T], advance: Callable[[int], None]) -> list[R]:
        if self.workers == 1 or len(items) <= 1:
            out = []
            for item in items:
                out.append(fn(item))
                advance(1)
            return out
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        pool = self._pool
        futures: list[Future[R]] = []
        results: list[R] = []
        with _pool_thread_errors(pool) as thread_errors:
            try:
                futures = [pool.submit(fn, item) for item in items]
                for future in futures:
                    while not _settled(future, pool, thread_errors):
                        pass
                    results.append(future.result())
                    advance(1)
            except (BrokenProcessPool, _PoolDied):
                self._discard()
                raise UserInputError(
                    "a build worker process died (killed, or out of memory); nothing was written — "
                    "rerun, or use fewer `--workers`"
                ) from None
            finally:
                for future in futures:
                    future.cancel()
        return results

    def _discard(self) -> None:
        """Drop a broken pool: terminate the surviving workers, let its manager thread end, forget its wake-up pipe.

        Python 3.11's exit hook writes to every pool's wake-up pipe, which a broken pool has already closed
        ("Exception ignored ... Bad file descriptor" at exit); a finished manager's entry is removed first.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return
        manager = getattr(pool, "_executor_manager_thread", None)
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            with contextlib.suppress(Exception):
                process.terminate()
        if manager is not None:
            manager.join(timeout=5.0)
        finished = manager is None or not manager.is_alive()
        with contextlib.suppress(Exception):
            pool.shutdown(wait=finished, cancel_futures=True)
        wakeups = getattr(futures_process, "_threads_wakeups", None)
        if manager is not None and finished and wakeups is not None:
            wakeups.pop(manager, None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _PoolDied(Exception):
    """A worker exited, or the pool's own manager thread failed, while results were still due."""


def _settled(future: Future[Any], pool: ProcessPoolExecutor, thread_errors: list[BaseException]) -> bool:
    """Wait up to a second for ``future``; raise ``_PoolDied`` when it can no longer complete.

    ``ProcessPoolExecutor`` notices most worker deaths itself (``BrokenProcessPool``), but a worker killed while
    it starts, or a failure inside the pool's manager thread, can leave a future pending forever; this checks the
    workers' exit codes and the manager thread between waits, so a dead worker fails the build instead of hanging it.
    """
    done, _ = wait([future], timeout=1.0)
    if done:
        return True
    if thread_errors:
        raise _PoolDied from thread_errors[0]
    processes = getattr(pool, "_processes", None) or {}
    if any(process.exitcode is not None for process in list(processes.values())):
        raise _PoolDied
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None and not manager.is_alive():
        raise _PoolDied
    return False


@contextlib.contextmanager
def _pool_thread_errors(pool: ProcessPoolExecutor) -> Iterator[list[BaseException]]:
    """Collect exceptions of the pool's own helper threads instead of printing their tracebacks.

    When a worker dies, the pool's manager and queue-feeder threads can fail on the closed pipes (an ``OSError``
    printed as "Exception in thread ..."); the build reports the dead worker in one line instead. Exceptions of
    any other thread go to the previous hook unchanged.
    """
    seen: list[BaseException] = []
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        thread = args.thread
        ours = thread is not None and (
            thread is getattr(pool, "_executor_manager_thread", None) or thread.name.startswith("QueueFeederThread")
        )
        if ours and args.exc_value is not None:
            seen.append(args.exc_value)
            logging.getLogger(__name__).debug("pool thread %s failed: %r", getattr(thread, "name", "?"), args.exc_value)
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield seen
    finally:
        threading.excepthook = previous


class RayExecutor:
    """Ray Data: each item becomes a row of a dataset; ``map_batches`` runs ``fn`` on the cluster's workers."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserInputError("the Ray executor needs Ray: pip install 'cardtune[ray]'") from None
        self._started = False
        if not ray.is_initialized():
            if address not in (None, "auto", "local"):
                _probe(address)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = address or "a local Ray instance"
                raise UserInputError(f"cannot reach the Ray cluster at {where}: {str(exc).splitlines()[0]}") from None
            self._started = True
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]
        import ray.data

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the build shows its own progress per pass
        for name in ("ray.data", "ray.data._internal"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def map(self, fn: Callable[[T], R], items: Sequence[T], advance: Callable[[int], None]) -> list[R]:
        import ray.data

        if not items:
            return []
        payload = ray.put(pickle.dumps((fn, list(items), os.getcwd())))  # relative paths resolve as on the driver
        ds = ray.data.range(len(items), override_num_blocks=len(items))
        rows = ds.map_batches(
            _RayCall,
            fn_constructor_args=(payload,),
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=min(self.workers, len(items))),
            num_cpus=1,
        ).take_all()
        by_index = {int(r["id"]): r for r in rows}
        out: list[R] = []
        for i in range(len(items)):
            ok, blob = by_index[i]["ok"], by_index[i]["out"]
            value = pickle.loads(blob)
            if not ok:
                raise value
            out.append(value)
            advance(1)
        return out

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _probe(address: str) -> None:
    """Fail fast (one line) when nothing answers at a Ray address (``ray.init`` would retry for minutes)."""
    import socket

    host_port = address.removeprefix("ray://")
    host, _, port = host_port.rpartition(":")
    if not host or not port.isdigit():
        raise UserInputError(f"Ray address {address!r} is not host:port (or ray://host:port, auto)")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_SECONDS):
            return
    except OSError as exc:
        raise UserInputError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); nothing was built"
        ) from None


PROBE_SECONDS = 5.0


class _RayCall:
    """A Ray Data actor running ``fn`` on the items a batch names; errors come back as values (raised in order)."""

    def __init__(self, payload: Any) -> None:
        import ray

        blob = payload if isinstance(payload, bytes) else ray.get(payload)
        self.fn, self.items, cwd = pickle.loads(blob)
        with contextlib.suppress(OSError):  # on another machine the folder may not exist: paths must be absolute
            os.chdir(cwd)

    def __call__(self, batch: Any) -> dict[str, list[Any]]:
        ids = [int(i) for i in batch.column("id").to_pylist()]
        oks, outs = [], []
        for i in ids:
            try:
                outs.append(pickle.dumps(self.fn(self.items[i])))
                oks.append(True)
            except Exception as exc:
                outs.append(pickle.dumps(exc))
                oks.append(False)
        return {"id": ids, "ok": oks, "out": outs}


def make_executor(
    name: str = "local", workers: int | None = None, address: str | None = None
) -> LocalExecutor | RayExecutor:
    """The executor a build runs on (``--executor``, ``--workers``, ``--address``)."""
    if name == "local":
        if address is not None:
            raise UserInputError("--address is for --executor ray")
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(address)
    raise UserInputError(f"unknown executor {name!r} (one of {', '.join(EXECUTORS)})")


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "default_workers", "make_executor"]
