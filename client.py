#!/usr/bin/env python3
"""client.py (PC 1): mail a photo to the animal server and print what it says.

Sends the photos as one request (SMTP) to [client] server_address and waits
for the reply by IMAP IDLE or POP3 polling. Light on purpose: no PyTorch, no
OpenCV at start-up, so it runs on small boards. See animalid/requester.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

from animalid.config import DEFAULT_CONFIG, load_config
from animalid.errors import AnimalIdError, ExitStatus

MAX_IMAGE_BYTES = 25_000_000
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
        prog="client.py", description=DESCRIPTION, epilog=EPILOG,
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
    capture = _capture_module()
    if capture is not None:  # its options; it imports OpenCV only when the camera opens
        capture.add_capture_arguments(parser)
    return parser


def _capture_module():
    """animalid.capture (the webcam front end) when it is installed, else None."""
    if importlib.util.find_spec("animalid.capture") is None:
        return None
    from animalid import capture

    return capture


def read_images(paths: list[str]) -> list[tuple[str, bytes]]:
    """(name, bytes) for each path, or AnimalIdError naming the file that cannot be used."""
    from animalid.messages import image_type_of

    images = []
    for raw in paths:
        path = Path(raw)
        try:
            size = path.stat().st_size
            if path.is_dir():
                raise AnimalIdError(f"{raw}: is a folder, not an image")
            if size == 0:
                raise AnimalIdError(f"{raw}: the file is empty")
            if size > MAX_IMAGE_BYTES:
                raise AnimalIdError(f"{raw}: too large ({size / 1e6:.1f} MB; at most "
                                    f"{MAX_IMAGE_BYTES / 1e6:.0f} MB)")
            data = path.read_bytes()
        except FileNotFoundError:
            raise AnimalIdError(f"{raw}: no such file") from None
        except PermissionError:
            raise AnimalIdError(f"{raw}: permission denied") from None
        except OSError as exc:
            raise AnimalIdError(f"{raw}: cannot read: {exc.strerror or exc}") from None
        if not image_type_of(data, path.name).startswith("image/"):
            raise AnimalIdError(f"{raw}: not an image file (JPEG, PNG, GIF, BMP, TIFF or WebP)")
        images.append((path.name, data))
    return images


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
    from animalid.answer import render_answers
    from animalid.requester import Requester

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
    capture = _capture_module()
    if capture is None:
        print("client.py: camera capture is not available; use --image PATH", file=sys.stderr)
        return ExitStatus.USAGE
    return int(capture.run(config, args) or 0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.getLogger("animalid").setLevel(logging.DEBUG)
    if args.timeout is not None and args.timeout <= 0:
        print("client.py: error: --timeout must be above 0", file=sys.stderr)
        return ExitStatus.USAGE
    try:
        config = load_config(args.config)
        if not args.image:
            return camera(config, args)
        return identify(config, args)
    except KeyboardInterrupt:
        print("\nclient.py: interrupted", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except AnimalIdError as exc:
        print(f"client.py: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except Exception as exc:  # a bug or an OS failure: one line, not a traceback
        print(f"client.py: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return ExitStatus.ERROR


if __name__ == "__main__":
    sys.exit(int(main()))
