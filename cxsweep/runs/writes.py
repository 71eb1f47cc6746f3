"""Writing a judged plan: chunks of updates and removals, each request sent only while
the run may still write (its list held, not halted or failed), fed to the run's breaker.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial

import redis

from cxsweep.errors import CxsweepError, RetryableApiError
from cxsweep.platforms.base import Backend, Change, WriteOutcome
from cxsweep.runs.latency import RequestTally
from cxsweep.runs.outcomes import ChunkResult
from cxsweep.runs.store import PlanEntry, RunStore, persistence_problem

# Contacts per removal task: see ``removals_per_task``.
REMOVALS_PER_TASK_MIN = 10
REMOVALS_PER_TASK_MAX = 100
# What every run planned before the size was fixed per run used (it keeps it to the end).
LEGACY_REMOVALS_PER_TASK = 10
# Contacts per update task at most: see ``updates_per_task``.
UPDATES_PER_TASK_MAX = 1000
# A long removal task renews its list's lock this often (its task renewed it as it began;
# the lock outlives the broker's visibility timeout, many times this).
LOCK_RENEWAL_SECONDS = 60.0


class WriteStopped(CxsweepError):
    """A write request was not sent: the run lost its list, was halted or failed."""


def fence(runs: Sequence[tuple[RunStore, str]], *, request_seconds: float) -> None:
    """Fail runs from outside (the watchdog) so that their writes stop: mark each failed
    (with its why), which every write's permit reads, then wait (at most one request's
    time, once for all of them) for the requests already sent to land and be counted, so
    their audit lines tell all."""
    for store, why in runs:
        store.fail(why)
    deadline = time.monotonic() + request_seconds
    while time.monotonic() < deadline and any(
        store.writers_active(within=request_seconds) for store, _ in runs
    ):
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


def removals_per_task(removals: int, batch: int, slots: int) -> int:
    """Contacts per removal task for a plan of ``removals``, on a fleet of ``slots`` worker
    slots: about two tasks a slot, 10 to 100 contacts, whole requests of ``batch``.

    A task costs the same whatever its size: ~45 Redis commands of Celery's plumbing
    (message, ack, result, chord counter) and ~15 of its own prologue, against ~4 for each
    removal (the permit before its request). At the former fixed 10 a task, the tasks cost
    more than the removals (bench/PROFILE.md). Two tasks a slot keep the fan-out that makes
    an unthrottled run fast (every slot busy from the start), and a slot whose first task
    ends early takes the second; the update tasks, queued after the removals, fill the
    slots the last removal tasks leave free. At most 100: a task's requests go one after
    the other, so much bigger tasks would end the writes with a tail of a few slots
    working (and a crash repeats more of them); at least 10: below that the overhead is
    back, and a small plan is fast anyway."""
    per_task = -(-removals // (2 * max(1, slots)))
    size = min(REMOVALS_PER_TASK_MAX, max(REMOVALS_PER_TASK_MIN, per_task))
    # CXone removes 100 a request: a task sends whole requests.
    return max(batch, -(-size // batch) * batch)


def updates_per_task(updates: int, batch: int, slots: int) -> int:
    """Contacts per update task for a plan of ``updates``: about two tasks a slot, whole
    requests of ``batch``, one request at least and ``UPDATES_PER_TASK_MAX`` contacts at
    most (when a request takes fewer).

    One request a task made the task's Celery plumbing cost more than its request: 120
    tasks for 12,000 corrections, 10,000 at 1,000,000 contacts (issue 15). A CXone upload
    (1,000 records by default) stays one a task."""
    per_task = -(-updates // (2 * max(1, slots)))
    size = min(max(batch, UPDATES_PER_TASK_MAX), max(batch, per_task))
    return -(-size // batch) * batch


def chunk_sizes(
    backend: Backend, per_removal_task: int | None = None, per_update_task: int | None = None
) -> tuple[int, int]:
    """Contacts per update task and per removal task (the run's own, fixed when it was
    planned: ``write_chunks``; the former fixed sizes for a run planned before)."""
    legacy = max(backend.remove_batch_size, LEGACY_REMOVALS_PER_TASK)
    return per_update_task or backend.update_batch_size, per_removal_task or legacy


def run_chunk_sizes(store: RunStore, backend: Backend) -> tuple[int, int]:
    """The run's contacts per update task and per removal task, as fixed when it was
    planned (``write_chunks``)."""
    return chunk_sizes(backend, *store.task_sizes())


def write_chunks(
    store: RunStore, backend: Backend, *, slots: int | None = None
) -> list[tuple[str, int]]:
    """The run's write chunks, removals first. The first call with ``slots`` (the fleet's
    ``write_slots``, when the run is planned) fixes the run's task sizes; every later
    call, and every task, reads them back, so a chunk's index names the same contacts
    whichever worker (and settings) runs it."""
    updates, removes = store.plan_sizes()
    removal_size, update_size = store.task_sizes()
    if removal_size is None and slots is not None:
        removal_size, update_size = store.fix_task_sizes(
            removals_per_task(removes, backend.remove_batch_size, slots),
            updates_per_task(updates, backend.update_batch_size, slots),
        )
    update_chunk, remove_chunk = chunk_sizes(backend, removal_size, update_size)
    # Removal tasks are the long ones (a request per contact on v2): queued first, they
    # do not end the run with a tail of them on a few worker slots.
    return [("remove", i) for i in range(-(-removes // remove_chunk))] + [
        ("update", i) for i in range(-(-updates // update_chunk))
    ]


def wave(
    store: RunStore, backend: Backend, start: int, size: int
) -> tuple[list[tuple[str, int]], int]:
    """The wave of writes that begins at position ``start`` of ``write_chunks``'s order:
    at most ``size`` chunks the verify pass did not send already (``note_streamed``), and
    the position where the next wave begins; none once ``start`` is past the last chunk.
    The plan does not change once it is verified, so every wave's sender sees the same
    order."""
    every = write_chunks(store, backend)
    chosen: list[tuple[str, int]] = []
    position = start
    while position < len(every) and len(chosen) < size:
        candidates = every[position : position + size - len(chosen)]
        streamed = store.streamed_among(candidates)
        chosen += [chunk for chunk in candidates if chunk not in streamed]
        position += len(candidates)
    return chosen, position


def removals_all_done(store: RunStore, backend: Backend) -> bool:
    """Whether every removal chunk of the run is marked done (the list may be re-read to
    confirm them while the updates still go)."""
    removes, per_task, done = store.removal_progress()
    if not removes:
        return False
    _, size = chunk_sizes(backend, per_task)
    return done >= -(-removes // size)


def waves_stop(store: RunStore) -> str:
    """Why no further wave of writes may be sent, or "" when it may: the run was halted
    (the breaker, the purge guard), cancelled, or failed (the watchdog; a run that lost
    its list is failed by its next write's permit)."""
    meta = store.meta()
    for field in ("halted", "cancelled", "error"):
        if meta.get(field):
            return f"{field}: {meta[field]}"
    return ""


def guarded(
    store: RunStore,
    list_id: str,
    writer: str,
    threshold: int,
    send: Callable[[], WriteOutcome],
    *,
    renew: bool = True,
) -> WriteOutcome:
    """Send one write request if the run may still write (``RunStore.permit_write``,
    renewing the list's lock when ``renew``), feeding its outcome to the run's breaker."""
    why = store.permit_write(list_id, writer, renew=renew)
    if why:
        raise WriteStopped(why)
    result = _sent(store, threshold, send)
    store.note_write_outcome(server_error=False, threshold=threshold)
    return result


def _sent(store: RunStore, threshold: int, send: Callable[[], WriteOutcome]) -> WriteOutcome:
    """``send()``'s outcome; a server error it raises is fed to the run's breaker first.
    The contract's breaker counts 5xx answers; a 429, a time-out or a job still running
    neither trips it nor ends the streak."""
    try:
        return send()
    except RetryableApiError as exc:
        if exc.is_server_error:
            store.note_write_outcome(server_error=True, threshold=threshold)
        raise


def _mark_done(
    store: RunStore, kind: str, index: int, tally: RequestTally | None, updated: int = 0
) -> None:
    """Mark the chunk done, keeping with it what ``tally`` counted of its requests (the
    run's record adds it once); cleared once kept, else the task counts it as before."""
    kept = tally.snapshot() if tally is not None else None
    if store.mark_chunk_done(kind, index, updated=updated, tally=kept) and tally is not None:
        tally.clear()


def apply_update_chunk(
    store: RunStore,
    backend: Backend,
    list_id: str,
    index: int,
    *,
    threshold: int,
    tally: RequestTally | None = None,
) -> ChunkResult:
    """Write update chunk ``index``, a request per ``update_batch_size`` of it, each
    behind its permit (as ``guarded``, with the streak carried as the removals carry
    it); ``tally``, the counter of the backend's requests, is kept with the chunk's done
    marker (``_mark_done``). A retried chunk sends its requests again: an update writes
    the same values twice, and only the attempt that ends counts what it updated."""
    if store.chunk_done("update", index):
        return {"ok": True, "kind": "update", "chunk": index, "repeat": True}
    if store.halted():
        return {"ok": False, "kind": "update", "chunk": index, "halted": True}
    size, _ = run_chunk_sizes(store, backend)
    entries = store.plan_slice("update", index * size, (index + 1) * size)
    # A duplicate found once the plan was whole is removed, never also updated.
    duplicates = store.duplicates_among([e.contact_id for e in entries])
    entries = fresh_entries(store, [e for e in entries if e.contact_id not in duplicates])
    if not entries:
        _mark_done(store, "update", index, tally)
        return {"ok": True, "kind": "update", "chunk": index, "updated": 0}
    changes = [Change(e.contact_id, e.after or {}, record=e.record or {}) for e in entries]
    writer = f"update:{index}"
    updated = 0
    failed: dict[str, str] = {}
    # As the removals do: an answer that was not a server error ends the run's streak
    # with the next permit, or as the task ends, not with a round trip of its own after
    # every request (600 of them at 100,000 contacts).
    answered = False
    renewed = time.monotonic()  # the task renewed the lock as it began (tasks.write)
    try:
        for start in range(0, len(changes), backend.update_batch_size):
            renew = time.monotonic() - renewed >= LOCK_RENEWAL_SECONDS
            batch = changes[start : start + backend.update_batch_size]
            why = store.permit_write(list_id, writer, answered=answered, renew=renew)
            if why:
                # The run stops writing: what this chunk did write is counted, as the
                # removals count theirs (a stopped chunk is not sent again).
                store.record_failures(failed)
                store.count_updated(updated)
                raise WriteStopped(why)
            if renew:
                renewed = time.monotonic()
            answered = False
            outcome = _sent(store, threshold, partial(backend.update_contacts, list_id, batch))
            answered = True
            updated += len(outcome.done)
            failed.update(outcome.failed)
        store.record_failures(failed)
        _mark_done(store, "update", index, tally, updated=updated)
    finally:
        store.writer_done(writer, answered=answered)
    result: ChunkResult = {
        "ok": not failed,
        "kind": "update",
        "chunk": index,
        "updated": updated,
        "failed": len(failed),
    }
    if failed:
        # The first reason reaches the run's audit line ("N chunk(s) failed: ...").
        cid, why = next(iter(failed.items()))
        result["error"] = f"{len(failed)} record(s) not updated, e.g. {cid}: {why}"
    return result


def apply_remove_chunk(
    store: RunStore,
    backend: Backend,
    list_id: str,
    index: int,
    *,
    threshold: int,
    tally: RequestTally | None = None,
) -> ChunkResult:
    """Write removal chunk ``index``: a permit before every request, the removals counted
    once the task stops sending (``RunStore.record_removed``, however it stops: a retry
    or a stop included), ``tally`` kept with the done marker (``_mark_done``).

    A worker killed mid-chunk loses the removals it had not counted yet: its redelivery
    sends those again, the platform answers them gone, and they count as removed then."""
    if store.chunk_done("remove", index):
        return {"ok": True, "kind": "remove", "chunk": index, "repeat": True}
    _, size = run_chunk_sizes(store, backend)
    entries = fresh_entries(store, store.plan_slice("remove", index * size, (index + 1) * size))
    ids = [e.contact_id for e in entries]
    done = store.removed_ids_among(ids)
    pending = [cid for cid in ids if cid not in done]
    removed: list[str] = []
    gone: list[str] = []
    # What else the requests met (``WriteOutcome.counts``), counted with the removals.
    met: Counter[str] = Counter()
    failed: dict[str, str] = {}
    writer = f"remove:{index}"
    answered = False
    renewed = time.monotonic()  # the task renewed the lock as it began (tasks.write)
    try:
        for start in range(0, len(pending), backend.remove_batch_size):
            # Checked right before every request, with the previous one's answer (which
            # ends the run's streak of server errors): once the breaker trips or the run
            # loses its list, no further removal leaves.
            renew = time.monotonic() - renewed >= LOCK_RENEWAL_SECONDS
            why = store.permit_write(list_id, writer, answered=answered, renew=renew)
            if why:
                raise WriteStopped(why)
            if renew:
                renewed = time.monotonic()
            batch = pending[start : start + backend.remove_batch_size]
            answered = False
            outcome = _sent(store, threshold, partial(backend.remove_contacts, list_id, batch))
            answered = True
            removed += outcome.done
            gone += outcome.missing
            met.update(outcome.counts)
            failed.update(outcome.failed)
    finally:
        if pending:
            store.record_removed(removed, gone, writer, answered=answered, counts=met)
    store.record_failures(failed)
    _mark_done(store, "remove", index, tally)
    result: ChunkResult = {"ok": not failed, "kind": "remove", "chunk": index}
    result["failed"] = len(failed)
    if failed:
        cid, why = next(iter(failed.items()))
        result["error"] = f"{len(failed)} record(s) not removed, e.g. {cid}: {why}"
    return result
