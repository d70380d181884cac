"""A real, private PostgreSQL server in a temporary folder, for tests and benchmarks.

It uses Debian's ``postgresql`` package (``initdb`` and ``pg_ctl`` from
/usr/lib/postgresql/<version>/bin): ``initdb`` with SCRAM-SHA-256 password
authentication and a generated password, then ``pg_ctl start`` listening on
127.0.0.1 at a free port, with its unix socket in the same short folder.
PostgreSQL refuses to run as root, so as root it runs as ``nobody``.

``TempPostgres().start()`` gives ``url`` (``postgresql://animalid@127.0.0.1:PORT/animalid``,
no password in it) and ``password_file``, whose ``cat`` serves as
``ledger_password_command``; ``stop()`` stops it and removes the folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = "apt-get install postgresql (Debian's package; make install does it)"
USER = "animalid"
DATABASE = "animalid"


def find_bin(name: str) -> str:
    """``initdb`` / ``pg_ctl``: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0)
    if not candidates:
        raise RuntimeError(f"PostgreSQL's {name} not found; install it with: {INSTALL_HINT}")
    return candidates[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TempPostgres:
    def __init__(self, settings: dict[str, str] | None = None):
        # Short: the socket path must stay under 108 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="pg", dir="/tmp"))
        self.data = self.base / "data"
        self.password_file = self.base / "password"
        self.log_file = self.base / "postgres.log"
        self.settings = settings or {}
        self.port = 0
        self._as = self._run_as()

    @staticmethod
    def _run_as() -> dict:
        if os.geteuid() != 0:
            return {}
        nobody = pwd.getpwnam("nobody")
        return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}

    @property
    def url(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def _run(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                                cwd=self.base, **self._as)
        if result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): "
                               f"{(result.stderr or result.stdout).strip()[-2000:]}")

    def start(self) -> "TempPostgres":
        self.password_file.write_text(secrets.token_urlsafe(24))
        if self._as:
            for path in (self.base, self.password_file):
                os.chown(path, self._as["user"], self._as["group"])
        os.chmod(self.password_file, 0o600)
        self._run(find_bin("initdb"), "-D", str(self.data), "-U", USER, "-A", "scram-sha-256",
                  f"--pwfile={self.password_file}", "-E", "UTF8", "--locale=C.UTF-8")
        options = {"listen_addresses": "127.0.0.1", "unix_socket_directories": str(self.base),
                   "max_connections": "100", **self.settings}
        for attempt in range(5):
            self.port = _free_port()
            flags = " ".join(f"-c {key}={value}" for key, value in options.items())
            try:
                self._run(find_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
                          "-w", "-t", "60", "-o", f"-p {self.port} {flags}", "start")
                break
            except RuntimeError:
                if attempt == 4:
                    raise RuntimeError(f"PostgreSQL did not start: {self.log_tail()}") from None
        self._create_database()
        return self

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=USER, dbname="postgres",
                             password=self.password(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.data.exists():
            try:
                self._run(find_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass  # not running
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "TempPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
