"""A newcomer's first hour (issue 20): exit statuses, replies and errors that say what to do
next, an honest ``server.py --status``, ``--json`` with late answers, honest logs.

Real hub, real server (in a thread with the session's classifier, or server.py as a
process), client.py as a process. Nothing is mocked.
"""

from __future__ import annotations

import configparser
import io
import json
import re
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from PIL import Image

from animalid.mail.messages import parse_reply
from animalid.testing.harness import (
    PHOTOS,
    ServerProcess,
    replies_by_request,
    run_cli,
    running_server,
    submit,
    wait_for,
)

pytestmark = pytest.mark.e2e

CLIENT = "client1@hub.test"


def client_run(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli("client.py", "--config", str(config), *args, timeout=timeout)


def edited(config: Path, folder: Path, name: str, **sections: dict) -> Path:
    """A copy of ``config`` with some settings changed."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(config)
    for section, values in sections.items():
        parser[section].update({key: str(value) for key, value in values.items()})
    path = folder / name
    with open(path, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return path


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, "PNG")
    return out.getvalue()


def reply_to(config: Path, message_id: str, timeout: float = 60) -> bytes:
    return wait_for(lambda: (replies_by_request(config, with_bodies=True).get(message_id) or [None])[0],
                    timeout=timeout, what=f"the reply to {message_id}")


@pytest.fixture
def config(configs):
    return configs(receive="imap", server_receive="imap")


# -- 1. exit statuses ----------------------------------------------------------------------

def test_a_request_the_server_cannot_answer_exits_1(config, classifier, tmp_path):
    # The header is fine (client.py's own check passes), the pixels are cut off in transfer.
    whole = (PHOTOS / "dog.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole[:len(whole) // 2])
    with running_server(config, classifier):
        result = client_run(config, "--image", str(cut), "--timeout", "60")
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("cut.png: error: damaged or truncated image")


# -- 2. replies that say what to do --------------------------------------------------------

def test_replies_name_a_pdf_and_say_what_to_send(mailhub, config, classifier):
    pdf = EmailMessage()
    pdf["From"], pdf["To"], pdf["Subject"], pdf["Message-ID"] = CLIENT, mailhub.server, "my cat", "<pdf@hub.test>"
    pdf.set_content("Here is my cat.")
    pdf.add_attachment(b"%PDF-1.4\n1 0 obj<<>>endobj\n", maintype="application", subtype="pdf",
                       filename="cat.pdf")
    photos = EmailMessage()
    photos["From"], photos["To"], photos["Subject"] = CLIENT, mailhub.server, "odd photos"
    photos["Message-ID"] = "<sizes@hub.test>"
    photos.set_content("Two photos.")
    gif = io.BytesIO()
    Image.open(PHOTOS / "tiger.png").convert("RGB").save(gif, "GIF")
    for name, data in (("huge.png", png(12000, 12000, "1")), ("one.png", png(1, 1)),
                       ("tiger.gif", gif.getvalue())):
        maintype, _, subtype = ("image/gif" if name.endswith(".gif") else "image/png").partition("/")
        photos.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    with running_server(config, classifier):
        submit(mailhub, CLIENT, pdf)
        submit(mailhub, CLIENT, photos)
        pdf_reply = parse_reply(reply_to(config, "<pdf@hub.test>"))
        sizes_reply = parse_reply(reply_to(config, "<sizes@hub.test>"))
    assert pdf_reply.answers == [{"file": "(message)", "error": "no image found: cat.pdf is a PDF document; "
                                                                "attach the photo itself (JPEG, PNG, HEIC...)"}]
    assert "Your message: error: no image found: cat.pdf is a PDF document;" in pdf_reply.text
    huge, one, tiger = sizes_reply.answers
    assert tiger["note"].startswith("a GIF keeps at most 256 colours, which can change the answer")
    assert "\nNote: a GIF keeps at most 256 colours" in sizes_reply.text
    assert huge["error"] == ("too many pixels: 12000x12000 (limit 40,000,000): "
                             "send it at most about 6000 px on the long side")
    assert one["error"].startswith("too small to judge: 1x1 pixels; send a photo at least 32 px")


# -- 3. errors with a next step ------------------------------------------------------------

def test_the_hub_down_says_how_to_start_it(config, tmp_path):
    down = edited(config, tmp_path, "down.ini", smtp={"host": "localhost", "port": ""},
                  hub={"port_offset": 40000, "listen": "127.0.0.1"})
    result = client_run(down, "--image", str(PHOTOS / "dog.png"), "--timeout", "5")
    assert result.returncode == 5, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "connection refused" in last and "Is the local mail hub running?" in last
    assert f".venv/bin/python -m animalid.mailhub --config {down}" in last


# -- 5. server.py --status tells the truth -------------------------------------------------

def status_of(config: Path) -> str:
    result = run_cli("server.py", "--config", str(config), "--status")
    assert result.returncode == 0, result.stderr
    assert "Connection closed" not in result.stdout + result.stderr
    return result.stdout


def test_status_forgets_servers_that_stopped_and_shows_lost_ones_as_gone(config, tmp_path):
    short = edited(config, tmp_path, "short-lease.ini", server={"claim_lease": 3})
    once = run_cli("server.py", "--config", str(short), "--once")
    assert once.returncode == 0, once.stderr
    stopped = ServerProcess(short, tmp_path / "stopped.log").start()
    stopped_id = stopped.worker_id
    assert stopped.stop() == 0
    lost = ServerProcess(short, tmp_path / "lost.log").start()
    lost_id = lost.worker_id
    lost.kill9()
    def gone_shown():
        text = status_of(short)
        return text if "gone" in text else None
    report = wait_for(gone_shown, timeout=30, what="the killed server shown as gone")
    assert "workers   0 renewed their leases in the last 3 s" in report
    assert re.search(rf"  {re.escape(lost_id)}\s+gone: last seen \d+ s ago", report), report
    assert stopped_id not in report  # stopped cleanly: it removed its own entry


# -- 6. --json keeps late answers ----------------------------------------------------------

def test_json_prints_late_answers_as_json_marked_late(config, classifier):
    gave_up = client_run(config, "--image", str(PHOTOS / "bison.png"), "--timeout", "3", "--json")
    assert gave_up.returncode == 3 and gave_up.stdout == ""
    with running_server(config, classifier):
        later = client_run(config, "--image", str(PHOTOS / "dog.png"), "--timeout", "60", "--json")
    assert later.returncode == 0, later.stderr
    answers = json.loads(later.stdout)
    late, own = answers
    assert late["file"] == "bison.png" and late["late"] is True and late["request"].startswith("<")
    assert own["file"] == "dog.png" and own["late"] is False
    assert "Late answer" not in later.stderr


# -- 8. honest logs ------------------------------------------------------------------------

def test_once_does_not_say_it_watches(config):
    result = run_cli("server.py", "--config", str(config), "--once")
    assert result.returncode == 0, result.stderr
    assert " watching " not in result.stderr and "then exiting (--once)" in result.stderr


def test_one_line_per_connection_loss_and_recovery(mailhub, config, tmp_path):
    server = ServerProcess(config, tmp_path / "server.log").start()
    try:
        mailhub.stop_dovecot()
        wait_for(lambda: "lost the connection" in server.log_text(), timeout=60, what="the loss logged")
        time.sleep(3)  # several retries fail meanwhile: they add no line
        mailhub.start_dovecot()
        wait_for(lambda: "connection is back" in server.log_text(), timeout=90, what="the recovery logged")
    finally:
        if not mailhub.dovecot_running():
            mailhub.start_dovecot()
        server.stop()
    log = server.log_text()
    assert log.count("lost the connection") == 1 and log.count("connection is back") == 1, log
