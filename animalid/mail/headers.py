"""Small helpers every mail module shares: reading headers, message ids, one-line text, limits.

One home for each, so that the request parser, the signature check and the
error messages read a header, cut a text and bound a read the same way.
"""

from __future__ import annotations

import re
from email.message import Message

# RFC 5322 section 3.6.4: msg-id = "<" id-left "@" id-right ">".
MESSAGE_ID = re.compile(r"<[^<>\s@]+@[^<>\s@]+>")
# C0 and C1 controls and the Unicode line and paragraph separators: a header
# value or a server reply must never start a new line in a log or a reply.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Some libraries str() a bytes reply: "b'[AUTHENTICATIONFAILED] ...'", alone or
# inside a longer text ("select failed: b'[NONEXISTENT] ...'").
_BYTES_REPR = re.compile(r"""^b(['"])(.*)\1$""", re.S)
_BYTES_REPR_INSIDE = re.compile(r"""(?<![\w'"])b(['"])(.*?)\1""", re.S)

# The most of a message's header block read or parsed (RFC 5322 sets no limit;
# real header blocks are a few KiB, hostile ones can be endless).
HEADER_BYTES_LIMIT = 64 * 1024
# What Gmail and Outlook accept in one message; the server's max_message_bytes
# default (config.DEFAULTS) is the same number.
PROVIDER_MAX_MESSAGE_BYTES = 25_000_000
SERVER_TEXT_CHARS = 300


def read_header(message: Message, name: str) -> str:
    """A header as text; one the parser cannot make sense of reads as its raw form."""
    try:
        value = message.get(name)
    except Exception:  # the header parser has had bugs on hostile input
        values = message.get_all(name, failobj=[""])
        value = values[0] if values else ""
    return "" if value is None else str(value)


def one_line(value: object, limit: int) -> str:
    """Printable text on one line: control characters become spaces, runs of space one."""
    text = _CONTROL.sub(" ", str(value or ""))
    return " ".join(text.split())[:limit]


def message_ids(value: object) -> list[str]:
    """Every <id@host> in a header value, in order."""
    return MESSAGE_ID.findall(str(value or ""))


def first_message_id(value: object) -> str:
    found = message_ids(value)
    return found[0] if found else ""


def server_text(value: object, limit: int = SERVER_TEXT_CHARS) -> str:
    """A mail server's reply (bytes, text or an exception) as one readable line, never b'...'."""
    if isinstance(value, BaseException):
        value = value.args[0] if value.args else str(value)
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "replace")
    else:
        text = str(value)
    match = _BYTES_REPR.match(text.strip())
    if match:
        text = match.group(2)
    text = _BYTES_REPR_INSIDE.sub(lambda inner: inner.group(2), text)
    return one_line(text, limit)
