"""Hostile mail against the real server: nothing crashes, strangers get nothing, memory stays bounded.

One server.py process (IMAP IDLE, the real classifier) serves the whole module,
so its memory can be measured (psutil, /proc VmHWM) and a crash would show.
Its allowed senders are client1 and client2; client3, client4 and outside
addresses are strangers. What it is sent:

* every message of CPython's email test data (tests/e2e/corpora.py), through the
  hub's MX listener with client1's From (and a quarter again as strangers),
  with valid requests from client2 mixed in;
* a fixed sample of Pillow's test images (fuzzer crashes, bombs, truncated
  files: one file per extension, then more hostile-named ones, 100 in all),
  plus CPython's test images, as attachments from client1, 8 to a mail,
  declared image/* so every one reaches the decoder;
* abuse: forged and ambiguous From fields, bounces, auto-replies and a storm
  of 200 automatic mails (RFC 3834), path traversal and NUL bytes in file
  names, CR/LF in subjects (RFC 2047), decompression bombs, 10,000 MIME
  parts, 3,000 nested multiparts, and a 50 MB message (refused by the hub's
  SMTP front above its 30 MB, and put straight into Dovecot over LMTP to show
  the server refuses it from its size alone, without reading it).

Every message ends answered (one reply, matched by In-Reply-To, with a clear
error where nothing could be done) or refused with a log line; none is answered
twice; nothing reaches a stranger. Tests run in file order and share the
server, yet each stands alone: whichever test runs first warms the server up and
takes its memory baseline, and the last test sends hostile mail of its own before
it checks the server's log, memory and clean exit (run alone, it is a real test).
"""

from __future__ import annotations

import base64
import os
import smtplib
import struct
import threading
import time
import tracemalloc
import uuid
import zlib
from email.message import EmailMessage
from pathlib import Path

import pytest

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.mail.mailbox import TooLarge
from animalid.mail.messages import build_request, parse_bytes, parse_reply
from animalid.server.ledger import ANSWERED, IGNORED, REFUSED
from animalid.testing.harness import (
    CLIENTS,
    ServerProcess,
    assert_answers,
    deliver_lmtp,
    empty_mailbox,
    ledger_states,
    make_config,
    photo,
    replies_by_request,
    send_mx,
    submit,
    to_crlf,
    wait_for,
)
from tests.e2e import corpora

ALLOWED = ("client1@hub.test", "client2@hub.test")
OUTSIDER = "someone@elsewhere.example"
PILLOW_SAMPLE_SIZE = 100
IMAGES_PER_MAIL = 8
STORM_SIZE = 200
# The server's peak memory may rise this far above its level after the first
# answer (the model loaded and warm): decoding a 36-megapixel image that is just
# inside max_image_pixels takes most of it.
PEAK_GROWTH_LIMIT = 600_000_000
# ... and after everything it must be back within this of that level: no leak.
SETTLED_GROWTH_LIMIT = 300_000_000


# -- the module's server ---------------------------------------------------------------

