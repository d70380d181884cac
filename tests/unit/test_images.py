"""Decoding untrusted images: every mode works, every bad file gets a clear refusal."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from animalid.errors import BadImageError
from animalid.recognition.images import load_image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    # A picture with structure, so conversions that scramble it would show.
    image = Image.linear_gradient("L").resize((64, 48))
    return Image.merge("RGB", (image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), image))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "CMYK", "1"])
def test_every_mode_becomes_rgb(picture, mode):
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    decoded = load_image(encode(picture.convert(mode), fmt))
    assert decoded.mode == "RGB"
    assert decoded.size == picture.size


def test_sixteen_bit_keeps_its_contrast(picture):
    sixteen = picture.convert("L").convert("I").point(lambda v: v * 256).convert("I;16")
    decoded = load_image(encode(sixteen, "PNG"))
    assert decoded.mode == "RGB"
    low, high = decoded.convert("L").getextrema()
    assert high - low > 200, "16-bit input must not be clipped to white"


def test_palette_transparency_is_composited_on_white():
    image = Image.new("P", (40, 40), 0)
    image.putpalette([0, 0, 0] * 256)
    decoded = load_image(encode(image, "PNG", transparency=0))
    assert decoded.getpixel((0, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied(picture):
    rotated = picture.transpose(Image.Transpose.ROTATE_90)  # stored sideways
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 CW to display": undoes the ROTATE_90 above
    decoded = load_image(encode(rotated, "JPEG", exif=exif.tobytes()))
    assert decoded.size == picture.size


def test_not_an_image_is_refused():
    with pytest.raises(BadImageError, match="not an image"):
        load_image(b"%PDF-1.4 hello, this is not a picture")


def test_empty_file_is_refused():
    with pytest.raises(BadImageError, match="empty"):
        load_image(b"")


def test_truncated_file_is_refused(picture):
    data = encode(picture, "JPEG")
    with pytest.raises(BadImageError, match="truncated"):
        load_image(data[: len(data) // 2])


def test_unsupported_format_is_refused(picture):
    with pytest.raises(BadImageError, match="unsupported image format"):
        load_image(encode(picture, "ICO"))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that claims a huge size: the classic decompression bomb shape."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) \
        + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(BadImageError, match="too many pixels"):
        load_image(png_header_only(100_000, 100_000), max_pixels=40_000_000)


def test_missing_path_is_refused(tmp_path):
    with pytest.raises(BadImageError, match="no such file"):
        load_image(tmp_path / "absent.jpg")
