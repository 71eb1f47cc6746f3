"""The tenant-wide rate limit: one bucket in Redis shared by every worker."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis

from console import launch
from cxsweep.errors import NotYet
from cxsweep.platforms.ratelimit import RateLimiter
from cxsweep.settings import get_settings


def test_two_workers_together_never_exceed_the_rate(redis_client: redis.Redis) -> None:
    tenant = f"t-{uuid.uuid4().hex}"
    # Two limiters on separate connections stand for two worker machines.
    limiters = [
        RateLimiter(redis.Redis.from_url(f"redis://{_addr(redis_client)}"), tenant, 100, 1)
        for _ in range(2)
    ]
    stamps: list[float] = []
    lock = threading.Lock()

    def work(limiter: RateLimiter) -> None:
        for _ in range(40):
            limiter.acquire()
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=work, args=(limiters[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    # 160 requests at 100/s with a burst of 1 cannot take less than 1.59 s; noise on a
    # shared machine only makes it slower, so this bound cannot fail for a right limiter.
    assert stamps[-1] - stamps[0] >= 1.5
    # Nor may any one second hold much more than the rate: stamps are taken after the
    # wait returns, so a thread scheduled late bunches with the next (a few percent);
    # two unshared limiters would show twice the rate.
    for i, start in enumerate(stamps):
        in_window = sum(1 for t in stamps[i:] if t - start < 1.0)
        assert in_window <= 106


def _addr(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def test_a_long_wait_is_handed_back_not_slept(redis_client: redis.Redis) -> None:
    limiter = RateLimiter(redis_client, f"t-{uuid.uuid4().hex}", 1, 1, max_wait=0.2)
    limiter.acquire()
    with pytest.raises(NotYet) as waiting:
        limiter.acquire()
    assert waiting.value.retry_after is not None and 0.5 < waiting.value.retry_after <= 1.0
    assert waiting.value.status is None  # a wait, not a failure: no retry budget spent


def test_a_429_slows_everyone_down(redis_client: redis.Redis) -> None:
    tenant = f"t-{uuid.uuid4().hex}"
    limiter = RateLimiter(redis_client, tenant, 100, 1)
    other = RateLimiter(redis_client, tenant, 100, 1)
    assert limiter.reserve()[0] < 0.05
    factor = limiter.penalize(retry_after=1.0)
    assert factor == pytest.approx(0.75)
    wait, reserved = other.reserve()
    assert reserved and 0.8 < wait <= 1.05  # the server's Retry-After, for every worker


@pytest.mark.usefixtures("sweep_worker")
def test_a_sweep_within_the_limit_meets_no_429(
    simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    list_id = f"rl-{uuid.uuid4().hex[:8]}"
    simulator.put_list(list_id, count=300, seed=21)
    # A tenant allowing 25/s with a small burst (as real ones do: a burst of one would
    # turn the send-time jitter of threads into 429s); the fleet paces itself at 20/s.
    simulator.configure(page_size=100, rate_limit=25, rate_burst=4)
    monkeypatch.setenv("CXSWEEP_RATE_LIMIT", "20")
    monkeypatch.setenv("CXSWEEP_RATE_BURST", "1")
    get_settings.cache_clear()
    try:
        settings = launch.settings_for_run()
        run_id = launch.start_run(settings, list_id, dry_run=False)
        record = launch.wait_for_run(settings, run_id, timeout=120, quiet=True)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert record["status"] == "completed"
    stats = simulator.stats()
    sent = sum(stats["requests"].values())
    assert sent > 25  # enough requests that an unpaced sweep would have met the limit
    assert stats["statuses"].get("429", 0) == 0


def test_a_page_read_goes_ahead_of_queued_writes_within_the_rate(
    redis_client: redis.Redis,
) -> None:
    """Eight writer threads keep a queue of reservations at 50/s; a priority caller (a
    page read) is served at once instead of behind them, and the requests of all, read
    and writes, still keep to the rate over the run."""
    tenant = f"t-{uuid.uuid4().hex}"
    limiter = RateLimiter(redis_client, tenant, 50, 1)
    stamps: list[float] = []
    read_waits: list[float] = []
    write_waits: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            waited = limiter.acquire()
            with lock:
                stamps.append(time.monotonic())
                write_waits.append(waited)

    writers = [threading.Thread(target=write) for _ in range(8)]
    for thread in writers:
        thread.start()
    time.sleep(0.5)  # the writers' queue is full
    for _ in range(10):
        read_waits.append(limiter.acquire(priority=True))
        with lock:
            stamps.append(time.monotonic())
        time.sleep(0.05)
    stop.set()
    for thread in writers:
        thread.join()
    # A writer waits for the seven queued before it (~140 ms at 50/s); a read does not.
    assert sorted(write_waits)[len(write_waits) // 2] > 0.1
    assert max(read_waits) < 0.05
    stamps.sort()
    span = stamps[-1] - stamps[0]
    assert len(stamps) <= 50 * span + 8 + 2, "over the rate by more than the borrowed slots"
