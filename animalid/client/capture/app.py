"""The entry point: :func:`run` reads the settings, picks the window or the
terminal, opens the camera and the mail worker, and turns every failure into
a one-line message and an exit status."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

from animalid.client.capture.archive import ShotArchive
from animalid.client.capture.camera import Camera
from animalid.client.capture.display import display_available
from animalid.client.capture.mailer import MailWorker
from animalid.client.capture.session import CaptureSession
from animalid.client.capture.settings import CaptureSettings
from animalid.client.capture.terminal import Console, run_terminal
from animalid.client.capture.text import FONT_DIRS
from animalid.client.capture.window import WindowUnavailable, run_window
from animalid.errors import AnimalIdError, ExitStatus


def _quiet_opencv() -> None:
    """Our one-line camera errors replace the warnings of every backend OpenCV
    (and FFmpeg, for streams) tries; OPENCV_LOG_LEVEL=INFO and
    OPENCV_FFMPEG_LOGLEVEL=32 bring them back. Qt wants a font folder."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET
    if "OPENCV_LOG_LEVEL" not in os.environ:
        os.environ["OPENCV_LOG_LEVEL"] = "FATAL"
        if "cv2" in sys.modules:
            cv2 = sys.modules["cv2"]
            with contextlib.suppress(AttributeError):
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_FATAL)
    dejavu = Path(FONT_DIRS[0])  # Debian's fonts-dejavu-core; else Qt only warns
    if dejavu.is_dir():
        os.environ.setdefault("QT_QPA_FONTDIR", str(dejavu))



def _program() -> str:
    """Messages start like client.py's own: "client.py: error: ..."."""
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "client.py"


def run(make_settings: Callable[[], CaptureSettings], *, requester=None,
        make_requester: Callable[[], Any] | None = None,
        stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Capture, send and show answers until the user quits; the exit status.

    ``make_settings`` builds the camera settings (client.py passes
    animalid.cli.settings.capture_settings); it runs inside the error handling
    so that a bad setting is one line.

    ``make_requester`` builds the mail Requester once the camera settings are
    known good (client.py passes animalid.cli.settings.requester); a ready
    ``requester`` replaces it (for embedding and tests); ``stdin``/``stdout``
    replace the terminal.
    """
    console = Console(stdout or sys.stdout)
    _quiet_opencv()
    try:
        settings = make_settings()
        use_window = settings.window and display_available()
        if settings.window and not use_window:
            console.say("no display: using the terminal instead of a window")
        archive = ShotArchive.open(settings.save_dir)
        if requester is None:
            if make_requester is None:
                raise TypeError("run() needs a requester or make_requester")
            requester = make_requester()
        # Opened inside the with: a camera that opens but fails its first read is released too.
        with Camera(settings.source, settings.width, settings.height) as camera:
            camera.open()
            camera.warm_up(settings.warmup_frames)
            worker = MailWorker(requester, settings.poll_interval_s).start()
            try:
                session = CaptureSession(settings, worker, archive)
                if use_window:
                    try:
                        return int(run_window(session, camera, console))
                    except WindowUnavailable as exc:
                        console.say(f"no window ({exc}): using the terminal")
                return int(run_terminal(session, camera, console, stdin or sys.stdin))
            finally:
                worker.stop()
    except KeyboardInterrupt:
        console.clear_status()
        print(f"{_program()}: interrupted", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except AnimalIdError as exc:
        console.clear_status()
        print(f"{_program()}: error: {exc}", file=sys.stderr)
        return int(exc.exit_status)