class Hostile:
    """The module's server.py, the configs to read each account, and what it has done."""

    def __init__(self, hub, folder: Path):
        self.hub, self.folder = hub, folder
        common = dict(receive="imap", server_receive="imap",
                      allowed_senders=", ".join(ALLOWED), rate_limit_per_hour=0, max_attempts=2,
                      retry_max_delay=2,
                      # Hostile mail comes in through the MX port as from the internet, where
                      # nobody vouches for its From: the parsing is under test here, the
                      # sender check in test_hardening.py.
                      require_authentication="no")
        self.configs = {client: make_config(hub, folder, client, name=f"{client}.ini", **common)
                        for client in CLIENTS}
        self.config = self.configs["client1"]
        self.cwd = folder / "cwd"
        self.cwd.mkdir()
        self.server = ServerProcess(self.config, folder / "server.log", cwd=self.cwd)
        self.samples: list[int] = []
        self.baseline_rss = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample_rss, daemon=True)

    def start(self) -> "Hostile":
        empty_mailbox(self.config, "server")
        for config in self.configs.values():
            empty_mailbox(config, "client")
        self.server.start()
        self._sampler.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        return self.server.stop()

    def _sample_rss(self) -> None:
        while not self._stop.wait(0.2):
            try:
                self.samples.append(self.server.rss())
            except Exception:  # noqa: BLE001 - the process just ended
                return

    # -- outcomes ------------------------------------------------------------

    def wait_final(self, message_ids, timeout: float = 120.0) -> dict[str, str]:
        """Message-ID -> final ledger state, once every one has one."""
        wanted = set(message_ids)

        def finished():
            states = ledger_states(self.config)
            if not self.server.alive():
                return "died"
            return {m: states[m] for m in wanted if m in states} if wanted <= set(states) else None

        try:
            result = wait_for(finished, timeout=timeout, what="every message handled")
        except AssertionError:
            missing = sorted(wanted - set(ledger_states(self.config)))
            raise AssertionError(f"{len(missing)} of {len(wanted)} not handled: {missing[:5]}") from None
        assert result != "died", f"server.py died:\n{self.server.log_text()[-3000:]}"
        return result

    def replies(self, client: str = "client1", with_bodies: bool = False) -> dict[str, list[bytes]]:
        return replies_by_request(self.configs[client], with_bodies=with_bodies)

    def wait_replies(self, client: str, message_ids, with_bodies: bool = True):
        wanted = set(message_ids)
        return wait_for(lambda: (lambda found: found if wanted <= set(found) else None)(
            self.replies(client, with_bodies)), timeout=60, what=f"replies in {client}'s inbox")

    def log_line(self, message_id: str) -> str:
        lines = [line for line in self.server.log_text().splitlines() if f"{message_id} from " in line]
        return lines[-1] if lines else ""


@pytest.fixture(scope="module")
def hostile_world(mailhub, tmp_path_factory):
    world = Hostile(mailhub, tmp_path_factory.mktemp("hostile")).start()
    try:
        yield world
    finally:
        world.stop()


@pytest.fixture
def hostile(hostile_world):
    """The module's world, its server running: a test that stopped it (the last one,
    for its clean exit) leaves a fresh one for whatever runs next, and ``starts``
    still shows the restart."""
    if not hostile_world.server.alive():
        hostile_world.server.start()
    return hostile_world


def new_id(tag: str) -> str:
    return f"<{tag}-{uuid.uuid4().hex[:12]}@test.hub.test>"


def valid_request(sender: str, index: int) -> tuple[EmailMessage, str]:
    name = ("tiger.png", "dog.png", "bison.png")[index % 3]
    label = f"valid{index}-{name}"
    return build_request(sender, "server@hub.test", [(label, photo(name))]), label


def rewritten(raw: bytes, sender: str, message_id: str, extra_headers: bytes = b"") -> bytes:
    """A corpus message as if ``sender`` sent it: From and Message-ID replaced, the rest
    untouched but for CRLF line ends (an mbox "From " line is dropped: it never travels)."""
    raw = to_crlf(raw)
    if raw.startswith(b"From "):
        raw = raw.partition(b"\r\n")[2]
    head, separator, body = raw.partition(b"\r\n\r\n")
    kept, dropping = [], False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and dropping:
            continue
        dropping = line.lower().startswith((b"from:", b"message-id:"))
        if not dropping:
            kept.append(line)
    new_head = (b"From: " + sender.encode() + b"\r\nMessage-ID: " + message_id.encode() + b"\r\n"
                + extra_headers + b"\r\n".join(kept))
    return new_head + b"\r\n\r\n" + body


def answers_of(raw: bytes) -> list[dict]:
    reply = parse_reply(raw)
    assert reply.answers is not None, reply.text
    return reply.answers


def assert_clear(answer: dict) -> None:
    """An answer is a classification or a non-empty error, nothing in between."""
    if "error" in answer:
        assert isinstance(answer["error"], str) and answer["error"].strip(), answer
    else:
        assert answer.get("common_name") and 0 <= answer["probability"] <= 100, answer


def warm_up(hostile: Hostile) -> bool:
    """One valid request answered (the model loaded and warm), then the memory baseline
    taken and the kernel's peak reset to it; False if the peak cannot be reset."""
    warm, label = valid_request(ALLOWED[0], 0)
    submit(hostile.hub, ALLOWED[0], warm)
    (reply,) = hostile.wait_replies("client1", [warm["Message-ID"]])[warm["Message-ID"]]
    assert_answers(answers_of(reply), [label])
    hostile.baseline_rss = hostile.server.rss()
    return hostile.server.reset_peak_rss()


