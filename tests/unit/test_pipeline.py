"""The server's sending stage: in order, bounded, and a failure stops the pass."""

from __future__ import annotations

import threading
import time

import pytest

from animalid.errors import TransientError
from animalid.server.pipeline import SendingStage


def test_chunks_are_answered_in_order_while_the_caller_goes_on():
    sent, caller_busy_during_send = [], []

    def answer(chunk):
        time.sleep(0.02)
        sent.extend(chunk)
        return [f"done {item}" for item in chunk]

    with SendingStage(answer) as stage:
        for start in range(0, 12, 3):
            stage.put(list(range(start, start + 3)))
            caller_busy_during_send.append(threading.active_count() > 1)
    assert sent == list(range(12))
    assert stage.answered == [f"done {i}" for i in range(12)]
    assert all(caller_busy_during_send)


def test_the_queue_is_bounded():
    release = threading.Event()
    put_times = []

    def answer(chunk):
        release.wait(5)
        return list(chunk)

    with SendingStage(answer, depth=1) as stage:
        started = time.monotonic()
        threading.Timer(0.3, release.set).start()
        for chunk in ([1], [2], [3]):  # one in the thread, one queued, the third waits
            stage.put(chunk)
            put_times.append(time.monotonic() - started)
    assert put_times[-1] >= 0.25 and stage.answered == [1, 2, 3]


def test_a_failure_stops_further_chunks_and_reaches_the_caller():
    calls = []

    def answer(chunk):
        calls.append(chunk)
        raise TransientError("smtp.example: 421 try later")

    with pytest.raises(TransientError, match="421"):
        with SendingStage(answer) as stage:
            assert stage.put([0]) is True
            deadline = time.monotonic() + 5
            while not stage.failed and time.monotonic() < deadline:
                time.sleep(0.01)
            assert stage.put([1]) is False  # the caller stops classifying
    assert calls == [[0]]
