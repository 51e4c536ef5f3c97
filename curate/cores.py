"""The cores a build may use: how many (``usable_cores``), and ``driver_threads`` for the steps that run in the
driver process itself (the near-dedup verification, the external shuffle of the write).

Those steps are numpy, polars and pyarrow work that releases the GIL, so threads use the machine's cores there
without a second copy of the data; results are always assembled in item order, so bytes never depend on them.
"""

from __future__ import annotations

import os

DRIVER_THREADS = 4  # more threads than this buy little: the work is memory- and I/O-bound


def usable_cores() -> int:
    """All cores this process may use (its CPU affinity on Linux)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def driver_threads() -> int:
    """Threads for the driver's own steps: the usable cores, at most ``DRIVER_THREADS``."""
    return min(DRIVER_THREADS, usable_cores())
