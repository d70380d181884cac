"""Who may see the page: loopback by default, a token everywhere else.

With no token the server binds loopback only, and still checks the Host
header, so that a web page the operator visits cannot read it through DNS
rebinding (a name of the attacker's that resolves to 127.0.0.1). With a
token, a request carries it as ``Authorization: Bearer <token>`` (Prometheus's
``authorization`` setting) or in the cookie that ``/?token=...`` sets once
for a browser; comparisons take constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hmac
import ipaddress
from http.cookies import CookieError, SimpleCookie
from typing import Mapping

COOKIE = "animalid_token"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, no port) is this machine's loopback."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str:
    """The host part of a Host header: ``[::1]:8470`` -> ``::1``; ``a:80`` -> ``a``."""
    header = header.strip()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def bearer(authorization: str) -> str:
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def cookie_token(cookie_header: str) -> str:
    try:
        cookie = SimpleCookie(cookie_header)
    except CookieError:
        return ""
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel else ""


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison; an empty token never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


class Access:
    """The rule for one server: ``token`` "" means loopback-only, Host checked."""

    def __init__(self, token: str = ""):
        self._token = token

    @property
    def needs_token(self) -> bool:
        return bool(self._token)

    def allows(self, headers: Mapping[str, str]) -> bool:
        """Whether a request with these headers (a Message / mapping) may read the page."""
        if not self._token:
            return is_loopback_host(host_of(headers.get("Host", "") or ""))
        given = bearer(headers.get("Authorization", "") or "") or cookie_token(headers.get("Cookie", "") or "")
        return token_matches(given, self._token)

    def accepts(self, token: str) -> bool:
        """Whether ``token`` (from ``/?token=``) is the right one."""
        return bool(self._token) and token_matches(token, self._token)

    def set_cookie(self, secure: bool = False) -> str:
        """The Set-Cookie value that lets a browser in (after ``accepts``)."""
        flags = "; Secure" if secure else ""
        return f"{COOKIE}={self._token}; Path=/; HttpOnly; SameSite=Strict{flags}"
