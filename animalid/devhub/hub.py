"""The project's own local mail hub: real IMAP, POP3 and SMTP on one machine.

``python -m animalid.mailhub`` starts, on loopback by default:

* Dovecot (IMAP and POP3, each plain+STARTTLS and implicit TLS, and LMTP on
  a unix socket, RFC 2033), run as ``dovecot -F -c STATE/dovecot.conf`` from a
  configuration written here, never the system's;
* an SMTP front (aiosmtpd, RFC 5321) with three listeners that hand every
  message to Dovecot over LMTP and answer 250 only once Dovecot has stored it:

  - submission: STARTTLS (RFC 3207) required before AUTH (RFC 4954; PLAIN,
    RFC 4616, and LOGIN), AUTH required before MAIL, the envelope sender must
    be the authenticated account, and nothing is relayed off the hub's domain;
  - submissions: the same rules behind implicit TLS (RFC 8314);
  - an MX-style listener without AUTH that takes mail for the hub's own
    accounts from anybody, standing in for mail arriving from the internet.

  All three advertise SIZE (RFC 1870) and answer 552 above the limit. An LMTP
  4xx becomes 451, a 5xx becomes 550, and an unreachable Dovecot 451.

For fault-injection tests, ``MailHub.fail_smtp(code, for_seconds, senders)``
makes the SMTP front answer MAIL FROM with ``code`` (451 by default) for a
while, as a provider throttling an account would; it is off unless called.

Each service listens on its standard port plus ``--port-offset`` (default
1000): SMTP-MX 25->1025, submissions 465->1465, submission 587->1587,
POP3 110->1110, IMAP 143->1143, IMAPS 993->1993, POP3S 995->1995.

The state folder (``--state``, default ``.mailhub``) keeps everything:

* ``ca.pem`` -- the hub's own CA; the one file clients need to verify TLS;
* ``tls/`` -- the CA key and the server certificate and key;
* ``secrets/<local-part>`` -- one generated password per account (mode 0600,
  no trailing newline, so ``password_command = cat .mailhub/secrets/client1``
  works as is); ``python -m animalid.mailhub secret client1`` prints it too;
* ``mail/<address>/`` -- the Maildir of each account;
* ``hub.json`` -- domain, ports, CA file and accounts (no passwords);
* ``dovecot.conf``, ``users``, ``dovecot.log`` -- the Dovecot side.

Accounts are ``server@DOMAIN`` plus one per ``--client``. Accounts only ever
get added: a client named on an earlier start keeps its password and stays
active (delete its file under ``secrets/`` to drop it).

When started as root, mail is stored as ``nobody`` and Dovecot's own
processes run as its usual ``dovecot``/``dovenull`` users; as any other user
everything runs as that user.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import email.parser
import errno
import fcntl
import grp
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Iterable, Optional

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session

from animalid.errors import ExitStatus, PermanentError

log = logging.getLogger(__name__)

STANDARD_PORTS = {
    "smtp_mx": 25,
    "submissions": 465,
    "submission": 587,
    "pop3": 110,
    "imap": 143,
    "imaps": 993,
    "pop3s": 995,
}
DEFAULT_STATE_DIR = ".mailhub"
DEFAULT_PORT_OFFSET = 1000
DEFAULT_CLIENTS = ("client1", "client2")
DEFAULT_DOMAIN = "hub.test"
DEFAULT_MAX_MESSAGE_BYTES = 30 * 1024 * 1024
SERVER_ACCOUNT = "server"
INSTALL_HINT = (
    "apt-get install dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd"
)

# Dovecot's config syntax has no escaping we can rely on for these, and '%'
# would be expanded as a variable inside mail_location.
_UNSAFE_PATH_CHARS = re.compile(r"""[\s"'#%$<>{}:\\]""")
_LOCAL_PART = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,63}$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")

READY_TIMEOUT = 15.0
LMTP_TIMEOUT = 60.0
CERT_DAYS = 825
CA_DAYS = 3650


class HubError(PermanentError):
    """The hub cannot start (or answer); the message is one line for humans."""

    exit_status = ExitStatus.USAGE


class HubAlreadyRunning(HubError):
    """Another hub process already owns this state folder."""


# --------------------------------------------------------------------------
# Accounts and passwords


def _local_part(name: str) -> str:
    """``client1`` or ``client1@hub.test`` -> ``client1``, validated."""
    local = name.strip().lower().partition("@")[0]
    if not _LOCAL_PART.match(local):
        raise HubError(f"invalid account name {name!r} (use letters, digits, . _ + -)")
    return local


