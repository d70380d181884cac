"""Ports and addresses: the standard port of each service, moved by the port offset.

Each service listens on its standard port plus the offset (default 1000):
SMTP-MX 25->1025, submissions 465->1465, submission 587->1587, POP3
110->1110, IMAP 143->1143, IMAPS 993->1993, POP3S 995->1995. A busy or
forbidden port is named up front, before anything has started.
"""

from __future__ import annotations

import errno
import socket

from .errors import HubError

STANDARD_PORTS = {
    "smtp_mx": 25,
    "submissions": 465,
    "submission": 587,
    "pop3": 110,
    "imap": 143,
    "imaps": 993,
    "pop3s": 995,
}


def connect_host(listen: str) -> str:
    """Where to reach our own listeners: a wildcard address is not one."""
    if listen in ("0.0.0.0", ""):
        return "127.0.0.1"
    if listen == "::":
        return "::1"
    return listen


def bind_error(name: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} ({name}) is already in use"
    if exc.errno == errno.EACCES:
        return f"port {port} ({name}): permission denied (ports below 1024 need root; use --port-offset)"
    return f"cannot listen on port {port} ({name}): {exc.strerror or exc}"


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Name the busy port up front instead of letting Dovecot or asyncio
    fail halfway through the start."""
    for name, port in ports.items():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise HubError(bind_error(name, port, exc)) from None
