"""The trail-camera mails: one alert per visit, and the digest.

Both are automatic mail (RFC 3834 ``Auto-Submitted: auto-generated``), so
nobody's auto-responder answers them. An alert's Message-ID is derived from
its visit: should a crash make the server send it again (the SEND-to-RECORD
window, docs/trail-cameras.md), mail clients see one message twice, not two.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Sequence

from animalid.server.ledger.trail import Visit

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def _message_id(kind: str, key: str, domain: str) -> str:
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]
    return f"<animalid-{kind}.{digest}@{domain}>"


def _headers(message: EmailMessage, sender: str, display_name: str, to: Sequence[str], subject: str) -> None:
    message["From"] = email.utils.formataddr((display_name, sender)) if display_name else sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = email.utils.formatdate(localtime=True)
    message["Auto-Submitted"] = "auto-generated"


def local_time(at: float) -> str:
    return time.strftime(TIME_FORMAT, time.localtime(at))


def facts_lines(answer: dict[str, Any]) -> list[str]:
    """The knowledge base's facts of an answer, as lines ("" facts left out)."""
    lines = []
    for key, title in (("description", "About"), ("habitat", "Habitat"), ("endangered", "Status")):
        value = str(answer.get(key) or (answer.get("lead") or {}).get(key) or "").strip()
        if value:
            lines.append(f"{title}: {value}")
    warnings = [word for word in ("dangerous", "poisonous", "venomous") if answer.get(word)]
    if warnings:
        lines.append("Warning: " + ", ".join(warnings))
    return lines


def build_alert(sender: str, display_name: str, notify: Sequence[str], headline: str, camera_name: str,
                taken: float, answer: dict[str, Any], picture: bytes | None, visit_id: str) -> EmailMessage:
    """ "Bear (Ursidae) at North ridge, 82%", with the drawn photo, camera, time taken and facts."""
    message = EmailMessage()
    _headers(message, sender, display_name, notify, headline)
    message["Message-ID"] = _message_id("alert", visit_id, sender.rpartition("@")[2] or "localhost")
    lines = [headline, "", f"Camera: {camera_name}", f"Taken: {local_time(taken)}",
             f"Photo: {answer.get('file', '')}", *facts_lines(answer), "",
             "Further photos of this visit go into the digest, not into more alerts."]
    message.set_content("\n".join(lines) + "\n")
    if picture:
        message.add_attachment(picture, maintype="image", subtype="jpeg", filename="alert.jpg")
    return message


@dataclass(frozen=True)
class CameraSummary:
    """One camera's part of a digest."""

    camera: str
    name: str
    frames: int
    empty: int
    per_taxon: dict[str, int]  # claimed taxon label -> frames
    silent_for: float | None  # seconds since its last photo when over silent_after; else None
    never_heard: bool = False


def build_digest(sender: str, display_name: str, to: str, since: float, until: float,
                 cameras: Sequence[CameraSummary], visits: Sequence[Visit]) -> EmailMessage:
    """Counts per camera and taxon since ``since``, each visit's best photo as a thumbnail,
    empty frames, silent cameras."""
    message = EmailMessage()
    _headers(message, sender, display_name, [to],
             f"Trail camera digest: {len(visits)} visit{'s' if len(visits) != 1 else ''}, "
             f"{sum(camera.frames for camera in cameras)} photos")
    message["Message-ID"] = _message_id("digest", f"{to}|{until}", sender.rpartition("@")[2] or "localhost")
    lines = [f"From {local_time(since)} to {local_time(until)}", ""]
    for camera in cameras:
        lines.append(f"{camera.name}: {camera.frames} photos, {camera.empty} empty frames")
        for taxon, count in sorted(camera.per_taxon.items()):
            lines.append(f"  {taxon}: {count} photos")
        if camera.never_heard:
            lines.append("  SILENT: no photo received yet")
        elif camera.silent_for is not None:
            lines.append(f"  SILENT: nothing for {camera.silent_for / 3600:.1f} h")
    lines += ["", "Visits:"]
    for number, visit in enumerate(visits, 1):
        alerted = "alerted" if visit.alerted else "no alert (quiet hours)"
        lines.append(f"  {number}. {visit.label} at {visit.camera_name}: {visit.frames} photos, "
                     f"{local_time(visit.first_taken)} to {local_time(visit.last_taken)}, "
                     f"best {visit.best_probability:.0f}% ({alerted})")
    if not visits:
        lines.append("  none")
    message.set_content("\n".join(lines) + "\n")
    for number, visit in enumerate(visits, 1):
        if visit.best_thumbnail:
            message.add_attachment(base64.b64decode(visit.best_thumbnail), maintype="image",
                                   subtype="jpeg", filename=f"visit-{number}.jpg")
    return message
