"""The cores a build may use: how many (``usable_cores``), and how many threads the steps that run in the driver
process itself (near-dedup banding and verification, the external shuffle of the write) may use (``driver_threads``).

Those steps are numpy, polars and pyarrow work that releases the GIL, so threads use the machine's cores there
without a second copy of the data; results are always assembled in item order, so bytes never depend on them.
A build sets the bound from its executor (``using``): ``--workers 1`` keeps the whole build on one core.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

DRIVER_THREADS = 4  # more threads than this buy little: the work is memory- and I/O-bound
_LIMIT: ContextVar[int] = ContextVar("cardtune_driver_threads", default=1)


def usable_cores() -> int:
    """All cores this process may use (its CPU affinity on Linux)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def driver_threads() -> int:
    """Threads for the driver's own steps: the build's bound (1 outside a build), the usable cores, at most
    ``DRIVER_THREADS``."""
    return max(1, min(DRIVER_THREADS, usable_cores(), _LIMIT.get()))


@contextlib.contextmanager
def using(cores: int) -> Iterator[None]:
    """Within this block the driver's steps may use up to ``cores`` threads."""
    token = _LIMIT.set(max(1, cores))
    try:
        yield
    finally:
        _LIMIT.reset(token)


def thread_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(item) for item in items]`` on the driver's threads (in this thread when there is one), in item order;
    the first error is raised again."""
    work = list(items)
    threads = min(driver_threads(), len(work))
    if threads <= 1:
        return [fn(item) for item in work]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(functools.partial(_alone, fn), work))


def _alone(fn: Callable[[T], R], item: T) -> R:
    """``fn(item)`` on a driver thread: what it calls runs on that thread alone (one level of threads, not
    threads of threads)."""
    with using(1):
        return fn(item)


def one_ahead(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``fn(item)`` for each item in order, the next one computed on a thread while the caller uses this one
    (with one driver thread: each computed when it is needed). At most two results exist at once."""
    work = list(items)
    if driver_threads() <= 1:
        yield from (fn(item) for item in work)
        return
    with ThreadPoolExecutor(1) as pool:
        ahead = pool.submit(_alone, fn, work[0]) if work else None
        for k in range(len(work)):
            assert ahead is not None
            result = ahead.result()
            ahead = pool.submit(_alone, fn, work[k + 1]) if k + 1 < len(work) else None
            yield result


def window_map(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``fn(item)`` for each item, in order, on the driver's threads with at most one item per thread in flight
    (memory holds a few results, not all; with one driver thread: each computed when it is needed)."""
    work = list(items)
    threads = min(driver_threads(), len(work))
    if threads <= 1:
        yield from (fn(item) for item in work)
        return
    with ThreadPoolExecutor(threads) as pool:
        pending = collections.deque(pool.submit(_alone, fn, item) for item in work[:threads])
        for item in work[threads:]:
            result = pending.popleft().result()
            pending.append(pool.submit(_alone, fn, item))
            yield result
        while pending:
            yield pending.popleft().result()


def side_by_side(main: Callable[[], object], side: Callable[[], object]) -> None:
    """``main()`` here and ``side()`` on a thread of its own (which runs its calls alone), both to the end; with
    one driver thread, one after the other. Once both have ended, ``main``'s error is raised again, else
    ``side``'s."""
    if driver_threads() <= 1:
        main()
        side()
        return
    with ThreadPoolExecutor(1) as pool:
        other = pool.submit(_alone, _call, side)
        try:
            main()
        finally:
            error = other.exception()
    if error is not None:
        raise error


def _call(fn: Callable[[], R]) -> R:
    return fn()
