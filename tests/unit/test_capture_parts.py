"""Capture like a camera app: the pure parts of client.py's camera front end.

JPEG size and quality, the camera options and settings, the shot bookkeeping,
the answer card, the archive on disk, and what importing the package costs --
checked directly, without a camera, a display or mail. The window, the
terminal and the end-to-end runs are in tests/e2e/test_capture.py; the
sample answers (``tiger_and_dog``) come from tests/conftest.py.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from animalid.cli import settings as edge
from animalid.client import capture
from animalid.errors import ExitStatus
from animalid.testing.harness import PHOTOS, ROOT

PYTHON = sys.executable


# -- helpers -----------------------------------------------------------------

def photo(name: str) -> np.ndarray:
    image = cv2.imread(str(PHOTOS / f"{name}.png"), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


def answer_for(animal: dict, file: str) -> dict:
    return dict(animal, file=file)


def new_book(timeout_s: float = 60.0) -> capture.ShotBook:
    return capture.ShotBook(timeout_s)


def add_shot(book: capture.ShotBook, now: float, image: np.ndarray | None = None) -> capture.Shot:
    image = photo("tiger") if image is None else image
    return book.add(capture.encode_jpeg(image, 85, 640), now, dt.datetime(2025, 5, 1, 12, 0, 0))


def colour_pixels(image_bgr: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 0) -> int:
    target = np.array(rgb[::-1], np.int16)
    return int((np.abs(image_bgr.astype(np.int16) - target).max(axis=2) <= tolerance).sum())


# -- pure parts --------------------------------------------------------------

def test_importing_capture_loads_neither_opencv_nor_numpy():
    # client.py imports the module for its options on every start.
    code = ("import sys, animalid.client.capture; "
            "print(sorted(m for m in ('cv2', 'numpy', 'PIL', 'torch') if m in sys.modules))")
    out = subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_jpeg_is_limited_to_max_side_and_quality_sets_its_size():
    frame = cv2.resize(photo("tiger"), (1280, 720))
    small = capture.decode_jpeg(capture.encode_jpeg(frame, 85, max_side=640))
    assert small.shape[:2] == (360, 640)
    full = capture.decode_jpeg(capture.encode_jpeg(frame, 85, max_side=0))
    assert full.shape[:2] == (720, 1280)
    assert capture.decode_jpeg(capture.encode_jpeg(frame, 85, max_side=2000)).shape[:2] == (720, 1280)
    assert len(capture.encode_jpeg(frame, 30, 640)) < len(capture.encode_jpeg(frame, 95, 640))


def test_resolution_and_source_arguments():
    assert capture.parse_resolution("1280x720") == (1280, 720)
    for bad in ("1280", "0x720", "axb"):
        with pytest.raises(Exception, match="WIDTHxHEIGHT"):
            capture.parse_resolution(bad)
    assert capture.camera_source("1") == 1
    assert capture.camera_source("clip.avi", Path("/etc")) == "/etc/clip.avi"
    assert capture.camera_source("rtsp://cam/x", Path("/etc")) == "rtsp://cam/x"
    assert capture.describe_source("rtsp://me:secret@cam/x") == "rtsp://me:***@cam/x"


def test_command_line_overrides_config(tmp_path):
    import argparse

    from animalid.config import load_config

    (tmp_path / "c.ini").write_text("[camera]\nsource = clip.avi\nwidth = 800\nheight = 600\n"
                                    "jpeg_quality = 70\nmax_side = 1000\nsave_dir = shots\n"
                                    "[client]\ntimeout = 42\n")
    parser = argparse.ArgumentParser()
    capture.add_capture_arguments(parser)
    config = load_config(tmp_path / "c.ini")
    from_file = edge.capture_settings(config, parser.parse_args([]))
    assert (from_file.source, from_file.width, from_file.jpeg_quality) == (str(tmp_path / "clip.avi"), 800, 70)
    assert (from_file.save_dir, from_file.timeout_s, from_file.window) == (tmp_path / "shots", 42, True)
    given = edge.capture_settings(config, parser.parse_args(
        ["--camera", "2", "--resolution", "320x240", "--jpeg-quality", "50", "--max-side", "0",
         "--no-window", "--save-dir", "elsewhere"]))
    assert (given.source, given.width, given.height, given.jpeg_quality, given.max_side) == (2, 320, 240, 50, 0)
    assert (given.window, given.save_dir) == (False, Path("elsewhere"))
    with pytest.raises(SystemExit):
        parser.parse_args(["--jpeg-quality", "101"])


def test_answers_go_back_to_their_own_shot_in_any_order(tiger_and_dog):
    TIGER, DOG = tiger_and_dog
    book = new_book()
    first, second = add_shot(book, 0.0), add_shot(book, 1.0)
    assert (first.name, second.name) == ("shot-001-20250501-120000.jpg", "shot-002-20250501-120000.jpg")
    book.mark_sent(1, "<one@x>", 0.5)
    book.mark_sent(2, "<two@x>", 1.5)
    assert capture.waiting_summary(book.waiting(), 3.0) == "waiting for the answers\u2026 shot 1: 3 s, shot 2: 2 s"
    assert book.take_answers("<two@x>", [answer_for(DOG, second.name)], 2.0) is second
    assert book.featured is second and first.waiting
    assert book.take_answers("<stranger@x>", [answer_for(DOG, "x")], 2.5) is None
    assert book.take_answers("<one@x>", [answer_for(TIGER, first.name)], 4.0) is first
    assert book.take_answers("<one@x>", [answer_for(DOG, first.name)], 5.0) is None  # duplicate reply
    assert first.answer["common_name"] == "tiger" and second.answer["common_name"] == "dog"
    assert first.seconds_waited(99.0) == 4 and not book.waiting()
    assert book.exit_status() == ExitStatus.OK


def test_a_shot_without_answer_times_out_and_a_late_answer_still_counts(tiger_and_dog):
    TIGER, _ = tiger_and_dog
    book = new_book(timeout_s=10)
    shot = add_shot(book, 0.0)
    assert book.expire(100.0) == []  # not sent yet: no answer to wait for
    book.mark_sent(1, "<one@x>", 1.0)
    assert book.expire(10.9) == []
    assert book.expire(11.0) == [shot]
    assert shot.problem == "no answer within 10 s" and book.exit_status() == ExitStatus.TIMEOUT
    book.take_answers("<one@x>", [answer_for(TIGER, shot.name)], 12.0)
    assert shot.problem is None and book.exit_status() == ExitStatus.OK
    unsent = add_shot(book, 13.0)
    book.mark_not_sent(unsent.number, "SMTP says no", ExitStatus.AUTH)
    assert unsent.problem == "not sent: SMTP says no" and book.exit_status() == ExitStatus.AUTH


def test_card_shows_names_probability_and_warning_badges(tiger_and_dog):
    TIGER, DOG = tiger_and_dog
    book = new_book()
    shot = add_shot(book, 0.0)
    book.mark_sent(1, "<one@x>", 0.0)
    assert capture.card_text(shot, 3.4).subtitle == "waiting for the answer\u2026 3 s"
    book.take_answers("<one@x>", [answer_for(TIGER, shot.name)], 2.0)
    text = capture.card_text(shot, 5.0)
    assert (text.title, text.probability, text.subtitle) == ("Tiger", "87.2%", "Panthera tigris \u00b7 shot 1")
    assert text.badges == ("DANGEROUS", "ENDANGERED")
    assert text.details == ("Top matches:", "1. tiger (Panthera tigris) 87.2%", "2. jaguar (Panthera onca) 4.1%")
    painter = capture.TextPainter.default()
    card = capture.render_card(shot, 600, 5.0, painter, 16)
    for flag in text.badges:
        assert colour_pixels(card, capture.BADGE_COLOURS[flag]) > 300, flag

    dog_book = new_book()
    dog = add_shot(dog_book, 0.0, photo("dog"))
    dog_book.mark_sent(1, "<d@x>", 0.0)
    dog_book.take_answers("<d@x>", [answer_for(DOG, dog.name)], 1.0)
    assert capture.card_text(dog, 1.0).badges == ()
    dog_card = capture.render_card(dog, 600, 1.0, painter, 16)
    for colour in capture.BADGE_COLOURS.values():
        assert colour_pixels(dog_card, colour) < 20


def test_card_for_a_shot_the_server_could_not_read():
    book = new_book()
    shot = add_shot(book, 0.0)
    book.mark_sent(1, "<one@x>", 0.0)
    book.take_answers("<one@x>", [{"file": shot.name, "error": "not an image"}], 1.0)
    text = capture.card_text(shot, 1.0)
    assert (text.title, text.subtitle) == ("shot 1: not identified", "not an image")
    assert book.exit_status() == ExitStatus.ERROR


def test_accented_names_keep_their_accents():
    painter = capture.TextPainter.default()
    assert painter.truetype, "fonts-dejavu-core (or another TrueType font) should be installed"

    def ink_rows(text: str) -> np.ndarray:
        canvas = np.zeros((60, 80, 3), np.uint8)
        with painter.canvas(canvas) as pen:
            pen.text(10, 10, text, 30, capture.WHITE)
        return np.flatnonzero(canvas.max(axis=(1, 2)) > 128)

    # The tilde of "Ñ" is ink above the "N": a font without it would draw "?" or nothing.
    assert ink_rows("\u00d1")[0] < ink_rows("N")[0] - 3
    assert capture.TextPainter().width("Nand\u00fa", 20) == capture.TextPainter().width("Nandu", 20)


def test_archive_keeps_each_shot_with_its_answer(tmp_path, tiger_and_dog):
    TIGER, _ = tiger_and_dog
    archive = capture.ShotArchive.open(tmp_path / "shots")
    book = new_book()
    shot = add_shot(book, 0.0)
    archive.keep_shot(shot)
    book.mark_sent(1, "<one@x>", 0.0)
    book.take_answers("<one@x>", [answer_for(TIGER, shot.name)], 2.5)
    archive.keep_outcome(shot)
    folder = tmp_path / "shots"
    assert (folder / shot.name).read_bytes() == shot.jpeg
    record = json.loads((folder / "shot-001-20250501-120000.json").read_text())
    assert (record["shot"], record["message_id"], record["answer_after_s"]) == (1, "<one@x>", 2.5)
    assert record["answers"][0]["common_name"] == "tiger"
    report = (folder / "shot-001-20250501-120000.txt").read_text()
    assert report.startswith("shot 1 (message id <one@x>):\n") and "Tiger (Panthera tigris), 87.2%" in report
