"""The window keeps every shot's answer: a strip of tiles, a selection to step through, a clear live view."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import cv2
import numpy as np

from animalid.client import capture
from animalid.client.capture.strip import ShotSelection, tile_label, visible_shots
from animalid.client.capture.window import PreviewView

PHOTOS = Path(__file__).resolve().parents[1] / "photos"


def shot_book(count: int) -> capture.ShotBook:
    book = capture.ShotBook(60.0)
    tiger = cv2.imread(str(PHOTOS / "tiger.png"))
    for number in range(1, count + 1):
        shot = book.add(capture.encode_jpeg(tiger, 85, 320), float(number), dt.datetime(2025, 5, 1))
        book.mark_sent(shot.number, f"<{number}@x>", float(number))
    return book


def test_each_tile_keeps_its_own_answer(tiger_and_dog):
    tiger, dog = tiger_and_dog
    book = shot_book(3)
    book.take_answers("<1@x>", [dict(tiger, file=book.get(1).name)], 2.0)
    book.take_answers("<2@x>", [{"file": book.get(2).name, "error": "too small to judge"}], 3.0)
    assert [tile_label(shot, 7.0)[0] for shot in book.shots] == [
        "1 Tiger 87.2%", "2 not identified", "3 waiting 4 s"]
    book.take_answers("<3@x>", [dict(dog, file=book.get(3).name)], 8.0)
    assert tile_label(book.get(1), 9.0)[0] == "1 Tiger 87.2%"  # a later answer leaves it alone


def test_the_selection_follows_events_until_the_user_steps_back():
    book = shot_book(3)
    selection = ShotSelection()
    assert selection.current(book).number == 3  # the newest event
    selection.step(book, -1)
    selection.step(book, -1)
    selection.step(book, -1)  # stops at the first shot
    assert selection.current(book).number == 1 and not selection.following
    book.take_answers("<3@x>", [{"file": book.get(3).name, "common_name": "dog"}], 5.0)
    assert selection.current(book).number == 1  # an answer elsewhere does not take the card away
    selection.step(book, 1)
    selection.step(book, 1)
    selection.step(book, 1)  # past the newest: follow again
    assert selection.following and selection.current(book).number == 3


def test_the_strip_scrolls_to_hold_the_selected_shot():
    book = shot_book(9)
    assert [s.number for s in visible_shots(book.shots, book.get(9), 4)] == [6, 7, 8, 9]
    assert [s.number for s in visible_shots(book.shots, book.get(2), 4)] == [1, 2]
    assert [s.number for s in visible_shots(book.shots, book.get(5), 4)] == [2, 3, 4, 5]


def test_the_live_picture_is_left_untouched(tiger_and_dog):
    tiger, _ = tiger_and_dog
    book = shot_book(2)
    book.take_answers("<1@x>", [dict(tiger, file=book.get(1).name)], 2.0)
    frame = np.full((480, 640, 3), 77, np.uint8)
    view = PreviewView(capture.TextPainter.default())
    shown = view.render(frame, book, 3.0)
    assert shown.shape[1] == 640 and shown.shape[0] > 480
    assert (shown[:480] == 77).all()  # no card, hint or status line over the picture
    assert view.render(frame, book, 3.5).shape == shown.shape  # the window keeps its size
    badge = capture.BADGE_COLOURS["DANGEROUS"][::-1]
    assert badge in {tuple(p) for p in shown[480:].reshape(-1, 3)}  # shot 1's card, just answered
    view.step(book, 1)  # to shot 2, still waiting: its card, shot 1 keeps its tile
    stepped = view.render(frame, book, 3.6)
    assert stepped.shape == shown.shape and badge not in {tuple(p) for p in stepped[480:].reshape(-1, 3)}
