"""Sending mail over SMTP, and the account and server settings both directions share.

Follows RFC 5321 (SMTP), RFC 3207 (STARTTLS), RFC 8314 (implicit TLS on the
submissions port), RFC 4954 (SMTP AUTH) with the PLAIN (RFC 4616) and LOGIN
mechanisms for passwords, and Google's / Microsoft's XOAUTH2 SASL mechanism
for OAuth 2.0 access tokens (the only choice for Outlook and Microsoft 365).

``STANDARD_PORTS`` holds each protocol's standard port for its security
(RFC 6409 submission 587, RFC 8314 implicit TLS 465, 993 and 995, RFC 9051
IMAP 143, RFC 1939 POP3 110); where the settings are built (animalid.cli.settings)
a port left empty in config.ini becomes that port (plus the local hub's
offset when the host is the hub). ``Endpoint`` and ``Account`` are those
settings, typed and frozen; this module never reads the config file.

Certificates are always verified: the context comes from
``ssl.create_default_context`` with the configured CA file or the system's
trust store, and no setting turns verification off. Credentials are never
sent before TLS is up unless the server is on the loopback interface.

Failures become the project's error tree (``animalid.errors``): network
trouble and 4xx replies are ``TransientError`` / ``UnreachableError``, 5xx
replies are ``PermanentError``, a refused login is ``AuthError``.
``send_with_retry`` retries transient errors only, with capped exponential
backoff.
"""

from __future__ import annotations

import ipaddress
import logging
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Callable, TypeVar

from animalid.credentials import SecretSource
from animalid.errors import AnimalIdError, AuthError, ConfigError, PermanentError, TransientError, UnreachableError
from animalid.mail.headers import server_text

log = logging.getLogger(__name__)

SECURITY_CHOICES = ("tls", "starttls", "none")
# The standard port of each protocol by security (see the module docstring).
STANDARD_PORTS = {
    "smtp": {"starttls": 587, "tls": 465, "none": 587},
    "imap": {"tls": 993, "starttls": 143, "none": 143},
    "pop3": {"tls": 995, "starttls": 110, "none": 110},
}
AUTH_CHOICES = ("password", "xoauth2", "none")
ROLES = ("client", "server")
# A pooled SMTP connection idle longer than this is checked with NOOP before
# reuse: servers drop idle sessions (RFC 5321 section 4.5.3.2 allows 5 min).
SMTP_REUSE_CHECK_AFTER_S = 10.0
T = TypeVar("T")


class RecipientDeferred(TransientError):
    """Every recipient of one message was answered 4xx at RCPT TO (full mailbox,
    greylisting): that message's trouble, not the mail server's."""


class MessageRejected(PermanentError):
    """The server refused this one message (5xx to MAIL, RCPT or DATA); others may pass."""


