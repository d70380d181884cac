"""Dovecot: its configuration, its users file and its master process.

Dovecot serves IMAP and POP3 (each plain+STARTTLS and implicit TLS) and LMTP
on a unix socket (RFC 2033). It runs as ``dovecot -F -c STATE/dovecot.conf``
from a configuration written here, never the system's. When started as
root, mail is stored as ``nobody`` and Dovecot's own processes run as its
usual ``dovecot``/``dovenull`` users; as any other user everything runs as
that user. The hub counts Dovecot as started once every listener greets.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .accounts import ssha512
from .errors import INSTALL_HINT, HubError
from .state import write_private
from .tls import client_context

log = logging.getLogger(__name__)

READY_TIMEOUT = 15.0


# --------------------------------------------------------------------------
# Who runs what


@dataclass(frozen=True)
class Identity:
    """The users Dovecot runs as and stores mail as."""

    mail_uid: int
    mail_gid: int
    mail_user: str
    login_user: str  # Dovecot's untrusted login processes
    internal_user: str  # Dovecot's auth, stats, ... processes
    internal_group: str
    root: bool


def identity() -> Identity:
    if os.geteuid() != 0:
        # Dovecot can run entirely as one unprivileged user; it just cannot
        # switch users or chroot then.
        me = pwd.getpwuid(os.getuid())
        group = grp.getgrgid(os.getgid()).gr_name
        return Identity(me.pw_uid, me.pw_gid, me.pw_name, me.pw_name, me.pw_name, group, False)
    # Root: mail must not be owned by root (Dovecot refuses) nor by the
    # dovecot user (it would give the auth process access to all mail).
    try:
        mail = pwd.getpwnam("nobody")
        internal = pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
    except KeyError as exc:
        raise HubError(f"missing system user {exc}; reinstall with: {INSTALL_HINT}") from None
    return Identity(
        mail.pw_uid, mail.pw_gid, "nobody", "dovenull", "dovecot",
        grp.getgrgid(internal.pw_gid).gr_name, True,
    )


def _sbin_path() -> str:
    # /usr/sbin is often missing from an ordinary user's PATH.
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])


def find_dovecot() -> str:
    found = shutil.which("dovecot", path=_sbin_path())
    if not found:
        raise HubError(f"dovecot not found; install it with: {INSTALL_HINT}")
    return found


# --------------------------------------------------------------------------
# Configuration and users


def dovecot_conf(
    *, state: Path, base_dir: str, listen: str, ports: dict[str, int], domain: str,
    ident: Identity, imap_capability: str = "",
) -> str:
    chroot_off = "" if ident.root else (
        # chroot needs root; these services chroot by default.
        "service anvil {\n  chroot =\n}\n"
        "service imap-login {\n  chroot =\n}\n"
        "service pop3-login {\n  chroot =\n}\n"
    )
    return f"""\
# Written by animalid.mailhub on every start; edits here are lost.
base_dir = {base_dir}
state_dir = {state}/dovecot-state
instance_name = mailhub-{Path(base_dir).name}
protocols = imap pop3 lmtp
listen = {listen}
log_path = {state}/dovecot.log
ssl = yes
ssl_cert = <{state}/tls/server.pem
ssl_key = <{state}/tls/server.key
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
disable_plaintext_auth = yes
default_login_user = {ident.login_user}
default_internal_user = {ident.internal_user}
default_internal_group = {ident.internal_group}
first_valid_uid = {ident.mail_uid}
last_valid_uid = {ident.mail_uid}
first_valid_gid = {ident.mail_gid}
last_valid_gid = {ident.mail_gid}
mail_location = maildir:{state}/mail/%u
# IDLE is pushed through inotify; the interval is only the fallback.
mailbox_idle_check_interval = 1 secs
imap_idle_notify_interval = 30 secs
passdb {{
  driver = passwd-file
  args = username_format=%u {state}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {state}/users
}}
namespace inbox {{
  inbox = yes
  mailbox INBOX {{
    auto = subscribe
  }}
  mailbox Failed {{
    auto = subscribe
  }}
}}
protocol lmtp {{
  postmaster_address = postmaster@{domain}
}}
# Connections per user and address (Dovecot's default is 10). Several servers
# share server@ (each holds one IMAP connection; README "Many servers, one
# mailbox"), and tests and benchmarks reach every mailbox from 127.0.0.1.
protocol imap {{
  mail_max_userip_connections = 100
{f"  imap_capability = {imap_capability}" if imap_capability else ""}
}}
protocol pop3 {{
  mail_max_userip_connections = 100
}}
service imap-login {{
  inet_listener imap {{
    port = {ports["imap"]}
  }}
  inet_listener imaps {{
    port = {ports["imaps"]}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {ports["pop3"]}
  }}
  inet_listener pop3s {{
    port = {ports["pop3s"]}
    ssl = yes
  }}
}}
service lmtp {{
  # Only the SMTP front (running as us) may inject mail.
  unix_listener lmtp {{
    mode = 0600
  }}
}}
{chroot_off}"""


def write_users(state: Path, accounts: dict[str, str], ident: Identity) -> None:
    """STATE/users: Dovecot's passwd-file, with each password hashed."""
    lines = [
        f"{addr}:{ssha512(pw)}:{ident.mail_uid}:{ident.mail_gid}::{state}/home/{addr}::\n"
        for addr, pw in sorted(accounts.items())
    ]
    path = state / "users"
    write_private(path, "".join(lines).encode())
    if ident.root:
        # Read by Dovecot's auth process, which runs as 'dovecot'.
        os.chown(path, 0, grp.getgrnam(ident.internal_group).gr_gid)
        os.chmod(path, 0o640)


