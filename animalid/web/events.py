"""Server-Sent Events: the live page's stream of new rows and changed numbers.

``EventHub`` fans each published event out to the open ``/events``
connections, each with a bounded queue: a browser that stops reading is
dropped (its EventSource reconnects and reloads the first page) rather than
growing memory. The wire format is the HTML standard's ``text/event-stream``
(https://html.spec.whatwg.org/multipage/server-sent-events.html): ``event:``,
``data:`` (one line of JSON, so no newline can split it) and a blank line.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from typing import Any

MAX_SUBSCRIBERS = 32  # each open page holds one HTTP thread
QUEUE_SIZE = 512
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
RETRY_MS = 3000  # how soon a browser reconnects after the stream drops


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict[str, Any]


class Closed(Exception):
    """The hub is closed (the server stops) or dropped this subscriber."""


def format_event(event: Event, event_id: int | None = None) -> bytes:
    """One event in the text/event-stream format."""
    if "\n" in event.kind or "\r" in event.kind:
        raise ValueError("an event name cannot hold a line break")
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event.kind}")
    # json.dumps escapes every control character: the data stays one line.
    lines.append("data: " + json.dumps(event.data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def keepalive() -> bytes:
    return b": keepalive\n\n"


def retry_hint() -> bytes:
    return f"retry: {RETRY_MS}\n\n".encode()


class Subscription:
    """One open stream: events queued for it, in order."""

    def __init__(self, hub: "EventHub", size: int):
        self._hub = hub
        self._queue: queue.Queue[Event | None] = queue.Queue(maxsize=size)
        self.dropped = False

    def offer(self, event: Event) -> bool:
        try:
            self._queue.put_nowait(event)
            return True
        except queue.Full:
            return False

    def next(self, timeout: float) -> Event | None:
        """The next event, or None after ``timeout`` (time for a keepalive); Closed at the end."""
        try:
            event = self._queue.get(timeout=timeout)
        except queue.Empty:
            if self.dropped:
                raise Closed() from None
            return None
        if event is None:
            raise Closed()
        return event

    def end(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            self.dropped = True

    def close(self) -> None:
        self._hub.unsubscribe(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    """Publish once, deliver to every open stream."""

    def __init__(self, max_subscribers: int = MAX_SUBSCRIBERS, queue_size: int = QUEUE_SIZE):
        self._subscribers: list[Subscription] = []
        self._lock = threading.Lock()
        self._max = max_subscribers
        self._size = queue_size
        self._closed = False

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def subscribe(self) -> Subscription | None:
        """A new stream, or None when MAX_SUBSCRIBERS are open (the caller answers 503)."""
        with self._lock:
            if self._closed or len(self._subscribers) >= self._max:
                return None
            subscription = Subscription(self, self._size)
            self._subscribers.append(subscription)
            return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    def publish(self, kind: str, data: dict[str, Any]) -> int:
        """Queue an event for every stream; returns how many got it. A stream whose
        queue is full is dropped: its browser reconnects and reloads."""
        event = Event(kind, data)
        delivered = 0
        with self._lock:
            for subscription in list(self._subscribers):
                if subscription.offer(event):
                    delivered += 1
                else:
                    subscription.dropped = True
                    self._subscribers.remove(subscription)
        return delivered

    def close(self) -> None:
        """End every stream (the server stops)."""
        with self._lock:
            self._closed = True
            subscribers, self._subscribers = self._subscribers, []
        for subscription in subscribers:
            subscription.end()
