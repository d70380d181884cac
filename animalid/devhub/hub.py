"""MailHub: Dovecot plus the SMTP front, started and stopped as one.

``MailHub.start()`` locks the state folder, checks every port is free,
prepares accounts, TLS and Dovecot's configuration in the state folder,
starts Dovecot and the SMTP front and writes ``STATE/hub.json`` (domain,
ports, CA file and accounts; no passwords); it returns once every port
answers. ``hub_settings`` turns config.ini ``[hub]`` into MailHub's keyword
arguments; ``start_on_free_offset`` starts a private hub for tests and
benchmarks. Test hooks stop, start and restart either half, and
``fail_smtp`` injects SMTP failures (``faults.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Iterable, Optional

from animalid.config import DEFAULTS

from .accounts import SERVER_ACCOUNT, ensure_secret, known_locals, local_part, read_secret
from .dovecot import Dovecot, Identity, dovecot_conf, find_dovecot, identity, write_users
from .errors import HubError
from .ports import STANDARD_PORTS, check_ports_free, connect_host
from .smtp_front import SmtpFront
from .state import StateLock, check_traversable, write_public
from .tls import ensure_tls

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 30 * 1024 * 1024
# MailHub's other defaults are config.ini [hub]'s, from the one table of defaults.
_HUB_DEFAULTS = DEFAULTS["hub"]
_DEFAULT_CLIENTS = tuple(name.strip() for name in _HUB_DEFAULTS["clients"].split(","))

# Dovecot's config syntax has no escaping we can rely on for these, and '%'
# would be expanded as a variable inside mail_location.
_UNSAFE_PATH_CHARS = re.compile(r"""[\s"'#%$<>{}:\\]""")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


class MailHub:
    """Dovecot plus the SMTP front, started and stopped as one.

    >>> with MailHub(".mailhub") as hub:
    ...     hub.ports["imaps"], hub.ca_file, hub.password("client1")
    """

    def __init__(
        self,
        state_dir: "str | os.PathLike[str]" = _HUB_DEFAULTS["state_dir"],
        listen: str = _HUB_DEFAULTS["listen"],
        port_offset: int = int(_HUB_DEFAULTS["port_offset"]),
        clients: Iterable[str] = _DEFAULT_CLIENTS,
        domain: str = _HUB_DEFAULTS["domain"],
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        hostname: Optional[str] = None,
        imap_capability: str = "",
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
        self.client_names = [local_part(c) for c in clients]
        self.max_message_bytes = int(max_message_bytes)
        self.hostname = hostname
        # Test-only: the IMAP CAPABILITY Dovecot announces after login, to play a server
        # without an extension (tests/e2e/test_hardening.py: one without UIDPLUS).
        self.imap_capability = imap_capability
        self.ca_file = self.state / "ca.pem"
        self.accounts: dict[str, str] = {}  # address -> password
        self._lock = StateLock(self.state)
        self._dovecot: Optional[Dovecot] = None
        self._smtp = SmtpFront(self)
        # Socket paths are limited to 108 bytes, so Dovecot's runtime folder
        # cannot live under an arbitrary state path.
        tag = hashlib.sha256(f"{self.state}\0{os.geteuid()}".encode()).hexdigest()[:8]
        self.base_dir = Path(f"/tmp/mh-{tag}")

    # -- public API ---------------------------------------------------------

    def address(self, name: str) -> str:
        """``client1`` -> ``client1@hub.test`` (a full address is kept)."""
        return f"{local_part(name)}@{self.domain}"

    def password(self, address: str) -> str:
        addr = self.address(address)
        if addr in self.accounts:
            return self.accounts[addr]
        secret = read_secret(self.state, local_part(address))
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
        if self._lock.held:
            return self  # already started: a second start must not stop it
        if _UNSAFE_PATH_CHARS.search(str(self.state)) or len(str(self.state)) > 200:
            raise HubError(f"state folder path {self.state} has characters (or length) "
                           "that Dovecot's config cannot take")
        try:
            self._lock.acquire()
            check_ports_free(self.listen, self.ports)
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
        self._lock.release()

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
        self._smtp.faults.fail(code, for_seconds, senders)

    def fail_recipients(self, code: int = 451, for_seconds: float = 10.0,
                        recipients: Optional[Iterable[str]] = None) -> None:
        """Test-only fault switch: answer RCPT TO of ``recipients`` (all when None) with
        ``code`` for ``for_seconds``, as a recipient's full or greylisting mailbox would;
        ``for_seconds=0`` ends it now."""
        self._smtp.faults.fail_recipients(code, for_seconds, recipients)

    @property
    def authserv_id(self) -> str:
        """The name in the hub's Authentication-Results headers (RFC 8601): its domain."""
        return self.domain

    def dovecot_running(self) -> bool:
        return self._dovecot is not None and self._dovecot.running()

    def dovecot_pid(self) -> Optional[int]:
        if not self.dovecot_running() or self._dovecot is None or self._dovecot.proc is None:
            return None
        return int(self._dovecot.proc.pid)

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

    def _prepare_state(self) -> None:
        ident = identity()
        binary = find_dovecot()
        try:
            self._make_dirs(ident)
            self._load_accounts()
            ensure_tls(self.state, self.domain, self.listen, self.hostname)
            write_users(self.state, self.accounts, ident)
            conf = self.state / "dovecot.conf"
            write_public(conf, dovecot_conf(
                state=self.state, base_dir=str(self.base_dir), listen=self.listen,
                ports=self.ports, domain=self.domain, ident=ident,
                imap_capability=self.imap_capability,
            ), mode=0o600)
        except PermissionError as exc:
            raise HubError(f"state folder {self.state} is not writable: {exc}") from None
        self._check_base_dir()
        self._dovecot = Dovecot(
            binary, conf, self.base_dir, self.state, connect_host(self.listen),
            self.ports, self.ca_file,
        )

    def _make_dirs(self, ident: Identity) -> None:
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
            check_traversable(self.state)

    def _load_accounts(self) -> None:
        locals_ = [SERVER_ACCOUNT, *self.client_names, *known_locals(self.state)]
        self.accounts = {
            f"{local}@{self.domain}": ensure_secret(self.state, local)
            for local in dict.fromkeys(locals_)
        }

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
        write_public(self.state / "hub.json", json.dumps(self.info(), indent=2) + "\n")


def start_on_free_offset(state_dir: str, tries: int = 5, **kwargs) -> MailHub:
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
