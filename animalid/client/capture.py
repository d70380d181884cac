"""Capture like a camera app: the webcam front end of client.py.

client.py without ``--image`` calls :func:`run`. It opens the camera (a
device index, a video file or a stream URL) and then either

* shows a preview window (OpenCV HighGUI): SPACE or ENTER captures, q or ESC
  (or closing the window) quits. Each shot is sent at once and gets a card
  along the bottom of the preview: the shot's thumbnail with "waiting for the
  answer... N s", then the answer -- common and scientific name, probability,
  the top matches and coloured badges for dangerous, venomous, poisonous and
  threatened animals; or
* without a display (SSH, a headless PC) or with ``--no-window``, reads the
  terminal: Enter captures, q+Enter quits at once, end of input (Ctrl-D)
  quits once the answers are in. Answers are printed as they arrive.

More shots may be taken while earlier ones wait; every answer goes back to
its own shot by message id. Mail never blocks the preview: a worker thread
owns the Requester (sending and polling) and talks to the UI through queues.

The pure parts -- JPEG encoding, the shot bookkeeping, drawing the answer
card and the preview -- take arrays and dicts, so they are tested without a
camera, a display or mail. OpenCV, NumPy and Pillow are imported on first
use: client.py imports this module on every start to add its arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import datetime as dt
import functools
import json
import logging
import os
import queue
import re
import subprocess
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TextIO

from animalid.contract import headline, render_answers, warnings_of
from animalid.errors import AnimalIdError, ConfigError, ExitStatus

if TYPE_CHECKING:  # only for annotations: importing them costs start-up time
    import numpy as np

    from animalid.config import Config

log = logging.getLogger(__name__)

WINDOW_NAME = "animalid camera"
HINT = "SPACE/ENTER: capture   q/ESC: quit"
TERMINAL_HINT = "Enter: capture   q+Enter: quit   Ctrl-D: quit once the answers are in"
# cv2.waitKeyEx codes: Qt and Windows give 13 for both Enter keys, GTK gives
# its keysyms (0xFF0D Return, 0xFF8D keypad Enter).
CAPTURE_KEYS = frozenset({32, 10, 13, 0xFF0D, 0xFF8D})
QUIT_KEYS = frozenset({27, ord("q"), ord("Q")})
QUIT_WORDS = frozenset({"q", "quit", "exit"})
# Larger camera frames are shown scaled down so the window fits a laptop screen.
MAX_DISPLAY_SIZE = (1280, 800)
FLASH_S = 0.2
MAIL_NOTE_S = 10.0
# How often a "waiting" line is repeated when stdout is a file or a pipe.
STATUS_EVERY_S = 10.0
DEFAULT_VIDEO_FPS = 25.0



# -- command line and settings -------------------------------------------------

def parse_resolution(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``; an argparse type."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*", text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1280x720")
    return int(match[1]), int(match[2])


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value
    return parse


def add_capture_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add the camera options (used when client.py runs without --image)."""
    group = parser.add_argument_group("camera (when no --image is given)")
    group.add_argument("--camera", metavar="SOURCE",
                       help="device index (0, 1 ...), video file or stream URL "
                            "(default: [camera] source)")
    group.add_argument("--resolution", metavar="WxH", type=parse_resolution,
                       help="ask the camera for this size, e.g. 1280x720")
    group.add_argument("--no-window", action="store_true",
                       help="no preview window: Enter in the terminal captures "
                            "(automatic when there is no display)")
    group.add_argument("--save-dir", metavar="DIR", type=Path,
                       help="keep each shot (.jpg) and its answer (.json, .txt) here")
    group.add_argument("--jpeg-quality", metavar="1-100", type=_int_between(1, 100),
                       help="JPEG quality of the sent shot")
    group.add_argument("--max-side", metavar="PIXELS", type=_int_between(0, 100_000),
                       help="longest side of the sent shot (0 = full size)")
    return group


