"""Display detection: whether a preview window can open here, found out
without letting OpenCV's Qt abort the process (libX11 probing on Linux)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys


def display_available() -> bool:
    """Whether a HighGUI window can open here.

    OpenCV's Qt aborts the whole process (no exception) when it cannot reach
    a display, so on Linux this asks libX11, or a child process, first.
    """
    if sys.platform in ("win32", "darwin"):
        return True
    if os.environ.get("DISPLAY"):
        verdict = _x_display_opens()
        if verdict is not None:
            return verdict
    elif not os.environ.get("WAYLAND_DISPLAY"):
        return False
    return _window_opens_in_child()


def _x_display_opens() -> bool | None:
    """Whether libX11 connects to $DISPLAY; None when there is no libX11 to ask."""
    name = ctypes.util.find_library("X11")
    if not name:
        return None
    try:
        x11 = ctypes.CDLL(name)
    except OSError:
        return None
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    display = x11.XOpenDisplay(None)
    if not display:
        return False
    x11.XCloseDisplay(display)
    return True


def _window_opens_in_child() -> bool:
    code = "import cv2; cv2.namedWindow('animalid probe'); cv2.destroyAllWindows()"
    try:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0

