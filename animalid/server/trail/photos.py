"""A camera photo's time taken (EXIF DateTimeOriginal), the alert's drawn picture, thumbnails."""

from __future__ import annotations

import base64
import io
import time

from PIL import Image, ImageDraw, ImageFont, ImageOps

EXIF_IFD = 0x8769
DATE_TIME_ORIGINAL = 0x9003
DATE_TIME = 0x0132
ALERT_SIDE = 1280
THUMBNAIL_SIDE = 240


def taken_time(data: bytes) -> float | None:
    """EXIF DateTimeOriginal (else DateTime) as Unix seconds in local time; None without one."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            exif = image.getexif()
            text = exif.get_ifd(EXIF_IFD).get(DATE_TIME_ORIGINAL) or exif.get(DATE_TIME)
    except Exception:  # noqa: BLE001 - an unreadable photo simply has no EXIF time
        return None
    if not isinstance(text, str):
        return None
    try:
        return time.mktime(time.strptime(text.strip().strip("\x00"), "%Y:%m:%d %H:%M:%S"))
    except (ValueError, OverflowError):
        return None


def _opened(data: bytes, side: int) -> Image.Image | None:
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
            image.thumbnail((side, side))
            return image
    except Exception:  # noqa: BLE001 - a photo Pillow cannot open gets no picture
        return None


def annotated(data: bytes, caption: str) -> bytes | None:
    """The photo (at most ALERT_SIDE px) with ``caption`` drawn in a band along its foot, as JPEG."""
    image = _opened(data, ALERT_SIDE)
    if image is None:
        return None
    draw = ImageDraw.Draw(image)
    size = max(14, image.height // 24)
    try:
        font: ImageFont.FreeTypeFont | ImageFont.ImageFont = ImageFont.load_default(size=size)
    except TypeError:  # Pillow before 10.1 has one size
        font = ImageFont.load_default()
    band = size + 12
    draw.rectangle((0, image.height - band, image.width, image.height), fill=(0, 0, 0))
    draw.text((8, image.height - band + 5), caption, fill=(255, 255, 0), font=font)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def thumbnail_b64(data: bytes, side: int = THUMBNAIL_SIDE) -> str:
    """A small JPEG of the photo, base64 (kept in the ledger for the digest); "" when unreadable."""
    image = _opened(data, side)
    if image is None:
        return ""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=75)
    return base64.b64encode(out.getvalue()).decode("ascii")
