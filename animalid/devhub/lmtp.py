"""LMTP delivery: hand one message to Dovecot and wait until it is stored (RFC 2033).

The SMTP front answers 250 only once this says "stored". An LMTP 4xx becomes
451 (try again later), a 5xx becomes 550, and an unreachable Dovecot 451.
"""

from __future__ import annotations

import contextlib
import smtplib
from dataclasses import dataclass

LMTP_TIMEOUT = 60.0


@dataclass
class Delivery:
    reply: str  # the SMTP reply for the DATA command
    detail: str  # what to log


def lmtp_deliver(socket_path: str, sender: str, rcpts: list[str], data: bytes) -> Delivery:
    """Hand one message to Dovecot and wait until it is stored."""
    try:
        lmtp = smtplib.LMTP(socket_path, timeout=LMTP_TIMEOUT)
    except (OSError, smtplib.SMTPException) as exc:
        return _unavailable(exc)
    try:
        results = _lmtp_transaction(lmtp, sender, rcpts, data)
    except smtplib.SMTPDataError as exc:
        error = exc.smtp_error if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error).encode()
        return _failed({r: (exc.smtp_code, error) for r in rcpts})
    except (OSError, smtplib.SMTPException) as exc:
        return _unavailable(exc)
    finally:
        # The message is stored (or not) already; a failing QUIT changes
        # nothing and must not turn a delivery into a retry.
        with contextlib.suppress(OSError, smtplib.SMTPException):
            lmtp.quit()
        lmtp.close()
    if all(200 <= code < 300 for code, _ in results.values()):
        return Delivery("250 2.0.0 OK: stored", "stored")
    return _failed(results)


def _lmtp_transaction(lmtp: smtplib.LMTP, sender: str, rcpts: list[str],
                      data: bytes) -> dict[str, tuple[int, bytes]]:
    """Per-recipient results. LMTP answers DATA once per accepted recipient
    (RFC 2033 section 4.2); smtplib reads only the first, so the rest are
    read here."""
    lmtp.ehlo()  # LHLO
    code, msg = lmtp.mail(sender)
    if code != 250:
        return {r: (code, msg) for r in rcpts}
    results: dict[str, tuple[int, bytes]] = {}
    accepted = []
    for rcpt in rcpts:
        code, msg = lmtp.rcpt(rcpt)
        if code in (250, 251):
            accepted.append(rcpt)
        else:
            results[rcpt] = (code, msg)
    if accepted:
        results[accepted[0]] = lmtp.data(data)
        for rcpt in accepted[1:]:
            results[rcpt] = lmtp.getreply()
    return results


def _unavailable(exc: Exception) -> Delivery:
    return Delivery("451 4.4.1 Mail store unavailable, try again later",
                    f"LMTP unavailable: {exc.__class__.__name__}: {exc}")


def _failed(results: dict[str, tuple[int, bytes]]) -> Delivery:
    """One SMTP reply for several recipients: any temporary failure wins, so
    the client retries; a recipient already stored may then get a duplicate,
    which beats losing mail."""
    detail = "; ".join(
        f"{r}: {code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
        for r, (code, msg) in results.items()
    )
    if any(400 <= code < 500 for code, _ in results.values()):
        return Delivery("451 4.3.0 Mail store failed temporarily, try again later", detail)
    return Delivery("550 5.3.0 Mail store refused the message", detail)
