"""The one place where a command's errors become a message and an exit status.

Every program (client, server, classifier, hub, demo) runs its body through
:func:`run_command`. An ``AnimalIdError`` prints one line that names the
problem and exits with the error's status (see ``animalid.errors``); Ctrl-C
exits 130; anything else is a bug or an OS failure: one line as well, and
with ``-v`` the full traceback. :func:`setup_logging` is the one logging set-up.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Callable

from animalid.envcheck import requirement_text, typed_command
from animalid.errors import AnimalIdError, ExitStatus

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose INFO lines say nothing to a user: imapclient logs "Connection
# closed" at INFO whenever a connection ends, before every error and in --status.
# Our own loggers say what happened, once.
QUIET_LIBRARIES = ("imapclient",)
# Programs run as modules, as typed after "python".
MODULE_PROGRAMS = {"mailhub": "-m animalid.mailhub", "demo": "-m animalid.demo"}


def setup_logging(verbose: bool, level: int = logging.INFO) -> None:
    """Log to stderr at ``level``; with ``verbose``, our own loggers go to debug.

    Only the ``animalid`` loggers go to debug: library debug logs may show
    protocol lines, and with them credentials.
    """
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT, force=True)
    logging.getLogger("animalid").setLevel(logging.DEBUG if verbose else level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def run_command(prog: str, body: Callable[[], int], verbose: bool = False,
                interrupted_text: str = "interrupted") -> int:
    """Run ``body`` and return its exit status; errors become one line on stderr."""
    try:
        status = int(body() or 0)
        sys.stdout.flush()
        return status
    except KeyboardInterrupt:
        print(f"\n{prog}: {interrupted_text}", file=sys.stderr)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # e.g. piped into head: the reader has what it wanted; keep Python
        # from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitStatus.OK
    except AnimalIdError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except Exception as exc:  # a bug or an OS failure: still one line, the traceback with -v
        package = _missing_package(exc)
        if package and not verbose:
            # Imported on first use (psycopg for a PostgreSQL ledger, cv2 for the camera):
            # this Python lacks it, as the entry points' own check would have said.
            print(requirement_text(prog, typed_command(MODULE_PROGRAMS.get(prog, prog)), [package]),
                  file=sys.stderr)
            return ExitStatus.USAGE
        if verbose:
            traceback.print_exc()
        hint = "" if verbose else " (run with -v for the traceback)"
        print(f"{prog}: unexpected error: {type(exc).__name__}: {exc}{hint}", file=sys.stderr)
        return ExitStatus.ERROR


def _missing_package(exc: BaseException) -> str | None:
    """The third-party package a ModuleNotFoundError names, else None."""
    if isinstance(exc, ModuleNotFoundError) and exc.name and not exc.name.startswith("animalid"):
        return exc.name.partition(".")[0]
    return None
