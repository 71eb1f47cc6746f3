"""Tests mirroring ``cxsweep/runs/writestate.py``: the write permit, chunk markers,
removals, failures and the breaker, on a real Redis with a real list lock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from cxsweep.runs import keys
from cxsweep.runs.lock import ListLock
from cxsweep.runs.store import RunStore


@pytest.fixture
def store(redis_client: redis.Redis) -> Iterator[RunStore]:
    """A run holding its list's lock, as a writing run does."""
    store = RunStore(redis_client, f"test-ws-{uuid.uuid4().hex[:10]}")
    store.create(f"list-{store.run_id}", dry_run=False, options={})
    lock = ListLock(redis_client, store.meta()["list_id"])
    assert lock.acquire(store.run_id)
    yield store
    lock.release(store.run_id)


def test_commit_update_chunk_counts_once(store: RunStore) -> None:
    assert not store.chunk_done("update", 2)
    assert store.commit_update_chunk(2, 7)
    assert not store.commit_update_chunk(2, 7)
    assert store.chunk_done("update", 2)
    counts = store.counts()
    assert counts[keys.UPDATED] == 7 and counts[keys.CHUNKS_DONE] == 1


def test_permit_notes_the_writer_until_done(store: RunStore) -> None:
    list_id = store.meta()["list_id"]
    assert store.permit_write(list_id, "update:0") == ""
    assert store.writers_active(within=60) == 1
    store.writer_done("update:0")
    assert store.writers_active(within=60) == 0


def test_permit_refuses_a_halted_cancelled_or_failed_run(store: RunStore) -> None:
    list_id = store.meta()["list_id"]
    assert store.cancel("operator said stop")
    assert not store.cancel("again")
    assert store.halted()
    assert store.permit_write(list_id, "w") == "cancelled: operator said stop"
    other = RunStore(store.redis, f"{store.run_id}-b")
    other.create(list_id, dry_run=False, options={})
    other.fail("watchdog: stalled")
    assert other.permit_write(list_id, "w") == "failed: watchdog: stalled"


def test_breaker_trips_on_consecutive_server_errors_only(store: RunStore) -> None:
    assert not store.note_write_outcome(server_error=True, threshold=3)
    assert not store.note_write_outcome(server_error=True, threshold=3)
    assert not store.note_write_outcome(server_error=False, threshold=3)  # streak reset
    for _ in range(2):
        assert not store.note_write_outcome(server_error=True, threshold=3)
    assert store.note_write_outcome(server_error=True, threshold=3)
    assert store.halted() and "3 consecutive server errors" in store.meta()["halted"]
    assert store.permit_write(store.meta()["list_id"], "w").startswith("halted: 3 consecutive")


def test_removals_and_failures_are_counted_as_sets(store: RunStore) -> None:
    list_id = store.meta()["list_id"]
    assert store.record_removed(["a", "b"], ["c"], list_id, "remove:0") == ""
    assert store.record_removed(["a"], [], list_id, "remove:0") == ""  # a redelivery
    assert store.removed_count() == 3
    assert store.removed_ids_among(["a", "c", "z"]) == {"a", "c"}
    store.record_failures({"x": "409 conflict", "y": "400 invalid"})
    store.record_failures({})
    assert store.failure_count() == 2
    assert store.failures_sample(limit=1) == {"x": "409 conflict"}


def test_write_results_round_trip(store: RunStore) -> None:
    assert store.write_results() == []
    store.keep_write_results([{"ok": False, "kind": "update", "chunk": 1, "error": "e"}])
    assert store.write_results() == [{"ok": False, "kind": "update", "chunk": 1, "error": "e"}]
