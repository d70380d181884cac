"""The shared ledger (animalid/server/ledger/): what several workers rely on.

Here each test runs on SQLite (a file in tmp_path). The same tests run again on
a real PostgreSQL server in tests/e2e/test_ledger_postgres.py, which imports
them and gives ``spec`` for that backend. The races are real: separate
processes with connections of their own hammer the same rows at once.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading

import pytest

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.errors import ConfigError
from animalid.server.ledger import (
    ANSWERED,
    IGNORED,
    UNRECORDED_CLAIM_PREFIX,
    Ledger,
    PostgresLedger,
    SqliteLedger,
    open_ledger,
)

RACERS = 4


@pytest.fixture
def spec(tmp_path):
    """How to open one ledger, in this process or a forked one: ``(backend, *arguments)``."""
    return ("sqlite", str(tmp_path / "ledger.sqlite"))


def opened(spec, worker: str = "w0", clock=None) -> Ledger:
    kwargs = {"clock": clock} if clock else {}
    ledger = (SqliteLedger(spec[1], **kwargs) if spec[0] == "sqlite"
              else PostgresLedger(spec[1], spec[2], **kwargs))
    ledger.worker = worker
    return ledger


def race(spec, job, *args) -> list:
    """Run ``job(ledger, *args)`` in RACERS processes at once; their results in order."""
    context = multiprocessing.get_context("fork")
    with context.Pool(RACERS) as pool:
        return pool.starmap(_racer, [(spec, f"w{i}", job, args) for i in range(RACERS)])


def _racer(spec, worker, job, args):
    with opened(spec, worker) as ledger:
        return job(ledger, *args)


def _claim_all(ledger, keys):
    won = []
    for key in keys:  # one at a time: the most interleaving
        won += ledger.claim_keys([key], 1, stale_before=0)
    return won


def _reserve_each(ledger, ids):
    return [message_id for message_id in ids
            if ledger.reserve(message_id, f"{ledger.worker}:{message_id}", stale_before=0) is None]


def _take_events(ledger, tries, limit):
    return sum(ledger.take_event("a@b.c", "request", 3600, limit) for _ in range(tries))


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self):
        return self.now


# -- exclusive between processes ----------------------------------------------------------

def test_each_key_is_claimed_by_exactly_one_of_several_processes(spec):
    opened(spec).close()  # the schema, before the racers
    keys = [f"imap:1:{uid}" for uid in range(40)]
    results = race(spec, _claim_all, keys)
    won = [key for result in results for key in result]
    assert sorted(won) == sorted(keys), "a key claimed twice or not at all"
    with opened(spec) as ledger:
        assert {claim.key for claim in ledger.claims()} == set(keys)


def test_each_message_id_is_reserved_by_exactly_one_of_several_processes(spec):
    opened(spec).close()
    ids = [f"<m{i}@x>" for i in range(40)]
    won = [m for result in race(spec, _reserve_each, ids) for m in result]
    assert sorted(won) == sorted(ids)


def test_a_rate_limit_holds_across_processes(spec):
    opened(spec).close()
    assert sum(race(spec, _take_events, 10, 7)) == 7


# -- leases --------------------------------------------------------------------------------

def test_a_claim_is_taken_over_only_once_its_lease_ran_out(spec):
    clock = Clock()
    with opened(spec, "w1", clock) as first, opened(spec, "w2", clock) as second:
        assert first.claim_keys(["k1", "k2"], 5, stale_before=clock.now - 60) == ["k1", "k2"]
        clock.now += 30
        assert second.claim_keys(["k1"], 5, stale_before=clock.now - 60) == []
        first.heartbeat()  # renewed at +30
        clock.now += 45  # 45 s since the renewal, 75 s since the claim
        assert second.claim_keys(["k1"], 5, stale_before=clock.now - 60) == []
        clock.now += 20
        assert second.claim_keys(["k1"], 5, stale_before=clock.now - 60) == ["k1"]
        assert first.hold_claim("k2") and not first.hold_claim("k1")  # k1 is w2's now
        assert second.hold_claim("k1")


def test_expired_claims_go_to_one_taker_and_noticed_ones_wait_for_their_name(spec):
    clock = Clock()
    with opened(spec, "w1", clock) as first, opened(spec, "w2", clock) as second:
        first.claim_keys(["k1", "k2"], 5, stale_before=0)
        first.place_claims(7, [("k1", 11), ("k2", 12)])
        second.notice_claims(7, [12, 13])  # 12 is named by k2: its noticed row waits
        clock.now += 100
        expired = second.expire_claims(clock.now - 60)
        assert sorted((c.key, c.uid) for c in expired) == [(f"{UNRECORDED_CLAIM_PREFIX}7:13", 13), ("k1", 11), ("k2", 12)]
        assert not first.hold_claim("k1")
        assert [(c.key, c.uid) for c in first.expire_claims(clock.now - 60)] == [(f"{UNRECORDED_CLAIM_PREFIX}7:12", 12)]
        assert first.expire_claims(clock.now - 60) == []


def test_a_final_state_ends_the_reservation_in_the_same_step(spec):
    with opened(spec, "w1") as first, opened(spec, "w2") as second:
        assert first.reserve("<m@x>", "k1", stale_before=0) is None
        assert second.reserve("<m@x>", "k2", stale_before=0) == "k1"
        first.mark_answered("k1", "<m@x>", "a@b.c")
        assert second.reserve("<m@x>", "k2", stale_before=0) is None
        record = second.final_by_message_id("<m@x>")
        assert (record.key, record.state) == ("k1", ANSWERED)
        assert second.final_states() == {"<m@x>": (ANSWERED, "w1")}


def test_a_record_follows_its_message_to_a_new_key(spec):
    with opened(spec) as ledger:
        assert ledger.begin_attempts(["imap:1:5"]) == {"imap:1:5": 1}
        ledger.begin_attempts(["imap:1:5"])
        ledger.reserve("<m@x>", "imap:1:5", stale_before=0)
        ledger.carry("imap:1:5", "imap:1:9")
        assert ledger.get("imap:1:5") is None
        assert ledger.get("imap:1:9").attempts == 2
        assert ledger.reservations() == {}
        ledger.mark_ignored("imap:1:9", "<m@x>", "a@b.c", "sender not allowed")
        ledger.carry("imap:1:9", "imap:1:12")
        assert ledger.known_final_keys(["imap:1:12"])["imap:1:12"].state == IGNORED


# -- SQLite specifics and settings -----------------------------------------------------------

def test_an_older_sqlite_ledger_gains_the_new_tables_and_column(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE messages (key TEXT PRIMARY KEY, message_id TEXT NOT NULL DEFAULT '', "
                     "sender TEXT NOT NULL DEFAULT '', state TEXT NOT NULL, attempts INTEGER NOT NULL "
                     "DEFAULT 0, reason TEXT NOT NULL DEFAULT '', first_seen REAL NOT NULL, "
                     "updated REAL NOT NULL);"
                     "INSERT INTO messages VALUES ('pop3:a', '<a@x>', 'a@b.c', 'answered', 0, '', 1, 1);")
    db.close()
    with SqliteLedger(path) as ledger:
        assert ledger.final_by_message_id("<a@x>").state == ANSWERED
        ledger.worker = "w1"
        ledger.mark_answered("pop3:b", "<b@x>", "a@b.c")
        assert ledger.final_states()["<b@x>"] == (ANSWERED, "w1")


@pytest.mark.parametrize("url, problem", [
    ("postgresql://animalid:hunter2@db/animalid", "a password does not go in the URL"),
    ("postgresql://animalid@db/animalid?password=hunter2", "a password does not go in the URL"),
    ("mysql://animalid@db/animalid", "not a postgresql://user@host/database URL"),
    ("postgresql://animalid@db", "the URL names no database"),
])
def test_a_bad_ledger_setting_is_one_clear_line(tmp_path, url, problem):
    config = tmp_path / "config.ini"
    config.write_text(f"[server]\nledger = {url}\n")
    with pytest.raises(ConfigError) as error:
        open_ledger(edge.ledger_settings(load_config(config)))
    message = str(error.value)
    assert "[server] ledger:" in message and problem in message and "\n" not in message
    assert "hunter2" not in message


def test_workers_opening_a_new_ledger_together_all_get_it(tmp_path):
    # Switching a new file to WAL takes a lock SQLite does not wait for: before
    # the retry, about one three-way start in twenty failed "database is locked".
    failures = []
    for round_ in range(60):
        path = tmp_path / f"ledger-{round_}.sqlite"
        barrier = threading.Barrier(3, timeout=30)

        def open_it(barrier=barrier, path=path):
            barrier.wait()
            try:
                SqliteLedger(path).close()
            except BaseException as exc:  # noqa: BLE001 - counted below
                failures.append(exc)

        threads = [threading.Thread(target=open_it, daemon=True) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert failures == []


def test_observations_visits_and_digest_marks_round_trip(spec):
    """Trail cameras (ledger/trail.py): a repeated observation is kept once, a visit is
    found by camera, taxon and time, and a digest mark survives reopening."""
    from animalid.server.ledger.trail import Observation, Visit

    def observation(position: int, taxon: str, visit: str) -> Observation:
        return Observation("<m1@cam>", position, "ridge", "North ridge", f"f{position}.jpg", 1000.0 + position,
                           2000.0, 3000.0, taxon, "bear" if taxon else "", "family" if taxon else "none",
                           80.0 if taxon else 90.0, "Bear (Ursidae)" if taxon else "", 80.0, "Ursidae" if taxon else "",
                           visit)

    visit = Visit("ridge|Ursidae|1000", "ridge", "North ridge", "Ursidae", "Bear (Ursidae)", 1000.0, 1001.0, 2,
                  80.0, "", True, 3000.0)
    with opened(spec) as ledger:
        rows = [observation(0, "Ursidae", visit.id), observation(1, "", "")]
        ledger.save_observations(rows, [visit])
        ledger.save_observations(rows, [visit])  # the same message handled again after a crash
        assert ledger.observations() == rows
        assert ledger.latest_visit("ridge", "Ursidae", 900.0) == visit
        assert ledger.latest_visit("ridge", "Ursidae", 1500.0) is None
        assert ledger.last_arrivals() == {"ridge": 2000.0}
        assert ledger.mark("digest 07:00") is None
        ledger.set_mark("digest 07:00", 1234.5)
    with opened(spec) as ledger:
        assert ledger.mark("digest 07:00") == 1234.5
        assert [o.position for o in ledger.observations(1000.0, by_taken=True)] == [0, 1]
