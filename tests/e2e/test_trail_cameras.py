"""Trail cameras through the real hub, with the real classifier (docs/trail-cameras.md).

A simulated camera mails a visit of 12 frames (8 synthetic empty landscapes,
4 of a tiger, 10 s apart by their EXIF and Date times): exactly one alert
reaches the notify address, the camera gets no reply, the ledger holds 12
observations, and the digest (made due by moving the keeper's clock) counts
one visit of 4 and 8 empty frames. A second camera is told apart by the
subject pattern and neomutt reads its alert; a kill between sending an alert
and recording it sends that alert once more, with the same Message-ID.
"""

from __future__ import annotations

import csv
import email.policy
import json
import logging
import os
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

from animalid.mail.messages import parse_bytes
from animalid.server.ledger import SqliteLedger
from animalid.testing.cameras import animal, camera_mail, landscape
from animalid.testing.harness import (
    LedgerStall,
    ServerProcess,
    empty_mailbox,
    hub_secret,
    mailbox_messages,
    make_config,
    require_tool,
    run_cli,
    running_server,
    send_mx,
    submit,
    wait_for,
)

CAMERA = "client3"
WATCHER = "client2"


def trail_config(hub, folder: Path, sections: str, **server) -> Path:
    config = make_config(hub, folder, WATCHER, "imap", "imap", name="trail.ini", **server)
    with open(config, "a", encoding="utf-8") as handle:
        handle.write("\n" + sections.replace("@DOMAIN", "@" + hub.domain))
    for account, role in ((WATCHER, "client"), (CAMERA, "client")):
        empty_mailbox(make_config(hub, folder, account, "imap", "imap", name=f"{account}.ini"), role)
    return config


def mailbox_of(hub, folder: Path, account: str) -> Path:
    return make_config(hub, folder, account, "imap", "imap", name=f"{account}.ini")


def observations(config_folder: Path) -> list:
    with SqliteLedger(config_folder / "server-state.sqlite") as ledger:
        return ledger.observations()


def send_frames(hub, frames: list[tuple[str, bytes, float]], subject: str = "IMG") -> list[EmailMessage]:
    sent = []
    for filename, data, taken in frames:
        message = camera_mail(f"{CAMERA}@{hub.domain}", hub.server, subject, filename, data, taken)
        submit(hub, f"{CAMERA}@{hub.domain}", message)
        sent.append(message)
    return sent


NORTH_RIDGE = """
[trail-camera North ridge]
from = client3@DOMAIN
notify = client2@DOMAIN
alert_on = Felidae, Ursidae
min_probability = 0.5, Ursidae=0.4
cooldown = 30m
digest = daily 07:00
"""


