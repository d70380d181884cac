"""The live feed: rows changed in the shared history, pushed to the open pages.

One thread per server looks at the history every ``POLL_S`` while a page is
open (sooner when this server finished a request, through ``notify``, but at
most every ``MIN_LOOK_S``: a burst costs a few looks a second, not one per
request), and
publishes each new or changed row, whichever worker wrote it; so every
worker's page follows the whole mailbox. A summary (queue, workers, errors)
follows every ``SUMMARY_S``. Rows written by machines whose clocks run a
little behind are still seen: each look reaches ``OVERLAP_S`` back, and rows
already sent are not sent twice.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from animalid.history import RequestRecord
from animalid.web.events import EventHub
from animalid.web.sources import HistorySource

log = logging.getLogger(__name__)

POLL_S = 1.0
MIN_LOOK_S = 0.5  # looks at most this often, however often the server says it changed
SUMMARY_S = 2.0
OVERLAP_S = 5.0
BATCH = 500


class LiveFeed:
    def __init__(self, history: HistorySource, hub: EventHub, render: Callable[[RequestRecord], dict[str, Any]],
                 summary: Callable[[], dict[str, Any]], clock: Callable[[], float] = time.time,
                 poll_s: float = POLL_S):
        self._history, self._hub = history, hub
        self._render, self._summary = render, summary
        self._clock, self._poll_s = clock, poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cursor = clock()
        self._sent: dict[str, float] = {}  # key -> updated, for rows inside the overlap
        self._last_summary = 0.0
        self._failing = False

    def notify(self) -> None:
        """Something changed here: look now rather than at the next poll."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="animalid-web-feed", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._poll_s)
            if self._stop.wait(MIN_LOOK_S):  # and gather what else changes meanwhile
                return
            self._wake.clear()
            if not self._hub.subscribers:
                self._cursor = max(self._cursor, self._clock() - OVERLAP_S)
                self._sent.clear()
                continue
            try:
                self.look()
                self._failing = False
            except Exception as exc:  # noqa: BLE001 - the page waits; serving goes on
                if not self._failing:
                    log.warning("live page: cannot read the history: %s", exc)
                self._failing = True

    def look(self) -> int:
        """Publish what changed since the last look (and a summary when due); rows sent."""
        sent = 0
        rows = self._history.requests_since(self._cursor - OVERLAP_S, BATCH)
        for row in rows:
            if self._sent.get(row.key) == row.updated:
                continue
            self._sent[row.key] = row.updated
            self._hub.publish("row", self._render(row))
            sent += 1
        if rows:
            self._cursor = max(self._cursor, max(row.updated for row in rows))
        horizon = self._cursor - 2 * OVERLAP_S
        self._sent = {key: updated for key, updated in self._sent.items() if updated >= horizon}
        now = self._clock()
        if now - self._last_summary >= SUMMARY_S:
            self._last_summary = now
            self._hub.publish("summary", self._summary())
        return sent
