"""The SQLite ledger: one file shared by the server processes of one machine.

WAL and ``synchronous=FULL``: a state written is on disk when the call
returns. Not for a network file system, where SQLite's locks are unreliable.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from animalid.errors import TransientError
from animalid.server.ledger.base import SCHEMA, WORKER_COLUMN, Clock, Ledger, Row
from animalid.server.ledger.history import HISTORY_TABLES
from animalid.server.ledger.trail import TRAIL_TABLES

# How long a writer waits for another process's write lock (SQLite busy_timeout).
SQLITE_BUSY_TIMEOUT_S = 30.0
WAL_RETRY_S = 0.05

# -- SQLite -------------------------------------------------------------------

class SqliteLedger(Ledger):
    """One SQLite file, shared by the processes of one machine (WAL, synchronous=FULL)."""

    backend = "sqlite"

    def __init__(self, path: str | Path, clock: Clock = time.time):
        super().__init__(clock)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit (isolation_level=None): every statement outside _transaction
        # is its own transaction, durable when it returns. timeout: how long a
        # writer waits for another process's write lock (busy_timeout).
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=SQLITE_BUSY_TIMEOUT_S,
                                   check_same_thread=False)
        self._depth = 0
        self._enable_wal()
        self._db.execute("PRAGMA synchronous=FULL")
        if not self._schema_ready():  # else no write lock at all: readers open freely
            with self._transaction():
                for statement in SCHEMA.format(real="REAL", bigint="INTEGER").split(";"):
                    self._db.execute(statement)
                if not self._schema_ready():
                    self._db.execute(f"ALTER TABLE messages ADD COLUMN {WORKER_COLUMN}")

    def _enable_wal(self) -> None:
        """Write-ahead logging, which the file keeps once set. Switching to it takes an
        exclusive lock for which SQLite does not wait (no busy handler), so workers
        opening a new ledger together get "database is locked" (measured: 3 of 60
        three-way starts): retry for as long as a writer would wait."""
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise TransientError(f"ledger {self.path}: {exc}") from None
                time.sleep(WAL_RETRY_S)

    def _schema_ready(self) -> bool:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        return {"messages", "events", "claims", "inflight", "workers", *HISTORY_TABLES, *TRAIL_TABLES} <= tables \
            and "worker" in columns

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk I/O
                raise TransientError(f"ledger {self.path}: {exc}") from None

    def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self._lock:
            try:
                return self._db.execute(sql, params).rowcount
            except sqlite3.OperationalError as exc:
                raise TransientError(f"ledger {self.path}: {exc}") from None

    @contextmanager
    def _transaction(self, lock: str | None = None) -> Iterator[None]:
        # SQLite has one writer at a time: BEGIN IMMEDIATE takes the write lock
        # at once (waiting up to the busy timeout), so a transaction's reads and
        # writes see no other writer in between; ``lock`` needs nothing more.
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise TransientError(f"ledger {self.path}: {exc}") from None
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._rollback_quietly()
                raise
            self._depth = 0
            try:
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:  # "database or disk is full", "disk I/O error"
                self._rollback_quietly()
                raise TransientError(f"ledger {self.path}: {exc}") from None

    def _rollback_quietly(self) -> None:
        """Roll back; a failed COMMIT (disk full, I/O error) may have ended the transaction
        already, and a ROLLBACK that fails too leaves SQLite to roll back on its own."""
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass
