"""Tests mirroring ``cxsweep/runs/writestate.py``: the write permit, chunk markers,
removals, failures and the breaker, on a real Redis with a real list lock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from cxsweep.runs import keys
from cxsweep.runs.lock import ListLock
from cxsweep.runs.model import DATA_TTL, ChunkTally
from cxsweep.runs.store import RunStore
from cxsweep.runs.writestate import SERVER_ERROR_STREAK


@pytest.fixture
def store(redis_client: redis.Redis) -> Iterator[RunStore]:
    """A run holding its list's lock, as a writing run does."""
    store = RunStore(redis_client, f"test-ws-{uuid.uuid4().hex[:10]}")
    store.create(f"list-{store.run_id}", dry_run=False, options={})
    lock = ListLock(redis_client, store.meta()["list_id"])
    assert lock.acquire(store.run_id)
    yield store
    lock.release(store.run_id)


def test_an_update_chunk_is_counted_once(store: RunStore) -> None:
    assert not store.chunk_done("update", 2)
    assert store.mark_chunk_done("update", 2, updated=7)
    assert not store.mark_chunk_done("update", 2, updated=7)
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


def test_a_permit_ends_the_streak_only_after_an_answer(store: RunStore) -> None:
    """The removals' permit carries the previous request's answer: a success between
    server errors (another task's, say) means they were not consecutive."""
    list_id = store.meta()["list_id"]
    for _ in range(2):
        assert not store.note_write_outcome(server_error=True, threshold=3)
    assert store.permit_write(list_id, "remove:0", answered=False) == ""
    assert store.meta()[SERVER_ERROR_STREAK] == "2", "no answer yet: the streak stands"
    assert store.permit_write(list_id, "remove:0", answered=True) == ""
    assert SERVER_ERROR_STREAK not in store.meta()
    for _ in range(2):
        assert not store.note_write_outcome(server_error=True, threshold=3)
    store.record_removed(["a"], [], "remove:0", answered=True)  # the task's last answer
    assert SERVER_ERROR_STREAK not in store.meta()
    assert not store.note_write_outcome(server_error=True, threshold=3)
    store.record_removed([], [], "remove:1", answered=False)  # it ended on a 5xx
    assert store.meta()[SERVER_ERROR_STREAK] == "1"


def test_the_permit_renews_the_lock_only_when_asked(store: RunStore) -> None:
    list_id = store.meta()["list_id"]
    lock = keys.list_lock(list_id)
    store.redis.pexpire(lock, 100_000)
    assert store.permit_write(list_id, "remove:0", renew=False) == ""
    assert store.redis.pttl(lock) <= 100_000
    assert store.permit_write(list_id, "remove:0") == ""
    assert store.redis.pttl(lock) > 100_000
    assert 0 < store.redis.ttl(store.keys.writers) <= 86400


def test_a_chunk_keeps_its_tally_until_the_record_adds_it_once(store: RunStore) -> None:
    tally: ChunkTally = {
        "counts": {keys.API_REQUESTS: 3, keys.calls_counter("delete"): 3},
        "latency": {"delete:40": 3},
    }
    assert store.mark_chunk_done("remove", 0, tally=tally)
    assert not store.mark_chunk_done("remove", 0, tally=tally), "a redelivery: not kept twice"
    update_tally: ChunkTally = {"counts": {keys.API_REQUESTS: 1}, "latency": {}}
    assert store.mark_chunk_done("update", 0, updated=7, tally=update_tally)
    counts = store.counts()
    assert counts[keys.CHUNKS_DONE] == 2 and counts[keys.UPDATED] == 7, "live: the progress"
    assert keys.API_REQUESTS not in counts, "the tallies wait for the record"
    assert 0 < store.redis.ttl(store.keys.write_tallies) <= DATA_TTL
    store.settle_write_tallies()
    store.settle_write_tallies()  # a retried record
    counts = store.counts()
    assert counts[keys.API_REQUESTS] == 4 and counts[keys.calls_counter("delete")] == 3
    assert store.redis.hget(store.keys.api_latency, "delete:40") == b"3"
    assert not store.redis.exists(store.keys.write_tallies)


def test_the_task_sizes_are_fixed_once(store: RunStore) -> None:
    assert store.task_sizes() == (None, None)
    assert store.fix_task_sizes(40, 300) == (40, 300)
    assert store.fix_task_sizes(70, 500) == (40, 300)
    assert store.task_sizes() == (40, 300)


def test_a_run_planned_before_update_sizes_keeps_one_request_a_task(store: RunStore) -> None:
    store.redis.hset(store.keys.meta, "removals_per_task", 40)  # as an earlier version left it
    assert store.task_sizes() == (40, None)


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
    assert store.permit_write(list_id, "remove:0") == ""
    store.record_removed(["a", "b"], ["c"], "remove:0", answered=True, counts={"met": 2})
    assert store.writers_active(within=60) == 0, "the writer is done once its removals count"
    store.record_removed(["a"], [], "remove:0", answered=True)  # a redelivery
    assert store.removed_count() == 3 and store.counts()["met"] == 2
    assert 0 < store.redis.ttl(store.keys.removed) <= DATA_TTL
    assert store.removed_ids_among(["a", "c", "z"]) == {"a", "c"}
    store.record_failures({"x": "409 conflict", "y": "400 invalid"})
    store.record_failures({})
    assert store.failure_count() == 2
    assert store.failures_sample(limit=1) == {"x": "409 conflict"}


def test_write_results_round_trip(store: RunStore) -> None:
    assert store.write_results() == []
    store.keep_write_results([{"ok": False, "kind": "update", "chunk": 1, "error": "e"}])
    assert store.write_results() == [{"ok": False, "kind": "update", "chunk": 1, "error": "e"}]


def test_wave_results_come_back_in_chunk_order_once_each(store: RunStore) -> None:
    assert store.wave_results() == []
    first = [{"ok": False, "kind": "remove", "chunk": i, "error": "e"} for i in range(3)]
    second = [{"ok": False, "kind": "update", "chunk": 0, "error": "e"}]
    # Kept out of order (waves end in order, but the key must not depend on it), and
    # the first wave's callback delivered twice: it counts once.
    store.keep_wave_results(10, second)
    store.keep_wave_results(0, first)
    store.keep_wave_results(0, first)
    assert store.wave_results() == first + second
    assert store.redis.ttl(store.keys.wave_results) > 0
