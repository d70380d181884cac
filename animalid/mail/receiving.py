"""Opening the mailbox a program reads: IMAP IDLE or POP3 polling, from typed settings.

The factory lives apart from ``mailbox.Mailbox`` so that the interface and
its two implementations (imap.py, pop3.py) import in one direction only.
"""

from __future__ import annotations

from dataclasses import dataclass

from animalid.mail.imap import ImapMailbox
from animalid.mail.mailbox import Mailbox
from animalid.mail.pop3 import Pop3Mailbox
from animalid.mail.transport import Account, Endpoint

RECEIVE_CHOICES = ("imap", "pop3")


@dataclass(frozen=True)
class ReceiveSettings:
    """How one program reads its mailbox ([client] or [server] receive, [imap], [pop3])."""

    protocol: str  # "imap" or "pop3"
    poll_interval: float = 1.0  # POP3: seconds between looks
    folder: str = "INBOX"  # IMAP: the watched folder
    idle_refresh: float = 1500.0  # IMAP: IDLE re-issued this often (RFC 2177: under 29 min)

    def __post_init__(self) -> None:
        if self.protocol not in RECEIVE_CHOICES:
            raise ValueError(f"receive must be one of {RECEIVE_CHOICES}, not {self.protocol!r}")


def open_mailbox(endpoint: Endpoint, account: Account, settings: ReceiveSettings) -> Mailbox:
    """The mailbox at ``endpoint`` as ``account`` (connecting on first use)."""
    if settings.protocol == "pop3":
        return Pop3Mailbox(endpoint, account, poll_interval=settings.poll_interval)
    return ImapMailbox(endpoint, account, folder=settings.folder, idle_refresh=settings.idle_refresh)
