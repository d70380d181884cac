"""Mail as phones and office programs really send it, through real third-party mail clients.

Debian's swaks and neomutt send, fetchmail reads the replies, each against the real hub
(the mailhub fixture) with certificate verification on: they trust only the hub's CA
and reach it as "localhost", the host config.ini uses. The server is
animalid.server.service.Server in a thread with the session's real classifier; the
client is client.py as a process. Nothing is mocked. The HEIC photo is made when the
test runs, from a committed photo, with libheif's heif-enc; the AVIF one with Pillow.

Covered (issue 9): an iPhone HEIC photo, an AVIF photo, a JPEG sent as nameless
application/octet-stream, an Outlook mail with a signature logo and icon beside a photo
(the photo's answer first, the logo not answered as a photo; a mail with the logo alone
still answered), an image the server cannot use (a one-line answer saying what to do),
the server's honest log lines, a late answer shown and removed by a later client.py run
and by client.py --collect (other mail untouched), one edit of [hub] moving every
section, an empty password variable named, and both tools refusing a certificate they
cannot verify.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.mail.messages import REPLY_ID_TAG, parse_bytes, parse_reply
from animalid.server.ledger import ANSWERED
from animalid.testing.harness import (
    FAMILY,
    PHOTOS,
    ROOT,
    fetchmail_fetch,
    ledger_state,
    mailbox_messages,
    neomutt_send,
    replies_by_request,
    require_tool,
    run_cli,
    running_server,
    submit,
    swaks_send,
    wait_for,
)

CLIENT = "client1@hub.test"
SYSTEM_CAS = Path("/etc/ssl/certs/ca-certificates.crt")  # real CAs, none of them the hub's


# -- helpers ---------------------------------------------------------------------------------

def jpeg_of(name: str, path: Path, scale: float = 1.0) -> Path:
    """A committed photo as a camera would store it: RGB JPEG, optionally enlarged."""
    image = Image.open(PHOTOS / name).convert("RGB")
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    image.save(path, "JPEG", quality=90)
    return path


def heic_of(name: str, folder: Path) -> Path:
    """An iPhone-style HEIC made with heif-enc (libheif-examples) from a committed photo."""
    source = jpeg_of(name, folder / "source.jpg")
    target = folder / "IMG_1234.HEIC"
    result = subprocess.run([require_tool("heif-enc"), "-q", "90", "-o", str(target), str(source)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and target.exists(), result.stderr
    assert target.read_bytes()[4:12] == b"ftypheic"
    return target


def logo_png(size: tuple[int, int]) -> bytes:
    """A company logo as Outlook stores a signature image: a mark and a name on white."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    side = min(size)
    draw.ellipse((2, 2, side - 2, side - 2), fill=(0, 90, 180))
    draw.text((side + 6, side // 3), "ACME Corporation", fill=(40, 40, 40))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def fetch_replies(mailhub, workdir: Path, count: int, timeout: float = 90) -> list:
    """The next ``count`` replies in client1's INBOX, read (and removed) by fetchmail."""
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        result, messages = fetchmail_fetch(mailhub, CLIENT, workdir)
        assert result.returncode in (0, 1), f"fetchmail exited {result.returncode}: {result.stderr}"
        got += messages
        if len(got) < count:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} replies came"
            time.sleep(0.3)
    return got


def sent_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (result.stdout, result.stderr)


def log_lines(caplog, sender: str = CLIENT) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == "animalid.server.service" and f" from {sender}: " in record.getMessage()]


@pytest.fixture
def server_config(configs):
    return configs(receive="pop3", server_receive="imap")


@pytest.fixture
def server_logs(caplog):
    caplog.set_level(logging.INFO, logger="animalid")
    return caplog


# -- phones --------------------------------------------------------------------------------------

def test_iphone_heic_photo_sent_with_swaks_is_identified(mailhub, server_config, classifier,
                                                         server_logs, tmp_path):
    heic = heic_of("tiger.png", tmp_path)
    with running_server(server_config, classifier):
        sent_ok(swaks_send(mailhub, CLIENT, [(heic, "image/heic", "IMG_1234.HEIC")]))
        (raw,) = fetch_replies(mailhub, tmp_path, 1)
    reply = parse_reply(raw)
    (answer,) = reply.answers
    assert answer["file"] == "IMG_1234.HEIC" and "error" not in answer, answer
    assert answer["taxonomy"]["family"] == FAMILY["tiger.png"]
    assert parse_bytes(raw)["From"] == "Animal ID <server@hub.test>"
    assert any(re.search(r": answered \(1 image, [\d.]+ s\)$", line) for line in log_lines(server_logs))


