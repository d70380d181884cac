#!/usr/bin/env python3
"""client.py (PC 1): mail a photo (or a webcam shot) to the animal server and print its answer.

The code lives in ``animalid.cli.client``; ``.venv/bin/python client.py --help`` says how to use it.
"""

import sys

from animalid.envcheck import CLIENT, require

# Before any third-party import: outside the virtual environment, one line saying what to run.
require("client.py", sys.argv[0], CLIENT)

from animalid.cli.client import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
