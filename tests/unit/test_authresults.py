"""RFC 8601 Authentication-Results: the parser, and the decision whether a From is genuine.

The provider headers below are the shapes Gmail, Microsoft 365 / Outlook.com
and Fastmail write (public examples, addresses changed); the hostile ones
are what a sender can put in its own headers or echo into the provider's.
"""

from __future__ import annotations

import email
import email.policy
import random
import re
import time

import pytest

from animalid.mail import authresults as ar
from animalid.mail.authresults import aligned, check_sender, parse, parse_trusted_ids

AR = "Authentication-Results"

GMAIL = ("mx.google.com;\r\n       dkim=pass header.i=@example.com header.s=20230601 header.b=Ax3+ab/Q;\r\n"
         "       spf=pass (google.com: domain of alice@example.com designates 209.85.220.41 as "
         "permitted sender) smtp.mailfrom=alice@example.com;\r\n"
         "       dmarc=pass (p=NONE sp=QUARANTINE dis=NONE) header.from=example.com")
GMAIL_FORGED = ("mx.google.com; spf=pass (google.com: domain of x@evil.example designates 1.2.3.4 as "
                "permitted sender) smtp.mailfrom=x@evil.example; dmarc=fail (p=NONE sp=NONE dis=NONE) "
                "header.from=example.com")
OUTLOOK = ("spf=pass (sender IP is 209.85.219.172) smtp.mailfrom=example.com; contoso.com; "
           "dkim=pass (signature was verified) header.d=example.com;contoso.com; dmarc=pass "
           "action=none header.from=example.com;compauth=pass reason=100")
OUTLOOK_BESTGUESS = ("spf=pass (sender IP is 1.1.1.1) smtp.mailfrom=evil.example; contoso.com; "
                     "dkim=none (message not signed) header.d=none;contoso.com; "
                     "dmarc=bestguesspass action=none header.from=example.com;compauth=pass reason=109")
FASTMAIL = [
    ("mx3.messagingengine.com; x-csa=none; x-me-sender=none; x-ptr=pass smtp.helo=mail-a.example.com "
    "policy.ptr=mail-a.example.com"),
    "mx3.messagingengine.com; bimi=skipped (DMARC Policy is not at enforcement)",
    "mx3.messagingengine.com; arc=none (no signatures found)",
    ("mx3.messagingengine.com; dkim=pass (2048-bit rsa key sha256) header.d=example.com "
    "header.i=@example.com header.b=Kq3xYz9a header.a=rsa-sha256 header.s=fm1 x-bits=2048; "
    "dmarc=pass policy.published-domain-policy=none policy.applied-disposition=none "
    "policy.evaluated-disposition=none (p=none,sp=none,has-list-id=no,d=none,d.eval=none) "
    "policy.policy-from=p header.from=example.com; iprev=pass smtp.remote-ip=203.0.113.9 "
    "(mail-a.example.com); spf=pass smtp.mailfrom=alice@example.com smtp.helo=mail-a.example.com; "
    "x-aligned-from=pass (Address match); x-tls=pass smtp.version=TLSv1.3 smtp.cipher=TLS_AES_256_GCM_SHA384 "
    "smtp.bits=256/256"),
]
HUB_SUBMISSION = "hub.test; auth=pass smtp.auth=client1@hub.test smtp.mailfrom=client1@hub.test"
HUB_MX = "hub.test; auth=none; dmarc=fail (not authenticated) header.from=hub.test"


def fields(*values: str, others: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, str]]:
    return [*others, *((AR, value) for value in values), ("From", "x"), ("Subject", "s")]


# -- parsing --------------------------------------------------------------------

def test_gmail_header_parses_with_folding_comments_and_header_i():
    results = parse(GMAIL)
    assert results is not None and results.authserv_id == "mx.google.com"
    methods = {r.method: r for r in results.results}
    assert methods["dkim"].result == "pass" and methods["dkim"].get("header.i") == "@example.com"
    assert methods["spf"].get("smtp.mailfrom") == "alice@example.com"
    assert methods["dmarc"].get("header.from") == "example.com"


