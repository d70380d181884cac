"""The numbers around the table: queue, workers with their claims, errors, last hour's outcomes."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Callable

from animalid.web.errorlog import RecentErrors
from animalid.web.sources import ClaimLike, HistorySource, LocalState, WorkersSource

WORKERS_WINDOW_S = 3600.0  # workers shown: seen in the last hour
HOUR_S = 3600.0


def overview(local: LocalState, workers: WorkersSource, history: HistorySource, errors: RecentErrors,
             pages: dict[str, str] | None = None, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """One JSON-ready dict for the page's header and side panels."""
    now = clock()
    lease = local.lease
    seen = workers.workers_seen(now - WORKERS_WINDOW_S)
    seen.setdefault(local.worker, now)
    held: dict[str, list[ClaimLike]] = defaultdict(list)
    for claim in workers.claims():
        held[claim.worker or "(recorded by no worker)"].append(claim)
    rows = []
    for worker in sorted(set(seen) | set(held)):
        claims = held.get(worker, [])
        last = seen.get(worker)
        rows.append({
            "worker": worker,
            "this": worker == local.worker,
            "last_seen_s": None if last is None else max(0.0, now - last),
            "alive": last is not None and (not lease or now - last <= lease),
            "claims": len(claims),
            "oldest_claim_s": max((now - c.claimed for c in claims), default=None),
            "lease_age_s": max((now - c.renewed for c in claims), default=None),
            "page": (pages or {}).get(worker, ""),
        })
    return {
        "now": now,
        "worker": local.worker,
        "queue_depth": local.queue_depth(),
        "claims_held": local.claims_held(),
        "lease_s": lease,
        "workers": rows,
        "errors": errors.summary(),
        "last_hour": history.request_counts(now - HOUR_S),
    }
