#!/usr/bin/env python3
"""What the shared ledger costs per request, on SQLite and on PostgreSQL, with 1..N workers.

Each worker is a process of its own with its own connection, and runs the
ledger's part of answering one request as a worker sharing a mailbox does
(animalid/server/service.py, claims.py): claim the key, place it, count the
attempt, reserve the Message-ID, take a rate-limit slot, renew the lease
before sending, record it answered, end the claim. That is 8 committed
transactions. It prints requests per second through the ledger alone and the
median and 95th percentile time of one such cycle.

SQLite runs as the server does (WAL, synchronous=FULL, so every commit waits
for the disk); PostgreSQL is a private server from Debian's package
(animalid/testing/postgres.py) on this machine, with its defaults (fsync on,
synchronous_commit on), reached over TCP on 127.0.0.1.

Usage: python benchmarks/ledger_speed.py [--workers 1 3] [--seconds 5] [--backend sqlite postgresql]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

from animalid.server.ledger import PostgresLedger, SqliteLedger


def open_spec(spec, worker: str):
    ledger = SqliteLedger(spec[1]) if spec[0] == "sqlite" else PostgresLedger(spec[1], spec[2])
    ledger.worker = worker
    return ledger


def cycle(ledger, worker: str, number: int) -> None:
    key = f"imap:1:{worker}-{number}"
    message_id = f"<{worker}-{number}@bench>"
    won = ledger.claim_keys([key], 1, stale_before=time.time() - 60)
    assert won == [key]
    ledger.place_claims(2, [(key, int(worker[1:]) * 10_000_000 + number)])  # a UID of its own
    ledger.begin_attempts([key])
    assert ledger.reserve(message_id, key, stale_before=time.time() - 60) is None
    ledger.take_event(f"{worker}@bench", "request", 3600, 0)
    assert ledger.hold_claim(key)
    ledger.mark_answered(key, message_id, f"{worker}@bench")
    ledger.end_claims([key])


def run_worker(spec, worker: str, seconds: float, start_at: float, results) -> None:
    with open_spec(spec, worker) as ledger:
        times = []
        while time.time() < start_at:
            time.sleep(0.001)
        number = 0
        while time.time() < start_at + seconds:
            started = time.perf_counter()
            cycle(ledger, worker, number)
            times.append(time.perf_counter() - started)
            number += 1
        results.put(times)


def measure(spec, workers: int, seconds: float) -> tuple[float, float, float]:
    open_spec(spec, "setup").close()  # the schema first
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 1.0
    procs = [context.Process(target=run_worker, args=(spec, f"w{i}", seconds, start_at, results))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    times = [t for _ in procs for t in results.get(timeout=seconds + 120)]
    for proc in procs:
        proc.join(60)
    times.sort()
    return len(times) / seconds, statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgresql"],
                        choices=["sqlite", "postgresql"])
    args = parser.parse_args(argv)
    print(f"{'backend':<11} {'workers':>7} {'requests/s':>11} {'p50 ms':>8} {'p95 ms':>8}")
    for backend in args.backend:
        for workers in args.workers:
            if backend == "sqlite":
                folder = Path(tempfile.mkdtemp(prefix="ledger-speed-"))
                rate, p50, p95 = measure(("sqlite", str(folder / "ledger.sqlite")), workers, args.seconds)
            else:
                from animalid.testing.postgres import TempPostgres

                with TempPostgres() as postgres:
                    rate, p50, p95 = measure(("postgresql", postgres.url, postgres.password()),
                                             workers, args.seconds)
            print(f"{backend:<11} {workers:>7} {rate:>11.0f} {p50 * 1000:>8.1f} {p95 * 1000:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
