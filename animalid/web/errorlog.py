"""The errors of the last hour, for the page: a logging handler with a bounded memory.

Attached to the ``animalid`` logger, it keeps the last ``KEEP`` warnings and
errors of this process (a lost mailbox connection, a classifier failure, a
reply refused) with their time, so the page can show how many happened in
the last hour and the latest few, as the log said them.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable

KEEP = 200
WINDOW_S = 3600.0
SHOWN = 10


class RecentErrors(logging.Handler):
    """Warnings and errors of this process, newest last."""

    def __init__(self, clock: Callable[[], float] = time.time, keep: int = KEEP):
        super().__init__(level=logging.WARNING)
        self._clock = clock
        self._records: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=keep)
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = " ".join(record.getMessage().split())[:500]
        except Exception:  # noqa: BLE001 - a bad log call must not break logging
            message = str(record.msg)[:500]
        with self._guard:
            self._records.append((self._clock(), record.levelname.lower(), message))

    def summary(self, window_s: float = WINDOW_S, shown: int = SHOWN) -> dict[str, Any]:
        """How many in the window, and the latest few (time, level, text)."""
        since = self._clock() - window_s
        with self._guard:
            recent = [entry for entry in self._records if entry[0] >= since]
        return {"count": len(recent),
                "latest": [{"at": at, "level": level, "text": text} for at, level, text in recent[-shown:]][::-1]}

    def attach(self, logger_name: str = "animalid") -> "RecentErrors":
        logging.getLogger(logger_name).addHandler(self)
        return self

    def detach(self, logger_name: str = "animalid") -> None:
        logging.getLogger(logger_name).removeHandler(self)
