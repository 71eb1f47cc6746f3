"""Tests mirroring ``cxsweep/runs/writes.py``: guarded write requests, chunking, and a
planned chunk written to the simulator over real sockets."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
import redis

from cxsweep.errors import CxsweepError, RetryableApiError
from cxsweep.phone.numbers import Directive, Sanitizer
from cxsweep.platforms.base import Backend, Change, WriteOutcome
from cxsweep.platforms.factory import make_backend
from cxsweep.runs import keys
from cxsweep.runs.latency import RequestTally
from cxsweep.runs.lock import ListLock
from cxsweep.runs.model import PlanEntry
from cxsweep.runs.pages import recheck_states
from cxsweep.runs.plan import plan_stored_page
from cxsweep.runs.store import RunStore
from cxsweep.runs.writes import (
    WriteStopped,
    apply_remove_chunk,
    apply_update_chunk,
    fence,
    fresh_entries,
    guarded,
    removals_all_done,
    removals_per_task,
    updates_per_task,
    volatile_redis_refusal,
    wave,
    waves_stop,
    write_chunks,
)
from cxsweep.settings import get_settings


def new_store(client: redis.Redis, list_id: str = "") -> RunStore:
    store = RunStore(client, f"test-writes-{uuid.uuid4().hex[:10]}")
    store.create(list_id or f"list-{store.run_id}", dry_run=False, options={})
    return store


def test_guarded_sends_nothing_without_the_lock(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    sent: list[int] = []

    def send() -> WriteOutcome:
        sent.append(1)
        return WriteOutcome()

    with pytest.raises(WriteStopped, match="lost the lock"):
        guarded(store, store.meta()["list_id"], "w", 3, send)
    assert sent == []


def test_guarded_feeds_server_errors_to_the_breaker(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    list_id = store.meta()["list_id"]
    lock = ListLock(redis_client, list_id)
    assert lock.acquire(store.run_id)

    def server_error() -> WriteOutcome:
        raise RetryableApiError("503 from the platform", status=503)

    def too_many() -> WriteOutcome:
        raise RetryableApiError("429", status=429)

    with pytest.raises(RetryableApiError):
        guarded(store, list_id, "w", 2, too_many)
    with pytest.raises(RetryableApiError):
        guarded(store, list_id, "w", 2, server_error)
    assert not store.halted()  # a 429 did not count
    with pytest.raises(RetryableApiError):
        guarded(store, list_id, "w", 2, server_error)
    assert store.halted()
    with pytest.raises(WriteStopped, match="halted"):
        guarded(store, list_id, "w", 2, WriteOutcome)
    lock.release(store.run_id)


def test_removal_tasks_are_sized_to_the_fleet() -> None:
    assert removals_per_task(1_939, 1, 32) == 31  # about two tasks a slot
    assert removals_per_task(100, 1, 32) == 10  # a small plan: no smaller than 10
    assert removals_per_task(1_000_000, 1, 32) == 100  # nor bigger than 100
    assert removals_per_task(150, 100, 32) == 100  # whole removeProspects calls (CXone)
    assert removals_per_task(0, 1, 0) == 10


def test_update_tasks_are_sized_to_the_fleet() -> None:
    assert updates_per_task(11_967, 100, 32) == 200  # about two tasks a slot, whole PATCHes
    assert updates_per_task(500, 100, 32) == 100  # a small plan: one request a task
    assert updates_per_task(1_000_000, 100, 32) == 1000  # at most 1,000 contacts a task
    assert updates_per_task(1_000_000, 1000, 32) == 1000  # a CXone upload: one a task
    assert updates_per_task(1_000_000, 5000, 32) == 5000  # a bigger upload is not cut
    assert updates_per_task(0, 100, 0) == 100


def test_write_chunks_fix_the_removal_size_once(redis_client: redis.Redis) -> None:
    backend = make_backend(get_settings(), redis_client)
    store = new_store(redis_client)
    removes = [PlanEntry(f"r{i}", {"phone": "x"}, None, "invalid") for i in range(101)]
    store.commit_page(0, [], removes, {})
    chunks = write_chunks(store, backend, slots=2)  # planned: 101 / (2 x 2) -> 26 a task
    assert chunks == [("remove", i) for i in range(4)] and store.task_sizes() == (26, 100)
    # Every later call (each wave of writes) reads it back, whatever its settings.
    assert write_chunks(store, backend) == write_chunks(store, backend, slots=64) == chunks


def test_write_chunks_queue_removals_first(redis_client: redis.Redis) -> None:
    backend = make_backend(get_settings(), redis_client)
    store = new_store(redis_client)
    updates = [PlanEntry(f"u{i}", {"phone": "1"}, {"phone": "+1"}, None) for i in range(101)]
    removes = [PlanEntry(f"r{i}", {"phone": "x"}, None, "invalid") for i in range(11)]
    store.commit_page(0, updates, removes, {})
    chunks = write_chunks(store, backend)  # a run planned before the size was stored: 10
    assert chunks == [("remove", 0), ("remove", 1), ("update", 0), ("update", 1)]


def plan_of(client: redis.Redis, *, updates: int, removes: int) -> RunStore:
    """A run whose plan is ``updates`` corrections and ``removes`` rejects, on one page."""
    store = new_store(client)
    fixes = [PlanEntry(f"u{i}", {"phone": "1"}, {"phone": "+1"}, None) for i in range(updates)]
    rejects = [PlanEntry(f"r{i}", {"phone": "x"}, None, "invalid") for i in range(removes)]
    store.commit_page(0, fixes, rejects, {})
    return store


def test_waves_cover_every_chunk_once_in_order(redis_client: redis.Redis) -> None:
    backend = make_backend(get_settings(), redis_client)
    store = plan_of(redis_client, updates=301, removes=41)
    every = write_chunks(store, backend)
    assert len(every) == 5 + 4
    # What the wave senders do: each wave starts where the last one ended.
    waves, start = [], 0
    while (sent := wave(store, backend, start, 4))[0]:
        waves.append(sent[0])
        start = sent[1]
    assert [len(w) for w in waves] == [4, 4, 1]
    assert [c for w in waves for c in w] == every
    assert wave(store, backend, len(every), 4) == ([], len(every))


def test_waves_skip_the_chunks_the_verify_pass_sent(redis_client: redis.Redis) -> None:
    backend = make_backend(get_settings(), redis_client)
    store = plan_of(redis_client, updates=301, removes=41)
    every = write_chunks(store, backend)
    streamed = [every[0], every[2], every[3], every[4], every[8]]
    store.note_streamed(streamed)
    assert store.streamed_count() == 5
    first, end = wave(store, backend, 0, 3)
    assert first == [every[1], every[5], every[6]] and end == 7
    assert wave(store, backend, end, 3) == ([every[7]], 9)
    assert wave(store, backend, 9, 3) == ([], 9)


def test_the_removals_are_all_done_once_every_removal_chunk_is(redis_client: redis.Redis) -> None:
    backend = make_backend(get_settings(), redis_client)
    store = plan_of(redis_client, updates=5, removes=25)
    store.fix_task_sizes(10, 100)  # removal chunks 0, 1, 2
    assert not removals_all_done(store, backend)
    for index in (0, 1):
        store.mark_chunk_done("remove", index)
    store.mark_chunk_done("remove", 1)  # a repeat counts once
    store.mark_chunk_done("update", 0)  # an update chunk is not a removal chunk
    assert not removals_all_done(store, backend)
    store.mark_chunk_done("remove", 2)
    assert removals_all_done(store, backend)
    assert not removals_all_done(new_store(redis_client), backend)  # nothing to remove


def test_waves_stop_once_the_run_is_halted_cancelled_or_failed(redis_client: redis.Redis) -> None:
    for stop in ("halted", "cancelled", "error"):
        store = new_store(redis_client)
        assert waves_stop(store) == ""
        store.set_meta(**{stop: "why"})
        assert waves_stop(store) == f"{stop}: why"


def test_fresh_entries_refuses_before_the_reread_and_fence_fails(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    with pytest.raises(CxsweepError, match="not re-read"):
        fresh_entries(store, [PlanEntry("a", {}, None, "x")])
    fence([(store, "watchdog: no progress")], request_seconds=0.5)
    assert store.meta()["error"] == "watchdog: no progress"
    assert volatile_redis_refusal(store, allowed_by_settings=True) == ""


def verified_run(
    redis_client: redis.Redis, simulator: Any, backend: Backend, contacts: list[dict[str, Any]]
) -> RunStore:
    """A list of ``contacts`` (ids prefixed with the list's) read, planned, re-read and
    verified: ready to write, its lock held."""
    list_id = f"writes-{uuid.uuid4().hex[:8]}"
    rows = [{**c, "id": f"{list_id}-{c['id']}", "name": "n"} for c in contacts]
    simulator.put_list(list_id, contacts=rows)
    store = new_store(redis_client, list_id)
    page = backend.read_page(list_id, None)
    plan_stored_page(store, 0, page.contacts, backend, lambda _: Sanitizer(Directive()))
    store.index_plan()
    states = recheck_states(store, backend, backend.read_page(list_id, None).contacts)
    store.record_recheck_page("verify", 0, None, 100, states)
    store.set_verified()
    assert ListLock(redis_client, list_id).acquire(store.run_id)
    return store


def planned_run(
    redis_client: redis.Redis, simulator: Any, backend: Backend, bad: int = 1
) -> RunStore:
    """A good number, one to correct and ``bad`` rejects, verified."""
    rejects = [{"id": "bad", "phone": "not a number"}]
    rejects += [{"id": f"bad{i}", "phone": "nope"} for i in range(1, bad)]
    contacts = [{"id": "ok", "phone": "+16502530000"}, {"id": "fix", "phone": "(650) 253-0001"}]
    return verified_run(redis_client, simulator, backend, [*contacts, *rejects])


def test_a_planned_chunk_is_written_once(redis_client: redis.Redis, simulator: Any) -> None:
    backend = make_backend(get_settings(), redis_client)
    store = planned_run(redis_client, simulator, backend)
    list_id = store.meta()["list_id"]
    result = apply_update_chunk(store, backend, list_id, 0, threshold=5)
    assert result == {"ok": True, "kind": "update", "chunk": 0, "updated": 1, "failed": 0}
    assert apply_update_chunk(store, backend, list_id, 0, threshold=5)["repeat"] is True
    removed = apply_remove_chunk(store, backend, list_id, 0, threshold=5)
    assert removed == {"ok": True, "kind": "remove", "chunk": 0, "failed": 0}
    phones = {c["id"].removeprefix(f"{list_id}-"): c["phone"] for c in simulator.get_list(list_id)}
    assert phones == {"ok": "+16502530000", "fix": "+16502530001"}
    assert store.removed_count() == 1
    ListLock(redis_client, list_id).release(store.run_id)


def fixes_run(redis_client: redis.Redis, simulator: Any, backend: Backend, fixes: int) -> RunStore:
    """A verified run whose plan is ``fixes`` corrections, its lock held."""
    contacts = [{"id": f"fix{i}", "phone": f"(650) 253-00{i:02d}"} for i in range(fixes)]
    return verified_run(redis_client, simulator, backend, contacts)


def test_an_update_chunk_sends_a_request_per_batch_and_counts_what_it_wrote(
    redis_client: redis.Redis, simulator: Any
) -> None:
    """An update task of several requests: a server error mid-chunk sends the whole chunk
    again (the same values), counted once; a run stopped mid-chunk counts what was sent."""
    backend = make_backend(get_settings(), redis_client)
    backend.update_batch_size = 2  # three requests for a chunk of five
    store = fixes_run(redis_client, simulator, backend, 5)
    store.fix_task_sizes(10, 6)
    list_id = store.meta()["list_id"]
    patches = simulator.stats()["requests"].get("patch", 0)
    simulator.add_faults([{"method": "PATCH", "path": list_id, "action": 503, "after": 1}])
    with pytest.raises(RetryableApiError):
        apply_update_chunk(store, backend, list_id, 0, threshold=5)
    # The 503 stands as the run's streak (the answer before it ended none: there was none).
    assert store.meta()["consecutive_5xx"] == "1" and store.writers_active(within=60) == 0
    simulator.clear_faults()
    result = apply_update_chunk(store, backend, list_id, 0, threshold=5)
    assert result == {"ok": True, "kind": "update", "chunk": 0, "updated": 5, "failed": 0}
    # Answered since: the streak ended (by the next permit, or as the task ended).
    assert "consecutive_5xx" not in store.meta()
    assert simulator.stats()["requests"]["patch"] - patches == 2 + 3
    assert store.counts()[keys.UPDATED] == 5
    assert all(c["phone"].startswith("+1650253") for c in simulator.get_list(list_id))
    ListLock(redis_client, list_id).release(store.run_id)

    store = fixes_run(redis_client, simulator, backend, 5)
    store.fix_task_sizes(10, 6)
    list_id = store.meta()["list_id"]
    sent = backend.update_contacts

    def cancelled_after_one(list_id: str, changes: Sequence[Change]) -> WriteOutcome:
        outcome = sent(list_id, changes)
        store.cancel("an operator")
        return outcome

    backend.update_contacts = cancelled_after_one  # type: ignore[method-assign]
    with pytest.raises(WriteStopped, match="cancelled"):
        apply_update_chunk(store, backend, list_id, 0, threshold=5)
    assert store.counts()[keys.UPDATED] == 2 and not store.chunk_done("update", 0)
    assert store.writers_active(within=60) == 0
    ListLock(redis_client, list_id).release(store.run_id)


def test_a_removal_chunk_counts_its_removals_however_it_stops(
    redis_client: redis.Redis, simulator: Any
) -> None:
    """Removals are counted once a task stops sending, not one by one: a server error
    mid-chunk leaves those done counted (its retry skips them), the writer done and the
    streak standing; the chunk's requests are kept with its done marker and added once,
    as many as the platform saw."""
    tally = RequestTally()
    backend = make_backend(get_settings(), redis_client, observer=tally.observe)
    store = planned_run(redis_client, simulator, backend, bad=4)
    list_id = store.meta()["list_id"]
    tally.clear()  # the reads that planned the run
    deletes_before = simulator.stats()["requests"].get("delete", 0)
    simulator.add_faults([{"method": "DELETE", "path": list_id, "action": 503, "after": 2}])
    with pytest.raises(RetryableApiError):
        apply_remove_chunk(store, backend, list_id, 0, threshold=5, tally=tally)
    assert store.removed_count() == 2 and store.writers_active(within=60) == 0
    assert store.meta()["consecutive_5xx"] == "1" and not store.chunk_done("remove", 0)
    tally.flush_to(store)  # as the task does when it retries
    simulator.clear_faults()
    result = apply_remove_chunk(store, backend, list_id, 0, threshold=5, tally=tally)
    assert result == {"ok": True, "kind": "remove", "chunk": 0, "failed": 0}
    assert store.removed_count() == 4 and "consecutive_5xx" not in store.meta()
    assert tally.snapshot() is None, "kept with the done marker"
    assert apply_remove_chunk(store, backend, list_id, 0, threshold=5, tally=tally)["repeat"]
    assert store.counts()[keys.API_REQUESTS] == 3, "the first attempt's, counted as it retried"
    store.settle_write_tallies()
    deletes = simulator.stats()["requests"]["delete"] - deletes_before
    assert deletes == 5  # two, a 503, the two left
    assert (
        store.counts()[keys.calls_counter("delete")] == deletes == store.counts()[keys.API_REQUESTS]
    )
    ListLock(redis_client, list_id).release(store.run_id)


def test_fence_fails_every_run_before_waiting_for_any(redis_client: redis.Redis) -> None:
    busy, idle = new_store(redis_client), new_store(redis_client)
    lock = ListLock(redis_client, busy.meta()["list_id"])
    assert lock.acquire(busy.run_id)
    # A write of ``busy`` is in flight: its permit was granted, its outcome not recorded.
    assert busy.permit_write(busy.meta()["list_id"], "remove:0") == ""
    fencing = threading.Thread(
        target=fence,
        args=([(busy, "watchdog: no progress"), (idle, "watchdog: deadline")],),
        kwargs={"request_seconds": 30},
    )
    fencing.start()
    try:
        # Both are failed while the wait for busy's write is still on.
        for _ in range(100):
            if idle.meta().get("error"):
                break
            fencing.join(0.05)
        assert fencing.is_alive(), "fence waits for the write in flight"
        assert idle.meta()["error"] == "watchdog: deadline"
        assert busy.meta()["error"] == "watchdog: no progress"
        # No further write of busy's is permitted meanwhile.
        assert busy.permit_write(busy.meta()["list_id"], "remove:1") != ""
    finally:
        busy.writer_done("remove:0")
        fencing.join(30)
        lock.release(busy.run_id)
    assert not fencing.is_alive(), "the write landed: the wait ends"
