"""Liveness and readiness, as Kubernetes, TorchServe and Triton spell them.

``/livez`` says the process answers HTTP at all. ``/readyz`` runs every
check (mailbox logged in, ledger reachable, model loaded): 200 when all
pass, else 503 naming the first that failed; ``?verbose`` lists each with
its state, like the Kubernetes API server's own ``/readyz?verbose``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from animalid.web.sources import Check


@dataclass(frozen=True)
class CheckResult:
    name: str
    problem: str  # "" when the check passed

    @property
    def ok(self) -> bool:
        return not self.problem


def run_checks(checks: Sequence[Check]) -> list[CheckResult]:
    """Every check, in order; one that raises counts as failed with its error."""
    results = []
    for check in checks:
        try:
            problem = check.probe() or ""
        except Exception as exc:  # noqa: BLE001 - a failing probe is the answer, not a crash
            problem = f"{type(exc).__name__}: {exc}"
        results.append(CheckResult(check.name, " ".join(str(problem).split())[:300]))
    return results


def readiness_text(results: Sequence[CheckResult], verbose: bool) -> tuple[int, str]:
    """The HTTP status and plain-text body of /readyz."""
    failed = [result for result in results if not result.ok]
    status = 503 if failed else 200
    if verbose:
        lines = [f"[{'+' if r.ok else '-'}]{r.name} {'ok' if r.ok else 'failed: ' + r.problem}"
                 for r in results]
        lines.append("readyz check passed" if not failed else
                     f"readyz check failed: {', '.join(r.name for r in failed)}")
        return status, "\n".join(lines) + "\n"
    if failed:
        return status, f"not ready: {failed[0].name}: {failed[0].problem}\n"
    return status, "ok\n"
