#!/usr/bin/env python3
"""Round-trip time and burst throughput of the mail path on the local hub.

Starts a private mail hub (Dovecot + SMTP front, animalid/devhub) on a
random port offset, the server (animalid/server/service.py) in a thread with the
real classifier, and a client (animalid/client/requester.py), then prints:

* the classifier alone: one image, and a batch the size of the burst;
* the round trip of one photo (send -> server answers -> reply read), median
  and p95 over --trips trips, for POP3 polling every --poll seconds (both
  sides) and for IMAP IDLE (both sides);
* the same round trips with a do-nothing classifier: the mail path alone;
* a burst of --burst requests sent at once from four client accounts:
  requests/s from the first send until every answer is in, with the time the
  server spent inside classify() shown apart; and the same burst with the
  do-nothing classifier, which is the mail path's own ceiling.

Mail protocols: RFC 5321 submission, RFC 1939 POP3, RFC 9051 IMAP with
RFC 2177 IDLE. Note that Dovecot delays IDLE notifications by a fixed 500 ms
(NOTIFY_DELAY_MSECS), so an IMAP IDLE round trip on the hub takes at least
about one second (two IDLE legs); POP3 polling does not wait for it.

``--backend torch,onnx`` measures each classifier backend in turn, in one run
(the do-nothing figures once, after them).

Usage: python benchmarks/roundtrip.py [--trips 20] [--burst 100] [--poll 0.1] [--backend torch,onnx]
"""

from __future__ import annotations

import argparse
import configparser
import logging
import shutil
import statistics
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from animalid.cli import settings as edge  # noqa: E402
from animalid.client.requester import Requester  # noqa: E402
from animalid.config import load_config  # noqa: E402
from animalid.devhub import MailHub, start_on_free_offset  # noqa: E402
from animalid.server.service import serving_in_background  # noqa: E402

PHOTO = ROOT / "tests" / "photos" / "tiger.png"
CLIENTS = ("bench1", "bench2", "bench3", "bench4")


def write_config(hub: MailHub, folder: Path, receive: str, poll: float, client: str = CLIENTS[0],
                 pipeline: bool = True):
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.read(ROOT / "config.ini")
    parser["hub"].update(domain=hub.domain, clients=", ".join(CLIENTS))
    for protocol, port, security in (("smtp", "submission", "starttls"), ("imap", "imaps", "tls"),
                                     ("pop3", "pop3s", "tls")):
        parser[protocol].update(host="127.0.0.1", port=str(hub.ports[port]), security=security,
                                ca_file=str(hub.ca_file))
    secrets = Path(hub.state) / "secrets"
    address = hub.address(client)
    parser["client"].update(address=address, username=address, password_env="",
                            password_command=f"cat {secrets / client}", server_address=hub.server,
                            receive=receive, poll_interval=str(poll))
    parser["server"].update(address=hub.server, username=hub.server, password_env="",
                            password_command=f"cat {secrets / 'server'}", receive=receive,
                            poll_interval=str(poll), rate_limit_per_hour="0",
                            state_file=str(folder / f"state-{receive}.sqlite"),
                            pipeline="yes" if pipeline else "no")
    for key in ("model", "knowledge_base"):
        parser["classifier"][key] = str((ROOT / parser["classifier"][key]).resolve())
    path = folder / f"config-{receive}-{client}.ini"
    with open(path, "w", encoding="utf-8") as handle:
        parser.write(handle)
    return load_config(path)


@contextmanager
def running_server(config, classifier):
    with serving_in_background(edge.server(config, classifier=classifier).open()) as server:
        yield server


class NullClassifier:
    """Answers instantly: the burst then measures the mail path alone."""

    def classify(self, items):
        return [{"file": name, "common_name": "Could not identify", "rank": "none",
                 "probability": 0.0, "alternatives": []} for name, _ in items]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def measure_classifier(classifier, image: bytes, burst: int) -> dict:
    classifier.classify([("warm-up.png", image)])
    single = []
    for _ in range(10):
        started = time.perf_counter()
        classifier.classify([("one.png", image)])
        single.append(time.perf_counter() - started)
    started = time.perf_counter()
    classifier.classify([(f"b{i}.png", image) for i in range(burst)])
    batch = time.perf_counter() - started
    return {"single_median_s": statistics.median(single), "batch_s": batch,
            "batch_images_per_s": burst / batch}


def measure_round_trips(config, classifier, image: bytes, trips: int) -> tuple[list[float], list[float]]:
    """Seconds per round trip, and the server's seconds inside classify() for each."""
    times, classify = [], []
    with running_server(config, classifier) as server, edge.requester(config) as requester:
        requester.wait([requester.send([("warm-up.png", image)])], timeout=60)
        for index in range(trips):
            before = server.classify_seconds
            started = time.perf_counter()
            message_id = requester.send([(f"trip{index}.png", image)])
            requester.wait([message_id], timeout=60)
            times.append(time.perf_counter() - started)
            classify.append(server.classify_seconds - before)
    return times, classify


