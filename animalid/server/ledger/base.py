"""The ledger's interface and shared SQL: the servers' crash-safe record of the messages they handle.

Each message is keyed by where it sat in the mailbox -- ``pop3:<UIDL>``
(RFC 1939 / RFC 2449 UIDL) or ``imap:<UIDVALIDITY>:<UID>`` (RFC 9051 section
2.3.1.1) -- and also carries its RFC 5322 Message-ID, so the same mail shown
again under a new key (Gmail's POP3 does this, so does a UIDVALIDITY change,
and so does a claim returned to the INBOX, which gets a new UID) is still
recognised.

States: ``seen`` (being worked on; ``attempts`` counts tries, raised *before*
each try so a crash counts too), and the final ``answered``, ``set_aside``,
``ignored`` (mail that must not be answered: RFC 3834) and ``refused`` (a
request the server would not serve: sender not allowed, over its rate, failed
the security check). A state written is durable before the next step (delete or
move) starts, so after a crash at any point no request is lost, and none is
answered twice except in the windows the README lists.

Beside the messages, for several servers sharing one mailbox
(animalid/server/claims.py):

* ``events`` -- per-sender events for the rate limit; ``take_event`` counts
  and records in one transaction, so N workers cannot together pass a limit;
* ``claims`` -- which worker holds which request (by its INBOX key: the
  primary key makes the claim exclusive), where it put it in the claims folder,
  since when, and when it last renewed its lease;
* ``inflight`` -- which key is being answered for a Message-ID, so two copies
  of one request held by two workers are answered once;
* ``workers`` -- each worker's last sign of life, for ``server.py --status``.

Two backends share the SQL (written with ``?`` placeholders), each in its own
module of this package:

* ``SqliteLedger`` (sqlite.py) -- one file (WAL, ``synchronous=FULL``, 30 s busy
  timeout): any number of processes on one machine. Not over a network file
  system, where SQLite's locks are unreliable.
* ``PostgresLedger`` (postgres.py) -- ``[server] ledger = postgresql://user@host/db``, for
  workers on several machines; the password comes from ``ledger_password_env``
  or ``ledger_password_command`` like every other secret.

``open_ledger`` (the package) picks one from typed settings.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

from animalid.history import RequestRecord
from animalid.server.ledger.history import HISTORY_SCHEMA, UPSERT_REQUEST, RequestHistory, request_params
from animalid.server.ledger.trail import TRAIL_SCHEMA, Observation, TrailRecords, Visit

log = logging.getLogger(__name__)

Row = tuple[Any, ...]  # one result row
Clock = Callable[[], float]  # Unix seconds now (time.time; tests pass their own)

SEEN = "seen"
ANSWERED = "answered"
SET_ASIDE = "set_aside"
IGNORED = "ignored"
REFUSED = "refused"
FINAL_STATES = (ANSWERED, SET_ASIDE, IGNORED, REFUSED)
# "state IN (...)" with one placeholder per final state.
_FINAL_IN = "state IN (" + ", ".join("?" * len(FINAL_STATES)) + ")"
# An answered record's reason: "reply <Message-ID of the reply>", and after a delivery
# report about that reply, "reply <id> bounced: <diagnostic>" (server.py --status shows it).
REPLY_MARK = "reply "
BOUNCED_MARK = "bounced: "
KEEP_RECORDS_S = 90 * 24 * 3600
KEEP_EVENTS_S = 2 * 24 * 3600
KEEP_WORKERS_S = 7 * 24 * 3600
POSTGRES_SCHEMES = ("postgresql", "postgres")
# Serialises schema creation and pruning between workers starting at once
# (PostgreSQL: CREATE INDEX and DELETE lock the tables in different orders).
SCHEMA_LOCK = "animalid-schema"

# {real} and {bigint}: SQLite's REAL and INTEGER are 64-bit; PostgreSQL's REAL
# is 32-bit (a Unix time would be off by minutes) and its INTEGER cannot hold
# a UIDVALIDITY (up to 2^32 - 1).
SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    key TEXT PRIMARY KEY,
    message_id TEXT NOT NULL DEFAULT '',
    sender TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    first_seen {real} NOT NULL,
    updated {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_id ON messages (message_id) WHERE message_id != '';
CREATE INDEX IF NOT EXISTS messages_by_updated ON messages (updated);
CREATE TABLE IF NOT EXISTS events (
    sender TEXT NOT NULL,
    kind TEXT NOT NULL,
    at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_sender ON events (sender, kind, at);
CREATE TABLE IF NOT EXISTS claims (
    key TEXT PRIMARY KEY,
    worker TEXT NOT NULL DEFAULT '',
    uidvalidity {bigint} NOT NULL DEFAULT 0,
    uid {bigint} NOT NULL DEFAULT 0,
    claimed {real} NOT NULL,
    renewed {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_by_uid ON claims (uidvalidity, uid);
CREATE TABLE IF NOT EXISTS inflight (
    message_id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    worker TEXT NOT NULL,
    renewed {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    started {real} NOT NULL,
    seen {real} NOT NULL
);
""" + HISTORY_SCHEMA + ";\n" + TRAIL_SCHEMA
# Added after the first release: who finished a message (server.py --status,
# per-worker counts). Old files get the column on open.
WORKER_COLUMN = "worker TEXT NOT NULL DEFAULT ''"
_RECORD = "key, message_id, sender, state, attempts, reason"
_UPSERT_FINAL = (
    "INSERT INTO messages (key, message_id, sender, state, attempts, reason, first_seen, updated, worker) "
    "VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
    "state = excluded.state, reason = excluded.reason, updated = excluded.updated, "
    "worker = excluded.worker, "
    "message_id = CASE WHEN excluded.message_id != '' THEN excluded.message_id "
    "ELSE messages.message_id END, "
    "sender = CASE WHEN excluded.sender != '' THEN excluded.sender ELSE messages.sender END")


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


