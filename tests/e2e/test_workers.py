"""Several server.py processes share one mailbox through the real hub (animalid/server/claims.py).

Nothing is mocked: the hub is Dovecot plus the SMTP front, each worker is
server.py as a process of its own with the real classifier (killed with
SIGKILL, held still with SIGSTOP), and the shared ledger is a SQLite file --
or, in the last test, a real PostgreSQL server started from Debian's package
in a temporary folder (the ``postgres`` fixture).

The workers claim requests by IMAP UID MOVE into the claims folder and own
what the COPYUID response names (RFC 6851, RFC 4315). The lease is short here
(LEASE seconds) so that a dead worker's claims come back within the test.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.mail.messages import build_request, parse_reply
from animalid.server.claims import Claims
from animalid.server.ledger import ANSWERED, SqliteLedger
from animalid.testing.harness import (
    CLIENTS,
    Burst,
    ServerProcess,
    assert_answers,
    empty_mailbox,
    folder_count,
    ledger_claims,
    ledger_records,
    ledger_reservations,
    mailbox_messages,
    make_config,
    photo,
    replies_by_request,
    run_cli,
    submit,
    wait_for,
)

WORKERS = 3
LEASE = 10  # seconds; the default is 60 (docs/operations.md, "Many servers, one mailbox")
CLAIMS = "animalid-claims"


class Team:
    """WORKERS server.py processes with one config (one mailbox, one ledger)."""

    def __init__(self, hub, folder: Path, **settings):
        self.hub, self.folder = hub, folder
        common = dict(receive="imap", server_receive="imap", rate_limit_per_hour=0, claim_lease=LEASE,
                      retry_max_delay=1, max_attempts=10, **settings)
        # One torch thread each: three workers with a thread per core each would
        # fight over the cores (docs/operations.md, "Many servers, one mailbox").
        self.configs = {client: make_config(hub, folder, client, name=f"{client}.ini",
                                            classifier_settings={"threads": 1}, **common)
                        for client in CLIENTS}
        self.config = self.configs[CLIENTS[0]]
        self.workers = [ServerProcess(self.config, folder / f"worker{i}.log") for i in range(WORKERS)]

    def clean(self) -> None:
        """Empty mailboxes: the server's INBOX and claims folder, every client's INBOX."""
        empty_mailbox(self.config, "server")
        empty_mailbox(self.config, "server", CLAIMS)
        for config in self.configs.values():
            empty_mailbox(config, "client")

    def ensure_running(self) -> None:
        """Start the workers that are not running, side by side."""
        starting = [worker.start(wait=False) for worker in self.workers if not worker.alive()]
        for worker in starting:
            worker.wait_started()

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()

    def ids(self) -> dict[str, ServerProcess]:
        return {worker.worker_id: worker for worker in self.workers}

    def answered(self, ids: set[str]) -> dict[str, str]:
        """Message-ID -> worker, for those of ``ids`` the ledger records answered."""
        return {m: worker for m, (state, worker) in ledger_records(self.config).items()
                if state == ANSWERED and m in ids}

    def replies(self) -> dict[str, list[bytes]]:
        found: dict[str, list[bytes]] = {}
        for config in self.configs.values():
            for message_id, raws in replies_by_request(config, with_bodies=True).items():
                found.setdefault(message_id, []).extend(raws)
        return found

    def no_tracebacks(self) -> None:
        for worker in self.workers:
            assert "Traceback" not in worker.log_text(), worker.log_text()[-3000:]


def check_answered_once(team: Team, burst: Burst, allowed_twice: set[str] = frozenset(),
                        timeout: float = 240) -> dict[str, str]:
    """Every request of ``burst`` answered correctly, once (twice only if allowed);
    the server's INBOX and claims folder empty. Returns Message-ID -> worker."""
    ids = set(burst.sent)
    by_worker = wait_for(lambda: (lambda a: a if set(a) == ids else None)(team.answered(ids)),
                         timeout=timeout, what="every request recorded answered")
    replies = wait_for(lambda: (lambda r: r if ids <= set(r) else None)(team.replies()),
                       timeout=60, what="every reply delivered")
    time.sleep(1.0)  # a late duplicate would land now
    replies = team.replies()
    for message_id, label in burst.sent.items():
        for raw in replies[message_id]:
            assert_answers(parse_reply(raw).answers, [label])
    twice = {m for m in ids if len(replies[m]) > 1}
    assert twice <= set(allowed_twice), f"answered more than once outside the documented window: " \
                                        f"{twice - set(allowed_twice)}"
    wait_for(lambda: mailbox_messages(team.config, "server") == [], what="the INBOX emptied")
    assert folder_count(team.config, "server", CLAIMS) == 0
    return by_worker


