"""End-to-end protection (animalid/mail/protection.py): HMAC-SHA256 signatures and AES-GCM sealing.

First the formats alone (no network): what is covered, what any change breaks,
replays, keys from the environment or a command and never from the file. Then
end to end through the real hub with the real server and classifier: a round trip
with keys on both sides, unsigned and wrong-key requests refused (and told, only
when configured), forged and tampered replies refused by the client while the
genuine answer still gets through.
"""

from __future__ import annotations

import email.policy
import logging
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from animalid.cli import settings as edge
from animalid.client.requester import AnswerTimeout
from animalid.config import load_config
from animalid.errors import ConfigError
from animalid.mail.messages import (
    LOOP_GUARD,
    REQUEST_KIND,
    Limits,
    build_reply,
    build_request,
    parse_bytes,
    parse_incoming,
    parse_reply,
)
from animalid.mail.protection import SIGNATURE_HEADER, Protection
from animalid.server.ledger import ANSWERED, REFUSED
from animalid.testing.harness import (
    CLIENTS,
    assert_answers,
    empty_mailbox,
    ledger_state,
    make_config,
    photo,
    replies_by_request,
    running_server,
    send_mx,
    wait_for,
)

SERVER = "server@hub.test"
CLIENT = "client1@hub.test"
SIGNING = "signing-secret-for-tests-0123456789"
ENCRYPTION = "encryption-secret-for-tests-0123456789"
KEYS = Protection.from_secrets(SIGNING, ENCRYPTION)
SIGN_ONLY = Protection.from_secrets(SIGNING)
LIMITS = Limits(max_message_bytes=5_000_000, max_parts=50, max_images=10)
ANSWER = {"file": "tiger.png", "common_name": "Tiger", "probability": 97.0}


def wire(message: EmailMessage) -> bytes:
    return message.as_bytes(policy=email.policy.SMTP)


def request_bytes(protection: Protection | None = KEYS, images=None) -> bytes:
    images = images or [("tiger.png", photo("tiger.png")), ("dog.png", photo("dog.png"))]
    return wire(build_request(CLIENT, SERVER, images, protection=protection))


def read_request(raw: bytes, protection: Protection | None = KEYS):
    return parse_incoming(raw, [SERVER], LIMITS, protection)


