"""The local mail hub, end to end: real Dovecot and SMTP on loopback, no mocks."""

from __future__ import annotations

import imaplib
import json
import poplib
import select
import shutil
import signal
import smtplib
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path

import pytest

import animalid.devhub.dovecot as mailhub_module
from animalid.devhub import HubError, MailHub
from animalid.devhub.dovecot import _alive, _child_pids
from animalid.devhub.tls import ensure_tls

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


# -- helpers ----------------------------------------------------------------


def tls(hub: MailHub) -> ssl.SSLContext:
    """Verification on, trusting only the hub's CA: how real clients connect."""
    return ssl.create_default_context(cafile=str(hub.ca_file))


def message(sender: str, to: str, body: str = "hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"] = sender, to
    msg["Subject"] = "mailhub test"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@test>"
    msg.set_content(body)
    return msg


def submit(hub: MailHub, sender: str, to: str) -> EmailMessage:
    msg = message(sender, to)
    with smtplib.SMTP(HOST, hub.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=tls(hub))
        smtp.login(sender, hub.password(sender))
        smtp.send_message(msg)
    return msg


def send_mx(hub: MailHub, sender: str, to: str, msg: EmailMessage | None = None) -> EmailMessage:
    msg = msg or message(sender, to)
    with smtplib.SMTP(HOST, hub.ports["smtp_mx"], timeout=10) as smtp:
        smtp.send_message(msg, from_addr=sender, to_addrs=[to])
    return msg


def imap_fetch(hub: MailHub, user: str, message_id: str) -> bytes | None:
    with imaplib.IMAP4_SSL(HOST, hub.ports["imaps"], ssl_context=tls(hub), timeout=10) as imap:
        imap.login(user, hub.password(user))
        imap.select("INBOX", readonly=True)
        _, data = imap.search(None, "HEADER", "Message-ID", message_id)
        nums = data[0].split()
        if not nums:
            return None
        _, parts = imap.fetch(nums[-1], "(BODY.PEEK[])")
        return parts[0][1]


def pop3_fetch(hub: MailHub, user: str, message_id: str) -> bytes | None:
    pop = poplib.POP3_SSL(HOST, hub.ports["pop3s"], context=tls(hub), timeout=10)
    try:
        pop.user(user)
        pop.pass_(hub.password(user))
        count, _ = pop.stat()
        for num in range(count, 0, -1):
            raw = b"\r\n".join(pop.retr(num)[1])
            if message_id.encode() in raw:
                return raw
        return None
    finally:
        pop.quit()


def smtp_reply(exc_info) -> tuple[int, bytes]:
    exc = exc_info.value
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return next(iter(exc.recipients.values()))
    return exc.smtp_code, exc.smtp_error


# -- submission (587 STARTTLS, 465 implicit TLS) -----------------------------


def test_submit_with_starttls_then_read_by_imaps_and_pop3s(mailhub):
    c1, c2 = mailhub.address("client1"), mailhub.address("client2")
    msg = submit(mailhub, c1, c2)
    # 250 means stored: no polling needed.
    by_imap = imap_fetch(mailhub, c2, msg["Message-ID"])
    by_pop = pop3_fetch(mailhub, c2, msg["Message-ID"])
    assert by_imap is not None and by_pop is not None
    for raw in (by_imap, by_pop):
        assert b"Subject: mailhub test" in raw
        assert b"with ESMTPSA" in raw  # our trace header: TLS + AUTH


def test_submissions_implicit_tls(mailhub):
    c3, server = mailhub.address("client3"), mailhub.server
    msg = message(c3, server)
    with smtplib.SMTP_SSL(HOST, mailhub.ports["submissions"], context=tls(mailhub), timeout=10) as smtp:
        smtp.ehlo()
        assert set(smtp.esmtp_features["auth"].split()) == {"LOGIN", "PLAIN"}
        smtp.user, smtp.password = c3, mailhub.password(c3)
        smtp.auth("LOGIN", smtp.auth_login)  # login() would pick PLAIN
        smtp.send_message(msg)
    assert imap_fetch(mailhub, server, msg["Message-ID"]) is not None


def test_auth_before_starttls_is_refused(mailhub):
    c1 = mailhub.address("client1")
    with smtplib.SMTP(HOST, mailhub.ports["submission"], timeout=10) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")
        assert smtp.has_extn("starttls")
        code, _ = smtp.docmd("AUTH", "PLAIN AGNsaWVudDEAeA==")
        assert code == 530
        code, _ = smtp.docmd("MAIL", f"FROM:<{c1}>")
        assert code == 530


def test_wrong_password_is_refused(mailhub):
    c1 = mailhub.address("client1")
    with smtplib.SMTP(HOST, mailhub.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=tls(mailhub))
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            smtp.login(c1, "not-the-password")
        assert err.value.smtp_code == 535


def test_mail_before_auth_is_refused(mailhub):
    with smtplib.SMTP_SSL(HOST, mailhub.ports["submissions"], context=tls(mailhub), timeout=10) as smtp:
        smtp.ehlo()
        code, _ = smtp.docmd("MAIL", f"FROM:<{mailhub.address('client1')}>")
        assert code == 530


def test_relaying_is_denied(mailhub):
    c1 = mailhub.address("client1")
    with smtplib.SMTP(HOST, mailhub.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=tls(mailhub))
        smtp.login(c1, mailhub.password(c1))
        with pytest.raises(smtplib.SMTPRecipientsRefused) as err:
            smtp.send_message(message(c1, "someone@example.com"))
        code, text = smtp_reply(err)
        assert code == 550 and b"relaying denied" in text.lower()


def test_sender_must_be_the_authenticated_account(mailhub):
    c1, c2 = mailhub.address("client1"), mailhub.address("client2")
    with smtplib.SMTP(HOST, mailhub.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=tls(mailhub))
        smtp.login(c1, mailhub.password(c1))
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            smtp.send_message(message(c2, c1), from_addr=c2)
        assert err.value.smtp_code == 553


# -- MX listener (mail "from the internet") ---------------------------------


def test_mx_accepts_strangers_for_local_accounts_only(mailhub):
    c3 = mailhub.address("client3")
    msg = send_mx(mailhub, "stranger@evil.example", c3)  # unauthenticated, spoofable
    raw = imap_fetch(mailhub, c3, msg["Message-ID"])
    assert raw is not None and b"with ESMTP id" in raw

    # Several recipients in one transaction: one LMTP reply each (RFC 2033).
    c1, c2 = mailhub.address("client1"), mailhub.address("client2")
    both = message("stranger@evil.example", f"{c1}, {c2}")
    with smtplib.SMTP(HOST, mailhub.ports["smtp_mx"], timeout=10) as smtp:
        smtp.send_message(both, to_addrs=[c1, c2])
        smtp.send_message(message("x@evil.example", c1))  # the connection is still in step
    assert imap_fetch(mailhub, c1, both["Message-ID"]) and imap_fetch(mailhub, c2, both["Message-ID"])

    with smtplib.SMTP(HOST, mailhub.ports["smtp_mx"], timeout=10) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")
        assert int(smtp.esmtp_features["size"]) == mailhub.max_message_bytes
        for rcpt in ("someone@example.org", f"nobody-here@{mailhub.domain}"):
            smtp.rset()
            smtp.mail("stranger@evil.example")
            code, _ = smtp.rcpt(rcpt)
            assert code == 550, rcpt


def test_mx_offers_starttls(mailhub):
    c4 = mailhub.address("client4")
    msg = message("spoof@hub.test", c4)
    with smtplib.SMTP(HOST, mailhub.ports["smtp_mx"], timeout=10) as smtp:
        smtp.starttls(context=tls(mailhub))
        smtp.send_message(msg)
    assert imap_fetch(mailhub, c4, msg["Message-ID"]) is not None


def test_message_size_limit(mailhub):
    c2 = mailhub.address("client2")
    limit = mailhub.max_message_bytes
    with smtplib.SMTP(HOST, mailhub.ports["smtp_mx"], timeout=30) as smtp:
        smtp.ehlo()
        code, _ = smtp.mail("a@example.org", [f"SIZE={limit + 1}"])  # declared (RFC 1870)
        assert code == 552
        smtp.rset()
        big = message("a@example.org", c2)
        big.set_content(("x" * 998 + "\n") * (limit // 999 + 10))
        # Undeclared size: low-level calls, as sendmail() would add SIZE=.
        assert smtp.mail("a@example.org")[0] == 250
        assert smtp.rcpt(c2)[0] == 250
        code, _ = smtp.data(big.as_bytes(policy=big.policy.clone(linesep="\r\n")))
        assert code == 552


# -- IMAP IDLE ----------------------------------------------------------------


def test_imap_idle_is_pushed_new_mail(mailhub):
    c4 = mailhub.address("client4")
    with imaplib.IMAP4_SSL(HOST, mailhub.ports["imaps"], ssl_context=tls(mailhub), timeout=10) as imap:
        imap.login(c4, mailhub.password(c4))
        imap.select("INBOX")
        tag = imap._new_tag()
        imap.send(tag + b" IDLE\r\n")
        assert imap.readline().startswith(b"+")
        started = time.monotonic()
        send_mx(mailhub, "pusher@example.org", c4)
        imap.sock.settimeout(2.5)
        pushed = b""
        while b"EXISTS" not in pushed:
            pushed = imap.readline()
        assert time.monotonic() - started < 2.0
        imap.send(b"DONE\r\n")
        while not imap.readline().startswith(tag):
            pass


# -- faults: Dovecot down, restarts -----------------------------------------


def test_dovecot_down_gives_451_and_restart_keeps_mail(mailhub):
    c3 = mailhub.address("client3")
    kept = send_mx(mailhub, "before@example.org", c3)
    mailhub.stop_dovecot()
    try:
        with pytest.raises(smtplib.SMTPDataError) as err:
            send_mx(mailhub, "during@example.org", c3)
        assert err.value.smtp_code == 451
    finally:
        mailhub.start_dovecot()
    assert imap_fetch(mailhub, c3, kept["Message-ID"]) is not None
    mailhub.restart_dovecot()
    assert imap_fetch(mailhub, c3, kept["Message-ID"]) is not None


def test_restart_smtp(mailhub):
    mailhub.restart_smtp()
    c1 = mailhub.address("client1")
    msg = submit(mailhub, c1, c1)
    assert imap_fetch(mailhub, c1, msg["Message-ID"]) is not None


def test_fail_smtp_defers_the_named_senders_for_a_while(mailhub):
    c1, c2 = mailhub.address("client1"), mailhub.address("client2")
    mailhub.fail_smtp(451, for_seconds=1.5, senders=[c1])
    try:
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            send_mx(mailhub, c1, c2)
        assert err.value.smtp_code == 451
        send_mx(mailhub, c2, c1)  # others pass meanwhile
        time.sleep(1.6)
        kept = send_mx(mailhub, c1, c2)  # and it ends by itself
    finally:
        mailhub.fail_smtp(for_seconds=0)
    assert imap_fetch(mailhub, c2, kept["Message-ID"]) is not None


# -- state, refusals, CLI ----------------------------------------------------


def test_state_files(mailhub):
    info = json.loads((mailhub.state / "hub.json").read_text())
    assert info["ports"] == mailhub.ports
    assert info["server"] == f"server@{mailhub.domain}"
    assert set(info["clients"]) >= {mailhub.address(c) for c in ("client1", "client4")}
    assert Path(info["ca_file"]) == mailhub.ca_file
    secret = mailhub.state / "secrets" / "client1"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((mailhub.state / "tls" / "server.key").stat().st_mode) == 0o600
    password = mailhub.password("client1")
    for name in ("hub.json", "users", "dovecot.conf", "dovecot.log"):
        assert password not in (mailhub.state / name).read_text(), name


def certificate_sans(cert_file: Path) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) of a certificate's subjectAltName."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)), {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


def test_server_certificate_covers_localhost_and_127_0_0_1(mailhub):
    dns, ips = certificate_sans(mailhub.state / "tls" / "server.pem")
    assert "localhost" in dns
    assert "127.0.0.1" in ips
    for name in ("localhost", "127.0.0.1"):  # and TLS verifies by either name
        with socket.create_connection((HOST, mailhub.ports["imaps"]), timeout=10) as raw:
            with tls(mailhub).wrap_socket(raw, server_hostname=name) as sock:
                assert sock.recv(200).startswith(b"* OK")


def test_certificate_without_the_loopback_names_is_issued_anew(tmp_path):
    import animalid.devhub.tls as tls_module

    state = tmp_path / "s"
    (state / "tls").mkdir(parents=True)
    ensure_tls(state, "hub.test", "127.0.0.1", None)
    cert_file = state / "tls" / "server.pem"
    # What an earlier hub might have left: the same CA, but only some other name.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_cert = x509.load_pem_x509_certificate((state / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((state / "tls" / "ca.key").read_bytes(), None)
    old, old_key = tls_module._make_server_cert(ca_cert, ca_key, {"elsewhere.test"}, set())
    cert_file.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    (state / "tls" / "server.key").write_bytes(tls_module._key_pem(old_key))
    assert certificate_sans(cert_file) == ({"elsewhere.test"}, set())

    ensure_tls(state, "hub.test", "127.0.0.1", None)
    dns, ips = certificate_sans(cert_file)
    assert "localhost" in dns and "127.0.0.1" in ips
    assert x509.load_pem_x509_certificate(cert_file.read_bytes()).issuer == ca_cert.subject


def test_failed_folder_exists(mailhub):
    c1 = mailhub.address("client1")
    with imaplib.IMAP4_SSL(HOST, mailhub.ports["imaps"], ssl_context=tls(mailhub), timeout=10) as imap:
        imap.login(c1, mailhub.password(c1))
        _, folders = imap.list()
    names = {line.rsplit(b" ", 1)[-1].strip(b'"') for line in folders}
    assert {b"INBOX", b"Failed"} <= names


def test_secret_subcommand(mailhub):
    for name in ("client2", "client2@hub.test"):
        out = subprocess.run(
            [sys.executable, "-m", "animalid.mailhub", "secret", name, "--state", str(mailhub.state)],
            cwd=ROOT, capture_output=True, text=True, timeout=20, check=True,
        ).stdout
        assert out.strip() == mailhub.password("client2")


def test_second_hub_on_same_state_is_refused(mailhub):
    with pytest.raises(HubError, match="already running"):
        MailHub(mailhub.state, port_offset=mailhub.port_offset + 7).start()


def test_unwritable_state_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(HubError, match="not writable"):
        MailHub(blocker / "state").start()


def test_missing_dovecot_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(mailhub_module.shutil, "which", lambda *a, **k: None)
    with pytest.raises(HubError, match="apt-get install dovecot-core"):
        MailHub(tmp_path / "s").start()


def test_cli_busy_port_is_refused(mailhub, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "animalid.mailhub", "--state", str(tmp_path / "s"),
         "--port-offset", str(mailhub.port_offset)],
        cwd=ROOT, capture_output=True, text=True, timeout=20,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "already in use" in proc.stderr and str(mailhub.ports["smtp_mx"]) in proc.stderr


def start_cli(state: str, offset: int, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "animalid.mailhub", "--state", state,
         "--port-offset", str(offset), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("mailhub ready:"):
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"no ready line: {line!r} {err}")
    return proc, line


def stop_cli(proc: subprocess.Popen) -> None:
    """SIGTERM first: a SIGKILLed hub cannot stop its Dovecot itself."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.stdout.close()
    proc.stderr.close()


@pytest.fixture
def cli_state():
    state = tempfile.mkdtemp(prefix="mh", dir="/tmp")
    yield state
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(MailHub(state).base_dir, ignore_errors=True)  # a SIGKILLed hub leaves it


def dovecot_pids(state: str) -> list[int]:
    master = int((MailHub(state).base_dir / "master.pid").read_text())
    return [master, *_child_pids(master)]


def test_cli_ready_line_and_clean_sigterm(mailhub, cli_state):
    offset = mailhub.port_offset + 1  # next to the fixture's ports, so likely free too
    proc, line = start_cli(cli_state, offset, "--client", "alice")
    try:
        assert f"imaps={993 + offset}" in line
        info = json.loads((Path(cli_state) / "hub.json").read_text())
        assert info["pid"] == proc.pid
        assert info["accounts"] == ["alice@hub.test", "server@hub.test"]  # --client replaces the defaults
        pids = dovecot_pids(cli_state)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=8) == 0
        assert "Traceback" not in proc.stderr.read()
        assert not [p for p in pids if _alive(p)]  # zombies are dead, awaiting init
    finally:
        stop_cli(proc)


def test_killed_hub_takes_dovecot_down(mailhub, cli_state):
    proc, _ = start_cli(cli_state, mailhub.port_offset + 3)  # +2 would put IMAPS on POP3S
    try:
        pids = dovecot_pids(cli_state)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)]
    finally:
        stop_cli(proc)
