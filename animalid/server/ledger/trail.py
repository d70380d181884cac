"""Trail cameras in the ledger: observations, visits and the digests' marks.

One row per photo a camera mailed (``observations``; empty frames too), one
per visit (``visits``: the photos of one camera and alert taxon within the
cooldown, with the best one's thumbnail), and named times (``trail_marks``:
when each digest last went out, so a restart does not send it again). Same
SQL on SQLite and PostgreSQL; written by ``animalid.server.trail.keeper`` in
the transaction that finishes the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from animalid.server.ledger.history import LedgerSql

TRAIL_SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    message_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    camera TEXT NOT NULL,
    camera_name TEXT NOT NULL DEFAULT '',
    file TEXT NOT NULL DEFAULT '',
    taken {real} NOT NULL,
    arrived {real} NOT NULL,
    recorded {real} NOT NULL,
    taxon TEXT NOT NULL DEFAULT '',
    common_name TEXT NOT NULL DEFAULT '',
    rank TEXT NOT NULL DEFAULT '',
    probability {real} NOT NULL DEFAULT 0,
    lead TEXT NOT NULL DEFAULT '',
    lead_probability {real} NOT NULL DEFAULT 0,
    alert_taxon TEXT NOT NULL DEFAULT '',
    visit TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (message_id, position)
);
CREATE INDEX IF NOT EXISTS observations_by_recorded ON observations (recorded);
CREATE INDEX IF NOT EXISTS observations_by_camera ON observations (camera, taken);
CREATE TABLE IF NOT EXISTS visits (
    id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    camera_name TEXT NOT NULL DEFAULT '',
    taxon TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    first_taken {real} NOT NULL,
    last_taken {real} NOT NULL,
    frames INTEGER NOT NULL DEFAULT 0,
    best_probability {real} NOT NULL DEFAULT 0,
    best_thumbnail TEXT NOT NULL DEFAULT '',
    alerted INTEGER NOT NULL DEFAULT 0,
    recorded {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS visits_by_camera ON visits (camera, taxon, last_taken);
CREATE TABLE IF NOT EXISTS trail_marks (
    name TEXT PRIMARY KEY,
    at {real} NOT NULL
)
"""
TRAIL_TABLES = ("observations", "visits", "trail_marks")
OBSERVATION_COLUMNS = ("message_id", "position", "camera", "camera_name", "file", "taken", "arrived",
                       "recorded", "taxon", "common_name", "rank", "probability", "lead",
                       "lead_probability", "alert_taxon", "visit")
_VISIT_COLUMNS = ("id, camera, camera_name, taxon, label, first_taken, last_taken, frames, "
                  "best_probability, best_thumbnail, alerted, recorded")


@dataclass(frozen=True)
class Observation:
    message_id: str
    position: int
    camera: str
    camera_name: str
    file: str
    taken: float
    arrived: float
    recorded: float
    taxon: str  # the claim's scientific name; "" for an empty frame
    common_name: str
    rank: str  # "none" for an empty frame or one that could not be identified
    probability: float  # percent, as in the answer
    lead: str  # "Common (Scientific)"
    lead_probability: float
    alert_taxon: str  # the alert_on entry it matched, or ""
    visit: str  # the visit it joined, or ""

    @property
    def empty(self) -> bool:
        return not self.taxon

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in OBSERVATION_COLUMNS}


@dataclass(frozen=True)
class Visit:
    id: str
    camera: str
    camera_name: str
    taxon: str  # the alert_on entry
    label: str  # "Bear (Ursidae)"
    first_taken: float
    last_taken: float
    frames: int
    best_probability: float
    best_thumbnail: str  # base64 JPEG
    alerted: bool
    recorded: float


def _visit(row: tuple[Any, ...]) -> Visit:
    return Visit(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), float(row[5]),
                 float(row[6]), int(row[7]), float(row[8]), str(row[9]), bool(row[10]), float(row[11]))


def _observation(row: tuple[Any, ...]) -> Observation:
    values = list(row)
    for index in (5, 6, 7, 11, 13):
        values[index] = float(values[index])
    values[1] = int(values[1])
    return Observation(*values)


class TrailRecords(LedgerSql):
    """The trail-camera half of the Ledger (a mixin on ``LedgerSql``, like RequestHistory)."""

    def latest_visit(self, camera: str, taxon: str, since_taken: float) -> Visit | None:
        """The most recent visit of ``camera`` and ``taxon`` last seen at or after ``since_taken``."""
        row = self._one(f"SELECT {_VISIT_COLUMNS} FROM visits WHERE camera = ? AND taxon = ? "
                        "AND last_taken >= ? ORDER BY last_taken DESC LIMIT 1", (camera, taxon, since_taken))
        return _visit(row) if row else None

    def save_observations(self, observations: list[Observation], visits: list[Visit]) -> None:
        """Observations (a repeat of the same Message-ID and position is kept once) and the
        visits they made or joined; call inside the transaction that finishes the request."""
        marks = ", ".join("?" * len(OBSERVATION_COLUMNS))
        with self._transaction():
            for observation in observations:
                self._count(f"INSERT INTO observations ({', '.join(OBSERVATION_COLUMNS)}) VALUES ({marks}) "
                            "ON CONFLICT(message_id, position) DO NOTHING",
                            tuple(getattr(observation, name) for name in OBSERVATION_COLUMNS))
            for visit in visits:
                self._count(
                    f"INSERT INTO visits ({_VISIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET last_taken = excluded.last_taken, "
                    "first_taken = excluded.first_taken, frames = excluded.frames, "
                    "best_probability = excluded.best_probability, best_thumbnail = excluded.best_thumbnail, "
                    "label = excluded.label, alerted = excluded.alerted, recorded = excluded.recorded",
                    (visit.id, visit.camera, visit.camera_name, visit.taxon, visit.label, visit.first_taken,
                     visit.last_taken, visit.frames, visit.best_probability, visit.best_thumbnail,
                     int(visit.alerted), visit.recorded))

    def observations(self, since: float = 0.0, camera: str | None = None,
                     by_taken: bool = False) -> list[Observation]:
        """Observations recorded (or, ``by_taken``, taken) since ``since``, oldest taken first."""
        where, params = ("taken >= ?" if by_taken else "recorded >= ?"), [since]
        if camera is not None:
            where += " AND camera = ?"
            params.append(camera)  # type: ignore[arg-type]
        rows = self._rows(f"SELECT {', '.join(OBSERVATION_COLUMNS)} FROM observations WHERE {where} "
                          "ORDER BY taken, message_id, position", tuple(params))
        return [_observation(row) for row in rows]

    def visits_since(self, since: float) -> list[Visit]:
        """Visits that gained a photo since ``since`` (recorded time), oldest first."""
        rows = self._rows(f"SELECT {_VISIT_COLUMNS} FROM visits WHERE recorded >= ? ORDER BY first_taken",
                          (since,))
        return [_visit(row) for row in rows]

    def last_arrivals(self) -> dict[str, float]:
        """Camera -> when its last photo arrived."""
        return {str(camera): float(at) for camera, at
                in self._rows("SELECT camera, MAX(arrived) FROM observations GROUP BY camera")}

    def mark(self, name: str) -> float | None:
        row = self._one("SELECT at FROM trail_marks WHERE name = ?", (name,))
        return float(row[0]) if row else None

    def set_mark(self, name: str, at: float) -> None:
        self._count("INSERT INTO trail_marks (name, at) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET at = excluded.at", (name, at))
