"""animalid: identify animals in photos sent by email.

The package holds everything behind the top-level programs: configuration,
the mail hub, mail transport, message formats, the answer contract and the
camera front end. ``classifier.py`` at the top level is the only module that
imports PyTorch; nothing in this package does.
"""

__version__ = "0.1.0"
