"""One answer on every surface (issue 19): the camera window's card, the terminal line, the
mail text and the JSON ``lead`` open with the same animal or group, for answers of the real
classifier on the committed photos.

The window runs under Xvfb with the stand-in Requester of tests/e2e/test_capture.py (mail is
not what this tests); the answers it is handed are the real classifier's.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from animalid.client import capture
from animalid.client.capture.card import answer_card_text
from animalid.contract import headline, lead_parts, render_answers, render_text
from animalid.testing.harness import PHOTOS
from tests.e2e.camera_kit import (
    PYTHON,
    STAND_IN_DRIVER,
    Window,
    expected_card,
    find_card,
    write_stand_in_config,
)

pytestmark = pytest.mark.e2e
PHOTO_NAMES = ("tiger.png", "dog.png", "bison.png")


@pytest.fixture(scope="module")
def real_answers(classifier) -> dict:
    return {name: answer for name, answer in zip(
        PHOTO_NAMES, classifier.classify([(name, (PHOTOS / name).read_bytes()) for name in PHOTO_NAMES]))}


def test_the_demo_tiger_still_opens_with_tiger(real_answers):
    tiger = real_answers["tiger.png"]
    assert headline(tiger).startswith("Tiger (Panthera tigris), ")
    assert answer_card_text(tiger, 1).title == "Tiger"
    assert tiger["lead"]["common_name"] == "Tiger" and tiger["lead"]["scientific_name"] == "Panthera tigris"


@pytest.mark.parametrize("name", PHOTO_NAMES)
def test_card_terminal_mail_and_json_lead_with_the_same_thing(real_answers, name):
    answer = real_answers[name]
    title, label, probability = lead_parts(answer)
    card = answer_card_text(answer, 1)
    line = headline(answer)
    assert card.title == title == answer["lead"]["common_name"][:1].upper() + answer["lead"]["common_name"][1:]
    assert card.probability == f"{probability:g}%" == f"{answer['lead']['probability']:g}%"
    assert card.subtitle.startswith(label)
    assert line.startswith((f"{title} (", f"{title}: "))
    assert render_text(answer).splitlines()[0] == f"{name}: {line}"  # terminal and mail text
    assert f"{name}: {line}" in render_answers([answer])


@pytest.mark.gui
def test_the_window_shows_the_text_headline(real_answers, xdisplay, video, tmp_path):
    """Drive the camera window: its card's big title is the text headline's opening."""
    tiger = real_answers["tiger.png"]
    driver = tmp_path / "driver.py"
    driver.write_text(STAND_IN_DRIVER)
    config = write_stand_in_config(tmp_path, video)
    spool = tmp_path / "spool"
    window = Window([PYTHON, str(driver), "--config", str(config), "--spool", str(spool),
                     "--delays", "0.3", "--animals", json.dumps([tiger, tiger])], xdisplay, tmp_path)
    window.expect("preview window open")
    window.key("space")
    window.expect(f"shot 1: {headline(tiger)}")  # the window's terminal line is the text headline
    screen = window.screenshot(tmp_path / "tiger.png")
    given = json.loads((spool / "1.json").read_text())
    jpeg = (spool / "1.jpg").read_bytes()
    shot = capture.Shot(1, given["file"], jpeg, 0.0, dt.datetime.now(), answers=[given])
    assert capture.card_text(shot, 1.0).title == lead_parts(given)[0] == "Tiger"
    misfit, _ = find_card(screen, expected_card(jpeg, given["file"], 1, [given]))
    assert misfit < 1e-3
    window.key("q")
    window.finish()
