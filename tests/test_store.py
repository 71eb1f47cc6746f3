"""The run's store (cxsweep/runs/store.py and its parts writes.py, freshness.py) on a
real Redis: counters that move once however often a step runs, and the write permit."""

from __future__ import annotations

import time
import uuid

import redis

from cxsweep.runs.keys import list_lock
from cxsweep.runs.store import ListLock, RunStore, prepare_run
from cxsweep.settings import get_settings


def test_chunks_are_counted_once(redis_client: redis.Redis) -> None:
    store = RunStore(redis_client, f"chunks-{uuid.uuid4().hex[:8]}")
    for _ in range(3):  # a redelivered or retried task marks its chunk again
        store.mark_chunk_done("remove", 0)
        store.mark_chunk_done("update", 0, updated=100)
    store.mark_chunk_done("remove", 1)
    assert store.counts()["chunks_done"] == 3
    assert store.counts()["updated"] == 100


def test_permit_refuses_a_run_without_its_lock(redis_client: redis.Redis) -> None:
    list_id = f"permit-{uuid.uuid4().hex[:8]}"
    run_id = prepare_run(redis_client, list_id, dry_run=False)
    store = RunStore(redis_client, run_id)
    assert store.permit_write(list_id, "update:0") == ""
    assert store.writers_active(within=30) == 1  # until its outcome is recorded
    store.writer_done("update:0")
    assert store.writers_active(within=30) == 0
    # The lock lives longer than the broker's redelivery of a dead worker's task.
    assert redis_client.pttl(list_lock(list_id)) > get_settings().visibility_timeout * 1000
    redis_client.delete(list_lock(list_id))
    assert ListLock(redis_client, list_id).acquire("other-run")
    why = store.permit_write(list_id, "update:1")
    assert why == f"failed: lost the lock of list {list_id} to run other-run: stopped writing"
    assert ListLock(redis_client, list_id).holder() == "other-run", "not taken back"
    assert store.meta()["error"].startswith("lost the lock")
    assert store.writers_active(within=30) == 0
    # Halted by its breaker, a run sends nothing either, whoever holds the list.
    halted = RunStore(redis_client, prepare_run(redis_client, f"{list_id}-b", dry_run=False))
    halted.set_meta(halted="5 consecutive server errors on writes")
    assert halted.permit_write(f"{list_id}-b", "remove:0").startswith("halted: 5 consecutive")


def test_a_run_whose_write_tasks_still_send_is_not_stalled(redis_client: redis.Redis) -> None:
    """A write task counts its requests when it ends: throttled, one of 100 removals may
    run for minutes without a counter moving. Its permits say it goes on."""
    from cxsweep.runs.store import overdue_runs

    list_id = f"stall-{uuid.uuid4().hex[:8]}"
    store = RunStore(redis_client, prepare_run(redis_client, list_id, dry_run=False))
    store.set_meta(status="writing")
    now = time.time()

    def stalled(at: float) -> bool:
        found = overdue_runs(redis_client, stall_seconds=60, now=at)
        return store.run_id in {s.run_id for s, _ in found}

    assert not stalled(now)  # first look: progress noted
    assert store.permit_write(list_id, "remove:0") == ""
    assert not stalled(now + 50)
    redis_client.zadd(store.keys.writers, {"remove:0": now + 100})  # a permit at +100 s
    assert not stalled(now + 120), "no counter moved, but a request was permitted"
    store.writer_done("remove:0")
    assert stalled(now + 200)
