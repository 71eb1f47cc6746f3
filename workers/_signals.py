"""Worker-process hooks: logs made safe to ship (masked, JSON lines with the task's
ids on request), the Prometheus metrics server, the GIL's switch interval and the
garbage collector's thresholds."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gc
import inspect
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Task
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    task_postrun,
    task_prerun,
    task_retry,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from cxsweep import logs, metrics
from cxsweep.redisconn import get_redis, text
from cxsweep.runs.keys import RunKeys
from cxsweep.settings import get_settings
from workers import _metrics

log = logging.getLogger(__name__)
# Settings were validated when workers.config loaded (a bad one stopped the worker).
_LOG_FORMAT = get_settings().log_format


@after_setup_logger.connect
@after_setup_task_logger.connect
def _mask_numbers(logger: logging.Logger, **_: Any) -> None:
    for handler in logger.handlers:
        handler.addFilter(logs.MaskingFilter())
        if _LOG_FORMAT == "json":
            handler.setFormatter(logs.JsonFormatter())


# --- the task's ids in every log record -----------------------------------------------

_CONTEXT_ARGS = ("run_id", "list_id", "sweep_id")
_tokens: dict[str, contextvars.Token[Mapping[str, str]]] = {}


@functools.lru_cache(maxsize=256)
def _signature(task: Task) -> inspect.Signature | None:
    try:
        return inspect.signature(task.run)
    except (TypeError, ValueError):
        return None


def _ids_from_args(task: Task, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, str]:
    """run_id / list_id / sweep_id by parameter name, wherever the task takes them
    (a chord callback gets the header's results first, then the run id)."""
    signature = _signature(task)
    if signature is None:
        return {}
    try:
        bound = signature.bind_partial(*args, **kwargs)
    except TypeError:
        return {}
    return {
        name: value
        for name, value in bound.arguments.items()
        if name in _CONTEXT_ARGS and isinstance(value, str)
    }


@task_prerun.connect
def _bind_task_context(
    task_id: str | None = None,
    task: Task | None = None,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    **_: Any,
) -> None:
    if task is None or task_id is None:
        return
    fields = _ids_from_args(task, args or (), kwargs or {})
    if _LOG_FORMAT == "json" and "run_id" in fields and "list_id" not in fields:
        # One HGET per task, and only for JSON logs: the list is in the run's metadata.
        try:
            redis = get_redis(get_settings().redis_url)
            list_id = text(redis.hget(RunKeys(fields["run_id"]).meta, "list_id"))
        except Exception:  # a log field is never worth failing a task
            list_id = ""
        if list_id:
            fields["list_id"] = list_id
    _tokens[task_id] = logs.bind(task_id=task_id, task_name=task.name, **fields)


@task_postrun.connect
def _unbind_task_context(task_id: str | None = None, **_: Any) -> None:
    token = _tokens.pop(task_id or "", None)
    if token is not None:
        # ValueError: set in another context (a pool that moved the task); nothing to undo.
        with contextlib.suppress(ValueError):
            logs.unbind(token)


# --- metrics ----------------------------------------------------------------------------


# A threads-pool worker runs page reads beside CPU-bound tasks (a sanitize task judging a
# thousand numbers, in the layout where one worker serves both queues). A thread back from
# a socket waits for the GIL up to the switch interval, 5 ms by default, at each of a
# request's several waits: the serial page reads of a run went 0.3 s faster over 40 pages
# at 1 ms (bench/sweep.py, throttled, side by side), a tenth of their time.
GIL_SWITCH_SECONDS = 0.001


@worker_init.connect
def _shorter_gil_switch(**_: Any) -> None:
    sys.setswitchinterval(GIL_SWITCH_SECONDS)


# A worker allocates in bursts (a page's contacts, a chunk's plan rows: thousands of small
# dicts and lists a task) beside a large heap that lives as long as it does (Celery,
# kombu, redis-py, phonenumbers' metadata). CPython's default thresholds (700, 10, 10)
# ran a young collection every 700 allocations and a full one, walking that whole heap,
# every few hundred tasks: 0.55 s of CPU a worker at 100,000 contacts, 0.18 s tuned
# (bench/PROFILE.md, session 8). What the worker built to boot is frozen (``gc.freeze``:
# never walked again), and young collections wait for 20,000 allocations.
GC_THRESHOLDS = (20_000, 20, 20)


@worker_ready.connect
def _tune_gc_in_worker(**_: Any) -> None:
    """The threads (and solo) pool's tasks run in this process: its boot heap, collected
    once, is frozen. (Sent in a prefork parent too, which runs no task: harmless.)"""
    gc.collect()
    _tune_gc_in_child()


@worker_process_init.connect
def _tune_gc_in_child(**_: Any) -> None:
    """A prefork child: what it inherited is frozen as it is, without a collection first,
    which would write to every inherited page and undo the fork's sharing of them."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _metrics_port(sender: Any) -> int:
    app = getattr(sender, "app", None)
    conf = getattr(app, "conf", None)
    return int(conf.get("cxsweep_metrics_port", 0) or 0) if conf is not None else 0


@worker_init.connect
def _choose_metrics_store(sender: Any = None, **_: Any) -> None:
    """Prefork children keep their values in shared files; other pools, in memory.

    Runs in the worker's main process before the pool forks (and before the pool class
    is resolved: ``sender.pool_cls`` may still be an alias or a class from the CLI).
    """
    if sender is None or not _metrics_port(sender):
        return
    from celery import concurrency
    from celery.concurrency.prefork import TaskPool as PreforkPool

    try:
        pool = concurrency.get_implementation(sender.pool_cls)
    except Exception:  # an unknown pool fails the worker elsewhere, with Celery's message
        return
    if isinstance(pool, type) and issubclass(pool, PreforkPool):
        _metrics.enable_multiprocess()


@worker_ready.connect
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    # worker_ready's sender is the consumer; its .app is the worker's app.
    port = _metrics_port(sender)
    if port:
        _metrics.start_metrics_server(port)


@worker_process_shutdown.connect
def _child_exited(pid: int | None = None, **_: Any) -> None:
    if pid is not None:
        _metrics.child_exited(pid)


@worker_shutdown.connect
def _stop_metrics(**_: Any) -> None:
    _metrics.shutdown()


@task_retry.connect
def _count_retry(sender: Any = None, **_: Any) -> None:
    name = sender if isinstance(sender, str) else getattr(sender, "name", None)
    metrics.count_retry(name or "unknown")
