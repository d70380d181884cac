#!/usr/bin/env python3
"""client.py (PC 1): mail a photo (or a webcam shot) to the animal server and print its answer.

The code lives in ``animalid.cli.client``; ``python client.py --help`` says how to use it.
"""

import sys

from animalid.cli.client import main

if __name__ == "__main__":
    sys.exit(main())
