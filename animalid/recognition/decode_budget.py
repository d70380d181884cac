"""How much decoding may happen at once: a budget of pixels and bytes in flight.

Decoding memory is set by the pictures being decoded, not by the number of
threads: a 40-megapixel RGBA PNG of 170 kB needs about 600 MB while it is
turned into RGB, whatever the core count. So the decoding threads share one
budget. Before decoding, a thread asks for the picture's pixel count (read
from its header) and its compressed size; it waits while the pictures
already in flight would take the total over the budget, and gives its share
back when done. A picture larger than the whole budget is decoded alone, so
nothing is refused here (the pixel limit of images.py does that).

With the default budget of 40 million pixels, one camera-sized photo at most
is decoded at a time when photos are huge, and many at once when they are
small, on 2 cores or 64.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_BUDGET_PIXELS = 40_000_000
DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024


class DecodeBudget:
    """A counting semaphore over pixels and bytes (see the module docstring)."""

    def __init__(self, max_pixels: int = DEFAULT_BUDGET_PIXELS, max_bytes: int = DEFAULT_BUDGET_BYTES):
        if max_pixels <= 0 or max_bytes <= 0:
            raise ValueError("the decoding budget must be positive")
        self.max_pixels, self.max_bytes = int(max_pixels), int(max_bytes)
        self._pixels = 0
        self._bytes = 0
        self._holders = 0
        self.peak_pixels = 0  # the most pixels ever in flight, for tests and benchmarks
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int, size: int = 0) -> Iterator[None]:
        """Wait until ``pixels`` (and ``size`` compressed bytes) fit, hold them for the block."""
        pixels, size = max(0, int(pixels)), max(0, int(size))
        with self._changed:
            # Alone, anything goes: a picture over the budget is decoded by itself.
            self._changed.wait_for(lambda: self._holders == 0 or (
                self._pixels + pixels <= self.max_pixels and self._bytes + size <= self.max_bytes))
            self._pixels += pixels
            self._bytes += size
            self._holders += 1
            self.peak_pixels = max(self.peak_pixels, self._pixels)
        try:
            yield
        finally:
            with self._changed:
                self._pixels -= pixels
                self._bytes -= size
                self._holders -= 1
                self._changed.notify_all()

    @property
    def in_flight(self) -> tuple[int, int]:
        """(pixels, bytes) held now."""
        with self._changed:
            return self._pixels, self._bytes
