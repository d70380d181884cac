"""Receiving mail: one small interface over POP3 polling and IMAP IDLE.

POP3 follows RFC 1939 (USER/PASS, LIST, RETR, TOP, DELE applied at QUIT),
RFC 2449 (CAPA, UIDL as the stable key), RFC 2595 (STLS) and RFC 5034 (SASL
AUTH, used for XOAUTH2). IMAP follows RFC 9051 / RFC 3501 (UIDVALIDITY+UID as
the stable key, BODY.PEEK so other mail keeps its \\Seen flag), RFC 2177
(IDLE, re-issued before the server's 30-minute inactivity timer), RFC 6851
(MOVE; without it set_aside copies first and deletes after, so a crash can
leave a copy but never lose one), RFC 4315 (UIDPLUS: UID EXPUNGE, so only our
own messages are expunged -- a whole mailbox never is -- and COPYUID) and
RFC 7628 style XOAUTH2 login.

Claims, for several servers sharing one mailbox (``ImapMailbox.claim``): a
``UID MOVE`` of requests from the watched folder into a claims folder. MOVE is
atomic (RFC 6851 section 3.3: moved, or not moved at all), and the server
reports what it moved in a ``COPYUID`` response code (RFC 4315 section 3,
RFC 6851 section 4.3), source UIDs to destination UIDs. A UID that another
client moved or expunged first is no error: RFC 3501 section 6.4.8 has UID
commands skip UIDs that no longer exist, so the MOVE succeeds with nothing
moved. A claimer therefore owns exactly the UIDs its COPYUID names.

Both kinds share ``Mailbox``:

* ``list_messages()`` -- what is in the mailbox now, as ``MailRef`` (a stable key,
  plus the size where the protocol gives it for free);
* ``fetch(refs, max_bytes)`` / ``fetch_headers(refs)`` -- bounded reads; a message
  the server will not give while it gives others is ``Unreadable`` (that
  message's failure, not an outage);
* ``delete(refs)``, ``set_aside(refs, folder)`` and ``end_pass()``;
* IMAP only: ``claim(refs, folder)``, ``release(refs)`` and ``list_folder(folder)``;
* ``wait(timeout)`` -- block until new mail may be there (IDLE), or until
  the next poll is due (POP3); ``has_news()`` is the non-blocking form.

``animalid.mail.receiving.open_mailbox`` opens one of the two. Connections open on first use. A dropped connection raises
``UnreachableError`` and is reopened by the next call, so callers only need
to back off and call again.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass

from animalid.errors import PermanentError
from animalid.mail.transport import Account, Endpoint, check_credentials_protected

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MailRef:
    """One message in the mailbox: a key that survives reconnects, and its handle."""

    key: str
    handle: int  # POP3 message number (this session only) or IMAP UID
    size: int | None = None
    folder: str = ""  # IMAP: the folder the UID is in; "" is the watched folder


@dataclass(frozen=True)
class TooLarge:
    """Stands in for a message that was not downloaded because of its size."""

    size: int


@dataclass(frozen=True)
class Unreadable:
    """Stands in for a message the mail server would not give (a -ERR to RETR, a FETCH
    that fails for this one UID) while it gave others: that message's failure, not an outage."""

    reason: str


class Mailbox(ABC):
    protocol = ""

    def __init__(self, endpoint: Endpoint, account: Account):
        check_credentials_protected(endpoint, account)
        self.endpoint = endpoint
        self.account = account

    def __enter__(self) -> "Mailbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def list_messages(self) -> list[MailRef]: ...

    @abstractmethod
    def fetch(self, refs: list[MailRef], max_bytes: int) -> dict[str, bytes | TooLarge | Unreadable]: ...

    @abstractmethod
    def fetch_headers(self, refs: list[MailRef]) -> dict[str, bytes]: ...

    @abstractmethod
    def delete(self, refs: list[MailRef]) -> None: ...

    def set_aside(self, refs: list[MailRef], folder: str) -> None:
        """Move out of the way; only IMAP has folders (POP3: leave, the ledger remembers)."""

    def end_pass(self) -> None:
        """Finish one round of list/fetch/delete (POP3: QUIT, which applies DELE)."""

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` s; True when ``list_messages()`` may show something new."""

    def has_news(self) -> bool:
        return self.wait(0)

    def connect(self) -> None:
        """Open the connection now where one is kept (IMAP); POP3 connects per pass."""

    def expect_more(self) -> None:
        """Make the next ``wait`` return at once: in a burst more mail is likely
        there already, and IMAP servers may delay IDLE news (Dovecot: 0.5 s)."""

    def with_sizes(self, refs: list[MailRef]) -> list[MailRef]:
        """``refs`` with their sizes filled in (one round trip on IMAP; POP3 has them)."""
        return refs

    def supports_claims(self) -> bool:
        """Whether servers can share this mailbox by claiming requests (IMAP with
        MOVE and UIDPLUS). POP3 has no atomic way to take a message for oneself."""
        return False

    def claim(self, refs: list[MailRef], folder: str) -> list[MailRef]:
        raise PermanentError(f"{self.protocol.upper()} cannot claim messages")

    def release(self, refs: list[MailRef]) -> dict[str, MailRef]:
        raise PermanentError(f"{self.protocol.upper()} cannot claim messages")

    def list_folder(self, folder: str, create: bool = True) -> tuple[int, list[int]]:
        """(UIDVALIDITY, UIDs) of another folder: IMAP only."""
        raise PermanentError(f"{self.protocol.upper()} has no folders")

    def uidvalidity_of(self, folder: str) -> int:
        """The UIDVALIDITY of ``folder``: IMAP only."""
        raise PermanentError(f"{self.protocol.upper()} has no folders")

    def verify_login(self) -> None:
        """Connect and log in now, so a wrong password shows before any work."""
        self.list_messages()
        self.end_pass()

    @abstractmethod
    def close(self) -> None: ...

