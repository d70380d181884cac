"""The one place that reaches into imapclient's (and imaplib's) private internals.

imapclient 3.0.1 (pinned in requirements) gives no public way to:

* read the untagged responses imaplib stores while a command runs
  (``client._imap.untagged_responses``): EXISTS/RECENT news that arrived
  during another command, and the COPYUID response code (RFC 4315) of a UID
  MOVE (RFC 6851);
* see bytes already read into imaplib's buffer (``client._imap.file``):
  IDLE news that came in the same packet as the continuation line;
* restore the socket's read timeout after peeking (``client._set_read_timeout()``).

tests/unit/test_imapclient_compat.py pins the version and checks that these
attributes exist, so an upgrade that moves them fails there, not in a server.
"""

from __future__ import annotations

import ssl
from typing import Any

# The imapclient release these internals were checked against.
IMAPCLIENT_VERSION = "3.0.1"


def untagged_responses(client: Any) -> dict[str, list[Any]]:
    """imaplib's store of untagged responses (name -> values), shared and mutable."""
    store: dict[str, list[Any]] = client._imap.untagged_responses
    return store


def input_buffered(client: Any) -> bool:
    """True when bytes already read from the socket wait in imaplib's buffer.

    IDLE responses that arrived in the same packet as the continuation line
    sit there, where a poll() on the socket cannot see them.
    """
    sock = client.socket()
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    reader = client._imap.file
    sock.setblocking(False)
    try:
        return bool(reader.peek(1))
    except (OSError, ValueError):  # nothing buffered: the raw read would block
        return False
    finally:
        sock.setblocking(True)
        client._set_read_timeout()
