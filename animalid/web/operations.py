"""One server's operations side: metrics, the live page and its upkeep, behind one object.

``Operations`` is what the serving loop tells about its work (it fits the
server's observer shape: ``request_finished``, ``classified``,
``mailbox_reconnected``, ``changed``), and what owns the page: the metrics
registry, the event hub and its feed, the thumbnails and their pruning, the
recent errors, and the HTTP server. ``start`` binds the page (or, when it
cannot, logs why and serves none); ``close`` undoes it all.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Sequence

from animalid.history import ANSWERED, ImageResult
from animalid.web.access import Access
from animalid.web.app import WebApp
from animalid.web.errorlog import RecentErrors
from animalid.web.events import EventHub
from animalid.web.feed import LiveFeed
from animalid.web.httpd import WebServer, bind
from animalid.web.metrics import Metrics
from animalid.web.overview import overview
from animalid.web.settings import WebSettings
from animalid.web.sources import Check, HistorySource, LocalState, WorkersSource
from animalid.web.thumbnails import ThumbnailStore

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
CLASSIFIER_REST_S = 1.0


class Operations:
    def __init__(self, settings: WebSettings, history: HistorySource, workers: WorkersSource,
                 local: LocalState, metrics: Metrics, checks: Sequence[Check] = (),
                 prune_history: Callable[[], object] | None = None,
                 pages: Callable[[], dict[str, str]] | None = None,
                 on_close: Callable[[], object] | None = None,
                 observations: Callable[[], dict[str, Any]] | None = None):
        self.settings = settings
        self.metrics = metrics
        self.history = history
        self._last_classified = 0.0
        self.thumbnails = ThumbnailStore(settings.thumbnails, settings.keep_days, busy=self._classifying,
                                         on_saved=self._thumbnail_saved) if settings.thumbnails else None
        self.errors = RecentErrors()
        self.hub = EventHub()
        self._pages = pages or (lambda: {})
        self._overview = lambda: overview(local, workers, history, self.errors, self._pages())
        self.app = WebApp(history, metrics, self.hub, Access(settings.token), self._overview, checks,
                          self.thumbnails, observations=observations)
        self.feed = LiveFeed(history, self.hub, self.app.render, self._overview)
        self._prune_history = prune_history
        self._on_close = on_close
        self._stop = threading.Event()
        self._pruner: threading.Thread | None = None
        self.web: WebServer | None = None
        metrics.watch(local.queue_depth, local.claims_held)

    # -- what the serving loop tells ---------------------------------------------------

    def request_finished(self, key: str, outcome: str, seconds: float | None,
                         answers: Sequence[dict[str, Any]] = (), photos: Sequence[bytes] = ()) -> None:
        """A request reached its outcome (its history row is written); ``photos`` only
        for a request that was answered, for thumbnails."""
        results = [ImageResult.from_answer(answer).result for answer in answers]
        self.metrics.request_finished(outcome, seconds, results)
        if photos and outcome == ANSWERED and self.thumbnails is not None:
            self.thumbnails.submit(key, list(photos))  # never a refused or ignored sender's
        self.feed.notify()

    def classified(self, seconds: float) -> None:
        self.metrics.classified(seconds)
        self._last_classified = time.monotonic()

    def _classifying(self) -> bool:
        """Whether the classifier ran within the last CLASSIFIER_REST_S (thumbnails wait)."""
        return time.monotonic() - self._last_classified < CLASSIFIER_REST_S

    def _thumbnail_saved(self, key: str, index: int, name: str) -> None:
        self.hub.publish("thumb", {"key": key, "index": index, "url": f"/thumbs/{name}"})

    def mailbox_reconnected(self) -> None:
        self.metrics.reconnected()

    def changed(self) -> None:
        """History rows were written (work started): the pages look now."""
        self.feed.notify()

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.web.url if self.web is not None else ""

    def start(self) -> "Operations":
        self.errors.attach()
        self._pruner = threading.Thread(target=self._prune_forever, name="animalid-web-prune", daemon=True)
        self._pruner.start()
        if self.settings.enabled:
            host, port = self.settings.address
            self.web = bind(self.app, host, port, on_close=self.hub.close)
            if self.web is not None:
                self.web.start()
                self.feed.start()
                log.info("operations page at %s%s", self.web.url, self.web.note)
        return self

    def close(self) -> None:
        self._stop.set()
        self.feed.stop()
        if self.web is not None:
            self.web.close()
            self.web = None
        self.hub.close()
        if self._pruner is not None:
            self._pruner.join(10)
            self._pruner = None
        if self.thumbnails is not None:
            self.thumbnails.close()
        self.errors.detach()
        if self._on_close is not None:
            self._on_close()

    def prune(self) -> None:
        """Thumbnails past keep_days, and the history's old rows."""
        try:
            if self.thumbnails is not None:
                removed = self.thumbnails.prune()
                if removed:
                    log.info("pruned %d thumbnail(s) older than %g day(s)", removed, self.settings.keep_days)
            if self._prune_history is not None:
                self._prune_history()
        except Exception as exc:  # noqa: BLE001 - upkeep fails quietly, serving goes on
            log.warning("pruning the page's history or thumbnails failed: %s", exc)

    def _prune_forever(self) -> None:
        while True:
            self.prune()
            if self._stop.wait(PRUNE_EVERY_S):
                return


