#!/usr/bin/env python3
"""Does IMAP MOVE decide who owns a message? Concurrent UID MOVEs of the same messages.

Starts a private mail hub (Dovecot, animalid/devhub), opens N sessions on the
server's mailbox, and for each round delivers M messages and has every session
``UID MOVE`` the same UIDs into one folder at the same moment (a barrier, one
thread per session). It counts the COPYUID answers (RFC 4315) each session got
and the copies the folder ends with.

If MOVE were exclusive between sessions, every round would show M copies. On
Dovecot 2.3 (maildir) some rounds show more: several sessions get OK [COPYUID]
for one message and the folder holds a copy for each. RFC 6851 makes one MOVE
atomic (moved, or not at all), not exclusive between sessions. This is why the
servers' claims are decided by the ledger's primary key (animalid/server/claims.py)
and MOVE only follows.

Usage: python benchmarks/move_race.py [--sessions 3] [--messages 4] [--rounds 20]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from animalid.cli import settings as edge
from animalid.config import load_config
from animalid.devhub import start_on_free_offset
from animalid.mail.imap import parse_copyuid
from animalid.mail.messages import build_request
from animalid.testing.harness import CLIENTS, folder_count, make_config, submit

FOLDER = "race"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--messages", type=int, default=4, help="messages per round")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    state = tempfile.mkdtemp(prefix="mhrace", dir="/tmp")
    work = Path(tempfile.mkdtemp(prefix="move-race-"))
    hub = start_on_free_offset(state, clients=CLIENTS)
    boxes = []
    try:
        config = make_config(hub, work, server_receive="imap")
        boxes = [edge.mailbox(load_config(config), "server", "imap") for _ in range(args.sessions)]
        for box in boxes:
            box.list_folder(FOLDER)
            box.list_messages()
        sessions = [box._call(lambda client: client) for box in boxes]
        moved_twice = copies = 0
        for round_number in range(args.rounds):
            for index in range(args.messages):
                submit(hub, hub.address("client1"),
                       build_request(hub.address("client1"), hub.server, [(f"m{index}.png", b"x")]))
            time.sleep(0.2)
            uids = [ref.handle for ref in boxes[0].list_messages()]
            answers: list[int] = [0] * args.sessions
            barrier = threading.Barrier(args.sessions)

            def move(index: int, barrier=barrier, uids=uids, answers=answers) -> None:
                client = sessions[index]
                client._imap.untagged_responses.pop("COPYUID", None)
                barrier.wait()
                try:
                    client.move(uids, FOLDER)
                except Exception:  # NO [EXPUNGEISSUED]: another session was faster
                    pass
                found = client._imap.untagged_responses.pop("COPYUID", None) or []
                answers[index] = sum(len(parse_copyuid(answer)) for answer in found)
                client._imap.untagged_responses.clear()

            threads = [threading.Thread(target=move, args=(i,)) for i in range(args.sessions)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            made = sum(answers)
            copies += made
            moved_twice += made > len(uids)
            print(f"round {round_number + 1:2}: {len(uids)} messages, COPYUIDs per session {answers}, "
                  f"{made} copies")
        in_folder = folder_count(config, "server", FOLDER)
        print(f"{moved_twice} of {args.rounds} rounds made more copies than messages; "
              f"{args.rounds * args.messages} messages became {in_folder} in {FOLDER!r} "
              f"({copies} COPYUIDs answered)")
        return 0
    finally:
        for box in boxes:
            box.close()
        hub.stop()
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
