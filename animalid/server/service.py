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

A message whose handling fails ``max_attempts`` times is set aside -- moved to
the failed folder on IMAP, recorded on POP3 -- and its sender is told. A try
is counted durably just before the request's own classification (answering.py),
so a request that crashes the server counts and those queued behind it do not;
a message the mail server will not give (``Unreadable``), one that cannot be
parsed, and one whose reply's recipient answers 4xx count a try each too.
Transient trouble (a mail server down, a full disk under the ledger) is
retried with capped exponential backoff, logged when it starts and when it
ends, and does not count as an attempt. A request over its sender's hourly
rate stays in the mailbox and waits for the next window. With
``require_authentication`` a request counts only when the provider's
Authentication-Results vouches for its From (mail/authresults.py). Each
handled message gives one log line: id, sender, action, reason.

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

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from animalid.errors import AnimalIdError, PermanentError, TransientError
from animalid.history import WORKING, RequestRecord
from animalid.mail.authresults import check_sender
from animalid.mail.mailbox import Mailbox, MailRef, TooLarge, Unreadable
from animalid.mail.messages import Incoming, build_reply, clean_text, error_answers, parse_headers_only, parse_incoming
from animalid.mail.protection import Protection
from animalid.mail.transport import MessageRejected, SmtpSender, backoff_delay
from animalid.pidlock import FileLock, LockHeld
from animalid.server.answering import SEND_ATTEMPTS, Answerer, ClassifierLike
from animalid.server.claims import CLAIM_BATCH, Claims, new_worker_id
from animalid.server.jobs import Job, PassStats, Verdict
from animalid.server.ledger import ANSWERED, IGNORED, REFUSED, SET_ASIDE, Ledger, open_ledger
from animalid.server.observer import NoObserver, Observer
from animalid.server.settings import ServerSettings
from animalid.server.trail.keeper import TrailKeeper
from animalid.server.trail.rules import CameraMatch

log = logging.getLogger(__name__)

RATE_WINDOW_S = 3600.0
RATE_RECHECK_S = 30.0  # a request over its sender's rate limit is looked at again this often
PRUNE_EVERY_S = 3600.0  # the ledger forgets old records this often, not only at start-up
# The action words of the log lines, as the history's and the metrics' outcomes.
ACTION_OUTCOMES = {"answered": ANSWERED, "observed": ANSWERED, "answered with errors": ANSWERED, "refused": REFUSED,
                   "ignored": IGNORED, "set-aside": SET_ASIDE}
# Per pass: bounded memory, and answers start flowing during a long burst.
MAX_MESSAGES_PER_PASS = 64
MAX_BYTES_PER_PASS = 200_000_000
WAIT_SLICE_S = 0.5  # how often a waiting server looks at its stop flag
RETRY_HELD_S = 1.0  # a worker holding claims it could not finish looks again this soon
POP3_ALONE = ("; with receive = pop3 only one server may watch a mailbox: POP3 cannot claim a "
              "message atomically (it has no MOVE), so two servers would answer the same requests "
              "(use receive = imap to run several servers)")
NO_CLAIMS_ALONE = ("; this IMAP server lacks MOVE or UIDPLUS (RFC 6851, RFC 4315), which servers "
                   "need to claim requests, so only one server may watch this mailbox")


# -- the lock ---------------------------------------------------------------

class MailboxLock:
    """A lock beside the state file: exclusive for a server that cannot share its
    mailbox (POP3), shared by servers that claim (IMAP), so the two kinds never
    run together on one machine."""

    def __init__(self, state_file: Path):
        self.path = Path(str(state_file) + ".lock")
        self._lock = FileLock(self.path)

    def acquire(self, shared: bool = False, why: str = "") -> None:
        try:
            self._lock.acquire(shared)
        except LockHeld as held:
            if shared:
                raise PermanentError(f"a server that cannot share this mailbox (pid {held.pid or '?'}, "
                                     f"receive = pop3) is already watching it (lock {self.path}); "
                                     "stop it, or switch it to receive = imap") from None
            who = f"another server (pid {held.pid}) is" if held.pid else "other servers are"
            raise PermanentError(f"{who} already watching this mailbox (lock {self.path}){why}") from None

    def release(self) -> None:
        self._lock.release()


