"""The chart series: requests per minute and latency percentiles, for the last hour or day.

Pure functions over the history's timings, so they are tested without a
server and the page gets numbers ready to draw (uPlot's column arrays:
times, then one array per line; ``None`` where a bucket has no reply).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from animalid.history import Timing

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Window:
    name: str
    seconds: int
    bucket: int  # seconds per point


WINDOWS = {"hour": Window("hour", 3600, 60), "day": Window("day", 86400, 900)}


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile of already sorted values (p in 0..100)."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def series(timings: Sequence[Timing], now: float, window: Window) -> dict[str, Any]:
    """Bucketed requests per minute and p50/p90/p99 of arrival-to-reply seconds.

    Buckets end at ``now`` rounded up to the bucket, so a refresh moves the
    chart by whole buckets rather than reshuffling every point.
    """
    end = math.ceil(now / window.bucket) * window.bucket
    start = end - window.seconds
    count = window.seconds // window.bucket
    arrivals = [0] * count
    latencies: list[list[float]] = [[] for _ in range(count)]
    for timing in timings:
        if not start <= timing.arrived < end:
            continue
        index = int((timing.arrived - start) // window.bucket)
        arrivals[index] += 1
        if timing.seconds is not None:
            latencies[index].append(timing.seconds)
    per_minute = 60.0 / window.bucket
    lines: dict[str, list[float | None]] = {f"p{p}": [] for p in PERCENTILES}
    for values in latencies:
        values.sort()
        for p in PERCENTILES:
            lines[f"p{p}"].append(round(percentile(values, p), 3) if values else None)
    replied = sorted(t.seconds for t in timings if t.seconds is not None and start <= t.arrived < end)
    return {
        "window": window.name,
        "bucket_s": window.bucket,
        "times": [start + i * window.bucket for i in range(count)],
        "per_minute": [round(n * per_minute, 3) for n in arrivals],
        **lines,
        "total": sum(arrivals),
        "overall": {f"p{p}": (round(percentile(replied, p), 3) if replied else None) for p in PERCENTILES},
    }
