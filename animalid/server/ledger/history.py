"""The request history in the ledger: one row per request, for the operations page.

Kept in the shared ledger (SQLite or PostgreSQL, same SQL with ``?``
placeholders), so it survives restarts and every worker's page shows the
whole mailbox. A row is written when a worker starts on a request
(``working``) and again with its outcome; the live page asks for rows
``updated`` since its last look, so it sees other workers' rows too.

Paging is keyset (``arrived, key`` below a cursor, on an index), so page 200
of 10,000 rows costs what page 1 does; the total under the filters is one
COUNT on the same index.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Callable

from animalid.history import FINAL_OUTCOMES, WORKING, HistoryPage, HistoryQuery, RequestRecord, Timing

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    key TEXT PRIMARY KEY,
    message_id TEXT NOT NULL DEFAULT '',
    arrived {real} NOT NULL,
    updated {real} NOT NULL,
    sender TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    seconds {real},
    worker TEXT NOT NULL DEFAULT '',
    images TEXT NOT NULL DEFAULT '[]',
    origin TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS requests_by_arrived ON requests (arrived, key);
CREATE INDEX IF NOT EXISTS requests_by_updated ON requests (updated);
CREATE INDEX IF NOT EXISTS requests_by_outcome ON requests (outcome, arrived);
CREATE TABLE IF NOT EXISTS pages (
    worker TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    seen {real} NOT NULL
)
"""
HISTORY_TABLES = ("requests", "pages")
_COLUMNS = "key, message_id, arrived, updated, sender, subject, outcome, reason, seconds, worker, images, origin"
# A final outcome never goes back to "working" (a late start from a worker
# whose claim was taken over); subject and sender are kept when the newer
# write does not know them.
UPSERT_REQUEST = (
    f"INSERT INTO requests ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT(key) DO UPDATE SET updated = excluded.updated, outcome = excluded.outcome, "
    "reason = excluded.reason, seconds = excluded.seconds, worker = excluded.worker, "
    "images = CASE WHEN excluded.images != '[]' THEN excluded.images ELSE requests.images END, "
    "message_id = CASE WHEN excluded.message_id != '' THEN excluded.message_id ELSE requests.message_id END, "
    "sender = CASE WHEN excluded.sender != '' THEN excluded.sender ELSE requests.sender END, "
    "subject = CASE WHEN excluded.subject != '' THEN excluded.subject ELSE requests.subject END "
    f"WHERE excluded.outcome != '{WORKING}' OR requests.outcome = '{WORKING}'")


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its own % and _ taken literally."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def history_filters(query: HistoryQuery) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause (without the cursor) and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.outcome:
        clauses.append("outcome = ?")
        params.append(query.outcome)
    if query.sender:
        clauses.append("lower(sender) LIKE ? ESCAPE '\\'")
        params.append(_like(query.sender))
    if query.subject:
        clauses.append("lower(subject) LIKE ? ESCAPE '\\'")
        params.append(_like(query.subject))
    if query.start is not None:
        clauses.append("arrived >= ?")
        params.append(query.start)
    if query.end is not None:
        clauses.append("arrived < ?")
        params.append(query.end)
    return (" AND ".join(clauses) or "1 = 1"), tuple(params)


def _record(row: tuple[Any, ...]) -> RequestRecord:
    key, message_id, arrived, updated, sender, subject, outcome, reason, seconds, worker, images, origin = row
    return RequestRecord(key=key, message_id=message_id, arrived=float(arrived), updated=float(updated),
                         sender=sender, subject=subject, outcome=outcome, reason=reason,
                         seconds=None if seconds is None else float(seconds), worker=worker,
                         images=RequestRecord.images_from_json(images), origin=origin)


class LedgerSql:
    """What a half of the Ledger (a mixin) uses of the ledger it is mixed into:
    ``_rows``, ``_one``, ``_count``, ``_transaction`` and ``_clock``, which Ledger
    and its backends supply. Declared once, for the type checker."""

    if TYPE_CHECKING:  # supplied by Ledger and its backends
        def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...
        def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Any: ...
        def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int: ...
        def _transaction(self, lock: str | None = None) -> AbstractContextManager[None]: ...
        _clock: Callable[[], float]


