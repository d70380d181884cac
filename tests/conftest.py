"""Every shared fixture, and the markers each test gets.

* ``classifier``: the real network and knowledge base, loaded once per session;
* ``mailhub``: one real local mail hub (Dovecot plus the SMTP front) per session;
* ``configs``: config files pointing at that hub, with every mailbox emptied;
* ``photos``: the committed test photos (tests/photos, licences in LICENSES.md);
* ``postgres``: one real PostgreSQL server per session (Debian's package), for the
  servers' shared ledger.

Markers: a test that needs the hub, the model or another process (through
these fixtures, directly or not) is ``e2e``; one that drives a window under
Xvfb is ``gui``; every other test is ``unit``, so ``pytest -m unit`` runs the
fast ones alone. A test module may also mark itself ``e2e`` explicitly.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from animalid.testing.harness import CLIENTS, PHOTOS, ROOT, empty_mailbox, make_config

E2E_FIXTURES = {"mailhub", "classifier", "stand_in"}
GUI_FIXTURES = {"xdisplay"}


def pytest_collection_modifyitems(items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & GUI_FIXTURES:
            item.add_marker(pytest.mark.gui)
        if used & (E2E_FIXTURES | GUI_FIXTURES) and not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.e2e)
        if not (item.get_closest_marker("e2e") or item.get_closest_marker("gui")):
            item.add_marker(pytest.mark.unit)


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
