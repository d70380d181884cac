"""Capture like a camera app: client.py's camera front end, used as a person would.

* The pure parts (JPEG size and quality, shot bookkeeping, the answer card)
  are checked directly in tests/unit/test_capture_parts.py; here the card
  they draw is what the window must show.
* The window runs under Xvfb and is driven with xdotool; what it shows is
  read back from a screenshot and compared with the card the pure drawing
  function makes for the same shot and answer (no OCR).
* The terminal mode runs in a pseudo-terminal: Enter, q, Ctrl-D, Ctrl-C.
* The camera is a small MJPG video of tests/photos/tiger.png.

UI-only tests use a stand-in Requester (mail is not what they test); the
end-to-end tests run client.py against the real local mail hub and a real
server.py with the real classifier, and find the shot in the server's mailbox.
"""

from __future__ import annotations

import configparser
import datetime as dt
import email
import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
from email import policy
from pathlib import Path

import numpy as np
import pytest

from animalid.client import capture
from animalid.contract import headline, warnings_of
from animalid.errors import ExitStatus
from animalid.testing.harness import make_config
from tests.e2e.camera_kit import (
    FRAME_SIZE,
    PYTHON,
    ROOT,
    STAND_IN_DRIVER,
    Window,
    colour_pixels,
    expected_card,
    find_card,
    headless_env,
    write_stand_in_config,
)

# Other tests use this account too; harmless: the Requester only takes replies to its own requests.
CLIENT_ACCOUNT = "client3"




@pytest.fixture()
def stand_in(tmp_path, video, tiger_and_dog):
    """argv for the camera front end with a stand-in Requester; the spool folder."""
    driver = tmp_path / "driver.py"
    driver.write_text(STAND_IN_DRIVER)
    config = write_stand_in_config(tmp_path, video)
    spool = tmp_path / "spool"

    def argv(*extra: str, delays: str = "0.3") -> list[str]:
        return [PYTHON, str(driver), "--config", str(config), "--spool", str(spool),
                "--delays", delays, "--animals", json.dumps(list(tiger_and_dog)), *extra]
    return argv, spool


