"""The ledger's two backends: SQLite (workers on one machine) and PostgreSQL (on several).

Both run the shared SQL of ``ledger.Ledger``; each supplies its connection,
its transactions and its way of serialising writers. ``open_ledger`` picks
one from ``[server] ledger``; README, "Many servers, one mailbox", says why
and what each measured.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from animalid.config import Config
from animalid.errors import AuthError, TransientError, UnreachableError
from animalid.server.ledger import POSTGRES_SCHEMES, SCHEMA_LOCK, Ledger, _SCHEMA, _WORKER_COLUMN

# How long a writer waits for another process's write lock (SQLite busy_timeout).
SQLITE_BUSY_TIMEOUT_S = 30.0
WAL_RETRY_S = 0.05

# -- SQLite -------------------------------------------------------------------

class SqliteLedger(Ledger):
    """One SQLite file, shared by the processes of one machine (WAL, synchronous=FULL)."""

    backend = "sqlite"

    def __init__(self, path: str | Path, clock=time.time):
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
                for statement in _SCHEMA.format(real="REAL", bigint="INTEGER").split(";"):
                    self._db.execute(statement)
                if not self._schema_ready():
                    self._db.execute(f"ALTER TABLE messages ADD COLUMN {_WORKER_COLUMN}")

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
        return {"messages", "events", "claims", "inflight", "workers"} <= tables and "worker" in columns

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:  # locked past the busy timeout, disk I/O
                raise TransientError(f"ledger {self.path}: {exc}") from None

    def _count(self, sql: str, params: tuple = ()) -> int:
        with self._lock:
            try:
                return self._db.execute(sql, params).rowcount
            except sqlite3.OperationalError as exc:
                raise TransientError(f"ledger {self.path}: {exc}") from None

    @contextmanager
    def _transaction(self, lock: str | None = None):
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
                self._db.execute("ROLLBACK")
                raise
            self._depth = 0
            self._db.execute("COMMIT")


# -- PostgreSQL ---------------------------------------------------------------

class PostgresLedger(Ledger):
    """A PostgreSQL database (psycopg 3), shared by workers on any number of machines.

    Autocommit: every statement outside ``_transaction`` commits on its own;
    with PostgreSQL's default ``synchronous_commit = on`` a commit is on the
    server's disk when it returns. A lost connection raises ``TransientError``
    and is reopened by the next call.
    """

    backend = "postgresql"

    def __init__(self, url: str, password: str | None = None, clock=time.time, connect_timeout: int = 10):
        super().__init__(clock)
        self.url, self._password, self._connect_timeout = url, password, connect_timeout
        self._conn = None
        if not self._schema_ready():  # else no table lock at all
            with self._transaction(lock=SCHEMA_LOCK):
                for statement in _SCHEMA.format(real="DOUBLE PRECISION", bigint="BIGINT").split(";"):
                    self._count(statement)
                self._count(f"ALTER TABLE messages ADD COLUMN IF NOT EXISTS {_WORKER_COLUMN}")

    def _schema_ready(self) -> bool:
        row = self._one("SELECT to_regclass('workers') IS NOT NULL AND EXISTS (SELECT 1 FROM "
                        "information_schema.columns WHERE table_schema = current_schema() "
                        "AND table_name = 'messages' AND column_name = 'worker')")
        return bool(row and row[0])

    def describe(self) -> str:
        return self.url

    def _connection(self):
        import psycopg

        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._conn = None
        try:
            self._conn = psycopg.connect(self.url, password=self._password, autocommit=True,
                                         connect_timeout=self._connect_timeout,
                                         application_name="animalid-server")
        except psycopg.OperationalError as exc:
            text = " ".join(str(exc).split())
            if "authentication failed" in text or "no password supplied" in text:
                raise AuthError(f"ledger {self.url} refused the login ({text})") from None
            raise UnreachableError(f"ledger {self.url}: cannot connect ({text})") from None
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _execute(self, sql: str, params: tuple):
        import psycopg

        with self._lock:
            conn = self._connection()
            try:
                cursor = conn.execute(sql.replace("%", "%%").replace("?", "%s"), params, prepare=False)
                return cursor.fetchall() if cursor.description else [], cursor.rowcount
            except psycopg.OperationalError as exc:  # connection lost, server restarting
                if not self._in_transaction:
                    self._conn = None
                raise TransientError(f"ledger {self.url}: {' '.join(str(exc).split())}") from None

    _in_transaction = False

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._execute(sql, params)[0]

    def _count(self, sql: str, params: tuple = ()) -> int:
        return self._execute(sql, params)[1]

    @contextmanager
    def _transaction(self, lock: str | None = None):
        import psycopg

        with self._lock:
            if self._in_transaction:
                yield
                return
            conn = self._connection()
            self._in_transaction = True
            try:
                with conn.transaction():
                    if lock:
                        # Two workers checking then writing the same sender's events
                        # take turns (READ COMMITTED alone would let both pass).
                        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
                    yield
            except psycopg.OperationalError as exc:
                self._conn = None
                raise TransientError(f"ledger {self.url}: {' '.join(str(exc).split())}") from None
            finally:
                self._in_transaction = False


# -- choosing one ---------------------------------------------------------------

def open_ledger(config: Config) -> Ledger:
    """The ledger ``[server] ledger`` names: empty for SQLite at ``state_file``, or a
    ``postgresql://user@host[:port]/database`` URL (password from ``ledger_password_env``
    or ``ledger_password_command``, never in the URL)."""
    section = config.section("server")
    url = section.get("ledger", "")
    if not url:
        return SqliteLedger(section.get_path("state_file"))
    parts = urlsplit(url)
    if parts.scheme not in POSTGRES_SCHEMES:
        raise section.error("ledger", "not a postgresql://user@host/database URL "
                                      "(leave it empty for the SQLite state_file)")
    if parts.password is not None or "password" in parts.query.lower():
        raise section.error("ledger", "a password does not go in the URL: name where it comes from "
                                      "with ledger_password_env or ledger_password_command")
    if not parts.path.strip("/"):
        raise section.error("ledger", "the URL names no database (postgresql://user@host/DATABASE)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise section.error("ledger", "PostgreSQL needs psycopg: pip install 'psycopg[binary]' "
                                      "(see requirements.txt)") from None
    password = section.get_secret("ledger_password", required=False)
    return PostgresLedger(url, password)


def ledger_where(config: Config) -> str:
    """What ``open_ledger`` would open, for messages (no password: the URL has none)."""
    section = config.section("server")
    return section.get("ledger", "") or f"sqlite:{section.get_path('state_file')}"
