"""What a task needs, built once per worker process: settings, Redis, clients, sanitizers.

Secrets come from the worker's own environment, never from a task's arguments.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import threading
from collections.abc import Callable, Iterator
from typing import Literal, ParamSpec, TypedDict, TypeVar

import redis
from celery import Task, current_task
from celery.utils.time import get_exponential_backoff_interval

from cxsweep import metrics
from cxsweep.errors import NotYet, RateLimited, RetryableApiError
from cxsweep.phone.lookup import build_provider
from cxsweep.phone.numbers import Directive, Sanitizer
from cxsweep.phone.policy import Policy, load_policy
from cxsweep.platforms.base import Backend
from cxsweep.platforms.factory import make_backend
from cxsweep.redisconn import get_redis
from cxsweep.runs import keys
from cxsweep.runs.latency import RequestTally
from cxsweep.runs.pages import PagesAhead
from cxsweep.runs.store import ListLock, RunStore
from cxsweep.settings import Settings, get_settings
from tasks.results import Failure

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger(__name__)
# The run's tasks log under the name they always had, whichever module holds them: log
# filters and alerts select on it.
run_log = logging.getLogger("tasks.sweep")

# The tasks that write a chunk, by its kind: named here, so that the verify pass
# (``tasks.recheck``) sends them without importing ``tasks.write``, which imports it.
WRITE_TASK_NAMES = {"update": "tasks.sweep.write_updates", "remove": "tasks.sweep.write_removals"}

# Keep every countdown far below the broker's visibility timeout (1 h).
MAX_COUNTDOWN = 300.0


def settings() -> Settings:
    return get_settings()


def redis_client() -> redis.Redis:
    return get_redis(settings().redis_url)


def run_store(run_id: str) -> RunStore:
    return RunStore(redis_client(), run_id)


def keep_lock(store: RunStore, list_id: str) -> None:
    """A run that progresses keeps its list; one whose workers all died lets it expire."""
    if not ListLock(store.redis, list_id).renew(store.run_id):
        run_log.warning("run %s no longer holds the lock of list %s", store.run_id, list_id)


def fail_run(
    store: RunStore, message: str, *, page: int | None = None, task: str | None = None
) -> Failure:
    """Fail the run with ``message``; the step returns this so its chord still ends."""
    store.fail(message)
    run_log.warning("run %s: %s", store.run_id, message)
    failure: Failure = {"ok": False, "error": message}
    if task is not None:
        failure["task"] = task
    if page is not None:
        failure["page"] = page
    return failure


# Calls that only authenticate: a token granted is no progress on the task's work.
_AUTH_KINDS = frozenset({"token", "oidc", "discovery"})


def failures_key(run: RunStore, task_id: str) -> str:
    """Where a task's failures in a row are counted (its retry budget)."""
    return run.keys.task_failures(task_id)


class RequestCounts(RequestTally):
    """A task's API requests, counted in memory and added to the run's counters and
    latency histogram once, when the task ends: a write step is one Redis round trip per
    request cheaper. Each is also counted live for Prometheus.

    A task attempt that got an answer for its work (2xx, or a 404 for a contact already
    gone) made progress: its failures so far are forgiven, so that a task of many
    requests is not failed by a few 5xx spread over its whole life."""

    def __init__(self, store: RunStore, tag: str = "") -> None:
        super().__init__()
        self.store = store
        self.tag = tag
        self.progressed = False

    def observe(self, kind: str, status: int | None, seconds: float) -> None:
        if status is not None and (200 <= status < 300 or status == 404):
            self.progressed = self.progressed or kind not in _AUTH_KINDS
        if self.tag:
            self.counts[f"{self.tag}_requests"] += 1
        super().observe(kind, status, seconds)
        metrics.observe_api(kind, status, seconds)

    def flush(self) -> None:
        progressed, self.progressed = self.progressed, False
        task_id = current_task.request.id if current_task else None
        # Failures are counted only by an attempt that then retries: a first attempt
        # has none to forgive.
        retried = bool(current_task and current_task.request.retries)
        pipe = self.store.redis.pipeline(transaction=False)
        pending = self.add_to(pipe, self.store)
        if progressed and task_id and retried:
            pipe.delete(failures_key(self.store, task_id))
            pending = True
        if pending:
            pipe.execute()


# The task whose API requests this thread's calls count for (``api_backend``): the
# backend is shared by the threads of a worker, each task's tally is its thread's.
_counting = threading.local()


def _observe(kind: str, status: int | None, seconds: float) -> None:
    counts: RequestCounts | None = getattr(_counting, "counts", None)
    if counts is not None:
        counts.observe(kind, status, seconds)
    else:  # a call outside any run's step (the scheduler's list of lists)
        metrics.observe_api(kind, status, seconds)


_backend_lock = threading.Lock()
_backend: tuple[int, Settings, Backend] | None = None


