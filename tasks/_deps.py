"""What a task needs, built once per worker process: settings, Redis, clients, sanitizers.

Secrets come from the worker's own environment, never from a task's arguments.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections import Counter
from collections.abc import Iterator

import redis
from celery import Task
from celery.exceptions import Retry
from celery.utils.time import get_exponential_backoff_interval

from cxsweep import metrics
from cxsweep.backend import Backend, make_backend
from cxsweep.errors import NotYet, RetryableApiError
from cxsweep.lookup import build_provider
from cxsweep.phone import Directive, Sanitizer
from cxsweep.policy import Policy, load_policy
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


class RequestCounts:
    """A task's API requests, counted in memory and added to the run's counters once,
    when the task ends: a write step is one Redis round trip per request cheaper."""

    def __init__(self, store: RunStore, tag: str = "") -> None:
        self.store = store
        self.tag = tag
        self.counts: Counter[str] = Counter()

    def observe(self, kind: str, status: int | None, seconds: float) -> None:
        self.counts["api_requests"] += 1
        if self.tag:
            self.counts[f"{self.tag}_requests"] += 1
        self.counts[f"calls:{kind}"] += 1
        self.counts[f"status:{status or 'error'}"] += 1
        self.counts["api_ms_sum"] += round(seconds * 1000)
        metrics.observe_api(kind, status, seconds)

    def flush(self) -> None:
        counts, self.counts = self.counts, Counter()
        if counts:
            pipe = self.store.redis.pipeline(transaction=False)
            for field, amount in counts.items():
                pipe.hincrby(self.store.counts_key, field, amount)
            pipe.execute()


def backend_for(store: RunStore) -> Backend:
    """The configured platform's backend, for what needs no API call (its batch sizes,
    phone fields, contact ids)."""
    return make_backend(settings(), redis_client())


@contextlib.contextmanager
def api_backend(store: RunStore, tag: str = "") -> Iterator[Backend]:
    """The backend for a step that calls the API; its requests are counted in the run
    when the step ends, however it ends (a retry included); also as ``{tag}_requests``
    when tagged (the cost of a pass, apart)."""
    counts = RequestCounts(store, tag)
    try:
        yield make_backend(settings(), redis_client(), observer=counts.observe)
    finally:
        counts.flush()


@functools.lru_cache(maxsize=1)
def policy() -> Policy:
    """The policy file (or the plain settings), loaded once per worker process."""
    return load_policy(settings())


def directive_for(list_id: str) -> Directive:
    return policy().directive_for(list_id)


@functools.lru_cache(maxsize=64)
def _sanitizer(directive: Directive) -> Sanitizer:
    provider = build_provider(settings(), directive, redis_client())
    # No enrichment (carrier, time zones): nothing downstream of the pipeline reads it,
    # and it more than halves the numbers a core judges per second.
    return Sanitizer(directive, lookup=provider, enrich=False)


def sanitizer_for(list_id: str) -> Sanitizer:
    return _sanitizer(directive_for(list_id))


def backoff_seconds(retries: int) -> float:
    """1 s doubling to 8 s, plus up to 500 ms of jitter (the contract's schedule)."""
    base = get_exponential_backoff_interval(factor=1, retries=retries, maximum=8, full_jitter=False)
    return base + random.uniform(0.0, 0.5)


class ApiTask(Task):
    """A task that talks to an API: transient failures are retried through Celery,
    honouring the server's ``Retry-After`` when it gave one.

    Failures are counted in the run's Redis keys, per task id, rather than by Celery's
    ``request.retries``: a task that was asked to wait (``NotYet``: a running job, the
    shared rate limit) comes back as often as needed without spending its budget.
    """

    abstract = True
    max_retries = 8

    def _failures_key(self, run: RunStore) -> str:
        return f"{run.prefix}:failures:{self.request.id}"

    def retries_left(self, exc: RetryableApiError, run: RunStore) -> bool:
        if isinstance(exc, NotYet):
            return True
        failures = int(run.redis.get(self._failures_key(run)) or 0)
        return self.max_retries is None or failures < self.max_retries

    def retry_api(self, exc: RetryableApiError, run: RunStore) -> Retry:
        if isinstance(exc, NotYet):
            countdown = exc.retry_after or 1.0
            run.incr("waits")
        else:
            key = self._failures_key(run)
            failures = int(run.redis.incr(key))
            run.redis.expire(key, 24 * 3600)
            countdown = (
                exc.retry_after if exc.retry_after is not None else backoff_seconds(failures - 1)
            )
            run.incr("retries")
        return self.retry(exc=exc, countdown=min(countdown, MAX_COUNTDOWN), max_retries=None)