class RequestHistory(LedgerSql):
    """The history half of the Ledger (a mixin on ``LedgerSql``)."""

    def record_request(self, record: RequestRecord) -> None:
        """Insert or update one request's row (durable when it returns)."""
        self._count(UPSERT_REQUEST, request_params(record, self._clock()))

    def record_requests(self, records: list[RequestRecord]) -> None:
        """``record_request`` for many, in one transaction (one disk sync)."""
        now = self._clock()
        with self._transaction():
            for record in records:
                self._count(UPSERT_REQUEST, request_params(record, now))

    def move_request(self, old_key: str, new_key: str) -> None:
        """The request now has another key (a claim went back to the INBOX)."""
        self._count("UPDATE requests SET key = ? WHERE key = ? "
                    "AND NOT EXISTS (SELECT 1 FROM requests WHERE key = ?)", (new_key, old_key, new_key))

    def request_page(self, query: HistoryQuery) -> HistoryPage:
        """One page, newest first, and how many rows match the filters."""
        where, params = history_filters(query)
        total = int(self._one(f"SELECT COUNT(*) FROM requests WHERE {where}", params)[0])
        cursor_sql, cursor_params = "", tuple[Any, ...]()
        if query.before is not None:
            arrived, key = query.before
            cursor_sql = " AND (arrived < ? OR (arrived = ? AND key < ?))"
            cursor_params = (arrived, arrived, key)
        rows = self._rows(f"SELECT {_COLUMNS} FROM requests WHERE {where}{cursor_sql} "
                          "ORDER BY arrived DESC, key DESC LIMIT ?",
                          (*params, *cursor_params, query.limit + 1))
        records = [_record(row) for row in rows]
        return HistoryPage(records[:query.limit], total, len(records) > query.limit)

    def requests_since(self, since: float, limit: int = 100) -> list[RequestRecord]:
        """Rows written at or after ``since``, oldest change first (scripts and the live page)."""
        rows = self._rows(f"SELECT {_COLUMNS} FROM requests WHERE updated >= ? "
                          "ORDER BY updated, key LIMIT ?", (since, limit))
        return [_record(row) for row in rows]

    def request_timings(self, since: float) -> list[Timing]:
        rows = self._rows("SELECT arrived, seconds, outcome FROM requests WHERE arrived >= ? "
                          "ORDER BY arrived", (since,))
        return [Timing(float(arrived), None if seconds is None else float(seconds), outcome)
                for arrived, seconds, outcome in rows]

    def request_counts(self, since: float) -> dict[str, int]:
        """Outcome -> requests that reached it since ``since``."""
        rows = self._rows("SELECT outcome, COUNT(*) FROM requests WHERE updated >= ? GROUP BY outcome",
                          (since,))
        return {outcome: int(count) for outcome, count in rows}

    def ping(self) -> str:
        """"" when the ledger answers (a readiness check); raises when it does not."""
        self._one("SELECT 1")
        return ""

    def set_page(self, worker: str, url: str) -> None:
        """Where ``worker``'s operations page is ("" when it serves none)."""
        self._count("INSERT INTO pages (worker, url, seen) VALUES (?, ?, ?) ON CONFLICT(worker) "
                    "DO UPDATE SET url = excluded.url, seen = excluded.seen", (worker, url, self._clock()))

    def pages(self) -> dict[str, str]:
        """Worker -> the address of its operations page."""
        return dict(self._rows("SELECT worker, url FROM pages WHERE url != ''"))

    def prune_requests(self, before: float) -> int:
        """Forget finished rows that arrived before ``before``; how many went."""
        marks = ", ".join("?" * len(FINAL_OUTCOMES))
        return self._count(f"DELETE FROM requests WHERE arrived < ? AND outcome IN ({marks})",
                           (before, *FINAL_OUTCOMES))


def request_params(record: RequestRecord, now: float) -> tuple[Any, ...]:
    # ``updated`` is the ledger's clock at the write: the live page asks "since".
    return (record.key, record.message_id, record.arrived, now, record.sender,
            record.subject, record.outcome, record.reason, record.seconds, record.worker,
            record.images_json(), record.origin or record.key)