def test_a_visit_of_twelve_frames_is_one_alert_no_reply_and_one_visit_in_the_digest(mailhub, classifier,
                                                                                     tmp_path):
    config = trail_config(mailhub, tmp_path, NORTH_RIDGE)
    start = float(int(time.time()) - 3600)  # whole seconds, as EXIF writes them
    frames = [(f"empty-{i}.jpg", landscape(i, start + 10 * i), start + 10 * i) for i in range(4)]
    frames += [(f"tiger-{i}.jpg", animal("tiger.png", start + 10 * (4 + i)), start + 10 * (4 + i))
               for i in range(4)]
    frames += [(f"empty-{i}.jpg", landscape(i, start + 10 * (4 + i)), start + 10 * (4 + i)) for i in range(4, 8)]
    watcher = mailbox_of(mailhub, tmp_path, WATCHER)
    with running_server(config, classifier) as server:
        sent = send_frames(mailhub, frames)
        seen = wait_for(lambda: (lambda rows: rows if len(rows) == 12 else None)(observations(tmp_path)),
                        timeout=180, what="12 observations")
        alerts = mailbox_messages(watcher, "client")
        assert len(alerts) == 1, [parse_bytes(raw)["Subject"] for raw in alerts]
        alert = parse_bytes(alerts[0])
        assert "North ridge" in alert["Subject"] and "Felidae" in alert["Subject"], alert["Subject"]
        assert alert["Auto-Submitted"] == "auto-generated"
        assert [part.get_content_type() for part in alert.iter_attachments()] == ["image/jpeg"]
        assert not mailbox_messages(mailbox_of(mailhub, tmp_path, CAMERA), "client"), "the camera got mail"
        assert {row.message_id for row in seen} == {message["Message-ID"] for message in sent}
        assert sum(1 for row in seen if row.empty) == 8
        tigers = [row for row in seen if not row.empty]
        assert len(tigers) == 4 and len({row.visit for row in tigers}) == 1
        assert [row.taken for row in seen] == [taken for _, _, taken in sorted(frames, key=lambda f: f[2])]
        # The next morning's digest: the keeper's clock moves a day on.
        tomorrow = time.time() + 86400 + 60
        server.trail.clock = lambda: tomorrow
        digests = wait_for(lambda: (lambda found: found if len(found) == 2 else None)(
            mailbox_messages(watcher, "client")), timeout=60, what="the digest")
    digest = next(parse_bytes(raw) for raw in digests if "digest" in parse_bytes(raw)["Subject"])
    text = digest.get_body(("plain",)).get_content()
    assert "1 visit" in digest["Subject"], digest["Subject"]
    assert "12 photos, 8 empty frames" in text, text
    assert "4 photos" in text and "Felidae" in text, text
    assert len(list(digest.iter_attachments())) == 1
    # Restarted, the server does not send the same digest again: its time is in the ledger.
    with SqliteLedger(tmp_path / "server-state.sqlite") as ledger:
        assert ledger.mark("digest 07:00") == tomorrow
    # The export a researcher loads: every photo of the last 7 days, as CSV and as JSON.
    exported = run_cli("server.py", "--config", str(config), "--export", str(tmp_path / "obs.csv"),
                       "--since", "7d")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader((tmp_path / "obs.csv").open(encoding="utf-8")))
    assert len(rows) == 12 and sum(row["empty"] == "True" for row in rows) == 8
    assert {row["alert_taxon"] for row in rows} == {"", "Felidae"} and rows[0]["camera"] == "North ridge"
    as_json = run_cli("server.py", "--config", str(config), "--export", "-", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert len(json.loads(as_json.stdout)) == 12
    recent = run_cli("server.py", "--config", str(config), "--export", "-", "--since", "10m")
    assert len(recent.stdout.splitlines()) == 1  # the visit was "taken" an hour ago: the header only


SERIALS = """
[trail-camera vendor]
from = client3@DOMAIN
subject_pattern = ^Camera (?P<serial>[A-Z0-9-]+)
name = Vendor cam {name}
notify = client2@DOMAIN
alert_on = Felidae
"""


def neomutt_read(hub, account: str, workdir: Path, timeout: float = 60) -> str:
    """neomutt opens ``account``'s INBOX over IMAPS (the hub's CA checked) and saves every
    message to an mbox file, in batch mode under a pseudo-terminal (script)."""
    from urllib.parse import quote

    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "saved.mbox"
    rc = workdir / "muttrc"
    rc.write_text(
        f'set folder = "imaps://{quote(account, safe="")}@localhost:{hub.ports["imaps"]}/"\n'
        f'set imap_pass = "{hub_secret(hub, account)}"\nset spoolfile = "+INBOX"\n'
        "set ssl_verify_host = yes\n"
        f'set ssl_ca_certificates_file = "{hub.ca_file}"\n'
        f'set certificate_file = "{workdir / "certificates"}"\n'
        "set confirmappend = no\nset confirmcreate = no\nset mbox_type = mbox\nset wait_key = no\n"
        f'push "<tag-pattern>~A<enter><tag-prefix><copy-message>{out}<enter><quit>"\n', encoding="utf-8")
    rc.chmod(0o600)
    command = f"{require_tool('neomutt')} -n -F {rc}"
    env = dict(os.environ, HOME=str(workdir), TMPDIR=str(workdir), TERM="xterm")
    subprocess.run([require_tool("script"), "-qec", command, "/dev/null"], env=env, capture_output=True,
                   timeout=timeout, stdin=subprocess.DEVNULL)
    return out.read_text(encoding="utf-8", errors="replace") if out.exists() else ""


def test_a_second_camera_is_told_apart_by_its_subject_and_neomutt_reads_its_alert(mailhub, classifier,
                                                                                  tmp_path):
    config = trail_config(mailhub, tmp_path, SERIALS)
    now = time.time()
    watcher = mailbox_of(mailhub, tmp_path, WATCHER)
    with running_server(config, classifier):
        send_frames(mailhub, [("a.jpg", animal("tiger.png", now), now)], subject="Camera NR-1 photo 0001")
        send_frames(mailhub, [("b.jpg", animal("tiger.png", now + 5), now + 5)], subject="Camera GATE-2 photo 0007")
        rows = wait_for(lambda: (lambda r: r if len(r) == 2 else None)(observations(tmp_path)), timeout=120,
                        what="2 observations")
        alerts = wait_for(lambda: (lambda m: m if len(m) == 2 else None)(mailbox_messages(watcher, "client")),
                          timeout=30, what="two alerts")
    assert {row.camera for row in rows} == {"vendor/NR-1", "vendor/GATE-2"}
    subjects = sorted(parse_bytes(raw)["Subject"] for raw in alerts)
    assert "Vendor cam GATE-2" in subjects[0] and "Vendor cam NR-1" in subjects[1], subjects
    mbox = neomutt_read(mailhub, f"{WATCHER}@{mailhub.domain}", tmp_path / "neomutt")
    assert "at Vendor cam NR-1" in mbox and "at Vendor cam GATE-2" in mbox, mbox[:2000]


def test_a_kill_between_sending_an_alert_and_recording_it_sends_it_once_more(mailhub, tmp_path):
    config = trail_config(mailhub, tmp_path, NORTH_RIDGE, retry_max_delay=2)
    watcher = mailbox_of(mailhub, tmp_path, WATCHER)
    server = ServerProcess(config, tmp_path / "server.log").start()
    stall = LedgerStall(tmp_path / "server-state.sqlite", mailhub.server)
    hub_log = logging.getLogger("animalid.devhub")
    level = hub_log.level
    hub_log.setLevel(logging.INFO)
    hub_log.addHandler(stall)
    try:
        now = time.time()
        send_frames(mailhub, [("tiger.jpg", animal("tiger.png", now), now)])
        assert stall.locked.wait(120), "the alert was never sent"
        wait_for(lambda: mailbox_messages(watcher, "client"), timeout=30, what="the alert stored")
        server.kill9()
        hub_log.removeHandler(stall)
        stall.unlock()
        assert observations(tmp_path) == []  # not recorded: the kill fell inside the window
        server.start()
        alerts = wait_for(lambda: (lambda m: m if len(m) == 2 else None)(mailbox_messages(watcher, "client")),
                          timeout=120, what="the alert sent again")
        rows = wait_for(lambda: observations(tmp_path), timeout=30, what="the observation")
    finally:
        hub_log.removeHandler(stall)
        hub_log.setLevel(level)
        server.stop()
    assert len(rows) == 1
    ids = {parse_bytes(raw)["Message-ID"] for raw in alerts}
    assert len(ids) == 1, "the alert sent again carries the same Message-ID"


def test_a_forged_camera_mail_raises_no_alert(mailhub, classifier, tmp_path):
    """Camera mail is authenticated like any request (require_authentication, shipped on):
    a tiger "from the camera" through the MX port, unauthenticated, is refused and kept.
    The camera is not among allowed_senders: its own section is what the check covers."""
    config = trail_config(mailhub, tmp_path, NORTH_RIDGE, allowed_senders=f"client1@{mailhub.domain}")
    watcher = mailbox_of(mailhub, tmp_path, WATCHER)
    now = time.time()
    forgery = camera_mail(f"{CAMERA}@{mailhub.domain}", mailhub.server, "IMG", "tiger.jpg",
                          animal("tiger.png", now), now)
    send_mx(mailhub, forgery.as_bytes(policy=email.policy.SMTP), "stranger@evil.example")
    [real] = send_frames(mailhub, [("empty.jpg", landscape(1, now + 10), now + 10)])
    with running_server(config, classifier):
        rows = wait_for(lambda: observations(tmp_path), timeout=90, what="the real frame observed")
        wait_for(lambda: len(mailbox_messages(config, "server")) == 1, timeout=30,
                 what="the forgery kept in the mailbox, the real frame gone")
    assert [row.message_id for row in rows] == [real["Message-ID"]] and rows[0].empty
    assert mailbox_messages(config, "server")[0].find(forgery["Message-ID"].encode()) >= 0
    assert not mailbox_messages(watcher, "client"), "a forged camera mail raised an alert"
