"""cxsweep.runs.latency: API latency per request kind as a histogram in Redis, read back
as p50/p95/p99."""

from __future__ import annotations

import math

import pytest
import redis

from cxsweep.redisconn import text
from cxsweep.runs import keys
from cxsweep.runs.latency import (
    LAST_BUCKET,
    RequestTally,
    bucket_of,
    lower_ms,
    percentiles,
    read_histograms,
    summary,
    upper_ms,
)
from cxsweep.runs.model import new_run_id
from cxsweep.runs.store import RunStore


@pytest.mark.parametrize("seconds", [0.0003, 0.001, 0.0137, 0.25, 1.0, 42.0])
def test_a_time_falls_in_the_bucket_that_bounds_it(seconds: float) -> None:
    index = bucket_of(seconds)
    assert lower_ms(index) < seconds * 1000 <= upper_ms(index) * (1 + 1e-9)


def test_odd_times_land_at_the_ends() -> None:
    assert bucket_of(0.0) == bucket_of(-1.0) == bucket_of(math.nan) == 0
    assert bucket_of(10_000.0) == LAST_BUCKET
    assert bucket_of(0.00025) == 0 and bucket_of(0.00026) == 1


def test_percentiles_interpolate_inside_the_bucket() -> None:
    fast, slow = bucket_of(0.010), bucket_of(1.0)
    found = percentiles({fast: 90, slow: 10})
    assert found["requests"] == 100.0
    assert lower_ms(fast) < found["p50"] <= upper_ms(fast)
    assert found["p95"] > 800.0  # the slow tail a mean would hide
    assert percentiles({}) == {"requests": 0.0}


def test_a_tally_lands_in_redis_and_reads_back(redis_client: redis.Redis) -> None:
    store = RunStore(redis_client, new_run_id())
    tally = RequestTally()
    for _ in range(9):
        tally.observe("read", 200, 0.020)
    tally.observe("read", 503, 2.0)
    tally.observe("patch", None, 0.050)
    try:
        tally.flush_to(store)
        tally.flush_to(store)  # already flushed: nothing counted twice
        raw = redis_client.hgetall(store.keys.counts)
        counts = {text(k): int(v) for k, v in raw.items()}
        assert counts[keys.API_REQUESTS] == 11
        assert counts[keys.calls_counter("read")] == 10
        assert counts[keys.status_counter(503)] == 1
        assert counts[keys.status_counter("error")] == 1
        assert redis_client.ttl(store.keys.api_latency) > 0
        # A field that does not parse is skipped, not fatal to the report.
        redis_client.hset(store.keys.api_latency, "read:not-a-bucket", 5)
        histograms = read_histograms(redis_client, store.run_id)
        assert sum(histograms["read"].values()) == 10 and sum(histograms["patch"].values()) == 1
        report = summary(histograms)
        assert report["all"]["requests"] == 11.0
        assert report["read"]["p50"] <= 20.0 * 1.2
        assert report["read"]["p99"] > 1000.0
    finally:
        redis_client.delete(store.keys.counts, store.keys.api_latency)
