"""A lock file held with flock(2) that names the process holding it.

The mail hub holds one per state folder, and the server one per mailbox
(exclusive), or a shared one among workers that claim requests. The kernel
drops the lock when the process dies, even by SIGKILL, so a stale lock file
never blocks a restart; the pid inside only makes the refusal say who holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LockHeld(Exception):
    """Another process holds the lock; ``pid`` is what it wrote ("" when shared)."""

    def __init__(self, pid: str):
        super().__init__(pid)
        self.pid = pid


class FileLock:
    """``acquire()`` takes the lock without waiting (LockHeld if taken); ``release()`` drops it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, shared: bool = False) -> None:
        """Take the lock; an exclusive holder writes its pid into the file."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            raise LockHeld(holder) from None
        if not shared:  # shared holders are many: none of them names itself
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
