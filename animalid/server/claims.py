"""Several servers, one mailbox: claims, leases and their return.

Any number of ``server.py`` processes (workers), on one machine or many,
watch one IMAP mailbox and share one ledger (ledger.py). A worker answers only
what it has *claimed*:

1. **Claim.** Take a few requests in the ledger, by their INBOX key (a
   primary key: of workers racing for one request exactly one wins), then
   ``UID MOVE`` them from the INBOX into the claims folder (``[server]
   claims_folder``, RFC 6851) and record where the server's ``COPYUID``
   (RFC 4315) says each went. A request whose UID is missing from COPYUID was
   gone already (a UID command skips UIDs that no longer exist without an
   error, RFC 3501 section 6.4.8): the claim is dropped.

   The ledger decides, not MOVE: measured on Dovecot 2.3 (the hub, maildir),
   three sessions that UID MOVE the same message at the same moment each get
   an OK with a COPYUID, and the claims folder then holds three copies. MOVE
   is atomic for one session (moved, or not at all), not exclusive between
   sessions; benchmarks/move_race.py measures it.
2. **Work.** As with one server: SEND the reply, RECORD it, DELETE the
   request -- here from the claims folder, by ``UID EXPUNGE`` of its own UIDs.
   Before each SEND the worker renews its lease on that claim in the ledger
   (``hold_claim``); if the claim was taken from it meanwhile, it does not send.
   Only the claim's holder moves a request, so it exists once.
3. **Lease.** A thread of each worker renews all its leases every
   ``claim_lease / 5`` seconds (``heartbeat``), also while the worker
   classifies, as long as its loop shows progress (``progress()``) within
   STALL_S: a worker stuck for that long stops renewing, and its claims go
   to others. Any worker, on the same beat in its loop, takes the claims
   whose lease was not renewed for ``claim_lease`` seconds (an atomic
   ``DELETE ... RETURNING`` in the ledger: one worker gets each) and moves
   them back to the INBOX, carrying their record (state, attempts) to the
   key they get there. A worker killed with ``kill -9`` thus loses nothing:
   its claims are answered by another worker one lease later. A message in
   the claims folder that nobody recorded (a worker died between MOVE and
   record) gets its lease from the moment a worker first sees it.

Requests the server leaves in the mailbox on purpose (refused senders,
automatic mail) go back to the INBOX at once, with their final state carried
to their new key so that no worker claims them again.

A worker's id is ``host:pid:random`` and new at every start, so a restarted
worker never renews its predecessor's leases: those claims come back after
the lease like any dead worker's.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

from animalid.mail.mailbox import Mailbox, MailRef
from animalid.server.ledger import ANSWERED, UNRECORDED_CLAIM_PREFIX, Ledger

log = logging.getLogger(__name__)

# Requests claimed per pass: small, so that a burst spreads over the workers
# and a worker that dies holds few; large enough that one worker alone keeps
# the classifier's batches full (BATCH_SIZE 2) and its passes few.
CLAIM_BATCH = 4
CLAIM_ROUNDS = 3  # tries per pass when other workers took the first candidates
BEATS_PER_LEASE = 5
MIN_BEAT_S = 0.5
# A worker whose loop shows no progress this long (a hung classifier or mail
# connection) stops renewing its leases. Far above the slowest real step: a
# pass classifies at most CLAIM_BATCH requests of 10 images (about 2 minutes of
# CPU at worst) and sends one reply at a time (3 tries of at most 30 s).
STALL_S = 600.0


def new_worker_id() -> str:
    """``host:pid:random``: unique per start, readable in logs and ``--status``."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(2)}"


@dataclass
class ReturnedClaims:
    returned: int = 0
    unrecorded: int = 0


