"""Classifying the requests of a pass and answering them: SEND each reply, then RECORD it.

``Answerer`` is the collaborator of ``service.Server`` that turns triaged
requests into replies: all images of the first tries in one classify() call
(retried requests alone, since one may be the message that brings the server
down), then each reply sent and recorded in the ledger; deleting the request
is the service's next step. Everything it works with is handed to it: the
settings, the classifier (any ``ClassifierLike``), the SMTP sender, and per
pass the ledger, the claims and how to set a request aside. With ``[server] pipeline`` on, the replies of one chunk
are sent while the next chunk is classified (pipeline.py).
"""

from __future__ import annotations

import logging
import time
from email.message import EmailMessage
from typing import Any, Callable, Protocol, Sequence

from animalid.history import ANSWERED, ImageResult, RequestRecord
from animalid.mail.imagetypes import GIF_NOTE
from animalid.mail.mailbox import MailRef
from animalid.mail.messages import build_reply, clean_text, error_answers
from animalid.mail.transport import MessageRejected, RecipientDeferred, SmtpSender, backoff_delay, send_with_retry
from animalid.server.claims import Claims
from animalid.server.jobs import Job, PassStats
from animalid.server.ledger import REPLY_MARK, Ledger
from animalid.server.observer import NoObserver, Observer
from animalid.server.pipeline import SendingStage
from animalid.server.settings import ServerSettings
from animalid.server.trail.keeper import TrailKeeper

log = logging.getLogger(__name__)

SEND_ATTEMPTS = 3
# Requests classified together before their replies go to the sending stage:
# small enough that sending starts soon, large enough for full forward passes.
PIPELINE_CHUNK_IMAGES = 4


class ClassifierLike(Protocol):
    """What the server needs of a classifier (animalid.recognition.classifier.Classifier)."""

    def load(self) -> None:
        """Load the networks now, if not yet loaded (PyTorch and the weights: seconds)."""

    def images_per_pass(self) -> int:
        """How many images one forward pass takes."""

    def classify(self, items: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
        """One answer per (name, data), in order; never raises for a bad image."""


SetAside = Callable[[Job, str, bool], None]  # (job, reason, tell_sender)
LogLine = Callable[[Job, str, str], None]  # (job, action, reason)


class Answerer:
    """Classify the requests of a pass and SEND, then RECORD, each reply."""

    def __init__(self, settings: ServerSettings, classifier: ClassifierLike, sender: SmtpSender,
                 set_aside: SetAside, log_line: LogLine):
        self.settings = settings
        self.classifier = classifier
        self.sender = sender
        self._set_aside = set_aside  # runs in the thread that owns the mailbox connection
        self._log = log_line
        self.ledger: Ledger | None = None  # set by the server once it has opened one
        self.claims: Claims | None = None  # set when the server shares its mailbox
        self.observer: Observer = NoObserver()
        self.trail: TrailKeeper | None = None  # set by the server when it watches trail cameras
        self.classify_seconds = 0.0  # total time inside classify(), for benchmarks
        self.answer_seconds = 0.0  # total time building, sending and recording replies
        self.handled = 0
        # key -> monotonic time before which the server does not look at it again (a reply
        # whose recipient answered 4xx; the server adds requests over the rate limit)
        self.deferred: dict[str, float] = {}
        self.counted_this_pass: list[str] = []  # tries counted in this pass (taken back on an outage)

    def classify_and_answer(self, jobs: list[Job], stats: PassStats) -> list[MailRef]:
        """Classify and answer; with ``pipeline`` on, the replies of one chunk are sent
        while the next chunk is classified (pipeline.py). Returns the answered refs."""
        chunks = self._chunks(jobs)
        if not self.settings.pipeline or len(chunks) < 2:
            self._classify(jobs)
            return self._answer(jobs, stats)
        rejected: list[tuple[Job, str]] = []
        def answer(chunk: Sequence[Job]) -> list[MailRef]:
            return self._answer(list(chunk), stats, rejected)

        stage: SendingStage[Job, MailRef]
        with SendingStage(answer) as stage:
            for chunk in chunks:
                self._classify(chunk)
                if not stage.put(chunk):
                    break  # the sending stage failed: its error is raised on leaving
        # Set aside here, in the thread that owns the mailbox connection.
        for job, reason in rejected:
            self._set_aside(job, reason, False)
        return stage.answered

    def _chunks(self, jobs: list[Job]) -> list[list[Job]]:
        """First tries in chunks of about one forward pass of images (at least
        PIPELINE_CHUNK_IMAGES); a retried request alone, as _classify wants it."""
        per_pass = self.classifier.images_per_pass()
        size = max(PIPELINE_CHUNK_IMAGES, per_pass)
        chunks: list[list[Job]] = []
        current: list[Job] = []
        images = 0
        for job in jobs:
            if job.attempts >= 1:
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
        first_tries = [job for job in jobs if job.attempts == 0]
        retries = [job for job in jobs if job.attempts >= 1]
        groups = ([first_tries] if first_tries else []) + [[job] for job in retries]
        for group in groups:
            if self.claims is not None:
                self.claims.progress()
            self._count_tries(group)
            try:
                self._classify_group(group)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the server
                if len(group) == 1:
                    job = group[0]
                    log.error("%s: classifier failed: %s: %s", job.incoming.message_id or job.ref.key,
                              type(exc).__name__, clean_text(exc))
                    job.failed = True
                else:  # find the culprit: the others still get their answers
                    for job in group:
                        self._classify_one_safely(job)

    def _count_tries(self, group: list[Job]) -> None:
        """One more try for each request of ``group``, durable before it is classified:
        if classifying it kills the process, it counts for these requests alone."""
        assert self.ledger is not None, "the server opens its ledger before classifying"
        counts = self.ledger.begin_attempts([job.ref.key for job in group])
        for job in group:
            job.attempts = counts[job.ref.key]
        self.counted_this_pass += [job.ref.key for job in group]

    def _classify_one_safely(self, job: Job) -> None:
        try:
            self._classify_group([job])
        except Exception as exc:  # noqa: BLE001
            log.error("%s: classifier failed: %s: %s", job.incoming.message_id or job.ref.key,
                      type(exc).__name__, clean_text(exc))
            job.failed = True

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
            elapsed = time.monotonic() - started
            self.classify_seconds += elapsed
            self.observer.classified(elapsed)
            for (job, position), answer in zip(owners, results):
                if job.incoming.images[position].content_type == "image/gif" and "error" not in answer:
                    answer = {**answer, "note": GIF_NOTE}
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
            if job.failed:  # classifier failed: leave it for the next pass
                continue
            if self.claims is not None and not self.claims.still_ours(job.ref):
                continue  # our lease ran out and another worker has it: do not send
            if job.camera is not None:
                self._observe(job, stats)
                answered.append(job.ref)
                continue
            incoming = job.incoming
            note = "\n".join(incoming.problems)
            answers = job.answers or error_answers(incoming, incoming.problems[0] if incoming.problems
                                                   else incoming.no_image)
            reply = build_reply(incoming, self.settings.address, answers, note=note,
                                protection=self.settings.protection,
                                display_name=self.settings.display_name)
            try:
                self.send(reply)
            except (MessageRejected, RecipientDeferred) as exc:
                if isinstance(exc, RecipientDeferred) and job.attempts < self.settings.max_attempts:
                    # Tried again in a later pass, after a pause; this try is counted.
                    delay = backoff_delay(job.attempts, 5.0, self.settings.retry_max_delay)
                    self.deferred[job.ref.key] = time.monotonic() + delay
                    log.warning("%s: reply to %s deferred (try %d of %d, next in %.0f s): %s",
                                incoming.message_id or job.ref.key, incoming.sender, job.attempts,
                                self.settings.max_attempts, delay, exc)
                    continue
                reason = (f"the reply was deferred {job.attempts} times: {exc}"
                          if isinstance(exc, RecipientDeferred) else f"the reply was refused: {exc}")
                if rejected is None:
                    self._set_aside(job, reason, False)
                else:
                    rejected.append((job, reason))
                stats.set_aside += 1
                continue
            assert self.ledger is not None, "the server opens its ledger before answering"
            action, reason = outcome(answers, incoming.skipped, time.monotonic() - job.started)
            job.answers = answers
            # The reply's Message-ID too, so a delivery report about it finds this request.
            self.ledger.mark_answered(job.ref.key, incoming.message_id, incoming.sender,
                                      f"{reason}; {REPLY_MARK}{reply['Message-ID']}",
                                      record=answered_record(job, reason))
            stats.answered += 1
            self.handled += 1
            self._log(job, action, reason)
            answered.append(job.ref)
        return answered

    def _observe(self, job: Job, stats: PassStats) -> None:
        """A trail camera's message: never answered; observed, alerted, recorded (trail/keeper.py)."""
        assert self.trail is not None and job.camera is not None, "camera jobs come from the keeper's match"
        incoming = job.incoming
        answers = job.answers or []
        record = answered_record(job, "observed")
        reason = self.trail.observe(job.camera, incoming, answers, job.arrived, record, job.ref.key)
        stats.answered += 1
        self.handled += 1
        self._log(job, "observed", reason)

    def send(self, message: EmailMessage) -> None:
        """Hand one reply to the SMTP server, retrying transient trouble a few times."""
        send_with_retry(lambda: self.sender.send(message), attempts=SEND_ATTEMPTS,
                        base_delay=0.5, max_delay=min(5.0, self.settings.retry_max_delay),
                        what="sending the reply")


def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def outcome(answers: list[dict[str, Any]], skipped: list[str], seconds: float) -> tuple[str, str]:
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


def answered_record(job: Job, reason: str) -> RequestRecord:
    """The history row of an answered request: each photo's answer in brief."""
    incoming = job.incoming
    return RequestRecord(key=job.ref.key, arrived=job.arrived, sender=incoming.sender,
                         subject=clean_text(incoming.subject, 300), outcome=ANSWERED, reason=reason,
                         seconds=max(0.0, time.time() - job.arrived), message_id=incoming.message_id,
                         images=tuple(ImageResult.from_answer(answer) for answer in job.answers))