def test_microsoft_header_without_authserv_id_and_with_stray_domains():
    results = parse(OUTLOOK)
    assert results is not None and results.authserv_id == ""
    assert [(r.method, r.result) for r in results.results] == \
        [("spf", "pass"), ("dkim", "pass"), ("dmarc", "pass"), ("compauth", "pass")]
    assert results.results[2].get("action") == "none" and results.results[3].reason == "100"


def test_microsoft_quirks_empty_header_from_and_properties_after_their_own_semicolon():
    empty = parse("spf=temperror (sender IP is 1.1.1.1) smtp.helo=tes.test.ru; mydomain.com; dkim=none "
                  "(message not signed) header.d=none;mydomain.com; dmarc=none action=none header.from=;")
    assert empty is not None and empty.results[2].get("header.from") == ""
    split = parse("spf=pass (sender IP is 209.85.222.48); smtp.mailfrom=valimail.com; dkim=pass "
                  "(signature was verified); header.d=valimail.com;dmarc=pass action=none; "
                  "header.from=valimail.com;compauth=pass reason=100")
    assert split is not None
    by_method = {r.method: r for r in split.results}
    assert by_method["dkim"].get("header.d") == "valimail.com"
    assert by_method["dmarc"].get("header.from") == "valimail.com"


def test_version_no_result_quoted_values_and_method_versions():
    assert parse("mx.example.org 1; none") == ar.AuthResults("mx.example.org", ())
    quoted = parse('"mx.example.org"; auth/1=pass smtp.auth="alice smith"@example.org reason="ok then"')
    assert quoted is not None and quoted.authserv_id == "mx.example.org"
    assert quoted.results[0].method == "auth"
    assert quoted.results[0].get("smtp.auth") == "alice smith@example.org"
    assert quoted.results[0].reason == "ok then"
    assert parse("mx.example.org") == ar.AuthResults("mx.example.org", ())
    assert parse("MX.Example.ORG.; DKIM=PASS header.d=Example.ORG").results[0] == \
        ar.MethodResult("dkim", "pass", (("header.d", "Example.ORG"),))


@pytest.mark.parametrize("value", [
    "", "   ", ";", "(only a comment)", "mx.example.org; dkim", "mx.example.org; dkim=",
    "mx.example.org; =pass", "mx.example.org junk; dkim=pass", "mx.example.org; dkim=pass (unclosed",
    'mx.example.org; dkim=pass header.d="unclosed', "mx.example.org; dkim=pass) header.d=x",
    "mx.example.org; dkim=pass header.d", "mx.example.org; header.d=x; dkim=pass",
    "mx.example.org; dkim==pass", "mx.example.org; dkim=pass ;; = ;",
    "x" * (ar.MAX_VALUE_CHARS + 1), "mx; " + "(" * 20 + ")" * 20 + "dkim=pass",
    "mx; " + "; ".join(["a=b"] * 1500),
])
def test_malformed_headers_read_as_none(value):
    assert parse(value) is None


def test_parse_never_raises_on_random_bytes():
    rng = random.Random(8601)
    alphabet = 'ab.=;()"\\@ \t\r\n\x00\x7f\u2028é' + "dkim=pass;dmarc"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        for lenient in (False, True):
            result = parse(text, lenient)
            assert result is None or isinstance(result, ar.AuthResults)
        assert ar.authserv_id_of(text) is None or isinstance(ar.authserv_id_of(text), str)
    assert parse(None) is None  # type: ignore[arg-type]


def test_parsing_is_linear_on_huge_and_deeply_nested_input():
    started = time.perf_counter()
    for value in ("(" * 8000 + ")" * 8000, '"' + "\\" * 16000, "a=" * 8000, "(" + "\\(" * 8000 + ")",
                  "; ".join(["dkim=pass header.d=x.example"] * 500)):
        parse(value)
        parse(value, True)
    assert time.perf_counter() - started < 5  # generous: each is milliseconds


# -- trusted ids and alignment --------------------------------------------------

