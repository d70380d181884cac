"""Fixtures of the end-to-end tests that drive the camera window (tests/e2e/camera_kit.py).

The shared fixtures of every test are in tests/conftest.py; these two are the
stand-in camera and the private X display, used by test_capture.py and
test_one_answer.py.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.camera_kit import make_video


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("camera") / "tiger.avi")


@pytest.fixture(scope="module")
def xdisplay():
    """A private X server (Xvfb picks a free display number)."""
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("needs Xvfb and xdotool (apt-get install xvfb xdotool)")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x1024x24",
                               "-nolisten", "tcp"], pass_fds=(write_end,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    with os.fdopen(read_end) as numbers:
        ready, _, _ = select.select([numbers], [], [], 15)
        number = numbers.readline().strip() if ready else ""
    if not number:
        server.kill()
        pytest.fail("Xvfb did not start")
    yield f":{number}"
    server.terminate()
    server.wait(10)
