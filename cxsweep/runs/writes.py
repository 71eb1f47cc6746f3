"""Writing a judged plan: chunks of updates and removals, each request sent only while
the run may still write (its list held, not halted or failed), fed to the run's breaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial

import redis

from cxsweep.errors import CxsweepError, RetryableApiError
from cxsweep.platforms.base import Backend, Change, WriteOutcome
from cxsweep.runs.outcomes import ChunkResult
from cxsweep.runs.store import PlanEntry, RunStore, persistence_problem

# DELETE-style removals (one contact a request) are grouped this many to a task: enough
# to spread a task's overhead, few enough that the last tasks do not leave a long tail.
REMOVALS_PER_TASK = 10


class WriteStopped(CxsweepError):
    """A write request was not sent: the run lost its list, was halted or failed."""


def fence(store: RunStore, why: str, *, request_seconds: float) -> None:
    """Fail a run from outside (the watchdog) so that its writes stop: mark it failed,
    which every write's permit reads, then wait (at most one request's time) for the
    requests already sent to land and be counted, so its audit line tells all."""
    store.fail(why)
    deadline = time.monotonic() + request_seconds
    while store.writers_active(within=request_seconds) and time.monotonic() < deadline:
        time.sleep(0.1)


def volatile_redis_refusal(store: RunStore, *, allowed_by_settings: bool) -> str:
    """Before a run's first write: why it must not write (its Redis would lose the plan,
    the archive and the done markers in a restart), or "" when it may: the run's
    ``--allow-volatile-redis`` or the fleet's setting accepts the risk."""
    if allowed_by_settings or store.options().get("allow_volatile_redis"):
        return ""
    problem = persistence_problem(store.redis)
    if not problem:
        return ""
    return (
        f"Redis {problem}: a restart mid-write would lose this run's plan and archive, so"
        " nothing was written; enable AOF (appendonly yes) with maxmemory-policy noeviction,"
        " or accept the risk with `cxsweep run --allow-volatile-redis`"
        " (CXSWEEP_ALLOW_VOLATILE_REDIS=1 for scheduled sweeps)"
    )


def fresh_entries(store: RunStore, entries: list[PlanEntry]) -> list[PlanEntry]:
    """The entries a write may send: those the re-read found as planned. The rest were
    changed or removed by someone else since our read, and are reported as stale."""
    try:
        states = store.claim_fresh([e.contact_id for e in entries])
    except redis.ResponseError as exc:
        raise CxsweepError(str(exc)) from None
    return [e for e, state in zip(entries, states, strict=True) if state == "fresh"]


def chunk_sizes(backend: Backend) -> tuple[int, int]:
    """Contacts per update task and per removal task."""
    return backend.update_batch_size, max(backend.remove_batch_size, REMOVALS_PER_TASK)


def write_chunks(store: RunStore, backend: Backend) -> list[tuple[str, int]]:
    update_chunk, remove_chunk = chunk_sizes(backend)
    updates, removes = store.plan_sizes()
    # Removal tasks are the long ones (a request per contact on v2): queued first, they
    # do not end the run with a tail of them on a few worker slots.
    return [("remove", i) for i in range(-(-removes // remove_chunk))] + [
        ("update", i) for i in range(-(-updates // update_chunk))
    ]


def guarded(
    store: RunStore, list_id: str, writer: str, threshold: int, send: Callable[[], WriteOutcome]
) -> WriteOutcome:
    """Send one write request if the run may still write (``RunStore.permit_write``),
    feeding its outcome to the run's breaker."""
    why = store.permit_write(list_id, writer)
    if why:
        raise WriteStopped(why)
    try:
        result = send()
    except RetryableApiError as exc:
        # The contract's breaker counts 5xx answers; a 429, a time-out or a job still
        # running neither trips it nor resets the streak.
        if exc.is_server_error:
            store.note_write_outcome(server_error=True, threshold=threshold)
        raise
    store.note_write_outcome(server_error=False, threshold=threshold)
    return result


def apply_update_chunk(
    store: RunStore, backend: Backend, list_id: str, index: int, *, threshold: int
) -> ChunkResult:
    if store.chunk_done("update", index):
        return {"ok": True, "kind": "update", "chunk": index, "repeat": True}
    if store.halted():
        return {"ok": False, "kind": "update", "chunk": index, "halted": True}
    size, _ = chunk_sizes(backend)
    entries = store.plan_slice("update", index * size, (index + 1) * size)
    # A duplicate found once the plan was whole is removed, never also updated.
    duplicates = store.duplicates_among([e.contact_id for e in entries])
    entries = fresh_entries(store, [e for e in entries if e.contact_id not in duplicates])
    if not entries:
        store.commit_update_chunk(index, 0)
        return {"ok": True, "kind": "update", "chunk": index, "updated": 0}
    changes = [Change(e.contact_id, e.after or {}, record=e.record or {}) for e in entries]
    writer = f"update:{index}"
    try:
        send = partial(backend.update_contacts, list_id, changes)
        outcome = guarded(store, list_id, writer, threshold, send)
        store.record_failures(outcome.failed)
        store.commit_update_chunk(index, len(outcome.done))
    finally:
        store.writer_done(writer)
    result: ChunkResult = {
        "ok": not outcome.failed,
        "kind": "update",
        "chunk": index,
        "updated": len(outcome.done),
        "failed": len(outcome.failed),
    }
    if outcome.failed:
        # The first reason reaches the run's audit line ("N chunk(s) failed: ...").
        cid, why = next(iter(outcome.failed.items()))
        result["error"] = f"{len(outcome.failed)} record(s) not updated, e.g. {cid}: {why}"
    return result


def apply_remove_chunk(
    store: RunStore, backend: Backend, list_id: str, index: int, *, threshold: int
) -> ChunkResult:
    if store.chunk_done("remove", index):
        return {"ok": True, "kind": "remove", "chunk": index, "repeat": True}
    _, size = chunk_sizes(backend)
    entries = fresh_entries(store, store.plan_slice("remove", index * size, (index + 1) * size))
    ids = [e.contact_id for e in entries]
    done = store.removed_ids_among(ids)
    pending = [cid for cid in ids if cid not in done]
    failed: dict[str, str] = {}
    writer = f"remove:{index}"
    try:
        why = store.permit_write(list_id, writer) if pending else ""
        for start in range(0, len(pending), backend.remove_batch_size):
            # Checked right before every request (read back with the previous one's
            # outcome, in the same round trip): once the breaker trips or the run loses
            # its list, no further removal leaves.
            if why:
                raise WriteStopped(why)
            batch = pending[start : start + backend.remove_batch_size]
            try:
                outcome = backend.remove_contacts(list_id, batch)
            except RetryableApiError as exc:
                if exc.is_server_error:
                    store.note_write_outcome(server_error=True, threshold=threshold)
                raise
            why = store.record_removed(outcome.done, outcome.missing, list_id, writer)
            for counter, amount in outcome.counts.items():
                store.incr(counter, amount)
            failed.update(outcome.failed)
    finally:
        store.writer_done(writer)
    store.record_failures(failed)
    store.mark_chunk_done("remove", index)
    result: ChunkResult = {"ok": not failed, "kind": "remove", "chunk": index}
    result["failed"] = len(failed)
    if failed:
        cid, why = next(iter(failed.items()))
        result["error"] = f"{len(failed)} record(s) not removed, e.g. {cid}: {why}"
    return result
