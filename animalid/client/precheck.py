"""Checks on PC 1, before a photo is mailed: is it an image the server can read, of a usable size?

A text file named ``fake.jpg`` or a 12000x12000 PNG would otherwise travel to
the server and come back as an error answer a minute later. Pillow reads the
header only (``Image.open`` is lazy): format, width and height, in
milliseconds, whatever the file's size. The server checks again
(animalid/recognition/images.py), with the same words (animalid/photolimits.py).

HEIC/HEIF needs pi-heif, which PC 1 does not install: such a photo is
recognised by its magic bytes and left to the server.
"""

from __future__ import annotations

import io
import warnings

from animalid.errors import BadImageError
from animalid.mail.filekinds import not_a_photo_text
from animalid.mail.imagetypes import sniff_image_type
from animalid.photolimits import DEFAULT_MAX_PIXELS, long_side_within, size_problem

# What the server decodes (recognition/images.py ACCEPTED_FORMATS), as Pillow names them.
READABLE_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "TIFF", "WEBP", "AVIF"})
# Decoded on the server only (pi-heif): the magic bytes are checked, the size is not.
SERVER_ONLY_TYPES = frozenset({"image/heic", "image/heif"})
SEND_AS_JPEG = "send the photo as JPEG"


def check_photo(name: str, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Return when ``data`` looks like a photo the server can answer; else BadImageError
    whose text starts with ``name`` and says what is wrong and what to send instead."""
    sniffed = sniff_image_type(data)
    if sniffed is None:
        raise BadImageError(not_a_photo_text(name, data, verb="send"))
    if sniffed in SERVER_ONLY_TYPES:
        return
    from PIL import Image, UnidentifiedImageError

    kind = sniffed.partition("/")[2].upper()
    try:
        with warnings.catch_warnings():
            # Pillow warns about large images; the limit below decides.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                image_format = image.format or "unknown"
    except Image.DecompressionBombError:
        # Over twice Pillow's own limit (about 179 million pixels): it does not say the sides.
        raise BadImageError(f"{name}: too many pixels (over {2 * (Image.MAX_IMAGE_PIXELS or 0):,}; "
                            f"limit {max_pixels:,}): send it at most about "
                            f"{long_side_within(1, 1, max_pixels)} px on the long side") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise BadImageError(f"{name}: damaged: it starts like a {kind} image but cannot be read; "
                            f"{SEND_AS_JPEG}") from None
    if image_format not in READABLE_FORMATS:
        raise BadImageError(f"{name}: a {image_format} image, which the server cannot read; {SEND_AS_JPEG}")
    problem = size_problem(width, height, max_pixels)
    if problem:
        raise BadImageError(f"{name}: {problem}")