def test_avif_photo_sent_with_neomutt_is_identified(mailhub, server_config, classifier, tmp_path):
    avif = tmp_path / "dog.avif"
    Image.open(PHOTOS / "dog.png").convert("RGB").save(avif, "AVIF", quality=90)
    with running_server(server_config, classifier):
        sent_ok(neomutt_send(mailhub, CLIENT, [avif], tmp_path / "neomutt", subject="my dog"))
        (raw,) = fetch_replies(mailhub, tmp_path, 1)
    (answer,) = parse_reply(raw).answers
    assert answer["file"] == "dog.avif" and "error" not in answer, answer
    assert answer["taxonomy"]["family"] == FAMILY["dog.png"]
    assert parse_bytes(raw)["Subject"] == "Re: my dog"


def test_jpeg_as_nameless_octet_stream_is_recognised_by_its_bytes(mailhub, server_config, classifier,
                                                                  tmp_path):
    jpeg = jpeg_of("bison.png", tmp_path / "bison.jpg")
    with running_server(server_config, classifier):
        # swaks's default type is application/octet-stream; --attach-name alone gives no name.
        sent_ok(swaks_send(mailhub, CLIENT, [(jpeg, None, "")]))
        (raw,) = fetch_replies(mailhub, tmp_path, 1)
    (answer,) = parse_reply(raw).answers
    assert answer["file"] == "image-1.jpg" and "error" not in answer, answer
    assert answer["taxonomy"]["family"] == FAMILY["bison.png"]


