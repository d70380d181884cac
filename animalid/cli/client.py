"""``client.py`` / ``animalid-client`` (PC 1): mail a photo to the animal server and print what it says.

Sends the photos as one request (SMTP) to [client] server_address and waits
for the reply by IMAP IDLE or POP3 polling, showing the time waited and, when
the answer is long overdue, that the server may not be running. A request
left unanswered is kept on record ([client] state_file, pending.py): the next
run, or ``--collect``, shows its late answer and removes it from the INBOX.
Light on purpose: no PyTorch, no OpenCV at start-up, so it runs on small
boards. See animalid/client/requester.py.
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
# How hints write a command to copy: with the virtual environment's Python (README).
RUN = ".venv/bin/python client.py"
SPINNER = "|/-\\"
# When to say that the server may not be running. A round trip takes 0.2-1.2 s
# on the local hub and a few seconds through Gmail or Outlook (README, "Speed"):
# 30 s is many normal trips, yet well inside the 120 s default timeout, so a
# person learns early. It says "may": a server polling Gmail by POP3 once a
# minute can take up to two minutes.
HINT_AFTER_S = 30.0
# Without a terminal (logs, pipes) the time waited is one line this often.
PROGRESS_EVERY_S = 15.0

DESCRIPTION = """\
Identify the animal in a photo: the photo is mailed to the animal server
(server.py on another machine), and its answer is printed when it arrives.

Settings live in config.ini (default: the one beside this program):
  [client]  your address and login (password_env / password_command, or
            auth = xoauth2 with token_command), server_address, how to wait
            (receive = imap | pop3, poll_interval), timeout, and state_file
            (requests still waiting: their late answers show on the next run)
  [smtp] [imap] [pop3]  the mail servers (host, port, security, ca_file)
  [camera]  webcam source, resolution, JPEG quality and size, save_dir
  [security]  optional signing/encryption keys shared with the server
