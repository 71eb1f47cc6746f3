"""Scheduled sweeps: every list of the account, a few runs at a time.

Beat fires ``sweep_all_lists`` (``CXSWEEP_SWEEP_SCHEDULE``, nightly by default). It lists
every list once and sorts them:

- excluded by the policy (``exclude = true``): skipped;
- with their own ``schedule`` in a ``[[lists]]`` entry: given their own RedBeat entry
  (``list:{list_id}`` running ``sweep_list``), kept in step with the policy here and
  hourly by ``sync_list_schedules``;
- the rest: pushed, once each, onto the sweep's pending list in Redis.

``advance_sweep`` then starts runs up to ``CXSWEEP_MAX_CONCURRENT_RUNS`` (default 4) at a
time and comes back every few seconds while lists remain. Large accounts have
thousands of lists: enqueueing them all at once would lock every list at 02:00 and
flood the queues (and the platform's rate limit) for hours. A list that another run
holds (``ListBusy``) is logged and dropped from this sweep, not queued twice.

Sweep state lives in Redis: ``cxsweep.runs.sweeps.SweepStore``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis
from celery import shared_task
from redbeat import RedBeatSchedulerEntry

from cxsweep import metrics
from cxsweep.errors import ListBusy, RetryableApiError
from cxsweep.phone.policy import Policy
from cxsweep.redisconn import text
from cxsweep.runs.keys import CURRENT_SWEEP, SWEEP_LIST_ENTRIES
from cxsweep.runs.store import ACTIVE, DATA_TTL, RunStore, new_run_id, prepare_run
from cxsweep.runs.sweeps import SweepStore
from tasks._deps import policy, redis_client, settings, shared_backend
from tasks.crontab import parse_crontab
from tasks.read import begin_run

log = logging.getLogger(__name__)

DEFAULT_MAX_RUNS = 4
# How often a sweep looks for finished runs to replace. Runs take minutes; 5 s keeps
# the slots busy without a noticeable load on Redis.
ADVANCE_EVERY = 5.0
# A running sweep that has not advanced for this long is presumed dead (its advance
# chain lost) and is superseded by the next scheduled sweep.
STALE_AFTER = 15 * 60
LIST_ENTRY_TASK = "tasks.schedule.sweep_list"


# --- per-list RedBeat entries -----------------------------------------------------------


@dataclass(frozen=True)
class Sorted:
    queue: list[str]
    excluded: list[str]
    own_schedule: dict[str, str]


def sort_lists(list_ids: Iterable[str], rules: Policy) -> Sorted:
    """Which lists the all-lists sweep takes, skips, or leaves to their own entry."""
    queue: list[str] = []
    excluded: list[str] = []
    own: dict[str, str] = {}
    for list_id in dict.fromkeys(list_ids):  # a list named twice is queued once
        rule = rules.rule_for(list_id)
        if rules.excluded(list_id):
            excluded.append(list_id)
        elif rule is not None and rule.schedule:
            # Only a [[lists]] entry's own schedule: the [default] one is this sweep's.
            own[list_id] = rule.schedule
        else:
            queue.append(list_id)
    return Sorted(queue, excluded, own)


def _entry_name(list_id: str) -> str:
    return f"list:{list_id}"


def sync_list_entries(app: Any, wanted: Mapping[str, str]) -> dict[str, int]:
    """Create, update or delete the per-list RedBeat entries to match ``wanted``
    (list id -> crontab). Entries whose crontab Celery cannot parse are left out (and
    logged); the caller sweeps those lists with the others instead."""
    client = redis_client()
    done = {"created": 0, "updated": 0, "deleted": 0, "invalid": 0}
    names: set[str] = set()
    for list_id, expression in wanted.items():
        try:
            schedule = parse_crontab(expression)
        except ValueError as exc:
            log.error("list %s: schedule %s; swept with all lists instead", list_id, exc)
            done["invalid"] += 1
            continue
        name = _entry_name(list_id)
        names.add(name)
        entry = RedBeatSchedulerEntry(name, LIST_ENTRY_TASK, schedule, args=[list_id], app=app)
        try:
            existing = RedBeatSchedulerEntry.from_key(entry.key, app=app)
        except KeyError:
            existing = None
        if existing is not None and existing.schedule == schedule and existing.args == [list_id]:
            continue
        # A new entry counts as just run: without it RedBeat finds it never run, so due
        # now, and the list would be swept at once instead of at its time.
        entry.last_run_at = existing.last_run_at if existing is not None else entry.default_now()
        entry.save()
        done["updated" if existing is not None else "created"] += 1
    for stale in {text(v) for v in client.smembers(SWEEP_LIST_ENTRIES)} - names:
        key = RedBeatSchedulerEntry.generate_key(app, stale)
        with contextlib.suppress(KeyError):
            RedBeatSchedulerEntry.from_key(key, app=app).delete()
        done["deleted"] += 1
    pipe = client.pipeline()
    pipe.delete(SWEEP_LIST_ENTRIES)
    if names:
        pipe.sadd(SWEEP_LIST_ENTRIES, *names)
    pipe.execute()
    return done


def _all_list_ids() -> list[str]:
    # Counted for Prometheus only: no run owns these calls.
    return [str(item["id"]) for item in shared_backend().iter_lists()]


# --- the tasks --------------------------------------------------------------------------


@shared_task(
    bind=True,
    name="tasks.schedule.sweep_all_lists",
    autoretry_for=(RetryableApiError,),
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=6,
)
def sweep_all_lists(
    self: Any, *, poll_seconds: float = ADVANCE_EVERY, dry_run: bool = False
) -> dict[str, Any]:
    max_runs = settings().max_concurrent_runs
    rules = policy()
    found = sort_lists(_all_list_ids(), rules)
    client = redis_client()

    sweep_id = "sweep-" + new_run_id()
    if not client.set(CURRENT_SWEEP, sweep_id, nx=True, ex=DATA_TTL):
        previous = SweepStore(client, text(client.get(CURRENT_SWEEP)))
        meta = previous.meta()
        if meta.get("status") == "running" and (
            time.time() - float(meta.get("updated_at") or 0) < STALE_AFTER
        ):
            log.warning(
                "sweep %s is still running (%d lists pending): not starting another",
                previous.sweep_id,
                len(previous.pending()),
            )
            return {"ok": True, "skipped": True, "running": previous.sweep_id}
        if meta.get("status") == "running":
            log.warning("sweep %s stopped advancing: superseded", previous.sweep_id)
            previous.set_meta(status="abandoned", finished_at=time.time())
        client.set(CURRENT_SWEEP, sweep_id, ex=DATA_TTL)

    entries = sync_list_entries(self.app, found.own_schedule)
    queue = list(found.queue)
    if entries["invalid"]:
        queue += [
            list_id for list_id, expression in found.own_schedule.items() if not _valid(expression)
        ]
    store = SweepStore(client, sweep_id)
    store.create(queue, max_runs=max_runs, poll_seconds=poll_seconds, dry_run=dry_run)
    store.set_meta(excluded=len(found.excluded), own_schedule=len(found.own_schedule))
    for list_id in found.excluded:
        log.info("sweep %s: list %s is excluded by the policy", sweep_id, list_id)
    metrics.count_sweep_lists("queued", len(queue))
    metrics.count_sweep_lists("excluded", len(found.excluded))
    metrics.count_sweep_lists("own_schedule", len(found.own_schedule) - entries["invalid"])
    log.info(
        "sweep %s: %d lists queued, %d excluded, %d on their own schedule; %d runs at a time",
        sweep_id,
        len(queue),
        len(found.excluded),
        len(found.own_schedule),
        max_runs,
    )
    advance_sweep.delay(sweep_id)
    return {"ok": True, "sweep_id": sweep_id, "queued": len(queue)}


def _valid(expression: str) -> bool:
    try:
        parse_crontab(expression)
    except ValueError:
        return False
    return True


def _reschedule(sweep_id: str, countdown: float) -> None:
    advance_sweep.apply_async((sweep_id,), countdown=countdown)


def _start_run(store: SweepStore, list_id: str, *, dry_run: bool) -> str | None:
    """Lock the list and hand its run to the workers; None when the list is busy."""
    try:
        run_id = prepare_run(
            store.redis,
            list_id,
            dry_run=dry_run,
            options={"sweep_id": store.sweep_id},
            deadline_seconds=settings().run_deadline_seconds,
        )
    except ListBusy as exc:
        log.warning("sweep %s: skipping list %s: %s", store.sweep_id, list_id, exc)
        store.drop_pending(list_id)
        store.skip(list_id, str(exc))
        store.count("busy")
        metrics.count_sweep_lists("busy")
        return None
    begin_run.delay(run_id)
    store.started(list_id, run_id)
    metrics.count_sweep_lists("started")
    return run_id


@shared_task(name="tasks.schedule.advance_sweep", ignore_result=True)
def advance_sweep(sweep_id: str) -> dict[str, Any]:
    """Replace the sweep's finished runs by new ones, up to its limit; come back later
    while lists are pending or runs are active."""
    store = SweepStore(redis_client(), sweep_id)
    # One advancer at a time: two (a redelivery, a duplicate) would both see a free slot.
    lock = store.redis.lock(store.lock_key, timeout=120, blocking=False)
    if not lock.acquire(blocking=False):
        return {"ok": True, "busy": True}  # the holder comes back on its own
    try:
        meta = store.meta()
        if meta.get("status") != "running":
            return {"ok": True, "status": meta.get("status", "unknown")}
        limit = int(meta.get("max_concurrent_runs") or DEFAULT_MAX_RUNS)
        dry_run = meta.get("dry_run") == "1"
        active = 0
        for active_id in store.active():
            if RunStore(store.redis, active_id).meta().get("status") in ACTIVE:
                active += 1
            else:  # final, or expired from Redis: its slot is free
                store.redis.srem(store.active_key, active_id)
        started: list[str] = []
        while active < limit:
            list_id = store.next_pending()
            if list_id is None:
                break
            run_id = _start_run(store, list_id, dry_run=dry_run)
            if run_id is not None:
                started.append(run_id)
                active += 1
        pending = int(store.redis.llen(store.pending_key))
        now = time.time()
        if pending or active:
            store.set_meta(updated_at=now)
        else:
            store.set_meta(status="done", updated_at=now, finished_at=now)
            # Only this sweep's pointer: a newer sweep may have superseded it.
            if text(store.redis.get(CURRENT_SWEEP)) == sweep_id:
                store.redis.delete(CURRENT_SWEEP)
            log.info("sweep %s done", sweep_id)
    finally:
        with contextlib.suppress(redis.exceptions.LockError):
            lock.release()
    if pending or active:
        _reschedule(sweep_id, float(meta.get("poll_seconds") or ADVANCE_EVERY))
    return {"ok": True, "started": started, "active": active, "pending": pending}


@shared_task(name="tasks.schedule.sweep_list", ignore_result=True)
def sweep_list(list_id: str) -> str | None:
    """A list's own scheduled sweep (its RedBeat entry ``list:{list_id}``)."""
    if policy().excluded(list_id):
        log.info("list %s is excluded by the policy: not sweeping", list_id)
        return None
    try:
        run_id = prepare_run(
            redis_client(),
            list_id,
            dry_run=False,
            deadline_seconds=settings().run_deadline_seconds,
        )
    except ListBusy as exc:
        log.warning("scheduled sweep of list %s skipped: %s", list_id, exc)
        metrics.count_sweep_lists("busy")
        return None
    begin_run.delay(run_id)
    metrics.count_sweep_lists("started")
    return run_id


@shared_task(
    bind=True,
    name="tasks.schedule.sync_list_schedules",
    ignore_result=True,
    autoretry_for=(RetryableApiError,),
    retry_backoff=5,
    max_retries=3,
)
def sync_list_schedules(self: Any) -> dict[str, int]:
    """Per-list entries in step with the policy between all-lists sweeps."""
    found = sort_lists(_all_list_ids(), policy())
    return sync_list_entries(self.app, found.own_schedule)
