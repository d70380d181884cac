"""Decoding and preprocessing ahead of the network, on several threads, in order.

Pillow decodes and resizes, and torchvision's tensor operations run, with the
GIL released, so threads use every core for this work without the start-up
and copying costs of processes (measured in benchmarks/classifier_speed.py,
"decode"). At most ``window`` results are held at once, so a burst of large
photos does not fill the memory, and the network works on one batch while the
threads prepare the next.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetched(function: Callable[[T], R], items: Iterable[T], executor: Executor | None,
               window: int) -> Iterator[R]:
    """``function(item)`` for each item, in order, computed up to ``window`` items ahead.

    Without an executor the items are done one by one in the caller's thread
    (one core, or a caller that must not start threads).
    """
    if executor is None:
        for item in items:
            yield function(item)
        return
    pending: deque = deque()
    iterator = iter(items)
    for item in iterator:
        pending.append(executor.submit(function, item))
        if len(pending) >= window:
            break
    while pending:
        result = pending.popleft().result()
        for item in iterator:
            pending.append(executor.submit(function, item))
            break
        yield result


def thread_pool(threads: int) -> ThreadPoolExecutor | None:
    """A pool of ``threads`` decoding threads, or None for one thread (the caller's)."""
    if threads <= 1:
        return None
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="animalid-decode")
