"""cxsweep.platforms.token: one OAuth token for the fleet, kept in Redis, refreshed by
one worker at a time."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import redis

from cxsweep.platforms.token import REFRESH_MARGIN_SECONDS, Token, TokenCache, refresh_time
from cxsweep.platforms.v2 import V2Client
from cxsweep.settings import load_settings


class Grants:
    """A grant function that counts its calls and hands out numbered tokens."""

    def __init__(self, expires_in: float = 1800.0, delay: float = 0.0) -> None:
        self.calls = 0
        self.expires_in = expires_in
        self.delay = delay
        self._lock = threading.Lock()

    def __call__(self) -> tuple[str, float]:
        time.sleep(self.delay)  # a server that takes its time: others queue on the lock
        with self._lock:
            self.calls += 1
            return f"token-{self.calls}", self.expires_in


def identity() -> str:
    return f"https://api.test/oauth/token|client|secret-{uuid.uuid4().hex}"


def test_refresh_comes_before_expiry_even_for_short_tokens() -> None:
    assert refresh_time(1000.0, 1800.0) == 1000.0 + 1800.0 - REFRESH_MARGIN_SECONDS
    assert refresh_time(1000.0, 60.0) == 1030.0  # half its life, not 300 s before
    assert Token("t", refresh_at=100.0).fresh(now=99.0)
    assert not Token("t", refresh_at=100.0).fresh(now=100.0)


def test_workers_share_one_grant_through_redis(redis_client: redis.Redis) -> None:
    who, grants = identity(), Grants()
    first = TokenCache(redis_client, who, grants)
    second = TokenCache(redis_client, who, grants)  # another worker, same credentials
    assert first.get() == "token-1"
    assert second.get() == "token-1"
    assert grants.calls == 1
    other = TokenCache(redis_client, identity(), grants)  # other credentials: their own
    assert other.get() == "token-2"


def test_the_secret_never_lands_in_redis(redis_client: redis.Redis) -> None:
    secret = f"s3cret-{uuid.uuid4().hex}"
    TokenCache(redis_client, f"https://api.test|client|{secret}", Grants()).get()
    assert not list(redis_client.scan_iter(match=f"*{secret}*"))


def test_a_fleet_with_no_token_asks_the_server_once(redis_client: redis.Redis) -> None:
    who, grants = identity(), Grants(delay=0.2)
    caches = [TokenCache(redis_client, who, grants) for _ in range(6)]
    got: list[str] = []
    threads = [threading.Thread(target=lambda c=c: got.append(c.get())) for c in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert got == ["token-1"] * 6
    assert grants.calls == 1


def test_one_cache_serves_a_worker_s_threads_with_one_redis_read_per_refresh(
    redis_client: redis.Redis,
) -> None:
    # A worker's backend (and its cache) lives as long as the process: its threads
    # share it, and Redis is asked only when the token is due (tasks._deps).
    grants = Grants(delay=0.1)
    cache = TokenCache(redis_client, identity(), grants)
    reads = 0
    read = cache._read

    def counted() -> Token | None:
        nonlocal reads
        reads += 1
        return read()

    cache._read = counted  # type: ignore[method-assign]
    got: list[str] = []
    threads = [
        threading.Thread(target=lambda: got.extend(cache.get() for _ in range(20)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert got == ["token-1"] * 160
    assert grants.calls == 1
    # Threads that came while the grant was in flight each looked once, then waited on
    # the lock; none of the 160 calls after it asked Redis.
    assert reads <= 2 * 8
    before = reads
    assert [cache.get() for _ in range(50)] == ["token-1"] * 50
    assert reads == before


def test_a_rejected_token_is_replaced_once_for_everyone(redis_client: redis.Redis) -> None:
    who, grants = identity(), Grants()
    first, second = TokenCache(redis_client, who, grants), TokenCache(redis_client, who, grants)
    assert first.get() == "token-1"
    assert first.invalidate("token-1") == "token-2"
    # A second worker meeting the same 401 takes the new token, not a third grant.
    assert second.invalidate("token-1") == "token-2"
    assert grants.calls == 2


def test_a_token_close_to_expiry_is_refreshed(redis_client: redis.Redis) -> None:
    grants = Grants(expires_in=0.4)  # refresh due after 0.2 s
    cache = TokenCache(redis_client, identity(), grants)
    assert cache.get() == "token-1"
    time.sleep(0.3)
    assert cache.get() == "token-2"


def test_v2_grants_one_token_from_the_simulator_for_two_clients(
    simulator: Any, redis_client: redis.Redis
) -> None:
    # The client id is unique to this test, so no token cached by an earlier test counts.
    client_id = f"client-{uuid.uuid4().hex[:8]}"
    simulator.configure(clients={client_id: "secret-tok"})
    settings = load_settings(
        {
            "CXSWEEP_ENV_FILE": "/dev/null",
            "CXSWEEP_API_URL": simulator.url,
            "CXSWEEP_CLIENT_ID": client_id,
            "CXSWEEP_CLIENT_SECRET": "secret-tok",
        }
    )
    V2Client(settings, redis_client).check_credentials()
    V2Client(settings, redis_client).check_credentials()
    grants = [r for r in simulator.requests_seen() if r["path"] == "/oauth/token"]
    assert [g["status"] for g in grants] == [200]