def measure_burst(hub: MailHub, folder: Path, receive: str, poll: float, classifier,
                  image: bytes, count: int, pipeline: bool = True) -> dict:
    """``count`` requests from the four client accounts at once (one thread each)."""
    configs = [write_config(hub, folder, receive, poll, client, pipeline) for client in CLIENTS]
    requesters = [edge.requester(config) for config in configs]
    errors: list[BaseException] = []
    try:
        with running_server(configs[0], classifier) as server:
            for requester in requesters:  # log in and warm up every connection
                requester.wait([requester.send([("warm-up.png", image)])], timeout=120)
            server.classify_seconds = server.answer_seconds = 0.0
            shares = [count // len(requesters) + (i < count % len(requesters))
                      for i in range(len(requesters))]
            send_done: list[float] = []

            def client(requester: Requester, share: int) -> None:
                try:
                    ids = [requester.send([(f"burst{i}.png", image)]) for i in range(share)]
                    send_done.append(time.perf_counter())
                    assert len(requester.wait(ids, timeout=600)) == share
                except BaseException as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=client, args=pair) for pair in zip(requesters, shares)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            total = time.perf_counter() - started
            classify, answer = server.classify_seconds, server.answer_seconds
    finally:
        for requester in requesters:
            requester.close()
    if errors:
        raise errors[0]
    return {"total_s": total, "send_s": max(send_done) - started, "requests_per_s": count / total,
            "classify_s": classify, "answer_s": answer}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trips", type=int, default=20, help="round trips per mode (default 20)")
    parser.add_argument("--burst", type=int, default=100, help="requests in the burst (default 100)")
    parser.add_argument("--poll", type=float, default=0.1, help="POP3 poll interval, s (default 0.1)")
    parser.add_argument("--no-pipeline", action="store_const", const=True, default=None,
                        help="burst with the server working in turns ([server] pipeline = no)")
    parser.add_argument("--both", action="store_true",
                        help="burst with the pipeline and in turns, one after the other")
    parser.add_argument("--skip-real-burst", action="store_true",
                        help="burst only with the do-nothing classifier (fast)")
    parser.add_argument("--backend", default="",
                        help="classifier backends to measure in turn, comma-separated: auto, onnx, torch "
                             "(default: config.ini's [classifier] backend)")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backend.split(",") if b.strip()] or [None]
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    image = PHOTO.read_bytes()
    state = tempfile.mkdtemp(prefix="mhb", dir="/tmp")  # short: Dovecot socket paths
    hub = start_on_free_offset(state, clients=CLIENTS)
    try:
        folder = Path(state)
        pop3 = write_config(hub, folder, "pop3", args.poll)
        imap = write_config(hub, folder, "imap", args.poll)
        null = NullClassifier()
        runs = []
        for backend in backends:
            started = time.perf_counter()
            classifier = edge.classifier(
                pop3, max_pixels=pop3.section("server").get_int("max_image_pixels", minimum=1), backend=backend)
            label = f"real classifier, {classifier.backend} backend"
            print(f"{label}: loaded in {time.perf_counter() - started:.1f} s")

            alone = measure_classifier(classifier, image, args.burst)
            print(f"{label} alone: {alone['single_median_s'] * 1000:.0f} ms per single image "
                  f"(median of 10); batch of {args.burst}: {alone['batch_s']:.2f} s = "
                  f"{alone['batch_images_per_s']:.1f} images/s")

            for name, config in ((f"POP3 polling every {args.poll:g} s", pop3), ("IMAP IDLE", imap)):
                times, classify = measure_round_trips(config, classifier, image, args.trips)
                mail_part = [trip - inside for trip, inside in zip(times, classify)]
                print(f"round trip, {name}, {label}: median {statistics.median(times):.3f} s, "
                      f"p95 {percentile(times, 0.95):.3f} s over {len(times)} trips "
                      f"(classify() median {statistics.median(classify):.3f} s; the rest median "
                      f"{statistics.median(mail_part):.3f} s)")
            if not args.skip_real_burst:
                runs.append((label, classifier))
        for name, config in ((f"POP3 polling every {args.poll:g} s", pop3), ("IMAP IDLE", imap)):
            mail, _ = measure_round_trips(config, null, image, args.trips)
            print(f"round trip, {name}, do-nothing classifier: median {statistics.median(mail):.3f} s, "
                  f"p95 {percentile(mail, 0.95):.3f} s")
        runs.append(("do-nothing classifier (mail path alone)", null))
        pipelines = [True] if args.no_pipeline is None else [not args.no_pipeline]
        if args.both:
            pipelines = [True, False]
        for receive, label in (("imap", "IMAP IDLE"), ("pop3", "POP3")):
            for name, model in runs:
                for pipeline in pipelines:
                    burst = measure_burst(hub, folder, receive, args.poll, model, image, args.burst,
                                          pipeline)
                    rest = burst["total_s"] - burst["classify_s"]
                    # Replies built and sent while the next requests were classified: time
                    # inside classify() plus time answering, beyond the wall-clock total.
                    overlap = max(0.0, burst["classify_s"] + burst["answer_s"] - burst["total_s"])
                    print(f"burst of {args.burst} from {len(CLIENTS)} clients, {label}, {name}, "
                          f"{'pipeline' if pipeline else 'in turns (--no-pipeline)'}: "
                          f"{burst['requests_per_s']:.1f} requests/s ({burst['total_s']:.2f} s until "
                          f"all answered; all sent after {burst['send_s']:.2f} s; inside classify() "
                          f"{burst['classify_s']:.2f} s, everything else {rest:.2f} s, of which "
                          f"answering {burst['answer_s']:.2f} s; overlapped {overlap:.2f} s)")
    finally:
        hub.stop()
        shutil.rmtree(state, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
