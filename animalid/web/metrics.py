"""Prometheus metrics of one server, through the official ``prometheus_client``.

Each ``Metrics`` owns its own ``CollectorRegistry`` (never the global one),
so several servers -- or several tests -- in one process keep apart. Names
follow Prometheus's conventions: base units (seconds), ``_total`` on
counters (the client adds it), and labels with a handful of values only:
an outcome or a result, never an address, a subject or a Message-ID.
"""

from __future__ import annotations

from typing import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from animalid.history import FINAL_OUTCOMES, IMAGE_RESULTS

# Arrival to reply sent: a photo answered at once takes a fraction of a
# second; a burst queued behind others, minutes.
REQUEST_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# One classify() call: tens of milliseconds per photo, seconds for a batch.
CLASSIFY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The server's counters, histograms and gauges, in a registry of their own."""

    def __init__(self, version: str = "", model: str = "", backend: str = "",
                 process: bool = True):
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter("animalid_requests", "Requests finished, by outcome",
                                ["outcome"], registry=registry)
        self.images = Counter("animalid_images", "Photos answered, by result", ["result"],
                              registry=registry)
        self.request_duration = Histogram(
            "animalid_request_duration_seconds", "From a request's arrival to its reply sent",
            buckets=REQUEST_BUCKETS, registry=registry)
        self.classify_duration = Histogram(
            "animalid_classify_duration_seconds", "One call of the classifier (a batch of photos)",
            buckets=CLASSIFY_BUCKETS, registry=registry)
        self.queue_depth = Gauge("animalid_queue_depth", "Requests waiting in the watched folder, "
                                 "as this server last saw it", registry=registry)
        self.claims_held = Gauge("animalid_claims_held", "Requests this server holds claimed",
                                 registry=registry)
        self.reconnects = Counter("animalid_mailbox_reconnects", "Times the mailbox connection was "
                                  "lost and made again", registry=registry)
        self.build = Info("animalid_build", "The running version, model and inference backend",
                          registry=registry)
        self._build = {"version": version, "model": model, "backend": backend}
        self.build.info(self._build)
        # Every label value from the start: a rate() over a series that appears
        # only at its first event misses that event.
        for outcome in FINAL_OUTCOMES:
            self.requests.labels(outcome=outcome)
        for result in IMAGE_RESULTS:
            self.images.labels(result=result)
        if process:  # resident memory, CPU seconds, open files of this process
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)

    def set_build(self, model: str | None = None, backend: str | None = None) -> None:
        """Name the model or backend once known (``auto`` picks the backend as the model loads)."""
        if model is not None:
            self._build["model"] = model
        if backend is not None:
            self._build["backend"] = backend
        self.build.info(self._build)

    def request_finished(self, outcome: str, seconds: float | None, image_results: list[str]) -> None:
        self.requests.labels(outcome=outcome).inc()
        if seconds is not None:
            self.request_duration.observe(max(0.0, seconds))
        for result in image_results:
            self.images.labels(result=result).inc()

    def classified(self, seconds: float) -> None:
        self.classify_duration.observe(max(0.0, seconds))

    def reconnected(self) -> None:
        self.reconnects.inc()

    def watch(self, queue_depth: Callable[[], float], claims_held: Callable[[], float]) -> None:
        """Read the two gauges at scrape time from the server's own state."""
        self.queue_depth.set_function(queue_depth)
        self.claims_held.set_function(claims_held)

    def exposition(self) -> bytes:
        """The text format for ``/metrics`` (CONTENT_TYPE)."""
        return generate_latest(self.registry)
