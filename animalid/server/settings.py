"""The server's settings, typed and frozen, with the senders it may answer.

They are built once from config.ini [server] by animalid.cli.settings; this
module never reads the config file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from animalid.mail.messages import Limits
from animalid.mail.protection import Protection
from animalid.server.ledger import LedgerSettings
from animalid.server.trail.settings import TrailSettings


class AllowedSenders:
    """Who gets answers: exact addresses and @domain entries."""

    def __init__(self, entries: Iterable[str]):
        entries = list(entries)
        self.addresses = frozenset(e.lower() for e in entries if not e.startswith("@"))
        self.domains = frozenset(e[1:].lower() for e in entries if e.startswith("@"))

    def allows(self, address: str) -> bool:
        address = address.lower()
        return address in self.addresses or address.rpartition("@")[2] in self.domains

    def __repr__(self) -> str:
        return f"AllowedSenders({sorted(self.addresses)} + {sorted('@' + d for d in self.domains)})"


@dataclass(frozen=True)
class ServerSettings:
    address: str
    receive: str
    state_file: Path
    max_attempts: int
    rate_limit_per_hour: int
    failed_folder: str
    answered_folder: str
    retry_max_delay: float
    limits: Limits
    max_image_pixels: int
    allowed: AllowedSenders
    protection: Protection = field(default_factory=Protection)
    display_name: str = ""  # in the From of replies: "Animal ID <server@...>"
    claims_folder: str = "animalid-claims"
    claim_lease: float = 60.0
    pipeline: bool = True
    ledger: LedgerSettings | None = None  # None: SQLite at state_file
    # Believe a request's From only when the provider's Authentication-Results vouches
    # for it (mail/authresults.py); authserv_ids names whose header counts.
    require_authentication: bool = False
    authserv_ids: tuple[str, ...] = ()
    trail: TrailSettings = field(default_factory=TrailSettings)  # [trail-camera NAME] sections

    @property
    def ledger_settings(self) -> LedgerSettings:
        return self.ledger if self.ledger is not None else LedgerSettings(self.state_file)
