"""The SMTP front (aiosmtpd, RFC 5321): three listeners that deliver through LMTP.

Every message goes to Dovecot over LMTP (``lmtp.py``) and is answered 250
only once Dovecot has stored it. The listeners:

* submission: STARTTLS (RFC 3207) required before AUTH (RFC 4954; PLAIN,
  RFC 4616, and LOGIN), AUTH required before MAIL, the envelope sender must
  be the authenticated account, and nothing is relayed off the hub's domain;
* submissions: the same rules behind implicit TLS (RFC 8314);
* an MX-style listener without AUTH that takes mail for the hub's own
  accounts from anybody, standing in for mail arriving from the internet.

All three advertise SIZE (RFC 1870) and answer 552 above the limit, add a
Received trace line (RFC 5321 section 4.4), and consult the test-only fault
switch (``faults.py``) at MAIL FROM. They run on one asyncio loop in a
thread of their own, so the hub's caller is never blocked by them.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import hmac
import logging
import secrets
import threading
from email.utils import formatdate
from pathlib import Path
from typing import Mapping, Optional, Protocol

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session

from .authstamp import stamp
from .errors import HubError
from .faults import SmtpFaults
from .lmtp import lmtp_deliver
from .ports import bind_error
from .tls import server_context


class FrontHub(Protocol):
    """What the SMTP front reads of the hub it fronts (hub.MailHub provides it)."""

    @property
    def domain(self) -> str: ...  # mail for other domains is not relayed

    @property
    def accounts(self) -> Mapping[str, str]: ...  # address -> password; live, accounts are added

    @property
    def state(self) -> Path: ...  # the hub's state folder (tls/server.pem and server.key)

    @property
    def listen(self) -> str: ...

    @property
    def ports(self) -> Mapping[str, int]: ...  # listener name -> port

    @property
    def max_message_bytes(self) -> int: ...

    @property
    def hostname(self) -> Optional[str]: ...

    @property
    def lmtp_socket(self) -> str: ...

log = logging.getLogger(__name__)


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

    def __init__(self, hub: FrontHub, listener: str, submission: bool, faults: SmtpFaults):
        self.hub, self.listener, self.submission = hub, listener, submission
        self.faults = faults
        self.connections: set[_HubSMTP] = set()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname  # the hook must do this itself
        if not self.submission:
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        injected = self.faults.reply_for(address)
        if injected is not None:
            return injected
        if self.submission and address.lower() != session.auth_data:
            return f"553 5.7.1 Sender <{address}> is not owned by user {session.auth_data}"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        injected = self.faults.reply_for_recipient(address)
        if injected is not None:
            return injected
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
        # Like a provider: its own Authentication-Results (RFC 8601), and none that
        # claims its name from the sender (authstamp.py).
        login = session.auth_data if self.submission and session.authenticated else None
        content = stamp(envelope.content, self.hub.authserv_id, self.hub.domain, login)
        data = self._received_header(server, session, envelope, queue_id) + content
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            None, lmtp_deliver, self.hub.lmtp_socket, envelope.mail_from,
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


class SmtpFront:
    """The three SMTP listeners, on one asyncio loop in a thread of its own."""

    def __init__(self, hub: FrontHub):
        self.hub = hub
        self.faults = SmtpFaults()  # kept across restarts, like the hub's accounts
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

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        """AUTH PLAIN / LOGIN against the hub's accounts (aiosmtpd's authenticator)."""
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", errors="replace").strip().lower()
        expected = self.hub.accounts.get(login)
        given = auth_data.password
        if expected is not None and hmac.compare_digest(expected.encode(), given):
            log.info("AUTH %s ok for %s from %s", mechanism, login, session.peer)
            return AuthResult(success=True, auth_data=login)
        log.warning("AUTH %s failed for %r from %s", mechanism, login, session.peer)
        return AuthResult(success=False, handled=False)

    async def _open(self) -> None:
        hub = self.hub
        tls = server_context(hub.state / "tls" / "server.pem", hub.state / "tls" / "server.key")
        common = dict(
            data_size_limit=hub.max_message_bytes,
            hostname=hub.hostname or "localhost",
            authenticator=self.authenticate,
        )
        listeners = [
            # name, ssl on the socket, SMTP options
            ("smtp_mx", None, dict(tls_context=tls, auth_required=False, auth_enabled=False)),
            ("submission", None, dict(tls_context=tls, require_starttls=True,
                                      auth_required=True, auth_require_tls=True)),
            ("submissions", tls, dict(auth_required=True, auth_require_tls=True)),
        ]
        for name, sock_tls, options in listeners:
            handler = _Handler(hub, name, submission=name != "smtp_mx", faults=self.faults)
            self.handlers.append(handler)

            def factory(handler=handler, options=options):
                return _HubSMTP(handler, loop=self.loop, **common, **options)

            try:
                server = await asyncio.get_running_loop().create_server(
                    factory, host=hub.listen, port=hub.ports[name], ssl=sock_tls,
                    reuse_address=True,
                )
            except OSError as exc:
                raise HubError(bind_error(name, hub.ports[name], exc)) from None
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
        await asyncio.get_running_loop().shutdown_default_executor()