class Claims:
    """One worker's side of the claim protocol (see the module docstring)."""

    def __init__(self, mailbox: Mailbox, ledger: Ledger, folder: str, lease: float, worker: str,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self.mailbox, self.ledger = mailbox, ledger
        self.folder, self.lease, self.worker = folder, lease, worker
        self._clock, self._monotonic = clock, monotonic
        self.held: dict[str, MailRef] = {}  # request key -> where it is in the claims folder
        self._uidvalidity = 0
        self._next_beat = 0.0
        self._progress = monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def beat_interval(self) -> float:
        return max(MIN_BEAT_S, self.lease / BEATS_PER_LEASE)

    def seconds_to_beat(self) -> float:
        return max(0.0, float(self._next_beat - self._monotonic()))

    # -- the heartbeat --------------------------------------------------------

    def progress(self) -> None:
        """The worker's loop moved on (a pass, a classify call, a reply)."""
        self._progress = self._monotonic()

    def start_heartbeat(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._renew_forever, name="claims-heartbeat",
                                            daemon=True)
            self._thread.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None

    def _renew_forever(self) -> None:
        stalled = failing = False
        while not self._stop.wait(self.beat_interval):
            if self._monotonic() - self._progress > STALL_S:
                if not stalled:
                    log.error("no progress for %.0f s: no longer renewing this worker's leases; its "
                              "claims go back to the queue", STALL_S)
                stalled = True
                continue
            stalled = False
            try:
                self.ledger.heartbeat()
                if failing:
                    log.info("renewing the leases again")
                failing = False
            except Exception as exc:  # noqa: BLE001 - this thread must outlive any failure
                if not failing:
                    log.warning("could not renew the leases: %s: %s", type(exc).__name__, exc)
                failing = True

    # -- claiming ---------------------------------------------------------------

    def take(self, candidates: list[MailRef], room: int = CLAIM_BATCH) -> list[MailRef]:
        """Claim up to ``room`` of ``candidates`` (INBOX refs, oldest first); the ones won,
        now in the claims folder."""
        taken = self.ledger.claimed_keys()
        free = [ref for ref in candidates if ref.key not in taken and ref.key not in self.held]
        if not free or room <= 0:
            return []
        won_keys = set(self.ledger.claim_keys([ref.key for ref in free[:room * CLAIM_ROUNDS]], room,
                                              self._clock() - self.lease))
        won = [ref for ref in free if ref.key in won_keys]
        if not won:
            return []
        try:
            moved = self.mailbox.claim(won, self.folder)
            self._uidvalidity = self.mailbox.uidvalidity_of(self.folder)
        except BaseException:
            # The MOVE may or may not have happened: free the keys (whatever did
            # move is noticed in the claims folder and returns after a lease).
            self.ledger.end_claims(sorted(won_keys))
            raise
        self.ledger.place_claims(self._uidvalidity, [(ref.key, ref.handle) for ref in moved])
        gone = won_keys - {ref.key for ref in moved}
        if gone:  # answered and removed by someone meanwhile, or deleted by a person
            self.ledger.end_claims(sorted(gone))
        for ref in moved:
            self.held[ref.key] = ref
        return moved

    def held_refs(self) -> list[MailRef]:
        return list(self.held.values())

    def still_ours(self, ref: MailRef) -> bool:
        """Renew the lease on ``ref`` before acting on it; False when it was taken away."""
        if not ref.folder:
            return True  # not a claimed ref
        self.progress()
        if self.ledger.hold_claim(ref.key):
            return True
        log.warning("%s: the claim was taken back (its lease of %.0f s ran out); leaving it "
                    "to the worker that has it now", ref.key, self.lease)
        self.forget([ref])
        return False

    def forget(self, refs: list[MailRef]) -> None:
        """These claims are no longer ours to act on (taken back, or gone from the folder)."""
        for ref in refs:
            self.held.pop(ref.key, None)
            self.ledger.release_reservation(ref.key)

    def finished(self, refs: list[MailRef]) -> None:
        """These claims were deleted or moved out of the claims folder by us."""
        claimed = [ref for ref in refs if ref.folder == self.folder]
        for ref in claimed:
            self.held.pop(ref.key, None)
        if claimed:
            self.ledger.end_claims([ref.key for ref in claimed])

    def give_back(self, refs: list[MailRef]) -> dict[str, str]:
        """Move claims back to the INBOX now (mail left there on purpose, or a worker
        stopping): their records follow them to their new keys. Returns old key -> new key."""
        claimed = [ref for ref in refs if ref.folder == self.folder]
        if not claimed:
            return {}
        back = self.mailbox.release(claimed)
        for ref in claimed:
            if ref.key in back:
                self.ledger.carry(ref.key, back[ref.key].key)
        self.finished(claimed)
        return {ref.key: back[ref.key].key for ref in claimed if ref.key in back}

    # -- leases -----------------------------------------------------------------

    def beat_if_due(self) -> ReturnedClaims | None:
        if self._monotonic() < self._next_beat:
            return None
        return self.beat()

    def beat(self) -> ReturnedClaims:
        """Renew our leases; return expired claims (anyone's) to the INBOX."""
        self._next_beat = self._monotonic() + self.beat_interval
        self.progress()
        self.ledger.heartbeat()
        uidvalidity, uids = self.mailbox.list_folder(self.folder)
        self._uidvalidity = uidvalidity
        present = set(uids)
        named = {claim.uid for claim in self.ledger.claims() if claim.uidvalidity == uidvalidity}
        unrecorded = sorted(present - named)
        if unrecorded:
            self.ledger.notice_claims(uidvalidity, unrecorded)
        # Our own claims that vanished from the folder (taken back and moved).
        gone = [ref for ref in self.held.values() if ref.handle not in present]
        if gone:
            self.forget(gone)
        expired = self.ledger.expire_claims(self._clock() - self.lease)
        result = ReturnedClaims()
        for claim in expired:
            if not claim.noticed:
                self.ledger.release_reservation(claim.key)
            self.held.pop(claim.key, None)
        # A claim not yet moved (uid 0) is simply free again where it is, in the INBOX.
        refs = [MailRef(key=claim.key, handle=claim.uid, folder=self.folder) for claim in expired
                if claim.uid and claim.uidvalidity == uidvalidity and claim.uid in present]
        if not refs:
            if expired:  # claimed in the ledger, never moved: free again where they are
                owners = sorted({claim.worker or "(unrecorded)" for claim in expired})
                log.info("%d claim(s) outlived their lease of %.0f s (held by %s): returned %d to the "
                         "queue (never moved out of it)", len(expired), self.lease, ", ".join(owners),
                         len(expired))
            return result
        finals = self.ledger.known_final_keys([ref.key for ref in refs])
        answered = [ref for ref in refs if ref.key in finals and finals[ref.key].state == ANSWERED]
        if answered:  # answered, then the worker died before deleting: no need to go back
            self.mailbox.delete(answered)
        back = self.mailbox.release([ref for ref in refs if ref not in answered])
        for ref in refs:
            if ref.key in back and not ref.key.startswith(UNRECORDED_CLAIM_PREFIX):
                self.ledger.carry(ref.key, back[ref.key].key)
        result.returned = len(back)
        result.unrecorded = sum(1 for claim in expired if claim.noticed and claim.uid in present)
        owners = sorted({claim.worker or "(unrecorded)" for claim in expired})
        log.info("%d claim(s) outlived their lease of %.0f s (held by %s): returned %d to the queue%s",
                 len(refs), self.lease, ", ".join(owners), len(back),
                 f", removed {len(answered)} answered earlier" if answered else "")
        return result