# -- settings ---------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """Where one protocol's server is and how to reach it safely."""

    protocol: str  # "smtp", "imap" or "pop3"
    host: str
    port: int
    security: str  # "tls" (implicit), "starttls" or "none"
    ca_file: str | None
    timeout: float
    # When the host and port are the local hub's: how to start it, said when it refuses.
    hub_hint: str = ""

    @property
    def where(self) -> str:
        return f"{self.protocol.upper()} server {self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(self.host)

    def tls_context(self) -> ssl.SSLContext:
        """A verifying client context: hostname and chain are always checked."""
        try:
            return ssl.create_default_context(cafile=self.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"[{self.protocol}] ca_file {self.ca_file}: cannot load: {exc}") from None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface."""
    return _is_loopback(host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Account:
    """Who we are at the mail servers: [client] or [server] of config.ini.

    The secret is fetched only when a login needs it, from its ``SecretSource``,
    and never appears in ``repr``, logs or errors. A password is fetched once;
    an OAuth2 token afresh for every login, since access tokens expire after
    about an hour.
    """

    role: str
    address: str
    username: str
    auth: str  # one of AUTH_CHOICES
    password_source: SecretSource | None = field(default=None, repr=False)
    token_source: SecretSource | None = field(default=None, repr=False)
    _fetched: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        if self.auth not in AUTH_CHOICES:
            raise ValueError(f"auth must be one of {AUTH_CHOICES}")

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    def password(self) -> str:
        if "password" not in self._fetched:
            self._fetched["password"] = _fetch(self.password_source, self.role, "password")
        return self._fetched["password"]

    def token(self) -> str:
        return _fetch(self.token_source, self.role, "token")

    def login_refused(self, where: str, detail: str) -> AuthError:
        """The error for a refused login: the account, the server's words, and where the
        password (or token) came from, so the person knows which setting to fix."""
        secret = "token" if self.auth == "xoauth2" else "password"
        source = self.token_source if secret == "token" else self.password_source
        origin = f"; the {secret} came from {source.described()}" if source is not None else ""
        return AuthError(f"{where} refused the login of {self.username} ({detail}){origin}")


def _fetch(source: SecretSource | None, role: str, name: str) -> str:
    if source is None:
        raise ConfigError(f"[{role}] {name}_env / {name}_command: missing: say where the secret comes from")
    return source.fetch()


def looks_like_address(text: str) -> bool:
    """A bare address (local@domain) with nothing that could smuggle in a header."""
    if text.count("@") != 1 or any(c.isspace() or c in '<>,;"\\()[]' or ord(c) < 32 for c in text):
        return False
    local, _, domain = text.partition("@")
    return bool(local) and bool(domain) and len(text) <= 254


def xoauth2_string(username: str, token: str) -> str:
    """The XOAUTH2 initial client response (before base64), per Google and Microsoft."""
    return f"user={username}\x01auth=Bearer {token}\x01\x01"


def check_credentials_protected(endpoint: Endpoint, account: Account) -> None:
    """Refuse to send a password or token in the clear over a real network."""
    if account.auth != "none" and endpoint.security == "none" and not endpoint.is_loopback:
        raise ConfigError(f"[{endpoint.protocol}] security = none would send the "
                          f"{account.role}'s credentials unencrypted to {endpoint.host}; "
                          "use tls or starttls")


# -- error mapping ----------------------------------------------------------

def network_error(endpoint: Endpoint, exc: BaseException) -> AnimalIdError:
    """The error for a failure below the mail protocol (TCP, DNS, TLS)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(f"{endpoint.where}: certificate not trusted "
                              f"({exc.verify_message}); check [{endpoint.protocol}] ca_file")
    if isinstance(exc, socket.gaierror):
        return UnreachableError(f"{endpoint.where}: host name not found")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return UnreachableError(f"{endpoint.where}: timed out")
    if isinstance(exc, ConnectionRefusedError):
        hint = (f". Is the local mail hub running? Start it with: {endpoint.hub_hint}"
                if endpoint.hub_hint else "")
        return UnreachableError(f"{endpoint.where}: connection refused{hint}")
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return UnreachableError(f"{endpoint.where}: {reason}")


