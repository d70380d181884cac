"""Trail cameras without mail: the [trail-camera NAME] sections, the rules, visits and schedules."""

from __future__ import annotations

import time

import pytest

from animalid.cli.settings import trail_settings
from animalid.config import load_config
from animalid.errors import ConfigError
from animalid.history import RequestRecord
from animalid.mail.messages import ImagePart, Incoming
from animalid.server.ledger import SqliteLedger
from animalid.server.trail.keeper import TrailKeeper
from animalid.server.trail.rules import digest_due, is_quiet, last_scheduled, match_alert, match_camera
from animalid.server.trail.settings import (
    QuietHours,
    TrailSettings,
    parse_digest,
    parse_duration,
    parse_probability,
    parse_quiet_hours,
)
from animalid.server.trail.view import observations_view
from animalid.testing.cameras import animal, landscape
from animalid.testing.harness import ROOT
from animalid.web.observations import render_observations

KB = f"[classifier]\nknowledge_base = {ROOT / 'animal_image.json'}\n"
CAMERA = """
[trail-camera North ridge]
from = ridge@cams.example
notify = me@example.org
alert_on = Ursidae, Felidae, Canis lupus
min_probability = 0.6, Ursidae=0.4
cooldown = 30m
quiet_hours = 22:00-06:00
digest = daily 07:00

[trail-camera vendor]
from = *@vendor.example
subject_pattern = ^SN(?P<serial>\\d+)
name = Gate {name}
notify = me@example.org
alert_on = Bovidae
"""


def settings_of(tmp_path, text: str) -> TrailSettings:
    path = tmp_path / "settings.ini"
    path.write_text(KB + text)
    return trail_settings(load_config(path))


