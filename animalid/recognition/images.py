"""Turning untrusted image bytes into a clean RGB picture, or a clear refusal.

Photos arrive from strangers' phones and mail clients, so decoding is
defensive: the pixel count is checked from the header before any pixel is
decoded (decompression bombs), only common still-image formats are accepted
(with HEIC/HEIF, the iPhone camera's format, through pi-heif, and AVIF, which
Pillow reads itself), truncated files are refused rather than padded, EXIF
orientation is applied,
and every mode (RGBA, LA, palette, greyscale, 16-bit, CMYK) ends as 8-bit RGB.
Transparent areas are laid on a plain background, because cut-outs are common
and a black fill misleads the network.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import cast

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from animalid.errors import BadImageError
from animalid.photolimits import DEFAULT_MAX_PIXELS, long_side_within, size_problem

ACCEPTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "GIF", "BMP", "TIFF", "WEBP", "HEIF", "AVIF"})
BACKGROUND_RGB = (255, 255, 255)
# What a person can do about an image the server cannot use (one line in the answer).
SEND_AS_JPEG = "send the photo as JPEG"

try:  # HEIC/HEIF decoding (ISO/IEC 23008-12): pi-heif, the decode-only build of pillow-heif
    from pi_heif import register_heif_opener
except ImportError:  # without it a HEIC photo gets "not an image ...: send the photo as JPEG"
    pass
else:
    register_heif_opener()

# Refuse truncated files instead of silently decoding half a picture.
ImageFile.LOAD_TRUNCATED_IMAGES = False


def load_image(source: bytes | str | Path | Image.Image,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``source`` into an 8-bit RGB image, or raise BadImageError."""
    if isinstance(source, Image.Image):
        return to_rgb(ImageOps.exif_transpose(source))
    data = _read_bytes(source)
    if not data:
        raise BadImageError("empty file")
    try:
        with warnings.catch_warnings():
            # Pillow warns (rather than fails) between its own two bomb limits,
            # and about every oddity of a malformed file; our own checks decide,
            # and a stranger's file must not fill the server's log.
            warnings.simplefilter("ignore")
            image: Image.Image = Image.open(io.BytesIO(data))
            _check_header(image, max_pixels)
            image.load()
            # In place: without an Orientation tag nothing is copied, which saves a
            # phone photo's full-size copy (48 MB at 12 MP) per decoding thread.
            ImageOps.exif_transpose(image, in_place=True)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(f"not an image, or a format the server cannot read: {SEND_AS_JPEG}") from None
    except Image.DecompressionBombError:  # over twice Pillow's own limit: it does not say the sides
        raise BadImageError(f"too many pixels (limit {max_pixels:,}): send it at most about "
                            f"{long_side_within(1, 1, max_pixels)} px on the long side") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(f"damaged or truncated image ({_short(exc)}): {SEND_AS_JPEG}") from None
    except MemoryError:
        raise BadImageError("image too large to decode") from None
    return to_rgb(image)


def _read_bytes(source: bytes | str | Path) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BadImageError("no such file") from None
    except IsADirectoryError:
        raise BadImageError("is a folder, not an image") from None
    except OSError as exc:
        raise BadImageError(f"cannot read: {exc.strerror or exc}") from None


def _check_header(image: Image.Image, max_pixels: int) -> None:
    if image.format not in ACCEPTED_FORMATS:
        raise BadImageError(f"unsupported image format {image.format or 'unknown'}: {SEND_AS_JPEG}")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise BadImageError("image has no pixels")
    problem = size_problem(width, height, max_pixels)  # too many pixels, or too few to judge
    if problem:
        raise BadImageError(problem)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        image = _sixteen_bit_to_l(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND_RGB + (255,))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return image


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    # Pillow's own I->L conversion clips at 255, which turns 16-bit photos white.
    # Scale by the real maximum instead.
    image = image.convert("I")
    low, high = cast("tuple[float, float]", image.getextrema())  # one band: (min, max)
    span = max(high - low, 1)
    return image.point(lambda value: (value - low) * 255 / span).convert("L")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:120] if text else type(exc).__name__
