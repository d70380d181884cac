"""The shared ledger on a real PostgreSQL server (the session's ``postgres`` fixture).

The backend-independent tests of tests/unit/test_ledger.py are imported and run
again here, against PostgreSQL: this module's ``spec`` fixture replaces the unit
module's SQLite one. Then what only PostgreSQL has: the password from a command.
"""

from __future__ import annotations

import pytest

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.server.ledger import open_ledger
from tests.unit.test_ledger import (  # noqa: F401 - imported to be collected here too
    opened,
    test_a_claim_is_taken_over_only_once_its_lease_ran_out,
    test_a_final_state_ends_the_reservation_in_the_same_step,
    test_a_rate_limit_holds_across_processes,
    test_a_record_follows_its_message_to_a_new_key,
    test_each_key_is_claimed_by_exactly_one_of_several_processes,
    test_each_message_id_is_reserved_by_exactly_one_of_several_processes,
    test_expired_claims_go_to_one_taker_and_noticed_ones_wait_for_their_name,
    test_observations_visits_and_digest_marks_round_trip,
)


@pytest.fixture
def spec(postgres):
    """How to open the session's PostgreSQL ledger, emptied first: ``(backend, url, password)``."""
    spec = ("postgresql", postgres.url, postgres.password())
    with opened(spec) as ledger:  # the session shares one database: start empty
        for table in ("messages", "events", "claims", "inflight", "workers", "observations", "visits",
                      "trail_marks"):
            ledger._count(f"DELETE FROM {table}")
    return spec


def test_the_postgresql_password_comes_from_the_command_and_is_never_shown(postgres, tmp_path):
    config = tmp_path / "config.ini"
    config.write_text(f"[server]\nledger = {postgres.url}\nledger_password_command = cat {postgres.password_file}\n")
    with open_ledger(edge.ledger_settings(load_config(config))) as ledger:
        assert ledger.backend == "postgresql" and postgres.password() not in ledger.describe()
    config.write_text(f"[server]\nledger = {postgres.url}\nledger_password_command = echo wrong-password\n")
    with pytest.raises(Exception) as error:
        open_ledger(edge.ledger_settings(load_config(config)))
    assert "refused the login" in str(error.value) and "wrong-password" not in str(error.value)

