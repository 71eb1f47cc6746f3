"""Tests mirroring ``cxsweep/runs/scripts.py``: each Lua script through the store method
that runs it, on a real Redis."""

from __future__ import annotations

import json
import uuid

import pytest
import redis

from cxsweep.runs import keys
from cxsweep.runs.lock import ListLock
from cxsweep.runs.model import PlanEntry
from cxsweep.runs.store import RunStore


def new_store(client: redis.Redis) -> RunStore:
    store = RunStore(client, f"test-scripts-{uuid.uuid4().hex[:10]}")
    store.create(f"list-{store.run_id}", dry_run=False, options={})
    return store


def test_claim_ids_first_page_wins(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    assert store.claim_ids(0, ["a", "b"]) == set()
    assert store.claim_ids(1, ["b", "c"]) == {"b"}
    assert store.claim_ids(0, ["a", "b"]) == set()  # a redelivery finds its own


def test_note_cursor_detects_a_loop(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    assert store.note_cursor(1, "http://x/p2") is None
    assert store.note_cursor(1, "http://x/p2") is None  # the same page again
    assert store.note_cursor(3, "http://x/p2") == 1
    assert store.cursor(1) == "http://x/p2" and store.cursor(3) is None


def test_mark_done_counts_once_and_hand_off_checks_the_holder(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    store.mark_chunk_done("remove", 0)
    store.mark_chunk_done("remove", 0)
    assert store.chunk_done("remove", 0) and store.counts()[keys.CHUNKS_DONE] == 1
    assert store.claim("read", "t1")
    assert not store.hand_off("read", "t9", "t2")
    assert store.hand_off("read", "t1", "t2")
    assert store.claim("read", "t2") and not store.claim("read", "t1")


def test_write_permit_fails_a_run_without_its_lock(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    list_id = store.meta()["list_id"]
    why = store.permit_write(list_id, "w1")
    assert why.startswith("failed: lost the lock of list") and "nobody (it expired)" in why
    assert store.meta()["error"] in why


def test_claim_numbers_then_duplicates_are_removed(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    row = lambda cid: json.dumps([cid, keys.UNCHANGED, {"phone": "+16502530000"}])  # noqa: E731
    store.commit_page(1, [], [], {keys.UNCHANGED: 1}, numbers=[("+16502530000", 20, row("late"))])
    store.commit_page(0, [], [], {keys.UNCHANGED: 1}, numbers=[("+16502530000", 5, row("early"))])
    assert store.resolve_duplicates() == 1
    assert store.resolve_duplicates() == 0  # once per run
    assert store.duplicates_among(["early", "late"]) == {"late"}
    removal = store.plan_slice("remove", 0, 10)
    assert [(e.contact_id, e.reason) for e in removal] == [("late", "duplicate")]
    assert store.counts()[keys.UNCHANGED] == 1 and store.counts()[keys.TO_REMOVE] == 1


def test_mark_freshness_and_flag_still_present(redis_client: redis.Redis) -> None:
    store = new_store(redis_client)
    entries = [PlanEntry(c, {"phone": "x"}, None, "unparseable") for c in ("a", "b")]
    store.commit_page(0, [], entries, {keys.TO_REMOVE: 2, keys.REASON_PREFIX + "unparseable": 2})
    store.index_plan()
    with pytest.raises(redis.ResponseError, match="not re-read"):
        store.claim_fresh(["a"])
    store.record_recheck_page("verify", 0, None, 100, {"a": "fresh"})
    store.set_verified()
    assert store.claim_fresh(["a", "b", "z"]) == ["fresh", "gone", "unplanned"]
    assert store.counts()[keys.TO_REMOVE] == 1 and store.counts()[keys.STALE] == 1
    lock = ListLock(redis_client, store.meta()["list_id"])
    assert lock.acquire(store.run_id)
    store.record_removed(["a"], [], "w", answered=True)
    assert store.confirm_page(0, None, 100, ["a", "q"]) == ["a"]
    assert store.counts()["still_present"] == 1 and "a" in store.failures()
    lock.release(store.run_id)