def error_of(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_of(tmp_path, text)
    return str(caught.value)


# -- config -------------------------------------------------------------------------

def test_camera_sections_read_into_typed_settings(tmp_path):
    ridge, vendor = settings_of(tmp_path, CAMERA).cameras
    assert ridge.section == "North ridge" and ridge.name == "North ridge"
    assert ridge.alert_on == ("Ursidae", "Felidae", "Canis lupus")
    assert ridge.threshold("Ursidae") == 0.4 and ridge.threshold("Felidae") == 0.6
    assert ridge.cooldown_s == 1800 and ridge.digest_minute == 7 * 60 and ridge.silent_after_s == 86400
    assert ridge.quiet_hours == QuietHours(22 * 60, 6 * 60)
    assert vendor.senders == ("*@vendor.example",) and vendor.digest_minute is None


def test_a_config_without_cameras_has_none(tmp_path):
    assert not settings_of(tmp_path, "").active


@pytest.mark.parametrize("line, expected", [
    ("cooldwn = 5m", r"\[trail-camera North ridge\] cooldwn: unknown setting \(did you mean cooldown\?\)"),
    ("alert_on = Ursidea", r"alert_on: 'Ursidea' is no taxon of the knowledge base \(did you mean Ursidae\?\)"),
    ("cooldown = soon", r"cooldown: 'soon' is not a duration"),
    ("quiet_hours = 22:00", r"quiet_hours: '22:00' is not a range of times"),
    ("digest = weekly 07:00", r"digest: 'weekly 07:00' is not a schedule"),
    ("min_probability = 0.6, Canidae=0.3", r"min_probability: 'canidae' is not in alert_on"),
    ("min_probability = 1.7", r"min_probability: '1.7' is not between 0 and 1"),
    ("notify = nobody", r"notify: 'nobody' is not a mail address"),
    ("from = ridge", r"from: 'ridge' is neither an address nor a \*@domain pattern"),
    ("subject_pattern = (", r"subject_pattern: not a regular expression"),
])
def test_each_bad_key_is_named_with_file_section_and_key(tmp_path, line, expected):
    text = "[trail-camera North ridge]\nfrom = a@b.example\nnotify = me@example.org\nalert_on = Felidae\n"
    key = line.partition(" =")[0]
    text = "\n".join(row for row in text.splitlines() if not row.startswith(key + " ")) + "\n" + line + "\n"
    message = error_of(tmp_path, text)
    assert "settings.ini: [trail-camera North ridge]" in message
    assert __import__("re").search(expected, message), message


def test_a_misspelt_section_prefix_is_named(tmp_path):
    message = error_of(tmp_path, "[trail-camra North]\nfrom = a@b.example\n")
    assert "unknown section [trail-camra North]" in message and "trail-camera NAME" in message


def test_parsers():
    assert parse_duration("90") == 90 and parse_duration("2h") == 7200 and parse_duration("1d") == 86400
    assert parse_probability("70%, Ursidae=40%") == (0.7, {"ursidae": 0.4})
    assert parse_quiet_hours("") is None and parse_digest("off") is None
    with pytest.raises(ValueError):
        parse_quiet_hours("06:00-06:00")


# -- rules ------------------------------------------------------------------------

def answer(taxonomy: dict, rank: str, probability: float, lead: dict | None = None) -> dict:
    claim = taxonomy[rank]
    return {"file": "x.jpg", "scientific_name": claim, "common_name": claim, "rank": rank,
            "probability": probability, "taxonomy": taxonomy,
            "lead": lead or {"common_name": claim, "scientific_name": claim, "rank": rank,
                             "probability": probability}}


BEAR = {"class": "Mammalia", "order": "Carnivora", "family": "Ursidae", "genus": None, "species": None}
CAT = {"class": "Mammalia", "order": "Carnivora", "family": "Felidae", "genus": None, "species": None}


def test_alerts_match_the_claim_or_the_lead_at_any_rank_with_their_thresholds(tmp_path):
    ridge = settings_of(tmp_path, CAMERA).cameras[0]
    assert match_alert(ridge, answer(BEAR, "family", 45.0)).headline("North ridge") == "Ursidae at North ridge, 45%"
    assert match_alert(ridge, answer(CAT, "family", 55.0)) is None  # Felidae needs 60%
    carnivore = answer({**CAT, "family": None}, "order", 70.0,
                       lead={"common_name": "tiger", "scientific_name": "Felidae", "rank": "family",
                             "probability": 65.0})
    found = match_alert(ridge, carnivore)
    assert found is not None and found.taxon == "Felidae" and found.probability == 65.0
    assert match_alert(ridge, {"file": "x", "scientific_name": "", "rank": "none", "probability": 90}) is None
    assert match_alert(ridge, {"file": "x", "error": "unreadable"}) is None


def test_cameras_are_matched_by_sender_and_subject(tmp_path):
    cameras = settings_of(tmp_path, CAMERA).cameras
    assert match_camera(cameras, "Ridge@Cams.example", "anything").camera == "North ridge"
    gate = match_camera(cameras, "noreply@vendor.example", "SN0042 motion")
    assert gate.camera == "vendor/0042" and gate.name == "Gate 0042"
    assert match_camera(cameras, "noreply@vendor.example", "daily report") is None
    assert match_camera(cameras, "someone@else.example", "SN0042") is None


def test_quiet_hours_and_digest_schedule():
    hours = QuietHours(22 * 60, 6 * 60)
    assert hours.covers(23 * 60) and hours.covers(5 * 60) and not hours.covers(12 * 60)
    morning = time.mktime((2026, 6, 1, 7, 30, 0, 0, 0, -1))
    assert last_scheduled(7 * 60, morning) == morning - 30 * 60
    assert last_scheduled(8 * 60, morning) == time.mktime((2026, 5, 31, 8, 0, 0, 0, 0, -1))
    assert digest_due(7 * 60, morning - 3600, morning)
    assert not digest_due(7 * 60, morning - 60, morning)


# -- visits ----------------------------------------------------------------------

def frame_incoming(message_id: str, data: bytes) -> Incoming:
    return Incoming(message_id=message_id, sender="ridge@cams.example", subject="IMG", references=[],
                    kind="request", reason="", images=[ImagePart("f.jpg", "image/jpeg", data)])


def test_matches_within_the_cooldown_join_one_visit_and_quiet_hours_keep_it_unalerted(tmp_path):
    ridge = settings_of(tmp_path, CAMERA).cameras[0]
    sent: list = []
    with SqliteLedger(tmp_path / "ledger.sqlite") as ledger:
        noon = time.mktime((2026, 6, 1, 12, 0, 0, 0, 0, -1))
        keeper = TrailKeeper(TrailSettings((ridge,)), "server@example.org", "Animal ID", sent.append,
                             clock=lambda: noon)
        keeper.ledger = ledger
        camera = match_camera((ridge,), "ridge@cams.example", "")
        bear = answer(BEAR, "family", 80.0)

        def observe(number: int, taken: float, result: dict) -> None:
            image = animal("dog.png", taken) if result is bear else landscape(number, taken)
            record = RequestRecord(key=f"k{number}", arrived=taken, sender="ridge@cams.example")
            keeper.observe(camera, frame_incoming(f"<m{number}@x>", image), [result], taken, record, f"k{number}")

        empty = {"file": "f.jpg", "scientific_name": "", "rank": "none", "probability": 90.0}
        for number in range(5):
            observe(number, noon + 60 * number, bear)
        observe(5, noon + 400, empty)
        observe(6, noon + 3 * 3600, bear)  # after the cooldown: a new visit
        assert [message["Subject"] for message in sent] == ["Ursidae at North ridge, 80%"] * 2
        visits = ledger.visits_since(0)
        assert [visit.frames for visit in visits] == [5, 1]
        assert len(ledger.observations()) == 7
        keeper.clock = lambda: noon + 12 * 3600  # midnight: quiet
        assert is_quiet(ridge, noon + 12 * 3600)
        observe(7, noon + 12 * 3600, bear)
        assert len(sent) == 2 and not ledger.visits_since(0)[-1].alerted
        # The operations page's view: the camera, its last photo, its last visit per taxon.
        view = observations_view(ledger, TrailSettings((ridge,)), noon + 13 * 3600)
        [seen] = view["cameras"]
        assert seen["camera"] == "North ridge" and not seen["silent"]
        assert seen["last_photo"]["taxon"] == "Ursidae"
        assert [v["frames"] for v in seen["visits"]] == [1] and seen["visits"][0]["thumbnail"].startswith("data:")
        page = render_observations(view)
        assert "North ridge" in page and "quiet hours" in page and "<script" not in page
        later = observations_view(ledger, TrailSettings((ridge,)), noon + 3 * 86400)
        assert later["cameras"][0]["silent"]
