"""Alias kept for ``.venv/bin/python -m animalid.demo``: the one-command demo in ``animalid.cli.demo``."""

import sys

from animalid.envcheck import DEMO, require

# Before any third-party import: outside the virtual environment, one line saying what to run.
require("demo", "-m animalid.demo", DEMO)

from animalid.cli.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
