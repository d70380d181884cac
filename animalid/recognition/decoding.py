"""Decoding a photo straight to the reduced RGB picture the networks need, in bounded memory.

``images.load_image`` gives the full-size RGB picture; the classifier then
reduces it by a whole factor (a box filter) to about twice what its views
keep. For a 40-megapixel RGBA PNG the full-size steps cost about 15 bytes
per pixel at once (decoded RGBA, an RGBA copy, an RGBA background, the RGB
result, the EXIF-rotated copy): 600 MB for one picture. Here:

* JPEG is decoded at a reduced scale (``Image.draft``: the decoder's own
  1/2, 1/4 or 1/8 DCT scaling), never below what the views need;
* every other format is decoded once, then turned into RGB and reduced one
  band of rows at a time (bands a whole number of box-filter blocks high, so
  the result is the same, pixel for pixel, as reducing the whole picture);
* the EXIF rotation is applied to the small result;
* the decoding threads share a ``DecodeBudget`` of pixels in flight, taken
  from the header before any pixel is decoded.

So one picture costs about its decoded size (4 bytes per pixel for RGBA)
plus a band, and no more pictures are decoded at once than the budget holds.
"""

from __future__ import annotations

import ctypes
import io
import threading
import warnings
from contextlib import nullcontext
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from animalid.errors import BadImageError
from animalid.recognition.decode_budget import DecodeBudget
from animalid.recognition.images import (
    SEND_AS_JPEG,
    _check_header,
    _read_bytes,
    _short,
    to_rgb,
)

BAND_BYTES = 16 * 1024 * 1024  # about this much converted at a time
# glibc's M_MMAP_THRESHOLD (malloc.h) and the value set: see keep_freed_pictures_out_of_the_heap().
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
_tuned = threading.Lock()
_tuned_already: list[bool] = []
_WHOLE_IMAGE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # scaled by the picture's extrema


def keep_freed_pictures_out_of_the_heap() -> bool:
    """Make glibc give decoded pictures' memory back to the system when they are freed.

    glibc raises its mmap threshold each time a large mapped block is freed (up
    to 32 MB), so Pillow's 16 MB blocks soon come from the heap arenas instead
    -- one arena per decoding thread -- and stay there once freed. Measured
    (benchmarks/decode_memory.py, ten 40 MP PNGs, 4 threads, one picture at a
    time): 800 MB retained; with the threshold fixed at 8 MiB, 258 MB. Setting
    it fixes it (no more raising). Once per process; False where the C library
    is not glibc, which is harmless.
    """
    with _tuned:
        if not _tuned_already:
            try:
                libc = ctypes.CDLL("libc.so.6")
                _tuned_already.append(bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)))
            except (OSError, AttributeError):
                _tuned_already.append(False)
        return _tuned_already[0]


def reduction_factor(size: tuple[int, int], needed: tuple[int, int]) -> int:
    """The whole factor the classifier reduces by: the long side to about twice
    ``needed[0]``, the short side to about twice ``needed[1]`` (classifier.shrink)."""
    long_side, short_side = max(size), min(size)
    factor = min(long_side // max(1, needed[0]), short_side // max(1, needed[1]))
    return factor if factor >= 2 else 1


def decode_reduced(source: bytes | bytearray | memoryview | str | Path, needed: tuple[int, int], max_pixels: int,
                   budget: DecodeBudget | None = None) -> Image.Image:
    """``source`` as an 8-bit RGB picture reduced for the networks, or BadImageError."""
    data = _read_bytes(source) if not isinstance(source, (bytes, bytearray, memoryview)) else bytes(source)
    if not data:
        raise BadImageError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            _check_header(image, max_pixels)
            if image.format in ("JPEG", "MPO"):
                _draft(image, needed)
            width, height = image.size
            holding = budget.hold(width * height, len(data)) if budget is not None else nullcontext()
            with holding:
                image.load()
                orientation = image.getexif().get(0x0112, 1)
                reduced = _to_rgb_reduced(image, reduction_factor(image.size, needed))
                if reduced is not image:
                    image.close()  # the full-size pixels go now, not at the next collection
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(f"not an image, or a format the server cannot read: {SEND_AS_JPEG}") from None
    except Image.DecompressionBombError:
        raise BadImageError(f"too many pixels (limit {max_pixels:,})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(f"damaged or truncated image ({_short(exc)}): {SEND_AS_JPEG}") from None
    except MemoryError:
        raise BadImageError("image too large to decode") from None
    return _orient(reduced, orientation)


def _draft(image: Image.Image, needed: tuple[int, int]) -> None:
    """Ask the JPEG decoder for the smallest DCT scale that still leaves the reduction
    its full factor's worth of pixels (never below twice what the views keep)."""
    factor = reduction_factor(image.size, needed)
    if factor < 2:
        return
    width, height = image.size
    image.draft("RGB", (-(-width // factor), -(-height // factor)))


def _to_rgb_reduced(image: Image.Image, factor: int) -> Image.Image:
    if factor < 2:
        return to_rgb(image)
    if image.mode in _WHOLE_IMAGE_MODES:
        return to_rgb(image).reduce(factor)
    width, height = image.size
    rows = max(1, BAND_BYTES // max(1, width * 4))
    band = max(factor, rows - rows % factor)
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, band):
        bottom = min(height, top + band)
        piece = to_rgb(image.crop((0, top, width, bottom))).reduce(factor)
        out.paste(piece, (0, top // factor))
    return out


def _orient(image: Image.Image, orientation: int) -> Image.Image:
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    return image.transpose(method) if method is not None else image

