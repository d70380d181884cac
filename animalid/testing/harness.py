"""What the end-to-end tests and the benchmarks share: configs for a running hub, the
server in a thread or as a real process, and reading mailboxes and the server's ledger.

Development tooling, like ``animalid.devhub``: no runtime module imports it (pyproject.toml's
import contracts say so). Nothing here mocks a mail protocol or the model: the hub is
Dovecot plus the SMTP front (animalid.devhub), the server is animalid.server.service.Server
(in a thread, with the session's classifier) or server.py (a process of its own, so it
can be killed with SIGKILL and its memory measured), and mailboxes are read over IMAP.
"""

from __future__ import annotations

import configparser
import logging
import os
import random
import re
import signal
import smtplib
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.mail.headers import message_ids
from animalid.mail.mailbox import MailRef
from animalid.mail.messages import build_request, parse_bytes
from animalid.server.ledger import FINAL_STATES, open_ledger
from animalid.server.service import serving_in_background

# The repository: the package is installed editable from it (make install).
ROOT = Path(__file__).resolve().parents[2]
PHOTOS = ROOT / "tests" / "photos"
CLIENTS = ("client1", "client2", "client3", "client4")
FAMILY = {"tiger.png": "Felidae", "dog.png": "Canidae", "bison.png": "Bovidae"}


# -- helpers ------------------------------------------------------------------

def photo(name: str) -> bytes:
    return (PHOTOS / name).read_bytes()


