"""The state folder's plumbing: atomic file writes and the one-hub-per-folder lock.

Keys, passwords and configuration are written through a temporary file and
``os.replace``, so a crash never leaves half a file behind; ``StateLock`` is
an ``flock`` on ``STATE/hub.lock`` (holding our pid) that keeps a second hub
off a folder one already runs on.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from animalid.pidlock import FileLock, LockHeld

from .errors import HubAlreadyRunning, HubError


def write_private(path: Path, data: bytes) -> None:
    """Write a file readable only by us, atomically, so a crash never leaves
    a half-written key or password behind."""
    _write_atomically(path, data, 0o600)


def write_public(path: Path, text: str, mode: int = 0o644) -> None:
    _write_atomically(path, text.encode("utf-8"), mode)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """A temporary file beside ``path`` with ``mode``, renamed over it when complete."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class StateLock:
    """One hub per state folder: an exclusive lock on ``STATE/hub.lock`` (animalid.pidlock)."""

    def __init__(self, state: Path):
        self.state = state
        self._lock = FileLock(state / "hub.lock")

    @property
    def held(self) -> bool:
        return self._lock.held

    def acquire(self) -> None:
        try:
            self._lock.acquire()
        except LockHeld as held:
            raise HubAlreadyRunning(
                f"another mailhub (pid {held.pid or '?'}) is already running on {self.state}"
            ) from None
        except OSError as exc:
            raise HubError(f"state folder {self.state} is not writable: {exc.strerror}") from None

    def release(self) -> None:
        self._lock.release()


def check_traversable(path: Path) -> None:
    """Other users (Dovecot's processes when we run as root) can reach ``path``."""
    for folder in [path, *path.parents]:
        if not os.stat(folder).st_mode & 0o001:
            raise HubError(
                f"{folder} is not searchable by other users, so Dovecot's 'nobody' and "
                f"'dovecot' processes cannot reach {path}; use a --state under /tmp or chmod o+x {folder}"
            )