def shared_backend() -> Backend:
    """The configured platform's backend, built once per worker process (and again if
    the settings are reloaded): its token cache keeps the fleet's token between tasks,
    so Redis is asked for it once per refresh, not once per task. It is shared by the
    pool's threads: the backends keep no per-call state (``TokenCache`` is thread-safe;
    requests are counted per thread, see ``api_backend``). Keyed by pid too: a prefork
    child never uses its parent's sockets."""
    global _backend
    current, pid = settings(), os.getpid()
    built = _backend
    if built is not None and built[0] == pid and built[1] is current:
        return built[2]
    with _backend_lock:
        built = _backend
        if built is None or built[0] != pid or built[1] is not current:
            built = (pid, current, make_backend(current, redis_client(), observer=_observe))
            _backend = built
        return built[2]


@contextlib.contextmanager
def api_backend(
    store: RunStore, tag: str = "", counts: RequestCounts | None = None
) -> Iterator[Backend]:
    """The backend for a step that calls the API; its requests are counted in the run
    when the step ends, however it ends (a retry included); also as ``{tag}_requests``
    when tagged (the cost of a pass, apart). A step that keeps its own ``counts`` (a
    write chunk keeps them with its done marker) passes them: what it did not take is
    counted here."""
    counts = counts if counts is not None else RequestCounts(store, tag)
    outer = getattr(_counting, "counts", None)
    _counting.counts = counts
    try:
        yield shared_backend()
    finally:
        _counting.counts = outer
        counts.flush()


def pages_ahead(backend: Backend, list_id: str) -> PagesAhead:
    """The step's reader of ``list_id``'s pages, the next one read ahead where that pays
    (``Backend.read_ahead``), its requests counted in this step."""
    return PagesAhead(
        counted_in_this_step(functools.partial(backend.read_page, list_id)),
        enabled=backend.read_ahead and not backend.parallel_pages,
    )


def counted_in_this_step(call: Callable[P, R]) -> Callable[P, R]:
    """``call`` counting its requests in the current step's counts (``api_backend``)
    whichever thread runs it: a read ahead (``runs.pages.PagesAhead``) runs in a helper
    thread, which has no counts of its own."""
    counts = getattr(_counting, "counts", None)

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        outer = getattr(_counting, "counts", None)
        _counting.counts = counts
        try:
            return call(*args, **kwargs)
        finally:
            _counting.counts = outer

    return run


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


class GaveUp(TypedDict):
    """What an API task returns once its failure budget is spent: the chord's callback
    reads ``ok`` and ``error`` and records the run as failed."""

    ok: Literal[False]
    error: str
    task: str


class ApiTask(Task):
    """A task that talks to an API, with the one retry ladder of every such task.

    Being asked to wait is not a failure: the shared rate limit or a running upload job
    (``NotYet``), or a 429 with or without ``Retry-After``. Such a task comes back as
    often as it is asked, as late as it is asked. Server errors, time-outs and dropped
    connections are failures: each spends one of ``failure_budget`` retries, counted in
    the run's Redis keys per task id (a retry keeps its id, so does a redelivery), and
    forgiven when an attempt gets answers for its work (``RequestCounts``). When the
    budget is spent the task *returns* its failure (``GaveUp``) and never raises into
    the chord.

    Celery's own cap is off (``max_retries = None``): its ``request.retries`` counts
    every retry, waits included, and ``self.retry(max_retries=None)`` means "the task's
    attribute", so any cap there would end a task that merely waited too often.
    """

    abstract = True
    max_retries = None
    failure_budget = 8

    def retry_or_give_up(self, exc: RetryableApiError, run: RunStore) -> GaveUp:
        """Raise Celery's ``Retry`` for ``exc``, or return the failure once the budget is
        spent. Call it from an ``except RetryableApiError`` and return what it returns."""
        if isinstance(exc, NotYet | RateLimited):
            if isinstance(exc, NotYet):
                run.incr("waits")
            else:
                run.incr(keys.RETRIES)
            countdown = (
                exc.retry_after
                if exc.retry_after is not None
                else backoff_seconds(min(self.request.retries, 3))
            )
            raise self.retry(exc=exc, countdown=min(max(countdown, 0.0), MAX_COUNTDOWN))
        key = failures_key(run, str(self.request.id))
        pipe = run.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 24 * 3600)
        failures = int(pipe.execute()[0])
        if failures > self.failure_budget:
            message = f"{exc} (gave up after {self.failure_budget} retries)"
            log.warning("run %s: %s[%s] %s", run.run_id, self.name, self.request.id, message)
            return {"ok": False, "error": message, "task": str(self.name)}
        run.incr(keys.RETRIES)
        countdown = (
            exc.retry_after if exc.retry_after is not None else backoff_seconds(failures - 1)
        )
        raise self.retry(exc=exc, countdown=min(max(countdown, 0.0), MAX_COUNTDOWN))
