"""Shared fixtures: a real Redis for the whole session.

``CXSWEEP_TEST_REDIS_URL`` names a Redis database the tests may flush (``.ci/run`` sets
it); without it the session starts a private redis-server on a free port.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from cxsweep.localredis import LocalRedis, redis_answers

_private_redis: LocalRedis | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _private_redis
    url = os.environ.get("CXSWEEP_TEST_REDIS_URL", "")
    if not url or not redis_answers(url):
        _private_redis = LocalRedis().start()
        url = _private_redis.url
    os.environ["CXSWEEP_TEST_REDIS_URL"] = url
    # Workers and the CLI in this process read their settings from the environment.
    os.environ["CXSWEEP_REDIS_URL"] = url
    os.environ["CXSWEEP_ENV_FILE"] = os.devnull
    redis.Redis.from_url(url).flushdb()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _private_redis is not None:
        _private_redis.stop()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["CXSWEEP_TEST_REDIS_URL"]


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test database. Never flush it: the session's workers keep their
    queues there. Tests keep apart by using unique keys (run ids, uuids)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
