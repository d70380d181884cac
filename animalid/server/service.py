"""The server loop behind server.py: watch a mailbox, classify photos, answer by mail.

For every new message, in this order: skip what the ledger already finished
(found by mailbox key *and* RFC 5322 Message-ID, since Gmail's POP3 shows mail
again; a second copy in the same pass waits for the first to finish), ignore what RFC 3834 says must not be answered (automatic mail,
bounces, mailing lists, our own mail), refuse senders that are not allowed or
over their hourly rate, classify the images of all waiting requests in one
batch, then SEND the reply (RFC 5321 submission, see transport.py), RECORD it
answered (ledger.py, synced to disk) and only then DELETE or MOVE the request
(RFC 1939 DELE / RFC 6851 MOVE, see mailbox.py). A crash at any point thus
loses nothing; at worst a reply is sent twice, which the client ignores.

A message whose handling fails ``max_attempts`` times (counted before each
try, so crashes count) is set aside -- moved to the failed folder on IMAP,
recorded on POP3 -- and its sender is told. Transient trouble (a mail server
down) is retried with capped exponential backoff and does not count as an
attempt. Each handled message gives one log line: id, sender, action, reason.

Several servers may share one IMAP mailbox (claims.py): each claims requests
in the shared ledger, moves them into a claims folder (RFC 6851 UID MOVE,
RFC 4315 COPYUID), answers only those, and keeps a lease on them; a dead
worker's claims return to the INBOX when its lease runs out.
Message-ID reservations, attempt counts and rate limits live in that ledger,
so they hold across workers. POP3 has no atomic claim: with receive = pop3
(or an IMAP server without MOVE and UIDPLUS) one server per mailbox, held to
that by a lock file (fcntl.flock) beside the state file.

With ``[security]`` keys (protection.py) a request must be signed and/or
encrypted with them: one that fails is refused with a log line and kept in
the mailbox, and only with ``notify_signature_failures`` is an allowed
sender told (at most once an hour). Replies are signed / encrypted alike.
"""

from __future__ import annotations

import enum
import fcntl
import logging
import os
import threading
from contextlib import contextmanager
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from animalid.config import Config
from animalid.errors import AnimalIdError, PermanentError, TransientError
from animalid.server.claims import CLAIM_BATCH, Claims, new_worker_id
from animalid.server.pipeline import SendingStage
from animalid.server.ledger import ANSWERED, IGNORED, SET_ASIDE, Ledger, open_ledger
from animalid.mail.mailbox import Mailbox, MailRef, TooLarge, open_mailbox
from animalid.mail.messages import (Incoming, Limits, build_reply, clean_text, error_answers,
                       parse_headers_only, parse_incoming)
from animalid.mail.protection import Protection
from animalid.mail.transport import (Account, MessageRejected, SmtpSender, backoff_delay, looks_like_address,
                        send_with_retry)

log = logging.getLogger(__name__)

RATE_WINDOW_S = 3600.0
# Per pass: bounded memory, and answers start flowing during a long burst.
MAX_MESSAGES_PER_PASS = 64
MAX_BYTES_PER_PASS = 200_000_000
WAIT_SLICE_S = 0.5  # how often a waiting server looks at its stop flag
SEND_ATTEMPTS = 3
# Requests classified together before their replies go to the sending stage:
# small enough that sending starts soon, large enough for full forward passes.
PIPELINE_CHUNK_IMAGES = 4
RETRY_HELD_S = 1.0  # a worker holding claims it could not finish looks again this soon
POP3_ALONE = ("; with receive = pop3 only one server may watch a mailbox: POP3 cannot claim a "
              "message atomically (it has no MOVE), so two servers would answer the same requests "
              "(use receive = imap to run several servers)")
NO_CLAIMS_ALONE = ("; this IMAP server lacks MOVE or UIDPLUS (RFC 6851, RFC 4315), which servers "
                   "need to claim requests, so only one server may watch this mailbox")


# -- settings ---------------------------------------------------------------

