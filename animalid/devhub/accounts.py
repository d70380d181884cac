"""Accounts and their passwords: one generated secret per local part.

Each account's password lives in ``STATE/secrets/<local-part>`` (mode 0600, no
trailing newline, so ``password_command = cat .mailhub/secrets/client1`` works
as is). Accounts only ever get added: a name given on an earlier start keeps
its password. Dovecot gets the passwords hashed (``ssha512``), never in clear.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
from pathlib import Path
from typing import Optional

from .errors import HubError
from .state import write_private

SERVER_ACCOUNT = "server"

_LOCAL_PART = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,63}$")


def local_part(name: str) -> str:
    """``client1`` or ``client1@hub.test`` -> ``client1``, validated."""
    local = name.strip().lower().partition("@")[0]
    if not _LOCAL_PART.match(local):
        raise HubError(f"invalid account name {name!r} (use letters, digits, . _ + -)")
    return local


def read_secret(state: Path, local: str) -> Optional[str]:
    try:
        return (state / "secrets" / local).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def ensure_secret(state: Path, local: str) -> str:
    password = read_secret(state, local)
    if password:
        return password
    password = secrets.token_urlsafe(24)  # URL-safe: never ':' (passwd-file)
    write_private(state / "secrets" / local, password.encode("ascii"))
    return password


def known_locals(state: Path) -> list[str]:
    folder = state / "secrets"
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if _LOCAL_PART.match(p.name))


def ssha512(password: str, salt: Optional[bytes] = None) -> str:
    """Dovecot's {SSHA512} scheme: base64(sha512(password + salt) + salt).

    Computed here rather than with ``doveadm pw -p`` so the password never
    appears on a command line where ``ps`` could show it.
    """
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.sha512(password.encode("utf-8") + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode("ascii")