def replace_header(raw: bytes, name: bytes, value: bytes) -> bytes:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [line if not line.lower().startswith(name.lower() + b":") else name + b": " + value
             for line in head.split(b"\r\n")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


# -- the formats --------------------------------------------------------------

def test_signed_and_encrypted_request_round_trip_hides_the_photos():
    raw = request_bytes()
    assert b"tiger.png" not in raw and b"\x89PNG" not in raw and b"iVBORw0KGgo" not in raw
    assert SIGNATURE_HEADER.encode() in raw
    request = read_request(raw)
    assert request.kind == REQUEST_KIND and not request.protection_problem
    assert [(i.name, i.data) for i in request.images] == [("tiger.png", photo("tiger.png")),
                                                           ("dog.png", photo("dog.png"))]


def test_sealed_reply_round_trip_hides_the_answers():
    request = read_request(request_bytes())
    raw = wire(build_reply(request, SERVER, [ANSWER], protection=KEYS))
    assert b"Tiger" not in raw and b"answers.json" not in raw
    reply = parse_reply(raw, KEYS)
    assert reply.answers == [ANSWER] and not reply.protection_problem
    assert reply.in_reply_to == [request.message_id]


@pytest.mark.parametrize("name, value", [
    (b"From", b"client3@hub.test"),
    (b"To", b"someone@else.example"),
    (b"Date", b"Mon, 01 Jan 2024 00:00:00 +0000"),
    (b"Message-ID", b"<another@hub.test>"),
])
def test_a_changed_signed_header_breaks_the_signature(name, value):
    raw = replace_header(request_bytes(SIGN_ONLY), name, value)
    assert "bad signature" in read_request(raw, SIGN_ONLY).protection_problem


def test_a_changed_or_added_attachment_breaks_the_signature():
    message = build_request(CLIENT, SERVER, [("tiger.png", photo("tiger.png"))], protection=SIGN_ONLY)
    swapped = parse_bytes(wire(message))
    next(swapped.iter_attachments()).set_content(photo("dog.png"), maintype="image", subtype="png",
                                                 filename="tiger.png")
    assert "bad signature" in read_request(wire(swapped), SIGN_ONLY).protection_problem
    message.add_attachment(photo("dog.png"), maintype="image", subtype="png", filename="extra.png")
    assert "bad signature" in read_request(wire(message), SIGN_ONLY).protection_problem


def test_the_readable_body_is_not_covered_so_gateway_footers_pass():
    raw = request_bytes(SIGN_ONLY)
    raw = raw.replace(b"the answer comes back by mail.", b"the answer comes back by mail.\r\n"
                                                          b"-- \r\nScanned by the mail gateway.", 1)
    assert b"Scanned by" in raw and not read_request(raw, SIGN_ONLY).protection_problem


def test_unsigned_or_unencrypted_mail_is_refused_when_keys_are_set():
    assert read_request(request_bytes(None), SIGN_ONLY).protection_problem.startswith("not signed")
    only_signed = request_bytes(SIGN_ONLY)
    assert read_request(only_signed, KEYS).protection_problem.startswith("not encrypted")
    plain_reply = wire(build_reply(read_request(request_bytes(None), None), SERVER, [ANSWER]))
    reply = parse_reply(plain_reply, KEYS)
    assert reply.answers is None and reply.protection_problem.startswith("not signed")


def test_a_signed_notice_of_errors_may_come_unencrypted_but_results_may_not():
    request = read_request(request_bytes(None), None)
    notice = wire(build_reply(request, SERVER, [{"file": "(message)", "error": "not signed"}],
                              protection=SIGN_ONLY))
    assert parse_reply(notice, KEYS).answers == [{"file": "(message)", "error": "not signed"}]
    results = wire(build_reply(request, SERVER, [ANSWER], protection=SIGN_ONLY))
    assert parse_reply(results, KEYS).protection_problem.startswith("not encrypted")
    unsigned_notice = wire(build_reply(request, SERVER, [{"file": "(message)", "error": "x"}]))
    assert parse_reply(unsigned_notice, KEYS).protection_problem.startswith("not signed")


def test_wrong_keys_are_refused():
    raw = request_bytes()
    assert "bad signature" in read_request(
        raw, Protection.from_secrets("another-signing-secret!", ENCRYPTION)).protection_problem
    assert "cannot decrypt" in read_request(
        raw, Protection.from_secrets(None, "another-encryption-secret")).protection_problem


def test_a_sealed_part_cannot_be_replayed_into_another_message():
    encrypt_only = Protection.from_secrets(None, ENCRYPTION)
    original = parse_bytes(request_bytes(encrypt_only))
    replay = build_request(CLIENT, SERVER, [("x.png", photo("bison.png"))], protection=encrypt_only)
    sealed = next(p for p in original.iter_attachments())
    replay_sealed = next(p for p in replay.iter_attachments())
    replay_sealed.set_content(sealed.get_payload(decode=True), maintype="application",
                              subtype="octet-stream", filename="animalid-sealed.bin")
    assert "cannot decrypt" in read_request(wire(replay), encrypt_only).protection_problem


def test_a_request_signature_does_not_pass_as_a_reply():
    raw = request_bytes(SIGN_ONLY)
    assert "bad signature" in parse_reply(raw, SIGN_ONLY).protection_problem


def test_old_signed_mail_is_refused_so_it_cannot_be_replayed_later():
    short_lived = Protection.from_secrets(SIGNING, max_age_s=3600)
    message = build_request(CLIENT, SERVER, [("tiger.png", photo("tiger.png"))],
                            now=datetime_hours_ago(2), protection=short_lived)
    assert "away from now" in read_request(wire(message), short_lived).protection_problem
    fresh = build_request(CLIENT, SERVER, [("tiger.png", photo("tiger.png"))], protection=short_lived)
    assert not read_request(wire(fresh), short_lived).protection_problem


def datetime_hours_ago(hours: float):
    from datetime import datetime, timedelta

    return datetime.now().astimezone() - timedelta(hours=hours)


def test_over_size_or_over_complex_mail_is_refused_when_keys_are_set():
    raw = request_bytes()
    request = parse_incoming(raw, [SERVER], Limits(2000, 50, 10), KEYS)
    assert request.protection_problem.startswith("cannot be checked: the message is too large")


def test_loop_guard_and_keys_work_together():
    request = read_request(request_bytes())
    reply = parse_bytes(wire(build_reply(request, SERVER, [ANSWER], protection=KEYS)))
    auto_answer = EmailMessage()
    auto_answer["From"], auto_answer["To"] = CLIENT, SERVER
    auto_answer["Message-ID"] = "<auto-1@hub.test>"
    auto_answer["In-Reply-To"] = reply["Message-ID"]
    auto_answer.set_content("I am away until Monday.")
    assert read_request(wire(auto_answer), None).kind == LOOP_GUARD
    assert read_request(wire(auto_answer), KEYS).protection_problem.startswith("not signed")


# -- keys from the configuration ----------------------------------------------------

def security_config(tmp_path: Path, text: str):
    path = tmp_path / "config.ini"
    path.write_text("[security]\n" + text)
    return load_config(path)


def test_keys_come_from_the_environment_or_a_command(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMALID_TEST_SIGNING", SIGNING)
    config = security_config(tmp_path, "signing_key_env = ANIMALID_TEST_SIGNING\n"
                                       f"encryption_key_command = echo {ENCRYPTION}\n")
    protection = edge.protection(config)
    assert protection.signs and protection.encrypts
    assert protection.signing_key == KEYS.signing_key and protection.encryption_key == KEYS.encryption_key
    assert SIGNING not in repr(protection) and str(protection.signing_key) not in repr(protection)


def test_no_keys_means_no_protection(tmp_path):
    assert not edge.protection(security_config(tmp_path, "signing_key_env =\n")).active
    path = tmp_path / "bare.ini"
    path.write_text("[server]\n")
    assert not edge.protection(load_config(path)).active


@pytest.mark.parametrize("text, problem", [
    ("signing_key_env = ANIMALID_TEST_UNSET_VARIABLE\n", "is not set"),
    ("signing_key_command = echo short\n", "shorter than 16"),
    (f"signing_key = {SIGNING}\n", "never go in this file"),
    ("encryption_key_command = false\n", "exited 1"),
])
def test_a_named_key_that_is_missing_or_weak_is_a_config_error(tmp_path, text, problem):
    with pytest.raises(ConfigError, match=problem) as caught:
        edge.protection(security_config(tmp_path, text))
    assert SIGNING not in str(caught.value)


# -- end to end -----------------------------------------------------------------------

@pytest.fixture
def keyed(mailhub, tmp_path, monkeypatch):
    """config(name, client, **security) -> path; the server and client1 share the keys."""
    monkeypatch.setenv("ANIMALID_TEST_SIGNING", SIGNING)
    monkeypatch.setenv("ANIMALID_TEST_ENCRYPTION", ENCRYPTION)
    shared = {"signing_key_env": "ANIMALID_TEST_SIGNING", "encryption_key_env": "ANIMALID_TEST_ENCRYPTION"}

    def config(name: str, client: str = "client1", security: dict | None = None,
               notify: bool = False, **server) -> Path:
        settings = dict(shared) if security is None else security
        settings["notify_signature_failures"] = "yes" if notify else "no"
        return make_config(mailhub, tmp_path, client, receive="imap", server_receive="imap",
                           security_settings=settings, name=f"{name}.ini", rate_limit_per_hour=0,
                           # The [security] check proves the sender itself, whatever the provider
                           # says: forged mail arrives through the MX port with no vouching header.
                           require_authentication="no", **server)

    empty_mailbox(config("empty"), "server")
    for client in CLIENTS:
        empty_mailbox(config(f"empty-{client}", client), "client")
    return config


def raw_messages(config_path: Path, role: str) -> list[bytes]:
    with edge.mailbox(load_config(config_path), role, "imap") as box:
        return [data for data in box.fetch(box.list_messages(), 50_000_000).values()]


def test_round_trip_with_keys_on_both_sides(keyed, classifier):
    config = keyed("keys")
    with edge.requester(load_config(config)) as requester:
        message_id = requester.send([("tiger.png", photo("tiger.png")), ("dog.png", photo("dog.png"))])
        (request,) = wait_for(lambda: raw_messages(config, "server"), what="the request")
        assert b"tiger.png" not in request and b"iVBORw0KGgo" not in request  # sealed on the wire
        with running_server(config, classifier):
            wait_for(lambda: ledger_state(config, message_id) == ANSWERED, timeout=60, what="answer")
            (reply,) = wait_for(lambda: raw_messages(config, "client"), what="the reply")
            assert b"Felidae" not in reply and SIGNATURE_HEADER.encode() in reply
            answers = requester.wait([message_id], timeout=30)[message_id]
    assert_answers(answers, ["tiger.png", "dog.png"])


def test_unsigned_request_is_refused_with_a_log_line_and_no_reply(keyed, classifier, caplog):
    server_config = keyed("server")
    keyless = keyed("keyless", "client2", security={})
    caplog.set_level(logging.INFO, logger="animalid.server")
    with running_server(server_config, classifier):
        with edge.requester(load_config(keyless)) as requester:
            message_id = requester.send([("tiger.png", photo("tiger.png"))])
            wait_for(lambda: ledger_state(server_config, message_id) == REFUSED, what="the refusal")
            time.sleep(0.5)
    assert f"{message_id} from client2@hub.test: refused (security check failed: not signed" in caplog.text
    assert replies_by_request(keyless) == {}


def test_wrong_key_is_refused_and_only_allowed_senders_are_told(keyed, classifier, caplog):
    server_config = keyed("server", notify=True,
                          allowed_senders="client1@hub.test, client2@hub.test")
    wrong = keyed("wrong", "client1", security={"signing_key_command": "echo a-wrong-signing-key-000"})
    keyless = keyed("keyless", "client2", security={})
    stranger = keyed("stranger", "client3", security={})
    caplog.set_level(logging.INFO, logger="animalid.server")
    with running_server(server_config, classifier):
        with edge.requester(load_config(wrong)) as wrong_client, \
                edge.requester(load_config(keyless)) as keyless_client, \
                edge.requester(load_config(stranger)) as stranger_client:
            wrong_id = wrong_client.send([("tiger.png", photo("tiger.png"))])
            keyless_id = keyless_client.send([("dog.png", photo("dog.png"))])
            stranger_id = stranger_client.send([("dog.png", photo("dog.png"))])
            # The keyless client reads the server's notice (it checks nothing) ...
            answers = keyless_client.wait([keyless_id], timeout=30)[keyless_id]
            assert "not signed" in answers[0]["error"]
            # ... the wrong-key client refuses even that: it cannot verify the server either.
            wait_for(lambda: replies_by_request(wrong), what="the notice to the wrong-key client")
            with pytest.raises(AnswerTimeout, match="replies refused: bad signature"):
                wrong_client.wait([wrong_id], timeout=2)
            wait_for(lambda: ledger_state(server_config, stranger_id) == REFUSED, what="stranger")
    assert "refused (security check failed: bad signature" in caplog.text
    assert "refused (sender not allowed)" in caplog.text
    assert replies_by_request(stranger) == {}


def test_forged_and_tampered_replies_are_refused_and_the_genuine_one_accepted(
        mailhub, keyed, classifier):
    config = keyed("keys")
    with edge.requester(load_config(config)) as requester:
        message_id = requester.send([("bison.png", photo("bison.png"))])
        (raw,) = wait_for(lambda: raw_messages(config, "server"), what="the request")
        request = parse_incoming(raw, [SERVER], LIMITS, KEYS)
        assert not request.protection_problem
        fake = [{"file": "bison.png", "common_name": "Unicorn", "probability": 100.0}]
        unsigned = build_reply(request, SERVER, fake)
        wrong_key = build_reply(request, SERVER, fake, protection=Protection.from_secrets(
            "a-forger-signing-key-0000", "a-forger-encryption-key-00"))
        tampered = wire(build_reply(request, SERVER, fake, protection=KEYS))
        tampered = replace_header(tampered, b"Date", b"Mon, 01 Jan 2024 00:00:00 +0000")
        for forged in (wire(unsigned), wire(wrong_key), tampered):
            send_mx(mailhub, forged, SERVER, [CLIENT])
        wait_for(lambda: len(raw_messages(config, "client")) == 3, what="the forged replies")
        with pytest.raises(AnswerTimeout, match="replies refused"):
            requester.wait([message_id], timeout=2)
        assert "bad signature" in requester.refused_replies[message_id]
        with running_server(config, classifier):
            answers = requester.wait([message_id], timeout=60)[message_id]
    assert_answers(answers, ["bison.png"])
    assert len(raw_messages(config, "client")) == 3  # the forgeries stay for a person to look at
