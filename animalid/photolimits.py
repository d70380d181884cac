"""How large and how small a photo may be, and the words that say what to do about it.

client.py checks these before it mails a photo (from the header alone), the
server before it decodes one, so both say the same thing: a refusal names the
size and the next step ("send it at most about 6000 px on the long side"),
never only the rule. Plain Python, importable by every layer.
"""

from __future__ import annotations

import math

# config.ini [server] max_image_pixels (config.DEFAULTS): a decompression-bomb
# guard that still takes every phone camera (a 48-megapixel phone saves 12 MP by default).
DEFAULT_MAX_PIXELS = 40_000_000
# Below this many pixels on a side there is nothing to judge: the networks look
# at 224-260 px, so a 32 px thumbnail (CIFAR's size, about the least at which
# people still tell animals apart) is already blown up eight times.
MIN_SIDE = 32


def long_side_within(width: int, height: int, max_pixels: int) -> int:
    """The longest side, rounded down to a round figure, that keeps this photo's shape
    within ``max_pixels``: 6000 for 12000x12000 and 40 million."""
    long, short = max(width, height), max(min(width, height), 1)
    exact = math.sqrt(max_pixels * long / short)
    step = 1000 if exact >= 2000 else 100
    return max(step, int(exact // step) * step)


def too_many_pixels_text(width: int, height: int, max_pixels: int) -> str:
    """Why a photo is refused for its size, and what to send instead."""
    side = long_side_within(width, height, max_pixels)
    return (f"too many pixels: {width}x{height} (limit {max_pixels:,}): "
            f"send it at most about {side} px on the long side")


def too_small_text(width: int, height: int) -> str:
    """Why a tiny image gets no answer, and what to send instead."""
    return (f"too small to judge: {width}x{height} pixels; send a photo at least "
            f"{MIN_SIDE} px on each side (the camera's full size is best)")


def size_problem(width: int, height: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> str | None:
    """The refusal for a photo of this size, or None when its size is fine."""
    if width * height > max_pixels:
        return too_many_pixels_text(width, height, max_pixels)
    if min(width, height) < MIN_SIDE:
        return too_small_text(width, height)
    return None