@pytest.fixture(scope="module")
def team(mailhub, tmp_path_factory):
    team = Team(mailhub, tmp_path_factory.mktemp("workers"))
    team.clean()
    try:
        yield team
    finally:
        team.stop_all()
        mailhub.fail_smtp(for_seconds=0)
        team.clean()


@pytest.fixture
def crew(team):
    """The team, all WORKERS running, mailboxes empty."""
    team.ensure_running()
    team.clean()
    return team


# -- the claim itself (no server.py running yet) --------------------------------------------

def test_workers_racing_for_the_same_requests_each_win_different_ones(mailhub, tmp_path):
    """Three Claims (one IMAP connection and one ledger connection each) take from one
    INBOX at once: every request is claimed once and sits once in the claims folder.
    (IMAP MOVE alone would not do: benchmarks/move_race.py shows Dovecot answering
    concurrent MOVEs of one message each with a COPYUID, and copying it for each.)"""
    config = make_config(mailhub, tmp_path, server_receive="imap")
    empty_mailbox(config, "server")
    empty_mailbox(config, "server", CLAIMS)
    for index in range(30):
        submit(mailhub, mailhub.address("client1"),
               build_request(mailhub.address("client1"), mailhub.server, [(f"m{index}.png", b"x")]))
    wait_for(lambda: len(mailbox_messages(config, "server")) == 30, what="30 requests")
    won: list[list[str]] = [[], [], []]
    failures: list[BaseException] = []
    barrier = threading.Barrier(3, timeout=60)

    def worker(index: int) -> None:
        try:
            with edge.mailbox(load_config(config), "server", "imap") as box, \
                    SqliteLedger(tmp_path / "ledger.sqlite") as ledger:
                ledger.worker = f"w{index}"
                claims = Claims(box, ledger, CLAIMS, lease=60, worker=ledger.worker)
                barrier.wait()
                while True:
                    refs = box.list_messages()
                    if not refs:
                        break
                    won[index] += [ref.key for ref in claims.take(refs)]
        except BaseException as exc:  # reported below; the others stop waiting for this one
            failures.append(exc)
            barrier.abort()

    # Daemon threads: a claimer that hangs must fail this test, not keep pytest from exiting.
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a claimer did not finish"
    real = [exc for exc in failures if not isinstance(exc, threading.BrokenBarrierError)]
    assert not failures, f"a claimer failed: {(real or failures)[0]!r}"
    keys = [key for keys in won for key in keys]
    assert len(keys) == len(set(keys)) == 30, [len(k) for k in won]
    assert folder_count(config, "server", CLAIMS) == 30
    empty_mailbox(config, "server", CLAIMS)
    print(f"\n30 requests, 3 claimers: {sorted(len(k) for k in won)}")


# -- sharing -------------------------------------------------------------------------------

def test_three_workers_share_a_burst_and_answer_each_request_once(crew, mailhub):
    started = time.monotonic()
    burst = Burst(mailhub, 60).start()
    burst.join()
    by_worker = check_answered_once(crew, burst)
    elapsed = time.monotonic() - started
    counts = Counter(by_worker.values())
    assert set(counts) == set(crew.ids()), f"not every worker answered: {counts}"
    crew.no_tracebacks()
    print(f"\n3 workers, 60 requests in {elapsed:.1f} s: per worker {sorted(counts.values())}")


