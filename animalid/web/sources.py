"""What the web layer needs from the server, as narrow Protocols.

The web package never imports the server: ``cli`` hands it objects that fit
these shapes (the ledger fits ``HistorySource`` and ``WorkersSource`` as it
is), so either side can change behind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

from animalid.history import HistoryPage, HistoryQuery, RequestRecord, Timing


class HistorySource(Protocol):
    """The shared request history (the ledger's ``requests`` table)."""

    def request_page(self, query: HistoryQuery) -> HistoryPage: ...

    def requests_since(self, since: float, limit: int = 100) -> list[RequestRecord]: ...

    def request_timings(self, since: float) -> list[Timing]: ...

    def request_counts(self, since: float) -> dict[str, int]: ...


class ClaimLike(Protocol):
    """One claim as the ledger returns it (``ledger.Claim``)."""

    @property
    def key(self) -> str: ...

    @property
    def worker(self) -> str: ...

    @property
    def claimed(self) -> float: ...

    @property
    def renewed(self) -> float: ...


class WorkersSource(Protocol):
    """Who is working: the ledger's ``workers`` and ``claims`` tables."""

    def workers_seen(self, since: float) -> dict[str, float]: ...

    def claims(self) -> Sequence[ClaimLike]: ...


@dataclass(frozen=True)
class Check:
    """One readiness check: ``probe`` returns "" when fine, else what is wrong; it may raise."""

    name: str
    probe: Callable[[], str]


@dataclass(frozen=True)
class LocalState:
    """This server's own numbers, read when asked (from the serving loop's state)."""

    worker: str
    queue_depth: Callable[[], int]
    claims_held: Callable[[], int]
    lease: float = 0.0  # the claim lease in seconds (0: the mailbox is not shared)
