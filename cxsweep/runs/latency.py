"""API latency of a run, per request kind: a histogram in Redis, so percentiles survive
the many processes that sent the requests.

Buckets are fixed and log-spaced (four to a doubling, about 19% wide) from 0.25 ms to
about 17 minutes, so every worker counts into the same buckets and a percentile is read
back within a bucket's width however many requests there were. A run keeps one hash of
``{kind}:{bucket}`` -> count under its keys; a step adds its requests to it in the same
round trip as its other counters (``RequestTally.flush_to``).

A mean hides the slow tail operators chase; p50, p95 and p99 show it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import redis

from cxsweep.runs import keys
from cxsweep.runs.model import ChunkTally
from cxsweep.runs.store import DATA_TTL, RunStore

# Upper bound of bucket i: FIRST_UPPER_MS * 2 ** (i / PER_DOUBLING); the last bucket
# takes everything slower (a read time-out is at most 600 s).
FIRST_UPPER_MS = 0.25
PER_DOUBLING = 4
LAST_BUCKET = 92
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def bucket_of(seconds: float) -> int:
    ms = seconds * 1000.0
    if not ms > FIRST_UPPER_MS:  # also nan and negative clock steps
        return 0
    index = math.ceil(PER_DOUBLING * math.log2(ms / FIRST_UPPER_MS) - 1e-9)
    return min(LAST_BUCKET, index)


def upper_ms(index: int) -> float:
    return float(FIRST_UPPER_MS * 2 ** (index / PER_DOUBLING))


def lower_ms(index: int) -> float:
    return 0.0 if index <= 0 else upper_ms(index - 1)


def percentiles(buckets: Mapping[int, int]) -> dict[str, float]:
    """p50, p95, p99 in ms, interpolated linearly inside the bucket they fall in (as
    Prometheus' ``histogram_quantile``); ``requests`` is the count."""
    total = sum(buckets.values())
    found: dict[str, float] = {"requests": float(total)}
    if not total:
        return found
    ordered = sorted((i, n) for i, n in buckets.items() if n > 0)
    for name, quantile in QUANTILES:
        rank = quantile * total
        seen = 0
        for index, count in ordered:
            if seen + count >= rank:
                low, high = lower_ms(index), upper_ms(index)
                found[name] = round(low + (high - low) * (rank - seen) / count, 3)
                break
            seen += count
    return found


def read_histograms(client: redis.Redis, run_id: str) -> dict[str, dict[int, int]]:
    """``{kind: {bucket: count}}`` of a run; fields that do not parse are skipped (the
    hash is ours, but a report never fails on one odd field)."""
    histograms: dict[str, dict[int, int]] = {}
    raw: Mapping[Any, Any] = client.hgetall(keys.RunKeys(run_id).api_latency)
    for field, value in raw.items():
        name = field.decode() if isinstance(field, bytes) else str(field)
        kind, _, index = name.rpartition(":")
        try:
            histograms.setdefault(kind, {})[int(index)] = int(value)
        except ValueError:
            continue
    return histograms


def summary(histograms: Mapping[str, Mapping[int, int]]) -> dict[str, dict[str, float]]:
    """Per kind, and ``all`` kinds together: requests, p50, p95, p99 (ms)."""
    together: Counter[int] = Counter()
    result: dict[str, dict[str, float]] = {}
    for kind in sorted(histograms):
        together.update(histograms[kind])
        result[kind] = percentiles(histograms[kind])
    if result:
        result["all"] = percentiles(together)
    return result


class RequestTally:
    """A step's API requests, counted in memory and added to the run's counters and
    latency histogram in one pipeline when the step ends."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.latency: Counter[str] = Counter()

    def observe(self, kind: str, status: int | None, seconds: float) -> None:
        self.counts[keys.API_REQUESTS] += 1
        self.counts[keys.calls_counter(kind)] += 1
        self.counts[keys.status_counter(status or "error")] += 1
        self.counts[keys.API_US_SUM] += round(seconds * 1_000_000)
        self.latency[f"{kind}:{bucket_of(seconds)}"] += 1

    def snapshot(self) -> ChunkTally | None:
        """What was counted so far, as a write chunk keeps it with its done marker (None:
        nothing); ``clear`` once it is kept there."""
        if not self.counts:
            return None
        return {"counts": dict(self.counts), "latency": dict(self.latency)}

    def clear(self) -> None:
        self.counts, self.latency = Counter(), Counter()

    def add_to(self, pipe: redis.client.Pipeline, store: RunStore) -> bool:
        """Queue the counts on ``pipe`` (and forget them); whether there were any."""
        counts, self.counts = self.counts, Counter()
        latency, self.latency = self.latency, Counter()
        if not counts:
            return False
        for field, amount in counts.items():
            pipe.hincrby(store.keys.counts, field, amount)
        key = store.keys.api_latency
        for field, amount in latency.items():
            pipe.hincrby(key, field, amount)
        pipe.expire(key, DATA_TTL)
        return True

    def flush_to(self, store: RunStore) -> None:
        pipe = store.redis.pipeline(transaction=False)
        if self.add_to(pipe, store):
            pipe.execute()
