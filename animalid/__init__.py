"""animalid: identify animals in photos sent by email.

Layers, each importing only those below it (pyproject.toml's import-linter
contracts check this):

* ``cli``: the command-line programs, the one error-to-exit-status runner, and
  ``cli.settings``, the only code that reads config.ini: it builds the typed,
  frozen settings and hands them down;
* ``server`` and ``client``: the mail service (PC 2) and the requester and camera (PC 1);
* ``mail`` and ``recognition``: mail transport and formats; the network and its
  knowledge base (the only package that imports PyTorch, and not on the ONNX Runtime
  backend). They never import each other, and neither they nor ``server`` and
  ``client`` import the config reader;
* ``config``, ``contract`` and ``pidlock``: the config reader, the answer contract,
  and the lock file that keeps a second hub or server out;
* ``credentials``: where a secret comes from (a variable or a command);
* ``errors``: the exception tree.

``devhub`` (the local mail hub for development and tests) stands apart: it
imports only ``config``, ``errors`` and ``pidlock``, and nothing in the runtime
imports it or ``testing`` (the helpers of the end-to-end tests and benchmarks).
"""

__version__ = "0.2.0"
