"""The entry points' first check: is this the Python that has the project's packages?

Run with the system ``python3`` instead of ``.venv/bin/python``, a program
would die on its first third-party import with a 14-line traceback, or later
with "unexpected error: ModuleNotFoundError". Each entry point (client.py,
server.py, classifier.py, ``-m animalid.mailhub``, ``-m animalid.demo``)
calls :func:`require` before it imports anything but the standard library;
a missing package ends the program with one line that says what to run.

Standard library only, on purpose: it must work in a Python that has nothing else.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn

REPO = Path(__file__).resolve().parent.parent
# Import name -> the name pip and requirements*.txt know it by.
DISTRIBUTIONS = {"PIL": "pillow", "cv2": "opencv-python", "imapclient": "imapclient",
                 "cryptography": "cryptography", "aiosmtpd": "aiosmtpd", "numpy": "numpy",
                 "torch": "torch", "torchvision": "torchvision"}
# What each program imports (besides the standard library) before it can do anything.
CLIENT = ("imapclient", "PIL")
SERVER = ("imapclient", "PIL", "numpy", "torch", "torchvision")
CLASSIFIER = ("PIL", "numpy", "torch", "torchvision")
HUB = ("aiosmtpd", "cryptography")
DEMO = HUB + SERVER
# Exit status: the set-up is wrong, as with bad settings (animalid.errors.ExitStatus.USAGE).
SETUP_STATUS = 2


def missing(modules: tuple[str, ...] | list[str]) -> list[str]:
    """The modules of ``modules`` this Python cannot import (found without importing them)."""
    gone = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            gone.append(name)
    return gone


def venv_python() -> str:
    """The project's virtual-environment Python, as a path to type from the working folder."""
    path = REPO / ".venv" / "bin" / "python"
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return str(path)
    return str(path) if relative.startswith("..") else relative


def setup_hint(command: str) -> str:
    """What to run instead: ``make install`` (a no-op once done), then the same
    command with the virtual environment's Python."""
    make = "make install" if Path.cwd().resolve() == REPO else f"make -C {REPO} install"
    return f"run `{make}` (once), then `{venv_python()} {command}`"


def typed_command(program: str) -> str:
    """``program`` with the arguments this process was given, quoted for a shell."""
    return " ".join([program, shlex.join(sys.argv[1:])]) if sys.argv[1:] else program


def requirement_text(prog: str, command: str, gone: list[str]) -> str:
    """The one line for a Python that lacks ``gone``."""
    names = ", ".join(DISTRIBUTIONS.get(name, name) for name in gone)
    return f"{prog}: error: this Python ({sys.executable or 'python'}) lacks {names}: {setup_hint(command)}"


def require(prog: str, program: str, modules: tuple[str, ...] | list[str]) -> None:
    """Return when every module can be imported; otherwise print one line and exit 2.

    ``program`` is what follows ``python`` on the command line (``client.py``,
    ``-m animalid.mailhub``); the hint repeats it with the arguments given.
    """
    gone = missing(modules)
    if gone:
        fail(requirement_text(prog, typed_command(program), gone))


def fail(line: str) -> NoReturn:
    print(line, file=sys.stderr)
    raise SystemExit(SETUP_STATUS)