class AllowedSenders:
    """Who gets answers: exact addresses and @domain entries ("hub" expands to its clients)."""

    def __init__(self, entries: list[str]):
        self.addresses = {e.lower() for e in entries if not e.startswith("@")}
        self.domains = {e[1:].lower() for e in entries if e.startswith("@")}

    @classmethod
    def from_config(cls, config: Config) -> "AllowedSenders":
        section = config.section("server")
        entries: list[str] = []
        for entry in section.get_list("allowed_senders"):
            if entry.lower() == "hub":
                hub = config.section("hub")
                domain = hub.get("domain")
                entries += [f"{name}@{domain}" for name in hub.get_list("clients")]
            elif entry.startswith("@") and "." in entry or looks_like_address(entry):
                entries.append(entry)
            else:
                raise section.error("allowed_senders", f"{entry!r} is neither an address, "
                                                       "an @domain nor \"hub\"")
        return cls(entries)

    def allows(self, address: str) -> bool:
        address = address.lower()
        return address in self.addresses or address.rpartition("@")[2] in self.domains

    def __repr__(self) -> str:
        return f"AllowedSenders({sorted(self.addresses)} + {sorted('@' + d for d in self.domains)})"


@dataclass
class ServerSettings:
    address: str
    receive: str
    state_file: Path
    max_attempts: int
    rate_limit_per_hour: int
    failed_folder: str
    answered_folder: str
    retry_max_delay: float
    limits: Limits
    max_image_pixels: int
    allowed: AllowedSenders
    protection: Protection = field(default_factory=Protection)
    display_name: str = ""  # in the From of replies: "Animal ID <server@...>"
    claims_folder: str = "animalid-claims"
    claim_lease: float = 60.0
    pipeline: bool = True

    @classmethod
    def from_config(cls, config: Config, receive: str | None = None) -> "ServerSettings":
        section = config.section("server")
        return cls(
            address=Account.from_config(config, "server").address,
            receive=receive or section.get_choice("receive", ("imap", "pop3")),
            state_file=section.get_path("state_file"),
            max_attempts=section.get_int("max_attempts", minimum=1, maximum=100),
            rate_limit_per_hour=section.get_int("rate_limit_per_hour", minimum=0),
            failed_folder=section.get("failed_folder"),
            answered_folder=section.get("answered_folder", ""),
            retry_max_delay=section.get_float("retry_max_delay", minimum=0.1, maximum=86400.0),
            limits=Limits.from_config(config),
            max_image_pixels=section.get_int("max_image_pixels", minimum=1),
            allowed=AllowedSenders.from_config(config),
            protection=Protection.from_config(config),
            display_name=section.get("display_name", ""),
            claims_folder=_claims_folder(config),
            claim_lease=section.get_float("claim_lease", minimum=1.0, maximum=86400.0),
            pipeline=section.get_bool("pipeline"),
        )


class Verdict(enum.Enum):
    """What triage decides for one request."""

    WORK = "work"  # classify it and answer
    REMOVE = "remove"  # finished (answered before, or refused with a notice): delete it
    KEEP = "keep"  # leave it in the mailbox (ignored, refused; the ledger remembers)
    SET_ASIDE = "set-aside"  # failed too often: already moved to the failed folder
    WAIT = "wait"  # another worker is answering the same Message-ID: look again later


@dataclass
class Job:
    """One request being answered in this pass."""

    ref: MailRef
    incoming: Incoming
    attempts: int
    answers: list[dict] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)


@dataclass
class PassStats:
    answered: int = 0
    ignored: int = 0
    refused: int = 0
    set_aside: int = 0
    waiting: int = 0  # copies waiting for another key of their Message-ID
    more_waiting: bool = False


# -- the lock ---------------------------------------------------------------

class MailboxLock:
    """A flock beside the state file: exclusive for a server that cannot share its
    mailbox (POP3), shared by servers that claim (IMAP), so the two kinds never
    run together on one machine."""

    def __init__(self, state_file: Path):
        self.path = Path(str(state_file) + ".lock")
        self._fd: int | None = None

    def acquire(self, shared: bool = False, why: str = "") -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            if shared:
                raise PermanentError(f"a server that cannot share this mailbox (pid {other or '?'}, "
                                     f"receive = pop3) is already watching it (lock {self.path}); "
                                     "stop it, or switch it to receive = imap") from None
            who = f"another server (pid {other}) is" if other else "other servers are"
            raise PermanentError(f"{who} already watching this mailbox (lock {self.path}){why}") from None
        if not shared:  # the pid of the one server; shared holders are many
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


# -- the server -------------------------------------------------------------