def _read_secret(state: Path, local: str) -> Optional[str]:
    try:
        return (state / "secrets" / local).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None


def _write_private(path: Path, data: bytes) -> None:
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


def _write_public(path: Path, text: str, mode: int = 0o644) -> None:
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


def _ensure_secret(state: Path, local: str) -> str:
    password = _read_secret(state, local)
    if password:
        return password
    password = secrets.token_urlsafe(24)  # URL-safe: never ':' (passwd-file)
    _write_private(state / "secrets" / local, password.encode("ascii"))
    return password


def _known_locals(state: Path) -> list[str]:
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


# --------------------------------------------------------------------------
# TLS: our own CA and a server certificate signed by it


def _tls_names(listen: str, hostname: Optional[str]) -> tuple[set[str], set[str]]:
    """(DNS names, IP addresses) the server certificate must cover."""
    dns, ips = {"localhost"}, {"127.0.0.1", "::1"}
    for name in (listen, hostname):
        if not name:
            continue
        try:
            ips.add(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.add(name.lower())
    return dns, ips


def _ensure_tls(state: Path, domain: str, listen: str, hostname: Optional[str]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ca_file, ca_key_file = state / "ca.pem", state / "tls" / "ca.key"
    if ca_file.exists() and ca_key_file.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_file.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), None)
    else:
        ca_cert, ca_key = _make_ca(domain)
        _write_private(ca_key_file, _key_pem(ca_key))
        _write_public(ca_file, ca_cert.public_bytes(serialization.Encoding.PEM).decode())
        log.info("created CA %s", ca_file)

    dns, ips = _tls_names(listen, hostname)
    cert_file, key_file = state / "tls" / "server.pem", state / "tls" / "server.key"
    if cert_file.exists() and key_file.exists():
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        if _cert_still_good(cert, ca_cert, dns, ips):
            return
    cert, key = _make_server_cert(ca_cert, ca_key, dns, ips)
    _write_private(key_file, _key_pem(key))
    _write_public(cert_file, cert.public_bytes(serialization.Encoding.PEM).decode())
    log.info("created server certificate for %s", ", ".join(sorted(dns) + sorted(ips)))


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_ca(domain: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "animalid mailhub"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"mailhub test CA for {domain} ({secrets.token_hex(4)})"),
    ])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_server_cert(ca_cert, ca_key, dns: set[str], ips: set[str]):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.DNSName(d) for d in sorted(dns)]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)]
    now = datetime.datetime.now(datetime.timezone.utc)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _cert_still_good(cert, ca_cert, dns: set[str], ips: set[str]) -> bool:
    """Reuse the certificate only if it still matches the CA, every name we
    listen on, and is not about to expire."""
    from cryptography import x509

    try:
        cert.verify_directly_issued_by(ca_cert)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except Exception:
        return False
    have_dns = {d.lower() for d in san.get_values_for_type(x509.DNSName)}
    have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    return dns <= have_dns and ips <= have_ips and cert.not_valid_after_utc > soon


def _client_context(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


def _server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


# --------------------------------------------------------------------------
# Who runs what


@dataclass(frozen=True)
class _Identity:
    """The users Dovecot runs as and stores mail as."""

    mail_uid: int
    mail_gid: int
    mail_user: str
    login_user: str  # Dovecot's untrusted login processes
    internal_user: str  # Dovecot's auth, stats, ... processes
    internal_group: str
    root: bool


def _identity() -> _Identity:
    if os.geteuid() != 0:
        # Dovecot can run entirely as one unprivileged user; it just cannot
        # switch users or chroot then.
        me = pwd.getpwuid(os.getuid())
        group = grp.getgrgid(os.getgid()).gr_name
        return _Identity(me.pw_uid, me.pw_gid, me.pw_name, me.pw_name, me.pw_name, group, False)
    # Root: mail must not be owned by root (Dovecot refuses) nor by the
    # dovecot user (it would give the auth process access to all mail).
    try:
        mail = pwd.getpwnam("nobody")
        internal = pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
    except KeyError as exc:
        raise HubError(f"missing system user {exc}; reinstall with: {INSTALL_HINT}") from None
    return _Identity(
        mail.pw_uid, mail.pw_gid, "nobody", "dovenull", "dovecot",
        grp.getgrgid(internal.pw_gid).gr_name, True,
    )


def _sbin_path() -> str:
    # /usr/sbin is often missing from an ordinary user's PATH.
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])


