#!/usr/bin/env python3
"""What the operations page costs: bursts with and without [web], and paging 10,000 rows.

1. Bursts of --burst requests (default 60) through a private hub to the server
   in a thread with the real classifier, in four arms, each leading one round:
   no page; the page serving but nobody looking; Prometheus scraping /metrics
   every 15 s; the page open (the live event stream read, and /metrics, the
   table and the overview fetched every --scrape seconds). The watcher runs in
   a process of its own. Printed per arm: the wall-clock time and this
   process's CPU time of the burst (medians of --rounds), and the CPU time of
   the page's own threads (HTTP handlers, live feed, thumbnails, pruning). The
   request history is written to the ledger in every arm: it belongs to the
   server, not to the page.
2. A ledger holding --rows history rows (default 10,000): the page's queries
   through HTTP (first page, a filtered page, the 100th page by cursor, the
   day's charts, the overview; --repeat times each), and the page itself in
   headless Chromium (load to the first rows drawn, "Older" to the next).

Usage: python benchmarks/web_overhead.py [--burst 60] [--rounds 4] [--rows 10000] [--skip-bursts]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import resource
import shutil
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from animalid.cli import settings as edge
from animalid.cli.operations import start_operations
from animalid.config import load_config
from animalid.devhub import start_on_free_offset
from animalid.history import ANSWERED, OUTCOMES, WORKING, ImageResult, RequestRecord
from animalid.mail.messages import build_request
from animalid.server.ledger import SqliteLedger
from animalid.server.service import serving_in_background
from animalid.testing.harness import CLIENTS, Burst, empty_mailbox, make_config, photo, submit, wait_for
from animalid.web.feed import LiveFeed
from animalid.web.metrics import Metrics
from animalid.web.operations import Operations
from animalid.web.settings import WebSettings
from animalid.web.sources import LocalState
from animalid.web.thumbnails import ThumbnailStore

WATCHER = r"""
import signal, sys, threading, time, urllib.request
url, every, stream_too = sys.argv[1], float(sys.argv[2]), sys.argv[3] == "1"
counts = {"events": 0, "fetches": 0}
def report(*_):
    print(counts["fetches"], counts["events"], flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, report)
def stream():
    with urllib.request.urlopen(url + "events", timeout=600) as events:
        for line in events:
            counts["events"] += line.startswith(b"event:")
if stream_too:
    threading.Thread(target=stream, daemon=True).start()
while True:
    time.sleep(every)
    for path in ("metrics",) + (("api/requests?limit=50", "api/overview") if stream_too else ()):
        with urllib.request.urlopen(url + path, timeout=60) as response:
            response.read()
        counts["fetches"] += 1
