"""The camera: one cv2.VideoCapture (a device index, a video file or a stream
URL) that opens with a clear error or not at all, loops video files and is
always released; and the pacer that plays a video file at its own speed."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from animalid.client.capture.settings import describe_source
from animalid.errors import AnimalIdError, ExitStatus

if TYPE_CHECKING:  # only for annotations: importing them costs start-up time
    import numpy as np

# The package's one logger: log lines name "animalid.client.capture", as before the split.
log = logging.getLogger(__package__)

DEFAULT_VIDEO_FPS = 25.0


class CameraError(AnimalIdError):
    """The camera cannot be opened or stopped delivering frames."""

    exit_status = ExitStatus.USAGE


class Camera:
    """One cv2.VideoCapture: a clear error when it cannot open, video files
    looped so the preview keeps running, always released (a context manager)."""

    MAX_FAILED_READS = 25

    def __init__(self, source: int | str, width: int = 0, height: int = 0):
        self.source = source
        self.width, self.height = width, height
        self.is_device = isinstance(source, int)
        self.is_file = isinstance(source, str) and "://" not in source
        self.label = f"camera {describe_source(source)}"
        self.fps = 0.0
        self._capture: Any = None  # a cv2.VideoCapture once open (OpenCV is imported late)

    def __enter__(self) -> "Camera":
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()

    def open(self) -> "Camera":
        """Open and read a first frame, or CameraError saying why not."""
        import cv2

        if self.is_file and not Path(str(self.source)).is_file():
            raise CameraError(f"{self.label}: no such file (give a device index, a video file or a URL)")
        self._capture = cv2.VideoCapture(self.source)
        if not self._capture.isOpened():
            raise CameraError(self._cannot_open())
        if self.is_device and self.width and self.height:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        fps = self._capture.get(cv2.CAP_PROP_FPS) or 0.0
        self.fps = fps if 1.0 <= fps <= 240.0 else DEFAULT_VIDEO_FPS
        # A busy V4L2 device opens fine and only fails on the first read.
        try:
            frame = self.read()
        except CameraError:
            raise CameraError(self._cannot_open()) from None
        height, width = frame.shape[:2]
        if self.is_device and self.width and (width, height) != (self.width, self.height):
            log.info("%s gives %dx%d (asked for %dx%d)", self.label, width, height,
                     self.width, self.height)
        return self

    def _cannot_open(self) -> str:
        if self.is_device:
            return f"{self.label}: cannot open (is it connected, or used by another program?)"
        if self.is_file:
            return f"{self.label}: cannot open (not a video OpenCV can read)"
        return f"{self.label}: cannot open the stream (check the URL and the network)"

    def warm_up(self, frames: int) -> None:
        """Drop the first frames while a camera settles its exposure (not for files)."""
        if not self.is_file:
            for _ in range(frames):
                self.read()

    def read(self) -> "np.ndarray":
        """The next frame; a video file starts over at its end."""
        for _ in range(self.MAX_FAILED_READS):
            ok, frame = self._capture.read()
            if ok and frame is not None:
                return frame
            if self.is_file:
                self._rewind()
            else:
                time.sleep(0.02)  # a camera drops a frame now and then
        raise CameraError(f"{self.label}: stopped delivering frames "
                          "(unplugged, or used by another program?)")

    def _rewind(self) -> None:
        import cv2

        if not self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0):
            # Some containers cannot seek: opening the file again always works.
            self._capture.release()
            self._capture = cv2.VideoCapture(self.source)

    def release(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class FramePacer:
    """Plays a video file at its own speed; a real camera paces itself."""

    def __init__(self, fps: float | None):
        self.period = 1.0 / fps if fps else 0.0
        self._due = time.monotonic()

    def delay_s(self) -> float:
        """Seconds to wait before the next frame is due."""
        if not self.period:
            return 0.001
        now = time.monotonic()
        self._due = max(self._due + self.period, now)
        return max(0.001, self._due - now)

