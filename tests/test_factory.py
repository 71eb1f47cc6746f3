"""cxsweep.platforms.factory: CXSWEEP_BACKEND picks the backend, with the fleet's rate
limiter."""

from __future__ import annotations

import os
import uuid

import redis

from cxsweep.platforms.cxone import CxoneBackend
from cxsweep.platforms.factory import make_backend
from cxsweep.platforms.v2 import V2Client
from cxsweep.settings import load_settings


def cxone_env() -> dict[str, str]:
    # Nothing is sent while a backend is built: the auth URL is never called here.
    return {
        "CXSWEEP_ENV_FILE": os.devnull,
        "CXSWEEP_BACKEND": "cxone",
        "CXSWEEP_CXONE_AUTH": "access-key",
        "CXSWEEP_CXONE_AUTH_URL": "http://127.0.0.1:9",
        "CXSWEEP_CXONE_ACCESS_KEY_ID": f"key-{uuid.uuid4().hex[:8]}",
        "CXSWEEP_CXONE_ACCESS_KEY_SECRET": "secret-factory",
    }


def test_the_default_backend_is_v2_with_the_shipped_rate_limit(redis_client: redis.Redis) -> None:
    settings = load_settings()
    assert settings.backend == "v2" and settings.rate_limit > 0
    backend = make_backend(settings, redis_client)
    assert isinstance(backend, V2Client)
    assert backend.http.limiter is not None


def test_cxone_is_built_when_named(redis_client: redis.Redis) -> None:
    backend = make_backend(load_settings(cxone_env()), redis_client)
    assert isinstance(backend, CxoneBackend)
    assert backend.name == "cxone" and backend.http.limiter is not None


def test_a_rate_limit_of_zero_builds_no_limiter(redis_client: redis.Redis) -> None:
    # The off-switch is the setting under test here; the suite itself runs the shipped limit.
    backend = make_backend(load_settings({**cxone_env(), "CXSWEEP_RATE_LIMIT": "0"}), redis_client)
    assert isinstance(backend, CxoneBackend)
    assert backend.http.limiter is None


def test_one_tenant_shares_one_limiter_bucket_across_backends(redis_client: redis.Redis) -> None:
    # Two workers building the same backend must draw on the same fleet-wide rate.
    settings = load_settings()
    first = make_backend(settings, redis_client)
    second = make_backend(settings, redis_client)
    other = make_backend(load_settings(cxone_env()), redis_client)
    assert isinstance(first, V2Client) and isinstance(second, V2Client)
    assert isinstance(other, CxoneBackend)
    assert first.http.limiter is not None and second.http.limiter is not None
    assert other.http.limiter is not None
    assert first.http.limiter.key == second.http.limiter.key
    assert other.http.limiter.key != first.http.limiter.key
    # The tenant (an API URL) is hashed into the key, never written there as it is.
    assert settings.api_url not in first.http.limiter.key
    assert first.http.limiter.rate == settings.rate_limit
