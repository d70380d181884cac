"""Fault injection for tests: the switch behind ``MailHub.fail_smtp``.

While it is on, the SMTP front answers MAIL FROM of the chosen envelope
senders (or everyone) with a 4xx or 5xx code, as a provider throttling an
account would. It is off unless a test turns it on, and ends by itself.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable, Optional

log = logging.getLogger(__name__)


class SmtpFaults:
    """The reply code, until when, and for whom MAIL FROM fails."""

    def __init__(self) -> None:
        # (reply code, monotonic deadline, envelope senders or None for all)
        self._fault: Optional[tuple[int, float, Optional[frozenset[str]]]] = None
        self._recipient_fault: Optional[tuple[int, float, Optional[frozenset[str]]]] = None

    def fail(self, code: int = 451, for_seconds: float = 10.0,
             senders: Optional[Iterable[str]] = None) -> None:
        """Answer MAIL FROM of ``senders`` (all when None) with ``code`` for
        ``for_seconds``; ``for_seconds=0`` ends it now."""
        if not 400 <= int(code) <= 599:
            raise ValueError("code must be a 4xx or 5xx SMTP reply code")
        if for_seconds <= 0:
            self._fault = None
            return
        wanted = frozenset(s.lower() for s in senders) if senders is not None else None
        self._fault = (int(code), time.monotonic() + for_seconds, wanted)
        log.warning("SMTP front: answering %d to MAIL FROM %s for %.1f s (fail_smtp)",
                    code, "of " + ", ".join(sorted(wanted)) if wanted else "of everyone", for_seconds)

    def fail_recipients(self, code: int = 451, for_seconds: float = 10.0,
                        recipients: Optional[Iterable[str]] = None) -> None:
        """Answer RCPT TO of ``recipients`` (all when None) with ``code`` for ``for_seconds``."""
        if not 400 <= int(code) <= 599:
            raise ValueError("code must be a 4xx or 5xx SMTP reply code")
        if for_seconds <= 0:
            self._recipient_fault = None
            return
        wanted = frozenset(r.lower() for r in recipients) if recipients is not None else None
        self._recipient_fault = (int(code), time.monotonic() + for_seconds, wanted)
        log.warning("SMTP front: answering %d to RCPT TO %s for %.1f s (fail_recipients)",
                    code, "of " + ", ".join(sorted(wanted)) if wanted else "of everyone", for_seconds)

    def reply_for_recipient(self, recipient: str) -> Optional[str]:
        """The injected reply to RCPT TO:<recipient>, or None to go on as usual."""
        fault = self._recipient_fault
        if fault is None:
            return None
        code, deadline, recipients = fault
        if time.monotonic() >= deadline or (recipients is not None and recipient.lower() not in recipients):
            return None
        if code < 500:
            return f"{code} 4.2.1 <{recipient}>: mailbox busy, try again later (fail_recipients)"
        return f"{code} 5.2.1 <{recipient}>: mailbox unavailable (fail_recipients)"

    def reply_for(self, sender: str) -> Optional[str]:
        """The injected reply to MAIL FROM:<sender>, or None to go on as usual."""
        fault = self._fault
        if fault is None:
            return None
        code, deadline, senders = fault
        if time.monotonic() >= deadline:
            return None
        if senders is not None and sender.lower() not in senders:
            return None
        if code < 500:
            return f"{code} 4.3.2 Failure injected by MailHub.fail_smtp, try again later"
        return f"{code} 5.3.2 Failure injected by MailHub.fail_smtp"
