"""The request history's shapes: what the ledger stores and the operations page shows.

One ``RequestRecord`` per request a server handled: when it came in, who
sent it and with what subject, each photo's answer in brief (``ImageResult``),
the outcome with its reason, the time from arrival to reply sent, and the
worker. ``HistoryQuery`` is a page of it as the page asks: filters and a
keyset cursor, so paging costs the same on page 1 and page 200.

Plain Python with no dependencies beyond ``contract``, like that module: the
ledger (server layer) writes these and the web layer reads them, and neither
imports the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from animalid.contract import COULD_NOT_IDENTIFY, NO_ANIMAL, headline, warnings_of

WORKING = "working"
ANSWERED = "answered"
REFUSED = "refused"
IGNORED = "ignored"
SET_ASIDE = "set_aside"
OUTCOMES = (WORKING, ANSWERED, REFUSED, IGNORED, SET_ASIDE)
FINAL_OUTCOMES = (ANSWERED, REFUSED, IGNORED, SET_ASIDE)

# Per-image results, as animalid_images_total{result} counts them.
IDENTIFIED = "identified"
NOT_IDENTIFIED = "not_identified"
NO_ANIMAL_RESULT = "no_animal"
IMAGE_ERROR = "error"
IMAGE_RESULTS = (IDENTIFIED, NOT_IDENTIFIED, NO_ANIMAL_RESULT, IMAGE_ERROR)

# IUCN categories shown as a "threatened" badge (Vulnerable and worse).
THREATENED = ("VULNERABLE", "ENDANGERED", "CRITICALLY ENDANGERED", "EXTINCT IN THE WILD")
MAX_TEXT = 300  # subjects, reasons, file names and headlines are cut to this
MAX_PAGE = 200


def _cut(text: object, limit: int = MAX_TEXT) -> str:
    return str(text or "")[:limit]


@dataclass(frozen=True)
class ImageResult:
    """One photo's answer in brief: what the table shows beside its thumbnail."""

    file: str
    headline: str
    probability: float | None = None  # percent, as in the answer
    flags: tuple[str, ...] = ()  # DANGEROUS, VENOMOUS, POISONOUS, and an IUCN status
    result: str = IDENTIFIED  # one of IMAGE_RESULTS

    @classmethod
    def from_answer(cls, answer: dict[str, Any]) -> "ImageResult":
        if "error" in answer:
            return cls(_cut(answer.get("file")), _cut(f"error: {answer['error']}"), None, (), IMAGE_ERROR)
        name = answer.get("common_name", "")
        result = (NOT_IDENTIFIED if name == COULD_NOT_IDENTIFY else NO_ANIMAL_RESULT if name == NO_ANIMAL
                  else IDENTIFIED)
        probability = answer.get("probability")
        return cls(_cut(answer.get("file")), _cut(headline(answer)),
                   float(probability) if isinstance(probability, (int, float)) else None,
                   tuple(warnings_of(answer)), result)

    @property
    def threatened(self) -> bool:
        return any(flag in THREATENED for flag in self.flags)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "headline": self.headline, "probability": self.probability,
                "flags": list(self.flags), "result": self.result}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ImageResult":
        probability = data.get("probability")
        return cls(_cut(data.get("file")), _cut(data.get("headline")),
                   float(probability) if isinstance(probability, (int, float)) else None,
                   tuple(str(flag) for flag in data.get("flags") or ()),
                   str(data["result"]) if data.get("result") in IMAGE_RESULTS else IDENTIFIED)


@dataclass(frozen=True)
class RequestRecord:
    """One request as the history keeps it (times are Unix seconds)."""

    key: str  # the ledger's key for the message: unique, stable while it is worked on
    arrived: float
    sender: str = ""
    subject: str = ""
    outcome: str = WORKING
    reason: str = ""
    seconds: float | None = None  # arrival to reply sent; None when no reply was sent
    worker: str = ""
    images: tuple[ImageResult, ...] = ()
    message_id: str = ""
    updated: float = 0.0
    origin: str = ""  # the key of its first row: the row's identity when the key changes

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r} (expected one of {', '.join(OUTCOMES)})")

    def finished(self, outcome: str, reason: str, when: float, seconds: float | None = None,
                 images: tuple[ImageResult, ...] = (), worker: str = "") -> "RequestRecord":
        return replace(self, outcome=outcome, reason=_cut(reason), updated=when, seconds=seconds,
                       images=images or self.images, worker=worker or self.worker)

    def images_json(self) -> str:
        return json.dumps([image.to_json() for image in self.images], separators=(",", ":"))

    @staticmethod
    def images_from_json(text: str) -> tuple[ImageResult, ...]:
        try:
            data = json.loads(text or "[]")
        except ValueError:
            return ()
        return tuple(ImageResult.from_json(item) for item in data if isinstance(item, dict))

    def to_json(self) -> dict[str, Any]:
        """The row as /api/requests and the live page get it: plain text, the page escapes."""
        return {"id": self.origin or self.key, "key": self.key, "message_id": self.message_id, "arrived": self.arrived,
                "updated": self.updated, "sender": self.sender, "subject": self.subject,
                "outcome": self.outcome, "reason": self.reason, "seconds": self.seconds,
                "worker": self.worker, "images": [image.to_json() for image in self.images]}


@dataclass(frozen=True)
class HistoryQuery:
    """Which rows, newest first: every filter optional, ``before`` a keyset cursor."""

    outcome: str = ""
    sender: str = ""  # case-insensitive substring
    subject: str = ""  # case-insensitive substring
    start: float | None = None  # arrived >= start
    end: float | None = None  # arrived < end
    before: tuple[float, str] | None = None  # (arrived, key) of the last row of the previous page
    limit: int = 50

    def __post_init__(self) -> None:
        if self.outcome and self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r} (expected one of {', '.join(OUTCOMES)})")
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"limit {self.limit} is outside 1..{MAX_PAGE}")


@dataclass(frozen=True)
class HistoryPage:
    rows: list[RequestRecord] = field(default_factory=list)
    total: int = 0  # rows matching the filters, on every page
    more: bool = False  # older rows follow

    @property
    def cursor(self) -> str:
        """The ``before`` of the next page ("" when there is none)."""
        if not self.more or not self.rows:
            return ""
        last = self.rows[-1]
        return encode_cursor(last.arrived, last.key)


@dataclass(frozen=True)
class Timing:
    """What the charts need of one request."""

    arrived: float
    seconds: float | None
    outcome: str


def encode_cursor(arrived: float, key: str) -> str:
    return f"{arrived!r}~{key}"


def decode_cursor(text: str) -> tuple[float, str]:
    """``arrived~key`` back to its parts; ValueError names what is wrong."""
    arrived, sep, key = text.partition("~")
    if not sep or not key:
        raise ValueError(f"cursor {text[:40]!r} is not 'arrived~key'")
    return float(arrived), key