class Server:
    """Answers every allowed request in one mailbox; see the module docstring."""

    def __init__(self, config: Config, classifier=None, receive: str | None = None):
        self.config = config
        self.settings = ServerSettings.from_config(config, receive)
        self._classifier = classifier
        self.mailbox: Mailbox = open_mailbox(config, "server", self.settings.receive)
        self.sender = SmtpSender.from_config(config, "server")
        self.ledger: Ledger | None = None
        self._lock = MailboxLock(self.settings.state_file)
        self.worker = new_worker_id()
        self.claims: Claims | None = None  # set when the mailbox is shared (IMAP MOVE + UIDPLUS)
        self.stop_event = threading.Event()
        self.classify_seconds = 0.0  # total time inside classify(), for benchmarks
        self.answer_seconds = 0.0  # total time building, sending and recording replies
        self.handled = 0

    # -- lifecycle ----------------------------------------------------------

    def open(self) -> "Server":
        alone = self.settings.receive != "imap"
        if alone:  # known before logging in: a second POP3 server stops here
            self._lock.acquire(why=POP3_ALONE)
        try:
            self.ledger = open_ledger(self.config)
            self.ledger.worker = self.worker
            self.ledger.prune()
            # A wrong password or an unreachable server shows now, in seconds,
            # not after the model has loaded.
            self.mailbox.verify_login()
            self.sender.verify_login()
            if not alone:
                self._share_or_lock()
            self.classifier  # load the model before the first mail, not during it
        except BaseException:
            self.close()
            raise
        return self

    def _share_or_lock(self) -> None:
        if not self.mailbox.supports_claims():
            self._lock.acquire(why=NO_CLAIMS_ALONE)
            log.warning("%s has no MOVE or UIDPLUS: this server cannot share the mailbox",
                        self.mailbox.endpoint.where)
            return
        self._lock.acquire(shared=True)
        settings = self.settings
        self.claims = Claims(self.mailbox, self.ledger, settings.claims_folder, settings.claim_lease,
                             self.worker)
        self.claims.beat()  # claims of a worker that died before we started go back now
        self.claims.start_heartbeat()

    def close(self) -> None:
        if self.claims is not None and self.claims.held:
            # Stopping (SIGTERM, --once): what we hold goes back to the queue now
            # rather than waiting out its lease.
            try:
                count = len(self.claims.held)
                self.claims.give_back(self.claims.held_refs())
                log.info("gave %d claim(s) back to the queue", count)
            except AnimalIdError as exc:
                log.warning("could not give claims back (they return after the lease): %s", exc)
        if self.claims is not None:
            self.claims.stop_heartbeat()
            self.claims = None
        for closer in (self.mailbox.close, self.sender.close):
            try:
                closer()
            except AnimalIdError as exc:
                log.debug("while closing: %s", exc)
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None
        self._lock.release()

    def __enter__(self) -> "Server":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def classifier(self):
        if self._classifier is None:
            started = time.monotonic()
            self._classifier = load_classifier(self.config, self.settings.max_image_pixels)
            log.info("classifier loaded in %.1f s", time.monotonic() - started)
        return self._classifier

    def stop(self) -> None:
        self.stop_event.set()

    def run(self, once: bool = False) -> None:
        """Serve until stop() (or, with ``once``, until what is waiting is handled)."""
        if self.ledger is None:
            self.open()
        log.info("watching %s for %s by %s%s", self.mailbox.endpoint.where, self.settings.address,
                 self.settings.receive.upper() + (" IDLE" if self.settings.receive == "imap" else " polling"),
                 self._sharing())
        failures = 0
        while not self.stop_event.is_set():
            try:
                stats = self.handle_waiting()
                failures = 0
                if stats.more_waiting:
                    continue
                if once:
                    return
                self._wait_for_mail(soon=bool(stats.waiting or (self.claims and self.claims.held)))
            except TransientError as exc:
                # A dropped connection or a server restarting: reconnect with
                # capped backoff (the mailbox reopens on its next call).
                failures += 1
                if once and failures >= SEND_ATTEMPTS:
                    raise
                delay = backoff_delay(failures, 1.0, self.settings.retry_max_delay)
                log.warning("%s; trying again in %.0f s", exc, delay)
                self.stop_event.wait(delay)

    def _sharing(self) -> str:
        if self.claims is None:
            return " (the only server on this mailbox)"
        return (f" as worker {self.worker}, sharing the mailbox (claims in {self.claims.folder}, "
                f"lease {self.claims.lease:g} s, ledger {self.ledger.describe()})")

    def _wait_for_mail(self, soon: bool = False) -> None:
        """Until new mail may be there, or (sharing) the next lease beat is due, or with
        ``soon`` the claims we still hold are worth another look."""
        deadline = time.monotonic() + (RETRY_HELD_S if soon else float("inf"))
        while not self.stop_event.is_set():
            if self.claims is not None:
                deadline = min(deadline, time.monotonic() + self.claims.seconds_to_beat())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self.mailbox.wait(min(WAIT_SLICE_S, remaining)):
                return

    # -- one pass -----------------------------------------------------------

    def handle_waiting(self) -> PassStats:
        """Handle everything in the mailbox now; returns what was done."""
        stats = PassStats()
        try:
            if self.claims is not None:
                self._handle_claimed(stats)
                return stats
            refs = self.mailbox.list()
            new_refs = self._skip_finished(refs)
            batch = self._take_batch(self.mailbox.with_sizes(new_refs[:MAX_MESSAGES_PER_PASS]),
                                     self.settings.limits.max_message_bytes)
            stats.more_waiting = len(batch) < len(new_refs)
            if batch:
                self._handle_batch(batch, stats)
                self.mailbox.expect_more()  # look again at once: bursts come in bunches
        finally:
            self._end_pass_quietly()
        return stats

    def _handle_claimed(self, stats: PassStats) -> None:
        """One pass of a worker sharing the mailbox: claim a few requests, then work on
        everything it holds (those, and any it could not finish before)."""
        claims = self.claims
        claims.progress()
        claims.beat_if_due()
        new_refs = self._skip_finished(self.mailbox.list())
        room = max(0, CLAIM_BATCH - len(claims.held))
        won = claims.take(new_refs, room) if room and new_refs else []
        # More waits and we are not starved: look again at once.
        stats.more_waiting = bool(won) and len(new_refs) > len(won)
        batch = self._settle_finished_claims(claims.held_refs())
        if batch:
            self._handle_batch(batch, stats)
            self.mailbox.expect_more()

    def _settle_finished_claims(self, held: list[MailRef]) -> list[MailRef]:
        """Claims already final in the ledger (a step after RECORD failed): finish the
        step; the rest, to work on."""
        finals = self.ledger.known_final_keys([ref.key for ref in held])
        if not finals:
            return held
        state = {ref.key: finals[ref.key].state for ref in held if ref.key in finals}
        answered = [ref for ref in held if state.get(ref.key) == ANSWERED]
        aside = [ref for ref in held if state.get(ref.key) == SET_ASIDE]
        if answered:
            self._remove_answered(answered)
        if aside:
            self.mailbox.set_aside(aside, self.settings.failed_folder)
            self.claims.finished(aside)
        self.claims.give_back([ref for ref in held if state.get(ref.key) == IGNORED])
        return [ref for ref in held if ref.key not in finals]

    def _stale_before(self) -> float:
        """Reservations of other workers renewed before this are theirs no more."""
        if self.claims is None:
            return time.time() + 1e9  # alone on the mailbox: any other worker is gone
        return time.time() - self.claims.lease

    def _end_pass_quietly(self) -> None:
        try:
            self.mailbox.end_pass()
        except TransientError as exc:
            # POP3 QUIT failed: deletions were not applied; the ledger knows
            # those messages are answered and removes them next time.
            log.warning("ending the pass: %s", exc)

    def _skip_finished(self, refs: list[MailRef]) -> list[MailRef]:
        finished = self.ledger.known_final_keys([ref.key for ref in refs])
        # Answered before a crash (or a failed POP3 QUIT) but still there: remove now.
        leftovers = [ref for ref in refs if ref.key in finished and finished[ref.key].state == ANSWERED]
        if leftovers:
            log.info("removing %d request(s) answered earlier", len(leftovers))
            self._remove_answered(leftovers)
        return [ref for ref in refs if ref.key not in finished]

    @staticmethod
    def _take_batch(refs: list[MailRef], max_message_bytes: int) -> list[MailRef]:
        """The first messages that fit the per-pass budget (always at least one)."""
        batch, total = [], 0
        for ref in refs[:MAX_MESSAGES_PER_PASS]:
            size = ref.size or 0
            total += size if size <= max_message_bytes else 0  # too large: not downloaded
            if batch and total > MAX_BYTES_PER_PASS:
                break
            batch.append(ref)
        return batch

    def _handle_batch(self, refs: list[MailRef], stats: PassStats) -> None:
        # Counted before any work: a message that crashes the server counts too.
        attempts = self.ledger.begin_attempts([ref.key for ref in refs])
        try:
            self._work_on(refs, attempts, stats)
        except TransientError:
            # The mail servers failed, not the messages: those tries do not count.
            # (Finished messages are no longer "seen" and keep their state.)
            self.ledger.release_attempts([ref.key for ref in refs])
            raise

    def _work_on(self, refs: list[MailRef], attempts: dict[str, int], stats: PassStats) -> None:
        contents = self.mailbox.fetch(refs, self.settings.limits.max_message_bytes)
        too_large = [ref for ref in refs if isinstance(contents.get(ref.key), TooLarge)]
        headers = self.mailbox.fetch_headers(too_large) if too_large else {}
        jobs: list[Job] = []
        done: list[MailRef] = []
        keep: list[MailRef] = []
        ids_in_pass: set[str] = set()
        for ref in refs:
            content = contents.get(ref.key)
            if content is None and ref.key not in headers:
                if self.claims is not None:
                    self.claims.forget([ref])
                continue  # removed by someone else meanwhile
            incoming = self._read(ref, content, headers.get(ref.key))
            if incoming is None:
                if attempts[ref.key] > self.settings.max_attempts:
                    self._set_aside_unreadable(ref)
                    stats.set_aside += 1
                continue
            if incoming.message_id in ids_in_pass:
                # A second copy in the same pass (a client's retried submission, a
                # replay): the next pass finds the first one finished and removes it.
                stats.more_waiting = True
                continue
            if incoming.message_id:
                ids_in_pass.add(incoming.message_id)
            job = Job(ref, incoming, attempts[ref.key])
            verdict = self._triage(job, stats)
            if verdict is Verdict.WORK:
                jobs.append(job)
            elif verdict is Verdict.REMOVE:
                done.append(ref)
            elif verdict is Verdict.KEEP:
                keep.append(ref)
            elif verdict is Verdict.WAIT:
                self.ledger.release_attempt(ref.key)  # waiting is not a failed try
                stats.waiting += 1
        if jobs:
            done += self._classify_and_answer(jobs, stats)
        if done:
            self._remove_answered(done)
        if keep and self.claims is not None:
            self.claims.give_back(keep)  # left in the mailbox: back to the INBOX

    def _read(self, ref: MailRef, content, header_bytes) -> Incoming | None:
        own = [self.settings.address]
        limits, protection = self.settings.limits, self.settings.protection
        try:
            if isinstance(content, TooLarge):
                return parse_headers_only(header_bytes or b"", own, content.size, limits, protection)
            return parse_incoming(content, own, limits, protection)
        except Exception as exc:  # the email package on hostile input: count as a failed try
            log.warning("%s: cannot parse the message (%s: %s)", ref.key, type(exc).__name__,
                        clean_text(exc))
            return None

    def _triage(self, job: Job, stats: PassStats) -> "Verdict":
        """Decide what becomes of a request before any classifying (see ``Verdict``)."""
        ref, incoming = job.ref, job.incoming
        ledger, settings = self.ledger, self.settings
        message_id, sender = incoming.message_id, incoming.sender
        if message_id:
            # Reserve first, then look for a final state: a worker that finishes
            # this Message-ID drops its reservation in the same transaction.
            holder = ledger.reserve(message_id, ref.key, self._stale_before())
            if holder is not None:
                log.debug("%s: %s is being answered from %s; waiting", ref.key, message_id, holder)
                return Verdict.WAIT
        earlier = ledger.final_by_message_id(message_id)
        if earlier is not None and earlier.key != ref.key:
            # The same mail under a new key: Gmail POP3, or a new UIDVALIDITY.
            reason = f"already {earlier.state.replace('_', ' ')} as {earlier.key}"
            self._finish(earlier.state, job, reason)
            return Verdict.REMOVE if earlier.state == ANSWERED else Verdict.KEEP
        if not incoming.is_request:
            self._log(job, "ignored", incoming.reason)
            ledger.mark_ignored(ref.key, message_id, sender, incoming.reason)
            stats.ignored += 1
            return Verdict.KEEP
        if not settings.allowed.allows(sender):
            self._log(job, "refused", "sender not allowed")
            ledger.mark_ignored(ref.key, message_id, sender, "sender not allowed")
            stats.refused += 1
            return Verdict.KEEP
        if incoming.protection_problem:
            self._refuse_unprotected(job)
            stats.refused += 1
            return Verdict.KEEP
        if settings.rate_limit_per_hour and \
                ledger.count_events(sender, RATE_WINDOW_S) >= settings.rate_limit_per_hour:
            self._refuse_over_rate(job)
            stats.refused += 1
            return Verdict.REMOVE
        if job.attempts > settings.max_attempts:
            self._set_aside(job, f"failed {job.attempts - 1} times", tell_sender=True)
            stats.set_aside += 1
            return Verdict.SET_ASIDE
        if not ledger.take_event(sender, "request", RATE_WINDOW_S, settings.rate_limit_per_hour):
            # Another worker took this sender's last request of the hour meanwhile.
            self._refuse_over_rate(job)
            stats.refused += 1
            return Verdict.REMOVE
        return Verdict.WORK

    def _refuse_over_rate(self, job: Job) -> None:
        limit = self.settings.rate_limit_per_hour
        reason = f"rate limit: more than {limit} requests in an hour"
        if self.ledger.take_event(job.incoming.sender, "rate-notice", RATE_WINDOW_S, 1):
            text = (f"You have sent more than {limit} requests in the last hour; "
                    "this one was not processed. Please try again later.")
            self._send_notice(job, error_answers(job.incoming, text))
        self._log(job, "refused", reason)
        self.ledger.mark_ignored(job.ref.key, job.incoming.message_id, job.incoming.sender, reason)

    def _refuse_unprotected(self, job: Job) -> None:
        """A request from an allowed address that fails the [security] check.

        The From may be forged -- that is what the check is for -- so the
        sender is told only when configured, and at most once an hour.
        """
        reason = f"security check failed: {job.incoming.protection_problem}"
        if self.settings.protection.notify_failures:
            if self.ledger.take_event(job.incoming.sender, "security-notice", RATE_WINDOW_S, 1):
                text = (f"Your request was not processed: {job.incoming.protection_problem}. "
                        "Check that client and server share the same [security] keys.")
                # Signed but not sealed: the sender may lack the key to open it.
                self._send_notice(job, error_answers(job.incoming, text),
                                  replace(self.settings.protection, encryption_key=None))
        self._log(job, "refused", reason)
        self.ledger.mark_ignored(job.ref.key, job.incoming.message_id, job.incoming.sender, reason)

    def _set_aside(self, job: Job, reason: str, tell_sender: bool) -> None:
        if tell_sender:
            text = (f"Your message could not be processed ({reason}); it was set aside "
                    "for the operator to look at.")
            self._send_notice(job, error_answers(job.incoming, text))
        try:
            self.mailbox.set_aside([job.ref], self.settings.failed_folder)
            if self.claims is not None:
                self.claims.finished([job.ref])
        except TransientError as exc:
            log.warning("%s: could not move to %s: %s", job.ref.key, self.settings.failed_folder, exc)
        self.ledger.mark_set_aside(job.ref.key, job.incoming.message_id, job.incoming.sender, reason)
        self._log(job, "set-aside", reason)

    def _set_aside_unreadable(self, ref: MailRef) -> None:
        reason = "the message cannot be parsed"
        try:
            self.mailbox.set_aside([ref], self.settings.failed_folder)
            if self.claims is not None:
                self.claims.finished([ref])
        except TransientError as exc:
            log.warning("%s: could not move to %s: %s", ref.key, self.settings.failed_folder, exc)
        self.ledger.mark_set_aside(ref.key, reason=reason)
        log.info("%s from (unknown): set-aside (%s)", ref.key, reason)

    def _send_notice(self, job: Job, answers: list[dict],
                     protection: Protection | None = None) -> None:
        protection = self.settings.protection if protection is None else protection
        try:
            self._send(build_reply(job.incoming, self.settings.address, answers,
                                   protection=protection, display_name=self.settings.display_name))
        except MessageRejected as exc:
            log.warning("%s: could not tell %s: %s", job.incoming.message_id or job.ref.key,
                        job.incoming.sender, exc)

    def _finish(self, state: str, job: Job, reason: str) -> None:
        mark = {ANSWERED: self.ledger.mark_answered, SET_ASIDE: self.ledger.mark_set_aside,
                IGNORED: self.ledger.mark_ignored}[state]
        mark(job.ref.key, job.incoming.message_id, job.incoming.sender, reason)
        self._log(job, "ignored", reason)

    # -- classify and answer ------------------------------------------------

    def _classify_and_answer(self, jobs: list[Job], stats: PassStats) -> list[MailRef]:
        """Classify and answer; with ``pipeline`` on, the replies of one chunk are sent
        while the next chunk is classified (pipeline.py). Returns the answered refs."""
        chunks = self._chunks(jobs)
        if not self.settings.pipeline or len(chunks) < 2:
            self._classify(jobs)
            return self._answer(jobs, stats)
        rejected: list[tuple[Job, str]] = []
        with SendingStage(lambda chunk: self._answer(chunk, stats, rejected)) as stage:
            for chunk in chunks:
                self._classify(chunk)
                if not stage.put(chunk):
                    break  # the sending stage failed: its error is raised on leaving
        # Set aside here, in the thread that owns the mailbox connection.
        for job, reason in rejected:
            self._set_aside(job, reason, tell_sender=False)
        return stage.answered

    def _chunks(self, jobs: list[Job]) -> list[list[Job]]:
        """First tries in chunks of about one forward pass of images (at least
        PIPELINE_CHUNK_IMAGES); a retried request alone, as _classify wants it."""
        per_pass = getattr(self.classifier, "images_per_pass", lambda: 1)()
        size = max(PIPELINE_CHUNK_IMAGES, per_pass)
        chunks: list[list[Job]] = []
        current: list[Job] = []
        images = 0
        for job in jobs:
            if job.attempts > 1:
                chunks.append([job])
                continue
            current.append(job)
            images += max(1, len(job.incoming.images))
            if images >= size:
                chunks.append(current)
                current, images = [], 0
        if current:
            chunks.append(current)
        return chunks

    def _classify(self, jobs: list[Job]) -> None:
        """All images of all first-try jobs in one classify() call; retried ones alone.

        A message that failed before may be the one that brings the server
        down, so it is kept out of the shared batch.
        """
        first_tries = [job for job in jobs if job.attempts <= 1]
        retries = [job for job in jobs if job.attempts > 1]
        groups = ([first_tries] if first_tries else []) + [[job] for job in retries]
        for group in groups:
            if self.claims is not None:
                self.claims.progress()
            try:
                self._classify_group(group)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the server
                if len(group) == 1:
                    job = group[0]
                    log.error("%s: classifier failed: %s: %s", job.incoming.message_id or job.ref.key,
                              type(exc).__name__, clean_text(exc))
                    job.answers = None
                else:  # find the culprit: the others still get their answers
                    for job in group:
                        self._classify_one_safely(job)

    def _classify_one_safely(self, job: Job) -> None:
        try:
            self._classify_group([job])
        except Exception as exc:  # noqa: BLE001
            log.error("%s: classifier failed: %s: %s", job.incoming.message_id or job.ref.key,
                      type(exc).__name__, clean_text(exc))
            job.answers = None

    def _classify_group(self, jobs: list[Job]) -> None:
        items, owners = [], []
        for job in jobs:
            for position, image in enumerate(job.incoming.images):
                if image.refusal is None:
                    items.append((image.name, image.data))
                    owners.append((job, position))
            job.answers = [{"file": image.name, "error": image.refusal or "not classified"}
                           for image in job.incoming.images]
        if items:
            started = time.monotonic()
            results = self.classifier.classify(items)
            self.classify_seconds += time.monotonic() - started
            for (job, position), answer in zip(owners, results):
                job.answers[position] = answer

    def _answer(self, jobs: list[Job], stats: PassStats,
                rejected: list[tuple[Job, str]] | None = None) -> list[MailRef]:
        """SEND each reply, then RECORD it; the answered refs, to delete. A reply the mail
        server refuses is set aside at once, or (from the sending stage) added to
        ``rejected`` for the mailbox's own thread."""
        started = time.monotonic()
        try:
            return self._send_and_record(jobs, stats, rejected)
        finally:
            self.answer_seconds += time.monotonic() - started

    def _send_and_record(self, jobs: list[Job], stats: PassStats,
                         rejected: list[tuple[Job, str]] | None) -> list[MailRef]:
        answered = []
        for job in jobs:
            if job.answers is None:  # classifier failed: leave it for the next pass
                continue
            if self.claims is not None and not self.claims.still_ours(job.ref):
                continue  # our lease ran out and another worker has it: do not send
            incoming = job.incoming
            note = "\n".join(incoming.problems)
            answers = job.answers or error_answers(incoming, incoming.problems[0] if incoming.problems
                                                   else "no image found in the message")
            reply = build_reply(incoming, self.settings.address, answers, note=note,
                                protection=self.settings.protection,
                                display_name=self.settings.display_name)
            try:
                self._send(reply)
            except MessageRejected as exc:
                if rejected is None:
                    self._set_aside(job, f"the reply was refused: {exc}", tell_sender=False)
                else:
                    rejected.append((job, f"the reply was refused: {exc}"))
                stats.set_aside += 1
                continue
            self.ledger.mark_answered(job.ref.key, incoming.message_id, incoming.sender)
            stats.answered += 1
            self.handled += 1
            self._log(job, *outcome(answers, incoming.skipped, time.monotonic() - job.started))
            answered.append(job.ref)
        return answered

    def _send(self, message) -> None:
        send_with_retry(lambda: self.sender.send(message), attempts=SEND_ATTEMPTS,
                        base_delay=0.5, max_delay=min(5.0, self.settings.retry_max_delay),
                        what="sending the reply")

    def _remove_answered(self, refs: list[MailRef]) -> None:
        if self.settings.answered_folder:
            self.mailbox.set_aside(refs, self.settings.answered_folder)
        else:
            self.mailbox.delete(refs)
        if self.claims is not None:
            self.claims.finished(refs)

    @staticmethod
    def _log(job: Job, action: str, reason: str) -> None:
        incoming = job.incoming
        log.info("%s from %s: %s (%s)", incoming.message_id or job.ref.key,
                 incoming.sender or "(no sender)", action, reason)


