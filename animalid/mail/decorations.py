"""Which images of a mail are decorations (signature logos, icons, tracking pixels), not photos.

Outlook, Apple Mail and company signatures put small images into nearly every
mail: a logo (Outlook names it ``image001.png``), social-network icons, a
1x1 tracking GIF. They are inline MIME parts (RFC 2183 ``inline`` or none,
often in an RFC 2387 multipart/related with an RFC 2392 ``cid:`` link), and so
are the photos of iPhone and Gmail mail, so only their size tells them apart.
A file the sender attached (``Content-Disposition: attachment``) was chosen
and is always answered. Among the others, the rule, judged on pixel
dimensions and bytes:

* an **icon** has no side longer than ``ICON_MAX_SIDE`` (64) pixels;
* a **small graphic** has at most ``DECORATION_MAX_PIXELS`` (125,000) pixels,
  at most ``DECORATION_MAX_BYTES`` (100 kB), and at most 1/``PHOTO_RATIO``
  (1/8) of the pixels of the largest image in the same mail;
* either is skipped only beside an image that is neither: a photo, or at
  least the largest image of the mail. A mail with a single image, or with
  icons alone, is answered image by image.

The numbers were measured (README, "What phones and mail programs send") on
41 real logos, icons and banners found on a Debian system (CPython's email
test banner ``PyBanner048.gif``, favicons, the Debian, git, CMake, libxslt and
Tk logos, Windows tiles, web buttons) and 13 made the way Outlook stores
signature images (a 1x1 tracking GIF, 16-48 px icons, 150x50 to 600x200
logos in PNG and JPEG), against 158 photos (the project's three test photos,
112 small cut-outs and 43 real photographs). Icons and tracking pixels are
at most 64 pixels on their longest side, photos at least 120. The largest
signature-sized graphic is a 600x200 "retina" logo (120,000 pixels), the
heaviest 58 kB. Beside a 2-megapixel phone photo (1632x1224) the rule skips
50 of the 54; the other four are web graphics of 180,000 to 310,000 pixels
that no signature carries, and they are answered. Beside a 640x480 photo it
skips 43. Pixel size alone cannot tell a tiny cut-out photo from a logo of
the same size (a 188x76 lion cut-out, a 180x68 libxslt logo): that is why a
small graphic is judged against the largest image of the same mail, why a
small image is answered when it comes alone, and why the reply names what it
skipped. Beside a real photo, 133 of the 158 photos would count as small
graphics: the cut-outs are logo-sized.

Dimensions are read from the image header only, never by decoding pixels:
Pillow's lazy ``Image.open`` where Pillow is installed (the server), and the
``ispe`` box (ISO/IEC 23008-12 section 6.5.3.1) for HEIF and AVIF files. An
image whose size cannot be read is never a decoration, and an image over the
pixel limit never counts as the photo that others are compared with.
"""

from __future__ import annotations

import struct
import warnings
from io import BytesIO
from typing import Sequence

ICON_MAX_SIDE = 64
DECORATION_MAX_PIXELS = 125_000
DECORATION_MAX_BYTES = 100_000
PHOTO_RATIO = 8
# How far into a HEIF/AVIF file the 'ispe' boxes are looked for: they sit in
# the 'meta' box, which writers put before the coded image data ('mdat').
_ISPE_SCAN_BYTES = 256 * 1024


def find_decorations(images: Sequence[bytes], max_pixels: int,
                     attached: Sequence[bool] = ()) -> dict[int, tuple[int, int]]:
    """Index -> (width, height) of each image that is a decoration beside a photo; {} when none.

    ``images`` are the raw bytes of a mail's images in order, ``attached``
    says which of them the sender attached (never decorations), and
    ``max_pixels`` is the server's pixel limit (an image over it is never the
    photo that the others are compared with).
    """
    if len(images) < 2:
        return {}
    sizes = [image_size(data) for data in images]
    usable = [w * h for w, h in filter(None, sizes) if 0 < w * h <= max_pixels]
    largest = max(usable, default=0)
    found = {}
    for index, (data, size) in enumerate(zip(images, sizes)):
        if index < len(attached) and attached[index]:
            continue
        if size is not None and is_decoration(size, len(data), largest):
            found[index] = size
    if len(found) == len(images):  # no photo among them: answer them all
        return {}
    return found


def is_decoration(size: tuple[int, int], byte_count: int, largest_pixels: int) -> bool:
    """The rule of the module docstring for one image of ``size`` and ``byte_count`` bytes."""
    width, height = size
    if max(width, height) <= ICON_MAX_SIDE:
        return True
    pixels = width * height
    return (pixels <= DECORATION_MAX_PIXELS and byte_count <= DECORATION_MAX_BYTES
            and pixels * PHOTO_RATIO <= largest_pixels)


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the image's header, or None when it cannot be read."""
    if data[4:8] == b"ftyp":
        return _ispe_size(data)
    try:
        from PIL import Image
    except ImportError:  # PC 1 without Pillow never sorts out decorations
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(BytesIO(data)) as image:  # reads the header, decodes nothing
                width, height = image.size
    except Exception:  # noqa: BLE001 - any hostile header: size unknown
        return None
    return (width, height) if width > 0 and height > 0 else None


def _ispe_size(data: bytes) -> tuple[int, int] | None:
    """The largest 'ispe' (image spatial extents) of a HEIF/AVIF file: its primary image.

    An 'ispe' box is size(4) 'ispe' version/flags(4) width(4) height(4); tiles
    and thumbnails have their own, smaller ones.
    """
    best = None
    head = data[:_ISPE_SCAN_BYTES]
    start = head.find(b"ispe")
    while start >= 4:
        body = head[start + 8:start + 16]
        if len(body) == 8:
            width, height = struct.unpack(">II", body)
            if width and height and (best is None or width * height > best[0] * best[1]):
                best = (width, height)
        start = head.find(b"ispe", start + 4)
    return best
