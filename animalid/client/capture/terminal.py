"""The terminal front end: Enter captures, q+Enter quits at once, end of input
(Ctrl-D) quits once the answers are in; and the Console that both front ends
write their messages to."""

from __future__ import annotations

import queue
import threading
import time
from typing import TextIO

from animalid.client.capture.camera import Camera, FramePacer
from animalid.client.capture.mailer import drain
from animalid.client.capture.session import CaptureSession, describe_update
from animalid.client.capture.shots import ShotBook, waiting_summary

TERMINAL_HINT = "Enter: capture   q+Enter: quit   Ctrl-D: quit once the answers are in"
QUIT_WORDS = frozenset({"q", "quit", "exit"})
# How often a "waiting" line is repeated when stdout is a file or a pipe.
STATUS_EVERY_S = 10.0


class Console:
    """The terminal: messages, and a "waiting..." status that is rewritten in
    place on a terminal and repeated now and then into a file or pipe."""

    def __init__(self, out: TextIO):
        self.out = out
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self._status = ""
        self._status_at = -STATUS_EVERY_S

    def say(self, text: str) -> None:
        self.clear_status()
        self._write(text + "\n")

    def status(self, text: str, now: float) -> None:
        if not text:
            self.clear_status()
        elif self.tty and text != self._status:
            self._write("\r\x1b[K" + text)
            self._status = text
        elif not self.tty and now - self._status_at >= STATUS_EVERY_S:
            self._write(text + "\n")
            self._status_at = now

    def clear_status(self) -> None:
        if self.tty and self._status:
            self._write("\r\x1b[K")
        self._status = ""

    def _write(self, text: str) -> None:
        try:
            self.out.write(text)
        except UnicodeEncodeError:  # a terminal that cannot show accents or "..."
            encoding = getattr(self.out, "encoding", None) or "ascii"
            self.out.write(text.encode(encoding, "replace").decode(encoding))
        self.out.flush()


def start_line_reader(stream: TextIO) -> queue.Queue:
    """Lines typed on ``stream`` arrive in the queue; None at end of input."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        try:
            for line in iter(stream.readline, ""):
                lines.put(line)
        except (OSError, ValueError):
            pass  # stdin closed under us: the same as end of input
        lines.put(None)

    threading.Thread(target=read, name="animalid-stdin", daemon=True).start()
    return lines


def run_terminal(session: CaptureSession, camera: Camera, console: Console,
                 stdin: TextIO) -> int:
    """Enter captures, q+Enter quits, end of input quits once every answer is in."""
    lines = start_line_reader(stdin)
    pacer = FramePacer(camera.fps if camera.is_file else None)
    book = session.book
    draining = False
    console.say(f"{camera.label} ready. {TERMINAL_HINT}")
    try:
        while True:
            # Reading on keeps the shot fresh: a camera queues frames nobody takes.
            frame = camera.read()
            for update in session.update():
                console.say(describe_update(update))
            for line in drain(lines):
                if line is None:
                    draining = True
                    if book.waiting():
                        console.say(f"end of input: waiting for {len(book.waiting())} "
                                    "answer(s) before quitting (Ctrl-C stops)")
                elif line.strip().lower() in QUIT_WORDS:
                    _say_unanswered(console, book)
                    return book.exit_status()
                elif not line.strip():
                    session.capture(frame)
                else:
                    console.say(TERMINAL_HINT)
            if draining and not book.waiting():
                return book.exit_status()
            now = session.clock()
            console.status(waiting_summary(book.waiting(), now), now)
            time.sleep(pacer.delay_s())
    finally:
        console.clear_status()


def _say_unanswered(console: Console, book: ShotBook) -> None:
    waiting = book.waiting()
    if waiting:
        numbers = ", ".join(str(shot.number) for shot in waiting)
        console.say(f"quitting; no answer yet for shot {numbers}")

