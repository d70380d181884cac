"""The request history in the ledger (animalid/server/ledger/history.py): paging, filters, live reads."""

from __future__ import annotations

import pytest

from animalid.history import (
    ANSWERED,
    REFUSED,
    SET_ASIDE,
    WORKING,
    HistoryQuery,
    ImageResult,
    RequestRecord,
    decode_cursor,
)
from animalid.server.ledger import SqliteLedger

HistoryLedger = SqliteLedger


class Clock:
    def __init__(self, now: float = 1_700_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ledger(tmp_path, clock):
    with HistoryLedger(tmp_path / "ledger.sqlite", clock) as opened:
        yield opened


def record(n: int, outcome: str = ANSWERED, sender: str = "a@x.test", subject: str = "photo",
           arrived: float = 1_700_000_000.0) -> RequestRecord:
    return RequestRecord(key=f"imap:1:{n}", arrived=arrived + n, sender=sender, subject=subject,
                         outcome=outcome, seconds=0.5 if outcome == ANSWERED else None, worker="w1",
                         images=(ImageResult("tiger.png", "Tiger (Panthera tigris), 97%", 97.0,
                                             ("DANGEROUS", "ENDANGERED")),))


def test_pages_newest_first_with_a_cursor_and_a_total(ledger):
    ledger.record_requests([record(n) for n in range(120)])
    first = ledger.request_page(HistoryQuery(limit=50))
    assert [r.key for r in first.rows[:2]] == ["imap:1:119", "imap:1:118"]
    assert first.total == 120 and first.more
    second = ledger.request_page(HistoryQuery(limit=50, before=decode_cursor(first.cursor)))
    third = ledger.request_page(HistoryQuery(limit=50, before=decode_cursor(second.cursor)))
    keys = [r.key for page in (first, second, third) for r in page.rows]
    assert len(keys) == len(set(keys)) == 120
    assert not third.more and third.cursor == ""
    assert first.rows[0].images[0].flags == ("DANGEROUS", "ENDANGERED")


def test_rows_with_one_arrival_time_page_by_key(ledger):
    ledger.record_requests([record(n, arrived=1_700_000_000.0 - n) for n in range(10)])  # all arrive at once
    seen, before = [], None
    while True:
        page = ledger.request_page(HistoryQuery(limit=3, before=before))
        seen += [r.key for r in page.rows]
        if not page.more:
            break
        before = decode_cursor(page.cursor)
    assert sorted(seen) == sorted(f"imap:1:{n}" for n in range(10)) and len(seen) == 10


def test_filters_by_outcome_sender_subject_and_time(ledger):
    ledger.record_requests([record(1, sender="Ann@Example.test"), record(2, REFUSED, sender="eve@evil.test"),
                            record(3, subject="100%_sure"), record(4, subject="100 sure")])
    assert [r.key for r in ledger.request_page(HistoryQuery(outcome=REFUSED)).rows] == ["imap:1:2"]
    assert [r.key for r in ledger.request_page(HistoryQuery(sender="ann@example")).rows] == ["imap:1:1"]
    # % and _ in a filter are the characters themselves, not wildcards.
    assert [r.key for r in ledger.request_page(HistoryQuery(subject="100%_")).rows] == ["imap:1:3"]
    page = ledger.request_page(HistoryQuery(start=1_700_000_002.0, end=1_700_000_004.0))
    assert [r.key for r in page.rows] == ["imap:1:3", "imap:1:2"] and page.total == 2


def test_a_final_outcome_never_goes_back_to_working(ledger, clock):
    ledger.record_request(record(1, WORKING))
    clock.now += 1
    ledger.record_request(record(1, ANSWERED))
    clock.now += 1
    ledger.record_request(RequestRecord(key="imap:1:1", arrived=0.0, outcome=WORKING))  # a late start
    row = ledger.request_page(HistoryQuery()).rows[0]
    assert row.outcome == ANSWERED and row.subject == "photo" and row.seconds == 0.5


def test_changes_since_a_time_for_the_live_page(ledger, clock):
    ledger.record_request(record(1, WORKING))
    clock.now += 10
    ledger.record_request(record(2, WORKING))
    ledger.record_request(record(1, SET_ASIDE))
    changed = ledger.requests_since(clock.now - 1)
    assert {(r.key, r.outcome) for r in changed} == {("imap:1:2", WORKING), ("imap:1:1", SET_ASIDE)}
    assert ledger.request_counts(clock.now - 1) == {WORKING: 1, SET_ASIDE: 1}


def test_pruning_forgets_old_finished_rows_only(ledger):
    ledger.record_requests([record(1), record(2, WORKING), record(50)])
    assert ledger.prune_requests(1_700_000_010.0) == 1
    assert {r.key for r in ledger.request_page(HistoryQuery()).rows} == {"imap:1:2", "imap:1:50"}


def test_a_moved_request_keeps_its_row(ledger):
    ledger.record_request(record(1, WORKING))
    ledger.move_request("imap:1:1", "imap:1:77")
    assert [r.key for r in ledger.request_page(HistoryQuery()).rows] == ["imap:1:77"]


def test_timings_for_the_charts(ledger):
    ledger.record_requests([record(1), record(2, REFUSED)])
    timings = ledger.request_timings(0)
    assert [(t.outcome, t.seconds) for t in timings] == [(ANSWERED, 0.5), (REFUSED, None)]


def test_a_query_names_what_is_wrong():
    with pytest.raises(ValueError, match="unknown outcome 'lost'"):
        HistoryQuery(outcome="lost")
    with pytest.raises(ValueError, match="limit 0"):
        HistoryQuery(limit=0)


def test_final_states_write_the_row_in_the_same_transaction(ledger, clock):
    ledger.worker = "w2"
    ledger.record_request(record(1, WORKING, subject="garden", sender="ann@x.test"))
    clock.now += 2
    ledger.mark_refused("imap:1:1", "<m1@x.test>", "ann@x.test", "sender not allowed")
    row = ledger.request_page(HistoryQuery()).rows[0]
    assert (row.outcome, row.reason, row.subject, row.worker) == (REFUSED, "sender not allowed", "garden", "w2")
    assert row.arrived == 1_700_000_001.0 and row.message_id == "<m1@x.test>"
    # A message the history never saw taken up still gets its row.
    ledger.mark_set_aside("pop3:abc", reason="the message cannot be parsed")
    assert ledger.request_page(HistoryQuery(outcome=SET_ASIDE)).rows[0].key == "pop3:abc"
    answered = record(3, ANSWERED)
    ledger.mark_answered(answered.key, "<m3@x.test>", answered.sender, "1 image, 0.41 s", record=answered)
    row = ledger.request_page(HistoryQuery(outcome=ANSWERED)).rows[0]
    assert row.images[0].headline.startswith("Tiger") and row.seconds == 0.5 and row.worker == "w2"


def test_a_carried_claim_takes_its_row_along_and_pages_are_listed(ledger):
    ledger.record_request(record(1, WORKING))
    ledger.carry("imap:1:1", "imap:1:99")
    ledger.mark_refused("imap:1:99", reason="sender not allowed")
    (row,) = ledger.request_page(HistoryQuery()).rows
    assert (row.key, row.outcome, row.origin) == ("imap:1:99", REFUSED, "imap:1:1")
    assert row.to_json()["id"] == "imap:1:1"  # the page's row keeps its identity
    ledger.set_page("w1", "http://127.0.0.1:8470/")
    ledger.set_page("w2", "")
    assert ledger.pages() == {"w1": "http://127.0.0.1:8470/"} and ledger.ping() == ""
