"""Reading one POP3 message (RETR, TOP) with a byte cap instead of a line limit.

poplib reads every line with ``readline(_MAXLINE)`` and fails the whole
command with "line too long" past it (2048 bytes by default). Real mail
breaks RFC 5322's 998-character limit, and one stranger's line must never
look like a broken mail server. Raising ``poplib._MAXLINE`` changes it for
the whole process. So a message is read here in bounded chunks, up to the
caller's byte cap (``max_message_bytes``), whatever its lines look like:

* the multi-line response of RFC 1939 section 3 -- lines ending CRLF, the
  end marked by a line holding only ".", a line beginning with "." having
  another "." prepended (dot-stuffing), undone here;
* a response larger than the cap is read to its end and thrown away, so the
  session stays usable, and reported as ``OverCap``;
* a "-ERR" status (the server cannot give *this* message: Dovecot says
  "Message N expunged" when it cannot open the file) raises ``MessageError``,
  a failure of that message only; a closed connection raises
  ``poplib.error_proto("-ERR EOF")`` like poplib does, which is an outage.
"""

from __future__ import annotations

import poplib
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 64 * 1024  # the most one readline() takes (bounded memory per read)
STATUS_LINE_LIMIT = 2048  # a status line is short (RFC 2449 section 4: 512 octets)
CONNECTION_CLOSED = b"-ERR EOF"


class MessageError(Exception):
    """The server refused this one message (a -ERR status); the session is still fine."""


@dataclass(frozen=True)
class OverCap:
    """The response was larger than the cap; ``size`` is how large it was."""

    size: int


def retr(pop: poplib.POP3, number: int, max_bytes: int) -> bytes | OverCap:
    """RETR ``number``: the whole message, or ``OverCap`` when larger than ``max_bytes``."""
    return _multiline(pop, f"RETR {int(number)}", max_bytes)


def top(pop: poplib.POP3, number: int, max_bytes: int, lines: int = 0) -> bytes:
    """TOP ``number`` ``lines``: the header block (and ``lines`` body lines), cut to ``max_bytes``."""
    result = _multiline(pop, f"TOP {int(number)} {int(lines)}", max_bytes, keep_head=True)
    assert isinstance(result, bytes)
    return result


def _multiline(pop: poplib.POP3, command: str, max_bytes: int, keep_head: bool = False) -> bytes | OverCap:
    pop.sock.sendall(command.encode("ascii") + b"\r\n")
    status = _status_line(pop)
    if not status.startswith(b"+"):
        raise MessageError(status.decode("utf-8", "replace"))
    return read_body(pop.file, max_bytes, keep_head)


def _status_line(pop: poplib.POP3) -> bytes:
    line = pop.file.readline(STATUS_LINE_LIMIT + 1)
    if not line:
        raise poplib.error_proto(CONNECTION_CLOSED)
    if len(line) > STATUS_LINE_LIMIT:
        raise poplib.error_proto(b"-ERR status line too long")
    return line.rstrip(b"\r\n")


def read_body(file: BinaryIO, max_bytes: int, keep_head: bool = False) -> bytes | OverCap:
    """The rest of a multi-line response from ``file``: dot-stuffing undone, the final
    "." line dropped. Past ``max_bytes``: ``OverCap`` (or, with ``keep_head``, the first
    ``max_bytes``), after reading to the end so the session can go on."""
    kept = bytearray()
    size = 0
    at_line_start = True
    over = False
    while True:
        chunk = file.readline(CHUNK)
        if not chunk:
            raise poplib.error_proto(CONNECTION_CLOSED)
        if at_line_start:
            if chunk in (b".\r\n", b".\n"):
                break
            if chunk.startswith(b"."):
                chunk = chunk[1:]
        at_line_start = chunk.endswith(b"\n")
        size += len(chunk)
        if over:
            continue
        if size > max_bytes:
            over = True
            if keep_head:
                kept += chunk[: max(0, max_bytes - len(kept))]
            else:
                kept.clear()
            continue
        kept += chunk
    if over and not keep_head:
        return OverCap(size)
    return bytes(kept)
