"""``server.py`` / ``animalid-server`` (PC 2): answer photos that arrive by mail with what animal they show.

Watches the mailbox of config.ini [server] by IMAP IDLE or POP3 polling, runs
the classifier on every image of every allowed request, and replies by SMTP
with a readable text and the answers as JSON. See animalid/server/service.py for the
rules (RFC 3834 automatic replies, deduplication, rate limits, retries).
"""

from __future__ import annotations

import argparse
import signal
import sys

from animalid.cli.runner import run_command, setup_logging
from animalid.config import DEFAULT_CONFIG, Config, load_config
from animalid.errors import ExitStatus, PermanentError

PROG = "server.py"

DESCRIPTION = """\
Watch a mailbox, identify the animal in every photo that arrives, and answer
each request by mail (a readable text plus the answers as JSON).

Settings live in config.ini (default: the one beside this program):
  [server]  the mailbox address, login (password or xoauth2 token, taken from
            password_env / password_command, never from the file itself),
            how to watch it (receive = imap | pop3, poll_interval), who may
            ask (allowed_senders), limits, rate limit, state_file
  [imap] [pop3] [smtp]  the mail servers (host, port, security, ca_file)
  [classifier]  the model and answer thresholds
  [security]  optional HMAC signatures and AES-GCM encryption shared with the
            clients (keys from *_env / *_command); with a key set, unsigned
            requests are refused
Any number of servers with the same settings, on one machine or many, may
share an IMAP mailbox: each claims requests by IMAP MOVE into claims_folder,
and a dead server's claims go back to the queue after claim_lease seconds.
They share one ledger: SQLite at state_file (one machine) or PostgreSQL
([server] ledger = postgresql://..., several machines). With receive = pop3
only one server may watch a mailbox (POP3 cannot claim a message).
"""

EPILOG = """\
exit status: 0 done (--once) or stopped, 1 error, 2 bad settings,
4 login refused, 5 mail server unreachable, 130 interrupted (Ctrl-C).
examples:
  .venv/bin/python server.py                    serve until Ctrl-C
  .venv/bin/python server.py --once             answer what is waiting, then exit (cron)
  .venv/bin/python server.py --receive pop3 -v  poll by POP3 and log more
  .venv/bin/python server.py --status           queue, servers, claims, recent outcomes
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"settings file (default: {DEFAULT_CONFIG.name} beside server.py)")
    parser.add_argument("--once", action="store_true",
                        help="handle the mail waiting now, then exit (for cron)")
    parser.add_argument("--status", action="store_true",
                        help="print the queue, the claims each server holds and recent outcomes, then exit")
    parser.add_argument("--receive", choices=("imap", "pop3"),
                        help="override [server] receive: imap (IDLE) or pop3 (polling)")
    parser.add_argument("--backend", choices=("auto", "onnx", "torch"),
                        help="override [classifier] backend: onnx (ONNX Runtime on the CPU), "
                             "torch (PyTorch) or auto (onnx when exported, torch on a GPU)")
    parser.add_argument("--export", metavar="FILE",
                        help="write the trail cameras' observations (one row per photo) to FILE "
                             "('-' for standard output), then exit (docs/trail-cameras.md)")
    parser.add_argument("--since", metavar="AGE", default="",
                        help="with --export: only photos taken in the last AGE, e.g. 7d, 12h, 30m "
                             "(default: all)")
    parser.add_argument("--format", choices=("csv", "json"), default=None,
                        help="with --export: csv or json (default: from FILE's ending, else csv)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (debug level)")
    return parser


def export_observations(config: Config, target: str, start: float, fmt: str | None) -> int:
    """--export: the ledger's observations taken since ``start`` as CSV or JSON."""
    from animalid.cli import settings as edge
    from animalid.server.ledger import open_ledger
    from animalid.server.trail.export import export_text

    fmt = fmt or ("json" if target.lower().endswith(".json") else "csv")
    where = edge.ledger_settings(config)
    if not where.url and not where.state_file.exists():
        raise PermanentError(f"{where.state_file}: no ledger there yet ([server] state_file): the server "
                             "has recorded no observation with this config")
    with open_ledger(where) as ledger:
        rows = ledger.observations(start, by_taken=True)
    text = export_text(rows, fmt)
    if target == "-":
        sys.stdout.write(text)
    else:
        try:
            with open(target, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
        except OSError as exc:
            raise PermanentError(f"--export {target}: cannot write: {exc.strerror or exc}") from None
        print(f"{len(rows)} observation(s) written to {target} ({fmt})", file=sys.stderr)
    return ExitStatus.OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    since = 0.0
    if (args.since or args.format) and not args.export:
        parser.error("--since and --format go with --export FILE")
    if args.since:
        import time

        from animalid.server.trail.settings import parse_duration

        try:
            since = time.time() - parse_duration(args.since)
        except ValueError as exc:
            parser.error(f"--since: {exc}")
    setup_logging(args.verbose)
    server = None

    def on_sigterm(signum, frame):
        # systemd / docker stop: finish the message at hand, then exit 0.
        if server is None:
            raise KeyboardInterrupt
        server.stop()

    def body() -> int:
        nonlocal server
        from animalid.cli import settings as edge

        config = load_config(args.config)
        if args.export:
            return export_observations(config, args.export, since, args.format)
        if args.status:
            from animalid.server.status import status_report

            settings = edge.server_settings(config, args.receive)
            print(status_report(settings, edge.mailbox(config, "server", settings.receive)))
            return ExitStatus.OK
        server = edge.server(config, receive=args.receive, backend=args.backend)
        operations = None
        if not args.once:  # a cron run ends before anyone could look at a page
            from animalid.cli.operations import build_labels, start_operations

            web = edge.web_settings(config)
            if web.enabled:
                operations = start_operations(server, web, *build_labels(config))
        try:
            server.open()
            if operations is not None:  # [classifier] backend = auto: now it is known
                operations.metrics.set_build(backend=getattr(server.classifier, "backend", "torch"))
            server.run(once=args.once)
        finally:
            try:
                server.close()
            except KeyboardInterrupt:
                pass
            finally:
                if operations is not None:
                    operations.close()
        return ExitStatus.OK

    signal.signal(signal.SIGTERM, on_sigterm)
    return run_command(PROG, body, args.verbose, interrupted_text="stopped")


if __name__ == "__main__":
    sys.exit(main())
