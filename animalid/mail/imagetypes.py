"""What kind of image a part's bytes hold: magic numbers first, the file name second.

Phones and webmail send photos as ``application/octet-stream`` or without a
name, and the iPhone's HEIC is unknown to many mail programs, so the content
decides (JPEG, PNG, GIF, TIFF, WebP, BMP, and the ISO/IEC 14496-12 'ftyp'
brands of HEIF, HEIC and AVIF).
"""

from __future__ import annotations

import mimetypes

IMAGE_EXTENSIONS = {".jpg": "jpeg", ".jpeg": "jpeg", ".jpe": "jpeg", ".png": "png",
                    ".gif": "gif", ".bmp": "bmp", ".webp": "webp", ".tif": "tiff",
                    ".tiff": "tiff", ".heic": "heic", ".heif": "heif", ".avif": "avif"}
# ISO/IEC 14496-12 'ftyp' brands of still images: HEIF (ISO/IEC 23008-12, the
# iPhone camera's HEIC) and AVIF (AV1 Image File Format). Video brands
# ('isom', 'mp42', 'qt  ') are not images.
HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
AVIF_BRANDS = frozenset({b"avif", b"avis"})
HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
# Declared types that say nothing about the content: their bytes decide.
UNTYPED = frozenset({"application/octet-stream", "application/x-octet-stream",
                     "application/binary", "application/unknown", "application/x-unknown"})
# Said with the answer to a GIF: its palette holds 256 colours at most, and that
# alone changes answers. Measured on the dev photos saved as GIF by Pillow (median-cut
# palette, decoded bit-exact): 4 of 43 real photos and 21 of 112 cut-outs got another
# answer than the original, as often a shallower rank as a deeper one (README, "What
# phones and mail programs send").
GIF_NOTE = ("a GIF keeps at most 256 colours, which can change the answer: for the surest answer "
            "send the photo as the camera saved it (JPEG, HEIC or PNG)")
# A BMP's second header starts with its own size, one of these (BITMAPCOREHEADER ... V5).
_BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})


def image_type_of(data: bytes, filename: str = "") -> str:
    """The image/* type from the magic bytes, else from the name, else octet-stream."""
    sniffed = sniff_image_type(data)
    if sniffed:
        return sniffed
    extension = "." + filename.rpartition(".")[2].lower() if filename and "." in filename else ""
    if extension in IMAGE_EXTENSIONS:
        return f"image/{IMAGE_EXTENSIONS[extension]}"
    guessed, _ = mimetypes.guess_type(filename or "")
    if guessed and guessed.startswith("image/"):
        return guessed
    return "application/octet-stream"


def sniff_image_type(data: bytes) -> str | None:
    """The image/* type that the content itself shows (magic numbers), or None."""
    head = data[:32]
    signatures = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
                  (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"),
                  (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))
    for magic, content_type in signatures:
        if head.startswith(magic):
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "image/bmp"
    if head[4:8] == b"ftyp":
        return _iso_bmff_image_type(data)
    return None


def _iso_bmff_image_type(data: bytes) -> str | None:
    """image/heic, image/avif or image/heif from an 'ftyp' box's major and compatible brands."""
    box_size = int.from_bytes(data[:4], "big")
    if not 16 <= box_size <= 256 or len(data) < box_size:
        return None
    major = data[8:12]
    brands = {major} | {data[i:i + 4] for i in range(16, box_size - 3, 4)}
    for found in ({major}, brands):  # the major brand first, then the compatible ones
        if found & AVIF_BRANDS:
            return "image/avif"
        if found & HEIC_BRANDS:
            return "image/heic"
    return "image/heif" if brands & HEIF_BRANDS else None
