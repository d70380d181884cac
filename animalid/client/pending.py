"""The client's record of its requests still waiting for an answer, so late answers are not lost.

When the server is down, a request waits in its mailbox and is answered when
the server runs again, long after ``client.py`` gave up (exit status 3). The
client keeps the Message-ID (RFC 5322 section 3.6.4) of every request it
sent and has no answer for in ``[client] state_file`` (JSON, beside
config.ini by default). A later ``client.py`` run, or ``client.py
--collect``, looks in the INBOX for replies whose ``In-Reply-To`` names one
of them, shows them and removes them: only replies to this client's own
requests, so other mail is never touched (requester.py reads headers only).

The file holds Message-IDs, times and file names, never mail or secrets; it
is written whole to a temporary file and renamed (atomic on POSIX), under an
flock so that two runs at once do not lose each other's entries. Entries
older than ``MAX_AGE_S`` or beyond ``MAX_ENTRIES`` are dropped: their
answers, if they ever come, stay in the INBOX like any other mail.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from animalid.errors import ConfigError

MAX_AGE_S = 30 * 24 * 3600  # a month: far beyond any server restart
MAX_ENTRIES = 200
FORMAT_VERSION = 1


@dataclass
class PendingRequest:
    message_id: str
    address: str  # the client account that sent it: one file may serve several configs
    sent: float  # Unix time
    files: list[str]

    @property
    def sent_text(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(self.sent))


class PendingRecord:
    """The requests of one client account that still wait for an answer."""

    def __init__(self, path: Path, address: str):
        self.path = Path(path)
        self.address = address.lower()

    def waiting(self) -> list[PendingRequest]:
        """This account's requests without an answer, oldest first."""
        return [entry for entry in self._read() if entry.address == self.address]

    def add(self, message_id: str, files: list[str]) -> None:
        with self._changing() as entries:
            entries.append(PendingRequest(message_id, self.address, time.time(), list(files)))

    def remove(self, message_ids) -> None:
        gone = set(message_ids)
        if not gone:
            return
        with self._changing() as entries:
            entries[:] = [entry for entry in entries
                          if entry.message_id not in gone or entry.address != self.address]

    # -- the file -----------------------------------------------------------------

    def _read(self) -> list[PendingRequest]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise ConfigError(f"[client] state_file {self.path}: cannot read: "
                              f"{exc.strerror or exc}") from None
        try:
            data = json.loads(text)
            entries = [PendingRequest(str(item["message_id"]), str(item["address"]),
                                      float(item["sent"]), [str(name) for name in item["files"]])
                       for item in data.get("requests", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            # A damaged record only costs late answers; it must not stop the client.
            return []
        cutoff = time.time() - MAX_AGE_S
        return [entry for entry in entries if entry.sent >= cutoff][-MAX_ENTRIES:]

    @contextmanager
    def _changing(self) -> Iterator[list[PendingRequest]]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"[client] state_file {self.path}: cannot write: "
                              f"{exc.strerror or exc}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._read()
            yield entries
            body = {"version": FORMAT_VERSION,
                    "requests": [asdict(entry) for entry in entries[-MAX_ENTRIES:]]}
            temporary = self.path.with_name(self.path.name + ".tmp")
            temporary.write_text(json.dumps(body, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
            os.chmod(temporary, 0o600)
            os.replace(temporary, self.path)
        except OSError as exc:
            raise ConfigError(f"[client] state_file {self.path}: cannot write: "
                              f"{exc.strerror or exc}") from None
        finally:
            os.close(lock)
