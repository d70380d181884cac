"""Markers by folder, and the fixtures the tests share.

Markers come from where a test lives, never from what it uses:

* ``tests/unit``: marked ``unit``. Fast (``pytest -m unit`` takes well under 30 s),
  and needs no server (no Dovecot, no PostgreSQL, no mail hub), no network
  weights (requirements/no-deps.txt) and no GPU: the Python packages of
  requirements.txt and a TrueType font (fonts-dejavu-core) are enough. A unit
  test that asks for a server fixture below stops collection with a clear error.
* ``tests/e2e``: marked ``e2e``: the real local mail hub, the real networks, a real
  PostgreSQL server, third-party mail clients or other processes. A test there
  that drives a window under Xvfb carries ``@pytest.mark.gui`` as well (collection
  stops with a clear error if a test using the ``xdisplay`` fixture of
  tests/e2e/test_capture.py lacks it).

A test that needs a server or the network belongs in tests/e2e; moving it there
is the only way to change its marker.

Fixtures defined here, for both folders:

* ``classifier``: the real networks and knowledge base, loaded once per session (e2e);
* ``mailhub``: one real local mail hub (Dovecot plus the SMTP front) per session (e2e);
* ``configs``: config files pointing at that hub, with every mailbox emptied (e2e);
* ``postgres``: one real PostgreSQL server (Debian's package) per session, for the
  servers' shared ledger (e2e);
* ``photos``: the committed test photos (tests/photos, licences in LICENSES.md);
* ``tiger_and_dog``: two answers of the output contract, for the camera front end.

Other fixtures live in the one module that uses them (``xdisplay`` and
``stand_in`` in tests/e2e/test_capture.py, ``spec`` in the ledger tests, ...).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from animalid.testing.harness import CLIENTS, PHOTOS, ROOT, empty_mailbox, make_config

TESTS = Path(__file__).resolve().parent
SERVER_FIXTURES = {"classifier", "mailhub", "configs", "postgres"}


def pytest_collection_modifyitems(items):
    for item in items:
        folder = item.path.resolve().relative_to(TESTS).parts[0]
        if folder not in ("unit", "e2e"):
            raise pytest.UsageError(f"{item.nodeid}: a test lives in tests/unit or tests/e2e")
        item.add_marker(getattr(pytest.mark, folder))
        if folder == "unit" and item.get_closest_marker("e2e"):
            raise pytest.UsageError(f"{item.nodeid}: marked e2e in tests/unit; move it to tests/e2e")
        used = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if folder == "unit" and used:
            raise pytest.UsageError(f"{item.nodeid}: uses {', '.join(sorted(used))}, "
                                    f"so it belongs in tests/e2e")
        if "xdisplay" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("gui"):
            raise pytest.UsageError(f"{item.nodeid}: drives a window, so mark it @pytest.mark.gui")


@pytest.fixture(scope="session")
def classifier():
    from animalid.cli import settings as edge
    from animalid.config import load_config

    return edge.classifier(load_config(ROOT / "config.ini"))


@pytest.fixture(scope="session")
def photos() -> Path:
    return PHOTOS


@pytest.fixture(scope="session")
def mailhub():
    """One real hub for the whole session, on free ports, stopped at the end."""
    from animalid.devhub import start_on_free_offset

    # Short path under /tmp: Dovecot's unix sockets are limited to 108 bytes.
    state = tempfile.mkdtemp(prefix="mh", dir="/tmp")
    hub = start_on_free_offset(state, clients=CLIENTS)
    try:
        yield hub
    finally:
        hub.stop()
        shutil.rmtree(hub.state, ignore_errors=True)


@pytest.fixture
def configs(mailhub, tmp_path):
    """config(client, receive, server_receive, **server settings) -> path; all mailboxes emptied."""
    made = {}

    def config(client: str = "client1", receive: str = "pop3", server_receive: str = "pop3",
               **settings) -> Path:
        key = (client, receive, server_receive, tuple(sorted(settings.items())))
        if key not in made:
            made[key] = make_config(mailhub, tmp_path, client, receive, server_receive, **settings)
        return made[key]

    first = config()
    empty_mailbox(first, "server")
    for client in CLIENTS:
        empty_mailbox(config(client), "client")
    return config


@pytest.fixture
def tiger_and_dog() -> tuple[dict, dict]:
    """Two answers of the output contract, for the camera front end's tests
    (tests/unit/test_capture_parts.py and the stand-in Requester of
    tests/e2e/test_capture.py): a dangerous, endangered tiger with a jaguar
    among its top matches, and a harmless dog."""
    tiger = {"scientific_name": "Panthera tigris", "common_name": "tiger", "description": "A big cat.",
             "habitat": "Forests", "endangered": "Endangered", "dangerous": True, "poisonous": False,
             "venomous": False, "probability": 87.2, "rank": "species",
             "taxonomy": {"species": "Panthera tigris"},
             "alternatives": [{"common_name": "tiger", "scientific_name": "Panthera tigris",
                               "probability": 87.2},
                              {"common_name": "jaguar", "scientific_name": "Panthera onca",
                               "probability": 4.1}]}
    dog = {"scientific_name": "Canis lupus familiaris", "common_name": "dog", "description": "",
           "habitat": "", "endangered": "Domesticated", "dangerous": False, "poisonous": False,
           "venomous": False, "probability": 93.0, "rank": "species", "taxonomy": {},
           "alternatives": [{"common_name": "dog", "scientific_name": "Canis lupus familiaris",
                             "probability": 93.0}]}
    return tiger, dog


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server (Debian's postgresql package) for the session, in a
    temporary folder, on a free port of 127.0.0.1 with password authentication; as
    root it runs as nobody. Gives ``url`` and ``password_file`` (animalid/testing/postgres.py)."""
    from animalid.testing.postgres import TempPostgres

    server = TempPostgres().start()
    try:
        yield server
    finally:
        server.stop()