# -- the server -------------------------------------------------------------

class Server:
    """Answers every allowed request in one mailbox; see the module docstring.

    Assembled from config.ini by ``animalid.cli.settings.server``: the
    settings, the mailbox and SMTP sender (not connected yet), and the
    classifier, which ``open()`` loads (``classifier.load()``).
    """

    def __init__(self, settings: ServerSettings, mailbox: Mailbox, sender: SmtpSender,
                 classifier: ClassifierLike):
        self.settings = settings
        self.classifier = classifier
        self.mailbox = mailbox
        self.sender = sender
        self.answerer = Answerer(settings, classifier, sender, self._set_aside, self._log)
        # Trail cameras (trail/): their mail is observed, never answered; alerts and digests.
        self.trail = TrailKeeper(settings.trail, settings.address, settings.display_name, self.answerer.send)
        if self.trail.active:
            self.answerer.trail = self.trail
        self.ledger: Ledger | None = None
        self._lock = MailboxLock(self.settings.state_file)
        self.worker = new_worker_id()
        self.claims: Claims | None = None  # set when the mailbox is shared (IMAP MOVE + UIDPLUS)
        self.stop_event = threading.Event()
        self._next_prune = 0.0  # when the ledger is pruned next (monotonic)
        self._deferral_logged: set[str] = set()  # requests over the rate limit, logged once each
        self.observer: Observer = NoObserver()
        # What the operations page reads (animalid.web): this worker's own view.
        self.queue_depth = 0  # requests waiting in the watched folder at the last look
        self.mailbox_ok = False  # logged in, and the last pass reached the mail servers
        self.model_ready = False
        self._arrivals: dict[str, float] = {}  # key -> when this worker first saw it listed

    def watch(self, observer: Observer) -> None:
        """Tell ``observer`` about every request handled from now on."""
        self.observer = observer
        self.answerer.observer = observer

    @property
    def claims_held(self) -> int:
        return len(self.claims.held) if self.claims is not None else 0

    @property
    def classify_seconds(self) -> float:
        """Total time inside classify(), for benchmarks."""
        return self.answerer.classify_seconds

    @property
    def answer_seconds(self) -> float:
        """Total time building, sending and recording replies."""
        return self.answerer.answer_seconds

    @property
    def handled(self) -> int:
        return self.answerer.handled

    @property
    def deferred(self) -> dict[str, float]:
        """Key -> monotonic time before which it is not looked at again: a request over
        its sender's rate limit, a reply whose recipient answered 4xx (answering.py)."""
        return self.answerer.deferred

    # -- lifecycle ----------------------------------------------------------

    def open(self) -> "Server":
        alone = self.settings.receive != "imap"
        if alone:  # known before logging in: a second POP3 server stops here
            self._lock.acquire(why=POP3_ALONE)
        try:
            self.ledger = open_ledger(self.settings.ledger_settings)
            self._ledger.worker = self.worker
            self.answerer.ledger = self.ledger
            self.trail.ledger = self.ledger
            self._prune()
            # A wrong password or an unreachable server shows now, in seconds,
            # not after the model has loaded.
            self.mailbox.verify_login()
            self.sender.verify_login()
            self.mailbox_ok = True
            if not alone:
                self._share_or_lock()
            self._load_classifier()  # before the first mail, not during it
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
        self.claims = Claims(self.mailbox, self._ledger, settings.claims_folder, settings.claim_lease,
                             self.worker)
        self.answerer.claims = self.claims
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
            self.answerer.claims = None
            if self.ledger is not None:
                try:  # a clean stop: this worker leaves the record (a crash leaves it, to show as gone)
                    self.ledger.leave()
                except AnimalIdError as exc:
                    log.debug("could not remove this worker's entry: %s", exc)
        for closer in (self.mailbox.close, self.sender.close):
            try:
                closer()
            except AnimalIdError as exc:
                log.debug("while closing: %s", exc)
        if self.ledger is not None:
            self._ledger.close()
            self.ledger = None
            self.trail.ledger = None
        self._lock.release()

    def __enter__(self) -> "Server":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _ledger(self) -> Ledger:
        """The ledger, which ``open()`` opens before anything needs it."""
        if self.ledger is None:
            raise PermanentError("the server is not open (call open() first)")
        return self.ledger

    def _load_classifier(self) -> None:
        started = time.monotonic()
        self.classifier.load()
        self.model_ready = True
        log.info("classifier ready in %.1f s (%s backend)", time.monotonic() - started,
                 getattr(self.classifier, "backend", "torch"))

    def stop(self) -> None:
        self.stop_event.set()

    def run(self, once: bool = False) -> None:
        """Serve until stop() (or, with ``once``, until what is waiting is handled)."""
        if self.ledger is None:
            self.open()
        how = self.settings.receive.upper() + (" IDLE" if self.settings.receive == "imap" else " polling")
        if once:  # it does not watch: it looks once
            log.info("answering what waits at %s for %s, then exiting (--once)%s",
                     self.mailbox.endpoint.where, self.settings.address, self._sharing())
        else:
            log.info("watching %s for %s by %s%s", self.mailbox.endpoint.where, self.settings.address,
                     how, self._sharing())
        failures = 0
        lost_at: float | None = None  # when the connection was lost; None while it works
        while not self.stop_event.is_set():
            try:
                if time.monotonic() >= self._next_prune:
                    self._prune()
                stats = self.handle_waiting()
                if lost_at is not None:  # one line per recovery
                    log.info("the connection is back after %.0f s (%d failed tries)",
                             time.monotonic() - lost_at, failures)
                    lost_at = None
                    self.observer.mailbox_reconnected()
                failures = 0
                self.mailbox_ok = True
                if stats.more_waiting:
                    continue
                if once:
                    return
                self._wait_for_mail(soon=bool(stats.waiting or (self.claims and self.claims.held)))
            except TransientError as exc:
                # A dropped connection or a server restarting: reconnect with
                # capped backoff (the mailbox reopens on its next call).
                failures += 1
                self.mailbox_ok = False
                if once and failures >= SEND_ATTEMPTS:
                    raise
                delay = backoff_delay(failures, 1.0, self.settings.retry_max_delay)
                if lost_at is None:  # one line per loss; the retries that follow add none
                    lost_at = time.monotonic()
                    # A full disk under the ledger reads as such, not as a lost connection.
                    what = "cannot write the ledger" if str(exc).startswith("ledger ") else \
                        "lost the connection"
                    log.warning("%s: %s; trying again until it is back (every %.0f s at most)",
                                what, exc, self.settings.retry_max_delay)
                else:
                    log.debug("still no connection (%s); next try in %.1f s", exc, delay)
                self.stop_event.wait(delay)

    def _prune(self) -> None:
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        try:
            self._ledger.prune()
        except TransientError as exc:  # a full disk: the next hour, or the next start, will do
            log.warning("could not prune the ledger: %s", exc)

    def _sharing(self) -> str:
        if self.claims is None:
            return " (the only server on this mailbox)"
        return (f" as worker {self.worker}, sharing the mailbox (claims in {self.claims.folder}, "
                f"lease {self.claims.lease:g} s, ledger {self._ledger.describe()})")

    def _wait_for_mail(self, soon: bool = False) -> None:
        """Until new mail may be there, or (sharing) the next lease beat is due, or with
        ``soon`` the claims we still hold are worth another look."""
        deadline = time.monotonic() + (RETRY_HELD_S if soon else float("inf"))
        while not self.stop_event.is_set():
            self._tick_trail()
            if self.claims is not None:
                deadline = min(deadline, time.monotonic() + self.claims.seconds_to_beat())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            if self.mailbox.wait(min(WAIT_SLICE_S, remaining)):
                return

    def _tick_trail(self) -> None:
        """Digests that are due go out (trail/keeper.py); a failure to send waits for the next tick."""
        if not self.trail.active:
            return
        try:
            self.trail.tick()
        except TransientError as exc:
            log.warning("the trail-camera digest could not be sent yet: %s", exc)

    # -- one pass -----------------------------------------------------------

    def handle_waiting(self) -> PassStats:
        """Handle everything in the mailbox now; returns what was done."""
        stats = PassStats()
        self._tick_trail()
        try:
            if self.claims is not None:
                self._handle_claimed(stats)
                return stats
            refs = self.mailbox.list_messages()
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
        assert claims is not None, "only a server sharing its mailbox holds claims"
        claims.progress()
        claims.beat_if_due()
        new_refs = self._skip_finished(self.mailbox.list_messages())
        room = max(0, CLAIM_BATCH - len(claims.held))
        won = claims.take(new_refs, room) if room and new_refs else []
        # More waits and we are not starved: look again at once.
        stats.more_waiting = bool(won) and len(new_refs) > len(won)
        batch = [ref for ref in self._settle_finished_claims(claims.held_refs())
                 if ref.key not in self.deferred]  # a reply deferred by its recipient waits
        if batch:
            self._handle_batch(batch, stats)
            self.mailbox.expect_more()

    def _settle_finished_claims(self, held: list[MailRef]) -> list[MailRef]:
        """Claims already final in the ledger (a step after RECORD failed): finish the
        step; the rest, to work on."""
        finals = self._ledger.known_final_keys([ref.key for ref in held])
        if not finals:
            return held
        state = {ref.key: finals[ref.key].state for ref in held if ref.key in finals}
        answered = [ref for ref in held if state.get(ref.key) == ANSWERED]
        aside = [ref for ref in held if state.get(ref.key) == SET_ASIDE]
        if answered:
            self._remove_answered(answered)
        claims = self.claims
        assert claims is not None, "only a server sharing its mailbox holds claims"
        if aside:
            self.mailbox.set_aside(aside, self.settings.failed_folder)
            claims.finished(aside)
        claims.give_back([ref for ref in held if state.get(ref.key) in (IGNORED, REFUSED)])
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
        finished = self._ledger.known_final_keys([ref.key for ref in refs])
        # Answered before a crash (or a failed POP3 QUIT) but still there: remove now.
        leftovers = [ref for ref in refs if ref.key in finished and finished[ref.key].state == ANSWERED]
        if leftovers:
            log.info("removing %d request(s) answered earlier", len(leftovers))
            self._remove_answered(leftovers)
        now = time.monotonic()
        for key in [key for key, until in self.deferred.items() if until <= now]:
            del self.deferred[key]
        waiting = [ref for ref in refs if ref.key not in finished]
        self._note_arrivals(waiting)
        return [ref for ref in waiting if ref.key not in self.deferred]

    def _note_arrivals(self, waiting: list[MailRef]) -> None:
        """When each waiting request was first seen (its arrival, for the page and the
        request duration), and how many wait; forget what is gone."""
        now = time.time()
        keys = [ref.key for ref in waiting] + (list(self.claims.held) if self.claims is not None else [])
        self._arrivals = {key: self._arrivals.get(key, now) for key in keys}
        self.queue_depth = len(waiting)

    @staticmethod
    def _take_batch(refs: list[MailRef], max_message_bytes: int) -> list[MailRef]:
        """The first messages that fit the per-pass budget (always at least one)."""
        batch: list[MailRef] = []
        total = 0
        for ref in refs[:MAX_MESSAGES_PER_PASS]:
            size = ref.size or 0
            total += size if size <= max_message_bytes else 0  # too large: not downloaded
            if batch and total > MAX_BYTES_PER_PASS:
                break
            batch.append(ref)
        return batch

    def _handle_batch(self, refs: list[MailRef], stats: PassStats) -> None:
        # Tries made before this pass. A try is counted just before the request's own
        # classification (answering.py), so a request that crashes the server counts,
        # and the requests queued behind it do not.
        attempts = self._ledger.attempts_of([ref.key for ref in refs])
        self.answerer.counted_this_pass = []
        try:
            self._work_on(refs, attempts, stats)
        except TransientError:
            # The mail servers failed, not the messages: those tries do not count.
            # (Finished messages are no longer "seen" and keep their state.)
            try:
                self._ledger.release_attempts(self.answerer.counted_this_pass)
            except TransientError as exc:
                log.debug("could not take back this pass's tries: %s", exc)
            raise

    def _work_on(self, refs: list[MailRef], attempts: dict[str, int], stats: PassStats) -> None:
        contents = self.mailbox.fetch(refs, self.settings.limits.max_message_bytes)
        too_large = [ref for ref in refs if isinstance(contents.get(ref.key), TooLarge)]
        headers = self.mailbox.fetch_headers(too_large) if too_large else {}
        jobs: list[Job] = []
        done: list[MailRef] = []
        keep: list[MailRef] = []
        ids_in_pass: set[str] = set()
        parsed: list[Job] = []
        for ref in refs:
            content = contents.get(ref.key)
            if content is None and ref.key not in headers:
                if self.claims is not None:
                    self.claims.forget([ref])
                continue  # removed by someone else meanwhile
            incoming = None if isinstance(content, Unreadable) else \
                self._read(ref, content, headers.get(ref.key))
            if incoming is None:
                reason = content.reason if isinstance(content, Unreadable) else "the message cannot be parsed"
                tries = self._ledger.begin_attempts([ref.key])[ref.key]  # this failure is its try
                if tries >= self.settings.max_attempts:
                    self._set_aside_unreadable(ref, f"{reason} ({tries} tries)")
                    stats.set_aside += 1
                else:
                    log.warning("%s: %s (try %d of %d)", ref.key, reason, tries, self.settings.max_attempts)
                continue
            if incoming.message_id in ids_in_pass:
                # A second copy in the same pass (a client's retried submission, a
                # replay): the next pass finds the first one finished and removes it.
                stats.more_waiting = True
                continue
            if incoming.message_id:
                ids_in_pass.add(incoming.message_id)
            parsed.append(Job(ref, incoming, attempts[ref.key],
                              arrived=self._arrivals.get(ref.key, time.time())))
        if parsed:
            self._record_taken_up(parsed)
        for job in parsed:
            verdict = self._triage(job, stats)
            if verdict is Verdict.WORK:
                jobs.append(job)
            elif verdict is Verdict.REMOVE:
                done.append(job.ref)
            elif verdict is Verdict.KEEP:
                keep.append(job.ref)
            elif verdict is Verdict.WAIT:
                stats.waiting += 1
        if jobs:
            done += self.answerer.classify_and_answer(jobs, stats)
        if done:
            self._remove_answered(done)
        if keep and self.claims is not None:
            # Left in the mailbox: back to the INBOX, under new keys; a deferral follows
            # its request there, so it is not claimed again before its time.
            for old, new in self.claims.give_back(keep).items():
                if old in self.deferred:
                    self.deferred[new] = self.deferred.pop(old)
                if old in self._deferral_logged:
                    self._deferral_logged.add(new)

    def _record_taken_up(self, jobs: list[Job]) -> None:
        """The requests of this pass in the history, before triage (one transaction): the
        live pages show them at once, and their final rows keep arrival, sender and subject."""
        self._ledger.record_requests([
            RequestRecord(key=job.ref.key, arrived=job.arrived, sender=job.incoming.sender,
                          subject=clean_text(job.incoming.subject, 300), outcome=WORKING,
                          reason="being answered", worker=self.worker, message_id=job.incoming.message_id)
            for job in jobs])
        self.observer.changed()

    def _read(self, ref: MailRef, content: bytes | TooLarge | None,
              header_bytes: bytes | None) -> Incoming | None:
        own = [self.settings.address]
        limits, protection = self.settings.limits, self.settings.protection
        try:
            if isinstance(content, TooLarge):
                return parse_headers_only(header_bytes or b"", own, content.size, limits, protection)
            return parse_incoming(content or b"", own, limits, protection)
        except Exception as exc:  # the email package on hostile input: count as a failed try
            log.warning("%s: cannot parse the message (%s: %s)", ref.key, type(exc).__name__,
                        clean_text(exc))
            return None

    def _triage(self, job: Job, stats: PassStats) -> "Verdict":
        """Decide what becomes of a request before any classifying (see ``Verdict``)."""
        ref, incoming = job.ref, job.incoming
        ledger, settings = self._ledger, self.settings
        message_id, sender = incoming.message_id, incoming.sender
        refusal = self._unauthenticated(incoming)
        if refusal:
            # Before any reservation and without its Message-ID in the ledger: a forgery
            # must not hold up, pre-empt or use the rate limit of the real sender's request.
            self._log(job, "refused", refusal)
            ledger.mark_refused(ref.key, "", sender, refusal)
            stats.refused += 1
            return Verdict.KEEP
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
        camera = self.trail.match(incoming) if incoming.is_request else None
        if camera is not None:
            return self._triage_camera(job, camera, stats)
        if not incoming.is_request:
            if incoming.bounced_ids:
                self._note_bounce(job)
            self._log(job, "ignored", incoming.reason)
            ledger.mark_ignored(ref.key, message_id, sender, incoming.reason)
            stats.ignored += 1
            return Verdict.KEEP
        if not settings.allowed.allows(sender):
            self._log(job, "refused", "sender not allowed")
            ledger.mark_refused(ref.key, message_id, sender, "sender not allowed")
            stats.refused += 1
            return Verdict.KEEP
        if incoming.protection_problem:
            self._refuse_unprotected(job)
            stats.refused += 1
            return Verdict.KEEP
        if settings.rate_limit_per_hour and \
                ledger.count_events(sender, RATE_WINDOW_S) >= settings.rate_limit_per_hour:
            self._defer_over_rate(job)
            stats.refused += 1
            return Verdict.KEEP
        if job.attempts >= settings.max_attempts:
            self._set_aside(job, f"failed {job.attempts} times", tell_sender=True)
            stats.set_aside += 1
            return Verdict.SET_ASIDE
        if not ledger.take_event(sender, "request", RATE_WINDOW_S, settings.rate_limit_per_hour):
            # Another worker took this sender's last request of the hour meanwhile.
            self._defer_over_rate(job)
            stats.refused += 1
            return Verdict.KEEP
        return Verdict.WORK

    def _triage_camera(self, job: Job, camera: CameraMatch, stats: PassStats) -> Verdict:
        """A trail camera's photo: no reply ever, no rate limit (cameras burst); observed."""
        if job.incoming.protection_problem:  # refused without a notice: a camera cannot read
            reason = f"security check failed: {job.incoming.protection_problem}"
            self._log(job, "refused", reason)
            self._ledger.mark_refused(job.ref.key, job.incoming.message_id, job.incoming.sender, reason)
            stats.refused += 1
            return Verdict.KEEP
        if job.attempts > self.settings.max_attempts:
            self._set_aside(job, f"failed {job.attempts - 1} times", tell_sender=False)
            stats.set_aside += 1
            return Verdict.SET_ASIDE
        job.camera = camera
        return Verdict.WORK

    def _note_bounce(self, job: Job) -> None:
        """A delivery report about one of our replies: recorded against its request."""
        for reply_id in job.incoming.bounced_ids:
            record = self._ledger.record_bounce(reply_id, job.incoming.bounce_detail)
            if record is not None:
                log.info("%s from %s: the reply bounced (%s)", record.message_id or record.key,
                         record.sender or "(no sender)", job.incoming.bounce_detail)

    def _unauthenticated(self, incoming: Incoming) -> str:
        """Why a request from an allowed sender or a trail camera is not believed, or ""
        (authresults.py): a forged camera mail would raise false alerts."""
        settings = self.settings
        if not (settings.require_authentication and incoming.is_request
                and (settings.allowed.allows(incoming.sender) or self.trail.match(incoming) is not None)):
            return ""
        verdict = check_sender(incoming.header_fields, incoming.sender, settings.authserv_ids)
        return "" if verdict.trusted else f"sender not authenticated: {verdict.reason}"

    def _defer_over_rate(self, job: Job) -> None:
        """Over the sender's hourly limit: kept in the mailbox and looked at again later,
        answered once the hour allows; one log line per request, one notice per hour."""
        limit = self.settings.rate_limit_per_hour
        self.deferred[job.ref.key] = time.monotonic() + RATE_RECHECK_S
        self._ledger.release_reservation(job.ref.key)
        if job.ref.key in self._deferral_logged:
            return
        self._deferral_logged.add(job.ref.key)
        if self._ledger.take_event(job.incoming.sender, "rate-notice", RATE_WINDOW_S, 1):
            text = (f"You have sent more than {limit} requests in the last hour; this one "
                    "waits, and is answered as soon as the hour's limit allows.")
            self._send_notice(job, error_answers(job.incoming, text))
        self._log(job, "deferred", f"rate limit: more than {limit} requests in an hour; kept for the next window")

    def _refuse_unprotected(self, job: Job) -> None:
        """A request from an allowed address that fails the [security] check.

        The From may be forged -- that is what the check is for -- so the
        sender is told only when configured, and at most once an hour.
        """
        reason = f"security check failed: {job.incoming.protection_problem}"
        if self.settings.protection.notify_failures:
            if self._ledger.take_event(job.incoming.sender, "security-notice", RATE_WINDOW_S, 1):
                text = (f"Your request was not processed: {job.incoming.protection_problem}. "
                        "Check that client and server share the same [security] keys.")
                # Signed but not sealed: the sender may lack the key to open it.
                self._send_notice(job, error_answers(job.incoming, text),
                                  replace(self.settings.protection, encryption_key=None))
        self._log(job, "refused", reason)
        self._ledger.mark_refused(job.ref.key, job.incoming.message_id, job.incoming.sender, reason)

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
        self._ledger.mark_set_aside(job.ref.key, job.incoming.message_id, job.incoming.sender, reason)
        self._log(job, "set-aside", reason)

    def _set_aside_unreadable(self, ref: MailRef, reason: str) -> None:
        try:
            self.mailbox.set_aside([ref], self.settings.failed_folder)
            if self.claims is not None:
                self.claims.finished([ref])
        except TransientError as exc:
            log.warning("%s: could not move to %s: %s", ref.key, self.settings.failed_folder, exc)
        self._ledger.mark_set_aside(ref.key, reason=reason)
        log.info("%s from (unknown): set-aside (%s)", ref.key, reason)
        self.observer.request_finished(ref.key, SET_ASIDE, None)

    def _send_notice(self, job: Job, answers: list[dict[str, Any]],
                     protection: Protection | None = None) -> None:
        protection = self.settings.protection if protection is None else protection
        try:
            self.answerer.send(build_reply(job.incoming, self.settings.address, answers,
                                   protection=protection, display_name=self.settings.display_name))
        except MessageRejected as exc:
            log.warning("%s: could not tell %s: %s", job.incoming.message_id or job.ref.key,
                        job.incoming.sender, exc)

    def _finish(self, state: str, job: Job, reason: str) -> None:
        mark = {ANSWERED: self._ledger.mark_answered, SET_ASIDE: self._ledger.mark_set_aside,
                IGNORED: self._ledger.mark_ignored, REFUSED: self._ledger.mark_refused}[state]
        mark(job.ref.key, job.incoming.message_id, job.incoming.sender, reason)
        self._log(job, "ignored", reason)

    def _remove_answered(self, refs: list[MailRef]) -> None:
        if self.settings.answered_folder:
            self.mailbox.set_aside(refs, self.settings.answered_folder)
        else:
            self.mailbox.delete(refs)
        if self.claims is not None:
            self.claims.finished(refs)

    def _log(self, job: Job, action: str, reason: str) -> None:
        """The one log line of a handled message, and the same news for the observer."""
        incoming = job.incoming
        log.info("%s from %s: %s (%s)", incoming.message_id or job.ref.key,
                 incoming.sender or "(no sender)", action, reason)
        outcome = ACTION_OUTCOMES.get(action)
        if outcome == ANSWERED:
            self.observer.request_finished(job.ref.key, ANSWERED, max(0.0, time.time() - job.arrived),
                                           job.answers, job.photos())
        elif outcome is not None:
            self.observer.request_finished(job.ref.key, outcome, None)


@contextmanager
def serving_in_background(server: "Server", join_timeout: float = 15.0) -> Iterator["Server"]:
    """``server.run()`` in a thread for the length of a ``with`` block.

    At the end the server is stopped and closed; a failure inside the thread,
    or a server that would not stop, is raised here instead of being lost.
    """
    failure: list[BaseException] = []

    def serve() -> None:
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

