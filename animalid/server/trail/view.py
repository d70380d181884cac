"""The operations page's observations view, as plain data: per camera its last photo,
the last visit per taxon (with the best photo's thumbnail) and whether it is silent."""

from __future__ import annotations

from typing import Any

from animalid.server.ledger import Ledger
from animalid.server.trail.settings import TrailSettings

RECENT_S = 30 * 86400


def observations_view(ledger: Ledger, settings: TrailSettings, now: float) -> dict[str, Any]:
    """JSON-ready: ``cameras`` (one per camera and serial seen, plus configured ones never
    heard from), each with ``last_photo``, ``visits`` (last per taxon) and ``silent``."""
    arrivals = ledger.last_arrivals()
    visits = ledger.visits_since(now - RECENT_S)
    cameras: list[dict[str, Any]] = []
    for camera in settings.cameras:
        ids = sorted(c for c in arrivals if c == camera.section or c.startswith(camera.section + "/"))
        if not ids:
            cameras.append({"camera": camera.section, "name": camera.name, "last_photo": None, "visits": [],
                            "silent": True, "silent_for_s": None})
            continue
        for camera_id in ids:
            last = ledger.observations(arrivals[camera_id] - 1, camera=camera_id)
            latest = max(last, key=lambda o: o.arrived) if last else None
            per_taxon: dict[str, dict[str, Any]] = {}
            for visit in visits:
                if visit.camera == camera_id:
                    per_taxon[visit.taxon] = {
                        "taxon": visit.taxon, "label": visit.label, "first_taken": visit.first_taken,
                        "last_taken": visit.last_taken, "frames": visit.frames,
                        "best_probability": visit.best_probability, "alerted": visit.alerted,
                        "thumbnail": f"data:image/jpeg;base64,{visit.best_thumbnail}" if visit.best_thumbnail else ""}
            silent_for = now - arrivals[camera_id]
            cameras.append({
                "camera": camera_id, "name": latest.camera_name if latest else camera.name,
                "last_photo": None if latest is None else {
                    "file": latest.file, "taken": latest.taken, "arrived": latest.arrived,
                    "taxon": latest.taxon, "common_name": latest.common_name, "probability": latest.probability,
                    "message_id": latest.message_id},
                "visits": sorted(per_taxon.values(), key=lambda v: -float(v["last_taken"])),
                "silent": silent_for > camera.silent_after_s, "silent_for_s": silent_for})
    return {"cameras": cameras, "now": now}
