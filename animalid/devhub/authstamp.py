"""The hub's Authentication-Results header (RFC 8601), written as a provider writes it.

A provider tells its users what it knows about a message's sender in an
``Authentication-Results`` header carrying its own name (the authserv-id),
and removes any such header that arrived with the mail claiming that name
(RFC 8601 section 5), so only its own can be believed. The hub does the same,
so a server with ``[server] require_authentication = yes`` can be tested
against it exactly as against Gmail:

* mail submitted with AUTH (ports 587/465): ``auth=pass smtp.auth=<login>``
  (RFC 8601 section 2.7.4);
* mail on the MX port (nobody authenticated) whose From is in the hub's own
  domain: ``dmarc=fail`` for that domain -- the hub's accounts always submit
  with AUTH, so such mail is forged, as DMARC would find;
* other mail on the MX port: ``none`` (the hub checks no other domain).

Incoming Authentication-Results headers are removed when they mention the
hub's authserv-id anywhere (not only as their first word): stricter than the
RFC, so no reading of a crafted header can make it look like the hub's.
"""

from __future__ import annotations

import re
from email.utils import getaddresses

HEADER = b"Authentication-Results"
_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")


def stamp(content: bytes, authserv_id: str, domain: str, login: str | None) -> bytes:
    """``content`` with incoming headers claiming ``authserv_id`` removed and the hub's
    own Authentication-Results header on top."""
    head, separator, body = _split(content)
    fields = _fields(head)
    kept = [field for field in fields if not _claims(field, authserv_id)]
    own = _own_header(authserv_id, domain, login, _from_domains(kept))
    return own + b"".join(kept) + separator + body


def _own_header(authserv_id: str, domain: str, login: str | None, from_domains: list[str]) -> bytes:
    if login:
        value = f"{authserv_id}; auth=pass smtp.auth={login}"
    elif domain.lower() in from_domains:
        value = (f"{authserv_id}; auth=none (no AUTH on the MX port); "
                 f"dmarc=fail (not submitted by the account's owner) header.from={domain.lower()}")
    else:
        value = f"{authserv_id}; none"
    return b"Authentication-Results: " + value.encode("utf-8", "replace") + b"\r\n"


def _split(content: bytes) -> tuple[bytes, bytes, bytes]:
    """Header block (with its line ends), the empty line, the body."""
    if content.startswith((b"\r\n", b"\n")):
        blank = b"\r\n" if content.startswith(b"\r\n") else b"\n"
        return b"", blank, content[len(blank):]
    match = re.search(rb"\r?\n\r?\n", content)
    if match is None:
        return content, b"", b""
    line_end = content[match.start():match.end()]
    first = b"\r\n" if line_end.startswith(b"\r\n") else b"\n"
    return content[:match.start()] + first, line_end[len(first):], content[match.end():]


def _fields(head: bytes) -> list[bytes]:
    """Header fields with their continuation lines (RFC 5322 section 2.2.3 folding)."""
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if fields and line[:1] in (b" ", b"\t"):
            fields[-1] += line
        else:
            fields.append(line)
    return fields


def _claims(field: bytes, authserv_id: str) -> bool:
    match = _FIELD_NAME.match(field)
    if match is None or match.group(1).lower() != HEADER.lower():
        return False
    return authserv_id.lower().encode() in field.lower()


def _from_domains(fields: list[bytes]) -> list[str]:
    values = [field.split(b":", 1)[1].decode("utf-8", "replace") for field in fields
              if (match := _FIELD_NAME.match(field)) and match.group(1).lower() in (b"from", b"sender")]
    domains = []
    for _, address in getaddresses(values):
        if "@" in address:
            domains.append(address.rpartition("@")[2].strip().strip(">").lower())
    # A hub address hidden from getaddresses (odd quoting) must still count as the hub's.
    for value in values:
        domains += [found.lower() for found in re.findall(r"@([A-Za-z0-9.-]+)", value)]
    return domains
