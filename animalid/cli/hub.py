"""``python -m animalid.mailhub`` / ``animalid-hub``: run the local mail hub until Ctrl-C."""

import sys

from animalid.devhub.hub import main  # noqa: F401  (moves here when devhub is split)

if __name__ == "__main__":
    sys.exit(main())
