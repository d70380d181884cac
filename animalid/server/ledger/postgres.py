"""The PostgreSQL ledger (psycopg 3): workers on any number of machines share it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from animalid.errors import AuthError, TransientError, UnreachableError
from animalid.server.ledger.base import SCHEMA, SCHEMA_LOCK, WORKER_COLUMN, Clock, Ledger, Row

# -- PostgreSQL ---------------------------------------------------------------

class PostgresLedger(Ledger):
    """A PostgreSQL database (psycopg 3), shared by workers on any number of machines.

    Autocommit: every statement outside ``_transaction`` commits on its own;
    with PostgreSQL's default ``synchronous_commit = on`` a commit is on the
    server's disk when it returns. A lost connection raises ``TransientError``
    and is reopened by the next call.
    """

    backend = "postgresql"

    def __init__(self, url: str, password: str | None = None, clock: Clock = time.time, connect_timeout: int = 10):
        super().__init__(clock)
        self.url, self._password, self._connect_timeout = url, password, connect_timeout
        self._conn: Any = None  # a psycopg.Connection, imported only when PostgreSQL is used
        if not self._schema_ready():  # else no table lock at all
            with self._transaction(lock=SCHEMA_LOCK):
                for statement in SCHEMA.format(real="DOUBLE PRECISION", bigint="BIGINT").split(";"):
                    self._count(statement)
                self._count(f"ALTER TABLE messages ADD COLUMN IF NOT EXISTS {WORKER_COLUMN}")

    def _schema_ready(self) -> bool:
        row = self._one("SELECT to_regclass('workers') IS NOT NULL AND to_regclass('requests') IS NOT NULL "
                        "AND to_regclass('pages') IS NOT NULL AND to_regclass('trail_marks') IS NOT NULL AND EXISTS (SELECT 1 FROM "
                        "information_schema.columns WHERE table_schema = current_schema() "
                        "AND table_name = 'messages' AND column_name = 'worker')")
        return bool(row and row[0])

    def describe(self) -> str:
        return self.url

    def _connection(self) -> Any:
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

    def _execute(self, sql: str, params: tuple[Any, ...]) -> tuple[list[Row], int]:
        import psycopg

        with self._lock:
            conn = self._connection()
            try:
                cursor = conn.execute(sql.replace("%", "%%").replace("?", "%s"), params, prepare=False)
                rows: list[Row] = cursor.fetchall() if cursor.description else []
                count: int = cursor.rowcount
                return rows, count
            except psycopg.OperationalError as exc:  # connection lost, server restarting
                if not self._in_transaction:
                    self._conn = None
                raise TransientError(f"ledger {self.url}: {' '.join(str(exc).split())}") from None

    _in_transaction = False

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
        return self._execute(sql, params)[0]

    def _count(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        return self._execute(sql, params)[1]

    @contextmanager
    def _transaction(self, lock: str | None = None) -> Iterator[None]:
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