def make_config(hub, folder: Path, client: str = "client1", receive: str = "pop3",
                server_receive: str = "pop3", client_password: str | None = None,
                security_settings: dict | None = None, name: str | None = None,
                classifier_settings: dict | None = None, web_settings: dict | None = None,
                **server_settings) -> Path:
    """A config.ini for this hub: the repository's file with ports, secrets and paths filled in.

    ``security_settings`` fills in [security] (protection.py), ``classifier_settings``
    [classifier], ``web_settings`` [web] (the operations page); ``name`` picks the file name.
    """
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read(ROOT / "config.ini")
    parser["hub"].update(domain=hub.domain, clients=", ".join(CLIENTS), state_dir=str(hub.state))
    for protocol, port, security in (("smtp", "submission", "starttls"), ("imap", "imaps", "tls"),
                                     ("pop3", "pop3s", "tls")):
        parser[protocol].update(host="127.0.0.1", port=str(hub.ports[port]), security=security,
                                ca_file=str(hub.ca_file), timeout="10")
    secrets = Path(hub.state) / "secrets"
    parser["client"].update(
        address=f"{client}@{hub.domain}", username=f"{client}@{hub.domain}",
        password_env="", server_address=hub.server, receive=receive, poll_interval="0.1",
        password_command=(f"echo {client_password}" if client_password
                          else f"cat {secrets / client}"))
    parser["server"].update(
        address=hub.server, username=hub.server, password_env="",
        password_command=f"cat {secrets / 'server'}", receive=server_receive, poll_interval="0.1",
        state_file=str(folder / "server-state.sqlite"))
    parser["server"].update({key: str(value) for key, value in server_settings.items()})
    for key in ("model", "knowledge_base"):
        parser["classifier"][key] = str((ROOT / parser["classifier"][key]).resolve())
    if security_settings:
        parser["security"].update({key: str(value) for key, value in security_settings.items()})
    if classifier_settings:
        parser["classifier"].update({key: str(value) for key, value in classifier_settings.items()})
    if web_settings:
        parser["web"].update({key: str(value) for key, value in web_settings.items()})
    path = folder / (name or f"config-{client}-{receive}.ini")
    with open(path, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return path


@contextmanager
def running_server(config_path: Path, classifier, receive: str | None = None):
    """Server.run() in a thread; stopped and checked for errors at the end."""
    server = edge.server(load_config(config_path), classifier=classifier, receive=receive).open()
    with serving_in_background(server):
        yield server


def mailbox_messages(config_path: Path, role: str) -> list[bytes]:
    """Every message in a role's INBOX (IMAP, headers and body, leaving them there)."""
    with edge.mailbox(load_config(config_path), role, "imap") as box:
        refs = box.list_messages()
        return [data for data in box.fetch(refs, 50_000_000).values() if isinstance(data, bytes)]


def empty_mailbox(config_path: Path, role: str, folder: str | None = None) -> None:
    """Delete every message in a role's INBOX (or ``folder``, when it exists)."""
    with edge.mailbox(load_config(config_path), role, "imap") as box:
        if folder is None:
            box.delete(box.list_messages())
            return
        _, uids = box.list_folder(folder, create=False)
        box.delete([MailRef(key=f"{folder}:{uid}", handle=uid, folder=folder) for uid in uids])


def folder_count(config_path: Path, role: str, folder: str) -> int:
    """How many messages a role's ``folder`` holds (0 when it does not exist)."""
    with edge.mailbox(load_config(config_path), role, "imap") as box:
        return len(box.list_folder(folder, create=False)[1])


def wait_for(condition, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def ledger_state(config_path: Path, message_id: str) -> str | None:
    config = load_config(config_path)
    state_file = edge.ledger_settings(config).state_file
    if not config.section("server").has("ledger") and not state_file.exists():
        return None
    with open_ledger(edge.ledger_settings(config)) as ledger:
        record = ledger.final_by_message_id(message_id)
        return record.state if record else None


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def drop_connections(port: int) -> int:
    """Kill the hub's processes serving established connections on ``port``; how many."""
    import psutil

    pids = {conn.pid for conn in psutil.net_connections(kind="tcp")
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_ESTABLISHED
            and conn.pid and conn.pid != os.getpid()}
    for pid in pids:
        psutil.Process(pid).kill()
    return len(pids)


def send_raw(hub, config_path: Path, message: EmailMessage, sender: str) -> None:
    """Submit a hand-made message as ``sender`` (a hub account) over STARTTLS."""
    local = sender.partition("@")[0]
    password = (Path(hub.state) / "secrets" / local).read_text()
    with smtplib.SMTP("127.0.0.1", hub.ports["submission"], timeout=10) as smtp:
        smtp.starttls(context=ssl.create_default_context(cafile=str(hub.ca_file)))
        smtp.login(sender, password)
        smtp.send_message(message, from_addr=sender)


def send_from_outside(hub, message: EmailMessage) -> None:
    """Deliver like mail from the internet: the hub's MX listener, no AUTH."""
    with smtplib.SMTP("127.0.0.1", hub.ports["smtp_mx"], timeout=10) as smtp:
        smtp.send_message(message)


def assert_answers(answers: list[dict], names: list[str]) -> None:
    assert [answer["file"] for answer in answers] == names
    for answer, name in zip(answers, names):
        assert "error" not in answer, answer
        assert answer["taxonomy"]["family"] == FAMILY[name.rpartition("-")[2]], answer
        assert 0 <= answer["probability"] <= 100 and answer["alternatives"]


# -- the server as a process of its own ----------------------------------------------

class ServerProcess:
    """server.py in a process of its own: killable with SIGKILL, its memory measurable.

    Its log (stderr) goes to ``log_path``, appended across restarts, so every
    run's lines stay readable. ``cwd`` is where it runs: a test can check that
    nothing but its state appears there.
    """

    def __init__(self, config_path: Path, log_path: Path, cwd: Path | None = None,
                 receive: str | None = None):
        self.config_path, self.log_path = Path(config_path), Path(log_path)
        self.cwd = Path(cwd) if cwd else self.log_path.parent
        self.receive = receive
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.exit_codes: list[int] = []  # of runs that ended, in order

    def start(self, ready_timeout: float = 180.0, wait: bool = True) -> "ServerProcess":
        """Start server.py; returns once it watches the mailbox (the model is loaded).
        With ``wait=False`` it returns at once: call ``wait_started`` (several
        servers then load their models side by side)."""
        args = [sys.executable, str(ROOT / "server.py"), "--config", str(self.config_path)]
        if self.receive:
            args += ["--receive", self.receive]
        self._already = self.log_text().count(" watching ")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log)
        self.starts += 1
        if wait:
            self.wait_started(ready_timeout)
        return self

    def wait_started(self, ready_timeout: float = 180.0) -> "ServerProcess":
        wait_for(lambda: self.log_text().count(" watching ") > self._already or not self.alive(),
                 timeout=ready_timeout, what="server.py to start watching")
        assert self.alive(), f"server.py exited at start:\n{self.log_text()[-3000:]}"
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def worker_id(self) -> str:
        """The worker id of the latest run ("as worker host:pid:xxxx" in its log), or ""."""
        ids = re.findall(r" as worker (\S+?),", self.log_text())
        return ids[-1] if ids else ""

    def signal(self, signum: int) -> None:
        """SIGSTOP / SIGCONT and the like, to hold a worker still mid-work."""
        self._process().send_signal(signum)

    @property
    def pid(self) -> int:
        return self._process().pid

    def _process(self) -> subprocess.Popen:
        if self.proc is None:
            raise RuntimeError("the worker has not started")
        return self.proc

    def kill9(self) -> None:
        """SIGKILL: no cleanup at all, as a power cut or the OOM killer would do."""
        self._process().send_signal(signal.SIGKILL)
        self.exit_codes.append(self._process().wait(10))

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as systemd would: the server finishes the message at hand and exits 0."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self.exit_codes.append(code)
        return code

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.pid).memory_info().rss

    def peak_rss(self) -> int:
        """The kernel's high-water mark of resident memory (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")

    def reset_peak_rss(self) -> bool:
        """Reset VmHWM to the current RSS (Linux >= 4.0, "5" to clear_refs); False if refused."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            return True
        except OSError:
            return False


