"""The page's and the API's query strings, read into typed queries with clear errors.

``/api/requests`` answers two questions: a page of the table (``outcome``,
``sender``, ``subject``, ``from``/``to`` or ``date``, ``before``, ``limit``)
and, for scripts that follow along, the rows changed since a time
(``since`` in Unix seconds, with ``limit``). Anything malformed is a
``BadQuery`` whose text says which parameter and what it should be.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from animalid.history import MAX_PAGE, OUTCOMES, HistoryQuery, decode_cursor

DEFAULT_LIMIT = 50
MAX_FILTER = 200


class BadQuery(ValueError):
    """A query parameter is malformed; the text names it."""


@dataclass(frozen=True)
class SinceQuery:
    since: float
    limit: int


def _first(params: Mapping[str, Sequence[str]], name: str) -> str:
    values = params.get(name) or [""]
    return values[0].strip()


def _number(params: Mapping[str, Sequence[str]], name: str) -> float | None:
    text = _first(params, name)
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadQuery(f"{name}={text[:40]!r} is not a number (Unix seconds)") from None
    if not math.isfinite(value):
        raise BadQuery(f"{name} must be a finite number")
    return value


def _limit(params: Mapping[str, Sequence[str]]) -> int:
    text = _first(params, "limit")
    if not text:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise BadQuery(f"limit={text[:40]!r} must be a whole number from 1 to {MAX_PAGE}")
    return int(text)


def _day(text: str) -> tuple[float, float]:
    """A YYYY-MM-DD day in the server's local time, as [start, end) Unix seconds."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"date={text[:40]!r} is not a day as YYYY-MM-DD") from None
    start = dt.datetime.combine(day, dt.time()).astimezone()
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time()).astimezone()
    return start.timestamp(), end.timestamp()


def history_query(params: Mapping[str, Sequence[str]]) -> HistoryQuery:
    """A page of the table from ``parse_qs`` output."""
    outcome = _first(params, "outcome")
    if outcome and outcome not in OUTCOMES:
        raise BadQuery(f"outcome={outcome[:40]!r} is not one of {', '.join(OUTCOMES)}")
    start, end = _number(params, "from"), _number(params, "to")
    date = _first(params, "date")
    if date:
        start, end = _day(date)
    before = None
    cursor = _first(params, "before")
    if cursor:
        try:
            before = decode_cursor(cursor)
        except ValueError as exc:
            raise BadQuery(f"before: {exc}") from None
    return HistoryQuery(outcome=outcome, sender=_first(params, "sender")[:MAX_FILTER],
                        subject=_first(params, "subject")[:MAX_FILTER], start=start, end=end,
                        before=before, limit=_limit(params))


def since_query(params: Mapping[str, Sequence[str]]) -> SinceQuery | None:
    """``since`` and ``limit`` when the script asked for changes since a time, else None."""
    since = _number(params, "since")
    if since is None:
        return None
    return SinceQuery(since, _limit(params))