def _find_dovecot() -> str:
    found = shutil.which("dovecot", path=_sbin_path())
    if not found:
        raise HubError(f"dovecot not found; install it with: {INSTALL_HINT}")
    return found


def _connect_host(listen: str) -> str:
    """Where to reach our own listeners: a wildcard address is not one."""
    if listen in ("0.0.0.0", ""):
        return "127.0.0.1"
    if listen == "::":
        return "::1"
    return listen


# --------------------------------------------------------------------------
# Dovecot


def _dovecot_conf(
    *, state: Path, base_dir: str, listen: str, ports: dict[str, int], domain: str,
    ident: _Identity,
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


class _Dovecot:
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
        ctx = _client_context(self.ca_file)
        checks = [
            ("imap", None, b"* OK"), ("imaps", ctx, b"* OK"),
            ("pop3", None, b"+OK"), ("pop3s", ctx, b"+OK"), ("lmtp", None, b"220"),
        ]
        for name, tls, greeting in checks:
            while True:
                if self.proc.poll() is not None:
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


# --------------------------------------------------------------------------
# LMTP delivery


@dataclass
class _Delivery:
    reply: str  # the SMTP reply for the DATA command
    detail: str  # what to log


def _lmtp_deliver(socket_path: str, sender: str, rcpts: list[str], data: bytes) -> _Delivery:
    """Hand one message to Dovecot and wait until it is stored."""
    try:
        lmtp = smtplib.LMTP(socket_path, timeout=LMTP_TIMEOUT)
    except (OSError, smtplib.SMTPException) as exc:
        return _unavailable(exc)
    try:
        results = _lmtp_transaction(lmtp, sender, rcpts, data)
    except smtplib.SMTPDataError as exc:
        return _failed({r: (exc.smtp_code, exc.smtp_error) for r in rcpts})
    except (OSError, smtplib.SMTPException) as exc:
        return _unavailable(exc)
    finally:
        # The message is stored (or not) already; a failing QUIT changes
        # nothing and must not turn a delivery into a retry.
        with contextlib.suppress(OSError, smtplib.SMTPException):
            lmtp.quit()
        lmtp.close()
    if all(200 <= code < 300 for code, _ in results.values()):
        return _Delivery("250 2.0.0 OK: stored", "stored")
    return _failed(results)


def _lmtp_transaction(lmtp: smtplib.LMTP, sender: str, rcpts: list[str],
                      data: bytes) -> dict[str, tuple[int, bytes]]:
    """Per-recipient results. LMTP answers DATA once per accepted recipient
    (RFC 2033 section 4.2); smtplib reads only the first, so the rest are
    read here."""
    lmtp.ehlo()  # LHLO
    code, msg = lmtp.mail(sender)
    if code != 250:
        return {r: (code, msg) for r in rcpts}
    results: dict[str, tuple[int, bytes]] = {}
    accepted = []
    for rcpt in rcpts:
        code, msg = lmtp.rcpt(rcpt)
        if code in (250, 251):
            accepted.append(rcpt)
        else:
            results[rcpt] = (code, msg)
    if accepted:
        results[accepted[0]] = lmtp.data(data)
        for rcpt in accepted[1:]:
            results[rcpt] = lmtp.getreply()
    return results


def _unavailable(exc: Exception) -> _Delivery:
    return _Delivery("451 4.4.1 Mail store unavailable, try again later",
                     f"LMTP unavailable: {exc.__class__.__name__}: {exc}")


def _failed(results: dict[str, tuple[int, bytes]]) -> _Delivery:
    """One SMTP reply for several recipients: any temporary failure wins, so
    the client retries; a recipient already stored may then get a duplicate,
    which beats losing mail."""
    detail = "; ".join(
        f"{r}: {code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
        for r, (code, msg) in results.items()
    )
    if any(400 <= code < 500 for code, _ in results.values()):
        return _Delivery("451 4.3.0 Mail store failed temporarily, try again later", detail)
    return _Delivery("550 5.3.0 Mail store refused the message", detail)


# --------------------------------------------------------------------------
# SMTP front


class _Session(Session):
    # aiosmtpd 1.4 sets its own deprecated Session.login_data on every
    # successful AUTH and logs a warning each time; a plain attribute is quiet.
    login_data = None


class _HubSMTP(SMTP):
    """aiosmtpd's SMTP, aware of implicit TLS.

    aiosmtpd only knows TLS it negotiated itself by STARTTLS; on the
    submissions port the socket is TLS before SMTP begins (RFC 8314), so AUTH
    there is exactly as protected and must be allowed.
    """

    def __init__(self, *args, auth_enabled: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.implicit_tls = False
        if not auth_enabled:
            self._auth_methods.clear()

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._original_transport is None and self.transport is None
        super().connection_made(transport)
        if first and transport.get_extra_info("sslcontext") is not None:
            self.implicit_tls = True
            self._auth_require_tls = False
        self.event_handler.connections.add(self)

    def connection_lost(self, error: Optional[Exception]) -> None:
        self.event_handler.connections.discard(self)
        super().connection_lost(error)

    @property
    def uses_tls(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None


class _Handler:
    """Envelope policy and delivery for one listener."""

    def __init__(self, hub: "MailHub", listener: str, submission: bool):
        self.hub, self.listener, self.submission = hub, listener, submission
        self.connections: set[_HubSMTP] = set()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname  # the hook must do this itself
        if not self.submission:
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        injected = self.hub._injected_smtp_failure(address)
        if injected is not None:
            return injected
        if self.submission and address.lower() != session.auth_data:
            return f"553 5.7.1 Sender <{address}> is not owned by user {session.auth_data}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        domain = address.rpartition("@")[2].lower()
        if domain != self.hub.domain:
            return "550 5.7.1 Relaying denied"
        if address.lower() not in self.hub.accounts:
            return f"550 5.1.1 <{address}>: no such user here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        queue_id = secrets.token_hex(5).upper()
        data = self._received_header(server, session, envelope, queue_id) + envelope.content
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            None, _lmtp_deliver, self.hub.lmtp_socket, envelope.mail_from,
            list(envelope.rcpt_tos), data,
        )
        log.info(
            "%s id=%s message-id=%s from=<%s> to=%s size=%d result=%s (%s)",
            self.listener, queue_id, _message_id(envelope.content), envelope.mail_from,
            ",".join(f"<{r}>" for r in envelope.rcpt_tos), len(envelope.content),
            result.reply.split(" ", 1)[0], result.detail,
        )
        if result.reply.startswith("250"):
            return f"250 2.0.0 OK: stored as {queue_id}"
        return result.reply

    def _received_header(self, server: _HubSMTP, session, envelope, queue_id: str) -> bytes:
        # RFC 5321 section 4.4: every hop adds a trace line.
        proto = "ESMTP" if session.extended_smtp else "SMTP"
        proto += ("S" if server.uses_tls else "") + ("A" if session.authenticated else "")
        peer = session.peer[0] if session.peer else "unknown"
        for_ = f"\r\n\tfor <{envelope.rcpt_tos[0]}>" if len(envelope.rcpt_tos) == 1 else ""
        line = (
            f"Received: from {session.host_name or 'unknown'} ([{peer}])\r\n"
            f"\tby {server.hostname} (animalid mailhub) with {proto} id {queue_id}{for_};\r\n"
            f"\t{formatdate(localtime=True)}\r\n"
        )
        return line.encode("utf-8", errors="replace")


def _message_id(content: bytes) -> str:
    try:
        headers = email.parser.BytesHeaderParser().parsebytes(content)
        return str(headers.get("Message-ID", "-")).strip() or "-"
    except Exception:
        return "-"


class _SmtpFront:
    """The three SMTP listeners, on one asyncio loop in a thread of its own."""

    def __init__(self, hub: "MailHub"):
        self.hub = hub
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread: Optional[threading.Thread] = None
        self.servers: list[asyncio.AbstractServer] = []
        self.handlers: list[_Handler] = []

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        if self.running():
            return
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mailhub-smtp", daemon=True)
        self.thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(), self.loop).result()
        except BaseException:
            self.stop()
            raise
        log.info("SMTP front ready")

    def stop(self) -> None:
        if self.loop is None:
            return
        loop, thread = self.loop, self.thread
        if thread is not None and thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        if not loop.is_running():
            loop.close()
        self.loop = self.thread = None
        log.info("SMTP front stopped")

    async def _open(self) -> None:
        hub = self.hub
        tls = _server_context(hub.state / "tls" / "server.pem", hub.state / "tls" / "server.key")
        common = dict(
            data_size_limit=hub.max_message_bytes,
            hostname=hub.hostname or "localhost",
            authenticator=hub._authenticate,
        )
        listeners = [
            # name, ssl on the socket, SMTP options
            ("smtp_mx", None, dict(tls_context=tls, auth_required=False, auth_enabled=False)),
            ("submission", None, dict(tls_context=tls, require_starttls=True,
                                      auth_required=True, auth_require_tls=True)),
            ("submissions", tls, dict(auth_required=True, auth_require_tls=True)),
        ]
        for name, sock_tls, options in listeners:
            handler = _Handler(hub, name, submission=name != "smtp_mx")
            self.handlers.append(handler)

            def factory(handler=handler, options=options):
                return _HubSMTP(handler, loop=self.loop, **common, **options)

            try:
                server = await self.loop.create_server(
                    factory, host=hub.listen, port=hub.ports[name], ssl=sock_tls,
                    reuse_address=True,
                )
            except OSError as exc:
                raise HubError(_bind_error(name, hub.ports[name], exc)) from None
            self.servers.append(server)

    async def _close(self) -> None:
        for server in self.servers:
            server.close()
        # Closing a server leaves accepted connections open; a restart must
        # drop them like a real server restart would.
        for handler in self.handlers:
            for conn in list(handler.connections):
                if conn.transport is not None:
                    conn.transport.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self.servers, self.handlers = [], []
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.loop.shutdown_default_executor()


def start_on_free_offset(state_dir: str, tries: int = 5, **kwargs) -> "MailHub":
    """Start a private hub (tests, benchmarks) on a random port offset.

    The offset is far from the default one, so it never meets a hub the user
    runs; a port that happens to be taken means another try elsewhere.
    """
    for attempt in range(tries):
        hub = MailHub(state_dir, port_offset=random.randint(20000, 40000), **kwargs)
        try:
            return hub.start()
        except HubError as exc:
            if "already in use" not in str(exc) or attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _bind_error(name: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} ({name}) is already in use"
    if exc.errno == errno.EACCES:
        return f"port {port} ({name}): permission denied (ports below 1024 need root; use --port-offset)"
    return f"cannot listen on port {port} ({name}): {exc.strerror or exc}"


def _check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Name the busy port up front instead of letting Dovecot or asyncio
    fail halfway through the start."""
    for name, port in ports.items():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise HubError(_bind_error(name, port, exc)) from None


# --------------------------------------------------------------------------
# The hub


class MailHub:
    """Dovecot plus the SMTP front, started and stopped as one.

    >>> with MailHub(".mailhub") as hub:
    ...     hub.ports["imaps"], hub.ca_file, hub.password("client1")
    """

    def __init__(
        self,
        state_dir: "str | os.PathLike[str]" = DEFAULT_STATE_DIR,
        listen: str = "127.0.0.1",
        port_offset: int = DEFAULT_PORT_OFFSET,
        clients: Iterable[str] = DEFAULT_CLIENTS,
        domain: str = DEFAULT_DOMAIN,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        hostname: Optional[str] = None,
    ):
        self.state = Path(os.path.abspath(state_dir))
        self.listen = listen
        self.domain = domain.strip().lower()
        if not _DOMAIN.match(self.domain):
            raise HubError(f"invalid domain {domain!r}")
        if not 0 <= port_offset <= 65535 - max(STANDARD_PORTS.values()):
            raise HubError(f"port offset {port_offset} puts ports outside 1..65535")
        self.port_offset = port_offset
        self.ports = {name: port + port_offset for name, port in STANDARD_PORTS.items()}
        self.client_names = [_local_part(c) for c in clients]
        self.max_message_bytes = int(max_message_bytes)
        self.hostname = hostname
        self.ca_file = self.state / "ca.pem"
        self.accounts: dict[str, str] = {}  # address -> password
        self._lock_fd: Optional[int] = None
        self._dovecot: Optional[_Dovecot] = None
        self._smtp = _SmtpFront(self)
        # (reply code, monotonic deadline, envelope senders or None for all):
        # the test-only fault switch, see fail_smtp().
        self._smtp_fault: Optional[tuple[int, float, Optional[frozenset[str]]]] = None
        # Socket paths are limited to 108 bytes, so Dovecot's runtime folder
        # cannot live under an arbitrary state path.
        tag = hashlib.sha256(f"{self.state}\0{os.geteuid()}".encode()).hexdigest()[:8]
        self.base_dir = Path(f"/tmp/mh-{tag}")

    # -- public API ---------------------------------------------------------

    def address(self, name: str) -> str:
        """``client1`` -> ``client1@hub.test`` (a full address is kept)."""
        return f"{_local_part(name)}@{self.domain}"

    def password(self, address: str) -> str:
        addr = self.address(address)
        if addr in self.accounts:
            return self.accounts[addr]
        secret = _read_secret(self.state, _local_part(address))
        if secret is None:
            raise KeyError(f"no account {addr}")
        return secret

    @property
    def server(self) -> str:
        return self.address(SERVER_ACCOUNT)

    @property
    def clients(self) -> list[str]:
        return [a for a in sorted(self.accounts) if a != self.server]

    @property
    def lmtp_socket(self) -> str:
        return str(self.base_dir / "lmtp")

    def start(self) -> "MailHub":
        """Start everything; returns once every port answers."""
        if self._lock_fd is not None:
            return self  # already started: a second start must not stop it
        if _UNSAFE_PATH_CHARS.search(str(self.state)) or len(str(self.state)) > 200:
            raise HubError(f"state folder path {self.state} has characters (or length) "
                           "that Dovecot's config cannot take")
        try:
            self._lock_state()
            _check_ports_free(self.listen, self.ports)
            self._prepare_state()
            self.start_dovecot()
            self.start_smtp()
            self._write_hub_json()
        except BaseException:
            self.stop()
            raise
        log.info("mailhub ready on %s (state %s)", self.listen, self.state)
        return self

    def stop(self) -> None:
        """Stop everything; safe to call twice or after a failed start."""
        self.stop_smtp()
        self.stop_dovecot()
        if self._dovecot is not None:
            self._remove_base_dir()
            self._dovecot = None
        self._unlock_state()

    def __enter__(self) -> "MailHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start_dovecot(self) -> None:
        if self._dovecot is None:
            raise HubError("start() the hub first")
        self._dovecot.start()

    def stop_dovecot(self) -> None:
        if self._dovecot is not None:
            self._dovecot.stop()

    def restart_dovecot(self) -> None:
        self.stop_dovecot()
        self.start_dovecot()

    def start_smtp(self) -> None:
        self._smtp.start()

    def stop_smtp(self) -> None:
        self._smtp.stop()

    def restart_smtp(self) -> None:
        self.stop_smtp()
        self.start_smtp()

    def fail_smtp(self, code: int = 451, for_seconds: float = 10.0,
                  senders: Optional[Iterable[str]] = None) -> None:
        """Test-only fault switch: answer MAIL FROM with ``code`` for ``for_seconds``.

        Every listener answers ``code`` (4xx: try again later, 5xx: refused)
        to MAIL FROM of the given envelope ``senders`` (all when None) until
        the time is up; ``for_seconds=0`` ends it now. Nothing is stored
        while it lasts, so no mail is lost or duplicated by it.
        """
        if not 400 <= int(code) <= 599:
            raise ValueError("code must be a 4xx or 5xx SMTP reply code")
        if for_seconds <= 0:
            self._smtp_fault = None
            return
        wanted = frozenset(s.lower() for s in senders) if senders is not None else None
        self._smtp_fault = (int(code), time.monotonic() + for_seconds, wanted)
        log.warning("SMTP front: answering %d to MAIL FROM %s for %.1f s (fail_smtp)",
                    code, "of " + ", ".join(sorted(wanted)) if wanted else "of everyone", for_seconds)

    def _injected_smtp_failure(self, sender: str) -> Optional[str]:
        fault = self._smtp_fault
        if fault is None:
            return None
        code, deadline, senders = fault
        if time.monotonic() >= deadline:
            return None
        if senders is not None and sender.lower() not in senders:
            return None
        if code < 500:
            return f"{code} 4.3.2 Failure injected by MailHub.fail_smtp, try again later"
        return f"{code} 5.3.2 Failure injected by MailHub.fail_smtp"

    def dovecot_running(self) -> bool:
        return self._dovecot is not None and self._dovecot.running()

    def dovecot_pid(self) -> Optional[int]:
        return self._dovecot.proc.pid if self.dovecot_running() else None

    def info(self) -> dict:
        """What hub.json holds: everything a client needs except passwords."""
        return {
            "domain": self.domain,
            "listen": self.listen,
            "ports": dict(self.ports),
            "ca_file": str(self.ca_file),
            "accounts": sorted(self.accounts),
            "server": self.server,
            "clients": self.clients,
            "pid": os.getpid(),
        }

    def ready_line(self) -> str:
        ports = " ".join(f"{name}={port}" for name, port in self.ports.items())
        return f"mailhub ready: {ports} listen={self.listen} state={self.state} ca={self.ca_file}"

    # -- internals ----------------------------------------------------------

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", errors="replace").strip().lower()
        expected = self.accounts.get(login)
        given = auth_data.password
        if expected is not None and hmac.compare_digest(expected.encode(), given):
            log.info("AUTH %s ok for %s from %s", mechanism, login, session.peer)
            return AuthResult(success=True, auth_data=login)
        log.warning("AUTH %s failed for %r from %s", mechanism, login, session.peer)
        return AuthResult(success=False, handled=False)

    def _lock_state(self) -> None:
        if self._lock_fd is not None:
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
        self._lock_fd = fd

    def _unlock_state(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _prepare_state(self) -> None:
        ident = _identity()
        binary = _find_dovecot()
        try:
            self._make_dirs(ident)
            self._load_accounts()
            _ensure_tls(self.state, self.domain, self.listen, self.hostname)
            self._write_users(ident)
            conf = self.state / "dovecot.conf"
            _write_public(conf, _dovecot_conf(
                state=self.state, base_dir=str(self.base_dir), listen=self.listen,
                ports=self.ports, domain=self.domain, ident=ident,
            ), mode=0o600)
        except PermissionError as exc:
            raise HubError(f"state folder {self.state} is not writable: {exc}") from None
        self._check_base_dir()
        self._dovecot = _Dovecot(
            binary, conf, self.base_dir, self.state, _connect_host(self.listen),
            self.ports, self.ca_file,
        )

    def _make_dirs(self, ident: _Identity) -> None:
        for sub, mode in (("secrets", 0o700), ("tls", 0o700), ("dovecot-state", 0o750)):
            (self.state / sub).mkdir(mode=mode, exist_ok=True)
        for sub in ("mail", "home"):
            path = self.state / sub
            path.mkdir(mode=0o700, exist_ok=True)
            if ident.root:
                os.chown(path, ident.mail_uid, ident.mail_gid)
        if ident.root:
            # Dovecot's auth process (as 'dovecot') reads STATE/users and mail
            # processes (as 'nobody') write STATE/mail: both must get through
            # the state folder and every folder above it.
            os.chmod(self.state, os.stat(self.state).st_mode | 0o011)
            _check_traversable(self.state)

    def _load_accounts(self) -> None:
        locals_ = [SERVER_ACCOUNT, *self.client_names, *_known_locals(self.state)]
        self.accounts = {
            f"{local}@{self.domain}": _ensure_secret(self.state, local)
            for local in dict.fromkeys(locals_)
        }

    def _write_users(self, ident: _Identity) -> None:
        lines = [
            f"{addr}:{ssha512(pw)}:{ident.mail_uid}:{ident.mail_gid}::{self.state}/home/{addr}::\n"
            for addr, pw in sorted(self.accounts.items())
        ]
        path = self.state / "users"
        _write_private(path, "".join(lines).encode())
        if ident.root:
            # Read by Dovecot's auth process, which runs as 'dovecot'.
            os.chown(path, 0, grp.getgrnam(ident.internal_group).gr_gid)
            os.chmod(path, 0o640)

    def _remove_base_dir(self) -> None:
        """Dovecot leaves its sockets behind; without this every test run
        would leave a folder in /tmp."""
        with contextlib.suppress(OSError):
            if os.lstat(self.base_dir).st_uid == os.geteuid() and not self.base_dir.is_symlink():
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def _check_base_dir(self) -> None:
        """Refuse a runtime folder someone else planted in /tmp."""
        try:
            st = os.lstat(self.base_dir)
        except FileNotFoundError:
            return
        if not os.path.isdir(self.base_dir) or os.path.islink(self.base_dir) or st.st_uid != os.geteuid():
            raise HubError(f"{self.base_dir} exists and is not ours; remove it")

    def _write_hub_json(self) -> None:
        _write_public(self.state / "hub.json", json.dumps(self.info(), indent=2) + "\n")


def _check_traversable(path: Path) -> None:
    for folder in [path, *path.parents]:
        if not os.stat(folder).st_mode & 0o001:
            raise HubError(
                f"{folder} is not searchable by other users, so Dovecot's 'nobody' and "
                f"'dovecot' processes cannot reach {path}; use a --state under /tmp or chmod o+x {folder}"
            )


# --------------------------------------------------------------------------
# Command line


def hub_settings(config) -> dict:
    """MailHub keyword arguments from config.ini [hub], the one place the demo,
    the CLI and the client/server settings agree on (state_dir is relative to
    the config file, like every path there)."""
    section = config.section("hub")
    return {
        "state_dir": str(section.get_path("state_dir")),
        "listen": section.get("listen"),
        "port_offset": section.get_int("port_offset", minimum=0, maximum=64000),
        "clients": tuple(section.get_list("clients")),
        "domain": section.get("domain"),
    }


def _settings_for(args) -> dict:
    """[hub] from --config (default: config.ini when present), then the flags on top."""
    from animalid.config import DEFAULT_CONFIG, load_config

    settings = {"state_dir": DEFAULT_STATE_DIR, "listen": "127.0.0.1",
                "port_offset": DEFAULT_PORT_OFFSET, "clients": DEFAULT_CLIENTS,
                "domain": DEFAULT_DOMAIN}
    config_path = args.config or (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    if config_path is not None:
        config = load_config(config_path)
        if config.has_section("hub"):
            settings.update(hub_settings(config))
    flags = {"state_dir": args.state, "listen": getattr(args, "listen", None),
             "port_offset": getattr(args, "port_offset", None), "domain": getattr(args, "domain", None),
             "clients": tuple(args.client) if getattr(args, "client", None) else None}
    settings.update({key: value for key, value in flags.items() if value is not None})
    return settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m animalid.mailhub",
        description="Run the local mail hub (Dovecot IMAP/POP3 + SMTP) until SIGINT/SIGTERM.",
    )
    p.add_argument("--config", metavar="FILE",
                   help="settings file whose [hub] section gives the defaults below "
                        "(default: config.ini beside the programs)")
    p.add_argument("--state", help=f"state folder (default: [hub] state_dir, else {DEFAULT_STATE_DIR})")
    p.add_argument("--listen", help="address to listen on (default: [hub] listen, else 127.0.0.1)")
    p.add_argument("--port-offset", type=int,
                   help=f"added to each standard port (default: [hub] port_offset, else {DEFAULT_PORT_OFFSET})")
    p.add_argument("--client", action="append", metavar="NAME",
                   help="client account (repeatable; default: [hub] clients, else client1 and client2)")
    p.add_argument("--domain", help=f"mail domain (default: [hub] domain, else {DEFAULT_DOMAIN})")
    p.add_argument("--hostname", help="extra DNS name for the server certificate")
    p.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                   help="largest message accepted (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every SMTP connection too")
    sub = p.add_subparsers(dest="command", metavar="{secret}")
    s = sub.add_parser("secret", help="print an account's password")
    s.add_argument("name", help="local part (client1) or full address")
    # SUPPRESS: otherwise the subcommand's default would overwrite a --state
    # given before the subcommand name.
    s.add_argument("--state", default=argparse.SUPPRESS, help="state folder (default: as above)")
    return p


def _cmd_secret(args) -> int:
    state = Path(_settings_for(args)["state_dir"])
    password = _read_secret(state, _local_part(args.name))
    if password is None:
        raise HubError(f"no password for {args.name!r} in {state}/secrets (start the hub once first)")
    print(password)
    return 0


def _cmd_serve(args) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not args.verbose:
        logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd, per connection
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    # Installed before start(), so a signal during start still stops cleanly.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    hub = MailHub(**_settings_for(args), max_message_bytes=args.max_message_bytes,
                  hostname=args.hostname)
    hub.start()
    status = 0
    try:
        print(hub.ready_line(), flush=True)
        while not stop.wait(0.5):
            if not hub.dovecot_running():
                log.error("dovecot exited unexpectedly; see %s/dovecot.log", hub.state)
                status = 1
                break
    finally:
        hub.stop()
    log.info("mailhub stopped")
    return status


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "secret":
            return _cmd_secret(args)
        return _cmd_serve(args)
    except PermanentError as exc:  # HubError, or a bad --config / [hub] setting
        print(f"mailhub: error: {exc}", file=sys.stderr)
        return int(exc.exit_status)


if __name__ == "__main__":
    # Run the imported module, not this __main__ copy, so there is one
    # MailHub class and the logger is named animalid.mailhub.
    from animalid.devhub.hub import main as _main

    sys.exit(_main())