def _claims_folder(config: Config) -> str:
    """[server] claims_folder, checked against the folders it must not be."""
    section = config.section("server")
    folder = section.get("claims_folder")
    others = {"[imap] folder": config.section("imap").get("folder"),
              "[server] failed_folder": section.get("failed_folder"),
              "[server] answered_folder": section.get("answered_folder", "")}
    for name, other in others.items():
        if other and other.lower() == folder.lower():
            raise section.error("claims_folder", f"{folder!r} is also {name}; claims need a folder "
                                                 "of their own")
    return folder


def _count(items: list, noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def outcome(answers: list[dict], skipped: list[str], seconds: float) -> tuple[str, str]:
    """The action and reason of an answered message's log line, saying what the answer holds:
    "answered (2 images, 0.41 s)", "answered with errors (1 of 2 images failed, 0.41 s)",
    "answered with errors (no image: <why>, 0.02 s)"; skipped decorations are counted."""
    failed = [answer for answer in answers if "error" in answer]
    extra = f", {_count(skipped, 'decoration')} skipped" if skipped else ""
    if not failed:
        return "answered", f"{_count(answers, 'image')}{extra}, {seconds:.2f} s"
    if len(answers) == 1 and answers[0].get("file") == "(message)":
        return "answered with errors", f"no image: {clean_text(answers[0]['error'], 120)}, {seconds:.2f} s"
    return "answered with errors", (f"{len(failed)} of {_count(answers, 'image')} failed{extra}, "
                                    f"{seconds:.2f} s")


@contextmanager
def serving_in_background(server: "Server", join_timeout: float = 15.0):
    """``server.run()`` in a thread for the length of a ``with`` block.

    At the end the server is stopped and closed; a failure inside the thread,
    or a server that would not stop, is raised here instead of being lost.
    """
    failure: list[BaseException] = []

    def serve():
        try:
            server.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            failure.append(exc)

    thread = threading.Thread(target=serve, name="animalid-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(join_timeout)
        server.close()
    if thread.is_alive():
        raise RuntimeError("the server did not stop")
    if failure:
        raise RuntimeError(f"the server failed: {failure[0]!r}") from failure[0]


def load_classifier(config: Config, max_pixels: int):
    """The classifier (PyTorch) -- imported here only, so the mail code stays light."""
    from animalid.recognition.classifier import Classifier

    return Classifier.from_config(config, max_pixels=max_pixels)