def test_trusted_ids_setting():
    assert parse_trusted_ids("mx.google.com") == ("mx.google.com",)
    assert parse_trusted_ids(" *.messagingengine.com, none ") == ("*.messagingengine.com", "none")
    assert parse_trusted_ids("Hub.Test.") == ("hub.test",)
    assert parse_trusted_ids("") == ()
    for bad in ("mx..google.com", "*", "*.", "a*.b", "mx.google.com;", "http://x"):
        with pytest.raises(ValueError):
            parse_trusted_ids(bad)
    assert ar.id_matches("mx3.messagingengine.com", ("*.messagingengine.com",))
    assert not ar.id_matches("messagingengine.com", ("*.messagingengine.com",))
    assert not ar.id_matches("evilmessagingengine.com", ("*.messagingengine.com",))
    assert ar.id_matches("", ("none",)) and not ar.id_matches("", ("mx.google.com",))


@pytest.mark.parametrize("signer, sender, expected", [
    ("example.com", "example.com", True),
    ("Example.COM.", "example.com", True),
    ("mail.example.com", "example.com", True),  # relaxed: a subdomain signs for its parent
    ("example.com", "eu.example.com", True),
    ("example.co.uk", "mail.example.co.uk", True),
    ("a.example.com", "b.example.com", False),  # siblings: DMARC would align; we refuse (safe side)
    ("evil.example", "example.com", False),
    ("co.uk", "example.co.uk", False),  # a public suffix is nobody's organisation
    ("com", "example.com", False),
    ("ample.com", "example.com", False),
    ("", "example.com", False),
    ("exa mple.com", "example.com", False),
])
def test_alignment(signer, sender, expected):
    assert aligned(signer, sender) is expected


# -- the decision: what passes --------------------------------------------------

def test_gmail_dmarc_pass_is_trusted():
    verdict = check_sender(fields(GMAIL), "Alice@Example.com", ("mx.google.com",))
    assert verdict.trusted and "dmarc=pass" in verdict.reason


def test_dkim_pass_from_header_i_alone_is_aligned():
    value = "mx.google.com; dkim=pass header.i=@mail.example.com header.s=s1; spf=none"
    assert check_sender(fields(value), "alice@example.com", ("mx.google.com",)).trusted


def test_outlook_header_without_authserv_id_with_the_none_setting():
    assert check_sender(fields(OUTLOOK), "bob@example.com", ("none",)).trusted
    # Not with a named id: Microsoft's header names nobody.
    assert not check_sender(fields(OUTLOOK), "bob@example.com", ("mx.microsoft.com",)).trusted
    # bestguesspass and compauth=pass are not proof.
    assert not check_sender(fields(OUTLOOK_BESTGUESS), "bob@example.com", ("none",)).trusted


def test_fastmail_block_of_four_headers_with_a_wildcard_id():
    verdict = check_sender(fields(*FASTMAIL), "alice@example.com", ("*.messagingengine.com",))
    assert verdict.trusted, verdict.reason


def test_hub_submission_auth_pass_is_trusted_for_its_owner_only():
    assert check_sender(fields(HUB_SUBMISSION), "client1@hub.test", ("hub.test",)).trusted
    verdict = check_sender(fields(HUB_SUBMISSION), "client2@hub.test", ("hub.test",))
    assert not verdict.trusted and "auth=pass" in verdict.reason
    assert not check_sender(fields(HUB_MX), "client1@hub.test", ("hub.test",)).trusted


def test_works_on_a_parsed_message_raw_items():
    raw = (f"Received: by mx.google.com\r\n{AR}: {GMAIL}\r\nFrom: Alice <alice@example.com>\r\n"
           "Subject: photo\r\n\r\nbody\r\n").encode()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert check_sender(message.raw_items(), "alice@example.com", ("mx.google.com",)).trusted


# -- the decision: what is refused ----------------------------------------------