def smtp_error(endpoint: Endpoint, exc: BaseException, account: "Account | None" = None) -> AnimalIdError:
    """Map an smtplib or socket failure to the error tree; a refused login names ``account``."""
    if isinstance(exc, AnimalIdError):
        return exc
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        if 400 <= exc.smtp_code < 500:  # 454: temporary authentication failure
            return TransientError(f"{endpoint.where}: login failed for now: {_reply_text(exc)}")
        return _login_refused(endpoint, account, f"{exc.smtp_code} {_reply_text(exc)}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(f"<{rcpt}>: {code} {server_text(msg)}" for rcpt, (code, msg) in exc.recipients.items())
        if all(400 <= code < 500 for code in codes):
            return RecipientDeferred(f"{endpoint.where}: recipient deferred: {detail}")
        return MessageRejected(f"{endpoint.where}: recipient refused: {detail}")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return UnreachableError(f"{endpoint.where}: connection closed ({exc or 'no reason given'})")
    if isinstance(exc, smtplib.SMTPConnectError):
        return UnreachableError(f"{endpoint.where}: refused the session ({exc.smtp_code})")
    if isinstance(exc, (smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) and exc.smtp_code >= 500 \
            and exc.smtp_code not in (530, 534, 535):
        stage = "sender" if isinstance(exc, smtplib.SMTPSenderRefused) else "message"
        return MessageRejected(f"{endpoint.where}: {stage} refused: {exc.smtp_code} {_reply_text(exc)}")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_reply_code(endpoint, exc.smtp_code, _reply_text(exc), account)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentError(f"{endpoint.where}: {exc}")
    if isinstance(exc, (OSError, ssl.SSLError)):
        return network_error(endpoint, exc)
    if isinstance(exc, smtplib.SMTPException):
        return TransientError(f"{endpoint.where}: {exc}")
    raise exc


def _login_refused(endpoint: Endpoint, account: "Account | None", detail: str) -> AuthError:
    if account is None:
        return AuthError(f"{endpoint.where} refused the login ({detail})")
    return account.login_refused(endpoint.where, detail)


def _by_reply_code(endpoint: Endpoint, code: int, text: str, account: "Account | None" = None) -> AnimalIdError:
    if code == 535 or code == 534 or code == 530:
        return _login_refused(endpoint, account, f"{code} {text}")
    if 400 <= code < 500 or code < 200:
        return TransientError(f"{endpoint.where}: {code} {text}")
    return PermanentError(f"{endpoint.where}: {code} {text}")


def _reply_text(exc: smtplib.SMTPResponseException) -> str:
    return server_text(exc.smtp_error)


# -- sending ----------------------------------------------------------------

class SmtpSender:
    """One authenticated SMTP session, opened on first use and reused.

    Reusing the session matters for bursts: a TLS handshake and AUTH cost
    more than sending a small reply. A session idle for a while is checked
    with NOOP first, and a dropped one is reopened once.
    """

    def __init__(self, endpoint: Endpoint, account: Account):
        check_credentials_protected(endpoint, account)
        self.endpoint = endpoint
        self.account = account
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0

    def __enter__(self) -> "SmtpSender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, message: EmailMessage, recipients: list[str] | None = None) -> None:
        """Hand one message to the server; the envelope sender is our own address."""
        try:
            smtp = self._session()
            smtp.send_message(message, from_addr=self.account.address, to_addrs=recipients)
            self._last_used = time.monotonic()
        except (smtplib.SMTPException, OSError) as exc:
            error = smtp_error(self.endpoint, exc, self.account)
            if isinstance(error, TransientError) or isinstance(exc, smtplib.SMTPServerDisconnected):
                self._discard()
            raise error from None

    def verify_login(self) -> None:
        """Open the session now, so a wrong password shows before any work."""
        try:
            self._session()
        except (smtplib.SMTPException, OSError) as exc:
            self._discard()
            raise smtp_error(self.endpoint, exc, self.account) from None

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def _discard(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    def _session(self) -> smtplib.SMTP:
        if self._smtp is not None and time.monotonic() - self._last_used > SMTP_REUSE_CHECK_AFTER_S:
            if not self._still_open(self._smtp):
                self._discard()
        if self._smtp is None:
            self._smtp = self._connect()
            self._last_used = time.monotonic()
        return self._smtp

    @staticmethod
    def _still_open(smtp: smtplib.SMTP) -> bool:
        try:
            return smtp.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            return False

    def _connect(self) -> smtplib.SMTP:
        endpoint = self.endpoint
        log.debug("connecting to %s (%s)", endpoint.where, endpoint.security)
        if endpoint.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(endpoint.host, endpoint.port, timeout=endpoint.timeout,
                                    context=endpoint.tls_context())
        else:
            smtp = smtplib.SMTP(endpoint.host, endpoint.port, timeout=endpoint.timeout)
        try:
            smtp.ehlo()
            if endpoint.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise PermanentError(f"{endpoint.where} does not offer STARTTLS; refusing "
                                         "to continue unencrypted (use security = tls?)")
                smtp.starttls(context=endpoint.tls_context())
                smtp.ehlo()
            self._authenticate(smtp)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _authenticate(self, smtp: smtplib.SMTP) -> None:
        account = self.account
        if account.auth == "none":
            return
        offered = (smtp.esmtp_features.get("auth") or "").upper().split()
        if account.auth == "xoauth2":
            if "XOAUTH2" not in offered:
                raise AuthError(f"{self.endpoint.where} does not offer AUTH XOAUTH2")
            initial = xoauth2_string(account.username, account.token())
            replies = iter([initial])
            # On failure the server sends a JSON error as a 334 challenge; the
            # client must answer with an empty line to get the final 5xx.
            smtp.auth("XOAUTH2", lambda challenge=None: next(replies, ""))
            return
        smtp.user, smtp.password = account.username, account.password()
        for mechanism, method in (("PLAIN", smtp.auth_plain), ("LOGIN", smtp.auth_login)):
            if mechanism in offered:
                smtp.auth(mechanism, method)
                return
        raise AuthError(f"{self.endpoint.where} offers neither AUTH PLAIN nor LOGIN "
                        f"(offers: {' '.join(offered) or 'no AUTH at all'})")


def send_with_retry(action: Callable[[], T], attempts: int = 4, base_delay: float = 1.0,
                    max_delay: float = 30.0, sleep: Callable[[float], None] = time.sleep,
                    what: str = "send") -> T:
    """Run ``action``; retry TransientError with capped exponential backoff.

    Permanent errors (including AuthError) propagate at once; the last
    transient error propagates once the attempts are used up.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except TransientError as exc:
            if attempt >= attempts:
                raise
            delay = backoff_delay(attempt, base_delay, max_delay)
            log.warning("%s failed (%s); retry %d/%d in %.1f s", what, exc, attempt,
                        attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")


def backoff_delay(attempt: int, base_delay: float, max_delay: float) -> float:
    """base, 2*base, 4*base ... never above max_delay (attempt counts from 1)."""
    return float(min(max_delay, base_delay * (2 ** max(0, attempt - 1))))

