"""Alias kept for the documented ``.venv/bin/python -m animalid.mailhub``: runs the local mail hub.

The hub lives in ``animalid.devhub`` (development and test tooling, apart from
the runtime); its command line is ``animalid.cli.hub``.
"""

import sys

from animalid.envcheck import HUB, require

# Before any third-party import: outside the virtual environment, one line saying what to run.
require("mailhub", "-m animalid.mailhub", HUB)

from animalid.cli.hub import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
