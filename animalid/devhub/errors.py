"""The hub's own errors: why it cannot start or answer, in one line for humans.

Both are ``PermanentError``s with the usage exit status, so the command line
(``animalid.cli.hub``) reports them as ``mailhub: error: ...`` and exits 2.
"""

from __future__ import annotations

from animalid.errors import ExitStatus, PermanentError

INSTALL_HINT = (
    "apt-get install dovecot-core dovecot-imapd dovecot-pop3d dovecot-lmtpd"
)


class HubError(PermanentError):
    """The hub cannot start (or answer); the message is one line for humans."""

    exit_status = ExitStatus.USAGE


class HubAlreadyRunning(HubError):
    """Another hub process already owns this state folder."""
