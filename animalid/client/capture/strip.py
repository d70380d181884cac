"""The strip of recent shots below the preview: one tile per shot, each with its own answer.

A new shot used to replace the card of the one before, so an answer read a
moment ago was gone. Now every shot keeps a tile (its thumbnail, its number
and its answer in a few words, or how long it has waited), the selected one
framed in gold, and the card below shows the selected shot in full. The
selection follows the newest event (a capture, an answer) until the user
steps back with the arrow keys; stepping past the newest shot, or capturing,
follows again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from animalid.client.capture.card import ALERT, CARD_BACKGROUND, GOLD, GREY, WHITE, small_text
from animalid.client.capture.imaging import shrink
from animalid.client.capture.shots import Shot, ShotBook
from animalid.client.capture.text import RGB, TextPainter

if TYPE_CHECKING:  # only for annotations: importing them costs start-up time
    import numpy as np

# cv2.waitKeyEx codes of the arrow keys: X11 keysyms (GTK, and Qt on Linux),
# Qt's own key codes, and Windows' virtual-key codes shifted by 16 bits.
# "," and "." (the "<" and ">" keys) do the same on keyboards without arrows.
PREVIOUS_KEYS = frozenset({0xFF51, 0x01000012, 0x250000, ord(","), ord("<")})
NEXT_KEYS = frozenset({0xFF53, 0x01000014, 0x270000, ord("."), ord(">")})
STEP_HINT = "\u2190/\u2192: earlier/later shots"
EMPTY_TEXT = "no shots yet: SPACE takes one"
SELECTED_BORDER: RGB = GOLD


@dataclass
class ShotSelection:
    """Which shot the card shows: the newest event's, or the one the user stepped to."""

    following: bool = True
    number: int | None = None

    def current(self, book: ShotBook) -> Shot | None:
        if not book.shots:
            return None
        if self.following or self.number is None:
            return book.featured or book.shots[-1]
        return book.get(min(max(1, self.number), len(book.shots)))

    def step(self, book: ShotBook, by: int) -> None:
        """Step ``by`` shots (-1 earlier, +1 later); past the newest, follow again."""
        shown = self.current(book)
        if shown is None:
            return
        wanted = shown.number + by
        if wanted > len(book.shots):
            self.following, self.number = True, None
            return
        self.following, self.number = False, max(1, wanted)

    def follow(self) -> None:
        """Back to following the newest event (after a capture)."""
        self.following, self.number = True, None


def tile_label(shot: Shot, now: float) -> tuple[str, RGB]:
    """A tile's few words: "2 Tiger 64%", "3 waiting 4 s", "1 not identified"."""
    answer = shot.answer
    if answer is None and shot.waiting:
        return (f"{shot.number} sending" if shot.message_id is None
                else f"{shot.number} waiting {shot.seconds_waited(now)} s"), GOLD
    if answer is None:
        return f"{shot.number} no answer", ALERT
    if "error" in answer:
        return f"{shot.number} not identified", ALERT
    name = str(answer.get("common_name", ""))
    name = name[:1].upper() + name[1:]
    if answer.get("rank", "none") == "none":
        return f"{shot.number} {name}", GOLD
    return f"{shot.number} {name} {answer.get('probability', 0):g}%", WHITE


@dataclass
class StripLayout:
    """Sizes of the strip for a body text size ``unit``."""

    unit: int
    thumb_height: int = field(init=False)
    tile_width: int = field(init=False)
    gap: int = field(init=False)
    label_size: int = field(init=False)

    def __post_init__(self) -> None:
        self.thumb_height = 3 * self.unit
        self.tile_width = 7 * self.unit
        self.gap = max(4, self.unit // 2)
        self.label_size = small_text(self.unit)

    def height(self, painter: TextPainter) -> int:
        return self.gap + self.thumb_height + painter.line_height(self.label_size) + 2 * self.gap

    def tiles_across(self, width: int) -> int:
        return max(1, (width - self.gap) // (self.tile_width + self.gap))


def visible_shots(shots: Sequence[Shot], selected: Shot | None, room: int) -> list[Shot]:
    """The newest ``room`` shots, moved back just enough to hold the selected one."""
    if not shots:
        return []
    end = len(shots)
    if selected is not None and selected.number <= end - room:
        end = selected.number
    return list(shots[max(0, end - room):end])


def render_strip(shots: Sequence[Shot], selected: Shot | None, width: int, now: float,
                 painter: TextPainter, layout: StripLayout,
                 thumbs: dict[int, "np.ndarray"] | None = None) -> "np.ndarray":
    """The strip as an opaque BGR image ``width`` wide; ``thumbs`` caches each shot's thumbnail."""
    import cv2
    import numpy as np

    height = layout.height(painter)
    strip = np.empty((height, width, 3), np.uint8)
    strip[:] = CARD_BACKGROUND[::-1]
    gap, tile_w = layout.gap, layout.tile_width
    if not shots:
        with painter.canvas(strip) as canvas:
            canvas.text(gap, gap + layout.thumb_height // 3, EMPTY_TEXT, layout.label_size, GREY)
        return strip
    thumbs = {} if thumbs is None else thumbs
    labels = []
    for index, shot in enumerate(visible_shots(shots, selected, layout.tiles_across(width))):
        x = gap + index * (tile_w + gap)
        thumb = thumbs.get(shot.number)
        if thumb is None:
            thumb = thumbs[shot.number] = shrink(shot.image, tile_w, layout.thumb_height)
        thumb_h, thumb_w = thumb.shape[:2]
        left = x + (tile_w - thumb_w) // 2
        strip[gap:gap + thumb_h, left:left + thumb_w] = thumb
        if shot is selected:
            border = max(2, layout.unit // 6)
            cv2.rectangle(strip, (x - border, gap - border),
                          (x + tile_w + border - 1, height - gap + border - 1),
                          SELECTED_BORDER[::-1], border)
        labels.append((x, shot))
    with painter.canvas(strip) as canvas:
        y = gap + layout.thumb_height + gap // 2
        for x, shot in labels:
            text, colour = tile_label(shot, now)
            canvas.text(x, y, painter.fit(text, tile_w, layout.label_size), layout.label_size, colour)
    return strip
