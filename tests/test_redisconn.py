"""cxsweep.redisconn: one pool per process and URL, and Redis replies as text."""

from __future__ import annotations

import uuid

import redis

from cxsweep.redisconn import get_redis, text


def test_one_client_per_url_shared_by_callers(redis_url: str) -> None:
    first, again = get_redis(redis_url), get_redis(redis_url)
    assert first is again
    assert first.connection_pool is again.connection_pool


def test_another_database_gets_its_own_client(redis_url: str) -> None:
    base = redis_url.rsplit("/", 1)[0]
    assert get_redis(f"{base}/14") is not get_redis(f"{base}/15")
    assert get_redis(f"{base}/14").connection_pool.connection_kwargs["db"] == 14


def test_the_client_talks_to_the_real_server(redis_url: str, redis_client: redis.Redis) -> None:
    key = f"cxsweep:test:redisconn:{uuid.uuid4().hex}"
    client = get_redis(redis_url)
    try:
        client.set(key, "+16502530000", ex=60)
        # Another connection sees it: the same server and database, not a local cache.
        assert text(redis_client.get(key)) == "+16502530000"
    finally:
        client.delete(key)


def test_the_client_carries_time_outs(redis_url: str) -> None:
    # A stalled Redis must fail a call, not hang a worker forever.
    kwargs = get_redis(redis_url).connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == 5
    assert kwargs["socket_timeout"] == 30


def test_text_turns_any_reply_into_str() -> None:
    assert text(None) == ""
    assert text(b"caf\xc3\xa9") == "café"
    assert text("already text") == "already text"
    assert text(b"") == ""
