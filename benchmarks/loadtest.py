#!/usr/bin/env python3
"""Load test with fault injection: N clients, M requests, and what became of every one.

Starts a private mail hub (animalid/devhub: Dovecot + the SMTP front, on a
random port offset), ``--workers`` server.py processes sharing the server's
mailbox (animalid/server/claims.py; each with the real classifier, all with
one ledger: SQLite, or with ``--ledger postgresql`` a private PostgreSQL
server from Debian's package), and N clients (animalid/client/requester.py, the real client path: RFC
5321 submission, RFC 2177 IDLE or RFC 1939 POP3 polling). The clients share M
requests (one photo each, tiger / dog / bison in turn) and send them at a
steady pace, while seeded faults strike during the sending window:

* ``--kill N``: SIGKILL a server N times (a seeded choice among the workers),
  restarting it each time; its claims come back after ``--lease`` seconds;
* ``--restart-dovecot N`` / ``--restart-smtp N``: restart the hub's Dovecot
  (IMAP, POP3, LMTP) or its SMTP front;
* ``--fail-smtp S``: the SMTP front answers 451 to the server's MAIL FROM for
  S seconds (MailHub.fail_smtp, a provider throttling the account).

Then it prints the requests sent, answered (with the right family), wrong,
answered per worker (from the shared ledger), duplicated (extra copies of an
answer, see README "Reliability"), lost (unanswered when the run ends), server
crashes (exits we did not cause), the servers' peak RSS (the kernel's VmHWM of
every server process), the send-to-answer latency and the throughput. It stops by itself after
``--duration`` seconds at most; exit status 0 when nothing was lost, wrong or
crashed, else 1.

Usage: python benchmarks/loadtest.py [--workers 3] [--ledger sqlite|postgresql] [--clients 4]
       [--requests 100] [--duration 300] [--kill 3] [--lease 15] [--restart-dovecot 1]
       [--restart-smtp 1] [--fail-smtp 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from animalid.cli import settings as edge  # noqa: E402
from animalid.config import load_config  # noqa: E402
from animalid.devhub import MailHub, start_on_free_offset  # noqa: E402
from animalid.errors import AnimalIdError, TransientError  # noqa: E402
from animalid.testing.harness import (  # noqa: E402
    FAMILY,
    ServerProcess,
    ledger_records,
    ledger_states,
    make_config,
    replies_by_request,
)

PHOTOS = ("tiger.png", "dog.png", "bison.png")
GRACE_S = 5.0  # after the last answer: time for late duplicates to show


@dataclass
class Outcome:
    sent: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> (photo, sent at)
    answered: dict[str, float] = field(default_factory=dict)  # id -> seconds to answer
    wrong: set[str] = field(default_factory=set)
    duplicates: Counter = field(default_factory=Counter)  # Message-ID -> extra answers
    send_retries: int = 0  # sends the client had to give up on for now (mail server down)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


# -- the pieces -----------------------------------------------------------------

def client_loop(config_path: Path, photos: dict[str, bytes], count: int, pace: float,
                deadline: float, outcome: Outcome) -> None:
    """One client: send ``count`` requests ``pace`` s apart, then collect every answer."""
    try:
        with edge.requester(load_config(config_path)) as requester:
            sent: set[str] = set()
            answered: set[str] = set()
            next_send = time.monotonic()
            while len(sent) < count or sent - answered:
                now = time.monotonic()
                if now > deadline:
                    break
                if len(sent) < count and now >= next_send:
                    name = PHOTOS[len(sent) % len(PHOTOS)]
                    sent_at = time.monotonic()
                    try:
                        message_id = requester.send([(name, photos[name])])
                    except TransientError:  # the mail server is restarting: try again soon
                        with outcome.lock:
                            outcome.send_retries += 1
                        next_send = now + 1.0
                        continue
                    sent.add(message_id)
                    with outcome.lock:
                        outcome.sent[message_id] = (name, sent_at)
                    next_send += pace
                for message_id, answers in requester.poll():
                    record_answer(outcome, message_id, answers)
                    answered.add(message_id)
                time.sleep(0.05)
            linger_until = min(deadline, time.monotonic() + GRACE_S)
            while time.monotonic() < linger_until:  # duplicates still on their way
                for message_id, answers in requester.poll():
                    record_answer(outcome, message_id, answers)
                time.sleep(0.1)
            with outcome.lock:
                outcome.duplicates.update(requester.duplicate_replies)
    except AnimalIdError as exc:
        with outcome.lock:
            outcome.errors.append(f"{config_path.stem}: {exc}")


def record_answer(outcome: Outcome, message_id: str, answers: list[dict]) -> None:
    with outcome.lock:
        name, sent_at = outcome.sent.get(message_id, ("?", time.monotonic()))
        outcome.answered[message_id] = time.monotonic() - sent_at
        family = (answers[0].get("taxonomy") or {}).get("family") if answers else None
        if family != FAMILY.get(name):
            outcome.wrong.add(message_id)


class Faults:
    """Seeded fault events spread over the sending window, and the server's life."""

    def __init__(self, hub: MailHub, servers: list[ServerProcess], args, window: float, outcome: Outcome):
        self.hub, self.servers, self.args, self.outcome = hub, servers, args, outcome
        # Requests not yet recorded answered when a fault struck that can duplicate
        # a reply (README, "Reliability": a kill, or an SMTP session cut by a restart).
        self.in_flight: set[str] = set()
        rng = random.Random(args.seed)
        self.rng = rng
        events = (["kill"] * args.kill + ["restart-dovecot"] * args.restart_dovecot
                  + ["restart-smtp"] * args.restart_smtp + (["fail-smtp"] if args.fail_smtp else []))
        self.plan = sorted((rng.uniform(0.1 * window, 0.9 * window), event) for event in events)
        self.done: list[str] = []
        self.crashes = 0
        self.peaks: list[int] = []
        self.stop = threading.Event()
        self._killing = False
        self.thread = threading.Thread(target=self._run, name="faults", daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        plan = list(self.plan)
        while not self.stop.wait(0.2):
            self._note_peak()
            for server in self.servers:
                if not server.alive() and not self._killing:
                    self.crashes += 1
                    logging.error("server.py exited by itself (status %s); restarting",
                                  server.proc.returncode)
                    server.start()
            if plan and time.monotonic() - started >= plan[0][0]:
                self._strike(plan.pop(0)[1])

    def _strike(self, event: str) -> None:
        logging.info("fault: %s", event)
        if event != "fail-smtp":  # a 451 to MAIL FROM stores nothing: no duplicate
            self._note_in_flight()
        if event == "kill":
            self._killing = True
            self._note_peak()
            victim = self.rng.choice(self.servers)
            victim.kill9()
            victim.start()
            self._killing = False
        elif event == "restart-dovecot":
            self.hub.restart_dovecot()
        elif event == "restart-smtp":
            self.hub.restart_smtp()
        elif event == "fail-smtp":
            self.hub.fail_smtp(451, for_seconds=self.args.fail_smtp, senders=[self.hub.server])
        self.done.append(event)

    def _note_in_flight(self) -> None:
        with self.outcome.lock:
            sent = set(self.outcome.sent)
        recorded = {m for m, state in ledger_states(self.servers[0].config_path).items()
                    if state == "answered"}
        self.in_flight |= sent - recorded

    def _note_peak(self) -> None:
        for server in self.servers:
            try:
                self.peaks.append(server.peak_rss())
            except (OSError, AssertionError):
                pass


def late_duplicates(configs: list[Path], outcome: Outcome) -> Counter:
    """Replies still in the clients' mailboxes for requests already answered."""
    extra: Counter = Counter()
    for config in configs:
        for message_id, raws in replies_by_request(config).items():
            if message_id in outcome.answered:
                extra[message_id] += len(raws)
    return extra


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


# -- the run ----------------------------------------------------------------------

def run(args) -> int:
    clients = [f"load{i + 1}" for i in range(args.clients)]
    state = tempfile.mkdtemp(prefix="mhload", dir="/tmp")
    work = Path(tempfile.mkdtemp(prefix="loadtest-"))
    photos = {name: (ROOT / "tests" / "photos" / name).read_bytes() for name in PHOTOS}
    hub = start_on_free_offset(state, clients=clients)
    servers: list[ServerProcess] = []
    postgres = None
    try:
        # Kills count as failed tries (the design's guard against a mail that crashes
        # the server), so allow more tries than there are kills.
        common = dict(receive=args.receive, server_receive=args.receive, rate_limit_per_hour=0,
                      max_attempts=args.kill + 3, retry_max_delay=2, claim_lease=args.lease,
                      allowed_senders=", ".join(hub.address(c) for c in clients))
        classifier = {"threads": str(args.threads)}
        if args.ledger == "postgresql":
            from animalid.testing.postgres import TempPostgres

            postgres = TempPostgres().start()
            common.update(ledger=postgres.url, ledger_password_command=f"cat {postgres.password_file}")
        configs = [make_config(hub, work, client, name=f"{client}.ini", classifier_settings=classifier, **common)
                   for client in clients]
        servers = [ServerProcess(configs[0], work / f"server{i + 1}.log").start(wait=False)
                   for i in range(args.workers)]
        for server in servers:  # the models load side by side
            server.wait_started()
        per_client = [args.requests // args.clients + (i < args.requests % args.clients)
                      for i in range(args.clients)]
        pace = args.clients / args.rate
        window = max(per_client) * pace
        outcome = Outcome()
        faults = Faults(hub, servers, args, window, outcome)
        started = time.monotonic()
        deadline = started + args.duration
        threads = [threading.Thread(target=client_loop, daemon=True,
                                    args=(config, photos, count, pace, deadline, outcome))
                   for config, count in zip(configs, per_client)]
        faults.thread.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 30)
        elapsed = time.monotonic() - started
        faults.stop.set()
        faults.thread.join(60)
        outcome.duplicates.update(late_duplicates(configs, outcome))
        faults._note_peak()
        by_worker = answered_by_worker(configs[0], servers, set(outcome.sent))
        for server in servers:
            server.stop()
        return report(args, outcome, faults, elapsed, servers, by_worker)
    finally:
        for server in servers:
            server.stop()
        if postgres is not None:
            postgres.stop()
        hub.stop()
        shutil.rmtree(state, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept: {work}")


def answered_by_worker(config: Path, servers: list[ServerProcess], sent: set[str]) -> list[int]:
    """How many of the requests each server process answered (all its runs), from the ledger."""
    names: dict[str, int] = {}
    for index, server in enumerate(servers):
        for worker in re.findall(r" as worker (\S+?),", server.log_text()):
            names[worker] = index
    counts = [0] * len(servers)
    for message_id, (state, worker) in ledger_records(config).items():
        if state == "answered" and message_id in sent and worker in names:
            counts[names[worker]] += 1
    return counts


def report(args, outcome: Outcome, faults: Faults, elapsed: float, servers: list[ServerProcess],
           by_worker: list[int]) -> int:
    sent, answered = len(outcome.sent), len(outcome.answered)
    lost = sent - answered
    latencies = list(outcome.answered.values()) or [0.0]
    peak = max(faults.peaks or [0])
    crashes = faults.crashes + sum("Traceback" in server.log_text() for server in servers)
    print(f"workers {args.workers} ({args.ledger} ledger, lease {args.lease:g} s, {args.threads} torch "
          f"thread(s) each on {os.cpu_count()} cores), clients {args.clients}, "
          f"receive {args.receive}, seed {args.seed}, faults done: {', '.join(faults.done) or 'none'}")
    print(f"requests sent        {sent}")
    print(f"answered             {answered} ({len(outcome.wrong)} with a wrong family)")
    print(f"answered per worker  {' / '.join(str(count) for count in by_worker)}")
    duplicated = set(outcome.duplicates)
    outside = duplicated - faults.in_flight
    print(f"duplicated           {sum(outcome.duplicates.values())} extra answers to {len(duplicated)} "
          f"requests ({len(outside)} outside the documented windows)")
    print(f"client send retries  {outcome.send_retries} (submission refused for now, sent later)")
    print(f"lost                 {lost}")
    print(f"server crashes       {crashes}")
    print(f"server peak RSS      {peak / 1e6:.0f} MB (the largest of the {len(servers)} workers)")
    print(f"latency p50 / p95    {statistics.median(latencies):.2f} s / {percentile(latencies, 0.95):.2f} s")
    print(f"run time             {elapsed:.1f} s ({answered / elapsed:.2f} answers/s)")
    for error in outcome.errors:
        print(f"client error: {error}")
    failed = lost or crashes or outcome.wrong or outcome.errors or outside
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1,
                        help="server.py processes sharing the mailbox (default 1)")
    parser.add_argument("--ledger", choices=("sqlite", "postgresql"), default="sqlite",
                        help="the workers' shared ledger (postgresql: a private server from Debian's package)")
    parser.add_argument("--lease", type=float, default=15.0,
                        help="[server] claim_lease for the run, seconds (default 15: a killed worker's "
                             "claims come back within the run)")
    parser.add_argument("--threads", type=int, default=0,
                        help="[classifier] threads of each worker (default: the cores shared out "
                             "among the workers, at least 1)")
    parser.add_argument("--clients", type=int, default=4, help="client accounts (default 4)")
    parser.add_argument("--requests", type=int, default=100, help="requests in all (default 100)")
    parser.add_argument("--rate", type=float, default=4.0, help="requests sent per second, all clients")
    parser.add_argument("--duration", type=float, default=300.0, help="hard stop, seconds (default 300)")
    parser.add_argument("--receive", choices=("imap", "pop3"), default="imap")
    parser.add_argument("--kill", type=int, default=0, help="SIGKILL the server this many times")
    parser.add_argument("--restart-dovecot", type=int, default=0, help="restart Dovecot this many times")
    parser.add_argument("--restart-smtp", type=int, default=0, help="restart the SMTP front this many times")
    parser.add_argument("--fail-smtp", type=float, default=0.0, metavar="SECONDS",
                        help="answer 451 to the server's MAIL FROM for this long")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests < 1 or args.rate <= 0 or args.workers < 1:
        parser.error("--workers, --clients, --requests and --rate must be positive")
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.workers)
    if args.receive == "pop3" and args.workers > 1:
        parser.error("--workers: POP3 cannot claim a message atomically; several workers need --receive imap")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("animalid").setLevel(logging.ERROR)  # retries are expected under faults
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)  # aiosmtpd, cut off by restarts
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