"""


class Watcher:
    """Someone watching, in a process of its own (its CPU is not the server's): the live
    stream open and read, and /metrics, the table and the overview fetched every ``every`` s."""

    def __init__(self, url: str, every: float, page_open: bool):
        self.proc = subprocess.Popen([sys.executable, "-c", WATCHER, url, str(every), "1" if page_open else "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.fetches = self.events = 0

    def close(self) -> None:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        fetches, events = (out.split() + ["0", "0"])[:2]
        self.fetches, self.events = int(fetches), int(events)


class WebCpu:
    """CPU seconds spent by the page's own threads, each counted as it ends: the HTTP
    handlers, and the feed, thumbnail and pruning threads (they end when the page closes)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()
        self._count(socketserver.ThreadingMixIn, "process_request_thread")
        self._count(ThumbnailStore, "_work")
        self._count(LiveFeed, "_run")
        self._count(Operations, "_prune_forever")

    def _count(self, owner: type, name: str) -> None:
        original = getattr(owner, name)

        def counted(*args):  # type: ignore[no-untyped-def]
            try:
                return original(*args)
            finally:
                with self._lock:
                    self.seconds += time.thread_time()

        setattr(owner, name, counted)


def cpu_seconds() -> float:
    """User and system CPU of this process so far (the server, the hub's SMTP front, the burst)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# The arms: no page; the page serving but nobody looking; Prometheus scraping /metrics
# every 15 s; and the page open in a browser (live stream, the table and the overview
# fetched every --scrape seconds, /metrics too).
ARMS = ("no page", "page, idle", "page, scraped every 15 s", "page open, live")


def one_burst(hub, config_path: Path, classifier, count: int, arm: str, scrape: float,
              folder: Path, web_cpu: WebCpu) -> tuple[float, float, float, Watcher | None]:
    """Seconds from the first request sent until the server has answered ``count``; this
    process's CPU seconds meanwhile; the page threads' CPU seconds (from start to close)."""
    empty_mailbox(config_path, "server")
    for client in CLIENTS:
        empty_mailbox(make_config(hub, folder, client, receive="imap", server_receive="imap",
                                  name=f"{client}.ini"), "client")
    server = edge.server(load_config(config_path), classifier=classifier).open()
    operations = watcher = None
    before = web_cpu.seconds
    if arm != ARMS[0]:
        web = WebSettings(listen="127.0.0.1:0", keep_days=1, thumbnails=folder / "thumbs")
        operations = start_operations(server, web, "bench", "bench")
        if arm == ARMS[2]:
            watcher = Watcher(operations.url, 15.0, page_open=False)
        elif arm == ARMS[3]:
            watcher = Watcher(operations.url, scrape, page_open=True)
    try:
        with serving_in_background(server):
            warm = build_request(hub.address(CLIENTS[0]), hub.server, [("warm-up.png", photo("tiger.png"))])
            submit(hub, hub.address(CLIENTS[0]), warm)
            wait_for(lambda: server.handled >= 1, timeout=300, what="the warm-up answer")
            started, cpu = time.perf_counter(), cpu_seconds()
            burst = Burst(hub, count).start()
            burst.join()
            wait_for(lambda: server.handled >= 1 + count, timeout=1800, what="the burst answered")
            seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    finally:
        if watcher is not None:
            watcher.close()
        if operations is not None:
            operations.close()
    return seconds, cpu, web_cpu.seconds - before, watcher


def bursts(args) -> None:
    state = tempfile.mkdtemp(prefix="mhw", dir="/tmp")  # short: Dovecot socket paths
    hub = start_on_free_offset(state, clients=CLIENTS)
    try:
        folder = Path(state)
        config_path = make_config(hub, folder, CLIENTS[0], receive="imap", server_receive="imap",
                                  name="server.ini", rate_limit_per_hour=0)
        classifier = edge.classifier(load_config(config_path))
        classifier.load()
        web_cpu = WebCpu()
        times: dict[str, list[float]] = {arm: [] for arm in ARMS}
        cpus: dict[str, list[float]] = {arm: [] for arm in ARMS}
        page_cpus: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for round_ in range(args.rounds):
            order = ARMS[round_ % len(ARMS):] + ARMS[:round_ % len(ARMS)]  # each arm leads once
            for arm in order:
                seconds, cpu, page_cpu, watcher = one_burst(hub, config_path, classifier, args.burst, arm,
                                                            args.scrape, folder, web_cpu)
                times[arm].append(seconds)
                cpus[arm].append(cpu)
                page_cpus[arm].append(page_cpu)
                seen = f"; watcher {watcher.fetches} fetches, {watcher.events} events" if watcher else ""
                print(f"round {round_ + 1}, {arm:<26} {seconds:6.2f} s ({args.burst / seconds:.2f} requests/s), "
                      f"CPU {cpu:.2f} s, the page's threads {page_cpu:.3f} s{seen}", flush=True)
        base_time, base_cpu = statistics.median(times[ARMS[0]]), statistics.median(cpus[ARMS[0]])
        print(f"burst of {args.burst}, IMAP IDLE, real classifier, medians of {args.rounds}:")
        for arm in ARMS:
            wall, cpu, page = (statistics.median(times[arm]), statistics.median(cpus[arm]),
                               statistics.median(page_cpus[arm]))
            print(f"  {arm:<26} {wall:6.2f} s ({100 * (wall / base_time - 1):+5.1f}%), CPU {cpu:5.2f} s "
                  f"({100 * (cpu / base_cpu - 1):+5.1f}%), the page's own threads {page:.3f} CPU s "
                  f"({100 * page / cpu:.2f}% of the burst's CPU)")
    finally:
        hub.stop()
        shutil.rmtree(state, ignore_errors=True)


def timed(url: str, repeat: int) -> tuple[float, float, dict]:
    seconds = []
    data: dict = {}
    for _ in range(repeat):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=60) as response:
            data = json.loads(response.read())
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), max(seconds), data


def paging(args) -> None:
    folder = Path(tempfile.mkdtemp(prefix="web-history-"))
    try:
        ledger = SqliteLedger(folder / "ledger.sqlite")
        rng = random.Random(1)
        now = time.time()
        image = ImageResult("tiger.png", "Tiger (Panthera tigris), 97%", 97.0, ("DANGEROUS", "ENDANGERED"))
        outcomes = [o for o in OUTCOMES if o != WORKING]
        records = [RequestRecord(key=f"imap:1:{n}", arrived=now - rng.uniform(0, 7 * 86400),
                                 sender=f"client{n % 40}@example.test", subject=f"camera {n % 7} photo {n}",
                                 outcome=rng.choice([ANSWERED] * 6 + outcomes), reason="1 image, 0.4 s",
                                 seconds=rng.lognormvariate(-0.5, 0.8), worker="w1", images=(image,))
                   for n in range(args.rows)]
        started = time.perf_counter()
        for start in range(0, len(records), 1000):
            ledger.record_requests(records[start:start + 1000])
        print(f"{args.rows} history rows written in {time.perf_counter() - started:.1f} s")
        operations = Operations(WebSettings(listen="127.0.0.1:0"), ledger, ledger,
                                LocalState("w1", lambda: 0, lambda: 0), Metrics(process=False)).start()
        try:
            url = operations.url
            median, worst, page = timed(url + "api/requests?limit=50", args.repeat)
            print(f"first page (50 of {page['total']}): median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms")
            median, worst, page = timed(url + "api/requests?limit=50&outcome=refused&sender=client1", args.repeat)
            print(f"filtered page (outcome, sender; {page['total']} match): median {median * 1000:.1f} ms, "
                  f"max {worst * 1000:.1f} ms")
            cursor = ""
            for _ in range(99):
                cursor = json.loads(urllib.request.urlopen(
                    url + "api/requests?limit=50" + (f"&before={urllib.request.quote(cursor)}" if cursor else ""),
                    timeout=60).read())["before"]
            median, worst, _ = timed(url + f"api/requests?limit=50&before={urllib.request.quote(cursor)}",
                                     args.repeat)
            print(f"100th page by cursor: median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms")
            median, worst, _ = timed(url + "api/charts?window=day", args.repeat)
            print(f"charts, last day: median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms")
            median, worst, _ = timed(url + "api/overview", args.repeat)
            print(f"overview (workers, counts): median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms")
            in_browser(url, args.rows)
        finally:
            operations.close()
            ledger.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def in_browser(url: str, rows: int, loads: int = 5) -> None:
    """The page in headless Chromium: from navigation to the first 50 rows drawn, and one
    "Older" click to the next 50 drawn (medians)."""
    from animalid.testing.browser import browser_missing, headless_chromium

    if browser_missing():
        print(f"in a browser: skipped ({browser_missing()})")
        return
    total = f"of {rows:,}"
    shown = "return document.getElementById('count').textContent"
    load, older = [], []
    with headless_chromium() as driver:
        for _ in range(loads):
            started = time.perf_counter()
            driver.get(url)
            wait_for(lambda: total in driver.execute_script(shown), timeout=60, what="the first page")
            load.append(time.perf_counter() - started)
            started = time.perf_counter()
            driver.find_element("id", "older").click()
            wait_for(lambda: driver.execute_script(shown).startswith("rows 51"), timeout=60, what="page 2")
            older.append(time.perf_counter() - started)
    print(f"in Chromium: page loaded with its first 50 of {rows} rows in {statistics.median(load) * 1000:.0f} ms, "
          f"'Older' to the next 50 in {statistics.median(older) * 1000:.0f} ms (medians of {loads})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", type=int, default=60, help="requests per burst (default 60)")
    parser.add_argument("--rounds", type=int, default=4, help="bursts per arm (default 4)")
    parser.add_argument("--scrape", type=float, default=2.0, help="watcher's fetch interval, s (default 2)")
    parser.add_argument("--rows", type=int, default=10_000, help="history rows for paging (default 10000)")
    parser.add_argument("--repeat", type=int, default=20, help="timings per query (default 20)")
    parser.add_argument("--skip-bursts", action="store_true", help="only the paging figures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    paging(args)
    if not args.skip_bursts:
        bursts(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
