"""Mail in its own thread: the worker that sends shots and polls for answers,
so the preview never waits on mail, and the events it reports to the UI."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass

from animalid.errors import AnimalIdError, ExitStatus

# The package's one logger: log lines name "animalid.client.capture", as before the split.
log = logging.getLogger(__package__)


@dataclass
class MailEvent:
    kind: str  # "sent", "not_sent", "answered" or "problem"
    shot_number: int | None = None
    message_id: str | None = None
    answers: list[dict] | None = None
    problem: str | None = None
    status: ExitStatus = ExitStatus.ERROR


_STOP = object()


def drain(items: queue.Queue) -> list:
    """Everything in the queue now, without waiting for more."""
    taken = []
    with contextlib.suppress(queue.Empty):
        while True:
            taken.append(items.get_nowait())
    return taken


class MailWorker:
    """Sends shots and polls for answers in its own thread, so the preview never
    waits on mail. The Requester is used from this thread only (mail
    connections are not thread-safe); the UI talks to it through two queues."""

    MAX_BACKOFF_S = 30.0

    def __init__(self, requester, poll_interval_s: float):
        self._requester = requester
        self._poll_interval_s = poll_interval_s
        self._requests: queue.Queue = queue.Queue()
        self._events: queue.Queue[MailEvent] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="animalid-mail", daemon=True)

    def start(self) -> "MailWorker":
        self._thread.start()
        return self

    def send(self, number: int, name: str, jpeg: bytes) -> None:
        self._requests.put((number, name, jpeg))

    def events(self) -> list[MailEvent]:
        """What happened since the last call; never blocks."""
        return drain(self._events)

    def stop(self, wait_s: float = 2.0) -> None:
        self._requests.put(_STOP)
        # A send stuck in SMTP must not hold up quitting: the thread is a daemon.
        self._thread.join(wait_s)

    def _run(self) -> None:
        outstanding = 0
        wait_s = self._poll_interval_s
        next_poll = time.monotonic()
        while True:
            timeout = max(0.0, next_poll - time.monotonic()) if outstanding else None
            try:
                request = self._requests.get(timeout=timeout)
            except queue.Empty:
                request = None
            if request is _STOP:
                break
            if request is not None:
                outstanding += self._send(*request)
                continue
            answered = self._poll()
            if answered is None:
                wait_s = min(2 * wait_s, self.MAX_BACKOFF_S)
            else:
                outstanding = max(0, outstanding - answered)
                wait_s = self._poll_interval_s
            next_poll = time.monotonic() + wait_s
        close = getattr(self._requester, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()

    def _send(self, number: int, name: str, jpeg: bytes) -> int:
        try:
            message_id = self._requester.send([(name, jpeg)])
        except Exception as exc:  # the worker must outlive any failure
            self._events.put(MailEvent("not_sent", number, problem=_problem(exc),
                                       status=_status_of(exc)))
            return 0
        self._events.put(MailEvent("sent", number, message_id=message_id))
        return 1

    def _poll(self) -> int | None:
        """How many answers arrived; None when polling failed."""
        try:
            results = self._requester.poll()
        except Exception as exc:
            self._events.put(MailEvent("problem", problem=_problem(exc), status=_status_of(exc)))
            return None
        for message_id, answers in results:
            self._events.put(MailEvent("answered", message_id=message_id, answers=list(answers)))
        return len(results)


def _problem(exc: Exception) -> str:
    if isinstance(exc, AnimalIdError):
        return str(exc)
    # A bug, not a mail problem: the traceback goes to the debug log (client.py -v),
    # the user gets one line in the window or terminal.
    log.debug("unexpected error in the mail worker", exc_info=exc)
    return f"unexpected error: {type(exc).__name__}: {exc}"


def _status_of(exc: Exception) -> ExitStatus:
    return getattr(exc, "exit_status", ExitStatus.ERROR)