def test_no_header_or_no_trusted_id_is_refused():
    assert not check_sender(fields(), "alice@example.com", ("mx.google.com",)).trusted
    assert "no trusted" in check_sender(fields(GMAIL), "alice@example.com", ()).reason
    assert not check_sender(fields(GMAIL), "not-an-address", ("mx.google.com",)).trusted
    verdict = check_sender(fields(GMAIL), "alice@example.com", ("mx.fastmail.com",))
    assert not verdict.trusted and "no Authentication-Results header from mx.fastmail.com" in verdict.reason


def test_dmarc_fail_is_refused_and_vetoes_an_aligned_dkim_pass():
    assert not check_sender(fields(GMAIL_FORGED), "alice@example.com", ("mx.google.com",)).trusted
    mixed = "mx.google.com; dkim=pass header.d=example.com; dmarc=fail header.from=example.com"
    verdict = check_sender(fields(mixed), "alice@example.com", ("mx.google.com",))
    assert not verdict.trusted and "dmarc=fail" in verdict.reason


def test_pass_for_another_domain_or_address_is_refused():
    for value in ("mx.google.com; dmarc=pass header.from=evil.example",
                  "mx.google.com; dmarc=pass",  # no header.from: for which domain?
                  "mx.google.com; dkim=pass header.d=evil.example",
                  "mx.google.com; dkim=pass header.d=example.com.evil.example",
                  "mx.google.com; dkim=pass header.d=com",
                  "mx.google.com; spf=pass smtp.mailfrom=alice@example.com",  # SPF alone: the envelope
                  "mx.google.com; auth=pass smtp.auth=alice",  # a login name, not the address
                  "mx.google.com; auth=pass smtp.auth=alice@example.com.evil",
                  "mx.google.com; arc=pass; x-aligned-from=pass; compauth=pass"):
        assert not check_sender(fields(value), "alice@example.com", ("mx.google.com",)).trusted, value


def test_a_forged_header_below_the_providers_is_ignored():
    forged = "mx.google.com; dmarc=pass header.from=example.com"
    # The provider's own header on top says fail; the sender's copy below says pass.
    assert not check_sender(fields(GMAIL_FORGED, forged), "alice@example.com", ("mx.google.com",)).trusted
    # Same, with a Received line between (the usual case).
    layout = [(AR, GMAIL_FORGED), ("Received", "from evil"), (AR, forged)]
    assert not check_sender(layout, "alice@example.com", ("mx.google.com",)).trusted
    # A forged header with no provider header on top is the only one: but it only counts
    # when it carries the trusted id, and a provider always writes its own on top.
    assert check_sender(fields(forged), "alice@example.com", ("mx.google.com",)).trusted


def test_headers_of_other_ids_above_the_trusted_one_do_not_count():
    other = "relay.example.net; dmarc=pass header.from=example.com"
    verdict = check_sender(fields(other, GMAIL_FORGED), "alice@example.com", ("mx.google.com",))
    assert not verdict.trusted
    assert check_sender(fields(GMAIL_FORGED, GMAIL), "alice@example.com", ("relay.example.net",)).trusted \
        is False


def test_a_forged_header_adjacent_to_the_block_makes_it_ambiguous():
    forged_dkim = "mx3.messagingengine.com; dkim=pass header.d=example.com"
    failing = [*FASTMAIL[:3], FASTMAIL[3].replace("dkim=pass", "dkim=fail").replace("dmarc=pass", "dmarc=none")]
    verdict = check_sender(fields(*failing, forged_dkim), "alice@example.com", ("*.messagingengine.com",))
    assert not verdict.trusted and "ambiguous" in verdict.reason
    # Microsoft, id-less: a sender's id-less header right below is ambiguous too.
    forged_ms = "dmarc=pass action=none header.from=example.com"
    failing_ms = OUTLOOK.replace("dmarc=pass", "dmarc=fail").replace("dkim=pass", "dkim=none")
    assert not check_sender(fields(failing_ms, forged_ms), "bob@example.com", ("none",)).trusted


def test_conflicting_results_in_one_header_are_refused():
    for value in ("mx.google.com; dmarc=fail header.from=example.com; dmarc=pass header.from=example.com",
                  "mx.google.com; dmarc=pass header.from=example.com; dmarc=none header.from=example.com",
                  "hub.test; auth=pass smtp.auth=alice@example.com; auth=fail smtp.auth=alice@example.com"):
        assert not check_sender(fields(value), "alice@example.com", ("mx.google.com", "hub.test")).trusted


