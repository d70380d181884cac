"""The rules of each ``[trail-camera NAME]`` section, typed and frozen, and their pure parsers.

animalid.cli.settings reads the file and calls the parsers here, which raise
``ValueError`` with the problem in words; the caller adds file, section and
key. Nothing here reads the config file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class QuietHours:
    """From ``start`` to ``end`` minutes after midnight (may run past midnight)."""

    start: int
    end: int

    def covers(self, minute_of_day: int) -> bool:
        if self.start <= self.end:
            return self.start <= minute_of_day < self.end
        return minute_of_day >= self.start or minute_of_day < self.end


@dataclass(frozen=True)
class CameraSettings:
    """One camera: which mail is its, and what to do with its photos."""

    section: str  # NAME of [trail-camera NAME]
    senders: tuple[str, ...]  # addresses, or "*@domain" patterns
    subject_pattern: re.Pattern[str] | None
    name: str  # shown in alerts; "{name}" in it takes the subject pattern's group
    notify: tuple[str, ...]
    alert_on: tuple[str, ...]  # taxa at any rank, as the knowledge base names them
    min_probability: float  # 0..1
    taxon_probability: dict[str, float] = field(default_factory=dict)  # taxon (lower case) -> 0..1
    cooldown_s: float = 1800.0
    quiet_hours: QuietHours | None = None
    digest_minute: int | None = None  # minutes after midnight of the daily digest; None: none
    silent_after_s: float = 86400.0

    def threshold(self, taxon: str) -> float:
        return self.taxon_probability.get(taxon.lower(), self.min_probability)


@dataclass(frozen=True)
class TrailSettings:
    cameras: tuple[CameraSettings, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.cameras)


def parse_duration(text: str) -> float:
    """ "30m", "24h", "90s", "2d" or plain seconds -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 30m, 24h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_clock(text: str) -> int:
    """ "07:00" -> minutes after midnight."""
    match = _CLOCK.match(text.strip())
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"{text.strip()!r} is not a time of day (HH:MM, 00:00 to 23:59)")
    return int(match.group(1)) * 60 + int(match.group(2))


def parse_quiet_hours(text: str) -> QuietHours | None:
    """ "22:00-06:00" -> QuietHours; "" -> None."""
    if not text.strip():
        return None
    start, dash, end = text.partition("-")
    if not dash:
        raise ValueError(f"{text!r} is not a range of times (e.g. 22:00-06:00)")
    hours = QuietHours(parse_clock(start), parse_clock(end))
    if hours.start == hours.end:
        raise ValueError(f"{text!r} starts and ends at the same time")
    return hours


def parse_digest(text: str) -> int | None:
    """ "daily 07:00" -> 420; "" or "off" -> None."""
    words = text.split()
    if not words or words == ["off"]:
        return None
    if len(words) != 2 or words[0].lower() != "daily":
        raise ValueError(f"{text!r} is not a schedule (e.g. daily 07:00, or off)")
    return parse_clock(words[1])


def parse_probability(text: str) -> tuple[float, dict[str, float]]:
    """ "0.6, Ursidae=0.4" -> (0.6, {"ursidae": 0.4}); values 0..1, or percentages with "%".
    Without an overall value, 0.5 (config.py SECTION_TEMPLATES)."""
    overall = 0.5
    per_taxon: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        taxon, equals, value = item.rpartition("=")
        number = _fraction(value.strip())
        if equals:
            if not taxon.strip():
                raise ValueError(f"{item!r} names no taxon (e.g. Ursidae=0.4)")
            per_taxon[taxon.strip().lower()] = number
        else:
            overall = number
    return overall, per_taxon


def _fraction(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise ValueError(f"{text!r} is not a probability (0 to 1, or a percentage like 60%)") from None
    if text.endswith("%"):
        value /= 100
    if not 0 <= value <= 1:
        raise ValueError(f"{text!r} is not between 0 and 1 (write a percentage with %, e.g. 60%)")
    return value


def parse_senders(text: str) -> tuple[str, ...]:
    senders = tuple(item.strip().lower() for item in text.replace("\n", ",").split(",") if item.strip())
    for sender in senders:
        local, at, domain = sender.rpartition("@")
        if not at or not local or "." not in domain or ("*" in local and local != "*") or "*" in domain:
            raise ValueError(f"{sender!r} is neither an address nor a *@domain pattern")
    if not senders:
        raise ValueError("missing: the camera's address, or *@domain (add it to the section)")
    return senders


def parse_subject_pattern(text: str) -> re.Pattern[str] | None:
    if not text.strip():
        return None
    try:
        pattern = re.compile(text.strip())
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    if pattern.groups and not pattern.groupindex:
        raise ValueError("name the group that picks the camera's name, e.g. (?P<name>\\w+)")
    return pattern
