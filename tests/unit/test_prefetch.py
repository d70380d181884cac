"""Decoding ahead of the network: results in order, never more than the window held."""

from __future__ import annotations

import threading
import time

from animalid.recognition.prefetch import prefetched, thread_pool


def test_results_come_in_input_order_whatever_finishes_first():
    pool = thread_pool(4)
    try:
        def slow_for_small(n):
            time.sleep(0.02 * (5 - n % 5))
            return n * n
        assert list(prefetched(slow_for_small, range(20), pool, window=6)) == [n * n for n in range(20)]
    finally:
        pool.shutdown()


def test_no_more_than_the_window_is_in_flight():
    pool = thread_pool(8)
    lock, running, most = threading.Lock(), [0], [0]

    def work(n):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return n

    try:
        consumed = []
        for value in prefetched(work, range(40), pool, window=3):
            consumed.append(value)
            time.sleep(0.005)  # the consumer (the network) is busy too
        assert consumed == list(range(40)) and most[0] <= 3
    finally:
        pool.shutdown()


def test_one_thread_means_the_callers_thread():
    assert thread_pool(1) is None and thread_pool(0) is None
    seen = []
    assert list(prefetched(lambda n: seen.append(threading.current_thread()) or n, range(3), None, 2)) == [0, 1, 2]
    assert set(seen) == {threading.current_thread()}
