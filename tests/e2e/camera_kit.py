"""The camera window's test kit, shared by test_capture.py and test_one_answer.py.

A stand-in camera (a short MJPG video of tests/photos/tiger.png), a private
Xvfb display, the driver script that runs the camera front end with a
stand-in Requester, and :class:`Window`, which sends keys to the preview
window and reads its pixels back. Not a test module: nothing here is
collected.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from animalid.client import capture

ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "tests" / "photos"
PYTHON = sys.executable
FRAME_SIZE = (640, 480)


# -- helpers -----------------------------------------------------------------

def photo(name: str) -> np.ndarray:
    image = cv2.imread(str(PHOTOS / f"{name}.png"), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


def make_video(path: Path, frames: int = 20) -> Path:
    """A short MJPG video of the tiger: the stand-in camera (it loops every 0.8 s).

    Every frame is the same picture, so whichever frame a shot catches, the
    real classifier gets the same input.
    """
    width, height = FRAME_SIZE
    frame = np.full((height, width, 3), 60, np.uint8)
    frame[60:302, 120:520] = cv2.resize(photo("tiger"), (400, 242), interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, FRAME_SIZE)
    assert writer.isOpened()
    for _ in range(frames):
        writer.write(frame)
    writer.release()
    return path


def colour_pixels(image_bgr: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 0) -> int:
    target = np.array(rgb[::-1], np.int16)
    return int((np.abs(image_bgr.astype(np.int16) - target).max(axis=2) <= tolerance).sum())


def find_card(screen: np.ndarray, card: np.ndarray) -> tuple[float, tuple[int, int]]:
    """How far the best match of ``card`` in ``screen`` is off (0 = identical), and where."""
    scores = cv2.matchTemplate(screen, card, cv2.TM_SQDIFF_NORMED)
    misfit, _, best_at, _ = cv2.minMaxLoc(scores)
    return misfit, best_at


def expected_card(jpeg: bytes, name: str, number: int, answers: list[dict]) -> np.ndarray:
    """The card the pure drawing function makes for this shot and answer."""
    shot = capture.Shot(number, name, jpeg, 0.0, dt.datetime.now(), message_id="<m>",
                        sent_at=0.0, answers=answers, answered_at=1.0)
    width, height = FRAME_SIZE
    return capture.render_card(shot, capture.card_width(width, height), 1.0,
                               capture.TextPainter.default(), capture.layout_unit(height))


# -- processes: terminal, window ---------------------------------------------

# Runs capture.run with a stand-in Requester: the UI tests test the UI, not mail.
# Shot N is answered DELAYS[N-1] seconds after it was sent, with the tiger or
# the dog of tiger_and_dog (tests/conftest.py) in turn; every sent JPEG and the answer given are kept in the spool folder.
STAND_IN_DRIVER = r'''
import argparse, json, sys, time
from pathlib import Path
from animalid.cli import settings as edge
from animalid.client import capture
from animalid.config import load_config

class StandInRequester:
    def __init__(self, spool, delays, animals):
        self.spool, self.delays, self.animals = Path(spool), delays, animals
        self.spool.mkdir(exist_ok=True)
        self.pending = {}

    def send(self, images):
        number = len(list(self.spool.glob("*.jpg"))) + 1
        name, data = images[0]
        (self.spool / f"{number}.jpg").write_bytes(data)
        message_id = f"<shot{number}@stand-in>"
        self.pending[message_id] = (time.monotonic() + self.delays[number - 1], number, name)
        return message_id

    def poll(self):
        ready = []
        for message_id, (due, number, name) in list(self.pending.items()):
            if time.monotonic() >= due:
                del self.pending[message_id]
                answer = dict(self.animals[(number - 1) % 2], file=name)
                (self.spool / f"{number}.json").write_text(json.dumps(answer))
                ready.append((message_id, [answer]))
        return ready

parser = argparse.ArgumentParser()
parser.add_argument("--config")
parser.add_argument("--spool")
parser.add_argument("--delays", default="0.3")
parser.add_argument("--animals")
capture.add_capture_arguments(parser)
args = parser.parse_args()
requester = StandInRequester(args.spool, [float(d) for d in args.delays.split(",")] * 10,
                             json.loads(args.animals))
sys.exit(capture.run(lambda: edge.capture_settings(load_config(args.config), args),
                     requester=requester))
'''


def headless_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(extra)
    return env


def write_stand_in_config(folder: Path, video: Path) -> Path:
    """The camera.ini the stand-in driver reads: the video as the camera, quick polling."""
    config = folder / "camera.ini"
    config.write_text(f"[camera]\nsource = {video}\nwarmup_frames = 2\nmax_side = 640\n"
                      "[client]\ntimeout = 20\npoll_interval = 0.05\n")
    return config


# -- the window, under Xvfb ----------------------------------------------------



class Window:
    """The preview window of a running program: keys in, pixels out."""

    def __init__(self, argv: list[str], display: str, cwd: Path):
        self.display = display
        self.env = dict(headless_env(), DISPLAY=display)
        self.proc = subprocess.Popen(argv, cwd=cwd, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.output = ""
        threading.Thread(target=self._collect, daemon=True).start()
        self.id = self.xdotool("search", "--sync", "--name", f"^{capture.WINDOW_NAME}$").split()[0]
        self._wait_until_painted()
        self.xdotool("windowfocus", "--sync", self.id)

    def _wait_until_painted(self) -> None:
        """Wait for the first picture; re-map the window once if none comes.

        Without a window manager, a loaded machine sometimes makes Qt miss the
        first Expose of a new window, and it stays black (seen with plain
        cv2.imshow too). Any window manager re-maps new windows as it frames
        them; doing the same here gets the picture every time.
        """
        for attempt in range(2):
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                if self.grab().max() > 0:
                    return
                time.sleep(0.1)
            if attempt == 0:
                self.xdotool("windowunmap", "--sync", self.id, "windowmap", "--sync", self.id)
        raise AssertionError(f"the window stays black; output:\n{self.output}")

    def grab(self) -> np.ndarray:
        """The window's pixels as BGR."""
        from PIL import ImageGrab

        geometry = self.xdotool("getwindowgeometry", "--shell", self.id)
        box = dict(line.split("=") for line in geometry.split())
        x, y, w, h = (int(box[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
        image = ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=self.display)
        return cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)

    def _collect(self) -> None:
        for line in self.proc.stdout:
            self.output += line

    def xdotool(self, *args: str) -> str:
        return subprocess.run(["xdotool", *args], env=self.env, capture_output=True, text=True,
                              timeout=20, check=True).stdout

    def key(self, name: str) -> None:
        self.xdotool("key", name)

    def expect(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no {text!r} in the output:\n{self.output}")
            time.sleep(0.05)

    def wait_for(self, condition, what: str, timeout: float = 15.0) -> np.ndarray:
        """The first screen for which ``condition(screen)`` holds."""
        deadline = time.monotonic() + timeout
        while not condition(screen := self.grab()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no {what} on the screen; output:\n{self.output}")
            time.sleep(0.1)
        return screen

    def screenshot(self, save_as: Path) -> np.ndarray:
        time.sleep(0.3)  # a few more frames, so the window shows the latest state
        screen = self.grab()
        cv2.imwrite(str(save_as), screen)
        return screen

    def finish(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
