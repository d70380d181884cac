"""Camera photos into observations and visits; alerts and digests out (SEND, then RECORD).

``TrailKeeper.observe`` takes one classified camera message: each photo
becomes an observation (empty frames too); a photo whose claim or lead falls
within the camera's ``alert_on`` joins the visit of the same camera and taxon
within the cooldown, or opens a new one, and a new visit outside quiet hours
is alerted. The alerts are SENT first, then the observations, the visits and
the request's final state are RECORDED in one transaction, and only then is
the request deleted (service.py). A crash between the two sends the alert
again when the request is handled again (same Message-ID): the one duplicate
window, as for replies. ``tick`` sends the digests that are due, recording
each digest's time in the ledger after sending it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from email.message import EmailMessage
from typing import Any, Callable

from animalid.history import RequestRecord
from animalid.mail.messages import Incoming
from animalid.mail.transport import MessageRejected
from animalid.server.ledger import Ledger
from animalid.server.ledger.trail import Observation, Visit
from animalid.server.trail.mails import CameraSummary, build_alert, build_digest
from animalid.server.trail.photos import annotated, taken_time, thumbnail_b64
from animalid.server.trail.rules import CameraMatch, digest_due, is_quiet, joins_visit, match_alert, match_camera
from animalid.server.trail.settings import CameraSettings, TrailSettings

log = logging.getLogger(__name__)

Send = Callable[[EmailMessage], None]


def _lead_text(answer: dict[str, Any]) -> tuple[str, float]:
    lead = answer.get("lead") if isinstance(answer.get("lead"), dict) else None
    part = lead or answer
    if not part.get("scientific_name"):
        return "", 0.0
    return f"{part.get('common_name', '')} ({part['scientific_name']})", float(part.get("probability") or 0.0)


class TrailKeeper:
    """Observes camera mail and sends alerts and digests; see the module docstring."""

    def __init__(self, settings: TrailSettings, address: str, display_name: str, send: Send,
                 clock: Callable[[], float] = time.time):
        self.settings = settings
        self.address = address
        self.display_name = display_name
        self.send = send
        self.clock = clock  # tests move it to make a digest due
        self.ledger: Ledger | None = None
        self.alerts_sent = 0
        self.digests_sent = 0

    @property
    def active(self) -> bool:
        return self.settings.active

    def match(self, incoming: Incoming) -> CameraMatch | None:
        if not self.settings.active:
            return None
        return match_camera(self.settings.cameras, incoming.sender, incoming.subject)

    # -- one camera message -----------------------------------------------------

    def observe(self, camera: CameraMatch, incoming: Incoming, answers: list[dict[str, Any]],
                arrived: float, record: RequestRecord, key: str) -> str:
        """SEND the alerts of one camera message, then RECORD everything; the log reason."""
        ledger = self._ledger
        rules = camera.settings
        now = self.clock()
        fallback = incoming.date if incoming.date is not None else arrived
        observations: list[Observation] = []
        visits: dict[str, Visit] = {}  # by id: made or joined in this message
        alerts: list[tuple[str, EmailMessage]] = []  # (visit id, alert)
        photos = [image.data if image.refusal is None else b"" for image in incoming.images]
        pairs = list(zip(photos, answers)) or [(b"", {"file": "(message)", "error": incoming.no_image})]
        for position, (data, answer) in enumerate(pairs):
            taken = (taken_time(data) if data else None) or fallback
            alert = match_alert(rules, answer)
            visit_id = ""
            if alert is not None:
                visit = self._visit_for(camera, alert.taxon, taken, visits)
                if visit is None:
                    quiet = is_quiet(rules, now)
                    visit = Visit(f"{camera.camera}|{alert.taxon}|{taken:.0f}|{incoming.message_id}|{position}",
                                  camera.camera, camera.name, alert.taxon, alert.label, taken, taken, 1,
                                  alert.probability, thumbnail_b64(data) if data else "", not quiet, now)
                    if not quiet and rules.notify:
                        headline = alert.headline(camera.name)
                        alerts.append((visit.id, build_alert(
                            self.address, self.display_name, rules.notify, headline, camera.name, taken, answer,
                            annotated(data, headline) if data else None, visit.id)))
                else:
                    better = alert.probability > visit.best_probability
                    visit = replace(visit, frames=visit.frames + 1, first_taken=min(visit.first_taken, taken),
                                    last_taken=max(visit.last_taken, taken), recorded=now,
                                    best_probability=max(visit.best_probability, alert.probability),
                                    best_thumbnail=(thumbnail_b64(data) or visit.best_thumbnail)
                                    if better and data else visit.best_thumbnail)
                visits[visit.id] = visit
                visit_id = visit.id
            lead, lead_probability = _lead_text(answer)
            empty = "error" in answer or not answer.get("scientific_name")
            observations.append(Observation(
                incoming.message_id or key, position, camera.camera, camera.name, str(answer.get("file", "")),
                taken, arrived, now, "" if empty else str(answer["scientific_name"]),
                str(answer.get("common_name", "")) if not empty else "", str(answer.get("rank", "none")),
                float(answer.get("probability") or 0.0), lead, lead_probability,
                alert.taxon if alert is not None else "", visit_id))
        for visit_id, message in alerts:  # SEND ...
            try:
                self.send(message)
                self.alerts_sent += 1
                log.info("alert sent to %s: %s", message["To"], message["Subject"])
            except MessageRejected as exc:  # refused for good: the digest still shows the visit
                log.warning("the alert %r was refused: %s", message["Subject"], exc)
                visits[visit_id] = replace(visits[visit_id], alerted=False)
        animals = sum(1 for observation in observations if not observation.empty)
        reason = (f"camera {camera.name}: {len(observations)} photo(s), {animals} with an animal, "
                  f"{len(alerts)} alert(s)")
        # ... then RECORD, with the request's final state, in one transaction.
        ledger.mark_observed(key, incoming.message_id, incoming.sender, reason, record,
                             observations, list(visits.values()))
        return reason

    def _visit_for(self, camera: CameraMatch, taxon: str, taken: float, made: dict[str, Visit]) -> Visit | None:
        cooldown = camera.settings.cooldown_s
        for visit in made.values():
            if visit.camera == camera.camera and visit.taxon == taxon and \
                    joins_visit(visit.last_taken, taken, cooldown):
                return visit
        found = self._ledger.latest_visit(camera.camera, taxon, taken - cooldown)
        if found is not None and (joins_visit(found.last_taken, taken, cooldown)
                                  or found.first_taken - cooldown <= taken <= found.last_taken):
            return found
        return None

    # -- digests ----------------------------------------------------------------

    def tick(self) -> None:
        """Send each digest that is due (one mail per notify address), then record its time."""
        if not self.settings.active or self.ledger is None:
            return
        now = self.clock()
        for minute in sorted({c.digest_minute for c in self.settings.cameras if c.digest_minute is not None}):
            name = f"digest {minute // 60:02d}:{minute % 60:02d}"
            last = self.ledger.mark(name)
            if last is None:  # the first start: the first digest covers from now on
                self.ledger.set_mark(name, now)
                continue
            if not digest_due(minute, last, now):
                continue
            cameras = [c for c in self.settings.cameras if c.digest_minute == minute]
            self.send_digest(cameras, last, now)
            self.ledger.set_mark(name, now)  # RECORD after SEND

    def send_digest(self, cameras: list[CameraSettings], since: float, now: float) -> int:
        """One digest per notify address of ``cameras`` covering what was recorded since ``since``."""
        ledger = self._ledger
        observations = ledger.observations(since)
        visits = ledger.visits_since(since)
        arrivals = ledger.last_arrivals()
        sent = 0
        addresses = sorted({address for camera in cameras for address in camera.notify})
        for address in addresses:
            mine = [camera for camera in cameras if address in camera.notify]
            summaries = [summary for camera in mine
                         for summary in self._summaries(camera, observations, arrivals, now)]
            ids = {summary.camera for summary in summaries}
            chosen = [visit for visit in visits if visit.camera in ids]
            try:
                self.send(build_digest(self.address, self.display_name, address, since, now, summaries, chosen))
                sent += 1
                self.digests_sent += 1
            except MessageRejected as exc:
                log.warning("the digest to %s was refused: %s", address, exc)
        log.info("digest sent to %d address(es): %d visit(s), %d photo(s)", sent, len(visits), len(observations))
        return sent

    @staticmethod
    def _summaries(camera: CameraSettings, observations: list[Observation], arrivals: dict[str, float],
                   now: float) -> list[CameraSummary]:
        def ours(name: str) -> bool:
            return name == camera.section or name.startswith(camera.section + "/")

        ids = sorted({o.camera for o in observations if ours(o.camera)} | {c for c in arrivals if ours(c)})
        if not ids:
            return [CameraSummary(camera.section, camera.name or camera.section, 0, 0, {}, None, True)]
        summaries = []
        for camera_id in ids:
            own = [o for o in observations if o.camera == camera_id]
            per_taxon: dict[str, int] = {}
            for o in own:
                if not o.empty:
                    label = f"{o.common_name} ({o.taxon})" if o.common_name else o.taxon
                    per_taxon[label] = per_taxon.get(label, 0) + 1
            last = arrivals.get(camera_id)
            silent = now - last if last is not None and now - last > camera.silent_after_s else None
            name = own[-1].camera_name if own else camera_id
            summaries.append(CameraSummary(camera_id, name, len(own), sum(1 for o in own if o.empty),
                                           per_taxon, silent))
        return summaries

    @property
    def _ledger(self) -> Ledger:
        if self.ledger is None:
            raise RuntimeError("the keeper has no ledger yet (the server opens it)")
        return self.ledger
