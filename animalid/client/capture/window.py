"""The window front end: the HighGUI preview, where SPACE or ENTER captures,
the arrow keys step through the shots and q or ESC (or closing the window)
quits. The live picture stays clear: below it, a panel holds the key hint,
the card of the selected shot and the strip of recent shots, each tile with
its own answer (strip.py)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from animalid.client.capture.camera import Camera, FramePacer
from animalid.client.capture.card import (
    CARD_BACKGROUND,
    GOLD,
    HINT,
    WHITE,
    badge_padding,
    card_text,
    layout_unit,
    preview_margin,
    render_card,
    small_text,
)
from animalid.client.capture.imaging import shrink
from animalid.client.capture.session import CaptureSession, Update, describe_update
from animalid.client.capture.shots import Shot, ShotBook
from animalid.client.capture.strip import NEXT_KEYS, PREVIOUS_KEYS, STEP_HINT, ShotSelection, StripLayout, render_strip
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
# Larger camera frames are shown scaled down so that the picture and the panel
# below it (about 300 px) fit a laptop screen.
MAX_DISPLAY_SIZE = (1280, 500)
# The card's room in the panel: its title, subtitle, badges and this many detail lines.
CARD_DETAIL_LINES = 5
FLASH_S = 0.2
MAIL_NOTE_S = 10.0


class WindowUnavailable(Exception):
    """HighGUI could not open a window (no GUI backend, no display)."""


class PreviewView:
    """Renders the window frame by frame: the live picture untouched (but for the
    capture flash) above a panel of fixed height; the panel is redrawn only when
    what it shows changes."""

    def __init__(self, painter: TextPainter):
        self.painter = painter
        self.selection = ShotSelection()
        self._panel_key: tuple[object, ...] | None = None
        self._panel: np.ndarray | None = None
        self._thumbs: dict[int, "np.ndarray"] = {}
        self._flash_until = 0.0
        self._note = ""
        self._note_until = 0.0

    def flash(self, now: float) -> None:
        self._flash_until = now + FLASH_S
        self.selection.follow()  # a new shot: show it

    def notice(self, update: Update, now: float) -> None:
        if update.kind == "mail_problem":
            self._note, self._note_until = update.text, now + MAIL_NOTE_S

    def step(self, book: ShotBook, by: int) -> None:
        self.selection.step(book, by)

    def render(self, frame: "np.ndarray", book: ShotBook, now: float) -> "np.ndarray":
        import cv2
        import numpy as np

        height, width = frame.shape[:2]
        panel = self._panel_for(book, width, layout_unit(height), now)
        view = np.vstack([frame, panel])
        if now < self._flash_until:
            cv2.rectangle(view, (0, 0), (width - 1, height - 1), (255, 255, 255),
                          max(4, layout_unit(height) // 2))
        return view

    def _panel_for(self, book: ShotBook, width: int, unit: int, now: float) -> "np.ndarray":
        selected = self.selection.current(book)
        note = self._note if now < self._note_until else ""
        key = (width, unit, note, selected.number if selected else 0,
               tuple((shot.number,) + strip_state(shot, now) for shot in book.shots[-50:]),
               card_text(selected, now) if selected else None)
        if key != self._panel_key or self._panel is None:
            self._panel_key, self._panel = key, self._draw_panel(book, selected, width, unit, now, note)
        return self._panel

    def _draw_panel(self, book: ShotBook, selected: Shot | None, width: int, unit: int,
                    now: float, note: str) -> "np.ndarray":
        import numpy as np

        painter, margin = self.painter, preview_margin(unit)
        hint_height = painter.line_height(unit) + margin
        card_height = card_room(painter, unit)
        layout = StripLayout(unit)
        panel = np.empty((hint_height + card_height + layout.height(painter), width, 3), np.uint8)
        panel[:] = CARD_BACKGROUND[::-1]
        hint = f"{HINT}   {STEP_HINT}" if len(book.shots) > 1 else HINT
        with painter.canvas(panel[:hint_height]) as canvas:
            canvas.text(margin, margin // 2, painter.fit(note or hint, width - 2 * margin, unit), unit,
                        GOLD if note else WHITE)
        if selected is not None:
            card = render_card(selected, width - 2 * margin, now, painter, unit)[:card_height]
            panel[hint_height:hint_height + card.shape[0], margin:margin + card.shape[1]] = card
        top = hint_height + card_height
        panel[top:] = render_strip(book.shots, selected, width, now, painter, layout, self._thumbs)
        return panel


def strip_state(shot: Shot, now: float) -> tuple:
    """What a shot's tile shows that can change: answered, problem, seconds waited."""
    return (shot.answers is not None, shot.problem or "", shot.message_id is not None,
            shot.seconds_waited(now) if shot.waiting else -1)


def card_room(painter: TextPainter, unit: int) -> int:
    """The card's height in the panel: a full card (badges and CARD_DETAIL_LINES details)."""
    pad, gap = preview_margin(unit), max(2, unit // 4)
    small = small_text(unit)
    rows = [painter.line_height(round(unit * 1.4)), painter.line_height(unit),
            painter.line_height(small) + 2 * badge_padding(small)[1]]
    rows += [painter.line_height(small)] * CARD_DETAIL_LINES
    return max(2 * pad + sum(rows) + gap * (len(rows) - 1), 6 * unit)


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
            if key in PREVIOUS_KEYS or key in NEXT_KEYS:
                view.step(session.book, -1 if key in PREVIOUS_KEYS else 1)
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
    if update.kind == "answered" and update.shot is not None:
        answer = update.shot.answer or {}
        flags = warnings_of(answer)
        return f"shot {update.shot.number}: {headline(answer)}" + (f"  [{', '.join(flags)}]" if flags else "")
    return describe_update(update)

