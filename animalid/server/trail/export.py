"""``server.py --export FILE``: the observations as CSV or JSON, for spreadsheets and
Timelapse-style tools. One row per photo; times as local ISO 8601 and as Unix seconds."""

from __future__ import annotations

import csv
import io
import json
import time
from typing import Any, Sequence

from animalid.server.ledger.trail import OBSERVATION_COLUMNS, Observation

EXPORT_FORMATS = ("csv", "json")
TIME_COLUMNS = ("taken", "arrived", "recorded")


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(at))


def export_rows(observations: Sequence[Observation]) -> list[dict[str, Any]]:
    rows = []
    for observation in observations:
        row = observation.as_dict()
        for column in TIME_COLUMNS:
            row[f"{column}_unix"] = round(row[column], 3)
            row[column] = _iso(row[column])
        row["empty"] = observation.empty
        rows.append(row)
    return rows


def export_text(observations: Sequence[Observation], fmt: str) -> str:
    """The observations in ``fmt`` (csv or json)."""
    rows = export_rows(observations)
    if fmt == "json":
        return json.dumps(rows, indent=1, ensure_ascii=False) + "\n"
    out = io.StringIO()
    columns = [*OBSERVATION_COLUMNS, "empty", *(f"{column}_unix" for column in TIME_COLUMNS)]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
