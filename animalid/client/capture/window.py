"""The window front end: the HighGUI preview, where SPACE or ENTER captures
and q or ESC (or closing the window) quits; the card of the shot whose state
changed last shows along the bottom, the other waiting shots above it."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from animalid.client.capture.camera import Camera, FramePacer
from animalid.client.capture.card import HINT, card_text, card_width, compose_live, layout_unit, render_card
from animalid.client.capture.imaging import shrink
from animalid.client.capture.session import CaptureSession, Update, describe_update
from animalid.client.capture.shots import Shot, ShotBook, waiting_text
from animalid.client.capture.terminal import Console
from animalid.client.capture.text import TextPainter
from animalid.contract import headline, warnings_of

if TYPE_CHECKING:  # only for annotations: importing them costs start-up time
    import numpy as np

WINDOW_NAME = "animalid camera"
# cv2.waitKeyEx codes: Qt and Windows give 13 for both Enter keys, GTK gives
# its keysyms (0xFF0D Return, 0xFF8D keypad Enter).
CAPTURE_KEYS = frozenset({32, 10, 13, 0xFF0D, 0xFF8D})
QUIT_KEYS = frozenset({27, ord("q"), ord("Q")})
# Larger camera frames are shown scaled down so the window fits a laptop screen.
MAX_DISPLAY_SIZE = (1280, 800)
FLASH_S = 0.2
MAIL_NOTE_S = 10.0


class WindowUnavailable(Exception):
    """HighGUI could not open a window (no GUI backend, no display)."""


class PreviewView:
    """Renders the preview frame by frame; the card is redrawn only when it changes."""

    def __init__(self, painter: TextPainter):
        self.painter = painter
        self._card_key = None
        self._card = None
        self._flash_until = 0.0
        self._note = ""
        self._note_until = 0.0

    def flash(self, now: float) -> None:
        self._flash_until = now + FLASH_S

    def notice(self, update: Update, now: float) -> None:
        if update.kind == "mail_problem":
            self._note, self._note_until = update.text, now + MAIL_NOTE_S

    def render(self, frame: "np.ndarray", book: ShotBook, now: float) -> "np.ndarray":
        featured = book.featured
        status = [f"shot {shot.number}: {waiting_text(shot, now)}"
                  for shot in book.waiting() if shot is not featured]
        if now < self._note_until:
            status.append(self._note)
        card = None
        if featured is not None:
            height, width = frame.shape[:2]
            card = self._card_for(featured, card_width(width, height), now, layout_unit(height))
        return compose_live(frame, self.painter, card=card, status_lines=status,
                            flash=now < self._flash_until)

    def _card_for(self, shot: Shot, width: int, now: float, unit: int) -> "np.ndarray":
        key = (shot.number, width, card_text(shot, now))
        if key != self._card_key:
            self._card_key, self._card = key, render_card(shot, width, now, self.painter, unit)
        return self._card


def window_closed() -> bool:
    """Whether the user closed the preview (the window manager's close button)."""
    import cv2

    try:
        return cv2.getWindowProperty(WINDOW_NAME, cv2.WND_PROP_VISIBLE) < 1
    except cv2.error:  # Qt: the window is gone
        return True


def run_window(session: CaptureSession, camera: Camera, console: "Console") -> int:
    """The preview window until q, ESC or the window is closed."""
    import cv2

    try:
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
    except cv2.error as exc:
        raise WindowUnavailable(str(exc).strip().splitlines()[-1]) from None
    view = PreviewView(TextPainter.default())
    pacer = FramePacer(camera.fps if camera.is_file else None)
    console.say(f"{camera.label}: preview window open ({HINT})")
    try:
        while True:
            frame = camera.read()
            now = session.clock()
            for update in session.update():
                view.notice(update, now)
                console.say(_window_log_line(update))
            shown = shrink(frame, *MAX_DISPLAY_SIZE)
            cv2.imshow(WINDOW_NAME, view.render(shown, session.book, now))
            key = cv2.waitKeyEx(max(1, round(pacer.delay_s() * 1000)))
            if window_closed() or key in QUIT_KEYS:
                return session.book.exit_status()
            if key in CAPTURE_KEYS:
                shot = session.capture(frame)  # the full frame, not the scaled preview
                view.flash(session.clock())
                console.say(f"captured shot {shot.number}, sending\u2026")
    finally:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(WINDOW_NAME)
            cv2.waitKey(1)  # lets the GUI backend actually take the window down


def _window_log_line(update: Update) -> str:
    """The terminal beside the window gets one line per event, not the whole answer."""
    if update.kind == "answered":
        answer = update.shot.answer or {}
        flags = warnings_of(answer)
        return f"shot {update.shot.number}: {headline(answer)}" + (f"  [{', '.join(flags)}]" if flags else "")
    return describe_update(update)

