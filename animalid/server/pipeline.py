"""The server's stages overlapped: replies go out while the next requests are classified.

A pass of the server reads a batch of requests, classifies their images and
answers them. Done in turns, the CPU (or GPU) sits idle while replies are
built, signed and sent over SMTP, and the mail connections sit idle while the
network works. Here the classified requests go, a chunk at a time, through a
bounded queue to a sending thread, while the caller's thread classifies the
next chunk; the queue's depth bounds the memory a burst can take.

Every guarantee of the service stays: each reply is still SENT, then RECORDED
in the ledger, and the request is deleted only after that (by the caller's
thread, at the end of the pass, since the mailbox connection is not shared
between threads). A transient failure of the sending stage (the SMTP server
down) stops the pass as it did before: no further chunk is classified, and
the error reaches the caller when the stage is closed.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

QUEUE_DEPTH = 2  # chunks classified ahead of the sending stage
PUT_SLICE_S = 0.5


class SendingStage(Generic[T, R]):
    """A thread that runs ``answer(chunk)`` for each chunk put, in order.

    ``answered`` collects what each call returns. Use it as a context
    manager: leaving the block waits for the queue to drain and raises the
    stage's first error, if the block itself raised none.
    """

    def __init__(self, answer: Callable[[Sequence[T]], list[R]], depth: int = QUEUE_DEPTH):
        self._answer = answer
        self._queue: queue.Queue[Sequence[T] | None] = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="animalid-send", daemon=True)
        self.answered: list[R] = []
        self.error: BaseException | None = None

    def __enter__(self) -> "SendingStage[T, R]":
        self._thread.start()
        return self

    def put(self, chunk: Sequence[T]) -> bool:
        """Queue a classified chunk; False once the stage has failed (stop classifying)."""
        while self.error is None:
            try:
                self._queue.put(chunk, timeout=PUT_SLICE_S)
                return True
            except queue.Full:
                continue
        return False

    @property
    def failed(self) -> bool:
        return self.error is not None

    def _run(self) -> None:
        while True:
            chunk = self._queue.get()
            if chunk is None:
                return
            if self.error is not None:
                continue  # drain: after a failure nothing more is sent this pass
            try:
                self.answered += self._answer(chunk)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self.error = exc

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: object) -> None:
        self._queue.put(None)  # the thread keeps taking chunks until it sees this
        self._thread.join()
        if exc_type is None and self.error is not None:
            raise self.error