class Terminal:
    """A program on a pseudo-terminal, as if typed at: keys in, text out."""

    ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     cwd=cwd, start_new_session=True)
        os.close(slave)
        self.text = ""

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, self.text)):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(min(remaining, 0.5)):
                raise AssertionError(f"no {pattern!r} in the terminal:\n{self.text}")
        return match

    def _read(self, timeout: float) -> bool:
        """Take in what the program wrote; False once it has closed the terminal."""
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the program is gone
            return False
        self.text += self.ANSI.sub("", data.decode("utf-8", "replace")).replace("\r\n", "\n")
        return bool(data)

    def finish(self, timeout: float = 15.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and self._read(0.1):
                pass
            os.close(self.master)


def test_terminal_enter_captures_and_answers_come_back_to_their_shots(stand_in, tmp_path):
    argv, spool = stand_in
    # Shot 1 is answered after shot 2: each answer must still name its own shot.
    term = Terminal(argv("--no-window", delays="2.5,0.2"), headless_env(), tmp_path)
    term.expect(r"ready\. Enter: capture")
    term.type("\n")
    term.expect(r"captured shot 1, sent \(message id <shot1@stand-in>\)")
    term.expect(r"shot 1: waiting for the answer\u2026 \d+ s")
    term.type("\n")
    term.expect(r"captured shot 2, sent")
    answer_2 = term.expect(r"answer for shot 2 \(message id <shot2@stand-in>\):\n(.*)\n")
    answer_1 = term.expect(r"answer for shot 1 \(message id <shot1@stand-in>\):\n(.*)\n")
    assert term.text.index("answer for shot 2") < term.text.index("answer for shot 1")
    assert answer_2[1].startswith("shot-002-") and "Dog (Canis lupus familiaris), 93%" in answer_2[1]
    assert answer_1[1].startswith("shot-001-") and "Tiger (Panthera tigris), 87.2%" in answer_1[1]
    assert "Warnings:     DANGEROUS, ENDANGERED" in term.text
    term.type("q\n")
    assert term.finish() == ExitStatus.OK
    assert "Traceback" not in term.text
    sent = capture.decode_jpeg((spool / "1.jpg").read_bytes())
    assert sent.shape[:2] == (480, 640)


def test_end_of_input_quits_once_the_answers_are_in(stand_in, tmp_path):
    argv, _ = stand_in
    term = Terminal(argv("--no-window", delays="1.0"), headless_env(), tmp_path)
    term.expect("ready")
    term.type("\n")
    term.expect("captured shot 1, sent")
    term.type("\x04")  # Ctrl-D
    term.expect(r"end of input: waiting for 1 answer\(s\)")
    assert term.finish() == ExitStatus.OK
    assert "Tiger (Panthera tigris)" in term.text


def test_without_a_display_the_terminal_is_used(stand_in, tmp_path):
    argv, _ = stand_in
    for env in (headless_env(), headless_env(DISPLAY=":1999")):  # none, and one that is not there
        term = Terminal(argv(), env, tmp_path)
        term.expect("no display: using the terminal instead of a window")
        term.expect("ready")
        term.type("q\n")
        assert term.finish() == ExitStatus.OK
        assert "Traceback" not in term.text and "Aborted" not in term.text


def test_ctrl_c_quits_cleanly(stand_in, tmp_path):
    argv, _ = stand_in
    term = Terminal(argv("--no-window"), headless_env(), tmp_path)
    term.expect("ready")
    os.killpg(term.proc.pid, signal.SIGINT)  # what Ctrl-C sends to the foreground job
    assert term.finish() == ExitStatus.INTERRUPTED
    assert "driver.py: interrupted" in term.text and "Traceback" not in term.text


@pytest.mark.parametrize("source, message", [
    ("7", "camera 7: cannot open (is it connected, or used by another program?)"),
    ("missing.avi", "camera missing.avi: no such file (give a device index, a video file or a URL)"),
])
def test_a_missing_camera_is_one_clear_line(stand_in, tmp_path, source, message):
    argv, _ = stand_in
    result = subprocess.run(argv("--no-window", "--camera", source), cwd=tmp_path, env=headless_env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == ExitStatus.USAGE
    assert result.stderr.strip().splitlines() == [f"driver.py: error: {message}"]


def expected_strip(spool: Path, answered: list[dict], selected: int) -> np.ndarray:
    """The strip the pure drawing function makes once every shot is answered."""
    shots = []
    for number, answer in enumerate(answered, 1):
        jpeg = (spool / f"{number}.jpg").read_bytes()
        shots.append(capture.Shot(number, answer["file"], jpeg, 0.0, dt.datetime.now(), message_id=f"<{number}>",
                                  sent_at=0.0, answers=[answer], answered_at=1.0))
    width, height = FRAME_SIZE
    unit = capture.layout_unit(height)
    return capture.render_strip(shots, shots[selected - 1], width, 1.0, capture.TextPainter.default(),
                                capture.StripLayout(unit))


@pytest.mark.gui
def test_window_keeps_every_shot_with_its_answer_and_the_live_view_clear(stand_in, xdisplay, tmp_path):
    argv, spool = stand_in
    window = Window(argv(delays="2.0,0.2"), xdisplay, tmp_path)
    window.expect("preview window open")
    window.key("space")
    window.expect("captured shot 1, sent")
    window.key("Return")
    window.expect("shot 2: Dog (Canis lupus familiaris), 93%")

    # Shot 2 is answered, shot 1 still waits: shot 2's card sits below the live picture,
    # and shot 1's tile says it waits.
    screen = window.screenshot(tmp_path / "shot2-answered.png")
    dog = json.loads((spool / "2.json").read_text())
    dog_card = expected_card((spool / "2.jpg").read_bytes(), dog["file"], 2, [dog])
    misfit, (_, y) = find_card(screen, dog_card)
    assert misfit < 1e-3 and y >= FRAME_SIZE[1]  # nothing covers the live picture
    strip = screen[-capture.StripLayout(capture.layout_unit(FRAME_SIZE[1])).height(capture.TextPainter.default()):]
    assert colour_pixels(strip, capture.GOLD, tolerance=40) > 30  # "1 waiting N s", and the frame around 2

    window.expect("shot 1: Tiger (Panthera tigris), 87.2%  [DANGEROUS, ENDANGERED]")
    screen = window.screenshot(tmp_path / "shot1-answered.png")
    tiger = json.loads((spool / "1.json").read_text())
    tiger_card = expected_card((spool / "1.jpg").read_bytes(), tiger["file"], 1, [tiger])
    assert find_card(screen, tiger_card)[0] < 1e-3
    assert colour_pixels(screen, capture.BADGE_COLOURS["DANGEROUS"]) > 300
    # Both shots keep their tiles with their own answers; the newest answer (shot 1) is framed.
    assert find_card(screen, expected_strip(spool, [tiger, dog], selected=1))[0] < 1e-3

    # Step to shot 2 and back: each shows its own card, the other keeps its tile.
    window.key("Right")
    window.wait_for(lambda screen: find_card(screen, dog_card)[0] < 1e-3, "shot 2's card after Right")
    screen = window.screenshot(tmp_path / "stepped-to-shot2.png")
    assert find_card(screen, expected_strip(spool, [tiger, dog], selected=2))[0] < 1e-3
    assert colour_pixels(screen, capture.BADGE_COLOURS["DANGEROUS"]) < 20
    window.key("Left")
    window.wait_for(lambda screen: find_card(screen, tiger_card)[0] < 1e-3, "shot 1's card after Left")

    window.key("q")
    assert window.finish() == ExitStatus.OK
    assert sorted(p.name for p in spool.glob("*.jpg")) == ["1.jpg", "2.jpg"]
    if os.environ.get("ANIMALID_KEEP_SCREENSHOTS"):  # to look at them: the test names the folder
        keep = Path(os.environ["ANIMALID_KEEP_SCREENSHOTS"])
        keep.mkdir(parents=True, exist_ok=True)
        for picture in tmp_path.glob("*.png"):
            shutil.copy(picture, keep / picture.name)


@pytest.mark.gui
def test_closing_the_window_quits(stand_in, xdisplay, tmp_path):
    argv, _ = stand_in
    window = Window(argv(), xdisplay, tmp_path)
    window.expect("preview window open")
    close_window(window.id, window.env)
    assert window.finish() == ExitStatus.OK


def close_window(window_id: str, env: dict[str, str]) -> None:
    """What a window manager's close button does: send WM_DELETE_WINDOW."""
    code = r'''
import ctypes, ctypes.util, sys
x = ctypes.CDLL(ctypes.util.find_library("X11"))
x.XOpenDisplay.restype = ctypes.c_void_p
x.XOpenDisplay.argtypes = [ctypes.c_char_p]
x.XInternAtom.restype = ctypes.c_ulong
x.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
class ClientMessage(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong),
                ("message_type", ctypes.c_ulong), ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]
class Event(ctypes.Union):
    _fields_ = [("xclient", ClientMessage), ("pad", ctypes.c_long * 24)]
x.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.POINTER(Event)]
display = x.XOpenDisplay(None)
window = int(sys.argv[1])
event = Event()
event.xclient.type = 33  # ClientMessage
event.xclient.window = window
event.xclient.message_type = x.XInternAtom(display, b"WM_PROTOCOLS", 0)
event.xclient.format = 32
event.xclient.data[0] = x.XInternAtom(display, b"WM_DELETE_WINDOW", 0)
assert x.XSendEvent(display, window, 0, 0, ctypes.byref(event))
x.XFlush.argtypes = [ctypes.c_void_p]
x.XFlush(display)
'''
    subprocess.run([PYTHON, "-c", code, window_id], env=env, check=True, timeout=20)


# -- end to end: real hub, real server, real classifier ---------------------------

def write_hub_config(hub, folder: Path, video: Path) -> Path:
    """The round-trip tests' config for this hub, with the video as the camera."""
    path = make_config(hub, folder, client=CLIENT_ACCOUNT, receive="imap", server_receive="imap",
                       answered_folder="Answered")  # the server keeps each request to look at
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read(path, encoding="utf-8")
    parser["client"]["timeout"] = "60"
    parser["camera"].update(source=str(video), warmup_frames="0", max_side="640",
                            save_dir=str(folder / "shots"))
    with open(path, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return path


@pytest.fixture(scope="module")
def animal_server(mailhub, tmp_path_factory, video):
    """server.py on the hub, with the real classifier; yields its config file."""
    folder = tmp_path_factory.mktemp("e2e")
    config = write_hub_config(mailhub, folder, video)
    log_path = folder / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen([PYTHON, str(ROOT / "server.py"), "--config", str(config)],
                                  cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    # The client may start at once: a request waits in the mailbox until the server looks.
    yield config, log_path, mailhub
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()


def request_in_server_mailbox(hub, message_id: str, timeout: float = 10.0) -> email.message.Message:
    """The request as the server's mailbox holds it (kept in Answered by the config)."""
    mail = hub.state / "mail" / hub.server
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in mail.rglob("*"):
            if path.is_file() and ("/cur/" in str(path) or "/new/" in str(path)):
                message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
                if message["Message-ID"] == message_id:
                    return message
        time.sleep(0.2)
    raise AssertionError(f"{message_id} is not in the server's mailbox")


def saved_shot(folder: Path, timeout: float = 60.0) -> tuple[dict, bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = sorted(folder.glob("shot-001-*.json"))
        if records:
            record = json.loads(records[0].read_text())
            return record, (folder / record["file"]).read_bytes()
        time.sleep(0.1)
    raise AssertionError(f"no answer kept in {folder}")


def test_end_to_end_terminal_shot_is_identified_by_the_real_server(animal_server, tmp_path):
    config, server_log, hub = animal_server
    shots = tmp_path / "shots"
    term = Terminal([PYTHON, str(ROOT / "client.py"), "--config", str(config), "--no-window",
                     "--save-dir", str(shots)], headless_env(), tmp_path)
    term.expect("ready")
    term.type("\n")
    message_id = term.expect(r"captured shot 1, sent \(message id (<[^>]+>)\)", 30)[1]
    answer = term.expect(r"answer for shot 1 \(message id [^)]+\):\n(shot-001-\S+\.jpg): (.*)\n", 60)
    term.type("q\n")
    assert term.finish() == ExitStatus.OK

    # The very JPEG the camera took went through the hub to the server, which answered it.
    request = request_in_server_mailbox(hub, message_id)
    attachments = [part for part in request.walk() if part.get_content_type() == "image/jpeg"]
    assert [part.get_filename() for part in attachments] == [answer[1]]
    assert attachments[0].get_content() == (shots / answer[1]).read_bytes()
    assert message_id in server_log.read_text()
    record = json.loads((shots / answer[1].replace(".jpg", ".json")).read_text())
    assert record["message_id"] == message_id and record["answers"][0]["file"] == answer[1]
    assert answer[2] == headline(record["answers"][0])
    assert record["answers"][0]["taxonomy"]["family"] == "Felidae"  # the real classifier on the tiger


@pytest.mark.gui
def test_end_to_end_window_shows_the_real_answer_on_the_shot(animal_server, xdisplay, tmp_path):
    config, _, hub = animal_server
    shots = tmp_path / "shots"
    window = Window([PYTHON, str(ROOT / "client.py"), "--config", str(config),
                     "--save-dir", str(shots)], xdisplay, tmp_path)
    window.expect("preview window open")
    window.key("space")
    record, jpeg = saved_shot(shots)
    answer = record["answers"][0]
    assert answer["taxonomy"]["family"] == "Felidae"  # the real classifier on the tiger
    window.expect(f"shot 1: {headline(answer)}")
    screen = window.screenshot(tmp_path / "window-e2e.png")
    misfit, _ = find_card(screen, expected_card(jpeg, record["file"], 1, record["answers"]))
    assert misfit < 1e-3
    for flag in warnings_of(answer):
        assert colour_pixels(screen, capture.BADGE_COLOURS[flag]) > 300, flag
    request_in_server_mailbox(hub, record["message_id"])
    window.key("Escape")
    assert window.finish() == ExitStatus.OK
