"""The request history on PostgreSQL: the same tests as tests/unit/test_request_history.py,
on a real server (the session's ``postgres`` fixture), so both backends run the same SQL."""

from __future__ import annotations

import pytest

from animalid.server.ledger import PostgresLedger
from tests.unit.test_request_history import (  # noqa: F401  (collected here, with this ledger)
    Clock,
    test_a_carried_claim_takes_its_row_along_and_pages_are_listed,
    test_a_final_outcome_never_goes_back_to_working,
    test_changes_since_a_time_for_the_live_page,
    test_filters_by_outcome_sender_subject_and_time,
    test_final_states_write_the_row_in_the_same_transaction,
    test_pages_newest_first_with_a_cursor_and_a_total,
    test_rows_with_one_arrival_time_page_by_key,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ledger(postgres, clock):
    with PostgresLedger(postgres.url, postgres.password(), clock=clock) as opened:
        for table in ("messages", "requests", "pages", "inflight"):
            opened._count(f"DELETE FROM {table}")
        yield opened
