"""The server's crash-safe record of the messages it has handled (SQLite).

Each message is keyed by where it sits in the mailbox -- ``pop3:<UIDL>``
(RFC 1939 / RFC 2449 UIDL) or ``imap:<UIDVALIDITY>:<UID>`` (RFC 9051 section
2.3.1.1) -- and also carries its RFC 5322 Message-ID, so the same mail shown
again under a new key (Gmail's POP3 does this, so does a UIDVALIDITY change)
is still recognised.

States: ``seen`` (being worked on; ``attempts`` counts tries, raised *before*
each try so a crash counts too), and the final ``answered``, ``set_aside``
and ``ignored``. The database runs in WAL mode with ``synchronous=FULL``: a
state written is on disk before the next step (delete or move) starts, so
after a crash at any point the server neither loses a request nor answers
it twice, except in the one unavoidable window between sending a reply and
recording it.

A second table counts events per sender for the rate limit.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SEEN = "seen"
ANSWERED = "answered"
SET_ASIDE = "set_aside"
IGNORED = "ignored"
FINAL_STATES = (ANSWERED, SET_ASIDE, IGNORED)
KEEP_RECORDS_S = 90 * 24 * 3600
KEEP_EVENTS_S = 2 * 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    key TEXT PRIMARY KEY,
    message_id TEXT NOT NULL DEFAULT '',
    sender TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    first_seen REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_id ON messages (message_id) WHERE message_id != '';
CREATE TABLE IF NOT EXISTS events (
    sender TEXT NOT NULL,
    kind TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_sender ON events (sender, kind, at);
"""


@dataclass(frozen=True)
class Record:
    key: str
    message_id: str
    sender: str
    state: str
    attempts: int
    reason: str

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


class Ledger:
    """One SQLite file; safe to use from one thread at a time (a lock guards it)."""

    def __init__(self, path: str | Path, clock=time.time):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        # Autocommit (isolation_level=None): every statement is its own
        # transaction, durable when it returns.
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30,
                                   check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ------------------------------------------------------------

    def get(self, key: str) -> Record | None:
        row = self._one("SELECT key, message_id, sender, state, attempts, reason "
                        "FROM messages WHERE key = ?", (key,))
        return Record(*row) if row else None

    def final_by_message_id(self, message_id: str) -> Record | None:
        """A finished record of the same Message-ID under any key, if there is one."""
        if not message_id:
            return None
        row = self._one("SELECT key, message_id, sender, state, attempts, reason FROM messages "
                        "WHERE message_id = ? AND state IN (?, ?, ?) "
                        "ORDER BY state = 'answered' DESC LIMIT 1",
                        (message_id, *FINAL_STATES))
        return Record(*row) if row else None

    def known_final_keys(self, keys: list[str]) -> dict[str, Record]:
        """The records among ``keys`` that are in a final state (one query per 500 keys)."""
        found: dict[str, Record] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                rows = self._db.execute(
                    f"SELECT key, message_id, sender, state, attempts, reason FROM messages "
                    f"WHERE key IN ({marks}) AND state IN (?, ?, ?)", (*chunk, *FINAL_STATES)).fetchall()
            found.update((row[0], Record(*row)) for row in rows)
        return found

    # -- writing ------------------------------------------------------------

    def begin_attempt(self, key: str, message_id: str = "", sender: str = "") -> int:
        """Count one more try at ``key`` (before trying, so a crash counts); returns the count."""
        now = self._clock()
        with self._lock:
            self._db.execute(
                "INSERT INTO messages (key, message_id, sender, state, attempts, first_seen, updated) "
                "VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "attempts = attempts + 1, updated = excluded.updated, "
                "message_id = CASE WHEN excluded.message_id != '' THEN excluded.message_id ELSE message_id END, "
                "sender = CASE WHEN excluded.sender != '' THEN excluded.sender ELSE sender END",
                (key, message_id, sender, SEEN, now, now))
            row = self._db.execute("SELECT attempts FROM messages WHERE key = ?", (key,)).fetchone()
        return int(row[0])

    def begin_attempts(self, keys: list[str]) -> dict[str, int]:
        """``begin_attempt`` for many keys in one transaction (one disk sync, not one each)."""
        now = self._clock()
        counts: dict[str, int] = {}
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for key in keys:
                    self._db.execute(
                        "INSERT INTO messages (key, state, attempts, first_seen, updated) "
                        "VALUES (?, ?, 1, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                        "attempts = attempts + 1, updated = excluded.updated",
                        (key, SEEN, now, now))
                    row = self._db.execute("SELECT attempts FROM messages WHERE key = ?", (key,)).fetchone()
                    counts[key] = int(row[0])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return counts

    def release_attempts(self, keys: list[str]) -> None:
        for key in keys:
            self.release_attempt(key)

    def release_attempt(self, key: str) -> None:
        """Take back a try that failed for reasons outside the message (mail server down)."""
        self._execute("UPDATE messages SET attempts = MAX(attempts - 1, 0), updated = ? "
                      "WHERE key = ? AND state = ?", (self._clock(), key, SEEN))

    def mark_answered(self, key: str, message_id: str = "", sender: str = "", reason: str = "") -> None:
        self._finish(key, ANSWERED, message_id, sender, reason)

    def mark_set_aside(self, key: str, message_id: str = "", sender: str = "", reason: str = "") -> None:
        self._finish(key, SET_ASIDE, message_id, sender, reason)

    def mark_ignored(self, key: str, message_id: str = "", sender: str = "", reason: str = "") -> None:
        self._finish(key, IGNORED, message_id, sender, reason)

    def _finish(self, key: str, state: str, message_id: str, sender: str, reason: str) -> None:
        now = self._clock()
        self._execute(
            "INSERT INTO messages (key, message_id, sender, state, attempts, reason, first_seen, updated) "
            "VALUES (?, ?, ?, ?, 0, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "state = excluded.state, reason = excluded.reason, updated = excluded.updated, "
            "message_id = CASE WHEN excluded.message_id != '' THEN excluded.message_id ELSE message_id END, "
            "sender = CASE WHEN excluded.sender != '' THEN excluded.sender ELSE sender END",
            (key, message_id, sender, state, reason[:500], now, now))

    # -- rate counting ------------------------------------------------------

    def note_event(self, sender: str, kind: str = "request") -> None:
        self._execute("INSERT INTO events (sender, kind, at) VALUES (?, ?, ?)",
                      (sender.lower(), kind, self._clock()))

    def count_events(self, sender: str, window_s: float, kind: str = "request") -> int:
        row = self._one("SELECT COUNT(*) FROM events WHERE sender = ? AND kind = ? AND at > ?",
                        (sender.lower(), kind, self._clock() - window_s))
        return int(row[0])

    def last_event(self, sender: str, kind: str) -> float | None:
        row = self._one("SELECT MAX(at) FROM events WHERE sender = ? AND kind = ?",
                        (sender.lower(), kind))
        return row[0] if row and row[0] is not None else None

    def prune(self) -> None:
        """Forget old events and finished records, so the file stays small."""
        now = self._clock()
        self._execute("DELETE FROM events WHERE at < ?", (now - KEEP_EVENTS_S,))
        self._execute("DELETE FROM messages WHERE updated < ? AND state IN (?, ?, ?)",
                      (now - KEEP_RECORDS_S, *FINAL_STATES))

    # -- plumbing -----------------------------------------------------------

    def _execute(self, sql: str, params: tuple) -> None:
        with self._lock:
            self._db.execute(sql, params)

    def _one(self, sql: str, params: tuple):
        with self._lock:
            return self._db.execute(sql, params).fetchone()