def test_one_of_three_killed_mid_burst_loses_nothing(crew, mailhub):
    victim = crew.workers[1]
    victim_id = victim.worker_id
    burst = Burst(mailhub, 60, gap=0.05).start()

    def victim_holds_claims():
        return [claim for claim in ledger_claims(crew.config) if claim.worker == victim_id]

    def frozen_holding_claims():
        # Held still (SIGSTOP) while it holds claims, so it cannot finish them
        # between this look and the kill; a worker caught just after finishing
        # is let go and looked at again.
        if not victim_holds_claims():
            return None
        victim.signal(signal.SIGSTOP)
        claims = victim_holds_claims()
        if not claims:
            victim.signal(signal.SIGCONT)
        return claims or None

    held = wait_for(frozen_holding_claims, timeout=120, what="the victim frozen while holding claims")
    sent = burst.ids()
    recorded = set(crew.answered(sent))
    victim.kill9()
    time.sleep(1.0)  # a reply whose DATA was complete lands now
    window = (set(crew.replies()) & sent) - recorded  # replied but not recorded: may come twice
    burst.join()
    by_worker = check_answered_once(crew, burst, allowed_twice=window)
    # A survivor logs the return whether the victim had moved its claims into the claims
    # folder or had only named them in the ledger (claims.py): wait for the line, which
    # may come a beat after the last answer.
    returned = wait_for(lambda: [line for w in crew.workers if w is not victim
                                 for line in w.log_text().splitlines()
                                 if "returned" in line and victim_id in line],
                        timeout=4 * LEASE,
                        what="a survivor's line returning the victim's claims")
    crew.no_tracebacks()
    print(f"\nkill -9 of 1 of 3 holding {len(held)} claims: 60 answered, "
          f"{Counter(by_worker.values())[victim_id]} by the victim before it died; {returned[0].split(': ', 1)[1]}")


# -- the same request twice -----------------------------------------------------------------

def test_a_resubmitted_request_held_by_two_workers_is_answered_once(crew, mailhub):
    """Copy 1 is held by worker A, which cannot send (451) and is then frozen
    (SIGSTOP) with its reservation; copy 2 (same Message-ID) goes to another
    worker, which must wait for A rather than answer. Then A goes on."""
    a, others = crew.workers[0], crew.workers[1:]
    request = build_request(mailhub.address("client1"), mailhub.server, [("twice-tiger.png", photo("tiger.png"))])
    message_id = request["Message-ID"]
    mailhub.fail_smtp(451, for_seconds=120, senders=[mailhub.server])
    for worker in others:
        worker.signal(signal.SIGSTOP)
    try:
        submit(mailhub, mailhub.address("client1"), request)
        wait_for(lambda: ledger_reservations(crew.config).get(message_id, ("", ""))[1] == a.worker_id,
                 timeout=60, what="worker A to reserve the Message-ID")
        a.signal(signal.SIGSTOP)
        for worker in others:
            worker.signal(signal.SIGCONT)
        submit(mailhub, mailhub.address("client1"), request)  # the same request again
        other_ids = {worker.worker_id for worker in others}
        claim = wait_for(lambda: [c for c in ledger_claims(crew.config) if c.worker in other_ids],
                         timeout=20, what="another worker to claim the copy")[0]
        time.sleep(1.5)  # it looks, finds A's reservation, and waits
        assert ledger_reservations(crew.config)[message_id][1] == a.worker_id
        assert ledger_records(crew.config).get(message_id) is None  # nobody answered
    finally:
        mailhub.fail_smtp(for_seconds=0)
        for worker in crew.workers:
            worker.signal(signal.SIGCONT)
    wait_for(lambda: mailbox_messages(crew.config, "server") == [] and
             folder_count(crew.config, "server", CLAIMS) == 0, timeout=60, what="both copies handled")
    time.sleep(1.5)
    replies = replies_by_request(crew.config, with_bodies=True)
    assert len(replies.get(message_id, [])) == 1, f"{len(replies.get(message_id, []))} replies"
    assert_answers(parse_reply(replies[message_id][0]).answers, ["twice-tiger.png"])
    assert f"{message_id} from client1@hub.test: answered" in a.log_text()
    waiter = crew.ids()[claim.worker]
    assert f"{message_id} from client1@hub.test: ignored (already answered as" in waiter.log_text()
    assert f"{message_id} from client1@hub.test: answered" not in waiter.log_text()
    crew.no_tracebacks()


