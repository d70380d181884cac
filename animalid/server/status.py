"""``server.py --status``: what the servers sharing a mailbox are doing, read from
the mailbox and the shared ledger (no lock taken, no model loaded, nothing changed).

It prints the queue (requests waiting in the watched folder), the workers
seen lately with the address of each one's operations page, the claims each
holds in the claims folder with their age and lease, and the recent outcomes
from the ledger.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Callable

from animalid.mail.mailbox import Mailbox
from animalid.mail.messages import clean_text
from animalid.server.ledger import ANSWERED, BOUNCED_MARK, IGNORED, REFUSED, SET_ASIDE, Ledger, open_ledger
from animalid.server.settings import ServerSettings

RECENT = 10
SHOWN_GONE = 5
OUTCOME_WINDOW_S = 3600.0
STATE_WORDS = {ANSWERED: "answered", IGNORED: "ignored", REFUSED: "refused", SET_ASIDE: "set aside"}


def status_report(settings: ServerSettings, mailbox: Mailbox, now: Callable[[], float] = time.time) -> str:
    """The report for the server ``settings`` describe, whose mailbox is ``mailbox``."""
    receive, lease, claims_folder = settings.receive, settings.claim_lease, settings.claims_folder
    lines: list[str] = []
    with open_ledger(settings.ledger_settings) as ledger, mailbox as box:
        refs = box.list_messages()
        finals = ledger.known_final_keys([ref.key for ref in refs])
        watched = getattr(box, "folder", "the mailbox")
        lines.append(f"mailbox   {settings.address} at {box.endpoint.where} ({receive.upper()})")
        lines.append(f"ledger    {ledger.describe()}")
        lines.append(f"queue     {len(refs) - len(finals)} waiting in {watched} ({_n(len(refs), 'message')}; "
                     f"{len(finals)} left there on purpose: refused, ignored or answered-not-yet-removed)")
        clock = now()
        if receive == "imap" and box.supports_claims():
            known = ledger.workers_known()
            pages = ledger.pages()
            living = {worker: at for worker, at in known.items() if clock - at <= lease}
            lines.append(f"workers   {len(living)} renewed their leases in the last {lease:g} s")
            # A worker whose lease ran out stopped without saying so (killed, crashed, cut
            # off): servers that stop cleanly remove their own entry. The latest gone ones only.
            gone = sorted((at, worker) for worker, at in known.items() if worker not in living)
            shown = {worker for _, worker in gone[-SHOWN_GONE:]}
            for worker, at in known.items():
                if worker in living:
                    page = f", page {pages[worker]}" if pages.get(worker) else ""
                    lines.append(f"  {worker:<28} last beat {_age(clock - at)} ago{page}")
                elif worker in shown:
                    lines.append(f"  {worker:<28} gone: last seen {_age(clock - at)} ago")
            if len(gone) > SHOWN_GONE:
                lines.append(f"  ({_n(len(gone) - SHOWN_GONE, 'older gone worker')} not shown)")
            uidvalidity, uids = box.list_folder(claims_folder, create=False)
            lines += _claims(ledger, claims_folder, uidvalidity, uids, lease, clock)
        else:
            lines.append("claims    none: this mailbox has one server (POP3, or IMAP without MOVE/UIDPLUS)")
            for worker, url in ledger.pages().items():
                lines.append(f"page      {url} ({worker})")
        box.end_pass()
        lines += _outcomes(ledger, clock)
    return "\n".join(lines)


def _claims(ledger: Ledger, folder: str, uidvalidity: int, uids: list[int], lease: float, clock: float) -> list[str]:
    present = set(uids)
    rows = ledger.claims()
    lines = [f"claims    {len(uids)} in {folder} (lease {lease:g} s)"]
    by_worker = defaultdict(list)
    for claim in rows:
        in_folder = claim.uidvalidity == uidvalidity and claim.uid in present
        if in_folder or not claim.uid:  # uid 0: claimed, being moved
            by_worker[claim.worker or "(recorded by no worker)"].append(claim)
    named = {claim.uid for claim in rows if claim.uidvalidity == uidvalidity}
    unseen = len(present - named)
    if unseen:
        lines.append(f"  {'(not yet seen by any worker)':<28} {_n(unseen, 'claim')}")
    for worker, held in by_worker.items():
        oldest = min(claim.claimed for claim in held)
        renewed = max(claim.renewed for claim in held)
        expired = sum(1 for claim in held if clock - claim.renewed > lease)
        note = f"; {expired} past the lease, back to the queue at the next beat" if expired else ""
        lines.append(f"  {worker:<28} {_n(len(held), 'claim')}, oldest {clock - oldest:.0f} s, "
                     f"renewed {clock - renewed:.0f} s ago{note}")
    return lines


def _outcomes(ledger: Ledger, clock: float) -> list[str]:
    counts = ledger.outcome_counts(clock - OUTCOME_WINDOW_S)
    by_state: Counter[str] = Counter()
    by_worker: Counter[str] = Counter()
    for (state, worker), count in counts.items():
        by_state[state] += count
        if state == ANSWERED:
            by_worker[worker or "(unnamed)"] += count
    summary = ", ".join(f"{by_state[state]} {STATE_WORDS[state]}" for state in STATE_WORDS) if counts else "none"
    lines = [f"outcomes  last hour: {summary}"]
    if by_worker:
        lines.append("  answered by: " + ", ".join(f"{worker} {count}" for worker, count in by_worker.most_common()))
    recent = ledger.recent_outcomes(RECENT)
    if recent:
        lines.append("recent")
        for outcome in recent:
            stamp = time.strftime("%H:%M:%S", time.localtime(outcome.updated))
            what = clean_text(outcome.message_id or outcome.key, 120)
            sender = clean_text(outcome.sender, 120) or "(no sender)"
            word = STATE_WORDS.get(outcome.state, outcome.state)
            why = ""
            if BOUNCED_MARK in outcome.reason:
                word, why = "bounced", outcome.reason.partition(BOUNCED_MARK)[2]
            elif outcome.state in (SET_ASIDE, IGNORED, REFUSED):
                why = outcome.reason
            why = f"  ({clean_text(why, 160)})" if why else ""
            lines.append(f"  {stamp}  {word:<9}  {what}  {sender}  {outcome.worker or ''}".rstrip() + why)
    return lines


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _age(seconds: float) -> str:
    """12 s, 5 min, 3 h, 2 days."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} days"