# -- reading outcomes --------------------------------------------------------------------

def state_file_of(config_path: Path) -> Path:
    return edge.ledger_settings(load_config(config_path)).state_file


def ledger_states(config_path: Path) -> dict[str, str]:
    """Message-ID -> final state, read-only (the server may be writing meanwhile)."""
    if load_config(config_path).section("server").has("ledger"):
        return {message_id: state for message_id, (state, _) in ledger_records(config_path).items()}
    path = state_file_of(config_path)
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        marks = ", ".join("?" * len(FINAL_STATES))
        rows = db.execute("SELECT message_id, state FROM messages WHERE message_id != '' "
                          f"AND state IN ({marks})", FINAL_STATES).fetchall()
    finally:
        db.close()
    return dict(rows)


def ledger_records(config_path: Path) -> dict[str, tuple[str, str]]:
    """Message-ID -> (final state, the worker that reached it), from the configured ledger
    (SQLite or PostgreSQL)."""
    config = load_config(config_path)
    if not config.section("server").has("ledger") and not state_file_of(config_path).exists():
        return {}
    with open_ledger(edge.ledger_settings(config)) as ledger:
        return ledger.final_states()


def ledger_reservations(config_path: Path) -> dict[str, tuple[str, str]]:
    """Message-ID -> (key, worker) being answered now."""
    with open_ledger(edge.ledger_settings(load_config(config_path))) as ledger:
        return ledger.reservations()


def ledger_claims(config_path: Path) -> list:
    """The claims the ledger records (``ledger.Claim``), oldest first."""
    with open_ledger(edge.ledger_settings(load_config(config_path))) as ledger:
        return ledger.claims()


