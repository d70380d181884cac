#!/usr/bin/env python3
"""classifier.py: identify the animal in image files with the network and the knowledge base.

``.venv/bin/python classifier.py IMAGE...`` prints a readable answer per image; ``--json``
prints the output contract. The code lives in ``animalid.recognition`` (the
only package that imports PyTorch) and ``animalid.cli.classify``.

For scripts, ``Classifier`` and ``ModelSpec`` are re-exported here, so
``from classifier import Classifier`` keeps working from the repository root.
"""

import sys

from animalid.envcheck import CLASSIFIER, require

# Before any third-party import: outside the virtual environment, one line saying what to run.
require("classifier.py", sys.argv[0], CLASSIFIER)

from animalid.cli.classify import main  # noqa: E402
from animalid.recognition.classifier import BATCH_SIZE, Classifier  # noqa: E402,F401  (re-export)
from animalid.recognition.model import ModelSpec  # noqa: E402,F401  (re-export)

if __name__ == "__main__":
    sys.exit(main())
