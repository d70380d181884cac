"""One command for the whole story on one machine: hub, server, client, answer.

``.venv/bin/python -m animalid.demo PHOTO...`` (or ``make demo``) starts the local mail
hub from config.ini [hub] (or uses the one already running on that state
folder), starts the server on its mailbox, mails the photos from the client
account exactly as ``client.py --image`` would, prints the server's answer and
shuts down what it started. Everything travels through real SMTP, IMAP and
Dovecot on loopback; nothing is shortcut.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from contextlib import ExitStack

from animalid.cli.runner import run_command, setup_logging
from animalid.config import load_config
from animalid.contract import render_answers
from animalid.errors import ExitStatus

log = logging.getLogger(__name__)


def start_or_reuse_hub(config):
    """A started MailHub we own, or None when one already runs on the state folder."""
    from animalid.devhub import HubAlreadyRunning, MailHub, hub_settings

    hub = MailHub(**hub_settings(config))
    try:
        hub.start()
    except HubAlreadyRunning:
        print(f"demo: using the mail hub that is already running ({hub.state})", file=sys.stderr)
        return None
    print(f"demo: {hub.ready_line()}", file=sys.stderr)
    return hub


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python -m animalid.demo",
        description="Identify photos through the local mail hub: starts the hub and the server, "
                    "mails the photos from the client account and prints the answer.")
    parser.add_argument("photos", nargs="+", metavar="PHOTO", help="image files to identify")
    parser.add_argument("--config", metavar="FILE", help="settings file (default: config.ini)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the answer")
    parser.add_argument("--serve", action="store_true",
                        help="after the answer, keep the server and its operations page ([web] listen) "
                             "running until Ctrl-C")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the server does")
    args = parser.parse_args(argv)
    setup_logging(args.verbose, logging.INFO if args.verbose else logging.WARNING)
    return run_command("demo", lambda: identify_through_hub(args), args.verbose)


def identify_through_hub(args: argparse.Namespace) -> int:
    from animalid.cli import settings as edge
    from animalid.client.files import read_images
    from animalid.server.service import serving_in_background

    images = read_images(args.photos)
    config = load_config(args.config)
    with ExitStack() as cleanup:
        hub = start_or_reuse_hub(config)
        if hub is not None:
            cleanup.callback(hub.stop)
        print("demo: loading the classifier and starting the server ...", file=sys.stderr)
        server = edge.server(config)
        web = edge.web_settings(config)
        if web.enabled:
            from animalid.cli.operations import build_labels, start_operations

            operations = start_operations(server, web, *build_labels(config))
            cleanup.callback(operations.close)
            if operations.url:
                print(f"demo: operations page at {operations.url}", file=sys.stderr)
        cleanup.enter_context(serving_in_background(server.open()))
        backend = getattr(server.classifier, "backend", "torch")
        if web.enabled:
            operations.metrics.set_build(backend=backend)
        print(f"demo: the server classifies with the {backend} backend", file=sys.stderr)
        with edge.requester(config) as requester:
            started = time.monotonic()
            message_id = requester.send(images)
            print(f"demo: mailed {len(images)} photo(s) as {message_id}; waiting ...", file=sys.stderr)
            answers = requester.wait([message_id], timeout=args.timeout)[message_id]
        print(f"demo: answered in {time.monotonic() - started:.2f} s\n", file=sys.stderr)
        print(render_answers(answers))
        if args.serve:
            print("demo: serving until Ctrl-C (client.py --image PHOTO sends more)", file=sys.stderr, flush=True)
            server.stop_event.wait()
    return ExitStatus.OK


if __name__ == "__main__":
    sys.exit(main())
