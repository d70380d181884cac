"""What the programs say to a newcomer before any mail moves: a missing settings file, --help."""

from __future__ import annotations

import pytest

from animalid.testing.harness import run_cli


@pytest.mark.parametrize("program, args", [
    ("client.py", ["--image", "tests/photos/dog.png"]), ("server.py", []),
    ("classifier.py", ["tests/photos/dog.png"]), ("-m", ["animalid.mailhub"])])
def test_a_missing_config_file_is_named_as_typed(program, args):
    result = run_cli(program, *args, "--config", "nope.ini")
    assert result.returncode == 2
    prog = "mailhub" if program == "-m" else program
    assert result.stderr.strip() == f"{prog}: error: nope.ini: no such file"


def test_the_hub_usage_shows_the_secret_command_as_optional():
    usage = run_cli("-m", "animalid.mailhub", "--help").stdout.split("\n\n")[0]
    assert "{secret}" not in usage
    assert usage.startswith("usage: .venv/bin/python -m animalid.mailhub [-h] [--config FILE]")
    assert usage.splitlines()[-1].strip() == ".venv/bin/python -m animalid.mailhub secret NAME [--state DIR]"


@pytest.mark.parametrize("program", ["client.py", "server.py", "classifier.py"])
def test_help_examples_use_the_venv_python(program):
    text = run_cli(program, "--help").stdout
    commands = [line.strip() for line in text.splitlines() if program in line and "python" in line]
    assert commands and all(line.startswith(".venv/bin/python ") for line in commands), commands
