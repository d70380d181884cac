"""The decoding budget: pixels in flight never pass it, whatever the number of threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from animalid.recognition.decode_budget import DecodeBudget


def test_threads_never_hold_more_than_the_budget():
    budget = DecodeBudget(max_pixels=100, max_bytes=10_000)
    seen: list[int] = []
    lock = threading.Lock()

    def decode(pixels: int) -> None:
        with budget.hold(pixels, 10):
            with lock:
                seen.append(budget.in_flight[0])
            threading.Event().wait(0.002)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(decode, [40, 60, 30, 70, 10, 90, 50] * 20))
    assert max(seen) <= 100 and budget.peak_pixels <= 100
    assert budget.in_flight == (0, 0)


def test_a_picture_over_the_whole_budget_runs_alone():
    budget = DecodeBudget(max_pixels=100)
    with budget.hold(500):
        assert budget.in_flight[0] == 500
        entered = threading.Event()

        def small() -> None:
            with budget.hold(1):
                entered.set()

        thread = threading.Thread(target=small)
        thread.start()
        assert not entered.wait(0.2)  # waits for the big one
    thread.join(5)
    assert entered.is_set()


def test_bytes_are_budgeted_too():
    budget = DecodeBudget(max_pixels=10**9, max_bytes=100)
    with budget.hold(1, 80):
        done = threading.Event()
        thread = threading.Thread(target=lambda: (budget.hold(1, 30).__enter__(), done.set()))
        thread.start()
        assert not done.wait(0.2)
    thread.join(5)
    assert done.is_set()


def test_an_exception_gives_the_share_back():
    budget = DecodeBudget(max_pixels=10)
    with pytest.raises(RuntimeError), budget.hold(10):
        raise RuntimeError("bad image")
    assert budget.in_flight == (0, 0)
    with pytest.raises(ValueError):
        DecodeBudget(max_pixels=0)