# -- a restart while holding claims ---------------------------------------------------------------

def test_a_worker_restarted_while_holding_claims_gets_them_back_after_the_lease(crew, mailhub):
    a = crew.workers[0]
    for worker in crew.workers[1:]:
        assert worker.stop() == 0  # SIGTERM: each gives back what it holds and exits 0
    burst = Burst(mailhub, 3)
    mailhub.fail_smtp(451, for_seconds=120, senders=[mailhub.server])  # A claims, cannot answer
    try:
        burst.start().join()
        held = wait_for(lambda: (lambda c: c if len(c) == 3 else None)(
            [claim for claim in ledger_claims(crew.config) if claim.worker == a.worker_id]),
            timeout=60, what="A to hold the three claims")
        status = run_cli("server.py", "--status", "--config", str(crew.config), timeout=60)
        old_id = a.worker_id
        a.kill9()
        killed_at = time.monotonic()
    finally:
        mailhub.fail_smtp(for_seconds=0)
    assert status.returncode == 0, status.stderr
    assert f"claims    3 in {CLAIMS} (lease {LEASE} s)" in status.stdout, status.stdout
    assert f"{old_id}" in status.stdout and "3 claims, oldest" in status.stdout, status.stdout
    assert "queue     0 waiting in INBOX" in status.stdout, status.stdout
    a.start()  # a new worker id: it cannot renew its predecessor's leases
    assert a.worker_id != old_id
    check_answered_once(crew, burst, timeout=120)
    waited = time.monotonic() - killed_at
    # The lease runs from the last renewal (at most LEASE/5 before the kill).
    assert waited >= LEASE * 0.75, f"claims came back after {waited:.1f} s, before the lease ran out"
    log = a.log_text()
    assert f"3 claim(s) outlived their lease of {LEASE} s (held by {old_id}): returned 3 to the queue" in log
    print(f"\nrestart while holding {len(held)} claims: answered {waited:.1f} s after the kill (lease {LEASE} s)")


# -- what cannot share ---------------------------------------------------------------------

def test_a_pop3_server_cannot_join_and_says_why(crew):
    result = run_cli("server.py", "--receive", "pop3", "--once", "--config", str(crew.config), timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert "already watching this mailbox" in lines[0] and "POP3 cannot claim a message atomically" in lines[0]


# -- PostgreSQL -----------------------------------------------------------------------------

def test_workers_sharing_a_postgresql_ledger(team, mailhub, postgres, tmp_path):
    team.stop_all()  # another ledger must not watch the same mailbox meanwhile
    pg_team = Team(mailhub, tmp_path, ledger=postgres.url,
                   ledger_password_command=f"cat {postgres.password_file}")
    pg_team.clean()
    try:
        pg_team.ensure_running()
        assert all(f"ledger {postgres.url})" in w.log_text() for w in pg_team.workers)
        assert postgres.password() not in "".join(w.log_text() for w in pg_team.workers)
        burst = Burst(mailhub, 30).start()
        burst.join()
        by_worker = check_answered_once(pg_team, burst)
        assert len(set(by_worker.values())) >= 2, Counter(by_worker.values())
        pg_team.no_tracebacks()
    finally:
        pg_team.stop_all()
        pg_team.clean()