# -- size: both layers, first while the server's memory is quiet ---------------------

def big_message(sender: str, message_id: str, megabytes: int) -> bytes:
    """A request of about ``megabytes`` MB: one random "photo" in base64 (RFC 2045)."""
    encoded = base64.encodebytes(os.urandom(megabytes * 750_000))
    head = (f"From: {sender}\r\nTo: server@hub.test\r\nSubject: big\r\nMessage-ID: {message_id}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: image/jpeg; name=big.jpg\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode()
    return head + encoded.replace(b"\n", b"\r\n")


def test_over_size_messages_are_refused_from_their_size_without_being_read(hostile):
    can_measure_peak = warm_up(hostile)

    fifty = new_id("fifty-mb")
    deliver_lmtp(hostile.hub, big_message(ALLOWED[0], fifty, 50), "server@hub.test", ALLOWED[0])
    twenty_seven = new_id("27-mb")  # under the hub's 30 MB, over the server's 25 MB
    submit(hostile.hub, ALLOWED[0], big_message(ALLOWED[0], twenty_seven, 27))
    states = hostile.wait_final([fifty, twenty_seven])
    assert states == {fifty: ANSWERED, twenty_seven: ANSWERED}
    replies = hostile.wait_replies("client1", [fifty, twenty_seven])
    for message_id in (fifty, twenty_seven):
        (answer,) = answers_of(replies[message_id][0])
        assert "too large" in answer["error"] and "the limit is 25.0 MB" in answer["error"], answer
    if can_measure_peak:
        growth = hostile.server.peak_rss() - hostile.baseline_rss
        assert growth < 20_000_000, f"peak RSS grew {growth / 1e6:.0f} MB: was a message read?"


def test_pop3_reads_only_the_headers_of_an_over_size_message(hostile):
    """The same by POP3: LIST gives the size, TOP n 0 the headers (RFC 1939)."""
    message_id = new_id("pop3-fifty")
    deliver_lmtp(hostile.hub, big_message(ALLOWED[0], message_id, 50), "client4@hub.test", ALLOWED[0])
    with edge.mailbox(load_config(hostile.configs["client4"]), "client", "pop3") as box:
        (ref,) = [ref for ref in box.list_messages() if ref.size > 50_000_000]
        tracemalloc.start()
        try:
            found = box.fetch([ref], 25_000_000)
            headers = box.fetch_headers([ref])
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        box.delete([ref])
        box.end_pass()
    assert isinstance(found[ref.key], TooLarge) and found[ref.key].size > 50_000_000
    assert message_id.encode() in headers[ref.key] and len(headers[ref.key]) < 2000
    assert peak < 2_000_000, f"{peak / 1e6:.1f} MB allocated to read the headers"


def test_the_smtp_front_refuses_fifty_megabytes(hostile):
    raw = big_message(OUTSIDER, new_id("fifty-mb-mx"), 50)
    with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as refused:
        send_mx(hostile.hub, raw, OUTSIDER)
    assert refused.value.smtp_code == 552


# -- the corpora ---------------------------------------------------------------------------

def test_every_cpython_email_corpus_message_is_answered_or_refused(hostile):
    messages = corpora.corpus_or_skip(corpora.cpython_email_messages)
    allowed, strangers, valid = {}, {}, {}
    for index, path in enumerate(messages):
        raw = path.read_bytes()
        message_id = new_id(f"corpus-{path.stem}")
        send_mx(hostile.hub, rewritten(raw, ALLOWED[0], message_id), ALLOWED[0])
        allowed[message_id] = path.name
        if index % 4 in (1, 3):
            stranger = "client3@hub.test" if index % 4 == 1 else OUTSIDER
            stranger_id = new_id(f"stranger-{path.stem}")
            send_mx(hostile.hub, rewritten(raw, stranger, stranger_id), stranger)
            strangers[stranger_id] = path.name
        if index % 8 == 7:
            request, label = valid_request(ALLOWED[1], index)
            submit(hostile.hub, ALLOWED[1], request)
            valid[request["Message-ID"]] = label

    states = hostile.wait_final([*allowed, *strangers, *valid])
    replies = hostile.replies("client1", with_bodies=True)
    for message_id, name in allowed.items():
        if states[message_id] == ANSWERED:
            assert len(replies.get(message_id, [])) == 1, (name, replies.get(message_id))
            for answer in answers_of(replies[message_id][0]):
                assert_clear(answer)
        else:
            assert states[message_id] == IGNORED, (name, states[message_id])
            assert message_id not in replies, name
            assert " ignored (" in hostile.log_line(message_id), (name, hostile.log_line(message_id))
    for message_id, name in strangers.items():
        line = hostile.log_line(message_id)  # refused, unless RFC 3834 rules came first
        assert "refused (sender not allowed)" in line or " ignored (" in line, (name, line)
        # The ledger records what the log says: refused, or ignored.
        assert states[message_id] == (REFUSED if "refused (sender not allowed)" in line else IGNORED), name
    stranger_replies = set(replies) | set(hostile.replies("client3")) | set(hostile.replies("client2"))
    assert not stranger_replies & set(strangers)
    valid_replies = hostile.wait_replies("client2", valid)
    for message_id, label in valid.items():
        assert len(valid_replies[message_id]) == 1
        assert_answers(answers_of(valid_replies[message_id][0]), [label])
    answered = sum(state == ANSWERED for m, state in states.items() if m in allowed)
    print(f"\nCPython email corpus: {len(allowed)} messages, {answered} answered, "
          f"{len(allowed) - answered} refused (RFC 3834 and the From rules); "
          f"{len(strangers)} stranger copies refused; {len(valid)} valid requests answered")


def pillow_files() -> list[Path]:
    images = corpora.corpus_or_skip(corpora.pillow_images_dir)
    sample = corpora.pillow_sample(images, PILLOW_SAMPLE_SIZE)
    return sample + corpora.corpus_or_skip(corpora.cpython_email_images)


def image_mail(sender: str, files: list[Path]) -> EmailMessage:
    """Each file declared image/<its extension>: a sender may claim any type, so every
    one of them reaches the decoder."""
    message = EmailMessage()
    message["From"], message["To"] = sender, "server@hub.test"
    message["Subject"] = "corpus images"
    message["Message-ID"] = new_id("pillow")
    message.set_content("What are these?")
    for path in files:
        subtype = (path.suffix.lstrip(".").lower() or "x-unknown")[:20]
        message.add_attachment(path.read_bytes(), maintype="image", subtype=subtype,
                               filename=path.name)
    return message


def test_pillow_test_images_as_attachments_get_clear_answers(hostile):
    files = pillow_files()
    sent, valid = {}, {}
    for batch, start in enumerate(range(0, len(files), IMAGES_PER_MAIL)):
        chunk = files[start:start + IMAGES_PER_MAIL]
        message = image_mail(ALLOWED[0], chunk)
        submit(hostile.hub, ALLOWED[0], message)
        sent[message["Message-ID"]] = chunk
        if batch % 3 == 2:
            request, label = valid_request(ALLOWED[1], batch)
            submit(hostile.hub, ALLOWED[1], request)
            valid[request["Message-ID"]] = label

    states = hostile.wait_final([*sent, *valid], timeout=180)
    assert set(states.values()) == {ANSWERED}
    replies = hostile.wait_replies("client1", sent)
    classified = errors = 0
    for message_id, chunk in sent.items():
        assert len(replies[message_id]) == 1
        answers = answers_of(replies[message_id][0])
        assert [a["file"] for a in answers] == [path.name.lstrip(".") for path in chunk]
        for answer in answers:
            assert_clear(answer)
            errors += "error" in answer
            classified += "error" not in answer
    valid_replies = hostile.wait_replies("client2", valid)
    for message_id, label in valid.items():
        assert len(valid_replies[message_id]) == 1
        assert_answers(answers_of(valid_replies[message_id][0]), [label])
    print(f"\nPillow sample: {len(files)} files in {len(sent)} mails: {classified} classified, "
          f"{errors} refused with an error; {len(valid)} valid requests answered")


# -- who gets nothing ------------------------------------------------------------------------

def from_header_mail(from_lines: list[bytes], message_id: str, envelope: str) -> bytes:
    head = b"".join(b"From: " + line + b"\r\n" for line in from_lines)
    request = build_request(ALLOWED[0], "server@hub.test", [("tiger.png", photo("tiger.png"))])
    del request["From"], request["Message-ID"]
    request["Message-ID"] = message_id
    request["Reply-To"] = envelope
    return head + to_crlf(request.as_bytes())


def test_strangers_and_forged_or_ambiguous_senders_get_nothing(hostile):
    forged = new_id("forged")  # a From of an allowed sender, sent by a stranger
    cases = {
        forged: [b"client1@hub.test"],
        new_id("two-addresses"): [b"client1@hub.test, client3@hub.test"],
        new_id("bad-syntax"): [b"client1@hub.test <client3@hub.test>"],
        new_id("quoted-name"): [b'"client1@hub.test" <client3@hub.test>'],
        new_id("two-froms"): [b"client3@hub.test", b"client1@hub.test"],
        new_id("group"): [b"friends: client1@hub.test, client3@hub.test;"],
        new_id("encoded"): [b"=?utf-8?q?client1=40hub=2Etest?= <client3@hub.test>"],
        new_id("outsider"): [OUTSIDER.encode()],
        new_id("no-from"): [],
    }
    for message_id, from_lines in cases.items():
        send_mx(hostile.hub, from_header_mail(from_lines, message_id, "client3@hub.test"),
                "client3@hub.test")
    unknown = build_request("client4@hub.test", "server@hub.test", [("dog.png", photo("dog.png"))])
    submit(hostile.hub, "client4@hub.test", unknown)

    states = hostile.wait_final([*cases, unknown["Message-ID"]])
    # The forged From names client1: without [security] keys the answer goes to the
    # address named -- client1, never the forger (Reply-To and the envelope are ignored).
    assert states.pop(forged) == ANSWERED
    assert set(states.values()) <= {IGNORED, REFUSED}, states
    for message_id in states:
        line = hostile.log_line(message_id)
        assert "refused (sender not allowed)" in line or " ignored (" in line, line
        assert states[message_id] == (REFUSED if "refused (sender not allowed)" in line else IGNORED), line
    assert "ambiguous From" in hostile.log_line(list(cases)[2])
    assert "more than one From header" in hostile.log_line(list(cases)[4])
    assert forged in hostile.replies("client1")
    for client in ("client3", "client4"):
        assert hostile.replies(client) == {}, f"{client} got mail"
    assert not set(states) & set(hostile.replies("client1"))


def copies_in_server_inbox(hostile: Hostile, message_id: str) -> int:
    with edge.mailbox(load_config(hostile.config), "server", "imap") as box:
        headers = box.fetch_headers(box.list_messages())
    return sum(message_id.encode() in raw for raw in headers.values())


def test_the_same_request_three_times_at_once_is_answered_once(hostile):
    """A client's retried submission, or a replay, lands in the same pass as the original."""
    request, label = valid_request(ALLOWED[0], 2)
    raw = to_crlf(request.as_bytes())
    with smtplib.SMTP("127.0.0.1", hostile.hub.ports["smtp_mx"], timeout=30) as smtp:
        for _ in range(3):
            smtp.sendmail(ALLOWED[0], ["server@hub.test"], raw)
    assert hostile.wait_final([request["Message-ID"]]) == {request["Message-ID"]: ANSWERED}
    wait_for(lambda: copies_in_server_inbox(hostile, request["Message-ID"]) == 0, timeout=30,
             what="every copy removed")
    time.sleep(1.0)  # a second answer would have landed by now
    (reply,) = hostile.replies("client1", with_bodies=True)[request["Message-ID"]]
    assert_answers(answers_of(reply), [label])


# -- no loops -------------------------------------------------------------------------------

def automatic_mail(kind: str, index: int, answered_reply_id: str) -> tuple[bytes, str, str]:
    """(raw, envelope sender, Message-ID) of one mail of the storm."""
    message_id = new_id(f"storm-{kind}-{index}")
    base = (f"Message-ID: {message_id}\r\nTo: server@hub.test\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
            f"In-Reply-To: {answered_reply_id}\r\nReferences: {answered_reply_id}\r\n").encode()
    if kind == "auto-replied":  # a vacation responder, quoting our answer
        head = b"From: client1@hub.test\r\nAuto-Submitted: auto-replied\r\nSubject: Re: Re: Animal photo\r\n"
        return head + base + b"\r\nI am away until Monday.\r\n", ALLOWED[0], message_id
    if kind == "bounce":  # a delivery report (RFC 3464) from the null sender
        head = (b"From: MAILER-DAEMON@hub.test\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
                b'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n')
        body = (b"\r\n--r\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n--r\r\n"
                b"Content-Type: message/delivery-status\r\n\r\nStatus: 5.1.1\r\n--r--\r\n")
        return head + base + body, "", message_id
    if kind == "list":
        head = b"From: client2@hub.test\r\nPrecedence: bulk\r\nList-Id: <pets.lists.example>\r\nSubject: digest\r\n"
        return head + base + b"\r\nToday on the list.\r\n", ALLOWED[1], message_id
    if kind == "own":  # our own reply, come back (a forwarding loop)
        head = b"From: server@hub.test\r\nAuto-Submitted: auto-replied\r\nSubject: Re: Animal photo\r\n"
        return head + base + b"\r\nAn answer.\r\n", "server@hub.test", message_id
    # A responder that ignores RFC 3834: no Auto-Submitted, answers every answer.
    head = b"From: client1@hub.test\r\nSubject: Re: Re: Animal photo\r\n"
    return head + base + b"\r\nThanks, got it!\r\n", ALLOWED[0], message_id


def test_bounces_auto_replies_and_a_storm_of_200_set_off_no_mail_loop(hostile):
    request, label = valid_request(ALLOWED[0], 1)
    submit(hostile.hub, ALLOWED[0], request)
    (reply,) = hostile.wait_replies("client1", [request["Message-ID"]])[request["Message-ID"]]
    reply_id = parse_bytes(reply)["Message-ID"]
    replies_before = sum(len(v) for v in hostile.replies("client1").values())
    rss_before = hostile.server.rss()

    kinds = ["auto-replied"] * 70 + ["bounce"] * 40 + ["list"] * 30 + ["own"] * 20 + ["careless"] * 40
    storm = []
    with smtplib.SMTP("127.0.0.1", hostile.hub.ports["smtp_mx"], timeout=30) as smtp:
        for index, kind in enumerate(kinds[:STORM_SIZE]):
            raw, envelope, message_id = automatic_mail(kind, index, reply_id)
            smtp.sendmail(envelope, ["server@hub.test"], raw)
            storm.append(message_id)
    states = hostile.wait_final(storm, timeout=180)
    assert set(states.values()) == {IGNORED}
    reasons = {hostile.log_line(m).rpartition(": ignored (")[2] for m in storm}
    assert any("loop guard" in r for r in reasons) and any("Auto-Submitted" in r for r in reasons)
    assert any("delivery report" in r for r in reasons) and any("our own mail" in r for r in reasons)
    time.sleep(1.0)  # a reply sent by mistake would have landed by now
    replies_after = hostile.replies("client1")
    assert sum(len(v) for v in replies_after.values()) == replies_before
    assert not set(storm) & set(replies_after) and not set(storm) & set(hostile.replies("client2"))
    growth = hostile.server.rss() - rss_before
    assert growth < 50_000_000, f"RSS grew {growth / 1e6:.0f} MB over {len(storm)} automatic mails"


# -- names, subjects, bombs ------------------------------------------------------------------

def tiny_png() -> bytes:
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.new("RGB", (64, 48), (120, 90, 40)).save(buffer, "PNG")
    return buffer.getvalue()


def long_name_parameter(name: bytes) -> bytes:
    """An RFC 2231 continued file name: lines stay within RFC 5321's 998 octets."""
    pieces = [name[i:i + 60] for i in range(0, len(name), 60)]
    return b";\r\n ".join(b'filename*%d="%s"' % (n, piece) for n, piece in enumerate(pieces))


def test_attachment_names_cannot_reach_the_file_system(hostile):
    png = base64.encodebytes(tiny_png()).replace(b"\n", b"\r\n")
    dispositions = [
        b'filename="../../etc/passwd.jpg"',
        b'filename="/etc/cron.d/animalid-evil.png"',
        b'filename="..\\\\..\\\\windows\\\\system32\\\\evil.png"',
        b'filename="evil\x00.png"',
        b"filename*=utf-8''..%2F..%2F..%2Ftmp%2Fanimalid-pwned.png",
        b"filename*=utf-8''nul%00byte.png",
        b"filename*=utf-8''cat%E2%80%AEgnp.exe",
        b'filename="=?utf-8?q?a=0D=0AX-Injected=3A_1.png?="',
        long_name_parameter(b"A" * 5000 + b".png"),
    ]
    message_id = new_id("names")
    parts = b"".join(b"--b\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n"
                     b"Content-Disposition: attachment; " + disposition + b"\r\n\r\n" + png
                     for disposition in dispositions)
    raw = (b"From: client1@hub.test\r\nTo: server@hub.test\r\nSubject: names\r\nMessage-ID: "
           + message_id.encode() + b'\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"'
           b"\r\n\r\n" + parts + b"--b--\r\n")
    submit(hostile.hub, ALLOWED[0], raw)
    assert hostile.wait_final([message_id]) == {message_id: ANSWERED}
    (reply,) = hostile.wait_replies("client1", [message_id])[message_id]
    answers = answers_of(reply)
    assert len(answers) == len(dispositions)
    for answer in answers:
        name = answer["file"]
        assert not set(name) & set("/\\\x00\r\n\u202e") and not name.startswith("."), name
        assert 0 < len(name) <= 100, name
    assert answers[0]["file"] == "passwd.jpg" and answers[4]["file"] == "animalid-pwned.png"
    assert list(hostile.cwd.iterdir()) == []  # the server wrote nothing where it runs
    for path in ("/etc/passwd.jpg", "/etc/cron.d/animalid-evil.png", "/tmp/animalid-pwned.png"):
        assert not Path(path).exists(), path


def test_subjects_cannot_inject_headers_into_the_reply(hostile):
    subjects = [b"=?utf-8?q?hi=0D=0ABcc=3A_client3=40hub=2Etest=0D=0AX-Injected=3A_yes?=",
                b"=?utf-8?b?" + base64.b64encode(b"hey\r\nTo: client3@hub.test\r\n\r\nbody") + b"?=",
                b"plain\x00NUL and \x1b[31m escape"]
    sent = []
    for subject in subjects:
        request = build_request(ALLOWED[0], "server@hub.test", [("tiger.png", photo("tiger.png"))])
        raw = to_crlf(request.as_bytes())
        head, _, body = raw.partition(b"\r\n\r\n")
        head = b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"Subject:"))
        submit(hostile.hub, ALLOWED[0], head + b"\r\nSubject: " + subject + b"\r\n\r\n" + body)
        sent.append(request["Message-ID"])
    states = hostile.wait_final(sent)
    assert set(states.values()) == {ANSWERED}
    replies = hostile.wait_replies("client1", sent)
    for message_id in sent:
        (reply,) = replies[message_id]
        headers = parse_bytes(reply)
        assert headers.get_all("Bcc") is None and headers.get_all("X-Injected") is None
        assert headers.get_all("To") == ["client1@hub.test"]
        assert "\n" not in str(headers["Subject"]) and "\x00" not in str(headers["Subject"])
    assert hostile.replies("client3") == {}


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of(width: int, height: int, rows: int | None = None) -> bytes:
    """A greyscale PNG that claims width x height; its pixels (``rows`` of them) compress
    about a thousandfold, as a decompression bomb's do."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (width + 1)
    data = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows))
    data += compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data)
            + png_chunk(b"IEND", b""))


def many_parts(message_id: str, count: int) -> bytes:
    head = (f"From: client1@hub.test\r\nTo: server@hub.test\r\nSubject: many\r\nMessage-ID: {message_id}"
            f'\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="p"\r\n\r\n').encode()
    return head + b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % i
                           for i in range(count)) + b"--p--\r\n"


def deeply_nested(message_id: str, depth: int) -> bytes:
    head = (f"From: client1@hub.test\r\nTo: server@hub.test\r\nSubject: deep\r\n"
            f"Message-ID: {message_id}\r\nMIME-Version: 1.0\r\n").encode()
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="d%d"\r\n\r\n--d%d\r\n' % (i, i)
                       for i in range(depth))
    closing = b"".join(b"\r\n--d%d--" % i for i in reversed(range(depth)))
    return head + opening + b"Content-Type: text/plain\r\n\r\nhello" + closing + b"\r\n"


def test_bombs_many_parts_and_deep_nesting_get_clear_errors_quickly(hostile):
    bomb = build_request(ALLOWED[0], "server@hub.test", [("bomb.png", png_of(30_000, 30_000, rows=10)),
                                                         ("tiger.png", photo("tiger.png"))])
    near_limit = build_request(ALLOWED[0], "server@hub.test", [("big-grey.png", png_of(6_000, 6_000))])
    zip_bomb = EmailMessage()
    zip_bomb["From"], zip_bomb["To"], zip_bomb["Message-ID"] = ALLOWED[0], "server@hub.test", new_id("zip")
    zip_bomb.set_content("see attachment")
    zip_bomb.add_attachment(zlib.compress(b"\x00" * 20_000_000, 9), maintype="application",
                            subtype="zip", filename="photos.zip")
    many_id, deep_id = new_id("many-parts"), new_id("deep")
    started = time.monotonic()
    for message in (bomb, near_limit, zip_bomb):
        submit(hostile.hub, ALLOWED[0], message)
    send_mx(hostile.hub, many_parts(many_id, 10_000), ALLOWED[0])
    send_mx(hostile.hub, deeply_nested(deep_id, 3_000), ALLOWED[0])
    ids = [bomb["Message-ID"], near_limit["Message-ID"], zip_bomb["Message-ID"], many_id, deep_id]
    assert set(hostile.wait_final(ids).values()) == {ANSWERED}
    replies = hostile.wait_replies("client1", ids)
    elapsed = time.monotonic() - started
    bomb_answers = answers_of(replies[ids[0]][0])
    assert "too many pixels" in bomb_answers[0]["error"]
    assert_answers(bomb_answers[1:], ["tiger.png"])
    assert_clear(answers_of(replies[ids[1]][0])[0])
    assert "no image" in answers_of(replies[ids[2]][0])[0]["error"]
    for message_id in (many_id, deep_id):
        assert "far more than 50 MIME parts" in answers_of(replies[message_id][0])[0]["error"]
    assert elapsed < 60, f"{elapsed:.0f} s"


# -- last: the server lived through all of it --------------------------------------------

def test_the_server_never_crashed_and_its_memory_stayed_bounded(hostile):
    """After the module, this covers everything sent to the server. It does not count on
    that: it warms the server up if no test did, and sends hostile mail of its own (a
    decompression bomb beside a photo, 10,000 MIME parts, 3,000 nested multiparts)
    before it looks. Not the 36-megapixel image: decoded just before the measurement,
    its buffers would still count as "settled" memory."""
    if not hostile.baseline_rss:
        warm_up(hostile)
    bomb = build_request(ALLOWED[0], "server@hub.test", [("bomb.png", png_of(30_000, 30_000, rows=10)),
                                                         ("tiger.png", photo("tiger.png"))])
    many_id, deep_id = new_id("last-many-parts"), new_id("last-deep")
    submit(hostile.hub, ALLOWED[0], bomb)
    send_mx(hostile.hub, many_parts(many_id, 10_000), ALLOWED[0])
    send_mx(hostile.hub, deeply_nested(deep_id, 3_000), ALLOWED[0])
    ids = [bomb["Message-ID"], many_id, deep_id]
    assert hostile.wait_final(ids) == dict.fromkeys(ids, ANSWERED)
    replies = hostile.wait_replies("client1", ids)
    assert all(len(replies[message_id]) == 1 for message_id in ids), replies
    for answer in answers_of(replies[bomb["Message-ID"]][0]):
        assert_clear(answer)

    assert hostile.server.alive() and hostile.server.starts == 1
    log = hostile.server.log_text()
    # Only our own loggers count: Pillow logs its own complaints about hostile files.
    assert "Traceback" not in log and " ERROR animalid" not in log, log[-3000:]
    baseline = hostile.baseline_rss or min(hostile.samples or [hostile.server.rss()])
    peak = max([hostile.server.peak_rss(), *hostile.samples])
    settled = hostile.server.rss()
    print(f"\nserver.py RSS: {baseline / 1e6:.0f} MB after the first answer, peak "
          f"{peak / 1e6:.0f} MB, now {settled / 1e6:.0f} MB")
    assert peak - baseline < PEAK_GROWTH_LIMIT
    assert settled - baseline < SETTLED_GROWTH_LIMIT
    assert hostile.stop() == 0  # SIGTERM: a clean exit
