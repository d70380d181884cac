"""The reply's text reads well in a proportional font: labelled lines, no columns; one line on answers.json."""

from __future__ import annotations

import email
import email.policy

from animalid.mail.messages import Limits, build_reply, build_request, parse_incoming
from animalid.mail.replytext import ANSWERS_JSON_LINE, reply_text

TIGER = {"file": "tiger.png", "scientific_name": "Panthera tigris", "common_name": "tiger",
         "description": "The largest cat.", "habitat": "Forests of Asia.", "endangered": "Endangered",
         "dangerous": True, "poisonous": False, "venomous": False, "probability": 97.0, "rank": "species",
         "taxonomy": {"phylum": "Chordata", "class": "Mammalia", "family": "Felidae"},
         "alternatives": [{"common_name": "tiger cat", "scientific_name": "Felis catus", "probability": 1.2}]}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_each_line_is_a_label_and_a_value_without_padding():
    text = reply_text([TIGER])
    # The same lines as client.py prints (render_text), without the padding.
    assert text.splitlines() == [
        "tiger.png: Tiger (Panthera tigris), 97%",
        "Taxonomy: Chordata > Mammalia > Felidae",
        "Conservation: Endangered",
        "Warnings: DANGEROUS, ENDANGERED",
        "Habitat: Forests of Asia.",
        "About: The largest cat.",
        "Alternatives: tiger cat (Felis catus) 1.2%",
        "",
        ANSWERS_JSON_LINE,
    ]
    assert "  " not in text  # no column alignment anywhere


def test_an_error_about_the_message_reads_as_your_message():
    text = reply_text([{"file": "(message)", "error": "no image found: cat.pdf is a PDF document; "
                                                       "attach the photo itself (JPEG, PNG, HEIC...)"}])
    assert text.splitlines()[0] == ("Your message: error: no image found: cat.pdf is a PDF document; "
                                    "attach the photo itself (JPEG, PNG, HEIC...)")


def test_the_json_part_has_no_mime_version_of_its_own():
    sender, server = "client1@hub.test", "server@hub.test"
    request = parse_incoming(build_request(sender, server, [("tiger.png", PNG)]).as_bytes(), [server],
                             Limits(max_message_bytes=10**7, max_parts=50, max_images=10))
    raw = build_reply(request, server, [TIGER]).as_bytes()
    assert raw.count(b"MIME-Version:") == 1
    reply = email.message_from_bytes(raw, policy=email.policy.default)
    [json_part] = [part for part in reply.iter_attachments() if part.get_content_type() == "application/json"]
    assert "MIME-Version" not in json_part and json_part.get_filename() == "answers.json"
    assert reply.get_body(("plain",)).get_content().rstrip().endswith(ANSWERS_JSON_LINE)
