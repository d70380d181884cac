"""The camera's command line and its settings.

The options client.py adds for the camera, and :class:`CaptureSettings`:
what the camera needs, built by ``animalid.cli.settings.capture_settings`` from
config.ini's [camera] and [client] sections with the command line winning.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


def parse_resolution(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``; an argparse type."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX\u00d7]\s*(\d+)\s*", text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1280x720")
    return int(match[1]), int(match[2])


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value
    return parse


def add_capture_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add the camera options (used when client.py runs without --image)."""
    group = parser.add_argument_group("camera (when no --image is given)")
    group.add_argument("--camera", metavar="SOURCE",
                       help="device index (0, 1 ...), video file or stream URL "
                            "(default: [camera] source)")
    group.add_argument("--resolution", metavar="WxH", type=parse_resolution,
                       help="ask the camera for this size, e.g. 1280x720")
    group.add_argument("--no-window", action="store_true",
                       help="no preview window: Enter in the terminal captures "
                            "(automatic when there is no display)")
    group.add_argument("--save-dir", metavar="DIR", type=Path,
                       help="keep each shot (.jpg) and its answer (.json, .txt) here")
    group.add_argument("--jpeg-quality", metavar="1-100", type=_int_between(1, 100),
                       help="JPEG quality of the sent shot")
    group.add_argument("--max-side", metavar="PIXELS", type=_int_between(0, 100_000),
                       help="longest side of the sent shot (0 = full size)")
    return group


def camera_source(text: str, base: Path | None = None) -> int | str:
    """A device index for digits, else a URL or a file path (relative to ``base``)."""
    text = text.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    if "://" in text or base is None:
        return text
    path = Path(os.path.expanduser(text))
    return str(path if path.is_absolute() else base / path)


def describe_source(source: int | str) -> str:
    """The source as shown in messages, without a password from a stream URL."""
    return re.sub(r"(//[^/@:]+):[^/@]*@", r"\1:***@", str(source))


@dataclass
class CaptureSettings:
    source: int | str
    width: int
    height: int
    warmup_frames: int
    jpeg_quality: int
    max_side: int
    save_dir: Path | None
    window: bool
    timeout_s: float
    poll_interval_s: float
