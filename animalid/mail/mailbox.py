"""Receiving mail: one small interface over POP3 polling and IMAP IDLE.

POP3 follows RFC 1939 (USER/PASS, LIST, RETR, TOP, DELE applied at QUIT),
RFC 2449 (CAPA, UIDL as the stable key), RFC 2595 (STLS) and RFC 5034 (SASL
AUTH, used for XOAUTH2). IMAP follows RFC 9051 / RFC 3501 (UIDVALIDITY+UID as
the stable key, BODY.PEEK so other mail keeps its \\Seen flag), RFC 2177
(IDLE, re-issued before the server's 30-minute inactivity timer), RFC 6851
(MOVE, with COPY + \\Deleted + EXPUNGE as fallback), RFC 4315 (UID EXPUNGE,
so only our own messages are expunged) and RFC 7628 style XOAUTH2 login.

Both kinds share ``Mailbox``:

* ``list()`` -- what is in the mailbox now, as ``MailRef`` (a stable key,
  plus the size where the protocol gives it for free);
* ``fetch(refs, max_bytes)`` / ``fetch_headers(refs)`` -- bounded reads;
* ``delete(refs)``, ``set_aside(refs, folder)`` and ``end_pass()``;
* ``wait(timeout)`` -- block until new mail may be there (IDLE), or until
  the next poll is due (POP3); ``has_news()`` is the non-blocking form.

Connections open on first use. A dropped connection raises
``UnreachableError`` and is reopened by the next call, so callers only need
to back off and call again.
"""

from __future__ import annotations

import base64
import logging
import poplib
import ssl
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

from animalid.config import Config
from animalid.errors import AnimalIdError, AuthError, PermanentError, TransientError, UnreachableError
from animalid.mail.headers import HEADER_BYTES_LIMIT, server_text
from animalid.mail.transport import Account, Endpoint, check_credentials_protected, network_error, xoauth2_string

log = logging.getLogger(__name__)

RECEIVE_CHOICES = ("imap", "pop3")
# RFC 2177: clients should re-issue IDLE at least every 29 minutes, since
# servers may log out a client inactive for 30.
DEFAULT_IDLE_REFRESH_S = 25 * 60
FETCH_CHUNK = 50
# poplib refuses lines over 2048 bytes; RFC 5322 allows 998 characters, but
# real mail breaks that. Messages are size-checked (LIST) before RETR anyway.
poplib._MAXLINE = max(poplib._MAXLINE, 100_000)
# What poplib raises (as error_proto) when the server closes the connection,
# e.g. while it restarts; during login it must not read as a wrong password.
POPLIB_CONNECTION_CLOSED = "-ERR EOF"


@dataclass(frozen=True)
class MailRef:
    """One message in the mailbox: a key that survives reconnects, and its handle."""

    key: str
    handle: int  # POP3 message number (this session only) or IMAP UID
    size: int | None = None


@dataclass(frozen=True)
class TooLarge:
    """Stands in for a message that was not downloaded because of its size."""

    size: int


