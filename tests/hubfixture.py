"""The ``mailhub`` pytest fixture: one real local mail hub per test session.

Wire it in from ``tests/conftest.py`` with::

    from tests.hubfixture import mailhub  # noqa: F401

Importing it into several modules (or conftest and a module) is harmless:
every copy shares the same running hub.
"""

from __future__ import annotations

import shutil
import tempfile

import pytest

from animalid.devhub.hub import MailHub, start_on_free_offset

CLIENTS = ("client1", "client2", "client3", "client4")

# pytest makes one fixture instance per place the fixture is defined; these
# make every such instance share one hub, stopped when the last one is done.
_hub: MailHub | None = None
_users = 0


@pytest.fixture(scope="session")
def mailhub():
    global _hub, _users
    if _hub is None:
        # Short path under /tmp: Dovecot's unix sockets are limited to 108 bytes.
        state = tempfile.mkdtemp(prefix="mh", dir="/tmp")
        _hub = start_on_free_offset(state, clients=CLIENTS)
    _users += 1
    try:
        yield _hub
    finally:
        _users -= 1
        if _users == 0:
            hub, _hub = _hub, None
            hub.stop()
            shutil.rmtree(hub.state, ignore_errors=True)
