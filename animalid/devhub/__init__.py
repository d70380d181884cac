"""The local mail hub for development and tests: Dovecot plus an SMTP front, on loopback.

Apart from the runtime: it imports only animalid.config, animalid.errors and animalid.pidlock, and no
runtime module imports it (the import contracts in pyproject.toml say so). Its
command line is ``python -m animalid.mailhub`` (``animalid.cli.hub``).

The hub runs, on loopback by default:

* Dovecot (IMAP and POP3, each plain+STARTTLS and implicit TLS, and LMTP on
  a unix socket, RFC 2033), from a configuration written here, never the
  system's (``dovecot.py``);
* an SMTP front (aiosmtpd, RFC 5321) with three listeners -- submission with
  STARTTLS (RFC 3207) and AUTH (RFC 4954), submissions behind implicit TLS
  (RFC 8314), and an MX-style listener without AUTH -- that hand every message
  to Dovecot over LMTP and answer 250 only once Dovecot has stored it
  (``smtp_front.py``, ``lmtp.py``).

Each service listens on its standard port plus a port offset (``ports.py``).
For fault-injection tests, ``MailHub.fail_smtp(code, for_seconds, senders)``
makes the SMTP front answer MAIL FROM with ``code`` for a while (``faults.py``).

The state folder keeps everything:

* ``ca.pem`` -- the hub's own CA; the one file clients need to verify TLS;
* ``tls/`` -- the CA key and the server certificate and key (``tls.py``);
* ``secrets/<local-part>`` -- one generated password per account (mode 0600,
  no trailing newline, so ``password_command = cat .mailhub/secrets/client1``
  works as is; ``accounts.py``);
* ``mail/<address>/`` -- the Maildir of each account;
* ``hub.json`` -- domain, ports, CA file and accounts (no passwords);
* ``dovecot.conf``, ``users``, ``dovecot.log`` -- the Dovecot side;
* ``hub.lock`` -- one hub per state folder (``state.py``).

Accounts are ``server@DOMAIN`` plus one per client name. Accounts only ever
get added: a client named on an earlier start keeps its password and stays
active (delete its file under ``secrets/`` to drop it).
"""

from .errors import HubAlreadyRunning, HubError
from .hub import MailHub, hub_settings, start_on_free_offset

__all__ = ["HubAlreadyRunning", "HubError", "MailHub", "hub_settings", "start_on_free_offset"]