# --------------------------------------------------------------------------
# The master process


class Dovecot:
    """One ``dovecot -F`` master process and its readiness checks."""

    def __init__(self, binary: str, conf: Path, base_dir: Path, state: Path,
                 host: str, ports: dict[str, int], ca_file: Path):
        self.binary, self.conf, self.base_dir, self.state = binary, conf, base_dir, state
        self.host, self.ports, self.ca_file = host, ports, ca_file
        self.proc: Optional[subprocess.Popen] = None

    @property
    def lmtp_socket(self) -> str:
        return str(self.base_dir / "lmtp")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running():
            return
        self._kill_stale_master()
        stderr_path = self.state / "dovecot.stderr"
        with open(stderr_path, "wb") as stderr:
            # A session of its own: Ctrl-C in the terminal goes to the whole
            # foreground process group, and Dovecot must be stopped by us,
            # in order, not race us to the exit.
            self.proc = subprocess.Popen(
                _with_parent_death_signal([self.binary, "-F", "-c", str(self.conf)]),
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                start_new_session=True, close_fds=True,
            )
        try:
            self._wait_ready(time.monotonic() + READY_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        log.info("dovecot ready (pid %d)", self.proc.pid)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        children = _child_pids(proc.pid)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("dovecot did not stop in 10 s; killing it")
            proc.kill()
            proc.wait()
        # The master can exit a moment before its last children do.
        deadline = time.monotonic() + 3
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.02)
        log.info("dovecot stopped")

    def _kill_stale_master(self) -> None:
        """A hub killed with SIGKILL leaves its Dovecot running (it is in its
        own session); stop it if, and only if, it runs our config file."""
        try:
            pid = int((self.base_dir / "master.pid").read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return
        if str(self.conf).encode() not in cmdline:
            return
        log.warning("stopping dovecot left over from an earlier run (pid %d)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _wait_ready(self, deadline: float) -> None:
        """Ready means every listener greets, not just accepts: Dovecot binds
        its sockets before its login processes can answer."""
        ctx = client_context(self.ca_file)
        checks = [
            ("imap", None, b"* OK"), ("imaps", ctx, b"* OK"),
            ("pop3", None, b"+OK"), ("pop3s", ctx, b"+OK"), ("lmtp", None, b"220"),
        ]
        for name, tls, greeting in checks:
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    raise HubError(self._failure_text())
                try:
                    if self._greets(name, tls, greeting):
                        break
                except ssl.SSLError as exc:
                    raise HubError(f"dovecot {name}: TLS check failed: {exc}") from None
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise HubError(f"dovecot {name} not ready after {READY_TIMEOUT:.0f} s; "
                                   f"see {self.state}/dovecot.log")
                time.sleep(0.05)

    def _greets(self, name: str, tls: Optional[ssl.SSLContext], greeting: bytes) -> bool:
        if name == "lmtp":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(2)
            sock.connect(self.lmtp_socket)
        else:
            sock = socket.create_connection((self.host, self.ports[name]), timeout=2)
        with contextlib.closing(sock):
            if tls is not None:
                sock = tls.wrap_socket(sock, server_hostname=self.host)
            return sock.recv(200).startswith(greeting)

    def _failure_text(self) -> str:
        text = ""
        for name in ("dovecot.stderr", "dovecot.log"):
            with contextlib.suppress(OSError):
                lines = (self.state / name).read_text(errors="replace").strip().splitlines()
                fatal = [ln for ln in lines if "Fatal" in ln or "Error" in ln]
                if fatal or lines:
                    text = (fatal or lines)[-1]
                    break
        hint = f" (is everything installed? {INSTALL_HINT})" if re.search(
            r"Unknown protocol|not found|No such file", text) else ""
        return f"dovecot failed to start: {text or 'no output'}{hint}"


def _with_parent_death_signal(cmd: list[str]) -> list[str]:
    """Have the kernel send Dovecot SIGTERM if the hub dies without stopping
    it (SIGKILL, crash); otherwise it would outlive us in its own session.

    Only from the main thread: the signal fires when the *thread* that
    started the child exits, and a helper thread may well end before the
    hub does. setpriv (util-linux) does it without a preexec_fn, which is
    unsafe once the SMTP thread runs.
    """
    setpriv = shutil.which("setpriv", path=_sbin_path())
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return cmd
    return [setpriv, "--pdeathsig", "TERM", *cmd]


def _child_pids(parent: int) -> list[int]:
    """Children of a process, from /proc (Linux; elsewhere: none known)."""
    kids = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat_line = Path(entry.path, "stat").read_text()
                    if int(stat_line.rsplit(")", 1)[1].split()[1]) == parent:
                        kids.append(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (dead, merely not yet reaped
    by init, which can take a second or two in containers)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