# The key of a claims-folder message that no worker recorded (a worker died between
# its MOVE and its record) is this prefix, then "<UIDVALIDITY>:<UID>".
UNRECORDED_CLAIM_PREFIX = "claim:"


@dataclass(frozen=True)
class Claim:
    """One claimed request, as the ledger knows it."""

    key: str  # the request's INBOX key when claimed; UNRECORDED_CLAIM_PREFIX... for one nobody recorded
    worker: str  # '' when no worker recorded it
    uidvalidity: int  # where it is in the claims folder (uid 0: not moved there yet)
    uid: int
    claimed: float
    renewed: float

    @property
    def noticed(self) -> bool:
        return self.key.startswith(UNRECORDED_CLAIM_PREFIX)


@dataclass(frozen=True)
class Outcome:
    """A finished message, for ``server.py --status``."""

    key: str
    message_id: str
    sender: str
    state: str
    reason: str
    updated: float
    worker: str


class Ledger(RequestHistory, TrailRecords, ABC):
    """The interface and the shared SQL; the backends supply connections and transactions.

    ``worker`` names the process writing (set by the server): it goes with
    every claim, reservation and final state. Safe to use from one thread at
    a time per instance (a lock guards the connection); any number of
    processes may share one database.
    """

    backend = ""
    worker = ""

    def __init__(self, clock: Clock = time.time):
        self._clock = clock
        self._lock = threading.RLock()

    # -- what a backend supplies ------------------------------------------------

    @abstractmethod
    def describe(self) -> str:
        """Where the ledger is, for logs (never with a password)."""

    @abstractmethod
    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        """Run one statement (``?`` placeholders); its rows ([] when it returns none)."""

    @abstractmethod
    def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """Run one statement; how many rows it changed."""

    @abstractmethod
    @contextmanager
    def _transaction(self, lock: str | None = None) -> Iterator[None]:
        """Statements inside run as one transaction; ``lock`` serialises on a name."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _one(self, sql: str, params: tuple[Any, ...] = ()) -> Row | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    def _first(self, sql: str, params: tuple[Any, ...] = ()) -> Row:
        """The first row of a statement that always returns one (COUNT, RETURNING)."""
        row = self._one(sql, params)
        if row is None:
            raise AssertionError(f"no row from: {sql[:60]}")
        return row

    # -- reading ------------------------------------------------------------

    def get(self, key: str) -> Record | None:
        row = self._one(f"SELECT {_RECORD} FROM messages WHERE key = ?", (key,))
        return Record(*row) if row else None

    def final_by_message_id(self, message_id: str) -> Record | None:
        """A finished record of the same Message-ID under any key, if there is one."""
        if not message_id:
            return None
        row = self._one(f"SELECT {_RECORD} FROM messages "
                        f"WHERE message_id = ? AND {_FINAL_IN} "
                        "ORDER BY state = 'answered' DESC LIMIT 1",
                        (message_id, *FINAL_STATES))
        return Record(*row) if row else None

    def known_final_keys(self, keys: list[str]) -> dict[str, Record]:
        """The records among ``keys`` that are in a final state (one query per 500 keys)."""
        found: dict[str, Record] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._rows(f"SELECT {_RECORD} FROM messages "
                              f"WHERE key IN ({marks}) AND {_FINAL_IN}", (*chunk, *FINAL_STATES))
            found.update((row[0], Record(*row)) for row in rows)
        return found

    def recent_outcomes(self, limit: int = 10) -> list[Outcome]:
        rows = self._rows("SELECT key, message_id, sender, state, reason, updated, worker FROM messages "
                          f"WHERE {_FINAL_IN} ORDER BY updated DESC LIMIT ?", (*FINAL_STATES, limit))
        return [Outcome(*row) for row in rows]

    def outcome_counts(self, since: float) -> dict[tuple[str, str], int]:
        """(state, worker) -> how many messages reached that final state since ``since``."""
        rows = self._rows("SELECT state, worker, COUNT(*) FROM messages WHERE updated >= ? "
                          f"AND {_FINAL_IN} GROUP BY state, worker", (since, *FINAL_STATES))
        return {(state, worker): int(count) for state, worker, count in rows}

    def final_states(self) -> dict[str, tuple[str, str]]:
        """Message-ID -> (final state, worker), for tests and benchmarks."""
        rows = self._rows("SELECT message_id, state, worker FROM messages WHERE message_id != '' "
                          f"AND {_FINAL_IN} ORDER BY updated", FINAL_STATES)
        return {message_id: (state, worker) for message_id, state, worker in rows}

    # -- attempts and final states --------------------------------------------

    _BEGIN = ("INSERT INTO messages (key, message_id, sender, state, attempts, first_seen, updated) "
              "VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT(key) DO UPDATE SET "
              "attempts = messages.attempts + 1, updated = excluded.updated, "
              "message_id = CASE WHEN excluded.message_id != '' THEN excluded.message_id "
              "ELSE messages.message_id END, "
              "sender = CASE WHEN excluded.sender != '' THEN excluded.sender ELSE messages.sender END "
              "RETURNING attempts")

    def begin_attempts(self, keys: list[str]) -> dict[str, int]:
        """Count one more try at each key (before trying, so a crash counts), in one
        transaction (one disk sync, not one each); key -> its count."""
        now = self._clock()
        counts: dict[str, int] = {}
        with self._transaction():
            for key in keys:
                counts[key] = int(self._first(self._BEGIN, (key, "", "", SEEN, now, now))[0])
        return counts

    def attempts_of(self, keys: list[str]) -> dict[str, int]:
        """The tries counted so far for each key (0 for a key never tried)."""
        counts = dict.fromkeys(keys, 0)
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            for key, attempts in self._rows(f"SELECT key, attempts FROM messages WHERE key IN ({marks})",
                                            tuple(chunk)):
                counts[key] = int(attempts)
        return counts

    def release_attempts(self, keys: list[str]) -> None:
        with self._transaction():
            for key in keys:
                self.release_attempt(key)

    def release_attempt(self, key: str) -> None:
        """Take back a try that failed for reasons outside the message (mail server down)."""
        self._count("UPDATE messages SET updated = ?, "
                    "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END "
                    "WHERE key = ? AND state = ?", (self._clock(), key, SEEN))

    def mark_answered(self, key: str, message_id: str = "", sender: str = "", reason: str = "",
                    record: RequestRecord | None = None) -> None:
        self._finish(key, ANSWERED, message_id, sender, reason, record)

    def record_bounce(self, reply_id: str, detail: str) -> Record | None:
        """A delivery report about our reply ``reply_id``: noted on its request (answered,
        its reason ending "reply <id>"); that request's record, or None when none matches."""
        mark = f"{REPLY_MARK}{reply_id}"
        pattern = "%" + mark.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._rows("UPDATE messages SET reason = reason || ?, updated = ? WHERE state = ? "
                          "AND reason LIKE ? ESCAPE '\\' "
                          "RETURNING key, message_id, sender, state, attempts, reason",
                          (f" {BOUNCED_MARK}{detail}"[:300], self._clock(), ANSWERED, pattern))
        return Record(*rows[0]) if rows else None

    def mark_set_aside(self, key: str, message_id: str = "", sender: str = "", reason: str = "",
                    record: RequestRecord | None = None) -> None:
        self._finish(key, SET_ASIDE, message_id, sender, reason, record)

    def mark_ignored(self, key: str, message_id: str = "", sender: str = "", reason: str = "",
                    record: RequestRecord | None = None) -> None:
        """Mail that must not be answered (RFC 3834: automatic mail, bounces, lists, our own)."""
        self._finish(key, IGNORED, message_id, sender, reason, record)

    def mark_refused(self, key: str, message_id: str = "", sender: str = "", reason: str = "",
                    record: RequestRecord | None = None) -> None:
        """A request the server will not serve: sender not allowed, over its rate, or
        failing the [security] check."""
        self._finish(key, REFUSED, message_id, sender, reason, record)

    def mark_observed(self, key: str, message_id: str, sender: str, reason: str, record: RequestRecord,
                      observations: list[Observation], visits: list[Visit]) -> None:
        """A trail camera's message is done: its observations, the visits they made or
        joined and its final state (answered: nothing waits) in one transaction."""
        with self._transaction():
            self.save_observations(observations, visits)
            self._finish(key, ANSWERED, message_id, sender, reason, record)

    def _finish(self, key: str, state: str, message_id: str, sender: str, reason: str,
                record: RequestRecord | None = None) -> None:
        # The final state and the end of the reservation commit together: a
        # worker waiting for this Message-ID sees the reservation gone only
        # once the final state is there to see (``reserve``). The history row
        # (history.py) goes in the same transaction: no extra disk sync.
        now = self._clock()
        if record is None:  # what the ledger knows; the row keeps what it had (arrival, subject)
            record = RequestRecord(key=key, arrived=now, sender=sender, outcome=state, reason=reason,
                                   message_id=message_id)
        record = record.finished(state, reason or record.reason, now, record.seconds, record.images,
                                 self.worker)
        with self._transaction():
            self._count(_UPSERT_FINAL, (key, message_id, sender, state, reason[:500], now, now, self.worker))
            self._count("DELETE FROM inflight WHERE key = ?", (key,))
            self._count(UPSERT_REQUEST, request_params(record, now))

    def carry(self, old_key: str, new_key: str) -> None:
        """The message ``old_key`` now sits at ``new_key`` (a claim went back to the
        INBOX with a new UID): it keeps its state and its attempts there."""
        # A rename: the old UID is gone for good (UIDs are never reused within a
        # UIDVALIDITY), and one message keeps one record.
        with self._transaction():
            self._count("UPDATE messages SET key = ? WHERE key = ? "
                        "AND NOT EXISTS (SELECT 1 FROM messages WHERE key = ?)", (new_key, old_key, new_key))
            self._count("DELETE FROM inflight WHERE key = ?", (old_key,))
            self.move_request(old_key, new_key)

    # -- rate counting ------------------------------------------------------

    def count_events(self, sender: str, window_s: float, kind: str = "request") -> int:
        row = self._first("SELECT COUNT(*) FROM events WHERE sender = ? AND kind = ? AND at > ?",
                          (sender.lower(), kind, self._clock() - window_s))
        return int(row[0])

    def take_event(self, sender: str, kind: str, window_s: float, limit: int) -> bool:
        """Record an event unless ``limit`` of them fell in the last ``window_s`` (0: no
        limit); True when recorded. Count and record are one transaction, serialised
        per sender, so workers sharing the ledger cannot pass the limit together."""
        sender = sender.lower()
        now = self._clock()
        with self._transaction(lock=f"event:{sender}:{kind}"):
            if limit:
                row = self._first("SELECT COUNT(*) FROM events WHERE sender = ? AND kind = ? AND at > ?",
                                  (sender, kind, now - window_s))
                if int(row[0]) >= limit:
                    return False
            self._count("INSERT INTO events (sender, kind, at) VALUES (?, ?, ?)", (sender, kind, now))
        return True

    # -- Message-ID reservations --------------------------------------------

    def reserve(self, message_id: str, key: str, stale_before: float) -> str | None:
        """Reserve ``message_id`` for answering from ``key``: None when it is ours now,
        else the key another worker is answering it from.

        A reservation is ours to take over when we made it (same key, same
        worker), or when it was last renewed before ``stale_before`` (its
        worker is gone: its lease ran out). Atomic: of workers racing for one
        Message-ID exactly one gets it. It ends with the message's final state
        (``_finish``) or its return to the INBOX (``carry``).
        """
        now = self._clock()
        with self._transaction():
            row = self._one(
                "INSERT INTO inflight (message_id, key, worker, renewed) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(message_id) DO UPDATE SET key = excluded.key, worker = excluded.worker, "
                "renewed = excluded.renewed WHERE (inflight.key = excluded.key "
                "AND inflight.worker = excluded.worker) OR inflight.renewed < ? RETURNING key",
                (message_id, key, self.worker, now, stale_before))
            if row is not None:
                return None
            holder = self._one("SELECT key FROM inflight WHERE message_id = ?", (message_id,))
        return holder[0] if holder else ""

    def reservations(self) -> dict[str, tuple[str, str]]:
        """Message-ID -> (key, worker) of the reservations held now."""
        return {message_id: (key, worker) for message_id, key, worker
                in self._rows("SELECT message_id, key, worker FROM inflight")}

    def release_reservation(self, key: str) -> None:
        self._count("DELETE FROM inflight WHERE key = ?", (key,))

    # -- claims -------------------------------------------------------------

    _CLAIM_COLUMNS = "key, worker, uidvalidity, uid, claimed, renewed"

    def claim_keys(self, keys: list[str], limit: int, stale_before: float) -> list[str]:
        """Claim up to ``limit`` of ``keys`` for this worker, in order; the keys won.

        A key is won when no worker holds it, or its holder's lease was last
        renewed before ``stale_before``. The primary key makes this exclusive:
        of workers racing for one key exactly one wins (IMAP MOVE alone does
        not: Dovecot answers concurrent MOVEs of one message each with a
        COPYUID, and makes a copy for each).
        """
        won: list[str] = []
        now = self._clock()
        with self._transaction():
            for key in keys:
                if len(won) >= limit:
                    break
                row = self._one(
                    "INSERT INTO claims (key, worker, claimed, renewed) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET worker = excluded.worker, claimed = excluded.claimed, "
                    "renewed = excluded.renewed, uidvalidity = 0, uid = 0 "
                    "WHERE claims.renewed < ? RETURNING key", (key, self.worker, now, now, stale_before))
                if row is not None:
                    won.append(key)
        return won

    def claimed_keys(self) -> set[str]:
        return {row[0] for row in self._rows("SELECT key FROM claims")}

    def place_claims(self, uidvalidity: int, placed: list[tuple[str, int]]) -> None:
        """Our claimed requests now sit in the claims folder: (key, UID there) pairs."""
        with self._transaction():
            for key, uid in placed:
                self._count("DELETE FROM claims WHERE uidvalidity = ? AND uid = ? AND key != ?",
                            (uidvalidity, uid, key))  # noticed meanwhile by another worker
                self._count("UPDATE claims SET uidvalidity = ?, uid = ? WHERE key = ? AND worker = ?",
                            (uidvalidity, uid, key, self.worker))

    def notice_claims(self, uidvalidity: int, uids: list[int]) -> None:
        """Messages in the claims folder no claim names (a worker died between its
        MOVE and its record): their lease starts now."""
        now = self._clock()
        with self._transaction():
            for uid in uids:
                self._count("INSERT INTO claims (key, uidvalidity, uid, claimed, renewed) "
                            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
                            (f"{UNRECORDED_CLAIM_PREFIX}{uidvalidity}:{uid}", uidvalidity, uid, now, now))

    def hold_claim(self, key: str) -> bool:
        """Renew this worker's lease on one claim; False when it is no longer ours."""
        return self._count("UPDATE claims SET renewed = ? WHERE key = ? AND worker = ?",
                           (self._clock(), key, self.worker)) == 1

    def heartbeat(self) -> None:
        """Renew every lease of this worker (claims and reservations) and say it lives."""
        now = self._clock()
        with self._transaction():
            self._count("UPDATE claims SET renewed = ? WHERE worker = ?", (now, self.worker))
            self._count("UPDATE inflight SET renewed = ? WHERE worker = ?", (now, self.worker))
            self._count("INSERT INTO workers (id, started, seen) VALUES (?, ?, ?) "
                        "ON CONFLICT(id) DO UPDATE SET seen = excluded.seen", (self.worker, now, now))

    def expire_claims(self, renewed_before: float) -> list[Claim]:
        """Take away the claims whose lease ran out (atomic: one worker gets each).
        A noticed message that a live claim has named meanwhile is left alone."""
        rows = self._rows(
            "DELETE FROM claims WHERE renewed < ? AND NOT (key LIKE ? AND EXISTS "
            "(SELECT 1 FROM claims AS named WHERE named.uidvalidity = claims.uidvalidity "
            "AND named.uid = claims.uid AND named.key NOT LIKE ?)) "
            f"RETURNING {self._CLAIM_COLUMNS}", (renewed_before, f"{UNRECORDED_CLAIM_PREFIX}%", f"{UNRECORDED_CLAIM_PREFIX}%"))
        return [Claim(*row) for row in rows]

    def end_claims(self, keys: list[str]) -> None:
        """These claims are over (deleted, set aside or given back by their worker)."""
        with self._transaction():
            for key in keys:
                self._count("DELETE FROM claims WHERE key = ?", (key,))

    def claims(self) -> list[Claim]:
        rows = self._rows(f"SELECT {self._CLAIM_COLUMNS} FROM claims ORDER BY claimed")
        return [Claim(*row) for row in rows]

    def workers_known(self) -> dict[str, float]:
        """Every worker on record (kept KEEP_WORKERS_S) -> when it was last seen, oldest start first."""
        return dict(self._rows("SELECT id, seen FROM workers ORDER BY started", ()))

    def workers_seen(self, since: float) -> dict[str, float]:
        """Worker -> when it last renewed its leases, for those seen since ``since``."""
        return dict(self._rows("SELECT id, seen FROM workers WHERE seen >= ? ORDER BY started", (since,)))

    def leave(self) -> None:
        """This worker stops cleanly: its entry goes, so --status shows only the living and the lost."""
        if self.worker:
            with self._transaction():
                self._count("DELETE FROM workers WHERE id = ?", (self.worker,))
                self._count("DELETE FROM pages WHERE worker = ?", (self.worker,))

    def prune(self) -> None:
        """Forget old events, finished records and long-gone workers, so the ledger stays small."""
        now = self._clock()
        with self._transaction(lock=SCHEMA_LOCK):  # not while another worker creates the tables
            self._count("DELETE FROM events WHERE at < ?", (now - KEEP_EVENTS_S,))
            self._count(f"DELETE FROM messages WHERE updated < ? AND {_FINAL_IN}",
                        (now - KEEP_RECORDS_S, *FINAL_STATES))
            self._count("DELETE FROM workers WHERE seen < ?", (now - KEEP_WORKERS_S,))
            self._count("DELETE FROM pages WHERE seen < ?", (now - KEEP_WORKERS_S,))
            self.prune_requests(now - KEEP_RECORDS_S)

