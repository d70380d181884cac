"""Decoding straight to the reduced picture: the same pixels as decoding whole then
reducing, in a fraction of the memory; JPEG drafted; the budget held while decoding."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from animalid.errors import BadImageError
from animalid.recognition import decoding
from animalid.recognition.decode_budget import DecodeBudget
from animalid.recognition.decoding import decode_reduced, reduction_factor
from animalid.recognition.images import load_image

NEEDED = (448, 512)  # 2 x crop, 2 x resize of a 224/256 network


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def old_path(data: bytes) -> Image.Image:
    image = load_image(data, 100_000_000)
    factor = reduction_factor(image.size, NEEDED)
    return image.reduce(factor) if factor >= 2 else image


def random_image(mode: str, size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGBA": 4, "RGB": 3, "LA": 2}.get(mode, 1)
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    if channels == 1:
        return Image.fromarray(pixels[:, :, 0], "L").convert(mode) if mode != "L" else \
            Image.fromarray(pixels[:, :, 0], "L")
    return Image.fromarray(pixels, mode)


@pytest.mark.parametrize("mode, size", [("RGBA", (2051, 1537)), ("RGB", (1800, 2701)), ("L", (1500, 1100)),
                                        ("LA", (1400, 1399)), ("P", (1700, 1030)), ("RGB", (300, 200))])
def test_same_pixels_as_decoding_whole_then_reducing(mode, size, monkeypatch):
    monkeypatch.setattr(decoding, "BAND_BYTES", 64 * 1024)  # many bands, with a partial last one
    data = encoded(random_image(mode, size))
    new, old = decode_reduced(data, NEEDED, 100_000_000), old_path(data)
    assert new.mode == "RGB" and new.size == old.size
    assert np.array_equal(np.asarray(new), np.asarray(old))


def test_transparent_png_with_palette_transparency():
    image = random_image("P", (1600, 1200), seed=3)
    data = encoded(image, transparency=7)
    assert np.array_equal(np.asarray(decode_reduced(data, NEEDED, 10**8)), np.asarray(old_path(data)))


def test_exif_orientation_is_applied_to_the_result():
    image = random_image("RGB", (2000, 1000))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = encoded(image, "JPEG", exif=exif.tobytes(), quality=90)
    result = decode_reduced(data, NEEDED, 10**8)
    assert result.size[1] > result.size[0]  # portrait after rotation


def test_jpeg_is_drafted_but_never_below_what_the_views_need():
    image = random_image("RGB", (6000, 4000))
    data = encoded(image, "JPEG", quality=80)
    result = decode_reduced(data, NEEDED, 10**8)
    old = old_path(data)
    assert min(result.size) >= NEEDED[1] and max(result.size) >= NEEDED[0]
    assert old.size[0] <= result.size[0] <= 2 * old.size[0] + 1  # the next DCT scale up, at most
    difference = np.abs(np.asarray(result, dtype=np.int16) - np.asarray(old.resize(result.size), dtype=np.int16))
    assert difference.mean() < 40  # noise photo: the DCT scaling differs a little, not wildly


def test_the_budget_is_held_while_decoding_with_the_decoded_pixel_count():
    budget = DecodeBudget(max_pixels=10**9)
    seen: list[int] = []
    original = decoding._to_rgb_reduced

    def spy(image, factor):
        seen.append(budget.in_flight[0])
        return original(image, factor)

    decoding._to_rgb_reduced, saved = spy, decoding._to_rgb_reduced
    try:
        decode_reduced(encoded(random_image("RGB", (1200, 900))), NEEDED, 10**8, budget)
        decode_reduced(encoded(random_image("RGB", (4000, 3000)), "JPEG"), NEEDED, 10**8, budget)
    finally:
        decoding._to_rgb_reduced = saved
    assert seen == [1200 * 900, 1000 * 750]  # the JPEG at its drafted size (1/4, not 1/5)
    assert budget.in_flight == (0, 0)


def test_bad_input_is_refused_and_gives_the_budget_back():
    budget = DecodeBudget(max_pixels=100)
    for data, words in ((b"", "empty"), (b"not an image", "not an image"),
                        (encoded(random_image("RGB", (400, 300)))[:-100], "damaged")):
        with pytest.raises(BadImageError, match=words):
            decode_reduced(data, NEEDED, 10**8, budget)
    with pytest.raises(BadImageError, match="too many pixels"):
        decode_reduced(encoded(random_image("RGB", (400, 300))), NEEDED, 1000, budget)
    assert budget.in_flight == (0, 0)
    done = threading.Event()
    with budget.hold(1):
        done.set()
    assert done.is_set()
