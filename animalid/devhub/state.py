"""The state folder's plumbing: atomic file writes and the one-hub-per-folder lock.

Keys, passwords and configuration are written through a temporary file and
``os.replace``, so a crash never leaves half a file behind; ``StateLock`` is
an ``flock`` on ``STATE/hub.lock`` (holding our pid) that keeps a second hub
off a folder one already runs on.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Optional

from .errors import HubAlreadyRunning, HubError


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable only by us, atomically, so a crash never leaves
    a half-written key or password behind."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_public(path: Path, text: str, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class StateLock:
    """One hub per state folder: an exclusive ``flock`` on ``STATE/hub.lock``."""

    def __init__(self, state: Path):
        self.state = state
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.state / "hub.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise HubError(f"state folder {self.state} is not writable: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise HubAlreadyRunning(
                f"another mailhub (pid {other}) is already running on {self.state}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None


def check_traversable(path: Path) -> None:
    """Other users (Dovecot's processes when we run as root) can reach ``path``."""
    for folder in [path, *path.parents]:
        if not os.stat(folder).st_mode & 0o001:
            raise HubError(
                f"{folder} is not searchable by other users, so Dovecot's 'nobody' and "
                f"'dovecot' processes cannot reach {path}; use a --state under /tmp or chmod o+x {folder}"
            )