Without --image the webcam is used (it needs OpenCV, from requirements/client.txt).
"""

EPILOG = """\
exit status: 0 answered, 1 error (e.g. unreadable image), 2 bad settings,
3 no answer in time, 4 login refused, 5 mail server unreachable, 130 Ctrl-C.
examples:
  .venv/bin/python client.py --image tiger.jpg --image dog.png
  .venv/bin/python client.py --collect      # answers that came after an earlier run gave up
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
                        help="print the answers as JSON: one list, one object per image, each with "
                             "\"late\": true for an answer to an earlier request (with its \"request\" "
                             "Message-ID and \"sent\" time) or false for this one")
    parser.add_argument("--collect", action="store_true",
                        help="only fetch and print the answers to earlier requests that came "
                             "after client.py stopped waiting (and remove them from the INBOX)")
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
    """Shows that the client is waiting and for how long: a spinner with the seconds on a
    terminal, a line every PROGRESS_EVERY_S otherwise; after HINT_AFTER_S, once, that the
    server may not be running and that the answer will still come."""

    def __init__(self, stream=sys.stderr, hint_after: float = HINT_AFTER_S,
                 every: float = PROGRESS_EVERY_S):
        self.stream = stream
        self.interactive = stream.isatty()
        self.hint_after = hint_after
        self.every = every
        self.shown = False
        self.hinted = False
        self.server = ""
        self._next_line = every

    def start(self, server: str, timeout: float) -> None:
        self.server = server
        if not self.interactive:
            print(f"waiting for the answer from {server} (up to {timeout:g} s) ...",
                  file=self.stream, flush=True)

    def tick(self, elapsed: float) -> None:
        if elapsed >= self.hint_after and not self.hinted:
            self.hinted = True
            self._clear()
            print(hint_text(self.server, elapsed), file=self.stream, flush=True)
        if self.interactive:
            frame = SPINNER[int(elapsed * 8) % len(SPINNER)]
            self.stream.write(f"\r{frame} waiting for the answer ... {elapsed:5.1f} s")
            self.stream.flush()
            self.shown = True
        elif elapsed >= self._next_line:
            self._next_line = (int(elapsed // self.every) + 1) * self.every
            print(f"still waiting for the answer: {elapsed:.0f} s", file=self.stream, flush=True)

    def done(self) -> None:
        self._clear()

    def _clear(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 50 + "\r")
            self.stream.flush()
            self.shown = False


def hint_text(server: str, elapsed: float) -> str:
    return (f"no answer after {elapsed:.0f} s: the server ({server}) may not be running. "
            f"Your photo waits in its mailbox and the answer will still come: "
            f"{RUN} --collect (or your next {PROG} run) shows it.")


def show_late(found, waiting: dict, stream=sys.stdout) -> None:
    """Print the late answers of earlier requests as text, each under the request it answers."""
    from animalid.contract import render_answers

    for message_id, answers in found:
        entry = waiting[message_id]
        print(f"Late answer to your request of {entry.sent_text} ({', '.join(entry.files)}):",
              file=stream)
        print(render_answers(answers) + "\n", file=stream)


def marked(answers: list[dict], late: bool, message_id: str = "", sent: str = "") -> list[dict]:
    """The answers as --json prints them: each says whether it is late, and a late one
    names the request it answers (its Message-ID) and when that was sent."""
    extra = {"late": late, **({"request": message_id, "sent": sent} if late else {})}
    return [{**answer, **extra} for answer in answers]


def late_json(found, waiting: dict) -> list[dict]:
    return [answer for message_id, answers in found
            for answer in marked(answers, True, message_id, waiting[message_id].sent_text)]


def collect_late(requester, record, quiet_errors: bool) -> tuple[list, dict]:
    """Look once for answers to this client's earlier requests; consume and forget those found."""
    from animalid.errors import TransientError

    waiting = {entry.message_id: entry for entry in record.waiting()}
    if not waiting:
        return [], waiting
    try:
        found = requester.collect_earlier(list(waiting))
    except TransientError as exc:
        if not quiet_errors:
            raise
        print(f"{PROG}: could not look for earlier answers now ({exc}); the next run will",
              file=sys.stderr)
        return [], waiting
    record.remove([message_id for message_id, _ in found])
    return found, waiting


def collect(config, args) -> int:
    """client.py --collect: print the late answers to this client's earlier requests."""
    from animalid.cli import settings as edge

    with edge.requester(config, receive=args.receive) as requester:
        record = edge.pending_record(config, requester.account.address)
        found, waiting = collect_late(requester, record, quiet_errors=False)
    if args.json:
        print(json.dumps(late_json(found, waiting), ensure_ascii=False, indent=2))
    else:
        show_late(found, waiting)
    left = len(waiting) - len(found)
    if not waiting:
        print(f"{PROG}: no earlier request is waiting for an answer", file=sys.stderr)
    elif left:
        oldest = min(entry.sent_text for key, entry in waiting.items()
                     if key not in dict(found))
        print(f"{PROG}: {left} earlier request{'s' if left != 1 else ''} (the oldest sent {oldest}) "
              f"still without an answer: the server may not be running yet", file=sys.stderr)
    return ExitStatus.OK


def identify(config, args) -> int:
    from animalid.cli import settings as edge
    from animalid.client.requester import AnswerTimeout
    from animalid.contract import render_answers
    from animalid.errors import UnreachableError

    # Checked here against the server's pixel limit (the same file's [server] section,
    # or its default), so a photo the server would refuse is never mailed.
    images = read_images(args.image, config.section("server").get_int("max_image_pixels", minimum=1))
    progress = Progress()
    printed: list[dict] = []  # with --json: every answer of this run, printed as one list at the end
    try:
        with edge.requester(config, receive=args.receive) as requester:
            record = edge.pending_record(config, requester.account.address)
            found, waiting = collect_late(requester, record, quiet_errors=True)
            if args.json:
                printed += late_json(found, waiting)
            else:
                show_late(found, waiting)
            timeout = args.timeout if args.timeout is not None else requester.timeout
            started = time.monotonic()
            message_id = requester.send(images)
            record.add(message_id, [name for name, _ in images])
            progress.start(requester.server_address, timeout)
            try:
                answers = requester.wait([message_id], timeout=timeout, on_tick=progress.tick)[message_id]
            except AnswerTimeout as exc:
                raise AnswerTimeout(f"{exc}: the server may not be running. The request stays on "
                                    f"record: {RUN} --collect shows its answer once the server has run",
                                    exc.answers, exc.missing) from None
            except UnreachableError as exc:
                raise UnreachableError(f"{exc}. The request stays on record: {RUN} --collect shows "
                                       f"its answer later") from None
            finally:
                progress.done()
            record.remove([message_id])
        printed += marked(answers, False)
    finally:
        # Late answers were taken off the record: printed even when this request fails.
        if args.json and printed:
            print(json.dumps(printed, ensure_ascii=False, indent=2))
    if not args.json:
        print(render_answers(answers))
        if args.verbose:
            print(f"(answered in {time.monotonic() - started:.2f} s)", file=sys.stderr)
    # As classifier.py: 1 when the server could not answer a photo (README, exit statuses).
    return ExitStatus.ERROR if any("error" in answer for answer in answers) else ExitStatus.OK


def camera(config, args) -> int:
    if not opencv_available():
        print(f"{PROG}: camera capture needs OpenCV (.venv/bin/pip install -r requirements/client.txt); "
              f"or use --image PATH", file=sys.stderr)
        return ExitStatus.USAGE
    from animalid.cli import settings as edge

    return int(capture.run(lambda: edge.capture_settings(config, args), make_requester=lambda: edge.requester(config, getattr(args, "receive", None))) or 0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        setup_logging(verbose=True)
    if args.timeout is not None and args.timeout <= 0:
        print(f"{PROG}: error: --timeout must be above 0", file=sys.stderr)
        return ExitStatus.USAGE

    if args.collect and args.image:
        print(f"{PROG}: error: --collect fetches earlier answers only; leave out --image",
              file=sys.stderr)
        return ExitStatus.USAGE

    def body() -> int:
        config = load_config(args.config)
        if args.collect:
            return collect(config, args)
        if not args.image:
            return camera(config, args)
        return identify(config, args)

    return run_command(PROG, body, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