class Mailbox(ABC):
    protocol = ""

    def __init__(self, endpoint: Endpoint, account: Account):
        check_credentials_protected(endpoint, account)
        self.endpoint = endpoint
        self.account = account

    def __enter__(self) -> "Mailbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def list(self) -> list[MailRef]: ...

    @abstractmethod
    def fetch(self, refs: list[MailRef], max_bytes: int) -> dict[str, bytes | TooLarge]: ...

    @abstractmethod
    def fetch_headers(self, refs: list[MailRef]) -> dict[str, bytes]: ...

    @abstractmethod
    def delete(self, refs: list[MailRef]) -> None: ...

    def set_aside(self, refs: list[MailRef], folder: str) -> None:
        """Move out of the way; only IMAP has folders (POP3: leave, the ledger remembers)."""

    def end_pass(self) -> None:
        """Finish one round of list/fetch/delete (POP3: QUIT, which applies DELE)."""

    @abstractmethod
    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` s; True when ``list()`` may show something new."""

    def has_news(self) -> bool:
        return self.wait(0)

    def connect(self) -> None:
        """Open the connection now where one is kept (IMAP); POP3 connects per pass."""

    def expect_more(self) -> None:
        """Make the next ``wait`` return at once: in a burst more mail is likely
        there already, and IMAP servers may delay IDLE news (Dovecot: 0.5 s)."""

    def with_sizes(self, refs: list[MailRef]) -> list[MailRef]:
        """``refs`` with their sizes filled in (one round trip on IMAP; POP3 has them)."""
        return refs

    def verify_login(self) -> None:
        """Connect and log in now, so a wrong password shows before any work."""
        self.list()
        self.end_pass()

    @abstractmethod
    def close(self) -> None: ...


def open_mailbox(config: Config, role: str, receive: str | None = None) -> Mailbox:
    """The mailbox of [client] or [server], by IMAP or POP3 (``receive`` overrides the file)."""
    section = config.section(role)
    receive = receive or section.get_choice("receive", RECEIVE_CHOICES)
    if receive not in RECEIVE_CHOICES:
        raise section.error("receive", f"{receive!r} is not one of: {', '.join(RECEIVE_CHOICES)}")
    account = Account.from_config(config, role)
    endpoint = Endpoint.from_config(config, receive)
    if receive == "pop3":
        return Pop3Mailbox(endpoint, account,
                           poll_interval=section.get_float("poll_interval", minimum=0.01, maximum=3600.0))
    imap = config.section("imap")
    return ImapMailbox(endpoint, account, folder=imap.get("folder"),
                       idle_refresh=imap.get_float("idle_refresh", minimum=10.0, maximum=29 * 60))


# -- POP3 -------------------------------------------------------------------

class Pop3Mailbox(Mailbox):
    """POP3 polling. One session per pass: POP3 shows only what was there at login."""

    protocol = "pop3"

    def __init__(self, endpoint: Endpoint, account: Account, poll_interval: float = 1.0):
        super().__init__(endpoint, account)
        self.poll_interval = poll_interval
        self._pop: poplib.POP3 | None = None
        self._last_poll = float("-inf")

    # -- session ------------------------------------------------------------

    def _session(self) -> poplib.POP3:
        if self._pop is None:
            self._pop = self._connect()
            self._last_poll = time.monotonic()
        return self._pop

    def _connect(self) -> poplib.POP3:
        endpoint = self.endpoint
        try:
            if endpoint.security == "tls":
                pop = poplib.POP3_SSL(endpoint.host, endpoint.port, timeout=endpoint.timeout,
                                      context=endpoint.tls_context())
            else:
                pop = poplib.POP3(endpoint.host, endpoint.port, timeout=endpoint.timeout)
        except (OSError, poplib.error_proto) as exc:
            raise self._error(exc) from None
        try:
            if endpoint.security == "starttls":
                self._start_tls(pop)
            self._login(pop)
        except BaseException as exc:
            _close_quietly(pop)
            if isinstance(exc, (OSError, poplib.error_proto)):
                raise self._error(exc, during_login=True) from None
            raise
        return pop

    def _start_tls(self, pop: poplib.POP3) -> None:
        try:
            pop.stls(self.endpoint.tls_context())
        except poplib.error_proto as exc:
            raise PermanentError(f"{self.endpoint.where}: STLS failed ({server_text(exc)}); refusing "
                                 "to continue unencrypted (use security = tls?)") from None

    def _login(self, pop: poplib.POP3) -> None:
        account = self.account
        if account.auth == "xoauth2":
            # RFC 5034: "AUTH XOAUTH2", a "+" continuation, then the response.
            pop._shortcmd("AUTH XOAUTH2")
            token = base64.b64encode(xoauth2_string(account.username, account.token()).encode())
            reply = pop._shortcmd(token.decode("ascii"))
            if not reply.startswith(b"+OK"):  # a "+ <error>" challenge: end it to get -ERR
                pop._shortcmd("")
        elif account.auth == "password":
            pop.user(account.username)
            pop.pass_(account.password())

    def _error(self, exc: BaseException, during_login: bool = False) -> AnimalIdError:
        if isinstance(exc, AnimalIdError):
            return exc
        if isinstance(exc, poplib.error_proto):
            text = server_text(exc)
            if text == POPLIB_CONNECTION_CLOSED:  # not a refusal: the server went away
                return UnreachableError(f"{self.endpoint.where}: connection closed")
            # RFC 3206 response codes: [SYS/TEMP] and [IN-USE] are worth retrying.
            if "[SYS/TEMP]" in text or "[IN-USE]" in text:
                return TransientError(f"{self.endpoint.where}: {text}")
            if during_login:
                return AuthError(f"{self.endpoint.where} refused the login ({text})")
            return TransientError(f"{self.endpoint.where}: {text}")
        return network_error(self.endpoint, exc)

    def _call(self, action):
        """Run a POP3 command on the session; a failure ends the session."""
        pop = self._session()
        try:
            return action(pop)
        except (OSError, poplib.error_proto) as exc:
            self._drop()
            raise self._error(exc) from None

    def _drop(self) -> None:
        pop, self._pop = self._pop, None
        if pop is not None:
            _close_quietly(pop)

    # -- Mailbox ------------------------------------------------------------

    def list(self) -> list[MailRef]:
        def listing(pop):
            _, uid_lines, _ = pop.uidl()
            _, size_lines, _ = pop.list()
            return uid_lines, size_lines

        uid_lines, size_lines = self._call(listing)
        sizes = dict(_two_fields(line) for line in size_lines)
        refs = []
        for line in uid_lines:
            number, uid = _two_fields(line, second_int=False)
            refs.append(MailRef(key=f"pop3:{uid}", handle=number, size=int(sizes.get(number, 0))))
        return refs

    def fetch(self, refs: list[MailRef], max_bytes: int) -> dict[str, bytes | TooLarge]:
        found: dict[str, bytes | TooLarge] = {}
        for ref in refs:
            if ref.size is not None and ref.size > max_bytes:
                found[ref.key] = TooLarge(ref.size)
                continue
            _, lines, _ = self._call(lambda pop, n=ref.handle: pop.retr(n))
            found[ref.key] = b"\r\n".join(lines) + b"\r\n"
        return found

    def fetch_headers(self, refs: list[MailRef]) -> dict[str, bytes]:
        found = {}
        for ref in refs:
            _, lines, _ = self._call(lambda pop, n=ref.handle: pop.top(n, 0))
            data = b"\r\n".join(lines) + b"\r\n"
            found[ref.key] = data[:HEADER_BYTES_LIMIT]
        return found

    def delete(self, refs: list[MailRef]) -> None:
        for ref in refs:
            self._call(lambda pop, n=ref.handle: pop.dele(n))

    def end_pass(self) -> None:
        pop, self._pop = self._pop, None
        if pop is None:
            return
        try:
            pop.quit()  # the UPDATE state: DELE takes effect only now (RFC 1939 section 6)
        except (OSError, poplib.error_proto) as exc:
            _close_quietly(pop)
            raise self._error(exc) from None

    def expect_more(self) -> None:
        self._last_poll = float("-inf")

    def wait(self, timeout: float) -> bool:
        due = self._last_poll + self.poll_interval
        remaining = due - time.monotonic()
        if remaining > timeout:
            if timeout > 0:
                time.sleep(timeout)
            return False
        if remaining > 0:
            time.sleep(remaining)
        return True

    def close(self) -> None:
        pop, self._pop = self._pop, None
        if pop is not None:
            try:
                pop.quit()
            except (OSError, poplib.error_proto):
                _close_quietly(pop)


def _two_fields(line: bytes, second_int: bool = True):
    first, _, second = line.decode("ascii", "replace").strip().partition(" ")
    second = second.strip()
    return int(first), (int(second) if second_int else second)


def _close_quietly(pop: poplib.POP3) -> None:
    try:
        pop.close()
    except OSError:
        pass


# -- IMAP -------------------------------------------------------------------

class ImapMailbox(Mailbox):
    """IMAP with IDLE: new mail wakes ``wait`` at once; one connection is kept."""

    protocol = "imap"

    def __init__(self, endpoint: Endpoint, account: Account, folder: str = "INBOX",
                 idle_refresh: float = DEFAULT_IDLE_REFRESH_S):
        super().__init__(endpoint, account)
        self.folder = folder
        self.idle_refresh = idle_refresh
        self._client = None
        self._uidvalidity = 0
        self._idling = False
        self._idle_since = 0.0
        self._dirty = True  # list() must look: nothing is known yet
        self._folders_made: set[str] = set()

    # -- session ------------------------------------------------------------

    def _connection(self):
        if self._client is None:
            self._client = self._connect()
            self._dirty = True
        return self._client

    def _connect(self):
        from imapclient import IMAPClient  # not needed by POP3 users
        from imapclient.exceptions import IMAPClientError, LoginError

        endpoint, account = self.endpoint, self.account
        try:
            client = IMAPClient(endpoint.host, endpoint.port, ssl=endpoint.security == "tls",
                                ssl_context=endpoint.tls_context(), timeout=endpoint.timeout)
        except (OSError, IMAPClientError) as exc:
            raise self._error(exc) from None
        try:
            if endpoint.security == "starttls":
                client.starttls(endpoint.tls_context())
            if account.auth == "xoauth2":
                client.oauth2_login(account.username, account.token())
            elif account.auth == "password":
                client.login(account.username, account.password())
            if not client.has_capability("IDLE"):
                raise PermanentError(f"{endpoint.where} does not support IDLE; use receive = pop3")
            selected = client.select_folder(self.folder)
            self._uidvalidity = int(selected.get(b"UIDVALIDITY", 0))
        except LoginError as exc:
            _shutdown_quietly(client)
            text = server_text(exc)
            if "[UNAVAILABLE]" in text:
                raise TransientError(f"{endpoint.where}: {text}") from None
            raise AuthError(f"{endpoint.where} refused the login ({text})") from None
        except BaseException as exc:
            _shutdown_quietly(client)
            if isinstance(exc, (OSError, IMAPClientError)):
                raise self._error(exc) from None
            raise
        self._idling = False
        log.debug("%s: selected %s (UIDVALIDITY %s)", endpoint.where, self.folder, self._uidvalidity)
        return client

    def _error(self, exc: BaseException) -> AnimalIdError:
        from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

        if isinstance(exc, AnimalIdError):
            return exc
        if isinstance(exc, IMAPClientAbortError):
            return UnreachableError(f"{self.endpoint.where}: connection lost ({server_text(exc)})")
        if isinstance(exc, IMAPClientError):
            return TransientError(f"{self.endpoint.where}: {server_text(exc)}")
        return network_error(self.endpoint, exc)

    def _call(self, action):
        """Run commands outside IDLE; any failure drops the connection (reopened next call)."""
        from imapclient.exceptions import IMAPClientError

        client = self._connection()
        try:
            self._leave_idle()
            return action(client)
        except (OSError, IMAPClientError) as exc:
            self._drop()
            raise self._error(exc) from None

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._idling = False
        self._dirty = True
        if client is not None:
            _shutdown_quietly(client)

    # -- IDLE ---------------------------------------------------------------

    def _enter_idle(self) -> None:
        client = self._client
        # An EXISTS the server sent during an earlier command sits in imaplib's
        # store and will not be sent again: look there before idling.
        if _pop_news(client._imap.untagged_responses):
            self._dirty = True
        client.idle()
        self._idling = True
        self._idle_since = time.monotonic()
        if _pop_news(client._imap.untagged_responses) or _input_buffered(client):
            self._dirty = True  # it arrived with the "+ idling" continuation

    def _leave_idle(self) -> None:
        if not self._idling:
            return
        self._idling = False
        _, responses = self._client.idle_done()
        if _any_news(responses):
            self._dirty = True

    def wait(self, timeout: float) -> bool:
        from imapclient.exceptions import IMAPClientError

        if self._dirty:
            return True
        client = self._connection()
        try:
            if self._idling and time.monotonic() - self._idle_since > self.idle_refresh:
                self._leave_idle()
            if not self._idling:
                self._enter_idle()
                if self._dirty:
                    return True
            started = time.monotonic()
            responses = client.idle_check(timeout=max(0.0, timeout))
        except (OSError, IMAPClientError) as exc:
            self._drop()
            raise self._error(exc) from None
        if _any_news(responses):
            self._dirty = True
        elif not responses and timeout > 0 and time.monotonic() - started < timeout * 0.5:
            # idle_check returns early and empty when the server closed the
            # connection; check the line by leaving IDLE.
            self._call(lambda c: c.noop())
        elif any(_is_bye(r) for r in responses):
            self._drop()
            raise UnreachableError(f"{self.endpoint.where}: server closed the connection")
        return self._dirty

    # -- Mailbox ------------------------------------------------------------

    def list(self) -> list[MailRef]:
        def listing(client):
            self._dirty = False  # before the search: news arriving after it must count
            return client.search(["NOT", "DELETED"])

        uids = self._call(listing)
        return [MailRef(key=self._key(uid), handle=int(uid)) for uid in sorted(uids)]

    def _key(self, uid: int) -> str:
        return f"imap:{self._uidvalidity}:{uid}"

    def connect(self) -> None:
        self._connection()

    def expect_more(self) -> None:
        self._dirty = True

    def with_sizes(self, refs: list[MailRef]) -> list[MailRef]:
        unknown = [ref.handle for ref in refs if ref.size is None]
        if not unknown:
            return refs
        sizes = {uid: int(data.get(b"RFC822.SIZE", 0))
                 for uid, data in self._fetch_items(unknown, [b"RFC822.SIZE"]).items()}
        # A message expunged meanwhile has no size: it drops out here.
        return [ref if ref.size is not None else MailRef(ref.key, ref.handle, sizes[ref.handle])
                for ref in refs if ref.size is not None or ref.handle in sizes]

    def fetch(self, refs: list[MailRef], max_bytes: int) -> dict[str, bytes | TooLarge]:
        found: dict[str, bytes | TooLarge] = {}
        by_uid = {ref.handle: ref for ref in self.with_sizes(refs)}
        wanted = []
        for uid, ref in by_uid.items():
            if ref.size > max_bytes:
                found[ref.key] = TooLarge(ref.size)
            else:
                wanted.append(uid)
        for uid, data in self._fetch_items(wanted, [b"BODY.PEEK[]"]).items():
            body = data.get(b"BODY[]")
            if body is not None:
                found[by_uid[uid].key] = bytes(body)[: max_bytes + 1]
        return found

    def fetch_headers(self, refs: list[MailRef]) -> dict[str, bytes]:
        by_uid = {ref.handle: ref for ref in refs}
        found = {}
        # A partial fetch (RFC 9051 section 6.4.5, <origin.octets>): a hostile
        # message with megabytes of header lines is not read in full.
        partial = f"BODY.PEEK[HEADER]<0.{HEADER_BYTES_LIMIT}>".encode()
        for uid, data in self._fetch_items(list(by_uid), [partial]).items():
            header = data.get(b"BODY[HEADER]<0>", data.get(b"BODY[HEADER]"))
            if header is not None:
                found[by_uid[uid].key] = bytes(header)[:HEADER_BYTES_LIMIT]
        return found

    def _fetch_items(self, uids: list[int], items: list[bytes]) -> dict[int, dict]:
        result: dict[int, dict] = {}
        for start in range(0, len(uids), FETCH_CHUNK):
            chunk = uids[start:start + FETCH_CHUNK]
            result.update(self._call(lambda client, c=chunk: client.fetch(c, items)))
        # A message expunged meanwhile is simply missing from the answer.
        asked = set(uids)
        return {uid: data for uid, data in result.items() if uid in asked}

    def delete(self, refs: list[MailRef]) -> None:
        if not refs:
            return
        uids = [ref.handle for ref in refs]

        def remove(client):
            client.add_flags(uids, [b"\\Deleted"], silent=True)
            self._expunge(client, uids)

        self._call(remove)

    @staticmethod
    def _expunge(client, uids: list[int]) -> None:
        if client.has_capability("UIDPLUS"):
            client.uid_expunge(uids)  # leaves others' \Deleted messages alone
        else:
            client.expunge()

    def set_aside(self, refs: list[MailRef], folder: str) -> None:
        if not refs:
            return
        uids = [ref.handle for ref in refs]

        def move(client):
            if folder not in self._folders_made:
                if not client.folder_exists(folder):
                    client.create_folder(folder)
                self._folders_made.add(folder)
            if client.has_capability("MOVE"):
                client.move(uids, folder)
            else:
                client.copy(uids, folder)
                client.add_flags(uids, [b"\\Deleted"], silent=True)
                self._expunge(client, uids)

        self._call(move)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if self._idling:
                self._idling = False
                client.idle_done()
            client.logout()
        except Exception:  # closing a broken connection: nothing left to save
            _shutdown_quietly(client)


def _any_news(responses) -> bool:
    return any(isinstance(r, tuple) and len(r) >= 2 and r[1] in (b"EXISTS", b"RECENT")
               and isinstance(r[0], int) and r[0] > 0 for r in responses or ())


def _is_bye(response) -> bool:
    return isinstance(response, tuple) and response and response[0] == b"BYE"


def _pop_news(untagged: dict) -> bool:
    found = False
    for name in ("EXISTS", "RECENT"):
        values = untagged.pop(name, None) or []
        found = found or any(value not in (b"0", 0) for value in values)
    return found


def _input_buffered(client) -> bool:
    """True when bytes already read from the socket wait in imaplib's buffer.

    IDLE responses that arrived in the same packet as the continuation line
    sit there, where a poll() on the socket cannot see them.
    """
    sock = client.socket()
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    reader = client._imap.file
    sock.setblocking(False)
    try:
        return bool(reader.peek(1))
    except (OSError, ValueError):  # nothing buffered: the raw read would block
        return False
    finally:
        sock.setblocking(True)
        client._set_read_timeout()


def _shutdown_quietly(client) -> None:
    try:
        client.shutdown()
    except Exception:
        pass
