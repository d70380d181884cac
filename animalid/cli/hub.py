"""``.venv/bin/python -m animalid.mailhub`` / ``animalid-hub``: run the local mail hub until Ctrl-C.

Starts Dovecot and the SMTP front (``animalid.devhub``) with the settings of
config.ini ``[hub]`` (``--config``; without any file, the defaults table), with
the flags on top, prints one ``mailhub ready: ...`` line and serves until
SIGINT or SIGTERM. Each service listens on its standard port plus
``--port-offset``: SMTP-MX 25->1025, submissions 465->1465, submission
587->1587, POP3 110->1110, IMAP 143->1143, IMAPS 993->1993, POP3S 995->1995.

``.venv/bin/python -m animalid.mailhub secret client1 [--state DIR]`` prints an
account's password (``STATE/secrets/client1``). Errors are one line,
``mailhub: error: ...``, and exit status 2 (see ``animalid.cli.runner``).
"""

from __future__ import annotations

import argparse
import configparser
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Optional

from animalid.cli.runner import run_command, setup_logging
from animalid.config import DEFAULT_CONFIG, DEFAULTS, Config, load_config
from animalid.devhub import HubError, MailHub, hub_settings
from animalid.devhub.accounts import local_part, read_secret
from animalid.devhub.hub import DEFAULT_MAX_MESSAGE_BYTES
from animalid.errors import ExitStatus

PROG = "mailhub"

log = logging.getLogger(__name__)


def _hub_config(path: Optional[str]) -> Config:
    """``--config``, else config.ini when present. With no file at all, an
    empty one: [hub] then comes from the defaults table through the same
    hub_settings(), and state_dir is relative to the working folder."""
    if path:
        return load_config(path)
    if DEFAULT_CONFIG.exists():
        return load_config(DEFAULT_CONFIG)
    return Config(Path.cwd() / "(no config file)", configparser.ConfigParser(interpolation=None))


def _settings_for(args) -> dict:
    """[hub] from the settings file (or the defaults table), then the flags on top."""
    settings = hub_settings(_hub_config(args.config))
    flags = {"state_dir": args.state, "listen": getattr(args, "listen", None),
             "port_offset": getattr(args, "port_offset", None), "domain": getattr(args, "domain", None),
             "clients": tuple(args.client) if getattr(args, "client", None) else None}
    settings.update({key: value for key, value in flags.items() if value is not None})
    return settings


def _parser() -> argparse.ArgumentParser:
    defaults = DEFAULTS["hub"]
    p = argparse.ArgumentParser(
        prog=".venv/bin/python -m animalid.mailhub",
        # Written out: argparse would show the optional "secret" command as a required "{secret} ...".
        usage="%(prog)s [-h] [--config FILE] [--state DIR] [--listen ADDRESS] [--port-offset N]\n"
              "              [--client NAME] [--domain DOMAIN] [--hostname NAME] [--max-message-bytes N] [-v]\n"
              "       %(prog)s secret NAME [--state DIR]",
        description="Run the local mail hub (Dovecot IMAP/POP3 + SMTP) until Ctrl-C or SIGTERM; "
                    "with 'secret NAME', print that account's password instead.",
    )
    p.add_argument("--config", metavar="FILE",
                   help="settings file whose [hub] section gives the defaults below "
                        "(default: config.ini beside the programs)")
    p.add_argument("--state", metavar="DIR",
                   help=f"state folder (default: [hub] state_dir, else {defaults['state_dir']})")
    p.add_argument("--listen", metavar="ADDRESS",
                   help=f"address to listen on (default: [hub] listen, else {defaults['listen']})")
    p.add_argument("--port-offset", type=int, metavar="N",
                   help=f"added to each standard port (default: [hub] port_offset, else {defaults['port_offset']})")
    p.add_argument("--client", action="append", metavar="NAME",
                   help=f"client account (repeatable; default: [hub] clients, else {defaults['clients']})")
    p.add_argument("--domain", help=f"mail domain (default: [hub] domain, else {defaults['domain']})")
    p.add_argument("--hostname", metavar="NAME", help="extra DNS name for the server certificate")
    p.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES, metavar="N",
                   help="largest message accepted (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every SMTP connection too")
    sub = p.add_subparsers(dest="command", title="command (optional)", metavar="secret NAME [--state DIR]",
                           help="print an account's password (once the hub has run)")
    s = sub.add_parser("secret", prog=f"{p.prog} secret",
                       description="Print the password of a hub account (written when the hub first ran).")
    s.add_argument("name", help="local part (client1) or full address")
    # SUPPRESS: otherwise the subcommand's default would overwrite a --state
    # given before the subcommand name.
    s.add_argument("--state", metavar="DIR", default=argparse.SUPPRESS, help="state folder (default: as above)")
    s.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="settings file whose [hub] state_dir is used (default: as above)")
    return p


def _secret(args) -> int:
    state = Path(_settings_for(args)["state_dir"])
    password = read_secret(state, local_part(args.name))
    if password is None:
        raise HubError(f"no password for {args.name!r} in {state}/secrets (start the hub once first)")
    print(password)
    return ExitStatus.OK


def _serve(args) -> int:
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
    status = ExitStatus.OK
    try:
        print(hub.ready_line(), flush=True)
        while not stop.wait(0.5):
            if not hub.dovecot_running():
                log.error("dovecot exited unexpectedly; see %s/dovecot.log", hub.state)
                status = ExitStatus.ERROR
                break
    finally:
        hub.stop()
    log.info("mailhub stopped")
    return status


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "secret":
        return run_command(PROG, lambda: _secret(args), args.verbose)
    setup_logging(args.verbose)
    return run_command(PROG, lambda: _serve(args), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
