"""The hub's Authentication-Results stamp: written like a provider's, forged copies removed.

End to end (the SMTP front writing it, a server believing it): tests/e2e/test_hardening.py.
"""

from __future__ import annotations

import email
import email.policy

from animalid.devhub.authstamp import stamp
from animalid.mail.authresults import check_sender

ID = "hub.test"


def headers(raw: bytes) -> list[tuple[str, str]]:
    return email.message_from_bytes(raw, policy=email.policy.default).raw_items()


def test_authenticated_submission_gets_auth_pass_for_its_login():
    raw = b"From: client1@hub.test\r\nSubject: x\r\n\r\nbody\r\n"
    out = stamp(raw, ID, "hub.test", "client1@hub.test")
    assert out.startswith(b"Authentication-Results: hub.test; auth=pass smtp.auth=client1@hub.test\r\n")
    assert out.endswith(b"\r\n\r\nbody\r\n")
    assert check_sender(headers(out), "client1@hub.test", (ID,)).trusted
    assert not check_sender(headers(out), "client2@hub.test", (ID,)).trusted


def test_mx_mail_claiming_the_hubs_domain_gets_dmarc_fail():
    raw = b'From: "Client" <Client1@Hub.Test>\r\nSubject: x\r\n\r\nbody'
    out = stamp(raw, ID, "hub.test", None)
    assert b"dmarc=fail" in out.split(b"\r\n")[0] and b"header.from=hub.test" in out
    assert not check_sender(headers(out), "client1@hub.test", (ID,)).trusted


def test_mx_mail_from_elsewhere_gets_none():
    out = stamp(b"From: a@example.org\r\n\r\nb", ID, "hub.test", None)
    assert out.startswith(b"Authentication-Results: hub.test; none\r\n")


def test_forged_headers_claiming_the_hub_are_removed_folded_or_not():
    raw = (b"Authentication-Results: hub.test; dmarc=pass header.from=hub.test\r\n"
           b"authentication-results:   (x) HUB.TEST;\r\n\tauth=pass smtp.auth=client1@hub.test\r\n"
           b"Authentication-Results: other.example; spf=pass (mentions nothing)\r\n"
           b"Authentication-Results: other.example; note=hub.test\r\n"
           b"From: client1@hub.test\r\n\r\nAuthentication-Results: hub.test; in the body stays\r\n")
    out = stamp(raw, ID, "hub.test", None)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.count(b"hub.test;") == 1  # only the hub's own
    assert b"other.example; spf=pass" in head and b"note=hub.test" not in head
    assert body == b"Authentication-Results: hub.test; in the body stays\r\n"
    assert not check_sender(headers(out), "client1@hub.test", (ID,)).trusted


def test_bare_lf_and_header_only_messages():
    assert stamp(b"From: a@hub.test\n\nbody\n", ID, "hub.test", "a@hub.test").endswith(b"\n\nbody\n")
    assert stamp(b"From: a@hub.test\r\n", ID, "hub.test", None).count(b"Authentication-Results") == 1
    assert stamp(b"\r\nbody", ID, "hub.test", None).endswith(b"\r\nbody")