def test_an_unreadable_trusted_header_is_refused_not_skipped():
    broken = "mx.google.com; dmarc=pass header.from=example.com (unclosed"
    verdict = check_sender(fields(broken, GMAIL), "alice@example.com", ("mx.google.com",))
    assert not verdict.trusted and "cannot be read" in verdict.reason


def test_too_many_authentication_results_headers_before_the_trusted_one():
    noise = [f"relay{number}.example.net; none" for number in range(ar.MAX_HEADERS)]
    assert not check_sender(fields(*noise, GMAIL), "alice@example.com", ("mx.google.com",)).trusted
    assert check_sender(fields(*noise[:-1], GMAIL), "alice@example.com", ("mx.google.com",)).trusted


def test_an_rfc2047_encoded_word_is_not_decoded_into_results():
    encoded = "mx.google.com; spf=none smtp.mailfrom==?utf-8?q?x=3B_dmarc=3Dpass_header.from=3Dexample.com?="
    raw = f"{AR}: {encoded}\r\nFrom: alice@example.com\r\n\r\n".encode()
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert not check_sender(message.raw_items(), "alice@example.com", ("mx.google.com",)).trusted


# -- a sender's text echoed into the provider's header --------------------------

def _quoted_local_part(local: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*", local):
        return local
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def test_known_injections_through_the_envelope_sender_are_refused():
    # A quoted local part may hold ")": one regex pass over comments would end the
    # comment early and read the smuggled dmarc=pass as the provider's.
    local = 'a) dmarc=pass header.from=example.com (b'
    value = (f"mx.google.com; spf=pass (google.com: domain of {_quoted_local_part(local)}@evil.example "
             f"designates 1.2.3.4 as permitted sender) smtp.mailfrom={_quoted_local_part(local)}@evil.example")
    assert not check_sender(fields(value), "alice@example.com", ("mx.google.com",)).trusted
    # A nested comment holding a result.
    nested = "mx.google.com; (note (x) dmarc=pass header.from=example.com) spf=fail smtp.mailfrom=evil.example"
    assert not check_sender(fields(nested), "alice@example.com", ("mx.google.com",)).trusted
    # Properties belong to their own clause: the failing clause's domain is not inherited.
    inherit = "mx.google.com; dkim=fail header.d=example.com; dkim=pass"
    assert not check_sender(fields(inherit), "alice@example.com", ("mx.google.com",)).trusted


def test_random_envelope_senders_never_turn_a_failing_header_into_trust():
    """The envelope sender's local part is the sender's text inside the provider's header:
    in a comment (raw or quoted, as writers differ) and in smtp.mailfrom (quoted as
    RFC 5321 requires). Whatever it holds, a header whose own verdict fails stays failing."""
    rng = random.Random(7489)
    pieces = ["a", ")", "(", '"', ";", " ", "=", "\\", "@", ".", "dmarc=pass", " header.from=example.com",
              "dkim=pass header.d=example.com", "auth=pass smtp.auth=alice@example.com"]
    templates = [
        ("mx.google.com; spf=pass (google.com: domain of {c}@evil.example designates 1.2.3.4 as permitted "
         "sender) smtp.mailfrom={p}@evil.example; dkim=pass header.i=@evil.example; dmarc=fail (p=NONE) "
         "header.from=example.com"),
        ("mx.google.com; spf=pass (google.com: domain of {c}@evil.example designates 1.2.3.4 as permitted "
         "sender) smtp.mailfrom={p}@evil.example; dkim=pass header.i=@evil.example"),
    ]
    for _ in range(1500):
        local = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8)))
        for template in templates:
            for comment in (local, _quoted_local_part(local)):
                value = template.format(c=comment, p=_quoted_local_part(local))
                verdict = check_sender(fields(value), "alice@example.com", ("mx.google.com",))
                assert not verdict.trusted, value
