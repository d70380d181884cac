#!/usr/bin/env python3
"""A burst of trail-camera frames through the hub: time to the first alert, photos per second.

Starts a private hub (animalid/devhub) and the server in this process with the
real classifier, five ``[trail-camera CAMn]`` sections (one sender, told apart
by ``subject_pattern``), then submits ``--frames`` frames over one SMTP
session, round-robin over the cameras: every ``--animal-every``-th frame a test
photo (tiger, dog, bison: alert_on Felidae, Canidae, Bovidae), the rest
synthetic empty landscapes, 10 s apart by their EXIF and Date times. Prints
the time from the first submission to the first alert stored in the notify
mailbox, to the last observation recorded, the photos per second, and the
alerts and visits made (one alert per camera and taxon: the cooldown joins the
rest into their visits).

Usage: python benchmarks/trail_burst.py [--frames 200] [--cameras 5] [--animal-every 5]
"""

from __future__ import annotations

import argparse
import shutil
import smtplib
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from animalid.cli import settings as edge  # noqa: E402
from animalid.config import load_config  # noqa: E402
from animalid.devhub import start_on_free_offset  # noqa: E402
from animalid.server.ledger import SqliteLedger  # noqa: E402
from animalid.server.service import serving_in_background  # noqa: E402
from animalid.testing.cameras import animal, camera_mail, landscape  # noqa: E402
from animalid.testing.harness import CLIENTS, mailbox_messages, make_config  # noqa: E402

ANIMALS = ("tiger.png", "dog.png", "bison.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--cameras", type=int, default=5)
    parser.add_argument("--animal-every", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    state = tempfile.mkdtemp(prefix="tb", dir="/tmp")
    work = Path(tempfile.mkdtemp(prefix="trail-burst-"))
    hub = start_on_free_offset(state, clients=CLIENTS)
    try:
        return run(hub, work, args)
    finally:
        hub.stop()
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def run(hub, work: Path, args: argparse.Namespace) -> int:
    camera, watcher = f"client3@{hub.domain}", f"client2@{hub.domain}"
    config = make_config(hub, work, "client2", "imap", "imap", name="trail.ini")
    with open(config, "a", encoding="utf-8") as handle:
        for number in range(1, args.cameras + 1):
            handle.write(f"\n[trail-camera CAM{number}]\nfrom = {camera}\nsubject_pattern = ^CAM{number} "
                         f"(?P<frame>\\d+)\nname = Camera {number}\nnotify = {watcher}\n"
                         "alert_on = Felidae, Canidae, Bovidae\nmin_probability = 0.4\ncooldown = 30m\n")
    # The cameras' names are per section here: the frame number is not a serial.
    text = config.read_text().replace("(?P<frame>\\d+)", "\\d+")
    config.write_text(text)
    watcher_config = config
    start = time.time() - 3 * 3600
    frames = []
    for index in range(args.frames):
        taken = start + 10 * index
        cam = index % args.cameras + 1
        round_ = index // args.cameras  # each camera's own frame number
        if round_ % args.animal_every == args.animal_every - 1:
            name = ANIMALS[(round_ // args.animal_every) % len(ANIMALS)]
            data = animal(name, taken)
        else:
            data = landscape(index, taken)
        frames.append(camera_mail(camera, hub.server, f"CAM{cam} {index:05d}", f"f{index:05d}.jpg", data, taken))
    server = edge.server(load_config(config)).open()  # loads the classifier (not timed)
    first_alert: list[float] = []
    with serving_in_background(server):
        began = time.monotonic()
        sender = threading.Thread(target=submit_all, args=(hub, camera, frames), daemon=True)
        sender.start()
        state = work / "server-state.sqlite"
        recorded_at = None
        deadline = began + args.timeout
        while time.monotonic() < deadline:
            if not first_alert and mailbox_messages(watcher_config, "client"):
                first_alert.append(time.monotonic() - began)
            with SqliteLedger(state) as ledger:
                if len(ledger.observations()) >= args.frames:
                    recorded_at = time.monotonic() - began
                    break
            time.sleep(0.2)
        sender.join(60)
        submitted = getattr(sender, "seconds", None)
    with SqliteLedger(work / "server-state.sqlite") as ledger:
        visits = ledger.visits_since(0)
        rows = ledger.observations()
    alerts = len(mailbox_messages(watcher_config, "client"))
    print(f"frames {args.frames} from {args.cameras} cameras ({sum(not r.empty for r in rows)} with an "
          f"animal, {sum(r.empty for r in rows)} empty)")
    print(f"submitted over one SMTP session in {submitted:.1f} s" if submitted else "submission unfinished")
    print(f"time to the first alert: {first_alert[0]:.2f} s" if first_alert else "no alert arrived")
    if recorded_at:
        print(f"all {args.frames} recorded after {recorded_at:.1f} s: {args.frames / recorded_at:.1f} photos/s")
    else:
        print(f"only {len(rows)} of {args.frames} recorded before the timeout")
    print(f"alerts {alerts}, visits {len(visits)} (frames per visit: {sorted(v.frames for v in visits)})")
    print(f"classify {server.classify_seconds:.1f} s in all")
    return 0 if recorded_at and first_alert else 1


def submit_all(hub, sender: str, frames) -> None:
    started = time.monotonic()
    password = (Path(hub.state) / "secrets" / sender.partition("@")[0]).read_text()
    with smtplib.SMTP("127.0.0.1", hub.ports["submission"], timeout=30) as smtp:
        smtp.starttls(context=ssl.create_default_context(cafile=str(hub.ca_file)))
        smtp.login(sender, password)
        for message in frames:
            smtp.send_message(message, from_addr=sender, to_addrs=[hub.server])
    threading.current_thread().seconds = time.monotonic() - started  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
