"""Pure image work on BGR frames: fit and shrink, JPEG encode and decode.

OpenCV and NumPy are imported inside each function, on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: importing them costs start-up time
    import numpy as np


def fit_size(width: int, height: int, max_width: int, max_height: int) -> tuple[int, int]:
    """The largest size with the same shape within the box; never enlarges."""
    scale = min(1.0, max_width / width, max_height / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def shrink(frame: "np.ndarray", max_width: int, max_height: int) -> "np.ndarray":
    """The frame scaled down to fit the box (INTER_AREA: no aliasing); as is if it fits."""
    import cv2

    height, width = frame.shape[:2]
    size = fit_size(width, height, max_width, max_height)
    if size == (width, height):
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def encode_jpeg(frame: "np.ndarray", quality: int = 85, max_side: int = 0) -> bytes:
    """A BGR frame as JPEG bytes, its longest side at most ``max_side`` (0: any)."""
    import cv2

    if max_side:
        frame = shrink(frame, max_side, max_side)
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the frame as JPEG")
    return data.tobytes()


def decode_jpeg(data: bytes) -> "np.ndarray":
    import cv2
    import numpy as np

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a decodable image")
    return image
