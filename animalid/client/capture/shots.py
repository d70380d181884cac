"""Shots and their answers: each captured frame from capture to answer (or to
the reason there is none), and the book that files every answer under its own
shot by message id."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from animalid.client.capture.imaging import decode_jpeg
from animalid.errors import ExitStatus

if TYPE_CHECKING:  # only for annotations: importing them costs start-up time
    import numpy as np


def shot_file_name(number: int, taken: dt.datetime) -> str:
    return f"shot-{number:03d}-{taken:%Y%m%d-%H%M%S}.jpg"


@dataclass(eq=False)
class Shot:
    """One captured frame, from capture to answer (or to the reason there is none)."""

    number: int
    name: str
    jpeg: bytes
    captured_at: float  # clock seconds (monotonic), for "waiting ... N s"
    taken: dt.datetime  # wall-clock time, for file names and records
    message_id: str | None = None
    sent_at: float | None = None
    answers: list[dict] | None = None
    answered_at: float | None = None
    problem: str | None = None  # why there is no answer: not sent, timed out
    problem_status: ExitStatus | None = None

    @property
    def waiting(self) -> bool:
        return self.answers is None and self.problem is None

    @property
    def answer(self) -> dict | None:
        """This shot's answer: the one naming its file, else the first."""
        if not self.answers:
            return None
        return next((a for a in self.answers if a.get("file") == self.name), self.answers[0])

    def seconds_waited(self, now: float) -> int:
        end = self.answered_at if self.answered_at is not None else now
        return max(0, int(end - self.captured_at))

    @functools.cached_property
    def image(self) -> "np.ndarray":
        """The shot as sent (decoded JPEG): what the server saw."""
        return decode_jpeg(self.jpeg)


class ShotBook:
    """Every shot of this run, keyed by number and by message id."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.shots: list[Shot] = []
        self._by_message_id: dict[str, Shot] = {}
        # The shot whose state changed last: the one the preview's card shows.
        self.featured: Shot | None = None

    def add(self, jpeg: bytes, now: float, taken: dt.datetime) -> Shot:
        number = len(self.shots) + 1
        shot = Shot(number, shot_file_name(number, taken), jpeg, now, taken)
        self.shots.append(shot)
        self.featured = shot
        return shot

    def get(self, number: int) -> Shot:
        return self.shots[number - 1]

    def mark_sent(self, number: int, message_id: str, now: float) -> Shot:
        shot = self.get(number)
        shot.message_id, shot.sent_at = message_id, now
        self._by_message_id[message_id] = shot
        return shot

    def mark_not_sent(self, number: int, problem: str, status: ExitStatus) -> Shot:
        shot = self.get(number)
        shot.problem, shot.problem_status = f"not sent: {problem}", status
        self.featured = shot
        return shot

    def take_answers(self, message_id: str, answers: list[dict], now: float) -> Shot | None:
        """File the answers under their shot; None for a message id not ours or answered."""
        shot = self._by_message_id.get(message_id)
        if shot is None or shot.answers is not None:
            return None
        # A late answer still counts: it replaces the "no answer within" note.
        shot.answers, shot.answered_at = list(answers), now
        shot.problem = shot.problem_status = None
        self.featured = shot
        return shot

    def expire(self, now: float) -> list[Shot]:
        """Shots sent longer than the timeout ago without an answer, marked as such."""
        expired = []
        for shot in self.waiting():
            if shot.sent_at is not None and now - shot.sent_at >= self.timeout_s:
                shot.problem = f"no answer within {self.timeout_s:g} s"
                shot.problem_status = ExitStatus.TIMEOUT
                self.featured = shot
                expired.append(shot)
        return expired

    def waiting(self) -> list[Shot]:
        return [shot for shot in self.shots if shot.waiting]

    def exit_status(self) -> ExitStatus:
        """How the last shot that failed failed; OK when none did.

        A shot still waiting when the user quits is the user's choice, not a failure.
        """
        status = ExitStatus.OK
        for shot in self.shots:
            if shot.problem_status is not None:
                status = shot.problem_status
            elif shot.answers and any("error" in answer for answer in shot.answers):
                status = ExitStatus.ERROR
        return status


def waiting_text(shot: Shot, now: float) -> str:
    if shot.message_id is None:
        return "sending\u2026"
    return f"waiting for the answer\u2026 {shot.seconds_waited(now)} s"


def waiting_summary(shots: Sequence[Shot], now: float) -> str:
    """One line for the terminal about every shot still waiting."""
    if not shots:
        return ""
    if len(shots) == 1:
        return f"shot {shots[0].number}: {waiting_text(shots[0], now)}"
    parts = ", ".join(f"shot {s.number}: {s.seconds_waited(now)} s" for s in shots)
    return f"waiting for the answers\u2026 {parts}"
