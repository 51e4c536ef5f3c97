"""The driver's threads: results in item order, a bounded window in flight, one level of threads, errors raised
again after both sides of a side-by-side step have ended."""

from __future__ import annotations

import threading
import time

import pytest

from cardtune.curate import cores


@pytest.fixture(autouse=True)
def four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores, "usable_cores", lambda: 4)  # the same on a one-core machine


def test_thread_map_and_window_map_keep_item_order_on_several_threads() -> None:
    seen: set[str] = set()

    def slow_square(x: int) -> int:
        seen.add(threading.current_thread().name)
        time.sleep(0.002 * (10 - x % 10))  # later items finish first
        return x * x

    with cores.using(2):
        assert cores.thread_map(slow_square, range(20)) == [x * x for x in range(20)]
        assert list(cores.window_map(slow_square, range(20))) == [x * x for x in range(20)]
    assert len(seen) >= 2 and threading.current_thread().name not in seen


def test_window_map_holds_at_most_one_item_per_thread() -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def work(x: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.005)
        with lock:
            running -= 1
        return x

    with cores.using(2):
        results = cores.window_map(work, range(12))
        first = next(results)  # the consumer holds the first result: no more than the window was started
        assert first == 0 and most <= 2
        assert list(results) == list(range(1, 12))
    assert most == 2


def test_a_driver_threads_own_calls_run_on_it_alone() -> None:
    with cores.using(4):
        assert cores.driver_threads() >= 1
        inner = cores.thread_map(lambda _: cores.driver_threads(), range(4))
    assert inner == [1, 1, 1, 1]


def test_one_driver_thread_runs_everything_here() -> None:
    names = cores.thread_map(lambda _: threading.current_thread().name, range(3))
    names += list(cores.window_map(lambda _: threading.current_thread().name, range(3)))
    assert set(names) == {threading.current_thread().name}


def test_side_by_side_runs_both_and_raises_the_side_error_after_main_ends() -> None:
    done: list[str] = []

    def side() -> None:
        raise ValueError("side failed")

    def main() -> None:
        time.sleep(0.01)
        done.append("main")

    for threads in (1, 2):
        done.clear()
        with cores.using(threads), pytest.raises(ValueError, match="side failed"):
            cores.side_by_side(main, side)
        assert done == ["main"]


def test_side_by_side_waits_for_the_side_when_main_fails() -> None:
    done: list[str] = []

    def side() -> None:
        time.sleep(0.02)
        done.append("side")

    def main() -> None:
        raise KeyError("main failed")

    with cores.using(2), pytest.raises(KeyError, match="main failed"):
        cores.side_by_side(main, side)
    assert done == ["side"]  # nothing is left running behind the error
