"""The servers' shared, crash-safe record of the messages they handle.

``base`` holds the interface and the SQL both backends run; ``sqlite`` and
``postgres`` the backends; ``open_ledger`` picks one from typed settings
(``LedgerSettings``, built from ``[server]`` by animalid.cli.settings).
README, "Many servers, one mailbox", says why there are two and what each
measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from animalid.credentials import SecretSource
from animalid.server.ledger.base import (
    ANSWERED,
    BOUNCED_MARK,
    FINAL_STATES,
    IGNORED,
    POSTGRES_SCHEMES,
    REFUSED,
    REPLY_MARK,
    SEEN,
    SET_ASIDE,
    UNRECORDED_CLAIM_PREFIX,
    Claim,
    Ledger,
    Outcome,
    Record,
)
from animalid.server.ledger.postgres import PostgresLedger
from animalid.server.ledger.sqlite import SqliteLedger

__all__ = ["ANSWERED", "BOUNCED_MARK", "FINAL_STATES", "IGNORED", "POSTGRES_SCHEMES", "REFUSED", "REPLY_MARK", "SEEN", "SET_ASIDE",
           "UNRECORDED_CLAIM_PREFIX", "Claim", "Ledger", "LedgerSettings", "Outcome", "PostgresLedger",
           "Record", "SqliteLedger", "open_ledger"]


@dataclass(frozen=True)
class LedgerSettings:
    """Where the ledger is: a SQLite file, or a checked PostgreSQL URL (no password in it)."""

    state_file: Path
    url: str = ""  # empty: SQLite at state_file
    password: SecretSource | None = None  # PostgreSQL only; fetched when the ledger opens

    @property
    def where(self) -> str:
        """What ``open_ledger`` opens, for messages (never a password: the URL has none)."""
        return self.url or f"sqlite:{self.state_file}"


def open_ledger(settings: LedgerSettings) -> Ledger:
    """The ledger ``settings`` name: SQLite at ``state_file``, or PostgreSQL at ``url``."""
    if not settings.url:
        return SqliteLedger(settings.state_file)
    password = settings.password.fetch() if settings.password is not None else None
    return PostgresLedger(settings.url, password)
