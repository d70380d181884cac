"""What one pass of the server works with: a request in hand, triage's verdict, the counts."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from animalid.mail.mailbox import MailRef
from animalid.mail.messages import Incoming
from animalid.server.trail.rules import CameraMatch


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
    answers: list[dict[str, Any]] = field(default_factory=list)
    failed: bool = False  # the classifier failed on it: no reply this pass
    started: float = field(default_factory=time.monotonic)
    arrived: float = field(default_factory=time.time)  # when this worker first saw it in the mailbox
    camera: CameraMatch | None = None  # a trail camera's photo: observed, never answered

    def photos(self) -> list[bytes]:
        """Each image's bytes, b"" for one refused before classifying (one per answer)."""
        return [image.data if image.refusal is None else b"" for image in self.incoming.images]


@dataclass
class PassStats:
    answered: int = 0
    ignored: int = 0
    refused: int = 0
    set_aside: int = 0
    waiting: int = 0  # copies waiting for another key of their Message-ID
    more_waiting: bool = False