def replies_by_request(config_path: Path, role: str = "client",
                       with_bodies: bool = False) -> dict[str, list[bytes]]:
    """In-Reply-To id -> the replies (raw headers, or whole messages) in a role's INBOX.

    Reads without deleting, so duplicates can be counted.
    """
    found: dict[str, list[bytes]] = {}
    with edge.mailbox(load_config(config_path), role, "imap") as box:
        refs = box.list_messages()
        data = box.fetch(refs, 50_000_000) if with_bodies else box.fetch_headers(refs)
        for raw in data.values():
            if not isinstance(raw, bytes):
                continue
            for message_id in message_ids(parse_bytes(raw).get("In-Reply-To", ""))[:1]:
                found.setdefault(message_id, []).append(raw)
    return found


# -- delivering ----------------------------------------------------------------------

def submit(hub, sender: str, message: EmailMessage | bytes, recipients: list[str] | None = None,
           deadline_s: float = 60.0) -> None:
    """Submit as ``sender`` (a hub account) over STARTTLS, retrying 4xx and dropped
    connections as a mail client's outbox would, so a hub in trouble loses nothing."""
    local = sender.partition("@")[0]
    password = (Path(hub.state) / "secrets" / local).read_text()
    recipients = recipients or [hub.server]
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", hub.ports["submission"], timeout=10) as smtp:
                smtp.starttls(context=ssl.create_default_context(cafile=str(hub.ca_file)))
                smtp.login(sender, password)
                if isinstance(message, bytes):
                    smtp.sendmail(sender, recipients, message)
                else:
                    smtp.send_message(message, from_addr=sender, to_addrs=recipients)
            return
        except (smtplib.SMTPResponseException, smtplib.SMTPServerDisconnected, OSError) as exc:
            code = getattr(exc, "smtp_code", 0)
            if code >= 500 or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def send_mx(hub, raw: bytes, mail_from: str, recipients: list[str] | None = None) -> None:
    """Deliver raw bytes like mail from the internet: the hub's MX listener, no AUTH."""
    with smtplib.SMTP("127.0.0.1", hub.ports["smtp_mx"], timeout=30) as smtp:
        smtp.sendmail(mail_from, recipients or [hub.server], raw)


def deliver_lmtp(hub, raw: bytes, recipient: str, mail_from: str) -> None:
    """Put raw bytes straight into a Dovecot mailbox (LMTP, RFC 2033), past the SMTP
    front and its size limit, as a provider with a larger limit would."""
    lmtp = smtplib.LMTP(hub.lmtp_socket, timeout=120)
    try:
        lmtp.ehlo()
        code, _ = lmtp.mail(mail_from)
        assert code == 250, code
        code, _ = lmtp.rcpt(recipient)
        assert code == 250, code
        code, reply = lmtp.data(raw)
        assert code == 250, (code, reply)
    finally:
        try:
            lmtp.quit()
        except (smtplib.SMTPException, OSError):
            lmtp.close()


def to_crlf(raw: bytes) -> bytes:
    """Line ends as they travel over SMTP (RFC 5321 section 2.3.8)."""
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


# -- third-party mail clients: Debian's swaks, neomutt and fetchmail ---------------------
# The tests drive real mail programs against the hub as a person's would be, each one
# verifying the hub's certificate against its CA (hub.ca_file) and reaching it as
# "localhost", the name config.ini uses. Passwords travel on standard input (swaks's
# prompt: its option parser refuses values that start with "-", which generated
# passwords may) or in 0600 files (neomutt, fetchmail), never on a command line.

def require_tool(name: str) -> str:
    """The path of a Debian mail tool, or a failure that says how to install it."""
    import shutil

    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"{name} is not installed: run `make install` (Makefile APT_PACKAGES)")
    return path


def hub_secret(hub, account: str) -> str:
    return (Path(hub.state) / "secrets" / account.partition("@")[0]).read_text()


