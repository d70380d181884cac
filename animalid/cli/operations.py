"""The operations page wired to a running server (animalid.web knows no server).

``start_operations`` gives the web package what its Protocols ask for: the
history, workers and claims from a ledger connection of its own (so a slow
page never holds the serving loop's), this worker's queue and claims, and the
readiness checks; then it makes the page the server's observer, binds it, and
records its address in the ledger for ``server.py --status``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from animalid import __version__
from animalid.config import DEFAULTS, Config
from animalid.server.ledger import open_ledger
from animalid.server.service import Server
from animalid.web.metrics import Metrics
from animalid.web.operations import Operations
from animalid.web.settings import WebSettings
from animalid.web.sources import Check, LocalState

log = logging.getLogger(__name__)


def build_labels(config: Config) -> tuple[str, str]:
    """The model (its description's name) and the inference backend, for animalid_build_info."""
    section = config.section("classifier")
    model = Path(section.get("model")).stem
    backend = section.get("backend", "torch") if "backend" in DEFAULTS["classifier"] else "torch"
    return model, backend


def start_operations(server: Server, web: WebSettings, model: str = "", backend: str = "") -> Operations:
    """The page, metrics and health of ``server``, started (see the module docstring)."""
    ledger = open_ledger(server.settings.ledger_settings)
    local = LocalState(worker=server.worker, queue_depth=lambda: server.queue_depth,
                       claims_held=lambda: server.claims_held,
                       lease=server.settings.claim_lease if server.settings.receive == "imap" else 0.0)
    checks = [
        Check("mailbox", lambda: "" if server.mailbox_ok else "not logged in, or the mail servers are "
                                                              "unreachable (see the log)"),
        Check("ledger", ledger.ping),
        Check("model", lambda: "" if server.model_ready else "not loaded yet"),
    ]
    def forget_page() -> None:
        try:
            ledger.set_page(server.worker, "")
        finally:
            ledger.close()

    observations: Callable[[], dict[str, Any]] | None = None
    if server.settings.trail.active:
        from animalid.server.trail.view import observations_view

        trail = server.settings.trail

        def observations() -> dict[str, Any]:
            return observations_view(ledger, trail, time.time())

    operations = Operations(web, ledger, ledger, local, Metrics(__version__, model, backend), checks,
                            prune_history=ledger.prune, pages=ledger.pages, on_close=forget_page,
                            observations=observations)
    server.watch(operations)
    operations.start()
    try:
        ledger.set_page(server.worker, operations.url)
    except Exception as exc:  # noqa: BLE001 - the page works without its entry in --status
        log.warning("could not record the page's address in the ledger: %s", exc)
    return operations
