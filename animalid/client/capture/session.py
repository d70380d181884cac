"""What both front ends share: the capture session (capture, send, file the
answers, keep the records) and the updates it reports to the window or the
terminal."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from animalid.client.capture.archive import ShotArchive, shot_report
from animalid.client.capture.imaging import encode_jpeg
from animalid.client.capture.mailer import MailWorker
from animalid.client.capture.settings import CaptureSettings
from animalid.client.capture.shots import Shot, ShotBook

if TYPE_CHECKING:  # only for annotations: importing them costs start-up time
    import numpy as np

# The package's one logger: log lines name "animalid.client.capture", as before the split.
log = logging.getLogger(__package__)


@dataclass
class Update:
    kind: str  # "sent", "not_sent", "answered", "timed_out" or "mail_problem"
    shot: Shot | None = None
    text: str = ""


class CaptureSession:
    """Capture, send, file the answers and keep the records; no UI of its own."""

    def __init__(self, settings: CaptureSettings, worker: MailWorker, archive: ShotArchive,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.worker = worker
        self.archive = archive
        self.clock = clock
        self.book = ShotBook(settings.timeout_s)

    def capture(self, frame: "np.ndarray") -> Shot:
        jpeg = encode_jpeg(frame, self.settings.jpeg_quality, self.settings.max_side)
        shot = self.book.add(jpeg, self.clock(), dt.datetime.now())
        self.archive.keep_shot(shot)
        self.worker.send(shot.number, shot.name, jpeg)
        return shot

    def update(self) -> list[Update]:
        """Take in what the mail worker did; mark shots that waited too long."""
        now, updates = self.clock(), []
        for event in self.worker.events():
            if event.kind == "sent":
                assert event.shot_number is not None and event.message_id is not None, \
                    "the mail worker names the shot and its Message-ID"
                updates.append(Update("sent", self.book.mark_sent(event.shot_number,
                                                                  event.message_id, now)))
            elif event.kind == "not_sent":
                assert event.shot_number is not None
                shot = self.book.mark_not_sent(event.shot_number, event.problem or "not sent", event.status)
                self.archive.keep_outcome(shot)
                updates.append(Update("not_sent", shot, shot.problem or ""))
            elif event.kind == "answered":
                answered = self.book.take_answers(event.message_id or "", event.answers or [], now)
                if answered is None:
                    log.info("ignoring an answer to %s: not a shot of this run, or answered",
                             event.message_id)
                    continue
                self.archive.keep_outcome(answered)
                updates.append(Update("answered", answered))
            else:
                updates.append(Update("mail_problem", text=f"mail: {event.problem}"))
        for shot in self.book.expire(now):
            self.archive.keep_outcome(shot)
            updates.append(Update("timed_out", shot, shot.problem or ""))
        return updates


def describe_update(update: Update) -> str:
    """The line (or lines) a terminal shows for an update."""
    shot = update.shot
    if shot is None:  # a mail problem: no shot of its own
        return update.text
    if update.kind == "sent":
        return f"captured shot {shot.number}, sent (message id {shot.message_id})"
    if update.kind == "not_sent":
        return f"captured shot {shot.number}, {shot.problem}"
    if update.kind == "answered":
        return f"answer for {shot_report(shot)}"
    if update.kind == "timed_out":
        return f"shot {shot.number}: {shot.problem}"
    return update.text

