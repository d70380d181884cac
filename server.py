#!/usr/bin/env python3
"""server.py (PC 2): watch the mailbox and answer every photo with the animal it shows.

The code lives in ``animalid.cli.server``; ``.venv/bin/python server.py --help`` says how to use it.
"""

import sys

from animalid.envcheck import SERVER, require

# Before any third-party import: outside the virtual environment, one line saying what to run.
require("server.py", sys.argv[0], SERVER)

from animalid.cli.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
