"""Every command the README and docs/ show works as written, copied into a shell.

A command is a line of a fenced shell block, or inline code, that starts with
``python``, ``.venv/bin/python``, ``.venv/bin/pip``, ``pip`` or ``make``. Each must use
the virtual environment's Python, name a script, module, Makefile target or
requirements file that exists, and use only options its program's ``--help`` lists.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
STARTS = ("python ", "python3 ", ".venv/bin/python ", ".venv/bin/pip ", "pip ", "make ", "make")
FENCE = re.compile(r"^```(\w*)\s*$")
INLINE = re.compile(r"`([^`\n]+)`")


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every command in the documents."""
    found = []
    for document in DOCUMENTS:
        language, in_block = "", False
        for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
            fence = FENCE.match(line.strip())
            if fence:
                in_block, language = not in_block, fence.group(1)
                continue
            where = f"{document.name}:{number}"
            if in_block:
                if language in ("sh", "bash", "shell", "console"):
                    command = line.split(" #")[0].strip().removeprefix("$ ")
                    if command.startswith(STARTS):
                        found.append((where, command))
                continue
            for code in INLINE.findall(line):
                if code.startswith(STARTS) and code != "make":
                    found.append((where, code.strip()))
    return found


COMMANDS = documented_commands()


@functools.lru_cache(maxsize=None)
def help_text(*program: str) -> str:
    result = subprocess.run([sys.executable, *program, "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, f"{' '.join(program)} --help: {result.stderr[-500:]}"
    return result.stdout


@functools.lru_cache(maxsize=None)
def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.MULTILINE))


def test_the_documents_show_commands():
    assert len(COMMANDS) >= 5


@pytest.mark.parametrize("where, command", COMMANDS, ids=[f"{w} {c[:40]}" for w, c in COMMANDS])
def test_a_documented_command_works_as_written(where, command):
    words = shlex.split(command.replace("...", ""))
    if words[:3] == ["python3", "-m", "venv"]:  # making the virtual environment: outside it by nature
        return
    if words[0] in ("python", "python3", "pip"):
        pytest.fail(f"{where}: `{command}` runs outside the virtual environment: write "
                    f"`.venv/bin/{'pip' if words[0] == 'pip' else 'python'} {' '.join(words[1:])}`")
    if words[0] == "make":
        targets = [word for word in words[1:] if "=" not in word and not word.startswith("-")]
        assert set(targets) <= make_targets(), f"{where}: no Makefile target {set(targets) - make_targets()}"
        return
    if words[0] == ".venv/bin/pip":
        for flag, value in zip(words, words[1:]):
            if flag == "-r":
                assert (ROOT / value).is_file(), f"{where}: no {value}"
        return
    args = words[1:]
    if args[0] == "-m":
        module, options = args[1], args[2:]
        assert importlib.util.find_spec(module), f"{where}: no module {module}"
        program = ("-m", module)
    else:
        script, options = args[0], args[1:]
        assert (ROOT / script).is_file(), f"{where}: no {script}"
        program = (script,)
    subcommand = [word for word in options[:1] if not word.startswith("-") and word in ("secret",)]
    text = help_text(*program, *subcommand)
    for option in options:
        if option.startswith("--") or re.fullmatch(r"-[a-zA-Z]", option):
            name = option.split("=")[0]
            assert re.search(rf"(^|[\s\[,]){re.escape(name)}\b", text), \
                f"{where}: `{command}`: {name} is not an option of {' '.join(program)}"
