"""The client side: send photos to the server's mailbox and collect the answers.

Used by client.py and by the webcam UI. A request is an RFC 5322 message
sent over SMTP (RFC 5321, see transport.py); its answer is the mail whose
``In-Reply-To`` names the request's Message-ID (RFC 5322 section 3.6.4),
found by IMAP IDLE (RFC 2177) or POP3 polling (RFC 1939), see mailbox.py.

Only headers are read to tell a reply from other mail (IMAP BODY.PEEK, POP3
TOP), so a personal inbox is left as it was: other mail is neither
downloaded, marked \\Seen nor deleted. Replies to this requester's own
requests are consumed (deleted) once read, duplicates included.

``send`` returns the request's Message-ID; ``poll`` is non-blocking, so
several requests can be outstanding at once; ``wait`` blocks until given
requests are answered or the timeout passes (``AnswerTimeout``, exit
status 3). ``collect_earlier`` looks once for the answers to requests sent by
an earlier run (pending.py keeps their Message-IDs) and consumes them, with
the same In-Reply-To matching, so late answers are not left in the INBOX.

With ``[security]`` keys (protection.py) requests are signed and/or
encrypted, and a reply that fails the check is refused: logged, left in the
mailbox, and its request kept waiting for a genuine answer (so a forged
reply cannot stand in for the real one). ``duplicate_replies`` counts the
extra copies of answers that were consumed, per request (see the README,
"Reliability").
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Callable, Iterable, Sequence

from animalid.errors import AuthError, ExitStatus, TransientError, UnreachableError
from animalid.mail.mailbox import Mailbox, MailRef, TooLarge
from animalid.mail.messages import build_request, parse_reply, reply_headers_match
from animalid.mail.protection import Protection
from animalid.mail.transport import Account, SmtpSender, backoff_delay, send_with_retry

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 5_000_000
TICK_S = 0.1  # how often wait() calls on_tick (spinner)
RECONNECT_MAX_DELAY_S = 10.0


class AnswerTimeout(TransientError):
    """No answer came in time; ``answers`` holds those that did."""

    exit_status = ExitStatus.TIMEOUT

    def __init__(self, message: str, answers: dict[str, list[dict]] | None = None,
                 missing: Iterable[str] = ()):
        super().__init__(message)
        self.answers = answers or {}
        self.missing = list(missing)


class Requester:
    """Sends requests as ``account`` to ``server_address`` and matches the replies to them.

    Assembled from config.ini [client] by ``animalid.cli.settings.requester``.
    """

    def __init__(self, account: Account, server_address: str, timeout: float, sender: SmtpSender,
                 mailbox: Mailbox, protection: Protection | None = None):
        self.account = account
        self.server_address = server_address
        self.timeout = timeout
        self.sender = sender
        self.mailbox = mailbox
        self.protection = protection if protection is not None else Protection()
        self.outstanding: dict[str, float] = {}  # Message-ID -> time sent
        self._answered: set[str] = set()  # for consuming duplicate replies too
        self._ready: dict[str, list[dict]] = {}  # collected, not yet handed out by wait()
        self._not_ours: set[str] = set()  # mailbox keys whose headers showed other mail
        self._failures = 0
        self._retry_at = 0.0
        self.last_error: Exception | None = None  # the latest mailbox trouble, for reports
        self.duplicate_replies: Counter[str] = Counter()  # Message-ID -> extra copies dropped
        self.refused_replies: dict[str, str] = {}  # Message-ID -> why its reply was refused

    def __enter__(self) -> "Requester":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for closer in (self.sender.close, self.mailbox.close):
            try:
                closer()
            except TransientError as exc:
                log.debug("while closing: %s", exc)

    # -- sending ------------------------------------------------------------

    def send(self, images: Sequence[tuple[str, bytes]]) -> str:
        """Mail ``images`` ((name, bytes) pairs) to the server; returns the Message-ID."""
        if not images:
            raise ValueError("send() needs at least one image")
        message = build_request(self.account.address, self.server_address, images,
                                protection=self.protection)
        message_id = message["Message-ID"]
        # Listen before sending, so IDLE is already watching when the reply lands.
        self._prepare_mailbox()
        send_with_retry(lambda: self.sender.send(message), attempts=3, base_delay=0.5,
                        max_delay=4.0, what="sending the photo")
        self.outstanding[message_id] = time.monotonic()
        log.debug("sent %s (%d image(s)) to %s", message_id, len(images), self.server_address)
        return message_id

    def _prepare_mailbox(self) -> None:
        try:
            self.mailbox.connect()
        except AuthError:
            raise
        except TransientError as exc:  # the answer can still be collected later
            log.debug("mailbox not ready yet: %s", exc)

    # -- receiving ----------------------------------------------------------

    def poll(self) -> list[tuple[str, list[dict]]]:
        """Answers that arrived since the last call, without blocking (much)."""
        ready = list(self._ready.items())
        self._ready.clear()
        if not self.outstanding or time.monotonic() < self._retry_at:
            return ready
        try:
            if self.mailbox.has_news():
                ready += self._collect()
            self._failures = 0
        except TransientError as exc:
            self._failures += 1
            delay = backoff_delay(self._failures, 0.5, RECONNECT_MAX_DELAY_S)
            self._retry_at = time.monotonic() + delay
            log.warning("%s; trying again in %.1f s", exc, delay)
            self.last_error = exc
        return ready

    def wait(self, message_ids: Iterable[str], timeout: float | None = None,
             on_tick: Callable[[float], None] | None = None) -> dict[str, list[dict]]:
        """Block until every id in ``message_ids`` is answered; returns id -> answers."""
        pending = set(message_ids)
        got: dict[str, list[dict]] = {}
        timeout = self.timeout if timeout is None else timeout
        started = time.monotonic()
        deadline = started + timeout
        self.last_error = None
        while True:
            for message_id, answers in self.poll():
                if message_id in pending:
                    got[message_id] = answers
                    pending.discard(message_id)
                else:
                    self._ready[message_id] = answers
            if not pending:
                return got
            now = time.monotonic()
            if now >= deadline:
                raise self._timeout_error(timeout, got, pending)
            if on_tick is not None:
                on_tick(now - started)
            self._sleep_until_news(min(TICK_S, deadline - now))

    def _sleep_until_news(self, seconds: float) -> None:
        if time.monotonic() < self._retry_at:
            time.sleep(max(0.0, min(seconds, self._retry_at - time.monotonic())))
            return
        try:
            self.mailbox.wait(seconds)
        except TransientError as exc:  # poll() will reconnect and back off
            self.last_error = exc
            time.sleep(seconds)

    def _timeout_error(self, timeout: float, got: dict, pending: set[str]) -> Exception:
        if isinstance(self.last_error, UnreachableError):
            return UnreachableError(f"no answer: {self.last_error}")
        count = len(pending)
        refused = sorted({self.refused_replies[m] for m in pending if m in self.refused_replies})
        detail = f"; replies refused: {'; '.join(refused)}" if refused else ""
        return AnswerTimeout(f"no answer from {self.server_address} within {timeout:g} s "
                             f"({count} request{'s' if count != 1 else ''} unanswered{detail})",
                             answers=got, missing=pending)

    def collect_earlier(self, message_ids: Iterable[str]) -> list[tuple[str, list[dict]]]:
        """One look for replies to earlier requests (by Message-ID): (id, answers) of those found.

        Found replies are consumed (deleted) like any answer; ids without a
        reply are forgotten again by this requester (the caller keeps them).
        Other mail is only looked at by its headers, never touched.
        """
        earlier = [message_id for message_id in message_ids if message_id not in self.outstanding]
        now = time.monotonic()
        for message_id in earlier:
            self.outstanding[message_id] = now
        try:
            found = self._collect()
        finally:
            for message_id in earlier:
                self.outstanding.pop(message_id, None)
        wanted = set(earlier)
        mine = [(message_id, answers) for message_id, answers in found if message_id in wanted]
        for message_id, answers in found:  # answers to this run's own requests: for wait()
            if message_id not in wanted:
                self._ready[message_id] = answers
        return mine

    def _collect(self) -> list[tuple[str, list[dict]]]:
        refs = [ref for ref in self.mailbox.list_messages() if ref.key not in self._not_ours]
        if not refs:
            self.mailbox.end_pass()
            return []
        wanted = set(self.outstanding) | self._answered
        mine: dict[str, tuple[MailRef, str]] = {}
        for key, header in self.mailbox.fetch_headers(refs).items():
            message_id = reply_headers_match(header, wanted)
            if message_id is None:
                self._not_ours.add(key)
            else:
                mine[key] = message_id
        results = []
        mine_refs = [ref for ref in refs if ref.key in mine]
        bodies = self.mailbox.fetch([r for r in mine_refs if mine[r.key] in self.outstanding],
                                    MAX_REPLY_BYTES)
        consumed = []
        for ref in mine_refs:
            message_id = mine[ref.key]
            if message_id not in self.outstanding:
                log.debug("dropping a duplicate reply to %s", message_id)
                self.duplicate_replies[message_id] += 1
                consumed.append(ref)
                continue
            answers = self._answers_of(bodies.get(ref.key), message_id)
            if answers is None:  # refused: leave it there, keep waiting for a genuine one
                self._not_ours.add(ref.key)
                continue
            results.append((message_id, answers))
            self.outstanding.pop(message_id, None)
            self._answered.add(message_id)
            consumed.append(ref)
        self.mailbox.delete(consumed)
        self.mailbox.end_pass()
        if results and self.outstanding:
            self.mailbox.expect_more()  # more answers are likely on their way already
        return results

    def _answers_of(self, body, message_id: str) -> list[dict] | None:
        """The answers a reply carries; None when it fails the [security] check."""
        if body is None:
            return [{"file": "(reply)", "error": "the reply vanished before it could be read"}]
        if isinstance(body, TooLarge):
            if self.protection.active:
                return self._refuse(message_id, f"too large to check ({body.size} bytes)")
            return [{"file": "(reply)", "error": f"the reply is too large ({body.size} bytes)"}]
        reply = parse_reply(body, self.protection)
        if reply.protection_problem:
            return self._refuse(message_id, reply.protection_problem)
        if reply.answers is not None:
            return reply.answers
        text = " ".join(reply.text.split())[:300] or "no text"
        return [{"file": "(reply)", "error": f"the reply carried no answers: {text}"}]

    def _refuse(self, message_id: str, reason: str) -> None:
        log.warning("reply to %s refused: %s", message_id, reason)
        self.refused_replies[message_id] = reason
        return None


