"""One Redis connection pool per process and URL: workers, threads and the CLI share it."""

from __future__ import annotations

import functools

import redis


@functools.lru_cache(maxsize=8)
def get_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=30, health_check_interval=30
    )


def text(value: bytes | str | None) -> str:
    """A Redis reply as str (replies are bytes; tests may hand str)."""
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value
