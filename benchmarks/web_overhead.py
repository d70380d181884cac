#!/usr/bin/env python3
"""What the operations page costs: a burst with and without [web], and paging 10,000 rows.

1. Bursts of --burst requests (default 60) through a private hub to the server
   in a thread with the real classifier (benchmarks/roundtrip.py's burst),
   alternately without the page and with it -- the page bound, its metrics
   registry fed, thumbnails written, and a watcher that keeps the live event
   stream open and fetches /metrics and /api/requests every --scrape seconds
   (far more often than Prometheus's default 15 s). --rounds pairs; the
   medians and their ratio are printed. The request history is written to the
   ledger in both arms: it is part of the server, not of the page.
2. A ledger holding --rows history rows (default 10,000): the page's queries
   through HTTP -- first page, a filtered page, the 100th page by cursor, the
   charts for the day -- each timed --repeat times (median, max).

Usage: python benchmarks/web_overhead.py [--burst 60] [--rounds 3] [--rows 10000]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
from animalid.web.metrics import Metrics
from animalid.web.operations import Operations
from animalid.web.settings import WebSettings
from animalid.web.sources import LocalState

WATCHER = r"""
import sys, threading, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
def stream():
    with urllib.request.urlopen(url + "events", timeout=600) as events:
        for line in events:
            if line.startswith(b"event:"):
                print("event", flush=True)
threading.Thread(target=stream, daemon=True).start()
while True:
    time.sleep(every)
    for path in ("metrics", "api/requests?limit=50", "api/overview"):
        with urllib.request.urlopen(url + path, timeout=60) as response:
            response.read()
        print("fetch", flush=True)
"""


class Watcher:
    """Someone watching, in a process of its own (its CPU is not the server's): the live
    stream open and read, and /metrics, the table and the overview fetched every ``every`` s."""

    def __init__(self, url: str, every: float):
        self.proc = subprocess.Popen([sys.executable, "-c", WATCHER, url, str(every)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.fetches = self.events = 0

    def close(self) -> None:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=30)
        self.fetches, self.events = out.count("fetch"), out.count("event")


class WebCpu:
    """CPU seconds spent by the page's own threads: each HTTP handler thread (counted as it
    ends) and the long-lived feed, thumbnail and pruning threads (read from /proc)."""

    def __init__(self) -> None:
        self.handlers = 0.0
        self._lock = threading.Lock()
        original = socketserver.ThreadingMixIn.process_request_thread

        def counted(server, request, address):  # type: ignore[no-untyped-def]
            try:
                original(server, request, address)
            finally:
                with self._lock:
                    self.handlers += time.thread_time()

        socketserver.ThreadingMixIn.process_request_thread = counted  # type: ignore[method-assign]

    @staticmethod
    def threads() -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for task in Path("/proc/self/task").iterdir():
            try:
                if (task / "comm").read_text().startswith(("animalid-web", "animalid-thumb")):
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
            except (FileNotFoundError, ProcessLookupError):
                continue
        return total


def cpu_seconds() -> float:
    """User and system CPU of this process so far (the server, the hub's SMTP front, the burst)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_burst(hub, config_path: Path, classifier, count: int, page: bool, scrape: float,
              folder: Path, web_cpu: WebCpu) -> tuple[float, float, float, Watcher | None]:
    """Seconds from the first request sent until the server has answered ``count``, and
    this process's CPU seconds meanwhile."""
    empty_mailbox(config_path, "server")
    for client in CLIENTS:
        empty_mailbox(make_config(hub, folder, client, receive="imap", server_receive="imap",
                                  name=f"{client}.ini"), "client")
    server = edge.server(load_config(config_path), classifier=classifier).open()
    operations = watcher = None
    if page:
        web = WebSettings(listen="127.0.0.1:0", keep_days=1, thumbnails=folder / "thumbs")
        operations = start_operations(server, web, "bench", "bench")
        watcher = Watcher(operations.url, scrape)
    try:
        with serving_in_background(server):
            warm = build_request(hub.address(CLIENTS[0]), hub.server, [("warm-up.png", photo("tiger.png"))])
            submit(hub, hub.address(CLIENTS[0]), warm)
            wait_for(lambda: server.handled >= 1, timeout=300, what="the warm-up answer")
            started, cpu = time.perf_counter(), cpu_seconds()
            page_cpu = web_cpu.handlers + web_cpu.threads()
            burst = Burst(hub, count).start()
            burst.join()
            wait_for(lambda: server.handled >= 1 + count, timeout=1800, what="the burst answered")
            if operations is not None and operations.thumbnails is not None:
                operations.thumbnails.drain(60)  # their CPU counts too
            page_cpu = web_cpu.handlers + web_cpu.threads() - page_cpu
            return time.perf_counter() - started, cpu_seconds() - cpu, page_cpu, watcher
    finally:
        if watcher is not None:
            watcher.close()
        if operations is not None:
            operations.close()


def bursts(args) -> None:
    state = tempfile.mkdtemp(prefix="mhw", dir="/tmp")  # short: Dovecot socket paths
    hub = start_on_free_offset(state, clients=CLIENTS)
    try:
        folder = Path(state)
        config_path = make_config(hub, folder, CLIENTS[0], receive="imap", server_receive="imap",
                                  name="server.ini", rate_limit_per_hour=0)
        classifier = edge.classifier(load_config(config_path))
        classifier.load()
        times: dict[str, list[float]] = {"without": [], "with": []}
        cpus: dict[str, list[float]] = {"without": [], "with": []}
        page_cpus: list[float] = []
        web_cpu = WebCpu()
        watchers: list[Watcher] = []
        for round_ in range(args.rounds):
            for arm in ("without", "with") if round_ % 2 == 0 else ("with", "without"):
                seconds, cpu, page_cpu, watcher = one_burst(hub, config_path, classifier, args.burst,
                                                            arm == "with", args.scrape, folder, web_cpu)
                times[arm].append(seconds)
                cpus[arm].append(cpu)
                if arm == "with":
                    page_cpus.append(page_cpu)
                if watcher is not None:
                    watchers.append(watcher)
                print(f"round {round_ + 1}, {arm:>7} the page: {seconds:.2f} s "
                      f"({args.burst / seconds:.2f} requests/s), {cpu:.2f} CPU s"
                      + (f", of which the page's threads {page_cpu:.3f} s" if arm == "with" else ""), flush=True)
        without, with_ = statistics.median(times["without"]), statistics.median(times["with"])
        cpu_without, cpu_with = statistics.median(cpus["without"]), statistics.median(cpus["with"])
        print(f"burst of {args.burst}, IMAP IDLE, real classifier, medians of {args.rounds}: "
              f"{without:.2f} s without the page, {with_:.2f} s with it ({100 * (with_ / without - 1):+.1f}% "
              f"wall clock); CPU {cpu_without:.2f} s without, {cpu_with:.2f} s with "
              f"({100 * (cpu_with / cpu_without - 1):+.1f}%) (watcher: {sum(w.fetches for w in watchers)} "
              f"fetches, {sum(w.events for w in watchers)} live events)")
        page = statistics.median(page_cpus)
        print(f"the page's own threads (HTTP handlers, live feed, thumbnails): median {page:.3f} CPU s "
              f"per burst = {100 * page / cpu_with:.2f}% of the burst's CPU, "
              f"{100 * page / with_:.2f}% of one core over the burst")
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
    parser.add_argument("--rounds", type=int, default=3, help="pairs of bursts (default 3)")
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
