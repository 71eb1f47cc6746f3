"""The backend ``CXSWEEP_BACKEND`` names, built apart from the ``Backend`` protocol that
both backends import."""

from __future__ import annotations

import redis

from cxsweep.platforms.base import Backend
from cxsweep.platforms.cxone import CxoneBackend
from cxsweep.platforms.ratelimit import RateLimiter
from cxsweep.platforms.v2 import ResponseObserver, V2Client
from cxsweep.settings import Settings


def make_backend(
    settings: Settings, redis_client: redis.Redis, observer: ResponseObserver | None = None
) -> Backend:
    """The backend ``CXSWEEP_BACKEND`` names, sharing its token and the tenant's request
    rate (``CXSWEEP_RATE_LIMIT``) through ``redis_client``."""
    limiter = None
    if settings.rate_limit > 0:
        tenant = f"{settings.backend}|{settings.api_url or settings.cxone_auth_url}"
        limiter = RateLimiter(
            redis_client, tenant, settings.rate_limit, settings.rate_burst or None
        )
    if settings.backend == "cxone":
        return CxoneBackend(settings, redis_client, observer=observer, limiter=limiter)
    return V2Client(settings, redis_client, observer=observer, limiter=limiter)
