"""What a task needs, built once per worker process: settings, Redis, clients, sanitizers.

Secrets come from the worker's own environment, never from a task's arguments.
"""

from __future__ import annotations

import functools
import random

import redis
from celery import Task
from celery.exceptions import Retry
from celery.utils.time import get_exponential_backoff_interval

from cxsweep.backend import Backend, make_backend
from cxsweep.errors import RetryableApiError
from cxsweep.phone import Directive, Sanitizer
from cxsweep.redisconn import get_redis
from cxsweep.runs import RunStore
from cxsweep.settings import Settings, get_settings

# Keep every countdown far below the broker's visibility timeout (1 h).
MAX_COUNTDOWN = 300.0


def settings() -> Settings:
    return get_settings()


def redis_client() -> redis.Redis:
    return get_redis(settings().redis_url)


def run_store(run_id: str) -> RunStore:
    return RunStore(redis_client(), run_id)


def backend_for(store: RunStore) -> Backend:
    """The configured platform's backend, its every response counted in the run."""

    def observe(kind: str, status: int | None, seconds: float) -> None:
        pipe = store.redis.pipeline(transaction=False)
        pipe.hincrby(store.counts_key, "api_requests", 1)
        pipe.hincrby(store.counts_key, f"calls:{kind}", 1)
        pipe.hincrby(store.counts_key, f"status:{status or 'error'}", 1)
        pipe.hincrby(store.counts_key, "api_ms_sum", round(seconds * 1000))
        pipe.execute()

    return make_backend(settings(), redis_client(), observer=observe)


def directive_for(list_id: str) -> Directive:
    return settings().directive


@functools.lru_cache(maxsize=64)
def _sanitizer(directive: Directive) -> Sanitizer:
    return Sanitizer(directive)


def sanitizer_for(list_id: str) -> Sanitizer:
    return _sanitizer(directive_for(list_id))


def backoff_seconds(retries: int) -> float:
    """1 s doubling to 8 s, plus up to 500 ms of jitter (the contract's schedule)."""
    base = get_exponential_backoff_interval(factor=1, retries=retries, maximum=8, full_jitter=False)
    return base + random.uniform(0.0, 0.5)


class ApiTask(Task):
    """A task that talks to the API: transient failures are retried through Celery,
    honouring the server's ``Retry-After`` when it gave one."""

    abstract = True
    max_retries = 8

    def retries_left(self) -> bool:
        return self.max_retries is None or self.request.retries < self.max_retries

    def retry_api(self, exc: RetryableApiError, run: RunStore | None = None) -> Retry:
        countdown = (
            exc.retry_after
            if exc.retry_after is not None
            else backoff_seconds(self.request.retries)
        )
        if run is not None:
            run.incr("retries")
        return self.retry(exc=exc, countdown=min(countdown, MAX_COUNTDOWN))
