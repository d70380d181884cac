"""``client.py`` / ``animalid-client`` (PC 1): mail a photo to the animal server and print what it says.

Sends the photos as one request (SMTP) to [client] server_address and waits
for the reply by IMAP IDLE or POP3 polling. Light on purpose: no PyTorch, no
OpenCV at start-up, so it runs on small boards. See animalid/client/requester.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time

from animalid.cli.runner import run_command, setup_logging
from animalid.client import capture
from animalid.client.files import read_images
from animalid.config import DEFAULT_CONFIG, load_config
from animalid.errors import ExitStatus

PROG = "client.py"
SPINNER = "|/-\\"

DESCRIPTION = """\
Identify the animal in a photo: the photo is mailed to the animal server
(server.py on another machine), and its answer is printed when it arrives.

Settings live in config.ini (default: the one beside this program):
  [client]  your address and login (password_env / password_command, or
            auth = xoauth2 with token_command), server_address, how to wait
            (receive = imap | pop3, poll_interval) and timeout
  [smtp] [imap] [pop3]  the mail servers (host, port, security, ca_file)
  [camera]  webcam source, resolution, JPEG quality and size, save_dir
  [security]  optional signing/encryption keys shared with the server
Without --image the webcam is used, where that module is installed.
"""

EPILOG = """\
exit status: 0 answered, 1 error (e.g. unreadable image), 2 bad settings,
3 no answer in time, 4 login refused, 5 mail server unreachable, 130 Ctrl-C.
example:
  python client.py --image tiger.jpg --image dog.png
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", metavar="PATH", action="append", default=[],
                        help="photo to identify (repeat for several; all go in one mail)")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help=f"settings file (default: {DEFAULT_CONFIG.name} beside client.py)")
    parser.add_argument("--json", action="store_true",
                        help="print the answers as JSON (a list, one object per image)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="give up after this long (default: [client] timeout)")
    parser.add_argument("--receive", choices=("imap", "pop3"),
                        help="override [client] receive: imap (IDLE) or pop3 (polling)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log protocol steps to stderr")
    # The camera's options; the module imports OpenCV only when the camera opens.
    capture.add_capture_arguments(parser)
    return parser


def opencv_available() -> bool:
    """Whether OpenCV (the webcam and its window) is installed on this machine."""
    return importlib.util.find_spec("cv2") is not None


class Progress:
    """Shows that the client is waiting: a spinner on a terminal, one line otherwise."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.interactive = stream.isatty()
        self.shown = False

    def start(self, server: str, timeout: float) -> None:
        if not self.interactive:
            print(f"waiting for the answer from {server} (up to {timeout:g} s) ...",
                  file=self.stream, flush=True)

    def tick(self, elapsed: float) -> None:
        if self.interactive:
            frame = SPINNER[int(elapsed * 8) % len(SPINNER)]
            self.stream.write(f"\r{frame} waiting for the answer ... {elapsed:5.1f} s")
            self.stream.flush()
            self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 50 + "\r")
            self.stream.flush()


def identify(config, args) -> int:
    from animalid.client.requester import Requester
    from animalid.contract import render_answers

    images = read_images(args.image)
    progress = Progress()
    with Requester(config, receive=args.receive) as requester:
        timeout = args.timeout if args.timeout is not None else requester.timeout
        started = time.monotonic()
        message_id = requester.send(images)
        progress.start(requester.server_address, timeout)
        try:
            answers = requester.wait([message_id], timeout=timeout, on_tick=progress.tick)[message_id]
        finally:
            progress.done()
    if args.json:
        print(json.dumps(answers, ensure_ascii=False, indent=2))
    else:
        print(render_answers(answers))
        if args.verbose:
            print(f"(answered in {time.monotonic() - started:.2f} s)", file=sys.stderr)
    return ExitStatus.OK


def camera(config, args) -> int:
    if not opencv_available():
        print(f"{PROG}: camera capture needs OpenCV (pip install -r requirements/client.txt); "
              f"or use --image PATH", file=sys.stderr)
        return ExitStatus.USAGE
    return int(capture.run(config, args) or 0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        setup_logging(verbose=True)
    if args.timeout is not None and args.timeout <= 0:
        print(f"{PROG}: error: --timeout must be above 0", file=sys.stderr)
        return ExitStatus.USAGE

    def body() -> int:
        config = load_config(args.config)
        if not args.image:
            return camera(config, args)
        return identify(config, args)

    return run_command(PROG, body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
