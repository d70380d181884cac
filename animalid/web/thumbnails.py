"""Small re-encoded JPEG thumbnails of the photos answered, with a retention period.

A thumbnail is made from the photo's bytes, never copied: decoded by Pillow
(JPEG decoded at reduced size with ``draft``, so a 12-megapixel photo costs
milliseconds), turned upright by its EXIF orientation, shrunk to
``MAX_SIDE`` pixels and written as a fresh baseline JPEG with no metadata
(no GPS position, no camera serial). Names are a hash of the request's key
and the photo's position, so no name from a stranger reaches the file system.

Making them runs on one background thread with a bounded queue, off the
serving path, at the lowest CPU priority, and only while the classifier
rests (``busy``), for at most ``MAX_DEFER_S``: on a small machine a burst
is classified first and its thumbnails follow. When the queue is full,
thumbnails are skipped, never requests. ``on_saved`` hears of each one
written (the live page shows it then).
``[web] keep_days`` bounds how long they stay (0 keeps none); ``prune``
runs at start and then periodically while the server runs.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import logging
import os
import queue
import re
import threading
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

MAX_SIDE = 160
QUALITY = 70
MAX_PIXELS = 50_000_000  # larger photos were refused by the server anyway
# A JPEG decodes at 1/8 size for a thumbnail (draft); other formats decode whole.
# Above this many pixels such a photo gets no thumbnail: its decode would take
# hundreds of megabytes that the allocator keeps (tests/e2e/test_hostile.py bounds it).
MAX_FULL_DECODE_PIXELS = 16_000_000
TRIM_ABOVE_PIXELS = 2_000_000  # after a decode this large, give the freed memory back
QUEUE_SIZE = 64
NAME = re.compile(r"^[0-9a-f]{32}-[0-9]{1,2}\.jpg$")
MAX_DEFER_S = 30.0  # a thumbnail waits for the classifier to rest at most this long
DEFER_STEP_S = 0.25
DAY_S = 86400.0


def thumbnail_name(key: str, index: int) -> str:
    return f"{hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]}-{index}.jpg"


def make_thumbnail(data: bytes, max_side: int = MAX_SIDE, quality: int = QUALITY) -> bytes:
    """A small upright JPEG of the photo in ``data``; ValueError when it cannot be read."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            whole = image.format != "JPEG"  # decoded at full size
            if width * height > (MAX_FULL_DECODE_PIXELS if whole else MAX_PIXELS):
                raise ValueError(f"{width}x{height} {image.format} is too large for a thumbnail")
            image.draft("RGB", (max_side * 2, max_side * 2))  # JPEG: decode at 1/2..1/8 size
            upright = ImageOps.exif_transpose(image)
            upright = upright.convert("RGB")
            upright.thumbnail((max_side, max_side))
            out = io.BytesIO()
            upright.save(out, "JPEG", quality=quality, optimize=False)
        if width * height > TRIM_ABOVE_PIXELS:
            _trim_memory()
        return out.getvalue()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError) as exc:
        raise ValueError(f"cannot make a thumbnail: {type(exc).__name__}: {exc}") from None


class ThumbnailStore:
    """A folder of thumbnails; ``keep_days`` 0 keeps none."""

    def __init__(self, folder: Path, keep_days: float, clock: Callable[[], float] = time.time,
                 busy: Callable[[], bool] = lambda: False,
                 on_saved: Callable[[str, int, str], None] = lambda key, index, name: None):
        self.folder = Path(folder)
        self.keep_days = keep_days
        self._clock = clock
        self._queue: queue.Queue[tuple[str, int, bytes] | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None
        self.skipped = 0
        self._busy, self._on_saved = busy, on_saved

    @property
    def enabled(self) -> bool:
        return self.keep_days > 0

    def path_of(self, name: str) -> Path | None:
        """The file for a name from a URL, or None when the name is not one of ours."""
        if not NAME.match(name):
            return None
        path = self.folder / name
        return path if path.is_file() else None

    def has(self, key: str, index: int) -> str:
        """The thumbnail's name when it exists, else ""."""
        name = thumbnail_name(key, index)
        return name if self.enabled and (self.folder / name).is_file() else ""

    def save(self, key: str, index: int, data: bytes) -> str:
        """Make and write one thumbnail now; its name, or "" when none was kept."""
        if not self.enabled:
            return ""
        try:
            jpeg = make_thumbnail(data)
        except ValueError as exc:
            log.debug("%s #%d: %s", key, index, exc)
            return ""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = thumbnail_name(key, index)
        temporary = self.folder / f".{name}.{os.getpid()}.tmp"
        temporary.write_bytes(jpeg)
        os.replace(temporary, self.folder / name)
        return name

    # -- in the background ------------------------------------------------------

    def submit(self, key: str, images: list[bytes]) -> None:
        """Queue the photos of one request; skipped (not waited for) when the queue is full."""
        if not self.enabled:
            return
        self._start()
        for index, data in enumerate(images):
            if not data:
                continue
            try:
                self._queue.put_nowait((key, index, data))
            except queue.Full:
                self.skipped += 1

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="animalid-thumbnails", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        _lower_priority()
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._wait_for_rest()
                name = self.save(*item)
                if name:
                    self._on_saved(item[0], item[1], name)
            except OSError as exc:  # disk full: the page shows no thumbnail, nothing else fails
                log.warning("could not write a thumbnail in %s: %s", self.folder, exc)
            finally:
                self._queue.task_done()
            if self._queue.empty():
                _trim_memory()  # decoded photos leave freed blocks in this thread's arena

    def _wait_for_rest(self) -> None:
        deadline = time.monotonic() + MAX_DEFER_S
        while self._busy() and time.monotonic() < deadline:
            time.sleep(DEFER_STEP_S)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the queued thumbnails are written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(5)
            self._thread = None

    # -- retention ----------------------------------------------------------------

    def prune(self) -> int:
        """Delete thumbnails older than ``keep_days`` (all of them at 0); how many went."""
        if not self.folder.is_dir():
            return 0
        cutoff = self._clock() - self.keep_days * DAY_S
        removed = 0
        for path in self.folder.iterdir():
            if not (NAME.match(path.name) or path.name.endswith(".tmp")):
                continue
            try:
                if path.stat().st_mtime < cutoff or self.keep_days <= 0:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # another worker pruned it first
        return removed


def _lower_priority() -> None:
    """This thread at the lowest CPU priority (Linux: a thread is a task with its own
    nice value): thumbnails use the cores the classifier leaves idle."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: thumbnails stay small anyway


def _trim_memory() -> None:
    """Hand memory freed after a large decode back to the system (glibc keeps a thread's
    freed blocks in that thread's arena otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc
