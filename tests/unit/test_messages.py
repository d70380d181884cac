"""Unit tests: mail formats (messages.py), the ledger (ledger.py) and the pure parts of
transport.py and service.py. No network, no model."""

from __future__ import annotations

import email.policy
import json
import smtplib
import sqlite3
from email.message import EmailMessage

import pytest

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.errors import AuthError, ConfigError, PermanentError, TransientError, UnreachableError
from animalid.mail.messages import (
    AUTO_SUBMITTED,
    BOUNCE,
    LOOP_GUARD,
    MAILING_LIST,
    NO_SENDER,
    OWN_MAIL,
    REQUEST_KIND,
    Limits,
    build_reply,
    build_request,
    clean_text,
    error_answers,
    image_type_of,
    parse_incoming,
    parse_reply,
    reply_headers_match,
    safe_name,
)
from animalid.mail.transport import (
    Endpoint,
    MessageRejected,
    backoff_delay,
    check_credentials_protected,
    send_with_retry,
    smtp_error,
    xoauth2_string,
)
from animalid.server.ledger import ANSWERED, IGNORED, SEEN, SET_ASIDE
from animalid.server.ledger import SqliteLedger as Ledger

SERVER = "server@hub.test"
CLIENT = "client1@hub.test"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x01" * 40
ANSWER = {"file": "tiger.png", "scientific_name": "Panthera tigris", "common_name": "Tiger",
          "description": "A big cat.", "habitat": "Forests", "endangered": "Endangered",
          "dangerous": True, "poisonous": False, "venomous": False, "probability": 87.5,
          "rank": "species", "taxonomy": {"family": "Felidae"},
          "alternatives": [{"common_name": "Jaguar", "scientific_name": "Panthera onca",
                            "probability": 3.0}]}
LIMITS = Limits(max_message_bytes=1_000_000, max_parts=50, max_images=10)


def wire(message: EmailMessage) -> bytes:
    """The bytes as they travel (and as a mailbox returns them)."""
    return message.as_bytes(policy=email.policy.SMTP)


def incoming(message: EmailMessage, limits: Limits = LIMITS):
    return parse_incoming(wire(message), [SERVER], limits)


def plain_mail(sender: str = CLIENT, **headers) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = SERVER
    message["Subject"] = "look at this"
    message["Message-ID"] = "<abc123@phone.example>"
    for name, value in headers.items():
        del message[name.replace("_", "-")]
        message[name.replace("_", "-")] = value
    message.set_content("What is this animal?")
    message.add_attachment(JPEG, maintype="image", subtype="jpeg", filename="cat.jpg")
    return message


# -- requests -----------------------------------------------------------------

def test_request_has_the_agreed_headers_and_images_in_order():
    message = build_request(CLIENT, SERVER, [("tiger.png", PNG), ("dog.jpg", JPEG)])
    assert message["X-Animalid"] == "request"
    assert message["Subject"].startswith("Animal photo ")
    assert len(message["Subject"]) == len("Animal photo 2024-01-02 03:04:05")
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith("@hub.test>")
    assert message["Date"] and message["From"] == CLIENT and message["To"] == SERVER
    parsed = incoming(message)
    assert parsed.kind == REQUEST_KIND and parsed.sender == CLIENT
    assert parsed.message_id == message["Message-ID"]
    assert [(i.name, i.content_type, i.data) for i in parsed.images] == [
        ("tiger.png", "image/png", PNG), ("dog.jpg", "image/jpeg", JPEG)]


def test_request_types_follow_the_bytes_not_the_name():
    message = build_request(CLIENT, SERVER, [("photo.bin", JPEG)])
    part = next(message.iter_attachments())
    assert part.get_content_type() == "image/jpeg"


def test_image_type_of_knows_the_common_formats():
    assert image_type_of(PNG) == "image/png"
    assert image_type_of(JPEG) == "image/jpeg"
    assert image_type_of(b"GIF89a....") == "image/gif"
    assert image_type_of(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert image_type_of(b"????", "x.png") == "image/png"
    assert image_type_of(b"????", "notes.txt") == "application/octet-stream"


# -- replies ------------------------------------------------------------------

def test_reply_threads_marks_itself_automatic_and_carries_text_and_json():
    request = incoming(build_request(CLIENT, SERVER, [("tiger.png", PNG)]))
    request.references = ["<older@hub.test>"]
    answers = [ANSWER, {"file": "bad.png", "error": "not an image"}]
    reply = build_reply(request, SERVER, answers)
    assert reply["In-Reply-To"] == request.message_id
    assert reply["References"] == f"<older@hub.test> {request.message_id}"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Subject"] == "Re: " + request.subject
    assert reply["To"] == CLIENT and reply["From"] == SERVER
    body = reply.get_body(("plain",)).get_content()
    assert "Tiger (Panthera tigris), 87.5%" in body and "bad.png: error: not an image" in body
    json_parts = [p for p in reply.iter_attachments() if p.get_content_type() == "application/json"]
    assert len(json_parts) == 1 and json.loads(json_parts[0].get_content()) == answers

    parsed = parse_reply(wire(reply))
    assert parsed.in_reply_to == [request.message_id]
    assert parsed.answers == answers and parsed.from_animalid
    assert "Tiger" in parsed.text


def test_reply_subject_is_not_prefixed_twice():
    request = incoming(plain_mail(Subject="Re: my photo"))
    assert build_reply(request, SERVER, [ANSWER])["Subject"] == "Re: my photo"


def test_reply_without_json_part_reads_as_no_answers():
    message = EmailMessage()
    message["From"] = SERVER
    message["In-Reply-To"] = "<x@hub.test>"
    message.set_content("I am a person and I reply by hand")
    parsed = parse_reply(wire(message))
    assert parsed.answers is None and parsed.in_reply_to == ["<x@hub.test>"]
    assert "by hand" in parsed.text


def test_reply_with_broken_json_reads_as_no_answers():
    message = EmailMessage()
    message["In-Reply-To"] = "<x@hub.test>"
    message.set_content("text")
    message.add_attachment(b"{not json", maintype="application", subtype="json", filename="answers.json")
    assert parse_reply(wire(message)).answers is None


def test_reply_headers_match_only_in_reply_to_of_outstanding_requests():
    headers = b"From: server@hub.test\r\nIn-Reply-To: <a@hub.test>\r\nReferences: <b@hub.test>\r\n\r\n"
    assert reply_headers_match(headers, {"<a@hub.test>"}) == "<a@hub.test>"
    assert reply_headers_match(headers, {"<b@hub.test>"}) is None
    assert reply_headers_match(b"Subject: hi\r\n\r\n", {"<a@hub.test>"}) is None


def test_error_answers_cover_every_image_or_the_message():
    request = incoming(build_request(CLIENT, SERVER, [("a.png", PNG), ("b.png", PNG)]))
    assert error_answers(request, "set aside") == [{"file": "a.png", "error": "set aside"},
                                                   {"file": "b.png", "error": "set aside"}]
    request.images = []
    assert error_answers(request, "no image") == [{"file": "(message)", "error": "no image"}]


# -- reading what people send ------------------------------------------------

def test_phone_mail_with_inline_and_attached_images_in_document_order():
    message = EmailMessage()
    message["From"] = "Ann Smith <Ann.Smith@Example.ORG>"
    message["To"] = SERVER
    message["Subject"] = "what's this?"
    message["Message-ID"] = "<phone-1@example.org>"
    message.set_content("see photo")
    message.add_alternative('<p>see <img src="cid:pic1"></p>', subtype="html")
    html = message.get_payload()[1]
    html.add_related(JPEG, maintype="image", subtype="jpeg", cid="<pic1>")
    message.add_attachment(PNG, maintype="application", subtype="octet-stream", filename="IMG_0002.PNG")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="doc.pdf")
    message.add_attachment(b"zip", maintype="application", subtype="octet-stream", filename="x.zip")
    parsed = incoming(message)
    assert parsed.kind == REQUEST_KIND and parsed.sender == "ann.smith@example.org"
    assert [(i.name, i.content_type, i.data) for i in parsed.images] == [
        ("image-1.jpg", "image/jpeg", JPEG), ("IMG_0002.PNG", "image/png", PNG)]


@pytest.mark.parametrize("raw, expected", [
    ("../../etc/passwd.jpg", "passwd.jpg"),
    ("C:\\Users\\me\\Desktop\\cat.png", "cat.png"),
    ("evil\r\nBcc: x@y.z.jpg", "evil Bcc: x@y.z.jpg"),
    (".hidden.png", "hidden.png"),
    ("", "image-3.png"),
    (None, "image-3.png"),
])
def test_safe_name_is_a_bare_single_line_name(raw, expected):
    assert safe_name(raw, 3, "image/png") == expected


def test_safe_name_keeps_the_extension_of_a_long_name():
    name = safe_name("x" * 500 + ".jpeg", 1, "image/jpeg")
    assert len(name) <= 100 and name.endswith(".jpeg")


def test_rfc2231_file_names_are_decoded():
    message = plain_mail()
    message.add_attachment(PNG, maintype="image", subtype="png", filename="tigre_été.png")
    assert [i.name for i in incoming(message).images] == ["cat.jpg", "tigre_été.png"]


@pytest.mark.parametrize("sender, headers, kind", [
    (CLIENT, {}, REQUEST_KIND),
    (CLIENT, {"Auto_Submitted": "no"}, REQUEST_KIND),
    (CLIENT, {"Auto_Submitted": "auto-replied"}, AUTO_SUBMITTED),
    (CLIENT, {"Auto_Submitted": "auto-generated; owner-email=x@y.z"}, AUTO_SUBMITTED),
    (CLIENT, {"Precedence": "bulk"}, MAILING_LIST),
    (CLIENT, {"Precedence": "junk"}, MAILING_LIST),
    (CLIENT, {"List_Id": "<animals.lists.example>"}, MAILING_LIST),
    (CLIENT, {"Return_Path": "<>"}, BOUNCE),
    ("MAILER-DAEMON@hub.test", {}, BOUNCE),
    ("Server <SERVER@hub.test>", {}, OWN_MAIL),
    ("", {}, NO_SENDER),
    ("not an address", {}, NO_SENDER),
])
def test_mail_that_must_not_be_answered_is_recognised(sender, headers, kind):
    assert incoming(plain_mail(sender, **headers)).kind == kind


def test_multipart_report_is_a_bounce():
    message = plain_mail()
    message.replace_header("Content-Type", 'multipart/report; report-type=delivery-status; boundary="b"')
    assert incoming(message).kind == BOUNCE


def test_limits_on_images_parts_and_size():
    images = [(f"p{i}.png", PNG) for i in range(12)]
    parsed = incoming(build_request(CLIENT, SERVER, images), Limits(10_000_000, 50, 10))
    assert len(parsed.images) == 12
    assert [i.refusal for i in parsed.images[:10]] == [None] * 10
    assert all("limit of 10 images" in i.refusal for i in parsed.images[10:])

    parsed = incoming(build_request(CLIENT, SERVER, images), Limits(10_000_000, 5, 10))
    assert len(parsed.images) == 3 and "more than 5 MIME parts" in parsed.problems[0]

    parsed = incoming(build_request(CLIENT, SERVER, images), Limits(2000, 50, 10))
    assert parsed.images == [] and "too large" in parsed.problems[0]


def test_empty_attachment_is_refused_per_image():
    message = plain_mail()
    message.add_attachment(b"", maintype="image", subtype="png", filename="empty.png")
    parsed = incoming(message)
    assert [i.refusal for i in parsed.images] == [None, "empty attachment"]


def test_header_injection_through_a_copied_subject_is_impossible():
    raw = (b"From: client1@hub.test\r\nTo: server@hub.test\r\nMessage-ID: <i@x.y>\r\n"
           b"Subject: =?utf-8?q?hi=0D=0ABcc=3A_victim=40example=2Ecom?=\r\n\r\nbody\r\n")
    request = parse_incoming(raw, [SERVER], LIMITS)
    assert "\n" not in request.subject and "\r" not in request.subject
    reply = wire(build_reply(request, SERVER, [ANSWER]))
    headers = reply.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc:") for line in headers.split(b"\r\n"))


def test_hostile_message_ids_are_not_copied():
    raw = (b"From: client1@hub.test\r\nMessage-ID: <a b>\r\nReferences: <r@x.y>\r\n"
           b"Subject: s\r\n\r\nbody\r\n")
    request = parse_incoming(raw, [SERVER], LIMITS)
    assert request.message_id == "" and request.references == ["<r@x.y>"]
    assert build_reply(request, SERVER, [ANSWER])["In-Reply-To"] is None


def test_clean_text_makes_one_line():
    assert clean_text("a\r\nb\tc\x00d\u2028e") == "a b c d e"


def test_garbage_does_not_crash_the_parser():
    for raw in (b"", b"\x00\xff" * 100, b"From: <<<\r\nContent-Type: multipart/mixed\r\n\r\n--",
                b"Content-Type: image/png; name*=''%ff%fe\r\nFrom: a@b.c\r\n\r\n!!!"):
        parse_incoming(raw, [SERVER], LIMITS)


# -- ledger -------------------------------------------------------------------

class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_ledger_uses_wal_and_full_sync(tmp_path):
    Ledger(tmp_path / "state.sqlite").close()
    ledger = Ledger(tmp_path / "state.sqlite")
    assert ledger._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    ledger.close()


def test_ledger_counts_attempts_and_survives_a_crash(tmp_path):
    path = tmp_path / "state.sqlite"
    ledger = Ledger(path)
    assert ledger.begin_attempts(["pop3:u1"]) == {"pop3:u1": 1}
    assert ledger.begin_attempts(["pop3:u1", "pop3:u2"]) == {"pop3:u1": 2, "pop3:u2": 1}
    ledger.release_attempt("pop3:u1")
    # No close(): what a crashed server leaves behind must already be on disk.
    other = sqlite3.connect(path)
    assert other.execute("SELECT attempts, state FROM messages WHERE key='pop3:u1'").fetchone() == (1, SEEN)
    other.close()
    ledger.mark_answered("pop3:u1", "<m1@x.y>", "a@b.c")
    reopened = Ledger(path)
    record = reopened.get("pop3:u1")
    assert record.state == ANSWERED and record.is_final and record.message_id == "<m1@x.y>"
    assert reopened.get("pop3:u2").state == SEEN
    ledger.close()
    reopened.close()


def test_ledger_finds_a_message_again_by_message_id(tmp_path):
    with Ledger(tmp_path / "s.sqlite") as ledger:
        ledger.mark_ignored("imap:1:5", "<spam@x.y>", "x@y.z", "sender not allowed")
        ledger.mark_answered("pop3:old", "<m@x.y>", CLIENT)
        ledger.begin_attempts(["pop3:pending"])
        assert ledger.reserve("<p@x.y>", "pop3:pending", stale_before=0) is None  # being answered
        assert ledger.final_by_message_id("<m@x.y>").key == "pop3:old"
        assert ledger.final_by_message_id("<spam@x.y>").state == IGNORED
        assert ledger.final_by_message_id("<p@x.y>") is None  # not finished
        assert ledger.final_by_message_id("") is None
        finals = ledger.known_final_keys(["imap:1:5", "pop3:old", "pop3:pending", "nope"])
        assert set(finals) == {"imap:1:5", "pop3:old"}


def test_ledger_release_does_not_touch_finished_records(tmp_path):
    with Ledger(tmp_path / "s.sqlite") as ledger:
        ledger.begin_attempts(["k"])
        ledger.mark_set_aside("k", reason="failed 3 times")
        ledger.release_attempt("k")
        record = ledger.get("k")
        assert record.state == SET_ASIDE and record.attempts == 1 and record.reason == "failed 3 times"


def test_ledger_rate_counting_uses_a_sliding_window(tmp_path):
    clock = Clock()
    with Ledger(tmp_path / "s.sqlite", clock=clock) as ledger:
        for _ in range(3):
            assert ledger.take_event("A@B.C", "request", 3600, 0)
            clock.now += 1000
        assert ledger.count_events("a@b.c", 3600) == 3
        clock.now += 1500  # the first event is now 4500 s old
        assert ledger.count_events("a@b.c", 3600) == 2
        assert ledger.count_events("other@b.c", 3600) == 0
        # The latest event is 2500 s old: inside a 2501 s window, outside a 2499 s one.
        assert ledger.count_events("a@b.c", 2501) == 1 and ledger.count_events("a@b.c", 2499) == 0
        clock.now += 3 * 24 * 3600
        ledger.prune()
        assert ledger.count_events("a@b.c", 10 ** 9) == 0


# -- transport and settings ---------------------------------------------------

def test_send_with_retry_backs_off_on_transient_errors_only():
    delays, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 4:
            raise UnreachableError("down")
        return "sent"

    assert send_with_retry(flaky, attempts=5, base_delay=1, max_delay=3, sleep=delays.append) == "sent"
    assert delays == [1, 2, 3]

    def refused():
        calls.append(1)
        raise AuthError("no")

    calls.clear()
    with pytest.raises(AuthError):
        send_with_retry(refused, attempts=5, sleep=delays.append)
    assert len(calls) == 1

    with pytest.raises(TransientError):
        send_with_retry(lambda: (_ for _ in ()).throw(TransientError("x")), attempts=2,
                        sleep=lambda s: None)
    assert backoff_delay(10, 1.0, 300.0) == 300.0


ENDPOINT = Endpoint("smtp", "mail.example", 587, "starttls", None, 30.0)


@pytest.mark.parametrize("exc, error", [
    (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), AuthError),
    (smtplib.SMTPAuthenticationError(454, b"4.7.0 try later"), TransientError),
    (smtplib.SMTPRecipientsRefused({"a@b.c": (550, b"no such user")}), MessageRejected),
    (smtplib.SMTPRecipientsRefused({"a@b.c": (450, b"greylisted")}), TransientError),
    (smtplib.SMTPDataError(554, b"spam"), MessageRejected),
    (smtplib.SMTPDataError(451, b"local error"), TransientError),
    (smtplib.SMTPSenderRefused(553, b"not yours", "a@b.c"), MessageRejected),
    (smtplib.SMTPResponseException(530, b"auth required"), AuthError),
    (smtplib.SMTPResponseException(502, b"no"), PermanentError),
    (smtplib.SMTPServerDisconnected("gone"), UnreachableError),
    (ConnectionRefusedError(111, "Connection refused"), UnreachableError),
    (TimeoutError("timed out"), UnreachableError),
])
def test_smtp_failures_map_to_the_error_tree(exc, error):
    mapped = smtp_error(ENDPOINT, exc)
    assert type(mapped) is error or isinstance(mapped, error) and error is not PermanentError
    assert "mail.example:587" in str(mapped)


def test_xoauth2_string_is_the_documented_format():
    assert xoauth2_string("me@x.y", "tok") == "user=me@x.y\x01auth=Bearer tok\x01\x01"


def write_config(tmp_path, text: str):
    path = tmp_path / "config.ini"
    path.write_text(text)
    return load_config(path)


def test_credentials_never_travel_unencrypted_off_this_machine(tmp_path):
    config = write_config(tmp_path, "[client]\naddress = a@b.c\npassword_env = X\n")
    account = edge.account(config, "client")
    with pytest.raises(ConfigError, match="unencrypted"):
        check_credentials_protected(Endpoint("imap", "imap.b.c", 143, "none", None, 5), account)
    check_credentials_protected(Endpoint("imap", "127.0.0.1", 143, "none", None, 5), account)
    check_credentials_protected(Endpoint("imap", "imap.b.c", 993, "tls", None, 5), account)


def test_account_secret_is_not_in_its_repr(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMALID_TEST_SECRET", "hunter2")
    config = write_config(tmp_path, "[client]\naddress = a@b.c\npassword_env = ANIMALID_TEST_SECRET\n")
    account = edge.account(config, "client")
    assert account.password() == "hunter2" and "hunter2" not in repr(account)


def test_allowed_senders_hub_addresses_and_domains(tmp_path):
    config = write_config(tmp_path, "[hub]\ndomain = hub.test\nclients = client1, client2\n"
                                    "[server]\nallowed_senders = hub, Bob@Example.org, @friends.example\n")
    allowed = edge.allowed_senders(config)
    for address in ("client1@hub.test", "CLIENT2@hub.test", "bob@example.org", "x@friends.example"):
        assert allowed.allows(address), address
    for address in ("client3@hub.test", "server@hub.test", "eve@example.org", "x@evil.friends.example.com"):
        assert not allowed.allows(address), address


def test_allowed_senders_rejects_nonsense(tmp_path):
    config = write_config(tmp_path, "[server]\nallowed_senders = everyone\n")
    with pytest.raises(ConfigError, match="allowed_senders"):
        edge.allowed_senders(config)


# -- hostile mail (see also tests/e2e/test_hostile.py, end to end) ------------------------

@pytest.mark.parametrize("from_lines, problem", [
    ([b"client1@hub.test, client3@hub.test"], "ambiguous From"),
    ([b"client1@hub.test <client3@hub.test>"], "ambiguous From"),
    ([b"client3@hub.test", b"client1@hub.test"], "more than one From header"),
    ([b"friends: client1@hub.test, client3@hub.test;"], "ambiguous From"),
    ([], "no From header"),
])
def test_a_from_that_names_no_single_address_gets_no_answer(from_lines, problem):
    raw = b"".join(b"From: " + line + b"\r\n" for line in from_lines)
    raw += b"To: server@hub.test\r\nMessage-ID: <f@x.y>\r\nSubject: s\r\n\r\nbody\r\n"
    request = parse_incoming(raw, [SERVER], LIMITS)
    assert request.kind == NO_SENDER and request.sender == "" and problem in request.reason


def test_a_single_from_in_any_spelling_is_read():
    for value in (b"Ann <ANN@example.org>", b'"Smith, Ann" <ann@example.org>', b"ann@example.org (Ann)"):
        raw = b"From: " + value + b"\r\nMessage-ID: <f@x.y>\r\n\r\nbody\r\n"
        assert parse_incoming(raw, [SERVER], LIMITS).sender == "ann@example.org"


def test_too_many_parts_or_nesting_is_refused_before_parsing():
    many = (b'From: client1@hub.test\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n'
            + b"--p\r\nContent-Type: text/plain\r\n\r\nx\r\n" * 5000 + b"--p--\r\n")
    deep = b"From: client1@hub.test\r\n" + b"".join(
        b'Content-Type: multipart/mixed; boundary="d%d"\r\n\r\n--d%d\r\n' % (i, i) for i in range(2000))
    for raw in (many, deep):
        request = parse_incoming(raw, [SERVER], LIMITS)
        assert request.kind == REQUEST_KIND and request.images == []
        assert "far more than 50 MIME parts" in request.problems[0]


def test_mail_answering_our_reply_without_a_photo_is_not_answered():
    request = incoming(build_request(CLIENT, SERVER, [("tiger.png", PNG)]))
    reply = build_reply(request, SERVER, [ANSWER])
    assert ".animalid-reply@" in reply["Message-ID"]
    thanks = plain_mail(In_Reply_To=reply["Message-ID"])
    thanks.clear_content()
    thanks.set_content("thanks!")
    assert incoming(thanks).kind == LOOP_GUARD
    with_photo = plain_mail(In_Reply_To=reply["Message-ID"])  # a new photo in the same thread
    assert incoming(with_photo).kind == REQUEST_KIND


def test_format_characters_are_dropped_from_file_names():
    assert safe_name("cat\u202egnp.exe", 1, "image/png") == "catgnp.exe"
    assert safe_name("tiger\u200b.png", 1, "image/png") == "tiger.png"
