"""Pure rules: which camera mailed a message, whether an answer alerts, visits and schedules.

No I/O here: the keeper (keeper.py) feeds times and answers in, so the unit
tests run each rule on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from animalid.server.trail.settings import CameraSettings


@dataclass(frozen=True)
class CameraMatch:
    """A message that came from a camera."""

    settings: CameraSettings
    camera: str  # the ledger's name for it: the section, plus the subject's name group
    name: str  # shown in mails


@dataclass(frozen=True)
class AlertMatch:
    """An answer that falls within one of a camera's ``alert_on`` taxa."""

    taxon: str  # the alert_on entry, as written
    common_name: str
    scientific_name: str
    probability: float  # percent

    @property
    def label(self) -> str:
        if self.common_name and self.common_name.lower() != self.scientific_name.lower():
            return f"{self.common_name[:1].upper()}{self.common_name[1:]} ({self.scientific_name})"
        return self.scientific_name

    def headline(self, camera_name: str) -> str:
        """ "Bear (Ursidae) at North ridge, 82%"."""
        return f"{self.label} at {camera_name}, {self.probability:.0f}%"


def sender_matches(pattern: str, sender: str) -> bool:
    sender = sender.lower()
    if pattern.startswith("*@"):
        return sender.rpartition("@")[2] == pattern[2:]
    return sender == pattern


def match_camera(cameras: tuple[CameraSettings, ...], sender: str, subject: str) -> CameraMatch | None:
    """The first camera whose ``from`` (and ``subject_pattern``, when set) the message fits."""
    for camera in cameras:
        if not any(sender_matches(pattern, sender) for pattern in camera.senders):
            continue
        if camera.subject_pattern is None:
            return CameraMatch(camera, camera.section, camera.name or camera.section)
        found = camera.subject_pattern.search(subject or "")
        if found is None:
            continue
        picked = next((value for value in found.groupdict().values() if value), "")
        if not picked:
            return CameraMatch(camera, camera.section, camera.name or camera.section)
        name = (camera.name.replace("{name}", picked) if "{name}" in camera.name
                else f"{camera.name} {picked}" if camera.name else picked)
        return CameraMatch(camera, f"{camera.section}/{picked}", name)
    return None


def lineage(answer: dict[str, Any]) -> list[str]:
    """The claim's taxa from the top rank down to the claimed one (lower case)."""
    taxonomy = answer.get("taxonomy") or {}
    names = [str(value).lower() for value in taxonomy.values() if value]
    claim = str(answer.get("scientific_name") or "").lower()
    if claim and claim not in names:
        names.append(claim)
    return names


def match_alert(camera: CameraSettings, answer: dict[str, Any]) -> AlertMatch | None:
    """The best ``alert_on`` taxon the answer's claim or lead falls within at or above its
    threshold; None for an empty frame, an error, or nothing on the list."""
    if "error" in answer or not answer.get("scientific_name"):
        return None
    claim_line = lineage(answer)
    candidates: list[tuple[list[str], dict[str, Any]]] = [(claim_line, answer)]
    lead = answer.get("lead")
    if isinstance(lead, dict) and lead.get("scientific_name"):
        lead_name = str(lead["scientific_name"]).lower()
        lead_line = claim_line + ([lead_name] if lead_name not in claim_line else [])
        candidates.append((lead_line, lead))
    best: AlertMatch | None = None
    for line, part in candidates:
        probability = float(part.get("probability") or 0.0)
        for taxon in camera.alert_on:
            if taxon.lower() in line and probability >= 100 * camera.threshold(taxon):
                found = AlertMatch(taxon, str(part.get("common_name") or ""),
                                   str(part.get("scientific_name") or ""), probability)
                if best is None or found.probability > best.probability:
                    best = found
    return best


def joins_visit(last_taken: float, taken: float, cooldown_s: float) -> bool:
    """Whether a photo taken at ``taken`` belongs to a visit last seen at ``last_taken``."""
    return abs(taken - last_taken) <= cooldown_s


def minute_of_day(at: float) -> int:
    local = time.localtime(at)
    return local.tm_hour * 60 + local.tm_min


def is_quiet(camera: CameraSettings, at: float) -> bool:
    return camera.quiet_hours is not None and camera.quiet_hours.covers(minute_of_day(at))


def last_scheduled(minute: int, now: float) -> float:
    """The latest time at or before ``now`` when a daily schedule at ``minute`` fell due."""
    local = time.localtime(now)
    midnight = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))
    due = midnight + minute * 60
    if due > now:
        yesterday = time.localtime(midnight - 12 * 3600)
        due = time.mktime((yesterday.tm_year, yesterday.tm_mon, yesterday.tm_mday, minute // 60,
                           minute % 60, 0, 0, 0, -1))
    return due


def digest_due(minute: int, last_sent: float, now: float) -> bool:
    """Whether a daily digest at ``minute`` is due: its latest time passed after ``last_sent``."""
    return last_scheduled(minute, now) > last_sent
