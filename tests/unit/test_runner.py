"""The one runner: errors become one line and an exit status; -v shows a bug's traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from animalid.cli.runner import run_command
from animalid.errors import AuthError, ConfigError, ExitStatus


def fail(exc: BaseException):
    def body():
        raise exc
    return body


@pytest.mark.parametrize("exc, status, line", [
    (ConfigError("config.ini: [smtp] port: missing"), ExitStatus.USAGE, "prog: error: config.ini: [smtp] port: missing"),
    (AuthError("imap refused the login"), ExitStatus.AUTH, "prog: error: imap refused the login"),
    (KeyboardInterrupt(), ExitStatus.INTERRUPTED, "prog: interrupted"),
])
def test_known_errors_are_one_line_and_their_status(capsys, exc, status, line):
    assert run_command("prog", fail(exc)) == status
    err = capsys.readouterr().err
    assert err.strip() == line and "Traceback" not in err


def test_a_bug_is_one_line_without_verbose_and_a_traceback_with_it(capsys):
    assert run_command("prog", fail(ZeroDivisionError("boom"))) == ExitStatus.ERROR
    err = capsys.readouterr().err
    assert err.strip() == "prog: unexpected error: ZeroDivisionError: boom (run with -v for the traceback)"
    assert run_command("prog", fail(ZeroDivisionError("boom")), verbose=True) == ExitStatus.ERROR
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError: boom" in err


def test_the_body_status_is_returned():
    assert run_command("prog", lambda: 3) == 3
    assert run_command("prog", lambda: None) == ExitStatus.OK


def test_a_folder_given_as_config_is_one_line_and_status_2(tmp_path):
    folder = tmp_path / "a-folder.ini"
    folder.mkdir()
    result = subprocess.run([sys.executable, "-m", "animalid.cli.client", "--config", str(folder),
                             "--image", "x.jpg"], capture_output=True, text=True, timeout=60)
    assert result.returncode == ExitStatus.USAGE
    assert result.stderr.strip().splitlines() == [
        f"client.py: error: {folder}: cannot read config file: [Errno 21] Is a directory: '{folder}'"]


def test_a_package_missing_at_first_use_is_one_line_saying_to_use_the_venv(capsys):
    assert run_command("server.py", fail(ModuleNotFoundError("No module named 'psycopg'", name="psycopg"))) \
        == ExitStatus.USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("server.py: error: this Python (") and "lacks psycopg: run `make" in err
    assert "\n" not in err


def test_imapclient_info_lines_are_silenced():
    import logging

    from animalid.cli.runner import setup_logging

    setup_logging(verbose=True)
    assert not logging.getLogger("imapclient.imapclient").isEnabledFor(logging.INFO)
    assert logging.getLogger("animalid.server").isEnabledFor(logging.DEBUG)
