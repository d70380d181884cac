"""Run outside the virtual environment, every entry point says in one line what to run instead.

``python -S`` is a real Python without site-packages: it lacks every
third-party package, as the system ``python3`` of a fresh machine does.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from animalid.envcheck import missing, requirement_text
from animalid.testing.harness import ROOT

ENTRY_POINTS = [
    (["client.py", "--image", "my cat.jpg"], "client.py: error:", "client.py --image 'my cat.jpg'"),
    (["server.py", "--once"], "server.py: error:", "server.py --once"),
    (["classifier.py", "tests/photos/dog.png"], "classifier.py: error:", "classifier.py tests/photos/dog.png"),
    (["-m", "animalid.mailhub"], "mailhub: error:", "-m animalid.mailhub"),
    (["-m", "animalid.demo", "tests/photos/dog.png"], "demo: error:", "-m animalid.demo tests/photos/dog.png"),
]


@pytest.mark.parametrize("argv, prefix, command", ENTRY_POINTS, ids=[" ".join(e[0][:2]) for e in ENTRY_POINTS])
def test_without_the_packages_one_line_says_to_use_the_venv(argv, prefix, command):
    run = subprocess.run([sys.executable, "-S", *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin"}, check=False)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith(prefix)
    assert "`make install` (once)" in lines[0]
    assert f"`.venv/bin/python {command}`" in lines[0]
    assert run.stdout == ""


def test_the_venv_has_everything_the_entry_points_need():
    from animalid import envcheck

    assert missing(envcheck.DEMO + envcheck.CLIENT + envcheck.CLASSIFIER) == []


def test_the_line_names_the_pip_packages():
    line = requirement_text("client.py", "client.py", ["PIL", "imapclient"])
    assert "lacks pillow, imapclient:" in line
