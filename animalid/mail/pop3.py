"""POP3 polling behind the ``Mailbox`` interface (RFC 1939, 2449, 2595, 5034).

USER/PASS or SASL XOAUTH2 (RFC 5034, RFC 7628 style), STLS (RFC 2595), LIST
for sizes, RETR and TOP for bounded reads, UIDL (RFC 2449) as the stable key,
and DELE, applied at QUIT. POP3 cannot claim a message atomically, so a POP3
mailbox is watched by one server at a time (server/service.py).
"""

from __future__ import annotations

import base64
import logging
import poplib
import time
from functools import partial
from operator import methodcaller
from typing import Any, Callable, TypeVar

from animalid.errors import AnimalIdError, PermanentError, TransientError, UnreachableError
from animalid.mail import pop3_read
from animalid.mail.headers import HEADER_BYTES_LIMIT, server_text
from animalid.mail.mailbox import Mailbox, MailRef, TooLarge, Unreadable
from animalid.mail.transport import Account, Endpoint, network_error, xoauth2_string

log = logging.getLogger(__name__)
T = TypeVar("T")

# What poplib raises (as error_proto) when the server closes the connection,
# e.g. while it restarts; during login it must not read as a wrong password.
POPLIB_CONNECTION_CLOSED = "-ERR EOF"


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
                pop: poplib.POP3 = poplib.POP3_SSL(endpoint.host, endpoint.port, timeout=endpoint.timeout,
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
            # RFC 5034: "AUTH XOAUTH2", a "+" continuation, then the response;
            # poplib has no AUTH, so its private one-line command sends them.
            command = pop._shortcmd  # type: ignore[attr-defined]
            command("AUTH XOAUTH2")
            token = base64.b64encode(xoauth2_string(account.username, account.token()).encode())
            reply = command(token.decode("ascii"))
            if not reply.startswith(b"+OK"):  # a "+ <error>" challenge: end it to get -ERR
                command("")
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
                return self.account.login_refused(self.endpoint.where, text)
            return TransientError(f"{self.endpoint.where}: {text}")
        return network_error(self.endpoint, exc)

    def _call(self, action: Callable[[poplib.POP3], T]) -> T:
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

    def list_messages(self) -> list[MailRef]:
        def listing(pop: poplib.POP3) -> tuple[list[bytes], list[bytes]]:
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

    def fetch(self, refs: list[MailRef], max_bytes: int) -> dict[str, bytes | TooLarge | Unreadable]:
        """RETR each message with a byte cap (pop3_read.py), not poplib's line limit. A -ERR
        to one RETR is that message's failure (``Unreadable``); a dropped session is not."""
        found: dict[str, bytes | TooLarge | Unreadable] = {}
        for ref in refs:
            if ref.size is not None and ref.size > max_bytes:
                found[ref.key] = TooLarge(ref.size)
                continue
            try:
                data = self._call(partial(pop3_read.retr, number=ref.handle, max_bytes=max_bytes))
            except pop3_read.MessageError as refusal:
                found[ref.key] = Unreadable(f"the mail server would not give it: {server_text(refusal)}")
                continue
            found[ref.key] = TooLarge(data.size) if isinstance(data, pop3_read.OverCap) else data
        return found

    def fetch_headers(self, refs: list[MailRef]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for ref in refs:
            try:
                found[ref.key] = self._call(partial(pop3_read.top, number=ref.handle,
                                                    max_bytes=HEADER_BYTES_LIMIT))
            except pop3_read.MessageError:
                continue  # read as gone; RETR, which comes first, reports it
        return found

    def delete(self, refs: list[MailRef]) -> None:
        for ref in refs:
            self._call(methodcaller("dele", ref.handle))

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


def _two_fields(line: bytes, second_int: bool = True) -> tuple[int, Any]:
    first, _, second = line.decode("ascii", "replace").strip().partition(" ")
    second = second.strip()
    return int(first), (int(second) if second_int else second)


def _close_quietly(pop: poplib.POP3) -> None:
    try:
        pop.close()
    except OSError:
        pass