def camera_source(text: str, base: Path | None = None) -> int | str:
    """A device index for digits, else a URL or a file path (relative to ``base``)."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    if "://" in text or base is None:
        return text
    path = Path(os.path.expanduser(text))
    return str(path if path.is_absolute() else base / path)


def describe_source(source: int | str) -> str:
    """The source as shown in messages, without a password from a stream URL."""
    return re.sub(r"(//[^/@:]+):[^/@]*@", r"\1:***@", str(source))


@dataclass
class CaptureSettings:
    source: int | str
    width: int
    height: int
    warmup_frames: int
    jpeg_quality: int
    max_side: int
    save_dir: Path | None
    window: bool
    timeout_s: float
    poll_interval_s: float

    @classmethod
    def from_config(cls, config: "Config", args: argparse.Namespace) -> "CaptureSettings":
        """[camera] and [client] settings; the command line wins where given."""
        camera, client = config.section("camera"), config.section("client")

        def given(name: str):
            return getattr(args, name, None)

        if given("camera"):
            source = camera_source(given("camera"))  # relative to where the user is
        else:
            source = camera_source(camera.get("source"), config.folder)
        width, height = given("resolution") or (camera.get_int("width", minimum=0),
                                                camera.get_int("height", minimum=0))
        save_dir = given("save_dir")
        return cls(
            source=source, width=width, height=height,
            warmup_frames=camera.get_int("warmup_frames", minimum=0),
            jpeg_quality=given("jpeg_quality") or camera.get_int(
                "jpeg_quality", minimum=1, maximum=100),
            max_side=(given("max_side") if given("max_side") is not None
                      else camera.get_int("max_side", minimum=0)),
            save_dir=Path(save_dir) if save_dir else camera.get_path("save_dir", None),
            window=not given("no_window"),
            timeout_s=given("timeout") or client.get_float("timeout", minimum=0.1),
            poll_interval_s=client.get_float("poll_interval", minimum=0.01, maximum=3600.0),
        )


# -- pure image work ----------------------------------------------------------

def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest size with the same shape within the box; never enlarges."""
    scale = min(1.0, max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink(frame: "np.ndarray", max_width: int, max_height: int) -> "np.ndarray":
    """The frame scaled down to fit the box (INTER_AREA: no aliasing); as is if it fits."""
    import cv2

    height, width = frame.shape[:2]
    size = fit_size(width, height, max_width, max_height)
    if size == (width, height):
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(frame: "np.ndarray", quality: int = 85, max_side: int = 0) -> bytes:
    """A BGR frame as JPEG bytes, its longest side at most ``max_side`` (0: any)."""
    import cv2

    if max_side:
        frame = shrink(frame, max_side, max_side)
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return data.tobytes()


def decode_jpeg(data: bytes) -> "np.ndarray":
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    return image


# -- shots and their answers --------------------------------------------------

def shot_file_name(number: int, taken: dt.datetime) -> str:
    return f"shot-{number:03d}-{taken:%Y%m%d-%H%M%S}.jpg"


@dataclass(eq=False)
class Shot:
    """One captured frame, from capture to answer (or to the reason there is none)."""

    number: int
    name: str
    jpeg: bytes
    captured_at: float  # clock seconds (monotonic), for "waiting ... N s"
    taken: dt.datetime  # wall-clock time, for file names and records
    message_id: str | None = None
    sent_at: float | None = None
    answers: list[dict] | None = None
    answered_at: float | None = None
    problem: str | None = None  # why there is no answer: not sent, timed out
    problem_status: ExitStatus | None = None

    @property
    def waiting(self) -> bool:
        return self.answers is None and self.problem is None

    @property
    def answer(self) -> dict | None:
        """This shot's answer: the one naming its file, else the first."""
        if not self.answers:
            return None
        return next((a for a in self.answers if a.get("file") == self.name), self.answers[0])

    def seconds_waited(self, now: float) -> int:
        end = self.answered_at if self.answered_at is not None else now
        return max(0, int(end - self.captured_at))

    @functools.cached_property
    def image(self) -> "np.ndarray":
        """The shot as sent (decoded JPEG): what the server saw."""
        return decode_jpeg(self.jpeg)


class ShotBook:
    """Every shot of this run, keyed by number and by message id."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.shots: list[Shot] = []
        self._by_message_id: dict[str, Shot] = {}
        # The shot whose state changed last: the one the preview's card shows.
        self.featured: Shot | None = None

    def add(self, jpeg: bytes, now: float, taken: dt.datetime) -> Shot:
        number = len(self.shots) + 1
        shot = Shot(number, shot_file_name(number, taken), jpeg, now, taken)
        self.shots.append(shot)
        self.featured = shot
        return shot

    def get(self, number: int) -> Shot:
        return self.shots[number - 1]

    def mark_sent(self, number: int, message_id: str, now: float) -> Shot:
        shot = self.get(number)
        shot.message_id, shot.sent_at = message_id, now
        self._by_message_id[message_id] = shot
        return shot

    def mark_not_sent(self, number: int, problem: str, status: ExitStatus) -> Shot:
        shot = self.get(number)
        shot.problem, shot.problem_status = f"not sent: {problem}", status
        self.featured = shot
        return shot

    def take_answers(self, message_id: str, answers: list[dict], now: float) -> Shot | None:
        """File the answers under their shot; None for a message id not ours or answered."""
        shot = self._by_message_id.get(message_id)
        if shot is None or shot.answers is not None:
            return None
        # A late answer still counts: it replaces the "no answer within" note.
        shot.answers, shot.answered_at = list(answers), now
        shot.problem = shot.problem_status = None
        self.featured = shot
        return shot

    def expire(self, now: float) -> list[Shot]:
        """Shots sent longer than the timeout ago without an answer, marked as such."""
        expired = []
        for shot in self.waiting():
            if shot.sent_at is not None and now - shot.sent_at >= self.timeout_s:
                shot.problem = f"no answer within {self.timeout_s:g} s"
                shot.problem_status = ExitStatus.TIMEOUT
                self.featured = shot
                expired.append(shot)
        return expired

    def waiting(self) -> list[Shot]:
        return [shot for shot in self.shots if shot.waiting]

    def exit_status(self) -> ExitStatus:
        """How the last shot that failed failed; OK when none did.

        A shot still waiting when the user quits is the user's choice, not a failure.
        """
        status = ExitStatus.OK
        for shot in self.shots:
            if shot.problem_status is not None:
                status = shot.problem_status
            elif shot.answers and any("error" in answer for answer in shot.answers):
                status = ExitStatus.ERROR
        return status


def waiting_text(shot: Shot, now: float) -> str:
    if shot.message_id is None:
        return "sending\u2026"
    return f"waiting for the answer\u2026 {shot.seconds_waited(now)} s"


def waiting_summary(shots: Sequence[Shot], now: float) -> str:
    """One line for the terminal about every shot still waiting."""
    if not shots:
        return ""
    if len(shots) == 1:
        return f"shot {shots[0].number}: {waiting_text(shots[0], now)}"
    parts = ", ".join(f"shot {s.number}: {s.seconds_waited(now)} s" for s in shots)
    return f"waiting for the answers\u2026 {parts}"


# -- drawing: text -------------------------------------------------------------

RGB = tuple[int, int, int]
WHITE: RGB = (255, 255, 255)
GREY: RGB = (190, 190, 195)
GOLD: RGB = (255, 205, 70)
ALERT: RGB = (255, 110, 100)
CARD_BACKGROUND: RGB = (28, 30, 36)
# Conservation badges use the IUCN Red List colours people know from field guides.
BADGE_COLOURS: dict[str, RGB] = {
    "DANGEROUS": (205, 25, 25),
    "VENOMOUS": (140, 45, 190),
    "POISONOUS": (0, 135, 75),
    "VULNERABLE": (249, 232, 20),
    "ENDANGERED": (252, 127, 63),
    "CRITICALLY ENDANGERED": (216, 30, 5),
    "EXTINCT IN THE WILD": (84, 35, 68),
}
FONT_FILES = {
    "regular": ("DejaVuSans.ttf", "arial.ttf", "Arial.ttf"),
    "bold": ("DejaVuSans-Bold.ttf", "arialbd.ttf", "Arial Bold.ttf"),
    "italic": ("DejaVuSans-Oblique.ttf", "ariali.ttf", "Arial Italic.ttf"),
}
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu",
             "/usr/share/fonts/TTF", "/usr/local/share/fonts", "/Library/Fonts",
             "/System/Library/Fonts/Supplemental", "C:/Windows/Fonts")


def find_font(style: str) -> str | None:
    """A TrueType file for the style: the usual folders first, then Pillow's own search."""
    from PIL import ImageFont

    for name in FONT_FILES[style]:
        for folder in FONT_DIRS:
            path = Path(folder) / name
            if path.is_file():
                return str(path)
    for name in FONT_FILES[style]:
        try:
            return ImageFont.truetype(name, 12).path
        except OSError:
            continue
    return None


@functools.lru_cache(maxsize=64)
def _truetype(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def _ascii(text: str) -> str:
    """cv2.putText draws ASCII only: "Nandú…" -> "Nandu..." rather than "Nand??"."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


class TextPainter:
    """Text on BGR frames: TrueType through Pillow when a font is found, so
    accented names render; otherwise OpenCV's Hershey font (ASCII only)."""

    def __init__(self, font_files: dict[str, str] | None = None):
        self.font_files = dict(font_files or {})

    @staticmethod
    @functools.cache
    def default() -> "TextPainter":
        regular = find_font("regular")
        if regular is None:
            log.info("no TrueType font found: names are drawn without accents")
            return TextPainter()
        files = {"regular": regular}
        for style in ("bold", "italic"):
            files[style] = find_font(style) or regular
        return TextPainter(files)

    @property
    def truetype(self) -> bool:
        return bool(self.font_files)

    def font(self, size: int, style: str = "regular"):
        return _truetype(self.font_files.get(style, self.font_files["regular"]), size)

    def line_height(self, size: int) -> int:
        if self.truetype:
            ascent, descent = self.font(size).getmetrics()
            return ascent + descent
        return round(size * 1.25)

    def width(self, text: str, size: int, style: str = "regular") -> int:
        if self.truetype:
            return round(self.font(size, style).getlength(text))
        import cv2

        scale, thickness = _hershey(size, style)
        return cv2.getTextSize(_ascii(text), cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)[0][0]

    def fit(self, text: str, max_width: int, size: int, style: str = "regular") -> str:
        """The text, cut with an ellipsis where it would be wider than ``max_width``."""
        if self.width(text, size, style) <= max_width:
            return text
        while text and self.width(text + "\u2026", size, style) > max_width:
            text = text[:-1]
        return text.rstrip() + "\u2026" if text else ""

    @contextlib.contextmanager
    def canvas(self, frame: "np.ndarray") -> Iterator["_PillowCanvas | _CvCanvas"]:
        """Draw on ``frame`` (BGR, changed in place) through one conversion to Pillow."""
        if not self.truetype:
            yield _CvCanvas(frame)
            return
        import numpy as np
        from PIL import Image, ImageDraw

        image = Image.fromarray(np.ascontiguousarray(frame[:, :, ::-1]))
        yield _PillowCanvas(self, ImageDraw.Draw(image))
        frame[:] = np.asarray(image)[:, :, ::-1]


def _hershey(size: int, style: str) -> tuple[float, int]:
    """cv2 font scale and stroke for a line about ``size`` pixels high."""
    thickness = max(1, round(size / 14)) + (1 if style == "bold" else 0)
    return size / 30.0, thickness


class _PillowCanvas:
    def __init__(self, painter: TextPainter, draw):
        self.painter, self.draw = painter, draw

    def text(self, x: int, y: int, text: str, size: int, colour: RGB, style: str = "regular"):
        """Text whose line box starts at (x, y) top-left."""
        self.draw.text((x, y), text, font=self.painter.font(size, style), fill=colour, anchor="la")

    def box(self, x0: int, y0: int, x1: int, y1: int, colour: RGB, radius: int = 0):
        self.draw.rounded_rectangle((x0, y0, x1, y1), radius=radius, fill=colour)


class _CvCanvas:
    def __init__(self, frame: "np.ndarray"):
        self.frame = frame

    def text(self, x: int, y: int, text: str, size: int, colour: RGB, style: str = "regular"):
        import cv2

        scale, thickness = _hershey(size, style)
        baseline = y + round(size * 0.95)
        cv2.putText(self.frame, _ascii(text), (x, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    colour[::-1], thickness, cv2.LINE_AA)

    def box(self, x0: int, y0: int, x1: int, y1: int, colour: RGB, radius: int = 0):
        import cv2

        cv2.rectangle(self.frame, (x0, y0), (x1, y1), colour[::-1], thickness=-1)


def layout_unit(frame_height: int) -> int:
    """The body text size for a frame: readable at arm's length, never huge."""
    return max(12, min(26, round(frame_height / 30)))


def preview_margin(unit: int) -> int:
    return max(6, unit // 2)


def small_text(unit: int) -> int:
    """The size of secondary lines: status, badges, top matches."""
    return max(10, round(unit * 0.85))


def badge_padding(size: int) -> tuple[int, int]:
    return max(4, size // 2), max(2, size // 4)


def badge_text_colour(background: RGB) -> RGB:
    red, green, blue = background
    return (0, 0, 0) if 0.299 * red + 0.587 * green + 0.114 * blue > 150 else WHITE


def draw_badges(canvas, painter: TextPainter, x: int, y: int, flags: Sequence[str],
                size: int, max_x: int) -> int:
    """Coloured labels left to right from (x, y); returns the row height (0 if none)."""
    if not flags:
        return 0
    pad_x, pad_y = badge_padding(size)
    height = painter.line_height(size) + 2 * pad_y
    for flag in flags:
        width = painter.width(flag, size, "bold") + 2 * pad_x
        if x + width > max_x:
            break  # no room: the badges that fit still say the most important
        colour = BADGE_COLOURS.get(flag, ALERT)
        canvas.box(x, y, x + width, y + height, colour, radius=pad_y * 2)
        canvas.text(x + pad_x, y + pad_y, flag, size, badge_text_colour(colour), "bold")
        x += width + pad_x
    return height


def shade(frame: "np.ndarray", x0: int, y0: int, x1: int, y1: int, keep: float = 0.45) -> None:
    """Darken a band so text on it stays readable on any picture."""
    region = frame[max(0, y0):max(0, y1), max(0, x0):max(0, x1)]
    region[:] = (region * keep).astype(region.dtype)


# -- drawing: the answer card and the preview ----------------------------------

@dataclass(frozen=True)
class CardText:
    """What a shot's card says, before any pixels (hashable: it keys the card cache)."""

    title: str
    title_colour: RGB = WHITE
    probability: str = ""
    subtitle: str = ""
    badges: tuple[str, ...] = ()
    details: tuple[str, ...] = ()


def card_text(shot: Shot, now: float) -> CardText:
    answer = shot.answer
    if answer is None and shot.waiting:
        return CardText(f"shot {shot.number}", subtitle=waiting_text(shot, now))
    if answer is None:
        return CardText(f"shot {shot.number}: no answer", ALERT, subtitle=shot.problem or "")
    if "error" in answer:
        return CardText(f"shot {shot.number}: not identified", ALERT, subtitle=str(answer["error"]))
    return answer_card_text(answer, shot.number)


def answer_card_text(answer: dict, number: int) -> CardText:
    """Title, badges and top matches of one answer of the output contract."""
    details = []
    most_likely = answer.get("most_likely")
    if most_likely:
        details.append(f"most likely {_named(most_likely)} {most_likely['probability']:g}%")
    alternatives = answer.get("alternatives") or []
    if alternatives:
        details.append("Top matches:")
        details += [f"{i}. {_named(alt)} {alt['probability']:g}%"
                    for i, alt in enumerate(alternatives, 1)]
    name = answer.get("common_name", "")
    if answer.get("rank", "none") == "none":  # "No animal recognised", "Could not identify"
        looks_like = answer.get("looks_like")
        guess = (f"it looks like: {looks_like['label']} ({looks_like['probability']:g}%)"
                 if looks_like else "")
        return CardText(name, GOLD, subtitle=_joined(guess, f"shot {number}"),
                        details=tuple(details))
    rank, scientific = answer["rank"], answer.get("scientific_name", "")
    label = scientific if rank == "species" else f"{rank} {scientific}"
    return CardText(name[:1].upper() + name[1:], probability=f"{answer.get('probability', 0):g}%",
                    subtitle=_joined(label, f"shot {number}"), badges=tuple(warnings_of(answer)),
                    details=tuple(details))


def _named(candidate: dict) -> str:
    scientific = candidate.get("scientific_name")
    return f"{candidate['common_name']} ({scientific})" if scientific else candidate["common_name"]


def _joined(*parts: str) -> str:
    return " \u00b7 ".join(part for part in parts if part)


def render_card(shot: Shot, width: int, now: float, painter: TextPainter, unit: int) -> "np.ndarray":
    """The shot's card: its thumbnail beside what is known about it (an opaque BGR image)."""
    import numpy as np

    text = card_text(shot, now)
    pad, gap = preview_margin(unit), max(2, unit // 4)
    title_size, body_size, small_size = round(unit * 1.4), unit, small_text(unit)
    rows = [painter.line_height(title_size), painter.line_height(body_size)]
    if text.badges:
        rows.append(painter.line_height(small_size) + 2 * badge_padding(small_size)[1])
    rows += [painter.line_height(small_size)] * len(text.details)
    height = max(2 * pad + sum(rows) + gap * (len(rows) - 1), 6 * unit)
    card = np.empty((height, width, 3), np.uint8)
    card[:] = CARD_BACKGROUND[::-1]

    thumb = shrink(shot.image, max(1, width // 3), height - 2 * pad)
    thumb_h, thumb_w = thumb.shape[:2]
    top = (height - thumb_h) // 2
    card[top:top + thumb_h, pad:pad + thumb_w] = thumb

    x, right = 2 * pad + thumb_w, width - pad
    with painter.canvas(card) as canvas:
        y = pad
        title = painter.fit(text.title, right - x, title_size, "bold")
        canvas.text(x, y, title, title_size, text.title_colour, "bold")
        if text.probability:
            after = x + painter.width(title, title_size, "bold") + unit
            if after + painter.width(text.probability, title_size, "bold") <= right:
                canvas.text(after, y, text.probability, title_size, GOLD, "bold")
        y += rows[0] + gap
        canvas.text(x, y, painter.fit(text.subtitle, right - x, body_size, "italic"),
                    body_size, GREY, "italic")
        y += rows[1] + gap
        if text.badges:
            y += draw_badges(canvas, painter, x, y, text.badges, small_size, right) + gap
        for line in text.details:
            colour = GREY if line.endswith(":") else WHITE
            canvas.text(x, y, painter.fit(line, right - x, small_size), small_size, colour)
            y += painter.line_height(small_size) + gap
    return card


def compose_live(frame: "np.ndarray", painter: TextPainter, *, card: "np.ndarray | None" = None,
                 status_lines: Sequence[str] = (), flash: bool = False,
                 hint: str = HINT) -> "np.ndarray":
    """The preview: live frame, key hint on top, status lines, the card at the bottom."""
    import cv2

    view = frame.copy()
    height, width = view.shape[:2]
    unit = layout_unit(height)
    margin = preview_margin(unit)
    hint_bottom = painter.line_height(unit) + margin
    card_top = height
    if card is not None:
        card = card[: max(0, height - hint_bottom - margin)]  # a tiny frame keeps the top
        card_top = height - margin - card.shape[0]
    small = small_text(unit)
    # Text goes on the bands only: converting the whole frame for Pillow
    # would cost more than the rest of the preview together.
    shade(view, 0, 0, width, hint_bottom)
    with painter.canvas(view[:hint_bottom]) as canvas:
        canvas.text(margin, margin // 2, painter.fit(hint, width - 2 * margin, unit), unit, WHITE)
    if status_lines:
        status_top = max(hint_bottom, card_top - len(status_lines) * painter.line_height(small)
                         - margin - margin // 2)
        shade(view, 0, status_top, width, card_top)
        with painter.canvas(view[status_top:card_top]) as canvas:
            for index, line in enumerate(status_lines):
                y = margin // 2 + index * painter.line_height(small)
                canvas.text(margin, y, painter.fit(line, width - 2 * margin, small), small, GOLD)
    if card is not None:
        view[card_top:card_top + card.shape[0], margin:margin + card.shape[1]] = card
    if flash:
        cv2.rectangle(view, (0, 0), (width - 1, height - 1), (255, 255, 255), max(4, unit // 2))
    return view


def card_width(frame_width: int, frame_height: int) -> int:
    """The width of the card on a preview of this size."""
    return frame_width - 2 * preview_margin(layout_unit(frame_height))


# -- the camera ---------------------------------------------------------------

class CameraError(AnimalIdError):
    """The camera cannot be opened or stopped delivering frames."""

    exit_status = ExitStatus.USAGE


class Camera:
    """One cv2.VideoCapture: a clear error when it cannot open, video files
    looped so the preview keeps running, always released (a context manager)."""

    MAX_FAILED_READS = 25

    def __init__(self, source: int | str, width: int = 0, height: int = 0):
        self.source = source
        self.width, self.height = width, height
        self.is_device = isinstance(source, int)
        self.is_file = isinstance(source, str) and "://" not in source
        self.label = f"camera {describe_source(source)}"
        self.fps = 0.0
        self._capture = None

    def __enter__(self) -> "Camera":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def open(self) -> "Camera":
        """Open and read a first frame, or CameraError saying why not."""
        import cv2

        if self.is_file and not Path(self.source).is_file():
            raise CameraError(f"{self.label}: no such file (give a device index, a video file or a URL)")
        self._capture = cv2.VideoCapture(self.source)
        if not self._capture.isOpened():
            raise CameraError(self._cannot_open())
        if self.is_device and self.width and self.height:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        fps = self._capture.get(cv2.CAP_PROP_FPS) or 0.0
        self.fps = fps if 1.0 <= fps <= 240.0 else DEFAULT_VIDEO_FPS
        # A busy V4L2 device opens fine and only fails on the first read.
        try:
            frame = self.read()
        except CameraError:
            raise CameraError(self._cannot_open()) from None
        height, width = frame.shape[:2]
        if self.is_device and self.width and (width, height) != (self.width, self.height):
            log.info("%s gives %dx%d (asked for %dx%d)", self.label, width, height,
                     self.width, self.height)
        return self

    def _cannot_open(self) -> str:
        if self.is_device:
            return f"{self.label}: cannot open (is it connected, or used by another program?)"
        if self.is_file:
            return f"{self.label}: cannot open (not a video OpenCV can read)"
        return f"{self.label}: cannot open the stream (check the URL and the network)"

    def warm_up(self, frames: int) -> None:
        """Drop the first frames while a camera settles its exposure (not for files)."""
        if not self.is_file:
            for _ in range(frames):
                self.read()

    def read(self) -> "np.ndarray":
        """The next frame; a video file starts over at its end."""
        for _ in range(self.MAX_FAILED_READS):
            ok, frame = self._capture.read()
            if ok and frame is not None:
                return frame
            if self.is_file:
                self._rewind()
            else:
                time.sleep(0.02)  # a camera drops a frame now and then
        raise CameraError(f"{self.label}: stopped delivering frames "
                          "(unplugged, or used by another program?)")

    def _rewind(self) -> None:
        import cv2

        if not self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            # Some containers cannot seek: opening the file again always works.
            self._capture.release()
            self._capture = cv2.VideoCapture(self.source)

    def release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class FramePacer:
    """Plays a video file at its own speed; a real camera paces itself."""

    def __init__(self, fps: float | None):
        self.period = 1.0 / fps if fps else 0.0
        self._due = time.monotonic()

    def delay_s(self) -> float:
        """Seconds to wait before the next frame is due."""
        if not self.period:
            return 0.001
        now = time.monotonic()
        self._due = max(self._due + self.period, now)
        return max(0.001, self._due - now)


# -- is there a display? ------------------------------------------------------

def display_available() -> bool:
    """Whether a HighGUI window can open here.

    OpenCV's Qt aborts the whole process (no exception) when it cannot reach
    a display, so on Linux this asks libX11, or a child process, first.
    """
    if sys.platform in ("win32", "darwin"):
        return True
    if os.environ.get("DISPLAY"):
        verdict = _x_display_opens()
        if verdict is not None:
            return verdict
    elif not os.environ.get("WAYLAND_DISPLAY"):
        return False
    return _window_opens_in_child()


def _x_display_opens() -> bool | None:
    """Whether libX11 connects to $DISPLAY; None when there is no libX11 to ask."""
    name = ctypes.util.find_library("X11")
    if not name:
        return None
    try:
        x11 = ctypes.CDLL(name)
    except OSError:
        return None
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    display = x11.XOpenDisplay(None)
    if not display:
        return False
    x11.XCloseDisplay(display)
    return True


def _window_opens_in_child() -> bool:
    code = "import cv2; cv2.namedWindow('animalid probe'); cv2.destroyAllWindows()"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


# -- mail, in its own thread ---------------------------------------------------

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


# -- keeping shots on disk -----------------------------------------------------

class ShotArchive:
    """Keeps each shot (.jpg) and, once known, its answer (.json and a readable
    .txt) in one folder; does nothing without a folder. A full disk costs a
    warning, never the session."""

    def __init__(self, folder: Path | None):
        self.folder = folder

    @classmethod
    def open(cls, folder: Path | None) -> "ShotArchive":
        if folder is not None:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"save dir {folder}: cannot create it ({exc.strerror})") from None
        return cls(folder)

    def keep_shot(self, shot: Shot) -> None:
        self._write(shot.name, shot.jpeg)

    def keep_outcome(self, shot: Shot) -> None:
        stem = Path(shot.name).stem
        record = json.dumps(shot_record(shot), ensure_ascii=False, indent=2) + "\n"
        self._write(f"{stem}.json", record.encode("utf-8"))
        self._write(f"{stem}.txt", (shot_report(shot) + "\n").encode("utf-8"))

    def _write(self, name: str, data: bytes) -> None:
        if self.folder is None:
            return
        try:
            (self.folder / name).write_bytes(data)
        except OSError as exc:
            log.warning("cannot keep %s in %s: %s", name, self.folder, exc.strerror)


def shot_record(shot: Shot) -> dict:
    """The JSON kept beside a shot: when, which message, the answers or the problem."""
    waited = None if shot.answered_at is None else round(shot.answered_at - shot.captured_at, 1)
    return {"shot": shot.number, "file": shot.name, "taken": shot.taken.isoformat(timespec="seconds"),
            "message_id": shot.message_id, "answer_after_s": waited,
            "answers": shot.answers, "problem": shot.problem}


def shot_report(shot: Shot) -> str:
    """The readable answer of a shot, labelled with its number."""
    header = f"shot {shot.number} (message id {shot.message_id or 'none'})"
    if shot.answers is None:
        return f"{header}: {shot.problem}"
    return f"{header}:\n{render_answers(shot.answers)}"


# -- what both front ends share -------------------------------------------------

@dataclass
class Update:
    kind: str  # "sent", "not_sent", "answered", "timed_out" or "mail_problem"
    shot: Shot | None = None
    text: str = ""


class CaptureSession:
    """Capture, send, file the answers and keep the records; no UI of its own."""

    def __init__(self, settings: CaptureSettings, worker: MailWorker, archive: ShotArchive,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.worker = worker
        self.archive = archive
        self.clock = clock
        self.book = ShotBook(settings.timeout_s)

    def capture(self, frame: "np.ndarray") -> Shot:
        jpeg = encode_jpeg(frame, self.settings.jpeg_quality, self.settings.max_side)
        shot = self.book.add(jpeg, self.clock(), dt.datetime.now())
        self.archive.keep_shot(shot)
        self.worker.send(shot.number, shot.name, jpeg)
        return shot

    def update(self) -> list[Update]:
        """Take in what the mail worker did; mark shots that waited too long."""
        now, updates = self.clock(), []
        for event in self.worker.events():
            if event.kind == "sent":
                updates.append(Update("sent", self.book.mark_sent(event.shot_number,
                                                                  event.message_id, now)))
            elif event.kind == "not_sent":
                shot = self.book.mark_not_sent(event.shot_number, event.problem, event.status)
                self.archive.keep_outcome(shot)
                updates.append(Update("not_sent", shot, shot.problem))
            elif event.kind == "answered":
                shot = self.book.take_answers(event.message_id, event.answers, now)
                if shot is None:
                    log.info("ignoring an answer to %s: not a shot of this run, or answered",
                             event.message_id)
                    continue
                self.archive.keep_outcome(shot)
                updates.append(Update("answered", shot))
            else:
                updates.append(Update("mail_problem", text=f"mail: {event.problem}"))
        for shot in self.book.expire(now):
            self.archive.keep_outcome(shot)
            updates.append(Update("timed_out", shot, shot.problem))
        return updates


def describe_update(update: Update) -> str:
    """The line (or lines) a terminal shows for an update."""
    shot = update.shot
    if update.kind == "sent":
        return f"captured shot {shot.number}, sent (message id {shot.message_id})"
    if update.kind == "not_sent":
        return f"captured shot {shot.number}, {shot.problem}"
    if update.kind == "answered":
        return f"answer for {shot_report(shot)}"
    if update.kind == "timed_out":
        return f"shot {shot.number}: {shot.problem}"
    return update.text


# -- the window front end -----------------------------------------------------

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


# -- the terminal front end ----------------------------------------------------

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


# -- entry point --------------------------------------------------------------

def _quiet_opencv() -> None:
    """Our one-line camera errors replace the warnings of every backend OpenCV
    (and FFmpeg, for streams) tries; OPENCV_LOG_LEVEL=INFO and
    OPENCV_FFMPEG_LOGLEVEL=32 bring them back. Qt wants a font folder."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        os.environ["OPENCV_LOG_LEVEL"] = "FATAL"
        if "cv2" in sys.modules:
            cv2 = sys.modules["cv2"]
            with contextlib.suppress(AttributeError):
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)
    dejavu = Path(FONT_DIRS[0])  # Debian's fonts-dejavu-core; else Qt only warns
    if dejavu.is_dir():
        os.environ.setdefault("QT_QPA_FONTDIR", str(dejavu))


def _make_requester(config: "Config", args: argparse.Namespace):
    from animalid.client.requester import Requester

    return Requester(config, receive=getattr(args, "receive", None))


def _program() -> str:
    """Messages start like client.py's own: "client.py: error: ..."."""
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "client.py"


def run(config: "Config", args: argparse.Namespace, *, requester=None,
        stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Capture, send and show answers until the user quits; the exit status.

    ``requester`` replaces the mail Requester built from ``config`` (for
    embedding and tests); ``stdin``/``stdout`` replace the terminal.
    """
    console = Console(stdout or sys.stdout)
    _quiet_opencv()
    try:
        settings = CaptureSettings.from_config(config, args)
        use_window = settings.window and display_available()
        if settings.window and not use_window:
            console.say("no display: using the terminal instead of a window")
        archive = ShotArchive.open(settings.save_dir)
        requester = requester if requester is not None else _make_requester(config, args)
        # Opened inside the with: a camera that opens but fails its first read is released too.
        with Camera(settings.source, settings.width, settings.height) as camera:
            camera.open()
            camera.warm_up(settings.warmup_frames)
            worker = MailWorker(requester, settings.poll_interval_s).start()
            try:
                session = CaptureSession(settings, worker, archive)
                if use_window:
                    try:
                        return int(run_window(session, camera, console))
                    except WindowUnavailable as exc:
                        console.say(f"no window ({exc}): using the terminal")
                return int(run_terminal(session, camera, console, stdin or sys.stdin))
            finally:
                worker.stop()
    except KeyboardInterrupt:
        console.clear_status()
        print(f"{_program()}: interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except AnimalIdError as exc:
        console.clear_status()
        print(f"{_program()}: error: {exc}", file=sys.stderr)
        return int(exc.exit_status)
