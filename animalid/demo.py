"""Alias kept for ``python -m animalid.demo``: the one-command demo in ``animalid.cli.demo``."""

import sys

from animalid.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
