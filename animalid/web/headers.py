"""The security headers on every answer: a strict Content-Security-Policy and friends.

The page loads only its own files: no inline script or style, no other
origin, no frames; ``connect-src 'self'`` lets EventSource and fetch reach
this server alone. Every name, subject and file name from a stranger is put
into the page as text (``textContent``), and the policy stops any script
that escaping might miss.
"""

from __future__ import annotations

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)