def outlook_mail(photo: Path | None, subject: str) -> bytes:
    """An Outlook / corporate mail: an HTML body whose signature shows a logo and an icon
    (inline, multipart/related, cid: links, named image001.png and image002.png as
    Outlook names them), then the photo as an attachment."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = f"Ann Smith <{CLIENT}>", "server@hub.test", subject
    message["Message-ID"] = f"<{time.time_ns()}.outlook@hub.test>"
    message.set_content("Hello, what animal is this?\n\n--\nAnn Smith | ACME Corporation\n")
    message.add_alternative('<p>Hello, what animal is this?</p><p>--<br><img src="cid:image001.png@01DA9B">'
                            '<img src="cid:image002.png@01DA9B"></p>', subtype="html")
    html = message.get_payload()[1]
    for name, size in (("image001.png", (240, 80)), ("image002.png", (32, 32))):
        html.add_related(logo_png(size), maintype="image", subtype="png", cid=f"<{name}@01DA9B>",
                         filename=name, disposition="inline")
    if photo is not None:
        message.add_attachment(photo.read_bytes(), maintype="image", subtype="jpeg", filename=photo.name)
    return bytes(message)


def test_signature_logo_beside_a_photo_is_not_answered_as_a_photo(mailhub, server_config, classifier,
                                                                  server_logs, tmp_path):
    # A phone-sized photo (1584x960), as iOS Mail's "Large" or Android sends one.
    photo = jpeg_of("tiger.png", tmp_path / "IMG_20240501_101500.jpg", scale=8)
    with running_server(server_config, classifier):
        sent_ok(swaks_send(mailhub, CLIENT, data=outlook_mail(photo, "with photo")))
        (with_photo,) = fetch_replies(mailhub, tmp_path, 1)
        sent_ok(swaks_send(mailhub, CLIENT, data=outlook_mail(None, "no photo")))
        (logo_only,) = fetch_replies(mailhub, tmp_path, 1)

    reply = parse_reply(with_photo)
    (answer,) = reply.answers  # the logo and the icon are not answered
    assert answer["file"] == photo.name and "error" not in answer, answer
    assert answer["taxonomy"]["family"] == FAMILY["tiger.png"]
    lines = reply.text.strip().splitlines()
    assert lines[0].startswith(f"{photo.name}: ")  # the photo's answer comes first
    assert lines[-3].startswith("Not answered: 2 small images that look like a signature logo or icon")
    assert "image001.png (240x80), image002.png (32x32)" in lines[-3]
    assert lines[-1].startswith("answers.json (attached) holds the same answers")
    assert "image001.png:" not in reply.text

    # Alone, the logo is the largest image: it is answered (the icon beside it is not).
    reply = parse_reply(logo_only)
    assert [answer["file"] for answer in reply.answers] == ["image001.png"]
    assert "image002.png (32x32)" in reply.text.strip().splitlines()[-3]
    lines = log_lines(server_logs)
    assert sum(bool(re.search(r": answered \(1 image, 2 decorations skipped, ", line)) for line in lines) == 1
    assert sum(bool(re.search(r": answered \(1 image, 1 decoration skipped, ", line)) for line in lines) == 1


def test_an_image_the_server_cannot_use_gets_one_line_saying_what_to_do(mailhub, server_config, classifier,
                                                                        server_logs, tmp_path):
    heic = heic_of("dog.png", tmp_path)
    broken = tmp_path / "IMG_0002.HEIC"
    broken.write_bytes(heic.read_bytes()[:len(heic.read_bytes()) // 3])  # cut off in transfer
    with running_server(server_config, classifier):
        sent_ok(swaks_send(mailhub, CLIENT, [(broken, "image/heic", None)]))
        (raw,) = fetch_replies(mailhub, tmp_path, 1)
    (answer,) = parse_reply(raw).answers
    assert answer["file"] == "IMG_0002.HEIC"
    assert answer["error"].endswith(": send the photo as JPEG") and "\n" not in answer["error"], answer
    assert any(re.search(r": answered with errors \(1 of 1 image failed, [\d.]+ s\)$", line)
               for line in log_lines(server_logs))


def test_both_tools_refuse_a_certificate_they_cannot_verify(mailhub, configs, tmp_path):
    assert SYSTEM_CAS.is_file()
    jpeg = jpeg_of("tiger.png", tmp_path / "tiger.jpg")
    refused = swaks_send(mailhub, CLIENT, [(jpeg, "image/jpeg", None)], ca_file=SYSTEM_CAS)
    assert refused.returncode != 0
    assert mailbox_messages(configs(), "server") == []
    sent_ok(swaks_send(mailhub, "client2@hub.test", [(jpeg, "image/jpeg", None)], recipient=CLIENT))
    wait_for(lambda: mailbox_messages(configs(), "client"), what="the mail in client1's INBOX")
    result, fetched = fetchmail_fetch(mailhub, CLIENT, tmp_path, ca_file=SYSTEM_CAS)
    assert result.returncode not in (0, 1) and fetched == [], result.stdout
    assert len(mailbox_messages(configs(), "client")) == 1  # nothing was taken


# -- late answers --------------------------------------------------------------------------------

def client_run(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli("client.py", "--config", str(config), *args, timeout=timeout)


def waiting_ids(config: Path) -> list[str]:
    return [entry.message_id for entry in edge.pending_record(load_config(config), CLIENT).waiting()]


def answered_and_delivered(config: Path, message_id: str):
    return ledger_state(config, message_id) == ANSWERED and message_id in replies_by_request(config)


def test_late_answers_are_shown_by_a_later_run_and_by_collect(mailhub, server_config, classifier):
    config = server_config
    # Other mail in client1's INBOX: a person's, and a reply to a request client1 never sent.
    other = EmailMessage()
    other["From"], other["To"], other["Subject"] = "client2@hub.test", CLIENT, "lunch?"
    other["Message-ID"] = "<lunch@hub.test>"
    other.set_content("Lunch at noon?")
    submit(mailhub, "client2@hub.test", other, [CLIENT])
    stranger_reply = EmailMessage()
    stranger_reply["From"], stranger_reply["To"], stranger_reply["Subject"] = \
        "server@hub.test", CLIENT, "Re: Animal photo"
    stranger_reply["Message-ID"] = f"<1.{REPLY_ID_TAG}@hub.test>"
    stranger_reply["In-Reply-To"] = "<sent-by-someone-else@hub.test>"
    stranger_reply["X-Animalid"] = "reply"
    stranger_reply.set_content("tiger.png: Tiger")
    stranger_reply.add_attachment(b'[{"file": "tiger.png", "error": "x"}]', maintype="application",
                                  subtype="json", filename="answers.json")
    submit(mailhub, "server@hub.test", stranger_reply, [CLIENT])

    # The server is down: the client gives up, says why, and keeps the request on record.
    gave_up = client_run(config, "--image", str(PHOTOS / "tiger.png"), "--timeout", "3")
    assert gave_up.returncode == 3, gave_up.stderr
    assert "may not be running" in gave_up.stderr and "client.py --collect" in gave_up.stderr
    assert "Traceback" not in gave_up.stderr
    (tiger_id,) = waiting_ids(config)

    with running_server(config, classifier):
        wait_for(lambda: answered_and_delivered(config, tiger_id), timeout=60, what="the late answer")
        # The next run shows the late answer first, then its own.
        later = client_run(config, "--image", str(PHOTOS / "dog.png"), "--timeout", "60")
    assert later.returncode == 0, later.stderr
    late_at = later.stdout.index("Late answer to your request of ")
    assert later.stdout[late_at:].startswith("Late answer to your request of ") and "(tiger.png):" in later.stdout
    assert late_at < later.stdout.index("tiger.png: ") < later.stdout.index("dog.png: ")
    assert "Felidae" in later.stdout and "Canidae" in later.stdout
    assert waiting_ids(config) == []

    gave_up = client_run(config, "--image", str(PHOTOS / "bison.png"), "--timeout", "3")
    assert gave_up.returncode == 3, gave_up.stderr
    (bison_id,) = waiting_ids(config)
    with running_server(config, classifier):
        wait_for(lambda: answered_and_delivered(config, bison_id), timeout=60, what="the late answer")
    collected = client_run(config, "--collect", "--json")
    assert collected.returncode == 0, collected.stderr
    (late,) = json.loads(collected.stdout)
    assert late["request"] == bison_id and late["file"] == "bison.png" and late["late"] is True
    assert late["taxonomy"]["family"] == FAMILY["bison.png"]
    again = client_run(config, "--collect")
    assert again.returncode == 0 and again.stdout == ""
    assert "no earlier request is waiting for an answer" in again.stderr

    # Only the two other mails are left, untouched.
    left = sorted(parse_bytes(raw)["Message-ID"] for raw in mailbox_messages(config, "client"))
    assert left == sorted(["<lunch@hub.test>", f"<1.{REPLY_ID_TAG}@hub.test>"])


# -- setting up ----------------------------------------------------------------------------------

def test_one_edit_of_hub_moves_every_section(mailhub, server_config, classifier, tmp_path):
    """The shipped config.ini with only [hub] state_dir and port_offset changed reaches a hub
    in another folder on another offset: ports, CA file and password command follow."""
    assert mailhub.domain == "hub.test"
    text = (ROOT / "config.ini").read_text()
    text, moved = re.subn(r"(?m)^state_dir = \.mailhub$", f"state_dir = {mailhub.state}", text)
    text, shifted = re.subn(r"(?m)^port_offset = 1000$", f"port_offset = {mailhub.port_offset}", text)
    assert moved == shifted == 1
    one_edit = tmp_path / "config.ini"
    one_edit.write_text(text)
    with running_server(server_config, classifier):
        result = client_run(one_edit, "--image", str(PHOTOS / "tiger.png"), "--timeout", "60")
    assert result.returncode == 0, result.stderr
    assert "tiger.png: " in result.stdout and "Felidae" in result.stdout


def test_an_empty_password_variable_is_an_error_that_names_it(server_config):
    text = server_config.read_text().replace("password_env = \n", "password_env = ANIMALID_CLIENT_PASSWORD\n", 1)
    assert "password_env = ANIMALID_CLIENT_PASSWORD" in text
    config = server_config.with_name("empty-variable.ini")
    config.write_text(text)
    result = subprocess.run([sys.executable, "client.py", "--config", str(config), "--image",
                             str(PHOTOS / "tiger.png"), "--timeout", "5"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env=dict(os.environ, ANIMALID_CLIENT_PASSWORD=""))
    assert result.returncode == 2, result.stderr
    assert "[client] password_env: environment variable ANIMALID_CLIENT_PASSWORD is set but empty" \
        in result.stderr
    assert "Traceback" not in result.stderr
