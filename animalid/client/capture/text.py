"""Drawing text on BGR frames: finding a TrueType font, and the painter that
draws through Pillow (so accented names render) or, without a font, with
OpenCV's Hershey font (ASCII only). Pillow, OpenCV and NumPy load on first use."""

from __future__ import annotations

import contextlib
import functools
import logging
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # only for annotations: importing them costs start-up time
    import numpy as np

# The package's one logger: log lines name "animalid.client.capture", as before the split.
log = logging.getLogger(__package__)

RGB = tuple[int, int, int]  # a colour as (red, green, blue)

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
            return str(ImageFont.truetype(name, 12).path)
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
