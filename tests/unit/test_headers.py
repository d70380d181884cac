"""The shared mail helpers: header reading, message ids, one-line text, server replies."""

from __future__ import annotations

import email
import email.policy

from animalid.mail.headers import first_message_id, message_ids, one_line, read_header, server_text


def test_server_text_never_shows_a_bytes_repr():
    # imapclient's LoginError carries str(bytes): "b'[AUTHENTICATIONFAILED] ...'".
    assert server_text("b'[AUTHENTICATIONFAILED] Authentication failed.'") == \
        "[AUTHENTICATIONFAILED] Authentication failed."
    assert server_text(b"-ERR [AUTH] Authentication failed.") == "-ERR [AUTH] Authentication failed."
    assert server_text(Exception(b"451 try\r\nlater")) == "451 try later"
    assert len(server_text("x" * 1000)) == 300


def test_one_line_removes_controls_and_line_separators():
    assert one_line("a\r\nb\x00c\u2028d   e", 100) == "a b c d e"
    assert one_line(None, 10) == ""
    assert one_line("abcdef", 3) == "abc"


def test_message_ids_in_order_and_the_first():
    value = "junk <a@b> <c@d>, <not an id> <e@f>"
    assert message_ids(value) == ["<a@b>", "<c@d>", "<e@f>"]
    assert first_message_id(value) == "<a@b>" and first_message_id("none") == ""


def test_read_header_survives_a_header_the_parser_rejects():
    raw = b"From: a@b\r\nSubject: =?utf-8?q?broken\r\nMessage-ID: <x@y>\r\n\r\nbody"
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert read_header(message, "Message-ID") == "<x@y>"
    assert "broken" in read_header(message, "Subject")
    assert read_header(message, "X-Absent") == ""