def swaks_send(hub, sender: str, attachments=(), data: bytes | None = None,
               subject: str = "What animal is this?", body: str = "What animal is this?\n",
               recipient: str | None = None, ca_file: Path | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess:
    """Submit with swaks over STARTTLS and AUTH PLAIN, verifying the hub's certificate.

    ``attachments``: (path, MIME type or None for swaks's application/octet-stream,
    file name, or "" for none, or None for the file's own name). ``data``: a whole
    message (headers and body) to send as it is instead.
    """
    import tempfile

    args = [require_tool("swaks"), "--silent", "2", "--server", f"localhost:{hub.ports['submission']}",
            "--tls", "--tls-verify", "--tls-ca-path", str(ca_file or hub.ca_file),
            "--auth", "PLAIN", "--auth-user", sender, "--auth-hide-password", "--auth-password",
            "--from", sender, "--to", recipient or hub.server]
    message_file = None
    if data is not None:
        with tempfile.NamedTemporaryFile("wb", suffix=".eml", delete=False) as handle:
            handle.write(data)
        message_file = Path(handle.name)
        args += ["--data", f"@{message_file}"]
    else:
        args += ["--h-Subject", subject, "--body", body]
        for path, content_type, name in attachments:
            args += ["--attach-type", content_type or "application/octet-stream"]
            if name == "":
                args += ["--attach-name"]  # no argument: no file name at all
            elif name is not None:
                args += ["--attach-name", name]
            args += ["--attach", f"@{path}"]
    try:  # "--auth-password" without a value: swaks prompts, and reads it from stdin
        return subprocess.run(args, input=(hub_secret(hub, sender) + "\n").encode(), capture_output=True,
                              timeout=timeout)
    finally:
        if message_file is not None:
            message_file.unlink()


def neomutt_send(hub, sender: str, files: list[Path], workdir: Path, subject: str = "Photo",
                 body: str = "What animal is this?\n", recipient: str | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess:
    """Send files as attachments with neomutt in batch mode: SMTP with STARTTLS (forced),
    the hub's CA and host name checks (ssl_verify_host)."""
    from urllib.parse import quote

    workdir.mkdir(parents=True, exist_ok=True)
    rc = workdir / "muttrc"
    rc.write_text(
        f'set from = "{sender}"\nset use_from = yes\nset realname = "Phone User"\n'
        f'set smtp_url = "smtp://{quote(sender, safe="")}@localhost:{hub.ports["submission"]}/"\n'
        f'set smtp_pass = "{hub_secret(hub, sender)}"\n'
        "set ssl_starttls = yes\nset ssl_force_tls = yes\nset ssl_verify_host = yes\n"
        f'set ssl_ca_certificates_file = "{hub.ca_file}"\n'
        f'set certificate_file = "{workdir / "certificates"}"\n'
        'set record = ""\nset copy = no\n', encoding="utf-8")
    rc.chmod(0o600)
    args = [require_tool("neomutt"), "-n", "-F", str(rc), "-s", subject]
    for path in files:
        args += ["-a", str(path)]
    args += ["--", recipient or hub.server]
    env = dict(os.environ, HOME=str(workdir), TMPDIR=str(workdir))
    return subprocess.run(args, input=body.encode(), env=env, capture_output=True, timeout=timeout)


def fetchmail_fetch(hub, account: str, workdir: Path, ca_file: Path | None = None,
                    timeout: float = 60) -> tuple[subprocess.CompletedProcess, list[bytes]]:
    """Fetch (and delete) every message of ``account``'s INBOX with fetchmail over POP3S,
    checking the hub's certificate (sslcertck, sslcertfile). Returns fetchmail's run
    (exit 0: mail fetched, 1: none) and the messages, each as an MDA received it."""
    out = workdir / "fetched"
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.iterdir())
    rc = workdir / "fetchmailrc"
    rc.write_text(
        "set no syslog\n"
        f"poll localhost with proto POP3 service {hub.ports['pop3s']}\n"
        f'  user "{account}" there with password "{hub_secret(hub, account)}"\n'
        f'  ssl sslcertck sslcertfile "{ca_file or hub.ca_file}"\n'
        f'  mda "cat > {out}/$$.eml"\n', encoding="utf-8")
    rc.chmod(0o600)  # fetchmail refuses a readable rcfile with a password in it
    env = dict(os.environ, FETCHMAILHOME=str(workdir), HOME=str(workdir))
    result = subprocess.run([require_tool("fetchmail"), "-f", str(rc), "--nodetach", "--nosyslog"],
                            env=env, capture_output=True, text=True, timeout=timeout)
    fetched = sorted(set(out.iterdir()) - before, key=lambda path: path.stat().st_mtime_ns)
    return result, [path.read_bytes() for path in fetched]


# -- a burst of requests ---------------------------------------------------------------

BURST_PHOTOS = ("tiger.png", "dog.png", "bison.png")


class Burst:
    """Sends ``count`` requests from the client accounts in a thread; remembers their labels.

    Request ``i`` carries photo ``BURST_PHOTOS[i % 3]`` labelled ``r{i}-{photo}``, from
    ``CLIENTS[i % 4]``. Between two requests it waits ``gap`` seconds, or, for a
    (low, high) pair, a time drawn from a ``random.Random(seed)``, so a run repeats.
    """

    def __init__(self, hub, count: int, gap: float | tuple[float, float] = 0.0, seed: int = 0,
                 submit_deadline_s: float = 60.0, join_timeout_s: float = 180.0):
        self.hub, self.count, self.gap = hub, count, gap
        self.rng = random.Random(seed)
        self.submit_deadline_s, self.join_timeout_s = submit_deadline_s, join_timeout_s
        self.sent: dict[str, str] = {}  # Message-ID -> the label its answer must carry
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="burst", daemon=True)

    def start(self) -> "Burst":
        self.thread.start()
        return self

    def _pause(self) -> float:
        return self.rng.uniform(*self.gap) if isinstance(self.gap, tuple) else self.gap

    def _run(self) -> None:
        try:
            for index in range(self.count):
                client = CLIENTS[index % len(CLIENTS)]
                name = BURST_PHOTOS[index % len(BURST_PHOTOS)]
                label = f"r{index}-{name}"
                request = build_request(self.hub.address(client), self.hub.server, [(label, photo(name))])
                submit(self.hub, self.hub.address(client), request, deadline_s=self.submit_deadline_s)
                with self.lock:
                    self.sent[request["Message-ID"]] = label
                time.sleep(self._pause())
        except BaseException as exc:  # reported by join()
            self.error = exc

    def ids(self) -> set[str]:
        with self.lock:
            return set(self.sent)

    def join(self) -> None:
        self.thread.join(self.join_timeout_s)
        assert not self.thread.is_alive(), "the burst did not finish sending"
        assert self.error is None, f"sending failed: {self.error!r}"
        assert len(self.sent) == self.count


class LedgerStall(logging.Handler):
    """Takes the ledger's write lock the moment the hub has stored a reply from the server.

    The hub logs a delivery after Dovecot stored it and before it answers 250,
    so the server's RECORD (one SQLite write) then waits on the lock: the
    process is held inside the SEND-to-RECORD window, where the test kills it.
    A stalled disk or a long fsync does the same in production. Used for replies
    (tests/e2e/test_faults.py) and trail-camera alerts (test_trail_cameras.py).
    """

    def __init__(self, state_file: Path, server_address: str):
        super().__init__()
        self.state_file, self.marker = state_file, f"from=<{server_address}>"
        self.locked = threading.Event()
        self.db: sqlite3.Connection | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.locked.is_set() or self.marker not in record.getMessage():
            return
        db = sqlite3.connect(self.state_file, isolation_level=None, check_same_thread=False)
        db.execute("BEGIN IMMEDIATE")
        self.db = db
        self.locked.set()

    def unlock(self) -> None:  # not release(): logging.Handler has one of its own
        if self.db is not None:
            self.db.execute("ROLLBACK")
            self.db.close()
